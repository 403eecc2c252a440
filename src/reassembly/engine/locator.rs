//! Where blocks are: asked of the catalog when a read needs them (several at once where the
//! caller knows several), with a bounded cache of recent answers. Memory does not grow with
//! the vault, and nothing is loaded wholesale.
//!
//! Invariant: only answers for stored packs are cached. A block the catalog does not know, or
//! knows only in a pack in transit, is asked again at its next read, and the catalog
//! connection reads the newest commit: a backup or seed import committed after the reader
//! started is seen. A cached location stays readable while the reader lives, even if prune
//! moves the block meanwhile: prune sets aside what it retires while an older reader is alive
//! (see `lease`).

use std::hash::BuildHasherDefault;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use lru::LruCache;

use crate::catalog::{BlockLocation, Catalog, PackState};
use crate::store::block::IdHasher;
use crate::store::{BlockId, PackId};

/// Recent answers kept: about 100 bytes each, so a few MiB whatever the vault's size.
const RECENT_ANSWERS: NonZeroUsize = match NonZeroUsize::new(1 << 16) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// Blocks located at once on a miss: the block and those after it in its pack.
const FOLLOWERS: u32 = 256;

/// At most this many of the blocks a caller expects are located ahead: a quarter of the
/// recent answers, so what is located ahead is still there when its reads come.
const EXPECTED_AHEAD: usize = RECENT_ANSWERS.get() / 4;

/// The locator of one reader, shared with its read-ahead threads.
pub(super) struct Locator {
    /// A read connection of its own (SQLite connections are not shared between threads).
    catalog: Mutex<Catalog>,
    recent: Mutex<LruCache<BlockId, BlockLocation, BuildHasherDefault<IdHasher>>>,
    /// Set once a reader that expects many blocks has had the chance to load every location
    /// of a small vault at once (see [`Locator::expect`]).
    preload_tried: AtomicBool,
}

impl Locator {
    /// A locator that asks `catalog`.
    pub(super) fn new(catalog: Catalog) -> Locator {
        Locator {
            catalog: Mutex::new(catalog),
            recent: Mutex::new(LruCache::with_hasher(
                RECENT_ANSWERS,
                BuildHasherDefault::default(),
            )),
            preload_tried: AtomicBool::new(false),
        }
    }

    /// Loads every stored block location in one scan if they all fit in the recent answers:
    /// for a vault that small, one scan costs less than a query per batch (10 ms against 60
    /// for 20,000 blocks), and memory stays within the same bound.
    fn preload_small_vault(&self) {
        if self.preload_tried.swap(true, Ordering::Relaxed) {
            return;
        }
        let catalog = self.catalog();
        let small = catalog
            .block_count()
            .is_ok_and(|n| n <= RECENT_ANSWERS.get() as u64);
        if !small {
            return;
        }
        let mut recent = self.recent();
        // A scan that fails part way leaves what it found: each answer is right on its own.
        let _ = catalog.each_stored_location(|id, loc| {
            recent.put(id, loc);
        });
    }

    /// Where a block is now. A miss also caches where the blocks that follow it in its pack
    /// are: reads go forward through packs much as backup wrote them, so one look-up serves
    /// the next ones. A catalog that cannot answer is taken as not knowing the block: the
    /// read that needs it fails with that block named.
    pub(super) fn locate(&self, id: &BlockId) -> Option<(BlockLocation, PackState)> {
        if let Some(loc) = self.recent().get(id) {
            return Some((*loc, PackState::Stored));
        }
        let catalog = self.catalog();
        let run = catalog
            .locate_with_followers(id, FOLLOWERS)
            .unwrap_or_default();
        let Some(&(_, found)) = run.first().filter(|(first, _)| first == id) else {
            // Retired (still readable by an older reader), or unknown.
            return catalog.locate_block(id).ok().flatten();
        };
        drop(catalog);
        self.remember(run);
        Some(found)
    }

    /// Locates ahead those of `ids` not answered recently, so that their reads find them
    /// cached. Readers that know what comes next (the files a restore is about to write, a
    /// directory's files) call this.
    ///
    /// The first unknown block is asked with the run that follows it in its pack (a range of
    /// the pack-order index, about 0.1 us a block); those the run did not cover are then asked
    /// by id in one query (a search each, about 2 us). Blocks written in the order they are
    /// read cost one range read per pack; scattered ones cost a search each.
    pub(super) fn expect(&self, ids: &[BlockId]) {
        self.preload_small_vault();
        let ask: Vec<BlockId> = {
            let recent = self.recent();
            ids.iter()
                .take(EXPECTED_AHEAD)
                .filter(|id| **id != BlockId::ZERO && !recent.contains(id))
                .copied()
                .collect()
        };
        let Some(first) = ask.first() else {
            return;
        };
        let run = self
            .catalog()
            .locate_with_followers(first, FOLLOWERS)
            .unwrap_or_default();
        self.remember(run);
        let rest: Vec<BlockId> = {
            let recent = self.recent();
            ask.into_iter().filter(|id| !recent.contains(id)).collect()
        };
        if !rest.is_empty() {
            self.locate_stored(&rest);
        }
    }

    /// The packs that hold those of `ids` answered recently, each once, in the order of
    /// their first block in `ids`.
    pub(super) fn packs_of(&self, ids: &[BlockId]) -> Vec<PackId> {
        let recent = self.recent();
        let mut packs: Vec<PackId> = Vec::new();
        for loc in ids.iter().filter_map(|id| recent.peek(id)) {
            if !packs.contains(&loc.pack) {
                packs.push(loc.pack);
            }
        }
        packs
    }

    /// Where those of `ids` are that lie in stored packs, asking the catalog once for all
    /// those not answered recently.
    pub(super) fn locate_stored(&self, ids: &[BlockId]) -> Vec<(BlockId, BlockLocation)> {
        let mut found = Vec::with_capacity(ids.len());
        let mut ask = Vec::new();
        {
            let mut recent = self.recent();
            for id in ids {
                match recent.get(id) {
                    Some(loc) => found.push((*id, *loc)),
                    None => ask.push(*id),
                }
            }
        }
        if ask.is_empty() {
            return found;
        }
        let mut answers = Vec::with_capacity(ask.len());
        let asked = self.catalog().locate_blocks(&ask, |id, loc, state| {
            if state == PackState::Stored {
                answers.push((id, loc));
            }
        });
        if asked.is_ok() {
            let mut recent = self.recent();
            for (id, loc) in &answers {
                recent.put(*id, *loc);
            }
            found.extend(answers);
        }
        found
    }

    /// Caches the answers of a run that lie in stored packs, the run's first block last (the
    /// most recently used).
    fn remember(&self, run: Vec<(BlockId, (BlockLocation, PackState))>) {
        let mut recent = self.recent();
        for (block, (loc, state)) in run.into_iter().rev() {
            if state == PackState::Stored {
                recent.put(block, loc);
            }
        }
    }

    fn recent(
        &self,
    ) -> std::sync::MutexGuard<'_, LruCache<BlockId, BlockLocation, BuildHasherDefault<IdHasher>>>
    {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn catalog(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|e| e.into_inner())
    }
}

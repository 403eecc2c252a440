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
use std::sync::Mutex;

use lru::LruCache;

use crate::catalog::{BlockLocation, Catalog, PackState};
use crate::store::block::IdHasher;
use crate::store::BlockId;

/// Recent answers kept: about 100 bytes each, so a few MiB whatever the vault's size.
const RECENT_ANSWERS: NonZeroUsize = match NonZeroUsize::new(1 << 16) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// Blocks located at once on a miss: the block and those after it in its pack.
const FOLLOWERS: u32 = 256;

/// The locator of one reader, shared with its read-ahead threads.
pub(super) struct Locator {
    /// A read connection of its own (SQLite connections are not shared between threads).
    catalog: Mutex<Catalog>,
    recent: Mutex<LruCache<BlockId, BlockLocation, BuildHasherDefault<IdHasher>>>,
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
        }
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
        let mut recent = self.recent();
        for (block, (loc, state)) in run.into_iter().rev() {
            if state == PackState::Stored {
                recent.put(block, loc);
            }
        }
        Some(found)
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

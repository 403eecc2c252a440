//! The block engine every reader shares: it decides which blocks to load, has the pack reader
//! ([`crate::store::pack_reader`]) fetch their frames, and decodes them into the block cache.
//!
//! - `mod.rs` (this file): `Engine`, what one block read needs — locate, read, decode, cache;
//! - `locator`: where blocks are, asked of the catalog, with a bounded cache of answers;
//! - `metrics`: the counters behind [`ReadTimes`];
//! - `workers`: the read-ahead threads and their CPU placement;
//! - `reader`: [`BlockReader`] and [`Loader`], the handles callers hold.
//!
//! Invariants: a block enters the cache only verified; read-ahead never reports errors (the
//! read that needs the block does). It knows nothing of files, paths or points, nor of how
//! pack bytes are fetched.

mod locator;
mod metrics;
mod reader;
mod workers;

use std::sync::atomic::AtomicUsize;
use std::time::Instant;

pub use metrics::ReadTimes;
pub use reader::{
    BlockReader, Loader, ReaderOptions, VaultRef, DEFAULT_CACHE_BYTES, DEFAULT_READAHEAD_BYTES,
};

use super::cache::{Block, BlockCache};
use crate::catalog::{BlockLocation, Catalog, PackState};
use crate::store::pack_reader::{FrameAt, PackReader};
use crate::store::{BlockId, StoreError};
use crate::vault::Vault;
use locator::Locator;
use metrics::Counters;

/// What a block read needs, shared with read-ahead threads.
struct Engine {
    locator: Locator,
    cache: BlockCache,
    counters: Counters,
    /// Read-ahead loads queued or running.
    queued: AtomicUsize,
}

/// Where a block's frame lies, for the pack reader.
fn frame_at(loc: &BlockLocation) -> FrameAt {
    FrameAt {
        pack: loc.pack,
        offset: loc.offset,
        len: loc.stored_len,
    }
}

/// The error of a frame that does not decode.
fn corrupt(id: &BlockId, loc: &BlockLocation) -> StoreError {
    StoreError::CorruptFrame {
        block: *id,
        pack: loc.pack,
        offset: loc.offset,
    }
}

impl Engine {
    fn new(catalog: Catalog, cache_bytes: usize) -> Engine {
        Engine {
            locator: Locator::new(catalog),
            cache: BlockCache::new(cache_bytes),
            counters: Counters::default(),
            queued: AtomicUsize::new(0),
        }
    }

    /// The pack reader of `vault`, counting into this engine's counters.
    fn packs<'a>(&'a self, vault: &'a Vault) -> PackReader<'a> {
        PackReader::new(vault.backend(), &self.counters.packs)
    }

    /// Where a block is now.
    fn locate(&self, id: &BlockId) -> Option<(BlockLocation, PackState)> {
        self.locator.locate(id)
    }

    /// Locates `ids` ahead of their reads, in one catalog query (timed as locating), and
    /// tells the store which packs they are in, so a remote one can fetch them ahead.
    fn expect(&self, vault: &Vault, ids: &[BlockId]) {
        let t = Instant::now();
        self.locator.expect(ids);
        self.counters.count_located(t);
        let store = vault.backend();
        if store.fetches_ahead() {
            store.prefetch(&self.locator.packs_of(ids));
        }
    }

    /// Where a block's frame is, if it can be read now (timed as locating).
    fn locate_readable(&self, id: &BlockId) -> Result<BlockLocation, StoreError> {
        let t = Instant::now();
        let found = self.locator.locate(id);
        self.counters.count_located(t);
        match found {
            None => Err(StoreError::UnknownBlock { block: *id }),
            Some((loc, PackState::InTransit)) => Err(StoreError::MissingPack { pack: loc.pack }),
            Some((loc, PackState::Stored)) => Ok(loc),
        }
    }

    /// Reads and decodes one block, bypassing the cache.
    fn load(&self, vault: &Vault, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        let loc = self.locate_readable(id)?;
        self.packs(vault)
            .with_frame(frame_at(&loc), |frame| self.decode(vault, id, &loc, frame))
    }

    /// Reads and decodes one block straight into `out` (its exact length), bypassing the
    /// cache.
    fn load_to(&self, vault: &Vault, id: &BlockId, out: &mut [u8]) -> Result<(), StoreError> {
        let loc = self.locate_readable(id)?;
        self.packs(vault).with_frame(frame_at(&loc), |frame| {
            let t = Instant::now();
            vault
                .codec()
                .decode_to_slice(id, frame, out)
                .map_err(|_| corrupt(id, &loc))?;
            self.counters.count_decoded(t, out.len() as u64);
            Ok(())
        })
    }

    /// Opens, decompresses and verifies a frame read from `loc` into a pooled buffer.
    fn decode(
        &self,
        vault: &Vault,
        id: &BlockId,
        loc: &BlockLocation,
        frame: &mut [u8],
    ) -> Result<Vec<u8>, StoreError> {
        let t = Instant::now();
        let buffers = self.cache.buffers();
        let mut plain = buffers.take(loc.raw_len as usize);
        if vault
            .codec()
            .decode_into(id, frame, loc.raw_len as usize, &mut plain)
            .is_err()
        {
            buffers.give(plain);
            return Err(corrupt(id, loc));
        }
        self.counters.count_decoded(t, u64::from(loc.raw_len));
        Ok(plain)
    }

    /// Loads those of `ids` that are neither cached nor under way, neighbouring frames of a
    /// pack with one read. Errors are dropped: the read that needs the block meets them again
    /// and reports them.
    fn warm_many(&self, vault: &Vault, ids: &[BlockId]) {
        let absent: Vec<BlockId> = ids
            .iter()
            .filter(|id| **id != BlockId::ZERO && !self.cache.contains_or_loading(id))
            .copied()
            .collect();
        let mut wanted = self.locator.locate_stored(&absent);
        wanted.sort_by_key(|(_, loc)| (loc.pack, loc.offset));
        wanted.dedup_by_key(|(id, _)| *id);
        let _ = self.packs(vault).read_neighbours(
            &wanted,
            |(_, loc)| frame_at(loc),
            |(id, loc), frame| {
                self.cache
                    .load_if_absent(id, || self.decode(vault, id, loc, frame));
            },
        );
    }

    fn block(&self, vault: &Vault, id: &BlockId) -> Result<Block, StoreError> {
        self.cache.get_or_load(id, || self.load(vault, id))
    }
}

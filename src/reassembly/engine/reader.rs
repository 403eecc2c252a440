//! [`BlockReader`], the handle every reader holds (restore, `cat`, the mount, the bench), and
//! [`Loader`], the handle read-ahead jobs get: their options, and how their calls map onto the
//! shared `Engine` and its read-ahead `Workers`.
//!
//! Read-ahead runs only over a shared vault handle (its threads outlive any borrow) and never
//! reports errors: the read that needs the block does.

use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::metrics::ReadTimes;
use super::workers::Workers;
use super::{frame_at, Engine};
use crate::catalog::{BlockLocation, PackState};
use crate::error::Result;
use crate::reassembly::buffers::PoolStats;
use crate::reassembly::cache::{Block, CacheStats};
use crate::store::{BlockId, StoreError};
use crate::vault::Vault;

/// Default size of the block cache: 256 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;
/// Default read-ahead window of a sequential reader: 16 MiB.
pub const DEFAULT_READAHEAD_BYTES: u64 = 16 << 20;

/// A vault handle, borrowed (restore, `cat`) or shared (the mount and read-ahead, whose
/// threads outlive any borrow).
#[derive(Clone, Debug)]
pub enum VaultRef<'v> {
    Borrowed(&'v Vault),
    Shared(Arc<Vault>),
}

impl Deref for VaultRef<'_> {
    type Target = Vault;
    fn deref(&self) -> &Vault {
        match self {
            VaultRef::Borrowed(v) => v,
            VaultRef::Shared(v) => v,
        }
    }
}

impl<'v> From<&'v Vault> for VaultRef<'v> {
    fn from(v: &'v Vault) -> Self {
        VaultRef::Borrowed(v)
    }
}

impl From<Arc<Vault>> for VaultRef<'static> {
    fn from(v: Arc<Vault>) -> Self {
        VaultRef::Shared(v)
    }
}

/// How a [`BlockReader`] caches and reads ahead.
#[derive(Clone, Copy, Debug)]
pub struct ReaderOptions {
    /// Byte bound of the decoded-block cache.
    pub cache_bytes: usize,
    /// Read-ahead threads (0: no read-ahead). Read-ahead needs a shared vault handle.
    pub readahead_threads: usize,
    /// How far ahead of a sequential reader blocks are decoded.
    pub readahead_bytes: u64,
    /// Keep read-ahead threads off the first CPU (when there are others), so that threads
    /// answering requests always find a core free. For the mount, where a reader such as tar
    /// waits on every request: read-ahead spread over every core delayed the request path
    /// more than its decoding saved (whole-tree read 1.39 s -> 1.22 s here, pinned).
    pub readahead_spares_a_cpu: bool,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
            readahead_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            readahead_bytes: DEFAULT_READAHEAD_BYTES,
            readahead_spares_a_cpu: false,
        }
    }
}

/// Reads and decodes blocks of one vault, through the cache.
pub struct BlockReader<'v> {
    vault: VaultRef<'v>,
    engine: Arc<Engine>,
    pool: Option<Workers>,
    options: ReaderOptions,
}

impl std::fmt::Debug for BlockReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockReader")
            .field("cache", &self.engine.cache)
            .finish()
    }
}

impl<'v> BlockReader<'v> {
    /// A reader of the vault; default cache, no read-ahead.
    pub fn new(vault: &'v Vault) -> Result<BlockReader<'v>> {
        BlockReader::with_options(
            vault,
            ReaderOptions {
                readahead_threads: 0,
                ..ReaderOptions::default()
            },
        )
    }

    /// A reader with explicit options. Read-ahead runs only over a shared vault handle.
    pub fn with_options(
        vault: impl Into<VaultRef<'v>>,
        options: ReaderOptions,
    ) -> Result<BlockReader<'v>> {
        let vault = vault.into();
        let catalog = vault.read_catalog()?.into_owned()?;
        let pool = match (&vault, options.readahead_threads) {
            (VaultRef::Shared(_), n) if n > 0 => Workers::start(n, options.readahead_spares_a_cpu),
            _ => None,
        };
        Ok(BlockReader {
            engine: Arc::new(Engine::new(catalog, options.cache_bytes)),
            vault,
            pool,
            options,
        })
    }

    /// The vault read.
    pub fn vault(&self) -> &VaultRef<'v> {
        &self.vault
    }

    /// The options in force.
    pub fn options(&self) -> ReaderOptions {
        self.options
    }

    /// Where a block is now (asked of the catalog unless answered recently).
    pub fn locate(&self, id: &BlockId) -> Option<(BlockLocation, PackState)> {
        self.engine.locate(id)
    }

    /// The plaintext of one block of `len` bytes, through the cache; zero blocks cost nothing
    /// but their allocation.
    pub fn read_block(&self, id: &BlockId, len: u32) -> Result<Block, StoreError> {
        if *id == BlockId::ZERO {
            return Ok(Arc::new(vec![0; len as usize]));
        }
        self.engine.block(&self.vault, id)
    }

    /// Fills `out` with a whole block (`out` is exactly its length): from the cache if it is
    /// there or being loaded, else decoded straight into `out` and not cached. For readers
    /// that want the block where it is going (a read buffer) rather than kept: a block read
    /// whole by one read is seldom read again soon, and decoding into the caller's buffer
    /// spares a copy, a cold cache buffer, and an eviction.
    pub fn read_block_to(&self, id: &BlockId, out: &mut [u8]) -> Result<(), StoreError> {
        if *id == BlockId::ZERO {
            out.fill(0);
            return Ok(());
        }
        match self.engine.cache.get_if_loaded(id) {
            Some(block) if block.len() == out.len() => {
                out.copy_from_slice(&block);
                Ok(())
            }
            _ => self.engine.load_to(&self.vault, id, out),
        }
    }

    /// Says which blocks are read next: their locations are asked of the catalog in one
    /// query, rather than one query each as the reads reach them, and a remote store starts
    /// fetching their packs.
    pub fn expect(&self, ids: &[BlockId]) {
        self.engine.expect(&self.vault, ids);
    }

    /// Reads and decodes one block without the cache (benchmarks, scrubbing).
    pub fn read_block_uncached(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        self.engine.load(&self.vault, id)
    }

    /// Loads into the cache those of `ids` not there yet, on this thread, reading frames that
    /// lie close together in a pack with one read (see [`Loader::warm_many`] for the
    /// background form). Errors are left for the reads that need the blocks.
    pub fn warm_many(&self, ids: &[BlockId]) {
        self.engine.warm_many(&self.vault, ids);
    }

    /// The frame of a block as stored, read from its pack (the bench times decoding apart).
    pub(crate) fn read_frame(&self, loc: &BlockLocation) -> Result<Vec<u8>, StoreError> {
        self.engine.packs(&self.vault).read_frame(frame_at(loc))
    }

    /// Hit and miss counts of the cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.engine.cache.stats()
    }

    /// How often loads reused a spare buffer.
    pub fn buffer_stats(&self) -> PoolStats {
        self.engine.cache.buffers().stats()
    }

    /// Drops every cached block.
    pub fn clear_cache(&self) {
        self.engine.cache.clear();
    }

    /// Time spent per stage so far.
    pub fn read_times(&self) -> ReadTimes {
        self.engine.counters.snapshot()
    }

    /// Runs `job` on the read-ahead pool; false (and nothing runs) without a pool.
    pub fn spawn(&self, job: impl FnOnce(&Loader) + Send + 'static) -> bool {
        let (Some(pool), VaultRef::Shared(vault)) = (&self.pool, &self.vault) else {
            return false;
        };
        let loader = Loader {
            vault: vault.clone(),
            engine: self.engine.clone(),
        };
        pool.spawn(Box::new(move || job(&loader)));
        true
    }

    /// Starts decoding `blocks` on the read-ahead pool, in order, skipping those cached or
    /// under way, until the pool's queue is full. Returns how many of `blocks` were dealt with
    /// (queued or skipped); the rest are for a later call. Without a pool (borrowed vault, or
    /// no threads) this does nothing and returns 0.
    pub fn prefetch(&self, blocks: &[(u64, BlockId, u32)]) -> usize {
        let (Some(pool), VaultRef::Shared(vault)) = (&self.pool, &self.vault) else {
            return 0;
        };
        // Bound the queue: a reader far ahead of the decoders gains nothing from more.
        let max_queued = 2 * pool.threads() + 2;
        for (taken, &(_, id, _)) in blocks.iter().enumerate() {
            if id == BlockId::ZERO || self.engine.cache.contains_or_loading(&id) {
                continue;
            }
            if self.engine.queued.fetch_add(1, Ordering::AcqRel) >= max_queued {
                self.engine.queued.fetch_sub(1, Ordering::AcqRel);
                return taken;
            }
            let (engine, vault) = (self.engine.clone(), vault.clone());
            pool.spawn(Box::new(move || {
                // A failure here is seen again, and reported, by the read that needs the block.
                let _ = engine.block(&vault, &id);
                engine.queued.fetch_sub(1, Ordering::AcqRel);
            }));
        }
        blocks.len()
    }
}

/// A handle for background work (read-ahead jobs): reaches the vault and loads blocks into
/// the shared cache, and outlives any borrow.
pub struct Loader {
    vault: Arc<Vault>,
    engine: Arc<Engine>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader").finish_non_exhaustive()
    }
}

impl Loader {
    /// The vault (its catalog, for block maps).
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Where a block is now (asked of the catalog unless answered recently).
    pub fn locate(&self, id: &BlockId) -> Option<(BlockLocation, PackState)> {
        self.engine.locate(id)
    }

    /// Loads blocks into the cache unless they are there or under way, neighbouring frames
    /// with one read; errors are left for the reads that need the blocks to see and report.
    pub fn warm_many(&self, ids: &[BlockId]) {
        self.engine.warm_many(&self.vault, ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_frame_in_a_joint_read_spoils_only_its_own_block() {
        use crate::ingest::{backup, BackupOptions};
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        for i in 0..20u32 {
            let body = format!("file {i} ").repeat(500 + i as usize);
            std::fs::write(src.join(format!("f{i:02}")), body).unwrap();
        }
        let vault =
            Vault::create(&dir.path().join("vault"), b"pw", crate::vault::TEST_OPTIONS).unwrap();
        let options = BackupOptions {
            paths: vec![src],
            ..BackupOptions::default()
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        backup(&vault, &options, &crate::progress::NoProgress, &stop).unwrap();

        let locations = vault.catalog().block_locations().unwrap();
        let mut ids: Vec<BlockId> = locations.keys().copied().collect();
        ids.sort_by_key(|id| locations[id].0.offset);
        assert!(ids.len() >= 20);
        let victim = ids[ids.len() / 2];
        let loc = locations[&victim].0;
        let pack = crate::store::LocalBackend::new(vault.root().join("packs")).path_of(&loc.pack);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(pack)
            .unwrap();
        let at = loc.offset + u64::from(loc.stored_len) / 2;
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, at).unwrap();
        file.write_all_at(&[byte[0] ^ 1], at).unwrap();

        let reader = BlockReader::new(&vault).unwrap();
        reader.warm_many(&ids);
        let times = reader.read_times();
        assert_eq!(
            times.blocks,
            ids.len() as u64 - 1,
            "every good block decoded"
        );
        assert!(
            times.reads <= 2,
            "{} frames in {} reads",
            ids.len(),
            times.reads
        );
        assert!(
            times.stored_bytes
                >= locations
                    .values()
                    .map(|(l, _)| u64::from(l.stored_len))
                    .sum::<u64>()
        );
        for id in &ids {
            let (loc, _) = locations[id];
            let got = reader.read_block(id, loc.raw_len);
            if *id == victim {
                assert!(
                    matches!(got, Err(StoreError::CorruptFrame { .. })),
                    "{got:?}"
                );
            } else {
                assert_eq!(vault.codec().id_of(&got.unwrap()), *id);
            }
        }
        assert_eq!(
            reader.read_times().blocks,
            ids.len() as u64 - 1,
            "no good block decoded twice"
        );

        // Whole-block reads into the caller's buffer: from the cache when there, else decoded
        // straight into the buffer and not cached; damage is the same error.
        reader.clear_cache();
        let misses_before = reader.cache_stats().misses;
        for id in &ids {
            let (loc, _) = locations[id];
            let mut out = vec![0u8; loc.raw_len as usize];
            let got = reader.read_block_to(id, &mut out);
            if *id == victim {
                assert!(
                    matches!(got, Err(StoreError::CorruptFrame { .. })),
                    "{got:?}"
                );
            } else {
                got.unwrap();
                assert_eq!(vault.codec().id_of(&out), *id);
            }
        }
        let stats = reader.cache_stats();
        assert_eq!(stats.blocks, 0, "direct reads cache nothing");
        assert_eq!(stats.misses - misses_before, ids.len() as u64, "{stats:?}");
    }

    /// A reader that started before a backup finds that backup's blocks, one by one and in
    /// a read-ahead batch: the locator asks the catalog, it holds no map loaded at start.
    #[test]
    fn a_reader_finds_the_blocks_of_a_backup_committed_after_it_started() {
        use crate::ingest::{backup, BackupOptions};
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("first"), "first ".repeat(1000)).unwrap();
        let vault =
            Vault::create(&dir.path().join("vault"), b"pw", crate::vault::TEST_OPTIONS).unwrap();
        let options = BackupOptions {
            paths: vec![src.clone()],
            ..BackupOptions::default()
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        backup(&vault, &options, &crate::progress::NoProgress, &stop).unwrap();
        let before: std::collections::HashSet<BlockId> = vault
            .catalog()
            .block_locations()
            .unwrap()
            .into_keys()
            .collect();
        let reader = BlockReader::new(&vault).unwrap();
        // A reader of a vault this small loads every location at its first expect: blocks
        // committed after that are still found.
        let known: Vec<BlockId> = before.iter().copied().collect();
        reader.expect(&known);
        assert_eq!(
            vault.catalog().block_count().unwrap(),
            known.len() as u64,
            "the kept count is the number of block rows"
        );

        for i in 0..5 {
            std::fs::write(
                src.join(format!("later-{i}")),
                format!("later {i} ").repeat(900),
            )
            .unwrap();
        }
        backup(&vault, &options, &crate::progress::NoProgress, &stop).unwrap();
        let locations = vault.catalog().block_locations().unwrap();
        let new: Vec<BlockId> = locations
            .keys()
            .filter(|id| !before.contains(id))
            .copied()
            .collect();
        assert_eq!(new.len(), 5);
        assert_eq!(
            vault.catalog().block_count().unwrap(),
            locations.len() as u64
        );
        let (first, rest) = new.split_first().unwrap();
        let got = reader
            .read_block(first, locations[first].0.raw_len)
            .unwrap();
        assert_eq!(vault.codec().id_of(&got), *first);
        reader.warm_many(rest);
        assert_eq!(
            reader.read_times().blocks,
            5,
            "the batch found every new block"
        );
        for id in rest {
            let got = reader.read_block(id, locations[id].0.raw_len).unwrap();
            assert_eq!(vault.codec().id_of(&got), *id);
        }
        assert_eq!(
            reader.read_times().blocks,
            5,
            "the batch's blocks came from the cache"
        );
    }
}

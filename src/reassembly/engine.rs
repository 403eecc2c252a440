//! The block engine every reader shares: the in-memory locator, the decoded-block cache, and
//! the read-ahead workers; frames are fetched by the pack reader ([`crate::store::pack_reader`]).
//!
//! Invariants: a block enters the cache only verified; the locator is replaced wholesale
//! (never edited) when a block is unknown or still in transit, so a backup or seed import
//! committed after the reader started becomes readable; read-ahead never reports errors (the
//! read that needs the block does). It knows nothing of files, paths or points.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::Instant;

use super::cache::{Block, BlockCache, CacheStats};
use crate::catalog::{BlockLocation, PackState};
use crate::error::Result;
use crate::store::pack_reader::{FrameAt, PackReadStats, PackReader};
use crate::store::{BlockId, IdMap, StoreError};
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

/// Where the time of block reads went, summed over every thread (ns), and how much was read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadTimes {
    /// Looking blocks up in the in-memory locator.
    pub locate_ns: u64,
    /// Reading frames from packs.
    pub read_ns: u64,
    /// Opening, decompressing and verifying frames.
    pub decode_ns: u64,
    /// Blocks decoded (cache misses that reached the store).
    pub blocks: u64,
    /// Plaintext bytes of those blocks.
    pub plain_bytes: u64,
    /// Bytes read from packs (frames, and the gaps between frames read together).
    pub stored_bytes: u64,
    /// Reads from packs (one per frame, or per run of neighbouring frames).
    pub reads: u64,
}

#[derive(Default)]
struct Counters {
    locate_ns: AtomicU64,
    decode_ns: AtomicU64,
    blocks: AtomicU64,
    plain_bytes: AtomicU64,
    /// Reads from packs, counted by the pack reader.
    packs: PackReadStats,
}

impl Counters {
    fn snapshot(&self) -> ReadTimes {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ReadTimes {
            locate_ns: g(&self.locate_ns),
            read_ns: self.packs.read_ns(),
            decode_ns: g(&self.decode_ns),
            blocks: g(&self.blocks),
            plain_bytes: g(&self.plain_bytes),
            stored_bytes: self.packs.bytes(),
            reads: self.packs.reads(),
        }
    }
}

fn elapsed_ns(since: Instant) -> u64 {
    since.elapsed().as_nanos() as u64
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

/// What a block read needs, shared with read-ahead threads.
struct Engine {
    /// Replaced wholesale when a block is not found: a backup or seed import committed since.
    locator: RwLock<Arc<Locator>>,
    /// Held while the locator is reloaded, so concurrent misses reload once.
    reloading: Mutex<()>,
    cache: BlockCache,
    counters: Counters,
    /// Read-ahead loads queued or running.
    queued: AtomicUsize,
}

type Locator = IdMap<(BlockLocation, PackState)>;

impl Engine {
    /// The pack reader of `vault`, counting into this engine's counters.
    fn packs<'a>(&'a self, vault: &'a Vault) -> PackReader<'a> {
        PackReader::new(vault.backend(), &self.counters.packs)
    }

    fn locate(&self, id: &BlockId) -> Option<(BlockLocation, PackState)> {
        let locator = self.locator.read().unwrap_or_else(|e| e.into_inner());
        locator.get(id).copied()
    }

    /// Where a block is, reloading the locator once if it is unknown or still in transit.
    fn locate_fresh(&self, vault: &Vault, id: &BlockId) -> Option<(BlockLocation, PackState)> {
        if let Some(found @ (_, PackState::Stored)) = self.locate(id) {
            return Some(found);
        }
        let seen = Arc::as_ptr(&self.locator.read().unwrap_or_else(|e| e.into_inner()));
        let _reloading = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let now = Arc::as_ptr(&self.locator.read().unwrap_or_else(|e| e.into_inner()));
        if now == seen {
            // Nobody reloaded while we waited: do it. A catalog error leaves the old map.
            if let Ok(fresh) = vault.catalog().block_locations() {
                *self.locator.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
            }
        }
        self.locate(id)
    }

    /// Reads and decodes one block, bypassing the cache.
    fn load(&self, vault: &Vault, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        let loc = self.locate_readable(vault, id)?;
        self.packs(vault)
            .with_frame(frame_at(&loc), |frame| self.decode(vault, id, &loc, frame))
    }

    /// Where a block's frame is, if it can be read now (timed as locating).
    fn locate_readable(&self, vault: &Vault, id: &BlockId) -> Result<BlockLocation, StoreError> {
        let t = Instant::now();
        let found = self.locate_fresh(vault, id);
        self.counters
            .locate_ns
            .fetch_add(elapsed_ns(t), Ordering::Relaxed);
        match found {
            None => Err(StoreError::UnknownBlock { block: *id }),
            Some((loc, PackState::InTransit)) => Err(StoreError::MissingPack { pack: loc.pack }),
            Some((loc, PackState::Stored)) => Ok(loc),
        }
    }

    /// Counts one decoded block of `plain_len` bytes, decoded since `since`.
    fn count_decoded(&self, since: Instant, plain_len: u64) {
        let c = &self.counters;
        c.decode_ns.fetch_add(elapsed_ns(since), Ordering::Relaxed);
        c.blocks.fetch_add(1, Ordering::Relaxed);
        c.plain_bytes.fetch_add(plain_len, Ordering::Relaxed);
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
        self.count_decoded(t, u64::from(loc.raw_len));
        Ok(plain)
    }

    /// Loads those of `ids` that are neither cached nor under way, neighbouring frames of a
    /// pack with one read. Errors are dropped: the read that needs the block meets them again
    /// and reports them.
    fn warm_many(&self, vault: &Vault, ids: &[BlockId]) {
        let mut wanted: Vec<(BlockId, BlockLocation)> = ids
            .iter()
            .filter(|id| **id != BlockId::ZERO && !self.cache.contains_or_loading(id))
            .filter_map(|id| match self.locate(id) {
                Some((loc, PackState::Stored)) => Some((*id, loc)),
                _ => None,
            })
            .collect();
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

    /// Reads and decodes one block straight into `out` (its exact length), bypassing the
    /// cache.
    fn load_to(&self, vault: &Vault, id: &BlockId, out: &mut [u8]) -> Result<(), StoreError> {
        let loc = self.locate_readable(vault, id)?;
        self.packs(vault).with_frame(frame_at(&loc), |frame| {
            let t = Instant::now();
            vault
                .codec()
                .decode_to_slice(id, frame, out)
                .map_err(|_| corrupt(id, &loc))?;
            self.count_decoded(t, out.len() as u64);
            Ok(())
        })
    }

    fn block(&self, vault: &Vault, id: &BlockId) -> Result<Block, StoreError> {
        self.cache.get_or_load(id, || self.load(vault, id))
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Read-ahead threads. Idle threads block on the queue: a spinning pool (rayon's) would take
/// CPU from the readers it is meant to help, on a machine with few cores.
struct Workers {
    queue: mpsc::Sender<Job>,
    threads: usize,
}

impl Workers {
    fn start(threads: usize, spare_a_cpu: bool) -> Option<Workers> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads {
            let jobs = jobs.clone();
            let worker = move || {
                if spare_a_cpu {
                    leave_first_cpu();
                }
                loop {
                    let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match next {
                        Ok(job) => job(),
                        Err(_) => return, // the reader is gone
                    }
                }
            };
            std::thread::Builder::new()
                .name(format!("synvault-ra-{i}"))
                .spawn(worker)
                .ok()?;
        }
        Some(Workers { queue, threads })
    }

    fn spawn(&self, job: Job) {
        // Fails only once every worker has exited, which happens only after the reader is
        // dropped; then nobody waits for read-ahead.
        let _ = self.queue.send(job);
    }
}

/// Takes the calling thread off the first CPU it may run on, if it may run on others
/// (best effort: an affinity the system refuses leaves the thread where it was).
fn leave_first_cpu() {
    let Ok(mut cpus) = rustix::thread::sched_getaffinity(None) else {
        return;
    };
    if cpus.count() < 2 {
        return;
    }
    if let Some(first) = (0..rustix::thread::CpuSet::MAX_CPU).find(|&c| cpus.is_set(c)) {
        cpus.unset(first);
        let _ = rustix::thread::sched_setaffinity(None, &cpus);
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
    /// Loads the block locator of the vault; default cache, no read-ahead.
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
        let locator = vault.catalog().block_locations()?;
        let pool = match (&vault, options.readahead_threads) {
            (VaultRef::Shared(_), n) if n > 0 => Workers::start(n, options.readahead_spares_a_cpu),
            _ => None,
        };
        Ok(BlockReader {
            engine: Arc::new(Engine {
                locator: RwLock::new(Arc::new(locator)),
                reloading: Mutex::new(()),
                cache: BlockCache::new(options.cache_bytes),
                counters: Counters::default(),
                queued: AtomicUsize::new(0),
            }),
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

    /// Where a block is, as of the last locator load.
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
    pub fn buffer_stats(&self) -> super::buffers::PoolStats {
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
        let max_queued = 2 * pool.threads + 2;
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

    /// Where a block is, as of the last locator load.
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
}

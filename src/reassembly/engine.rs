//! The block engine every reader shares: the in-memory locator, positional pack reads, the
//! decoded-block cache, and the read-ahead workers.
//!
//! Invariants: a block enters the cache only verified; the locator is replaced wholesale
//! (never edited) when a block is unknown or still in transit, so a backup or seed import
//! committed after the reader started becomes readable; read-ahead never reports errors (the
//! read that needs the block does). It knows nothing of files, paths or points.

use std::fs::File;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::Instant;

use super::cache::{Block, BlockCache, CacheStats};
use crate::catalog::{BlockLocation, PackState};
use crate::error::Result;
use crate::store::{BlockId, IdMap, LocalBackend, PackId, StoreError};
use crate::vault::Vault;
/// Default size of the block cache: 256 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;
/// Default read-ahead window of a sequential reader: 16 MiB.
pub const DEFAULT_READAHEAD_BYTES: u64 = 16 << 20;
const OPEN_PACKS: usize = 64;

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
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
            readahead_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            readahead_bytes: DEFAULT_READAHEAD_BYTES,
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
    /// Frame bytes read from packs.
    pub stored_bytes: u64,
}

#[derive(Default)]
struct Counters {
    locate_ns: AtomicU64,
    read_ns: AtomicU64,
    decode_ns: AtomicU64,
    blocks: AtomicU64,
    plain_bytes: AtomicU64,
    stored_bytes: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ReadTimes {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ReadTimes {
            locate_ns: g(&self.locate_ns),
            read_ns: g(&self.read_ns),
            decode_ns: g(&self.decode_ns),
            blocks: g(&self.blocks),
            plain_bytes: g(&self.plain_bytes),
            stored_bytes: g(&self.stored_bytes),
        }
    }
}

fn elapsed_ns(since: Instant) -> u64 {
    since.elapsed().as_nanos() as u64
}

/// Open pack files, read with `pread`.
struct PackFiles {
    layout: LocalBackend,
    open: Mutex<lru::LruCache<PackId, Arc<File>>>,
}

impl PackFiles {
    fn new(vault: &Vault) -> PackFiles {
        PackFiles {
            layout: LocalBackend::new(vault.root().join("packs")),
            open: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(OPEN_PACKS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }

    fn file(&self, pack: &PackId) -> Result<Arc<File>, StoreError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = open.get(pack) {
            return Ok(file.clone());
        }
        let path = self.layout.path_of(pack);
        let file = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingPack { pack: *pack })
            }
            Err(source) => {
                return Err(StoreError::Io {
                    what: "open pack",
                    path,
                    source,
                })
            }
        };
        open.put(*pack, file.clone());
        Ok(file)
    }

    /// Reads a frame into the start of `buf`, which grows (zeroed, once) to hold it and is
    /// never shrunk, so a buffer used again costs neither allocation nor initialization.
    fn read<'b>(
        &self,
        loc: &BlockLocation,
        buf: &'b mut Vec<u8>,
    ) -> Result<&'b mut [u8], StoreError> {
        let file = self.file(&loc.pack)?;
        let len = loc.stored_len as usize;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let frame = &mut buf[..len];
        let mut done = 0;
        while done < len {
            match rustix::io::pread(&*file, &mut frame[done..], loc.offset + done as u64) {
                Ok(0) => {
                    return Err(StoreError::ShortPack {
                        pack: loc.pack,
                        offset: loc.offset,
                        len,
                    })
                }
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(StoreError::Io {
                        what: "read pack",
                        path: self.layout.path_of(&loc.pack),
                        source: e.into(),
                    })
                }
            }
        }
        Ok(frame)
    }
}

thread_local! {
    /// This thread's frame buffer: frames are read into it and decrypted in place. One buffer
    /// used over and over stays in the CPU's cache; a fresh or recycled one per block made
    /// reading a frame several times slower. It grows to the largest frame the thread read.
    static FRAME: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// What a block read needs, shared with read-ahead threads.
struct Engine {
    /// Replaced wholesale when a block is not found: a backup or seed import committed since.
    locator: RwLock<Arc<Locator>>,
    /// Held while the locator is reloaded, so concurrent misses reload once.
    reloading: Mutex<()>,
    cache: BlockCache,
    packs: PackFiles,
    counters: Counters,
    /// Read-ahead loads queued or running.
    queued: AtomicUsize,
}

type Locator = IdMap<(BlockLocation, PackState)>;

impl Engine {
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
        let t = Instant::now();
        let found = self.locate_fresh(vault, id);
        self.counters
            .locate_ns
            .fetch_add(elapsed_ns(t), Ordering::Relaxed);
        let Some((loc, state)) = found else {
            return Err(StoreError::UnknownBlock { block: *id });
        };
        if state == PackState::InTransit {
            return Err(StoreError::MissingPack { pack: loc.pack });
        }
        let t = Instant::now();
        let mut scratch = FRAME.take();
        let frame = match self.packs.read(&loc, &mut scratch) {
            Ok(frame) => frame,
            Err(e) => {
                FRAME.set(scratch);
                return Err(e);
            }
        };
        self.counters
            .read_ns
            .fetch_add(elapsed_ns(t), Ordering::Relaxed);
        let t = Instant::now();
        let buffers = self.cache.buffers();
        let mut plain = buffers.take(loc.raw_len as usize);
        let decoded = vault
            .codec()
            .decode_into(id, frame, loc.raw_len as usize, &mut plain);
        FRAME.set(scratch);
        if decoded.is_err() {
            buffers.give(plain);
            return Err(StoreError::CorruptFrame {
                block: *id,
                pack: loc.pack,
                offset: loc.offset,
            });
        }
        let c = &self.counters;
        c.decode_ns.fetch_add(elapsed_ns(t), Ordering::Relaxed);
        c.blocks.fetch_add(1, Ordering::Relaxed);
        c.plain_bytes
            .fetch_add(u64::from(loc.raw_len), Ordering::Relaxed);
        c.stored_bytes
            .fetch_add(u64::from(loc.stored_len), Ordering::Relaxed);
        Ok(plain)
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
    fn start(threads: usize) -> Option<Workers> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads {
            let jobs = jobs.clone();
            let worker = move || loop {
                let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                match next {
                    Ok(job) => job(),
                    Err(_) => return, // the reader is gone
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
            (VaultRef::Shared(_), n) if n > 0 => Workers::start(n),
            _ => None,
        };
        Ok(BlockReader {
            engine: Arc::new(Engine {
                locator: RwLock::new(Arc::new(locator)),
                reloading: Mutex::new(()),
                cache: BlockCache::new(options.cache_bytes),
                packs: PackFiles::new(&vault),
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

    /// Reads and decodes one block without the cache (benchmarks, scrubbing).
    pub fn read_block_uncached(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        self.engine.load(&self.vault, id)
    }

    /// The frame of a block as stored, read from its pack (the bench times decoding apart).
    pub(crate) fn read_frame(&self, loc: &BlockLocation) -> Result<Vec<u8>, StoreError> {
        let mut frame = Vec::new();
        self.engine.packs.read(loc, &mut frame)?;
        Ok(frame)
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

    /// Loads a block into the cache unless it is there or under way; errors are left for the
    /// read that needs the block to see and report.
    pub fn warm(&self, id: &BlockId) {
        if *id != BlockId::ZERO && !self.engine.cache.contains_or_loading(id) {
            let _ = self.engine.block(&self.vault, id);
        }
    }
}

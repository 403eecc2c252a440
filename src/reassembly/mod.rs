//! Reassembly: turning a recovery point back into bytes.
//!
//! [`BlockReader`] is the engine every reader shares (restore, `cat`, the mount, the bench):
//! it finds a block through an in-memory locator (no SQLite per block), reads its frame from
//! the pack with a positional read, decodes it (open, decompress, verify) and keeps the
//! plaintext in a byte-bounded LRU ([`cache::BlockCache`]). With a shared vault handle it also
//! runs read-ahead on its own thread pool. [`PointReader`] resolves paths of one point to
//! entries and serves `read_at` over a file's block list by binary search; [`FileReader`] adds
//! sequential detection to trigger read-ahead. [`view::View`] answers what a file system asks
//! (lookup, attributes, directory pages, reads) for the mount. Restore ([`restore`]) is built
//! on the same engine.
//!
//! Packs are read with `pread` rather than through memory maps: mapped pages of packs would
//! count towards the reader's resident memory, and the mount promises a peak RSS bounded by
//! the cache size.

pub mod cache;
pub mod profile;
pub mod restore;
pub mod view;

use std::collections::HashMap;
use std::fs::File;
use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::Instant;

pub use cache::{Block, BlockCache, CacheStats};

use crate::catalog::{BlockLocation, Content, Entry, EntryKind, PackState, RecoveryPoint, TreeId};
use crate::error::{Error, Result};
use crate::store::{BlockId, LocalBackend, PackId, StoreError};
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

    /// Reads a frame into `frame` (emptied first; its capacity is reused).
    fn read(&self, loc: &BlockLocation, mut frame: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let file = self.file(&loc.pack)?;
        let len = loc.stored_len as usize;
        frame.clear();
        frame.reserve_exact(len);
        // Into the spare capacity: no zeroing of a buffer the read overwrites anyway.
        while frame.len() < len {
            let at = loc.offset + frame.len() as u64;
            match rustix::io::pread(&*file, rustix::buffer::spare_capacity(&mut frame), at) {
                Ok(0) => {
                    return Err(StoreError::ShortPack {
                        pack: loc.pack,
                        offset: loc.offset,
                        len,
                    })
                }
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(StoreError::Io {
                        what: "read pack",
                        path: self.layout.path_of(&loc.pack),
                        source: e.into(),
                    })
                }
            }
        }
        // The capacity may exceed the frame; a read may have filled past its end.
        frame.truncate(len);
        Ok(frame)
    }
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

type Locator = HashMap<BlockId, (BlockLocation, PackState)>;

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
        let frame = self
            .packs
            .read(&loc, self.cache.take_buffer(loc.stored_len as usize))?;
        self.counters
            .read_ns
            .fetch_add(elapsed_ns(t), Ordering::Relaxed);
        let t = Instant::now();
        let plain = vault
            .codec()
            .decode(id, frame, loc.raw_len as usize)
            .map_err(|_| StoreError::CorruptFrame {
                block: *id,
                pack: loc.pack,
                offset: loc.offset,
            })?;
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

    /// Hit and miss counts of the cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.engine.cache.stats()
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

    /// Starts decoding `blocks` on the read-ahead pool, skipping those cached or under way.
    /// Without a pool (borrowed vault, or no threads) this does nothing.
    pub fn prefetch(&self, blocks: &[(u64, BlockId, u32)]) {
        let (Some(pool), VaultRef::Shared(vault)) = (&self.pool, &self.vault) else {
            return;
        };
        // Bound the queue: a reader far ahead of the decoders gains nothing from more.
        let max_queued = 2 * pool.threads + 2;
        for &(_, id, _) in blocks {
            if id == BlockId::ZERO || self.engine.cache.contains_or_loading(&id) {
                continue;
            }
            if self.engine.queued.fetch_add(1, Ordering::AcqRel) >= max_queued {
                self.engine.queued.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            let (engine, vault) = (self.engine.clone(), vault.clone());
            pool.spawn(Box::new(move || {
                // A failure here is seen again, and reported, by the read that needs the block.
                let _ = engine.block(&vault, &id);
                engine.queued.fetch_sub(1, Ordering::AcqRel);
            }));
        }
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

/// Detects sequential access to one file and says which blocks to read ahead. Lock-free, so
/// concurrent readers of one file (kernel read-ahead, several threads) share it.
#[derive(Debug, Default)]
pub struct Sequential {
    /// One past the last block index read (0: nothing read yet).
    next: AtomicU64,
    /// One past the last block index already handed to read-ahead.
    ahead: AtomicU64,
}

impl Sequential {
    /// Records a read of blocks `first..=last`; returns the block range to read ahead, if the
    /// access continues the previous one.
    pub fn observe(
        &self,
        map: &BlockMap,
        first: usize,
        last: usize,
        window_bytes: u64,
    ) -> Option<Range<usize>> {
        let prev = self.next.swap(last as u64 + 1, Ordering::AcqRel) as usize;
        let sequential =
            (first == 0 && prev == 0) || (prev > 0 && (prev - 1..=prev).contains(&first));
        if !sequential {
            self.ahead.store(last as u64 + 1, Ordering::Release);
            return None;
        }
        let start = last + 1;
        let limit = map.blocks.get(start).map(|b| b.0 + window_bytes)?;
        let end = start
            + map.blocks[start..]
                .iter()
                .take_while(|b| b.0 < limit)
                .count();
        let done = self.ahead.fetch_max(end as u64, Ordering::AcqRel) as usize;
        let from = start.max(done);
        (from < end).then_some(from..end)
    }
}

/// Fills `buf` from `map` at `offset` with blocks from `get`; zero blocks are filled in
/// without a call. Returns the bytes filled (short only at the end of the file).
pub(crate) fn fill<E>(
    map: &BlockMap,
    offset: u64,
    buf: &mut [u8],
    mut get: impl FnMut(&BlockId, u32) -> Result<Block, E>,
) -> Result<usize, E> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        let Some(i) = map.block_at(at) else { break };
        let (start, id, len) = map.blocks[i];
        let from = (at - start) as usize;
        let n = (len as usize - from).min(buf.len() - done);
        if id == BlockId::ZERO {
            buf[done..done + n].fill(0);
        } else {
            let block = get(&id, len)?;
            let avail = block.len().saturating_sub(from).min(n);
            buf[done..done + avail].copy_from_slice(&block[from..from + avail]);
            buf[done + avail..done + n].fill(0);
        }
        done += n;
    }
    Ok(done)
}

/// A file's blocks with their starting offsets, for binary search.
#[derive(Clone, Debug)]
pub struct BlockMap {
    /// (offset, block, length), ascending by offset.
    pub blocks: Vec<(u64, BlockId, u32)>,
    pub size: u64,
}

impl BlockMap {
    /// Lays out a content's blocks.
    pub fn new(content: &Content) -> BlockMap {
        let mut offset = 0;
        let blocks = content
            .blocks
            .iter()
            .map(|(id, len)| {
                let at = offset;
                offset += u64::from(*len);
                (at, *id, *len)
            })
            .collect();
        BlockMap {
            blocks,
            size: content.size,
        }
    }

    /// A map of no blocks.
    pub fn empty() -> BlockMap {
        BlockMap {
            blocks: Vec::new(),
            size: 0,
        }
    }

    /// The index of the block holding `offset`.
    pub fn block_at(&self, offset: u64) -> Option<usize> {
        if offset >= self.size {
            return None;
        }
        self.blocks
            .partition_point(|(start, _, _)| *start <= offset)
            .checked_sub(1)
    }

    /// The indices of the blocks a read of `len` bytes at `offset` touches.
    pub fn blocks_of(&self, offset: u64, len: u64) -> Option<(usize, usize)> {
        let first = self.block_at(offset)?;
        let end = offset.saturating_add(len.max(1)).min(self.size);
        let last = self.block_at(end - 1)?;
        Some((first, last))
    }

    /// Bytes of the blocks that hold data (zero blocks are holes).
    pub fn allocated_bytes(&self) -> u64 {
        self.blocks
            .iter()
            .filter(|(_, id, _)| *id != BlockId::ZERO)
            .map(|(_, _, len)| u64::from(*len))
            .sum()
    }
}

/// Reads one recovery point.
pub struct PointReader<'v> {
    vault: &'v Vault,
    point: RecoveryPoint,
    blocks: Arc<BlockReader<'v>>,
}

impl std::fmt::Debug for PointReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointReader")
            .field("point", &self.point.id)
            .finish()
    }
}

/// Splits a point path (`a/b/c`, leading `/` optional) into components.
pub fn path_components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// An entry standing for the root directory of `point`.
pub fn root_entry(point: &RecoveryPoint) -> Entry {
    let root = &point.root;
    Entry {
        name: Vec::new(),
        kind: EntryKind::Dir,
        mode: root.mode,
        uid: root.uid,
        gid: root.gid,
        mtime_ns: root.mtime_ns,
        ctime_ns: root.mtime_ns,
        size: 0,
        inode: 0,
        nlink: 1,
        content: None,
        subtree: Some(point.root_tree),
        target: None,
        rdev: 0,
        xattrs: root.xattrs.clone(),
    }
}

impl<'v> PointReader<'v> {
    /// A reader over `point`, sharing a block reader.
    pub fn new(
        vault: &'v Vault,
        point: RecoveryPoint,
        blocks: Arc<BlockReader<'v>>,
    ) -> PointReader<'v> {
        PointReader {
            vault,
            point,
            blocks,
        }
    }

    /// The point read.
    pub fn point(&self) -> &RecoveryPoint {
        &self.point
    }

    /// The block reader.
    pub fn blocks(&self) -> &BlockReader<'v> {
        &self.blocks
    }

    /// An entry standing for the point's root directory.
    pub fn root_entry(&self) -> Entry {
        root_entry(&self.point)
    }

    /// The entries of a directory tree.
    pub fn list(&self, tree: &TreeId) -> Result<Vec<Entry>> {
        Ok(self.vault.catalog().tree_entries(tree)?)
    }

    /// Resolves a path of the point. The empty path is the root.
    pub fn lookup(&self, path: &[u8]) -> Result<Entry> {
        let mut entry = self.root_entry();
        for name in path_components(path) {
            let Some(tree) = entry.subtree.filter(|_| entry.kind == EntryKind::Dir) else {
                return Err(self.no_such(path));
            };
            entry = self
                .list(&tree)?
                .into_iter()
                .find(|e| e.name == name)
                .ok_or_else(|| self.no_such(path))?;
        }
        Ok(entry)
    }

    fn no_such(&self, path: &[u8]) -> Error {
        Error::NoSuchPath {
            point: self.point.id.short().to_string(),
            path: String::from_utf8_lossy(path).into_owned(),
        }
    }

    /// The block map of a file entry.
    pub fn block_map(&self, entry: &Entry) -> Result<BlockMap> {
        match entry.content {
            Some(c) => Ok(BlockMap::new(&self.vault.catalog().content(&c)?)),
            None => Ok(BlockMap::empty()),
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    pub fn read_at(
        &self,
        map: &BlockMap,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StoreError> {
        fill(map, offset, buf, |id, len| self.blocks.read_block(id, len))
    }

    /// Opens a file entry for reading with sequential read-ahead.
    pub fn open(&self, entry: &Entry) -> Result<FileReader<'_, 'v>> {
        Ok(FileReader {
            blocks: &self.blocks,
            map: Arc::new(self.block_map(entry)?),
            sequential: Sequential::default(),
        })
    }
}

/// One open file: its block map and read-ahead state.
#[derive(Debug)]
pub struct FileReader<'r, 'v> {
    blocks: &'r BlockReader<'v>,
    map: Arc<BlockMap>,
    sequential: Sequential,
}

impl FileReader<'_, '_> {
    /// The file's block map.
    pub fn map(&self) -> &BlockMap {
        &self.map
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.map.size
    }

    /// Reads up to `buf.len()` bytes at `offset`, starting read-ahead when access is
    /// sequential; returns how many were read (0 at the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let blocks = self.blocks;
        if let Some((first, last)) = self.map.blocks_of(offset, buf.len() as u64) {
            let window = blocks.options().readahead_bytes;
            if let Some(ahead) = self.sequential.observe(&self.map, first, last, window) {
                blocks.prefetch(&self.map.blocks[ahead]);
            }
        }
        fill(&self.map, offset, buf, |id, len| blocks.read_block(id, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> BlockMap {
        BlockMap::new(&Content {
            size: 10,
            blocks: vec![
                (BlockId([1; 32]), 4),
                (BlockId::ZERO, 3),
                (BlockId([2; 32]), 3),
            ],
        })
    }

    #[test]
    fn block_map_binary_search() {
        let map = map();
        assert_eq!(map.block_at(0), Some(0));
        assert_eq!(map.block_at(3), Some(0));
        assert_eq!(map.block_at(4), Some(1));
        assert_eq!(map.block_at(9), Some(2));
        assert_eq!(map.block_at(10), None);
        assert_eq!(map.blocks_of(3, 2), Some((0, 1)));
        assert_eq!(map.blocks_of(5, 100), Some((1, 2)));
        assert_eq!(map.allocated_bytes(), 7);
    }

    #[test]
    fn fill_reads_across_blocks_and_holes() {
        let map = map();
        let get = |id: &BlockId, len: u32| -> Result<Block, ()> {
            Ok(Arc::new(vec![id.0[0]; len as usize]))
        };
        let mut buf = [9u8; 8];
        assert_eq!(fill(&map, 2, &mut buf, get), Ok(8));
        assert_eq!(buf, [1, 1, 0, 0, 0, 2, 2, 2]);
        assert_eq!(fill(&map, 9, &mut buf, get), Ok(1));
        assert_eq!(fill(&map, 10, &mut buf, get), Ok(0));
    }

    #[test]
    fn sequential_access_reads_ahead_once() {
        let content = Content {
            size: 10 << 20,
            blocks: (0..10u8).map(|i| (BlockId([i + 1; 32]), 1 << 20)).collect(),
        };
        let map = BlockMap::new(&content);
        let seq = Sequential::default();
        assert_eq!(seq.observe(&map, 0, 0, 3 << 20), Some(1..4));
        assert_eq!(seq.observe(&map, 1, 1, 3 << 20), Some(4..5));
        assert_eq!(seq.observe(&map, 1, 1, 3 << 20), None, "all queued already");
        // A jump is not sequential; continuing from there is.
        assert_eq!(seq.observe(&map, 7, 7, 3 << 20), None);
        assert_eq!(seq.observe(&map, 8, 8, 3 << 20), Some(9..10));
        assert_eq!(seq.observe(&map, 9, 9, 3 << 20), None, "end of file");
    }
}

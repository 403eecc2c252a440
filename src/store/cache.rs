//! A bounded cache on local disk of the packs read from object storage, in front of its
//! backend: the first read of a pack fetches it whole in one request (a restore reads most of
//! the packs it touches), later reads are local `pread`s, so a mounted point browses at local
//! speed once its packs are here.
//!
//! A fetched pack is checked against its name (the blake3 of its bytes) before it enters the
//! cache, and frames are authenticated when opened, so a damaged cache file is never silently
//! read. The cache holds at most its size in packs, the least recently used go first; it may
//! be shared by several processes (a file another one evicts stays readable through the
//! handle that has it open). Writes go straight to the backend.
//!
//! Readers that know which packs they need next (a restore knows the blocks of the files it
//! is about to write) ask for them with [`Backend::prefetch`]: a few fetcher threads bring
//! them in with as many requests in flight as the backend takes uploads, so the round trips
//! overlap the decoding instead of waiting in front of it.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use super::backend::{create_private_dir_all, create_private_file, read_pack_file};
use super::{Backend, FileVerdict, PackId, Result, StoreError};

/// The backend `inner` with packs cached in `dir`, up to `max_bytes`.
pub struct PackCache {
    shared: Arc<Shared>,
    /// Started at the first [`Backend::prefetch`]; its threads end when the cache is dropped.
    prefetcher: std::sync::OnceLock<Prefetcher>,
}

/// What the readers and the fetcher threads share.
struct Shared {
    inner: Box<dyn Backend>,
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<CacheState>,
    /// One lock per pack being fetched, so two readers of it fetch it once.
    fetching: Mutex<HashMap<PackId, Arc<Mutex<()>>>>,
    /// Packs asked for ahead and not fetched yet, so each is queued once.
    wanted: Mutex<HashSet<PackId>>,
}

/// The queue of packs to fetch ahead, and the threads that fetch them.
struct Prefetcher {
    queue: Mutex<mpsc::SyncSender<PackId>>,
}

/// Packs in the cache, least recently used first, and open handles on some.
struct CacheState {
    packs: lru::LruCache<PackId, u64>,
    bytes: u64,
    open: lru::LruCache<PackId, Arc<File>>,
}

/// Handles kept open on cached packs.
const OPEN_PACKS: usize = 64;

/// Packs queued ahead at most, per fetch in flight: the queue stays short, so what is fetched
/// ahead is read soon (and not evicted first), and a later ask names the packs again anyway.
const QUEUED_PER_FETCHER: usize = 2;

impl std::fmt::Debug for PackCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackCache")
            .field("dir", &self.shared.dir)
            .field("max_bytes", &self.shared.max_bytes)
            .finish()
    }
}

impl PackCache {
    /// A cache in `dir` (made if missing; packs already there are adopted) before `inner`.
    pub fn new(inner: Box<dyn Backend>, dir: &Path, max_bytes: u64) -> Result<PackCache> {
        create_private_dir_all(dir).map_err(StoreError::io("create", dir))?;
        let mut packs = lru::LruCache::unbounded();
        let mut bytes = 0;
        for entry in fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
            let entry = entry.map_err(StoreError::io("list", dir))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(PackId::from_hex)
            else {
                // A fetch that was cut off: nobody else writes here.
                if name.to_str().is_some_and(|n| n.ends_with(".part")) {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            };
            let len = entry.metadata().map_err(StoreError::io("stat", dir))?.len();
            packs.put(id, len);
            bytes += len;
        }
        let open = lru::LruCache::new(
            std::num::NonZeroUsize::new(OPEN_PACKS).unwrap_or(std::num::NonZeroUsize::MIN),
        );
        let shared = Shared {
            inner,
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(CacheState { packs, bytes, open }),
            fetching: Mutex::default(),
            wanted: Mutex::default(),
        };
        shared.evict(&mut shared.lock());
        Ok(PackCache {
            shared: Arc::new(shared),
            prefetcher: std::sync::OnceLock::new(),
        })
    }

    /// The prefetch queue, its fetcher threads started on first use; `None` if no thread
    /// could start (then nothing is fetched ahead, and reads fetch what they need).
    fn prefetcher(&self) -> Option<&Prefetcher> {
        if let Some(started) = self.prefetcher.get() {
            return Some(started);
        }
        let fetchers = self.shared.inner.uploads_in_flight().max(1);
        let (queue, taken) = mpsc::sync_channel::<PackId>(fetchers * QUEUED_PER_FETCHER);
        let taken = Arc::new(Mutex::new(taken));
        for i in 0..fetchers {
            let (shared, taken) = (self.shared.clone(), taken.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("pack fetch {i}"))
                .spawn(move || shared.fetch_ahead(&taken));
            if spawned.is_err() && i == 0 {
                return None;
            }
        }
        let _ = self.prefetcher.set(Prefetcher {
            queue: Mutex::new(queue),
        });
        self.prefetcher.get()
    }
}

impl Shared {
    /// A fetcher thread: fetches the queued packs until the cache is dropped. A pack that
    /// cannot be fetched is left for the read that needs it, which reports the error.
    fn fetch_ahead(&self, taken: &Mutex<mpsc::Receiver<PackId>>) {
        loop {
            let next = taken.lock().unwrap_or_else(|e| e.into_inner()).recv();
            let Ok(id) = next else {
                return;
            };
            let _ = self.file(&id);
            self.wanted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path_of(&self, id: &PackId) -> PathBuf {
        self.dir.join(format!("{}.pack", id.to_hex()))
    }

    /// The cached file of pack `id`, fetched first if it is not here.
    fn file(&self, id: &PackId) -> Result<Arc<File>> {
        if let Some(file) = self.cached(id) {
            return Ok(file);
        }
        let one_fetch = {
            let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
            fetching.entry(*id).or_default().clone()
        };
        let _fetch = one_fetch.lock().unwrap_or_else(|e| e.into_inner());
        // Another reader may have fetched it while this one waited.
        let found = match self.cached(id) {
            Some(file) => Ok(file),
            None => self.fetch(id),
        };
        self.fetching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        found
    }

    /// An open handle on pack `id` if it is cached.
    fn cached(&self, id: &PackId) -> Option<Arc<File>> {
        let mut state = self.lock();
        state.packs.get(id)?;
        if let Some(file) = state.open.get(id) {
            return Some(file.clone());
        }
        match File::open(self.path_of(id)) {
            Ok(file) => {
                let file = Arc::new(file);
                state.open.put(*id, file.clone());
                Some(file)
            }
            // Evicted by another process: fetched again.
            Err(_) => {
                if let Some(len) = state.packs.pop(id) {
                    state.bytes -= len;
                }
                None
            }
        }
    }

    /// True if pack `id` is in the cache (a cheap look, no file opened).
    fn is_cached(&self, id: &PackId) -> bool {
        self.lock().packs.contains(id)
    }

    /// Fetches pack `id` whole, checks it against its name and puts it in the cache.
    fn fetch(&self, id: &PackId) -> Result<Arc<File>> {
        let bytes = self.inner.read_all(id)?;
        if PackId::of(&bytes) != *id {
            return Err(StoreError::CorruptPack {
                pack: *id,
                why: "its bytes do not match its name (blake3)",
            });
        }
        let path = self.path_of(id);
        let part = self
            .dir
            .join(format!("{}.{}.part", id.to_hex(), std::process::id()));
        let written = create_private_file(&part)
            .and_then(|mut f| f.write_all(&bytes))
            .and_then(|()| fs::rename(&part, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&part);
            return Err(StoreError::io("write to the pack cache", &part)(e));
        }
        let file = Arc::new(File::open(&path).map_err(StoreError::io("open", &path))?);
        let mut state = self.lock();
        state.packs.put(*id, bytes.len() as u64);
        state.bytes += bytes.len() as u64;
        state.open.put(*id, file.clone());
        self.evict(&mut state);
        Ok(file)
    }

    /// Removes the least recently used packs until the cache fits (the newest always stays).
    fn evict(&self, state: &mut CacheState) {
        while state.bytes > self.max_bytes && state.packs.len() > 1 {
            let Some((id, len)) = state.packs.pop_lru() else {
                break;
            };
            state.bytes -= len;
            state.open.pop(&id);
            let _ = fs::remove_file(self.path_of(&id));
        }
    }

    /// Forgets pack `id` (deleted from the store).
    fn drop_cached(&self, id: &PackId) {
        let mut state = self.lock();
        state.open.pop(id);
        if let Some(len) = state.packs.pop(id) {
            state.bytes -= len;
            let _ = fs::remove_file(self.path_of(id));
        }
    }
}

impl Backend for PackCache {
    fn put(&self, id: &PackId, bytes: &[u8]) -> Result<()> {
        self.shared.inner.put(id, bytes)
    }

    fn read_into(&self, id: &PackId, offset: u64, buf: &mut [u8]) -> Result<()> {
        let file = self.shared.file(id)?;
        read_pack_file(&file, id, offset, buf)
            .map_err(StoreError::io("read cached pack", self.shared.path_of(id)))?
    }

    fn fetches_ahead(&self) -> bool {
        true
    }

    /// Queues those of `packs` not cached, fetching or queued yet, in order, while the queue
    /// has room; the rest are left for a later ask or for the reads themselves.
    fn prefetch(&self, packs: &[PackId]) {
        let Some(prefetcher) = self.prefetcher() else {
            return;
        };
        let queue = prefetcher.queue.lock().unwrap_or_else(|e| e.into_inner());
        for id in packs {
            if self.shared.is_cached(id) {
                continue;
            }
            let mut wanted = self.shared.wanted.lock().unwrap_or_else(|e| e.into_inner());
            if wanted.contains(id) {
                continue;
            }
            match queue.try_send(*id) {
                Ok(()) => {
                    wanted.insert(*id);
                }
                Err(_) => return,
            }
        }
    }

    fn read_all(&self, id: &PackId) -> Result<Vec<u8>> {
        self.shared.inner.read_all(id)
    }

    fn size(&self, id: &PackId) -> Result<Option<u64>> {
        self.shared.inner.size(id)
    }

    fn list(&self) -> Result<Vec<(PackId, u64)>> {
        self.shared.inner.list()
    }

    fn delete(&self, id: &PackId) -> Result<()> {
        self.shared.drop_cached(id);
        self.shared.inner.delete(id)
    }

    fn put_file(&self, id: &PackId, from: &Path, len: u64) -> Result<FileVerdict> {
        self.shared.inner.put_file(id, from, len)
    }

    fn sync(&self) -> Result<()> {
        self.shared.inner.sync()
    }

    fn remove_temporary(&self) -> Result<usize> {
        self.shared.inner.remove_temporary()
    }

    fn uploads_in_flight(&self) -> usize {
        self.shared.inner.uploads_in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemBackend;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backend that counts whole-pack fetches. With `gather` set, each fetch waits (up to
    /// 5 s) until that many are in flight together, and the most seen at once is kept.
    #[derive(Default)]
    struct Counting {
        inner: MemBackend,
        fetches: AtomicUsize,
        gather: AtomicUsize,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl Backend for Arc<Counting> {
        fn put(&self, id: &PackId, bytes: &[u8]) -> Result<()> {
            self.inner.put(id, bytes)
        }
        fn read_into(&self, id: &PackId, offset: u64, buf: &mut [u8]) -> Result<()> {
            self.inner.read_into(id, offset, buf)
        }
        fn read_all(&self, id: &PackId) -> Result<Vec<u8>> {
            self.fetches.fetch_add(1, Ordering::Relaxed);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while self.most_in_flight.load(Ordering::SeqCst) < self.gather.load(Ordering::SeqCst)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
                self.most_in_flight
                    .fetch_max(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
            }
            let got = self.inner.read_all(id);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            got
        }
        fn uploads_in_flight(&self) -> usize {
            self.gather.load(Ordering::SeqCst).max(1)
        }
        fn size(&self, id: &PackId) -> Result<Option<u64>> {
            self.inner.size(id)
        }
        fn list(&self) -> Result<Vec<(PackId, u64)>> {
            self.inner.list()
        }
        fn delete(&self, id: &PackId) -> Result<()> {
            self.inner.delete(id)
        }
    }

    fn pack(seed: u8, len: usize) -> (PackId, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
        (PackId::of(&bytes), bytes)
    }

    /// A counting remote that holds four packs of 1,000 bytes.
    fn four_packs_of_1000() -> (Arc<Counting>, Vec<(PackId, Vec<u8>)>) {
        let remote = Arc::new(Counting::default());
        let packs: Vec<_> = (1..=4).map(|s| pack(s, 1000)).collect();
        for (id, bytes) in &packs {
            remote.put(id, bytes).unwrap();
        }
        (remote, packs)
    }

    #[test]
    fn a_pack_is_fetched_once_then_read_locally_and_the_cache_stays_within_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let (remote, packs) = four_packs_of_1000();
        let cache = PackCache::new(Box::new(remote.clone()), dir.path(), 2500).unwrap();
        let fetches = || remote.fetches.load(Ordering::Relaxed);
        let mut buf = [0u8; 10];
        for _ in 0..3 {
            cache.read_into(&packs[0].0, 100, &mut buf).unwrap();
            assert_eq!(&buf[..], &packs[0].1[100..110]);
        }
        assert_eq!(fetches(), 1, "read three times, fetched once");
        for (id, bytes) in &packs {
            cache.read_into(id, 990, &mut buf[..10]).unwrap();
            assert_eq!(&buf[..], &bytes[990..1000]);
        }
        let cached = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(cached, 2, "2,500 bytes hold two packs of 1,000");
        // Read past the end: short, not garbage.
        assert!(matches!(
            cache.read_into(&packs[3].0, 995, &mut buf),
            Err(StoreError::ShortPack { .. })
        ));
        // A new cache over the same directory adopts what is there.
        let again = PackCache::new(Box::new(remote.clone()), dir.path(), 2500).unwrap();
        let before = fetches();
        again.read_into(&packs[3].0, 0, &mut buf).unwrap();
        assert_eq!(fetches(), before, "adopted from disk");
    }

    #[test]
    fn a_pack_whose_bytes_do_not_match_its_name_never_enters_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let remote = MemBackend::default();
        let (id, _) = pack(7, 100);
        remote.put(&id, b"not those bytes").unwrap();
        let cache = PackCache::new(Box::new(remote), dir.path(), 1 << 20).unwrap();
        let mut buf = [0u8; 4];
        assert!(matches!(
            cache.read_into(&id, 0, &mut buf),
            Err(StoreError::CorruptPack { .. })
        ));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn packs_asked_for_ahead_are_fetched_together_and_then_read_locally() {
        let dir = tempfile::tempdir().unwrap();
        let (remote, packs) = four_packs_of_1000();
        let cache = PackCache::new(Box::new(remote.clone()), dir.path(), 1 << 20).unwrap();
        let mut buf = [0u8; 10];
        cache.read_into(&packs[3].0, 0, &mut buf).unwrap();
        remote.gather.store(3, Ordering::SeqCst);
        let ids: Vec<PackId> = packs.iter().map(|p| p.0).collect();
        // Asked twice, and with one already cached: each missing pack is fetched once.
        cache.prefetch(&ids);
        cache.prefetch(&ids);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while ids.iter().any(|id| !cache.shared.is_cached(id)) {
            assert!(std::time::Instant::now() < deadline, "prefetch never ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            remote.most_in_flight.load(Ordering::SeqCst),
            3,
            "the three missing packs were fetched at once"
        );
        assert_eq!(remote.fetches.load(Ordering::Relaxed), 4);
        for (id, bytes) in &packs {
            cache.read_into(id, 500, &mut buf).unwrap();
            assert_eq!(&buf[..], &bytes[500..510]);
        }
        assert_eq!(remote.fetches.load(Ordering::Relaxed), 4, "reads are local");
    }
}

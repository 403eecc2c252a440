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

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::backend::{create_private_dir_all, create_private_file, read_pack_file};
use super::{Backend, FileVerdict, PackId, Result, StoreError};

/// The backend `inner` with packs cached in `dir`, up to `max_bytes`.
pub struct PackCache {
    inner: Box<dyn Backend>,
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<CacheState>,
    /// One lock per pack being fetched, so two readers of it fetch it once.
    fetching: Mutex<HashMap<PackId, Arc<Mutex<()>>>>,
}

/// Packs in the cache, least recently used first, and open handles on some.
struct CacheState {
    packs: lru::LruCache<PackId, u64>,
    bytes: u64,
    open: lru::LruCache<PackId, Arc<File>>,
}

/// Handles kept open on cached packs.
const OPEN_PACKS: usize = 64;

impl std::fmt::Debug for PackCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackCache")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
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
        let cache = PackCache {
            inner,
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(CacheState { packs, bytes, open }),
            fetching: Mutex::default(),
        };
        cache.evict(&mut cache.lock());
        Ok(cache)
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
        self.inner.put(id, bytes)
    }

    fn read_into(&self, id: &PackId, offset: u64, buf: &mut [u8]) -> Result<()> {
        let file = self.file(id)?;
        read_pack_file(&file, id, offset, buf)
            .map_err(StoreError::io("read cached pack", self.path_of(id)))?
    }

    fn read_all(&self, id: &PackId) -> Result<Vec<u8>> {
        self.inner.read_all(id)
    }

    fn size(&self, id: &PackId) -> Result<Option<u64>> {
        self.inner.size(id)
    }

    fn list(&self) -> Result<Vec<(PackId, u64)>> {
        self.inner.list()
    }

    fn delete(&self, id: &PackId) -> Result<()> {
        self.drop_cached(id);
        self.inner.delete(id)
    }

    fn put_file(&self, id: &PackId, from: &Path, len: u64) -> Result<FileVerdict> {
        self.inner.put_file(id, from, len)
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    fn remove_temporary(&self) -> Result<usize> {
        self.inner.remove_temporary()
    }

    fn uploads_in_flight(&self) -> usize {
        self.inner.uploads_in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemBackend;

    /// A backend that counts whole-pack fetches.
    #[derive(Default)]
    struct Counting {
        inner: MemBackend,
        fetches: std::sync::atomic::AtomicUsize,
    }

    impl Backend for Arc<Counting> {
        fn put(&self, id: &PackId, bytes: &[u8]) -> Result<()> {
            self.inner.put(id, bytes)
        }
        fn read_into(&self, id: &PackId, offset: u64, buf: &mut [u8]) -> Result<()> {
            self.inner.read_into(id, offset, buf)
        }
        fn read_all(&self, id: &PackId) -> Result<Vec<u8>> {
            self.fetches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.read_all(id)
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

    #[test]
    fn a_pack_is_fetched_once_then_read_locally_and_the_cache_stays_within_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Arc::new(Counting::default());
        let packs: Vec<_> = (1..=4).map(|s| pack(s, 1000)).collect();
        for (id, bytes) in &packs {
            remote.put(id, bytes).unwrap();
        }
        let cache = PackCache::new(Box::new(remote.clone()), dir.path(), 2500).unwrap();
        let fetches = || remote.fetches.load(std::sync::atomic::Ordering::Relaxed);
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
}

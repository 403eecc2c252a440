//! A byte-bounded LRU cache of decoded blocks: plaintext that was opened, decompressed and
//! verified against its id, so a hit costs a hash lookup and nothing else.
//!
//! Invariants:
//! - Only verified plaintext enters the cache; errors are never cached (a damaged block fails
//!   every read that touches it, and a pack that arrives later is read when it is there).
//! - The bytes held (`Vec` capacities) never exceed the capacity after an insert returns,
//!   except for the one block being inserted when it alone is larger than the capacity: it is
//!   handed back to the caller but not kept.
//! - A block is loaded at most once at a time: a second reader of a block that is being loaded
//!   (by read-ahead, or by another thread) waits for that load instead of decoding it again.
//!
//! The cache knows nothing of packs or frames: the caller passes the loader.

use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use lru::LruCache;

use super::buffers::BufferPool;
use crate::store::block::IdHasher;
use crate::store::{BlockId, IdMap};

/// A decoded block, shared between the cache and its readers.
pub type Block = Arc<Vec<u8>>;

/// Hit and miss counts, and what the cache holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Lookups answered from the cache (or by waiting on a load already under way).
    pub hits: u64,
    /// Lookups that had to load the block.
    pub misses: u64,
    /// Bytes held now.
    pub bytes: u64,
    /// Blocks held now.
    pub blocks: u64,
}

impl CacheStats {
    /// Hits over lookups, 0 when there were none.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// A load in progress; waiters sleep on the condvar until it is done.
#[derive(Default)]
struct Inflight {
    state: Mutex<LoadState>,
    ready: Condvar,
}

#[derive(Default)]
struct LoadState {
    /// `Some` once the load ended: the block, or `None` if it failed.
    done: Option<Option<Block>>,
    /// Someone sleeps on `ready`. Most loads have no waiter, and waking nobody would still
    /// cost a system call per block.
    waited_on: bool,
}

impl Inflight {
    fn finish(&self, result: Option<Block>) {
        let mut state = lock(&self.state);
        state.done = Some(result);
        if state.waited_on {
            drop(state);
            self.ready.notify_all();
        }
    }

    /// The loaded block, or `None` if the load failed.
    fn wait(&self) -> Option<Block> {
        let mut state = lock(&self.state);
        loop {
            if let Some(result) = state.done.as_ref() {
                return result.clone();
            }
            state.waited_on = true;
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct Inner {
    lru: LruCache<BlockId, Block, BuildHasherDefault<IdHasher>>,
    bytes: usize,
    inflight: IdMap<Arc<Inflight>>,
}

/// Spare buffers kept for loads (see [`BufferPool`]): this fraction of the cache's bytes, at
/// most [`SPARE_MAX`], taken out of the bytes left for blocks so that blocks and spares
/// together stay within the cache size.
const SPARE_FRACTION: usize = 8;
const SPARE_MAX: usize = 32 << 20;

/// The cache. Shared by every reader of a vault (restore threads, mount threads, read-ahead).
pub struct BlockCache {
    inner: Mutex<Inner>,
    /// Evicted blocks' buffers, and the frames loads are done with, for the next loads.
    buffers: BufferPool,
    capacity_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity_bytes", &self.capacity_bytes)
            .field("stats", &self.stats())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn cost(block: &Block) -> usize {
    block.capacity().max(1)
}

/// What a lookup found.
enum Found {
    Hit(Block),
    Wait(Arc<Inflight>),
    Load(Arc<Inflight>),
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes`: decoded blocks, and spare buffers for the
    /// next loads (0 keeps nothing).
    pub fn new(capacity_bytes: usize) -> BlockCache {
        let spare = (capacity_bytes / SPARE_FRACTION).min(SPARE_MAX);
        BlockCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded_with_hasher(BuildHasherDefault::default()),
                bytes: 0,
                inflight: IdMap::default(),
            }),
            buffers: BufferPool::new(spare),
            capacity_bytes: capacity_bytes - spare,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The byte bound of the blocks held (the cache size less the spare buffers' share).
    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    /// True if the block is held or being loaded (read-ahead skips those).
    pub fn contains_or_loading(&self, id: &BlockId) -> bool {
        let inner = lock(&self.inner);
        inner.lru.contains(id) || inner.inflight.contains_key(id)
    }

    /// The block from the cache, or from `load` (run on this thread, outside the lock) on a
    /// miss. A failed load is returned to the caller and not cached.
    pub fn get_or_load<E>(
        &self,
        id: &BlockId,
        load: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Block, E> {
        let mut load = Some(load);
        loop {
            match self.find(id) {
                Found::Hit(block) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(block);
                }
                Found::Wait(inflight) => {
                    if let Some(block) = inflight.wait() {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(block);
                    }
                    // The other load failed: try ourselves, so the caller gets the error.
                }
                Found::Load(inflight) => {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    let Some(load) = load.take() else {
                        // Unreachable in practice: we load at most once per call.
                        continue;
                    };
                    return self.run_load(id, &inflight, load);
                }
            }
        }
    }

    /// The block if it is cached, or once the load under way ends; `None` (counted as a miss)
    /// if neither: the caller reads it some other way.
    pub fn get_if_loaded(&self, id: &BlockId) -> Option<Block> {
        let found = {
            let mut inner = lock(&self.inner);
            match inner.lru.get(id) {
                Some(block) => Some(Ok(block.clone())),
                None => inner.inflight.get(id).map(|w| Err(w.clone())),
            }
        };
        let block = match found {
            Some(Ok(block)) => Some(block),
            Some(Err(inflight)) => inflight.wait(),
            None => None,
        };
        let counter = if block.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        block
    }

    /// Loads a block with `load` unless it is cached or being loaded; a failed load is not
    /// cached and its error dropped (read-ahead: the read that needs the block reports it).
    pub fn load_if_absent<E>(&self, id: &BlockId, load: impl FnOnce() -> Result<Vec<u8>, E>) {
        if let Found::Load(inflight) = self.find(id) {
            self.misses.fetch_add(1, Ordering::Relaxed);
            let _ = self.run_load(id, &inflight, load);
        }
    }

    fn find(&self, id: &BlockId) -> Found {
        let mut inner = lock(&self.inner);
        if let Some(block) = inner.lru.get(id) {
            return Found::Hit(block.clone());
        }
        if let Some(inflight) = inner.inflight.get(id) {
            return Found::Wait(inflight.clone());
        }
        let inflight = Arc::new(Inflight::default());
        inner.inflight.insert(*id, inflight.clone());
        Found::Load(inflight)
    }

    fn run_load<E>(
        &self,
        id: &BlockId,
        inflight: &Inflight,
        load: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Block, E> {
        let result = load().map(Arc::new);
        let mut evicted = Vec::new();
        {
            let mut inner = lock(&self.inner);
            inner.inflight.remove(id);
            if let Ok(block) = &result {
                self.insert_locked(&mut inner, *id, block.clone(), &mut evicted);
            }
        }
        inflight.finish(result.as_ref().ok().cloned());
        self.recycle(evicted);
        result
    }

    fn insert_locked(
        &self,
        inner: &mut Inner,
        id: BlockId,
        block: Block,
        evicted: &mut Vec<Block>,
    ) {
        let size = cost(&block);
        if size > self.capacity_bytes {
            return;
        }
        if let Some(old) = inner.lru.put(id, block) {
            inner.bytes -= cost(&old);
            evicted.push(old);
        }
        inner.bytes += size;
        while inner.bytes > self.capacity_bytes {
            match inner.lru.pop_lru() {
                Some((_, old)) => {
                    inner.bytes -= cost(&old);
                    evicted.push(old);
                }
                None => break,
            }
        }
    }

    /// Gives evicted buffers nobody else holds to the pool.
    fn recycle(&self, evicted: Vec<Block>) {
        for block in evicted {
            if let Ok(buf) = Arc::try_unwrap(block) {
                self.buffers.give(buf);
            }
        }
    }

    /// Buffers for loads: frames and decoded blocks. What a load is done with goes back here.
    pub fn buffers(&self) -> &BufferPool {
        &self.buffers
    }

    /// Counts so far and what is held.
    pub fn stats(&self) -> CacheStats {
        let inner = lock(&self.inner);
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: inner.bytes as u64,
            blocks: inner.lru.len() as u64,
        }
    }

    /// Drops every block (counts are kept).
    pub fn clear(&self) {
        let dropped: Vec<Block> = {
            let mut inner = lock(&self.inner);
            inner.bytes = 0;
            std::iter::from_fn(|| inner.lru.pop_lru().map(|(_, block)| block)).collect()
        };
        self.recycle(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn id(n: u8) -> BlockId {
        BlockId([n; 32])
    }

    #[test]
    fn hits_after_first_load_and_evicts_by_bytes() {
        // Room for three blocks of 1000 once the spare buffers' eighth is set aside.
        let cache = BlockCache::new(3500);
        assert!(cache.capacity_bytes() >= 3000 && cache.capacity_bytes() < 4000);
        let loads = AtomicUsize::new(0);
        let load = |n: usize| {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(vec![7u8; n])
        };
        for _ in 0..3 {
            assert_eq!(
                cache.get_or_load(&id(1), || load(1000)).unwrap().len(),
                1000
            );
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        cache.get_or_load(&id(2), || load(1000)).unwrap();
        cache.get_or_load(&id(3), || load(1000)).unwrap();
        // id(1) is the least recently used: a fourth block pushes it out.
        cache.get_or_load(&id(4), || load(1000)).unwrap();
        let stats = cache.stats();
        assert!(stats.bytes as usize <= cache.capacity_bytes(), "{stats:?}");
        assert_eq!(stats.blocks, 3);
        assert!(!cache.contains_or_loading(&id(1)));
        assert!(cache.contains_or_loading(&id(4)));
        assert_eq!(stats.hits, 2);
        assert_eq!(stats.misses, 4);
    }

    #[test]
    fn errors_are_not_cached_and_oversized_blocks_not_kept() {
        let cache = BlockCache::new(100);
        assert!(cache
            .get_or_load(&id(1), || Err::<Vec<u8>, _>("bad"))
            .is_err());
        assert_eq!(
            cache
                .get_or_load(&id(1), || Ok::<_, ()>(vec![1; 10]))
                .unwrap()[0],
            1
        );
        assert_eq!(
            cache
                .get_or_load(&id(2), || Ok::<_, ()>(vec![2; 1000]))
                .unwrap()
                .len(),
            1000
        );
        assert!(!cache.contains_or_loading(&id(2)));
        assert!(cache.stats().bytes <= 100);
    }

    #[test]
    fn evicted_buffers_are_recycled_unless_still_held() {
        const LEN: usize = 1 << 20;
        // 9 MiB: 1.125 MiB of spare buffers (room for one block's buffer), 7 blocks.
        let cache = BlockCache::new(9 * LEN);
        assert_eq!(cache.capacity_bytes() / LEN, 7);
        let block = |n: u8| Ok::<_, ()>(vec![n; LEN]);
        let held = cache.get_or_load(&id(0), || block(0)).unwrap();
        for n in 1..7 {
            cache.get_or_load(&id(n), || block(n)).unwrap();
        }
        // Evicts id(0), which a reader still holds: not recycled.
        cache.get_or_load(&id(7), || block(7)).unwrap();
        assert_eq!(cache.buffers().bytes(), 0);
        drop(held);
        // Evicts id(1), held by nobody: its buffer goes to the pool, for a load it fits.
        cache.get_or_load(&id(8), || block(8)).unwrap();
        assert_eq!(cache.buffers().bytes(), LEN);
        let buf = cache.buffers().take(LEN - 1000);
        assert!(buf.is_empty() && buf.capacity() == LEN);
        assert_eq!(cache.buffers().bytes(), 0);
        // Clearing the cache recycles too, up to the pool's bound.
        cache.clear();
        assert_eq!(cache.stats().blocks, 0);
        assert_eq!(cache.buffers().bytes(), LEN);
    }

    #[test]
    fn concurrent_readers_load_once() {
        let cache = Arc::new(BlockCache::new(1 << 20));
        let loads = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                std::thread::spawn(move || {
                    cache
                        .get_or_load(&id(9), || {
                            loads.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok::<_, ()>(vec![9; 4096])
                        })
                        .unwrap()
                        .len()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 4096);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}

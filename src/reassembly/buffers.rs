//! Spare buffers for frames and decoded blocks, so that a steady stream of reads reuses the
//! same memory instead of going back to the allocator for every block.
//!
//! Why it pays: a fresh 1 MiB buffer costs a page fault per 4 KiB as it is filled, and with
//! several threads allocating and freeing megabyte buffers, glibc's arenas contend on their
//! locks and grow and shrink their heaps (`mprotect` under the address-space lock, which
//! every page fault also takes). Profiling `bench reassembly` showed these waits leaving a
//! fifth of the cores idle.
//!
//! Buffers are grouped by capacity class: sizes rounded up to a quarter of their power of two
//! (a 1.1 MiB block gets a 1.25 MiB buffer), so any buffer of a class fits any request of
//! that class. A request takes a spare of its own class or, failing that, of one of the next
//! [`CLASSES_UP`] classes, so no buffer is more than about twice what was asked. Buffers below
//! [`MIN_POOLED`] are left to the allocator, which serves them from per-thread caches. The
//! pool holds at most `max_bytes`; beyond that a returned buffer is freed.
//!
//! Spares keep the bytes they held: [`BufferPool::take`] empties one (free), while
//! [`BufferPool::take_sized`] hands it out at a length for the caller to overwrite, so a
//! reused buffer is not zeroed again (24-36 us per MiB here, on every read of the mount).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Smaller buffers are not pooled.
pub const MIN_POOLED: usize = 256;
/// How many classes above its own a request may take a spare from (four: one octave).
pub const CLASSES_UP: usize = 4;

/// The capacity a buffer for `len` bytes gets: `len` itself when small, else `len` rounded up
/// to a quarter of the largest power of two below it.
pub fn class_of(len: usize) -> usize {
    if len <= MIN_POOLED {
        return len;
    }
    let below = 1usize << (usize::BITS - 1 - (len - 1).leading_zeros());
    let step = below / 4;
    len.div_ceil(step) * step
}

/// The class after `class`.
fn next_class(class: usize) -> usize {
    class_of(class + 1)
}

#[derive(Default)]
struct Spare {
    by_class: HashMap<usize, Vec<Vec<u8>>>,
    bytes: usize,
}

/// How often a request found a spare.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Requests served from the pool.
    pub reused: u64,
    /// Requests (of pooled sizes) that went to the allocator.
    pub allocated: u64,
}

/// A byte-bounded pool of empty buffers, shared by every thread of a reader.
pub struct BufferPool {
    spare: Mutex<Spare>,
    max_bytes: usize,
    reused: AtomicU64,
    allocated: AtomicU64,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("max_bytes", &self.max_bytes)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl BufferPool {
    /// A pool keeping at most `max_bytes` of spare capacity.
    pub fn new(max_bytes: usize) -> BufferPool {
        BufferPool {
            spare: Mutex::new(Spare::default()),
            max_bytes,
            reused: AtomicU64::new(0),
            allocated: AtomicU64::new(0),
        }
    }

    /// Requests served and not served so far.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            reused: self.reused.load(Ordering::Relaxed),
            allocated: self.allocated.load(Ordering::Relaxed),
        }
    }

    /// Spare bytes held now.
    pub fn bytes(&self) -> usize {
        self.spare.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }

    /// An empty buffer with room for at least `len` bytes: a spare, or a new one.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let mut buf = self.take_spare(len);
        buf.clear();
        buf
    }

    /// A buffer of exactly `len` bytes, for a caller that overwrites what it uses: a spare
    /// keeps the bytes it held (only growth past its old length is zeroed), or a new one.
    pub fn take_sized(&self, len: usize) -> Vec<u8> {
        let mut buf = self.take_spare(len);
        buf.resize(len, 0);
        buf
    }

    fn take_spare(&self, len: usize) -> Vec<u8> {
        let class = class_of(len);
        if class <= MIN_POOLED {
            return Vec::with_capacity(len);
        }
        {
            let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
            let mut candidate = class;
            for _ in 0..=CLASSES_UP {
                if let Some(buf) = spare.by_class.get_mut(&candidate).and_then(Vec::pop) {
                    spare.bytes -= candidate;
                    self.reused.fetch_add(1, Ordering::Relaxed);
                    return buf;
                }
                candidate = next_class(candidate);
            }
        }
        self.allocated.fetch_add(1, Ordering::Relaxed);
        Vec::with_capacity(class)
    }

    /// Keeps `buf` for a later [`Self::take`], if it is of a pooled size and there is room.
    pub fn give(&self, buf: Vec<u8>) {
        let class = buf.capacity();
        // Only buffers of an exact class size: one that grew elsewhere would not fit its class.
        if class <= MIN_POOLED || class_of(class) != class {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.bytes + class > self.max_bytes {
            return;
        }
        spare.bytes += class;
        spare.by_class.entry(class).or_default().push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_fit_and_waste_at_most_a_quarter() {
        assert_eq!(class_of(100), 100);
        assert_eq!(class_of(MIN_POOLED), MIN_POOLED);
        assert_eq!(class_of(5000), 5120);
        assert_eq!(class_of(1 << 20), 1 << 20);
        assert_eq!(class_of((1 << 20) + 1), (1 << 20) + (1 << 18));
        for len in (MIN_POOLED + 1..5 << 20).step_by(7919) {
            let class = class_of(len);
            assert!(class >= len && class - len <= len / 4, "{len} -> {class}");
            assert_eq!(class_of(class), class, "a class is its own class");
        }
    }

    #[test]
    fn buffers_come_back_by_class_within_the_bound() {
        let pool = BufferPool::new(3 << 20);
        let a = pool.take(1_100_000);
        assert_eq!(a.capacity(), class_of(1_100_000));
        let ptr = a.as_ptr();
        pool.give(a);
        assert_eq!(pool.bytes(), class_of(1_100_000));
        // Another length of the same class gets the same buffer back, emptied.
        let b = pool.take(1_200_000);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 0));
        // A much shorter length does not; a little shorter one takes it if its own class has
        // no spare.
        pool.give(b);
        assert_ne!(pool.take(500_000).capacity(), class_of(1_100_000));
        let c = pool.take(800_000);
        assert_eq!(c.as_ptr(), ptr);
        assert_eq!(
            pool.stats(),
            PoolStats {
                reused: 2,
                allocated: 2
            }
        );
        pool.give(Vec::with_capacity(class_of(1_100_000)));
        // Past the bound, given buffers are dropped.
        for _ in 0..4 {
            pool.give(Vec::with_capacity(1 << 20));
        }
        assert!(pool.bytes() <= 3 << 20);
        // Small and odd-sized buffers are never kept.
        let before = pool.bytes();
        pool.give(Vec::with_capacity(100));
        pool.give(Vec::with_capacity((1 << 20) + 3));
        assert_eq!(pool.bytes(), before);
    }

    #[test]
    fn sized_buffers_come_back_at_their_length_without_zeroing() {
        let pool = BufferPool::new(4 << 20);
        let mut a = pool.take_sized(1 << 20);
        assert_eq!((a.len(), a.capacity()), (1 << 20, 1 << 20));
        assert!(a.iter().all(|&b| b == 0), "a new buffer is zeroed");
        a.fill(7);
        let ptr = a.as_ptr();
        pool.give(a);
        // The same buffer, still holding what it held: nothing was written to reuse it.
        let b = pool.take_sized(1 << 20);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 1 << 20));
        assert!(b.iter().all(|&x| x == 7));
        pool.give(b);
        // Shorter is a cut, longer zeroes only the growth; plain take is always empty.
        let c = pool.take_sized(900_000);
        assert_eq!((c.as_ptr(), c.len()), (ptr, 900_000));
        pool.give(c);
        let d = pool.take_sized(1 << 20);
        assert!(d[..900_000].iter().all(|&x| x == 7) && d[900_000..].iter().all(|&x| x == 0));
        pool.give(d);
        let e = pool.take(1 << 20);
        assert_eq!((e.as_ptr(), e.len()), (ptr, 0));
    }
}

//! Where the time of block reads goes: counters summed over every thread that reads blocks
//! (callers and read-ahead), and [`ReadTimes`], their snapshot as the bench prints it.
//!
//! Counting is relaxed and never blocks a read; a snapshot taken while reads run may mix
//! counts of a read in progress.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::store::pack_reader::PackReadStats;

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

/// The running counts behind [`ReadTimes`]; pack reads are counted by the pack reader.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) locate_ns: AtomicU64,
    pub(super) decode_ns: AtomicU64,
    pub(super) blocks: AtomicU64,
    pub(super) plain_bytes: AtomicU64,
    pub(super) packs: PackReadStats,
}

impl Counters {
    /// Counts time spent locating since `since`.
    pub(super) fn count_located(&self, since: Instant) {
        self.locate_ns
            .fetch_add(elapsed_ns(since), Ordering::Relaxed);
    }

    /// Counts one decoded block of `plain_len` bytes, decoded since `since`.
    pub(super) fn count_decoded(&self, since: Instant, plain_len: u64) {
        self.decode_ns
            .fetch_add(elapsed_ns(since), Ordering::Relaxed);
        self.blocks.fetch_add(1, Ordering::Relaxed);
        self.plain_bytes.fetch_add(plain_len, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> ReadTimes {
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

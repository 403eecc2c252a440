//! Reading frames out of packs over any [`Backend`]: one frame into this thread's frame
//! buffer, or neighbouring frames of one pack with a single joint read (the gaps between them
//! read along and skipped).
//!
//! This is the only road from the hot read path (restore, mount, `cat`, the bench) to pack
//! bytes. It says nothing of what the bytes mean: it knows nothing of the block cache, of
//! decoding, of files or of points. Callers say which frames they want and get each frame's
//! bytes in place, to decode where they are.
//!
//! Invariant: the bytes handed over for a frame are exactly `offset..offset + len` of its pack;
//! a read that fails hands over nothing of the frames it covers.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{Backend, PackId, Result};

/// Frames at most this far apart in a pack are read together, the gap with them.
const SPAN_GAP: u64 = 64 << 10;
/// A joint read of several frames grows to at most this (one larger frame is read alone).
const SPAN_MAX: u64 = 2 << 20;

thread_local! {
    /// This thread's frame buffer: frames (or spans of frames) are read into it and decrypted
    /// in place. One buffer used over and over stays in the CPU's cache; a fresh or recycled
    /// one per block made reading a frame several times slower. It grows to the largest read
    /// the thread made (at most [`SPAN_MAX`] or one frame).
    static FRAME: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Where a frame lies in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameAt {
    pub pack: PackId,
    pub offset: u64,
    pub len: u32,
}

impl FrameAt {
    /// One past the frame's last byte.
    fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// Pack reads made and what they cost, summed over every thread.
#[derive(Debug, Default)]
pub struct PackReadStats {
    read_ns: AtomicU64,
    bytes: AtomicU64,
    reads: AtomicU64,
}

impl PackReadStats {
    /// Time spent in reads (ns).
    pub fn read_ns(&self) -> u64 {
        self.read_ns.load(Ordering::Relaxed)
    }

    /// Bytes read (frames, and the gaps between frames read together).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Reads made (one per frame, or per run of neighbouring frames).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn count(&self, since: Instant, len: usize) {
        let ns = since.elapsed().as_nanos() as u64;
        self.read_ns.fetch_add(ns, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads frames from the packs of one backend, counting the reads in a [`PackReadStats`].
/// Cheap to make (two references): make one where it is needed.
#[derive(Clone, Copy)]
pub struct PackReader<'a> {
    backend: &'a dyn Backend,
    stats: &'a PackReadStats,
}

impl std::fmt::Debug for PackReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackReader").finish_non_exhaustive()
    }
}

impl<'a> PackReader<'a> {
    /// A reader of `backend`'s packs that counts its reads in `stats`.
    pub fn new(backend: &'a dyn Backend, stats: &'a PackReadStats) -> PackReader<'a> {
        PackReader { backend, stats }
    }

    /// Reads one frame into this thread's frame buffer and hands it to `use_frame`, which may
    /// change it in place (decrypting). `use_frame` should not read frames itself: it would
    /// find the thread's buffer taken and read into a fresh one.
    pub fn with_frame<T>(
        &self,
        frame: FrameAt,
        use_frame: impl FnOnce(&mut [u8]) -> Result<T>,
    ) -> Result<T> {
        let mut scratch = FRAME.take();
        let done = self
            .read(&frame.pack, frame.offset, frame.len as usize, &mut scratch)
            .and_then(use_frame);
        FRAME.set(scratch);
        done
    }

    /// Reads one frame into a buffer of its own (for callers that keep the frame).
    pub fn read_frame(&self, frame: FrameAt) -> Result<Vec<u8>> {
        let mut bytes = vec![0; frame.len as usize];
        let t = Instant::now();
        self.backend
            .read_into(&frame.pack, frame.offset, &mut bytes)?;
        self.stats.count(t, bytes.len());
        Ok(bytes)
    }

    /// Reads the frames of `items` (where each is: `at`) and hands each item with its frame's
    /// bytes to `each`, in order. Frames that lie close together in a pack are read with one
    /// read: a directory of small files is often one run of a pack, and a system call per
    /// frame cost as much as decoding a small one. Sort `items` by (pack, offset) to join
    /// them; unsorted items are all read, just with more reads. A read that fails skips the
    /// frames it covers and the others are still read; the first failure is returned.
    pub fn read_neighbours<T>(
        &self,
        items: &[T],
        at: impl Fn(&T) -> FrameAt,
        mut each: impl FnMut(&T, &mut [u8]),
    ) -> Result<()> {
        let mut scratch = FRAME.take();
        let mut first_error = None;
        for span in spans(items, &at) {
            let (first, last) = (at(&span[0]), at(&span[span.len() - 1]));
            let len = (last.end() - first.offset) as usize;
            let bytes = match self.read(&first.pack, first.offset, len, &mut scratch) {
                Ok(bytes) => bytes,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            for item in span {
                let frame = at(item);
                let from = (frame.offset - first.offset) as usize;
                each(item, &mut bytes[from..from + frame.len as usize]);
            }
        }
        FRAME.set(scratch);
        first_error.map_or(Ok(()), Err)
    }

    /// Reads `len` bytes of `pack` from `offset` into `scratch`, counting the read.
    fn read<'b>(
        &self,
        pack: &PackId,
        offset: u64,
        len: usize,
        scratch: &'b mut Vec<u8>,
    ) -> Result<&'b mut [u8]> {
        let t = Instant::now();
        // The buffer grows (zeroed, once) to hold the read and is never shrunk, so a buffer
        // used again costs neither allocation nor initialization.
        if scratch.len() < len {
            scratch.resize(len, 0);
        }
        let bytes = &mut scratch[..len];
        self.backend.read_into(pack, offset, bytes)?;
        self.stats.count(t, len);
        Ok(bytes)
    }
}

/// Splits items whose frames are sorted by (pack, offset) into runs that one read covers.
fn spans<'i, T>(items: &'i [T], at: &'i impl Fn(&T) -> FrameAt) -> impl Iterator<Item = &'i [T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let first = at(rest.first()?);
        let mut end = first.end();
        let len = 1 + rest[1..]
            .iter()
            .take_while(|item| {
                let next = at(item);
                let joins = next.pack == first.pack
                    && next.offset >= end
                    && next.offset - end <= SPAN_GAP
                    && next.end() - first.offset <= SPAN_MAX;
                if joins {
                    end = next.end();
                }
                joins
            })
            .count();
        let (span, tail) = rest.split_at(len);
        rest = tail;
        Some(span)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemBackend, StoreError};

    fn frame(pack: u8, offset: u64, len: u32) -> FrameAt {
        FrameAt {
            pack: PackId([pack; 32]),
            offset,
            len,
        }
    }

    fn span_offsets(frames: &[FrameAt]) -> Vec<Vec<u64>> {
        spans(frames, &|f: &FrameAt| *f)
            .map(|span| span.iter().map(|f| f.offset).collect())
            .collect()
    }

    #[test]
    fn neighbouring_frames_share_a_read() {
        let frames = [
            frame(1, 0, 100),
            frame(1, 100, 50),
            // A gap within SPAN_GAP joins; one beyond it does not.
            frame(1, 150 + SPAN_GAP, 10),
            frame(1, 160 + 2 * SPAN_GAP + 1, 10),
            // Another pack starts another read.
            frame(2, 170 + 2 * SPAN_GAP + 1, 10),
        ];
        assert_eq!(
            span_offsets(&frames),
            vec![
                vec![0, 100, 150 + SPAN_GAP],
                vec![160 + 2 * SPAN_GAP + 1],
                vec![170 + 2 * SPAN_GAP + 1],
            ]
        );
        // A read stops growing at SPAN_MAX; a larger frame is read alone.
        let half = (SPAN_MAX / 2) as u32;
        let frames = [
            frame(1, 0, half),
            frame(1, u64::from(half), half),
            frame(1, u64::from(2 * half), 1),
            frame(1, u64::from(2 * half) + 1, 3 * half),
        ];
        assert_eq!(
            span_offsets(&frames),
            vec![
                vec![0, u64::from(half)],
                vec![u64::from(2 * half)],
                vec![u64::from(2 * half) + 1],
            ]
        );
        assert_eq!(span_offsets(&[]).len(), 0);
    }

    #[test]
    fn frames_are_handed_over_as_stored_and_a_failed_read_skips_only_its_own() {
        let backend = MemBackend::default();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let id = PackId::of(&bytes);
        backend.put(&id, &bytes).unwrap();
        let at = |offset: u64, len: u32| FrameAt {
            pack: id,
            offset,
            len,
        };
        let missing = FrameAt {
            pack: PackId([9; 32]),
            ..at(0, 8)
        };
        let wanted = [at(0, 10), at(10, 5), at(100, 20), missing, at(4000, 96)];
        let stats = PackReadStats::default();
        let reader = PackReader::new(&backend, &stats);

        let mut seen = Vec::new();
        let got = reader.read_neighbours(
            &wanted,
            |f| *f,
            |f, frame| {
                let start = f.offset as usize;
                assert_eq!(frame, &bytes[start..start + f.len as usize]);
                seen.push(f.offset);
            },
        );
        assert!(
            matches!(got, Err(StoreError::MissingPack { .. })),
            "{got:?}"
        );
        assert_eq!(seen, vec![0, 10, 100, 4000]);
        assert_eq!(
            stats.reads(),
            2,
            "one read before the missing pack, one after"
        );
        assert_eq!(stats.bytes(), 120 + 96);

        let first = reader.with_frame(at(10, 5), |frame| Ok(frame.to_vec()));
        assert_eq!(first.unwrap(), &bytes[10..15]);
        assert_eq!(reader.read_frame(at(4000, 96)).unwrap(), &bytes[4000..]);
        assert_eq!(stats.reads(), 4);
        assert!(reader.read_frame(at(4000, 97)).is_err(), "past the end");
    }
}

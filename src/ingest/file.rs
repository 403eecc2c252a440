//! Reading one file into blocks: read in large segments, cut, then hash and store the
//! segment's blocks in parallel, keeping their order for the content's block list.
//!
//! # Only regular files, never blocking on open
//! A file is opened with `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` and checked with `fstat` to be a
//! regular file: a name that turned into a FIFO, a device or a symlink since the walk is never
//! read (opening a FIFO without `O_NONBLOCK` would wait for a writer for good), and a file
//! that honours `O_NONBLOCK` (`/proc/kmsg`) answers "would block" instead of hanging.
//!
//! # A file that changes while it is read
//! Before and after each read the file's `fstat` stamp (size, mtime, ctime, inode) is taken.
//! A read is *consistent* when both stamps are equal, the bytes read add up to that size, and
//! the ctime is older than the coarse clock's granularity at the start of the read: a write
//! in the same clock tick as the one before it can leave mtime and ctime unchanged, so a file
//! changed that recently proves nothing and is read again after a tick. A consistent read holds the
//! bytes of exactly one version the writer left, never a mix.
//!
//! An inconsistent read is thrown away (its blocks stay unreferenced in the packs) and the
//! file is read again, up to [`READ_ATTEMPTS`] reads in all. The first consistent read is
//! kept: the point stays `complete`, with a warning if a change was seen (the file changed
//! between reads but one read saw a single version). If no read is consistent the file is
//! left out of the point and listed as changed while read, and the point is `partial` (exit
//! 3). A torn file is never stored.
//!
//! # Sparse files
//! A file whose allocated blocks cover less than its size is read by data extents
//! (`SEEK_DATA`/`SEEK_HOLE`): holes of at least [`HOLE_MIN_BYTES`] are not read at all and
//! become zero blocks (the zero marker, see DESIGN "Chunking"), so a 1 TiB file with a few MiB
//! of data costs a few MiB of reading. Smaller holes are read as zeros, so a fragmented file
//! is not cut into tiny blocks. Files without holes are read exactly as before: one large
//! sequential read per segment.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rayon::prelude::*;
use rustix::fs::{FileType, Mode, OFlags, SeekFrom};

use super::sink::BlockSink;
use crate::catalog::Content;
use crate::chunk::{is_zero, Chunker, MAX_BLOCK_BYTES};
use crate::progress::Progress;
use crate::store::{BlockCodec, BlockId, StoreError};

/// Bytes read per segment: several blocks, so their work can run on every core.
const SEGMENT_BYTES: usize = 16 << 20;

/// Reads of one file before it is given up as changing while read.
pub const READ_ATTEMPTS: u32 = 3;

/// A hole this large is skipped rather than read; smaller ones are read as zeros.
pub const HOLE_MIN_BYTES: u64 = MAX_BLOCK_BYTES as u64;

/// A change within this long before a read starts may not show in mtime or ctime (coarse
/// kernel timestamps tick every 1..10 ms); twice the coarsest tick.
const RACY_NS: i64 = 20_000_000;

/// Buffer capacity for a file of `len` bytes.
fn segment_for(len: u64) -> usize {
    usize::try_from(len.saturating_add(1))
        .unwrap_or(SEGMENT_BYTES)
        .min(SEGMENT_BYTES)
}

/// What went wrong reading a file.
#[derive(Debug)]
pub enum FileError {
    /// The source could not be read (or kept changing): skip the file, the point becomes
    /// partial.
    Source(std::io::Error),
    /// The store failed: the backup fails.
    Store(StoreError),
    /// SIGINT or SIGTERM: stop at once.
    Interrupted,
}

/// The identity of one file version as `fstat` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    /// Bytes allocated on disk (`st_blocks * 512`); not part of the identity.
    allocated: u64,
}

impl Stamp {
    fn of(file: &File) -> std::io::Result<Stamp> {
        let st = rustix::fs::fstat(file)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(std::io::Error::other("not a regular file any more"));
        }
        Ok(Stamp {
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_ns: crate::fsmeta::to_ns(st.st_mtime, st.st_mtime_nsec as i64),
            ctime_ns: crate::fsmeta::to_ns(st.st_ctime, st.st_ctime_nsec as i64),
            inode: st.st_ino,
            allocated: u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512),
        })
    }

    fn same_version(&self, other: &Stamp) -> bool {
        (self.size, self.mtime_ns, self.ctime_ns, self.inode)
            == (other.size, other.mtime_ns, other.ctime_ns, other.inode)
    }

    /// Changed so recently before `started_ns` (coarse clock) that a change in the same tick
    /// would not show. Only ctime counts: it is always the kernel's clock at the change,
    /// while mtime may be set to anything. A ctime far ahead of the clock (the clock was set
    /// back) is no recent change.
    fn is_racy(&self, started_ns: i64) -> bool {
        self.ctime_ns > started_ns.saturating_sub(RACY_NS)
            && self.ctime_ns <= started_ns.saturating_add(1_000_000_000)
    }
}

/// A consistent read of one file.
#[derive(Debug)]
pub struct FileVersion {
    pub content: Content,
    /// The stamp the file had during the read.
    pub stamp: Stamp,
    /// True if an earlier read of this file saw it change.
    pub changed_before: bool,
}

/// How one read ended.
enum Attempt {
    Consistent(Content),
    /// The file changed (`true`) or changed too recently to tell (`false`).
    Inconsistent {
        changed: bool,
    },
}

/// Shared state for reading files.
pub struct FileReader<'a> {
    pub codec: &'a BlockCodec,
    pub chunker: &'a Chunker,
    pub sink: &'a BlockSink<'a>,
    pub bytes_read: &'a AtomicU64,
    pub progress: &'a dyn Progress,
    /// Checked between segments, so a large file stops promptly too.
    pub interrupted: &'a AtomicBool,
}

impl FileReader<'_> {
    /// Reads `path` and returns its content (blocks stored as a side effect). A file that
    /// keeps changing is a [`FileError::Source`] error.
    pub fn read(&self, path: &Path) -> Result<Content, FileError> {
        self.read_version(path).map(|v| v.content)
    }

    /// Reads `path` until one read is consistent (see the module doc), at most
    /// [`READ_ATTEMPTS`] times.
    pub fn read_version(&self, path: &Path) -> Result<FileVersion, FileError> {
        let mut file = open_regular(path).map_err(FileError::Source)?;
        let mut changed_before = false;
        for attempt in 0..READ_ATTEMPTS {
            if attempt > 0 {
                // Let the clock tick past the last change, so the next read can be trusted.
                std::thread::sleep(Duration::from_nanos(RACY_NS as u64));
            }
            let started_ns = coarse_now_ns();
            let before = Stamp::of(&file).map_err(FileError::Source)?;
            let read = self.read_once(&mut file, &before)?;
            let after = Stamp::of(&file).map_err(FileError::Source)?;
            match judge(read, &before, &after, started_ns) {
                Attempt::Consistent(content) => {
                    return Ok(FileVersion {
                        content,
                        stamp: after,
                        changed_before,
                    })
                }
                Attempt::Inconsistent { changed } => changed_before |= changed,
            }
        }
        Err(FileError::Source(std::io::Error::other(format!(
            "changed while it was read ({READ_ATTEMPTS} reads)"
        ))))
    }

    /// One read of the whole file from the start, by data extents.
    fn read_once(&self, file: &mut File, stamp: &Stamp) -> Result<Content, FileError> {
        let extents = data_extents(file, stamp).map_err(FileError::Source)?;
        let mut content = Content::default();
        let mut pos = 0u64;
        let last = extents.len().saturating_sub(1);
        for (i, &(start, end)) in extents.iter().enumerate() {
            push_zeros(&mut content, start - pos);
            file.seek(std::io::SeekFrom::Start(start))
                .map_err(FileError::Source)?;
            // The last extent runs to the end of the file, so growth is seen.
            let limit = if i == last && end >= stamp.size {
                None
            } else {
                Some(end - start)
            };
            pos = start + self.read_region(file, &mut content, end - start, limit)?;
        }
        push_zeros(&mut content, stamp.size.saturating_sub(pos));
        content.size = content.blocks.iter().map(|b| u64::from(b.1)).sum();
        Ok(content)
    }

    /// Reads from the current position: `limit` bytes, or to the end of the file if `None`
    /// (`expected` sizes the buffer). Appends the region's blocks; returns the bytes read.
    fn read_region(
        &self,
        file: &mut File,
        content: &mut Content,
        expected: u64,
        limit: Option<u64>,
    ) -> Result<u64, FileError> {
        let mut buf: Vec<u8> = Vec::with_capacity(segment_for(expected));
        let mut total_read = 0u64;
        let mut eof = false;
        while !eof || !buf.is_empty() {
            if self.interrupted.load(Ordering::Relaxed) {
                return Err(FileError::Interrupted);
            }
            if !eof {
                let remaining = expected.saturating_sub(total_read);
                let cap = limit.map(|l| l - total_read);
                let got = self.fill(file, &mut buf, remaining, cap)?;
                total_read += got.0;
                eof = got.1;
            }
            let cuts = self.cut(&buf, eof);
            let blocks = self.store_blocks(&buf, &cuts)?;
            let consumed: usize = blocks.iter().map(|b| b.1 as usize).sum();
            content.blocks.extend(blocks);
            buf.drain(..consumed);
        }
        Ok(total_read)
    }

    /// Appends up to a segment to `buf`, never more than the file should still hold (plus one
    /// byte, to see the end or growth) so small files cost a small buffer, and never more than
    /// `cap`. Returns the bytes read and whether the end (of the file or of `cap`) was reached.
    fn fill(
        &self,
        file: &mut File,
        buf: &mut Vec<u8>,
        remaining: u64,
        cap: Option<u64>,
    ) -> Result<(u64, bool), FileError> {
        let room = SEGMENT_BYTES.saturating_sub(buf.len()).max(1) as u64;
        let mut want = room.min(remaining.max(1 << 16) + 1);
        if let Some(cap) = cap {
            want = want.min(cap);
        }
        let got = file
            .by_ref()
            .take(want)
            .read_to_end(buf)
            .map_err(FileError::Source)? as u64;
        self.bytes_read.fetch_add(got, Ordering::Relaxed);
        self.progress.add_bytes(got);
        Ok((got, got < want || cap == Some(got)))
    }

    /// Block boundaries of `buf`; the tail is held back unless at end of file, since a
    /// block can only be cut with `MAX_BLOCK_BYTES` of lookahead.
    fn cut(&self, buf: &[u8], eof: bool) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < buf.len() && (eof || buf.len() - pos >= MAX_BLOCK_BYTES) {
            let len = self.chunker.first_cut(&buf[pos..]);
            out.push((pos, len));
            pos += len;
        }
        out
    }

    fn store_blocks(
        &self,
        data: &[u8],
        cuts: &[(usize, usize)],
    ) -> Result<Vec<(BlockId, u32)>, FileError> {
        let one = |&(start, len): &(usize, usize)| {
            let block = &data[start..start + len];
            if is_zero(block) {
                return Ok((BlockId::ZERO, len as u32));
            }
            let id = self.codec.id_of(block);
            self.sink.add(id, block).map_err(FileError::Store)?;
            Ok((id, len as u32))
        };
        if cuts.len() > 1 {
            cuts.par_iter().map(one).collect()
        } else {
            cuts.iter().map(one).collect()
        }
    }
}

/// Opens a regular file for reading without following a symlink, waiting for a FIFO's writer
/// or taking a terminal; anything else than a regular file is refused.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    let file = File::from(rustix::fs::open(
        path,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )?);
    Stamp::of(&file)?;
    Ok(file)
}

/// The coarse real-time clock, which file timestamps are taken from.
fn coarse_now_ns() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    crate::fsmeta::to_ns(t.tv_sec, t.tv_nsec)
}

fn judge(content: Content, before: &Stamp, after: &Stamp, started_ns: i64) -> Attempt {
    if !before.same_version(after) || content.size != after.size {
        return Attempt::Inconsistent { changed: true };
    }
    if before.is_racy(started_ns) {
        return Attempt::Inconsistent { changed: false };
    }
    Attempt::Consistent(content)
}

/// Zero blocks for a hole of `len` bytes, cut like the chunker cuts a run of zeros.
fn push_zeros(content: &mut Content, mut len: u64) {
    while len > 0 {
        let block = len.min(MAX_BLOCK_BYTES as u64);
        content.blocks.push((BlockId::ZERO, block as u32));
        len -= block;
    }
}

/// The file's data as `(start, end)` extents, holes under [`HOLE_MIN_BYTES`] merged away.
/// A file without holes (or a file system without `SEEK_DATA`) is one extent `(0, size)`.
fn data_extents(file: &File, stamp: &Stamp) -> std::io::Result<Vec<(u64, u64)>> {
    let whole = vec![(0, stamp.size)];
    if stamp.allocated >= stamp.size || stamp.size < 2 * HOLE_MIN_BYTES {
        return Ok(whole);
    }
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0;
    while pos < stamp.size {
        let data = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(data) => data,
            // No data after `pos`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return Ok(whole),
        };
        let hole = rustix::fs::seek(file, SeekFrom::Hole(data))?.min(stamp.size);
        if hole <= data {
            break;
        }
        match out.last_mut() {
            Some(last) if data - last.1 < HOLE_MIN_BYTES => last.1 = hole,
            None if data < HOLE_MIN_BYTES => out.push((0, hole)),
            _ => out.push((data, hole)),
        }
        pos = hole;
    }
    if let Some(last) = out.last_mut() {
        if stamp.size - last.1 < HOLE_MIN_BYTES {
            last.1 = stamp.size;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkerKind;
    use crate::crypto::{Key, Keys, RingCipher};
    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicU32;

    const LEN: usize = 64 << 10;

    /// Rewrites the file under the reader, in place, after each of its first `times` reads
    /// (a new version: every byte the rewrite's number plus one).
    struct Rewriter {
        path: PathBuf,
        times: u32,
        done: AtomicU32,
    }

    impl Progress for Rewriter {
        fn add_bytes(&self, _n: u64) {
            let n = self.done.fetch_add(1, Ordering::SeqCst);
            if n < self.times {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .unwrap();
                file.write_all_at(&[n as u8 + 2; LEN], 0).unwrap();
            }
        }
    }

    /// Reads `path` (64 KiB of ones) while `times` rewrites happen under the reader.
    fn read_while_rewritten(times: u32) -> (Result<FileVersion, FileError>, BlockCodec) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy");
        std::fs::write(&path, [1u8; LEN]).unwrap();
        // Let the clock tick past the creation, so the first read is not distrusted for it.
        std::thread::sleep(Duration::from_millis(50));
        let codec = BlockCodec::new(
            Keys::derive(&Key::from_bytes([9; 32])),
            Box::new(RingCipher),
            3,
        );
        let chunker = Chunker::new(ChunkerKind::Cdc, &Key::from_bytes([8; 32]));
        let (sink, _packs) = BlockSink::new(&codec, &crate::ingest::sink::NoBlocks);
        let progress = Rewriter {
            path: path.clone(),
            times,
            done: AtomicU32::new(0),
        };
        let result = FileReader {
            codec: &codec,
            chunker: &chunker,
            sink: &sink,
            bytes_read: &AtomicU64::new(0),
            progress: &progress,
            interrupted: &AtomicBool::new(false),
        }
        .read_version(&path);
        drop(sink);
        (result, codec)
    }

    #[test]
    fn a_file_changed_during_one_read_is_read_again_and_kept_whole() {
        let (result, codec) = read_while_rewritten(1);
        let version = result.unwrap();
        assert!(version.changed_before);
        let rewritten = [2u8; LEN];
        assert_eq!(
            version.content.blocks,
            vec![(codec.id_of(&rewritten), LEN as u32)]
        );
    }

    #[test]
    fn a_file_that_keeps_changing_is_an_error_not_a_torn_content() {
        let (result, _) = read_while_rewritten(READ_ATTEMPTS);
        match result {
            Err(FileError::Source(e)) => assert!(e.to_string().contains("changed while")),
            other => panic!("expected changed while read, got {other:?}"),
        }
    }

    fn stamp_of(file: &File) -> Stamp {
        Stamp::of(file).unwrap()
    }

    #[test]
    fn extents_skip_large_holes_and_merge_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = File::create(&path).unwrap();
        let size = 64 * HOLE_MIN_BYTES;
        file.set_len(size).unwrap();
        file.write_all_at(&[1; 4096], 0).unwrap();
        // A small hole after the first data: merged into one extent.
        file.write_all_at(&[2; 4096], 3 * 4096).unwrap();
        file.write_all_at(&[3; 4096], 20 * HOLE_MIN_BYTES).unwrap();
        file.sync_all().unwrap();
        let file = File::open(&path).unwrap();
        let extents = data_extents(&file, &stamp_of(&file)).unwrap();
        assert_eq!(extents.len(), 2, "{extents:?}");
        assert_eq!(extents[0].0, 0);
        assert!(extents[0].1 >= 4 * 4096 && extents[0].1 < HOLE_MIN_BYTES);
        assert!(extents[1].0 <= 20 * HOLE_MIN_BYTES && extents[1].1 < 21 * HOLE_MIN_BYTES);
    }

    #[test]
    fn a_dense_file_is_one_extent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dense");
        std::fs::write(&path, vec![7u8; 3 * HOLE_MIN_BYTES as usize]).unwrap();
        let file = File::open(&path).unwrap();
        let stamp = stamp_of(&file);
        assert_eq!(data_extents(&file, &stamp).unwrap(), vec![(0, stamp.size)]);
    }

    #[test]
    fn zeros_are_cut_in_max_blocks() {
        let mut content = Content::default();
        push_zeros(&mut content, 2 * MAX_BLOCK_BYTES as u64 + 5);
        let lens: Vec<u32> = content.blocks.iter().map(|b| b.1).collect();
        assert_eq!(
            lens,
            vec![MAX_BLOCK_BYTES as u32, MAX_BLOCK_BYTES as u32, 5]
        );
        assert!(content.blocks.iter().all(|b| b.0 == BlockId::ZERO));
    }

    #[test]
    fn a_read_is_consistent_only_with_equal_old_stamps() {
        let stamp = Stamp {
            size: 3,
            mtime_ns: 1_000_000_000,
            ctime_ns: 1_000_000_000,
            inode: 5,
            allocated: 4096,
        };
        let content = || Content {
            size: 3,
            blocks: vec![(BlockId::ZERO, 3)],
        };
        let later = 2_000_000_000;
        assert!(matches!(
            judge(content(), &stamp, &stamp, later),
            Attempt::Consistent(_)
        ));
        let touched = Stamp {
            ctime_ns: 1_500_000_000,
            ..stamp
        };
        assert!(matches!(
            judge(content(), &stamp, &touched, later),
            Attempt::Inconsistent { changed: true }
        ));
        // Changed in the tick the read started in: not to be trusted.
        assert!(matches!(
            judge(content(), &stamp, &stamp, 1_000_000_001),
            Attempt::Inconsistent { changed: false }
        ));
    }

    #[test]
    fn fifos_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(open_regular(&path).is_err());
    }
}

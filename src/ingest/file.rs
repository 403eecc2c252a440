//! Reading one file into blocks: read in large segments, cut, then hash and store the
//! segment's blocks in parallel, keeping their order for the content's block list.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;

use super::sink::BlockSink;
use crate::catalog::Content;
use crate::chunk::{is_zero, Chunker, MAX_BLOCK_BYTES};
use crate::progress::Progress;
use crate::store::{BlockCodec, BlockId, StoreError};

/// Bytes read per segment: several blocks, so their work can run on every core.
const SEGMENT_BYTES: usize = 16 << 20;

/// Buffer capacity for a file of `len` bytes.
fn segment_for(len: u64) -> usize {
    usize::try_from(len.saturating_add(1))
        .unwrap_or(SEGMENT_BYTES)
        .min(SEGMENT_BYTES)
}

/// What went wrong reading a file.
#[derive(Debug)]
pub enum FileError {
    /// The source could not be read: skip the file, the point becomes partial.
    Source(std::io::Error),
    /// The store failed: the backup fails.
    Store(StoreError),
    /// SIGINT or SIGTERM: stop at once.
    Interrupted,
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
    /// Reads `path` and returns its content (blocks stored as a side effect).
    pub fn read(&self, path: &Path) -> Result<Content, FileError> {
        let mut file = File::open(path).map_err(FileError::Source)?;
        let expected = file.metadata().map_err(FileError::Source)?.len();
        let mut content = Content::default();
        let mut buf: Vec<u8> = Vec::with_capacity(segment_for(expected));
        let mut total_read = 0u64;
        let mut eof = false;
        while !eof || !buf.is_empty() {
            if self.interrupted.load(Ordering::Relaxed) {
                return Err(FileError::Interrupted);
            }
            if !eof {
                let got = self.fill(&mut file, &mut buf, expected.saturating_sub(total_read))?;
                total_read += got.0;
                eof = got.1;
            }
            let cuts = self.cut(&buf, eof);
            let blocks = self.store_blocks(&buf, &cuts)?;
            let consumed: usize = blocks.iter().map(|b| b.1 as usize).sum();
            content.blocks.extend(blocks);
            buf.drain(..consumed);
        }
        content.size = content.blocks.iter().map(|b| u64::from(b.1)).sum();
        Ok(content)
    }

    /// Appends up to a segment to `buf`, never more than the file should still hold (plus one
    /// byte, to see the end or growth) so small files cost a small buffer. Returns the bytes
    /// read and whether the end of the file was reached.
    fn fill(
        &self,
        file: &mut File,
        buf: &mut Vec<u8>,
        remaining: u64,
    ) -> Result<(u64, bool), FileError> {
        let room = SEGMENT_BYTES.saturating_sub(buf.len()).max(1) as u64;
        let want = room.min(remaining.max(1 << 16) + 1);
        let got = file
            .by_ref()
            .take(want)
            .read_to_end(buf)
            .map_err(FileError::Source)? as u64;
        self.bytes_read.fetch_add(got, Ordering::Relaxed);
        self.progress.add_bytes(got);
        Ok((got, got < want))
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

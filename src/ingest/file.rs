//! Reading one file into blocks: read in large segments, cut, then hash and store the
//! segment's blocks in parallel, keeping their order for the content's block list.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::sink::BlockSink;
use crate::catalog::Content;
use crate::chunk::{is_zero, Chunker, MAX_BLOCK_BYTES};
use crate::progress::Progress;
use crate::store::{BlockCodec, BlockId, StoreError};

/// Bytes read per segment: several blocks, so their work can run on every core.
const SEGMENT_BYTES: usize = 16 << 20;

/// What went wrong reading a file.
#[derive(Debug)]
pub enum FileError {
    /// The source could not be read: skip the file, the point becomes partial.
    Source(std::io::Error),
    /// The store failed: the backup fails.
    Store(StoreError),
}

/// Shared state for reading files.
pub struct FileReader<'a> {
    pub codec: &'a BlockCodec,
    pub chunker: &'a Chunker,
    pub sink: &'a BlockSink<'a>,
    pub bytes_read: &'a AtomicU64,
    pub progress: &'a dyn Progress,
}

impl FileReader<'_> {
    /// Reads `path` and returns its content (blocks stored as a side effect).
    pub fn read(&self, path: &Path) -> Result<Content, FileError> {
        let mut file = File::open(path).map_err(FileError::Source)?;
        let mut content = Content::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut eof = false;
        while !eof || !buf.is_empty() {
            if !eof {
                eof = self.fill(&mut file, &mut buf)?;
            }
            let cut_until = self.cut(&buf, eof);
            let blocks = self.store_blocks(
                &buf[..cut_until.iter().map(|b| b.1).sum::<usize>()],
                &cut_until,
            )?;
            let consumed: usize = blocks.iter().map(|b| b.1 as usize).sum();
            content.blocks.extend(blocks);
            buf.drain(..consumed);
        }
        content.size = content.blocks.iter().map(|b| u64::from(b.1)).sum();
        Ok(content)
    }

    /// Tops `buf` up to a segment; returns true at end of file.
    fn fill(&self, file: &mut File, buf: &mut Vec<u8>) -> Result<bool, FileError> {
        let want = SEGMENT_BYTES.saturating_sub(buf.len());
        let start = buf.len();
        buf.resize(start + want, 0);
        let mut got = 0;
        while got < want {
            match file.read(&mut buf[start + got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FileError::Source(e)),
            }
        }
        buf.truncate(start + got);
        self.bytes_read.fetch_add(got as u64, Ordering::Relaxed);
        self.progress.add_bytes(got as u64);
        Ok(got < want)
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

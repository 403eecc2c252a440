//! Reassembly: turning a recovery point back into bytes.
//!
//! [`BlockReader`] is the engine every reader shares (restore, `cat`, the mount, the bench):
//! it finds a block by asking the catalog (several at once for read-ahead, with a bounded
//! cache of answers, so memory does not grow with the vault), has the store's pack
//! reader ([`crate::store::pack_reader`]) read its frame, decodes it (open, decompress,
//! verify) and keeps the plaintext in a byte-bounded LRU ([`cache::BlockCache`]). With a
//! shared vault handle it also runs read-ahead on its own thread pool. [`PointReader`] resolves paths of one point to
//! entries and serves `read_at` over a file's block list by binary search; [`FileReader`] adds
//! sequential detection to trigger read-ahead. [`view::View`] answers what a file system asks
//! (lookup, attributes, directory pages, reads) for the mount. Restore ([`restore`]) and dump
//! ([`dump`], a tar stream) are built on the same engine.
//!
//! The local backend reads packs with `pread` rather than through memory maps: mapped pages
//! of packs would count towards the reader's resident memory, and the mount promises a peak
//! RSS bounded by the cache size.

pub mod buffers;
pub mod cache;
pub mod dump;
mod engine;
pub mod hardlink;
pub mod profile;
pub mod restore;
pub mod view;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use cache::{Block, BlockCache, CacheStats};
pub use engine::{
    BlockReader, Loader, ReadTimes, ReaderOptions, VaultRef, DEFAULT_CACHE_BYTES,
    DEFAULT_READAHEAD_BYTES,
};

use crate::catalog::{Content, Entry, EntryKind, RecoveryPoint, TreeId};
use crate::error::{Error, Result};
use crate::store::{BlockId, StoreError};
use crate::vault::Vault;

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
    /// Records a read of blocks `first..=last`; returns the blocks to read ahead, if the access
    /// continues the previous one. Blocks count as handed over only once [`Self::queued`]
    /// says so, so blocks the pool had no room for are offered again on the next read.
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
        let from = start.max(self.ahead.load(Ordering::Acquire) as usize);
        (from < end).then_some(from..end)
    }

    /// Records that blocks before `end` are cached or queued for read-ahead.
    pub fn queued(&self, end: usize) {
        self.ahead.fetch_max(end as u64, Ordering::AcqRel);
    }

    /// Observes a read of `len` bytes at `offset` and queues read-ahead on `blocks`' pool.
    pub fn read_ahead(&self, blocks: &BlockReader<'_>, map: &BlockMap, offset: u64, len: u64) {
        let Some((first, last)) = map.blocks_of(offset, len) else {
            return;
        };
        let window = blocks.options().readahead_bytes;
        if let Some(ahead) = self.observe(map, first, last, window) {
            let taken = blocks.prefetch(&map.blocks[ahead.clone()]);
            self.queued(ahead.start + taken);
        }
    }
}

/// Fills `buf` from `map` at `offset`; returns the bytes filled (short only at the end of
/// the file). Zero blocks are filled in without a call; a block the read covers whole goes
/// through `whole` (which fills its part of `buf`), a block read in part through `get`.
pub(crate) fn fill<E>(
    map: &BlockMap,
    offset: u64,
    buf: &mut [u8],
    mut get: impl FnMut(&BlockId, u32) -> Result<Block, E>,
    mut whole: impl FnMut(&BlockId, &mut [u8]) -> Result<(), E>,
) -> Result<usize, E> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        let Some(i) = map.block_at(at) else { break };
        let (start, id, len) = map.blocks[i];
        let from = (at - start) as usize;
        let n = (len as usize - from).min(buf.len() - done);
        let part = &mut buf[done..done + n];
        if id == BlockId::ZERO {
            part.fill(0);
        } else if n == len as usize {
            whole(&id, part)?;
        } else {
            let block = get(&id, len)?;
            let avail = block.len().saturating_sub(from).min(n);
            part[..avail].copy_from_slice(&block[from..from + avail]);
            part[avail..].fill(0);
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

pub use crate::walk::PathVisitor;

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

    /// The entries of a directory tree, checked against its id (see [`Vault::tree_entries`]).
    pub fn list(&self, tree: &TreeId) -> Result<Vec<Entry>> {
        Ok(self.vault.tree_entries(tree)?)
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
            Some(c) => Ok(BlockMap::new(&self.vault.read_catalog()?.content(&c)?)),
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
        let blocks = &self.blocks;
        fill(
            map,
            offset,
            buf,
            |id, len| blocks.read_block(id, len),
            |id, out| blocks.read_block_to(id, out),
        )
    }

    /// Visits the entry at `start` and, if it is a directory, its entries (with `recursive`,
    /// every entry below it), depth first in listing order, handing each to `visit` with its
    /// path (`start` joined by `/`). Memory holds the directories on the way down, not the
    /// listing; a tree that contains itself is an error, not a stack overflow. Paths are shown
    /// as text (a name that is not UTF-8 is shown lossily); [`Self::walk_below`] hands out
    /// their bytes.
    pub fn walk<E: From<Error>>(
        &self,
        start: &[u8],
        recursive: bool,
        visit: &mut dyn FnMut(&str, &Entry) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let entry = self.lookup(start)?;
        let mut prefix = start.to_vec();
        while prefix.last() == Some(&b'/') {
            prefix.pop();
        }
        let mut shown = |path: &[u8], e: &Entry| visit(&String::from_utf8_lossy(path), e);
        match entry.subtree.filter(|_| entry.kind == EntryKind::Dir) {
            Some(tree) => self
                .vault
                .walk_tree(tree, &mut prefix, recursive, &mut shown),
            None => shown(&prefix, &entry),
        }
    }

    /// Visits every entry below the directory `dir`, depth first in listing order, with its
    /// path from `dir` as bytes (`/name`, `/name/child`, …; names need not be UTF-8). Like
    /// [`Self::walk`], a tree that contains itself is an error.
    pub fn walk_below<E: From<Error>>(
        &self,
        dir: &Entry,
        visit: &mut PathVisitor<'_, E>,
    ) -> std::result::Result<(), E> {
        match dir.subtree.filter(|_| dir.kind == EntryKind::Dir) {
            Some(tree) => self.vault.walk_tree(tree, &mut Vec::new(), true, visit),
            None => Ok(()),
        }
    }

    /// Hands the bytes of the regular file at `path` to `write`, block by block in order
    /// (`cat`): one block in memory at a time.
    pub fn copy_file<E: From<Error>>(
        &self,
        path: &[u8],
        write: &mut dyn FnMut(&[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let entry = self.lookup(path)?;
        if entry.kind != EntryKind::File {
            return Err(Error::NotAFile {
                point: self.point.id.short().into(),
                path: String::from_utf8_lossy(path).into_owned(),
            }
            .into());
        }
        let map = self.block_map(&entry)?;
        for &(_, id, len) in &map.blocks {
            let block = self.blocks.read_block(&id, len).map_err(Error::from)?;
            write(&block)?;
        }
        Ok(())
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
        self.sequential
            .read_ahead(blocks, &self.map, offset, buf.len() as u64);
        fill(
            &self.map,
            offset,
            buf,
            |id, len| blocks.read_block(id, len),
            |id, out| blocks.read_block_to(id, out),
        )
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
        // Blocks read whole go through the second callback.
        let whole = |id: &BlockId, out: &mut [u8]| -> Result<(), ()> {
            out.fill(id.0[0] + 100);
            Ok(())
        };
        let mut buf = [9u8; 8];
        assert_eq!(fill(&map, 2, &mut buf, get, whole), Ok(8));
        assert_eq!(buf, [1, 1, 0, 0, 0, 102, 102, 102]);
        assert_eq!(fill(&map, 0, &mut buf[..4], get, whole), Ok(4));
        assert_eq!(buf[..4], [101; 4]);
        assert_eq!(fill(&map, 9, &mut buf, get, whole), Ok(1));
        assert_eq!(buf[0], 2);
        assert_eq!(fill(&map, 10, &mut buf, get, whole), Ok(0));
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
        // The pool took only two: the third is offered again.
        seq.queued(3);
        assert_eq!(seq.observe(&map, 1, 1, 3 << 20), Some(3..5));
        seq.queued(5);
        assert_eq!(seq.observe(&map, 1, 1, 3 << 20), None, "all queued already");
        // A jump is not sequential; continuing from there is.
        assert_eq!(seq.observe(&map, 7, 7, 3 << 20), None);
        assert_eq!(seq.observe(&map, 8, 8, 3 << 20), Some(9..10));
        seq.queued(10);
        assert_eq!(seq.observe(&map, 9, 9, 3 << 20), None, "end of file");
    }
}

//! Reassembly: turning a recovery point back into bytes.
//!
//! [`BlockReader`] finds a block through an in-memory locator (no SQLite per block), reads its
//! frame from the pack and decodes it. [`PointReader`] resolves paths of one point to entries
//! and serves `read_at` over a file's block list by binary search. Restore ([`restore`]) and
//! the mount are built on these two.

pub mod restore;

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::{BlockLocation, Content, Entry, EntryKind, PackState, RecoveryPoint, TreeId};
use crate::error::{Error, Result};
use crate::store::{BlockId, StoreError};
use crate::vault::Vault;

/// Reads and decodes blocks of one vault.
pub struct BlockReader<'v> {
    vault: &'v Vault,
    locator: HashMap<BlockId, (BlockLocation, PackState)>,
}

impl std::fmt::Debug for BlockReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockReader")
            .field("blocks", &self.locator.len())
            .finish()
    }
}

impl<'v> BlockReader<'v> {
    /// Loads the block locator of the vault.
    pub fn new(vault: &'v Vault) -> Result<BlockReader<'v>> {
        let locator = vault.catalog().block_locations()?;
        Ok(BlockReader { vault, locator })
    }

    /// Where a block is.
    pub fn locate(&self, id: &BlockId) -> Option<&(BlockLocation, PackState)> {
        self.locator.get(id)
    }

    /// The plaintext of one block of `len` bytes; zero blocks cost nothing.
    pub fn read_block(&self, id: &BlockId, len: u32) -> Result<Vec<u8>, StoreError> {
        if *id == BlockId::ZERO {
            return Ok(vec![0; len as usize]);
        }
        let Some((loc, state)) = self.locator.get(id) else {
            return Err(StoreError::UnknownBlock { block: *id });
        };
        if *state == PackState::InTransit {
            return Err(StoreError::MissingPack { pack: loc.pack });
        }
        let frame =
            self.vault
                .backend()
                .read_range(&loc.pack, loc.offset, loc.stored_len as usize)?;
        self.vault
            .codec()
            .decode(id, frame, loc.raw_len as usize)
            .map_err(|_| StoreError::CorruptFrame {
                block: *id,
                pack: loc.pack,
                offset: loc.offset,
            })
    }
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

    /// The index of the block holding `offset`.
    pub fn block_at(&self, offset: u64) -> Option<usize> {
        if offset >= self.size {
            return None;
        }
        Some(
            self.blocks
                .partition_point(|(start, _, _)| *start <= offset)
                - 1,
        )
    }
}

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
        let root = &self.point.root;
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
            subtree: Some(self.point.root_tree),
            target: None,
            rdev: 0,
            xattrs: root.xattrs.clone(),
        }
    }

    /// The entries of a directory tree.
    pub fn list(&self, tree: &TreeId) -> Result<Vec<Entry>> {
        Ok(self.vault.catalog().tree_entries(tree)?)
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
            Some(c) => Ok(BlockMap::new(&self.vault.catalog().content(&c)?)),
            None => Ok(BlockMap {
                blocks: Vec::new(),
                size: 0,
            }),
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    pub fn read_at(
        &self,
        map: &BlockMap,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StoreError> {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let Some(i) = map.block_at(at) else { break };
            let (start, id, len) = map.blocks[i];
            let block = self.blocks.read_block(&id, len)?;
            let from = (at - start) as usize;
            let n = (block.len() - from).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&block[from..from + n]);
            done += n;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_map_binary_search() {
        let content = Content {
            size: 10,
            blocks: vec![
                (BlockId([1; 32]), 4),
                (BlockId::ZERO, 3),
                (BlockId([2; 32]), 3),
            ],
        };
        let map = BlockMap::new(&content);
        assert_eq!(map.block_at(0), Some(0));
        assert_eq!(map.block_at(3), Some(0));
        assert_eq!(map.block_at(4), Some(1));
        assert_eq!(map.block_at(9), Some(2));
        assert_eq!(map.block_at(10), None);
    }
}

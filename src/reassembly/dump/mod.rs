//! Dump: a point, or a path of it, as a tar stream into any writer (`synvault dump`), for
//! `| tar x` here or on another host. What `tar x` makes of it as root (`--same-owner -p
//! --xattrs --xattrs-include='*' --acls`) is what restore makes of the same point.
//!
//! A directory is dumped as `./` (its own owner, mode, times and xattrs) and its entries as
//! `./path`, depth first in listing order (parents before children, as tar needs them); a
//! file, symlink or special file alone as its name. Each member carries owner numbers, mode,
//! the mtime to the nanosecond, and xattrs (POSIX ACLs also as tar's ACL records, see
//! `acl.rs`). The second and later names of a hardlinked file are hardlink members naming the
//! first, as restore links them ([`super::hardlink`]). A file with holes (zero blocks) is a
//! sparse member whose holes stay holes when GNU tar extracts it. Sockets are left out, as
//! restore leaves them: they belong to a running process.
//!
//! Data is read block by block, one block in memory at a time, decoded straight into the
//! buffer it is written from. The stream cannot take back what it has written: a block that
//! cannot be read ends it with the error, and what was written is not a whole archive.
//! Nothing is written outside `out`.

mod acl;
mod tar;

use std::io::{self, Write};

use self::tar::{padding, sparse_layout, Counted, Member, TypeFlag};
use super::hardlink::FirstNames;
use super::{BlockMap, PointReader};
use crate::catalog::{CatalogError, Entry, EntryKind};
use crate::error::Error;
use crate::store::{BlockId, StoreError};

/// What can stop a dump.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The stream could not be written; `BrokenPipe` when its reader went away.
    #[error("cannot write the tar stream")]
    Output(#[source] io::Error),
    /// The point could not be read.
    #[error(transparent)]
    Read(#[from] Error),
    /// A block of a file is damaged or missing; the stream stops inside that file.
    #[error("cannot read {path:?} of the point")]
    Damaged {
        path: String,
        #[source]
        source: StoreError,
    },
}

impl From<CatalogError> for DumpError {
    fn from(err: CatalogError) -> DumpError {
        DumpError::Read(err.into())
    }
}

/// Writes the entry at `path` of `reader`'s point, with everything below it, to `out` as a
/// tar archive (ending with its end blocks). `out` is not flushed.
pub fn dump_tar(
    reader: &PointReader<'_>,
    path: &[u8],
    out: &mut dyn Write,
) -> Result<(), DumpError> {
    crate::select::readable(reader.point())?;
    let start = reader.lookup(path)?;
    let mut dump = Dump {
        reader,
        out: Counted::new(out),
        first_names: FirstNames::default(),
        buf: Vec::new(),
    };
    if start.kind == EntryKind::Dir {
        dump.member(b".".to_vec(), &start)?;
        reader.walk_below(&start, &mut |rel: &[u8], entry: &Entry| {
            let mut name = b".".to_vec();
            name.extend_from_slice(rel);
            dump.member(name, entry)
        })?;
    } else {
        dump.member(start.name.clone(), &start)?;
    }
    dump.out.finish().map_err(DumpError::Output)
}

/// A dump under way.
struct Dump<'r, 'v, W> {
    reader: &'r PointReader<'v>,
    out: Counted<W>,
    /// Archive names of the hardlinked files written so far.
    first_names: FirstNames<Vec<u8>>,
    /// Where each block is decoded before it is written.
    buf: Vec<u8>,
}

impl<W: Write> Dump<'_, '_, W> {
    /// Writes the member for `entry`, named `path` in the archive.
    fn member(&mut self, path: Vec<u8>, entry: &Entry) -> Result<(), DumpError> {
        let flag = match entry.kind {
            EntryKind::File => TypeFlag::File,
            EntryKind::Dir => TypeFlag::Dir,
            EntryKind::Symlink => TypeFlag::Symlink,
            EntryKind::Fifo => TypeFlag::Fifo,
            EntryKind::CharDev => TypeFlag::CharDev,
            EntryKind::BlockDev => TypeFlag::BlockDev,
            EntryKind::Socket => return Ok(()),
        };
        let mut member = Member::new(path, flag);
        member.mode = entry.mode;
        member.uid = entry.uid;
        member.gid = entry.gid;
        member.mtime_ns = entry.mtime_ns;
        if let Some(first) = self.first_names.link_target(entry, || member.path.clone()) {
            // The file's data and metadata came with its first name.
            member.flag = TypeFlag::HardLink;
            member.link = first.clone();
            return self.write(&member.header_blocks());
        }
        member.records = xattr_records(&entry.xattrs);
        match entry.kind {
            EntryKind::File => return self.file(member, entry),
            EntryKind::Dir => member.path.push(b'/'),
            EntryKind::Symlink => member.link = entry.target.clone().unwrap_or_default(),
            EntryKind::CharDev | EntryKind::BlockDev => {
                member.dev_major = rustix::fs::major(entry.rdev);
                member.dev_minor = rustix::fs::minor(entry.rdev);
            }
            EntryKind::Fifo | EntryKind::Socket => {}
        }
        self.write(&member.header_blocks())
    }

    /// Writes a file's header and data: a sparse member if it has holes.
    fn file(&mut self, mut member: Member, entry: &Entry) -> Result<(), DumpError> {
        let map = self.reader.block_map(entry)?;
        let end = map
            .blocks
            .last()
            .map_or(0, |&(at, _, len)| at + u64::from(len));
        if end != entry.size || map.size != entry.size {
            return Err(CatalogError::Corrupt("a file's blocks do not add up to its size").into());
        }
        let segments = data_segments(&map);
        let data_bytes: u64 = segments.iter().map(|&(_, len)| len).sum();
        let has_holes = data_bytes < entry.size;
        let path = String::from_utf8_lossy(&member.path).into_owned();
        if has_holes {
            let layout = sparse_layout(&member.path, entry.size, &segments);
            member.records.extend(layout.records);
            member.path = layout.stand_in_name;
            member.size = layout.map.len() as u64 + data_bytes;
            self.write(&member.header_blocks())?;
            self.write(&layout.map)?;
        } else {
            member.size = entry.size;
            self.write(&member.header_blocks())?;
        }
        self.data(&map, &path)?;
        self.write(&vec![0; padding(data_bytes)])
    }

    /// Writes the data blocks of `map`, the file at `path`, in order, leaving out its holes.
    fn data(&mut self, map: &BlockMap, path: &str) -> Result<(), DumpError> {
        let data: Vec<BlockId> = map
            .blocks
            .iter()
            .map(|&(_, id, _)| id)
            .filter(|id| *id != BlockId::ZERO)
            .collect();
        self.reader.blocks().expect(&data);
        for &(_, id, len) in &map.blocks {
            if id == BlockId::ZERO {
                continue;
            }
            self.buf.resize(len as usize, 0);
            self.reader
                .blocks()
                .read_block_to(&id, &mut self.buf)
                .map_err(|source| DumpError::Damaged {
                    path: path.to_string(),
                    source,
                })?;
            self.out.write_all(&self.buf).map_err(DumpError::Output)?;
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), DumpError> {
        self.out.write_all(bytes).map_err(DumpError::Output)
    }
}

/// The (offset, length) runs of data in a file: its non-zero blocks, neighbours merged.
fn data_segments(map: &BlockMap) -> Vec<(u64, u64)> {
    let mut segments: Vec<(u64, u64)> = Vec::new();
    for &(at, id, len) in &map.blocks {
        if id == BlockId::ZERO || len == 0 {
            continue;
        }
        match segments.last_mut() {
            Some((start, run)) if *start + *run == at => *run += u64::from(len),
            _ => segments.push((at, u64::from(len))),
        }
    }
    segments
}

/// The PAX records of an entry's xattrs: `SCHILY.xattr.NAME` for each, as GNU tar's
/// `--xattrs` reads them (`%` and `=` in a name escaped as GNU tar escapes them), and the
/// text form of POSIX ACLs for `--acls`.
fn xattr_records(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut records = Vec::new();
    for (name, value) in xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        for &b in name {
            match b {
                b'%' => key.extend_from_slice(b"%25"),
                b'=' => key.extend_from_slice(b"%3D"),
                _ => key.push(b),
            }
        }
        records.push((key, value.clone()));
    }
    for (xattr, record) in acl::ACL_RECORDS {
        let text = xattrs
            .iter()
            .find(|(name, _)| name == xattr)
            .and_then(|(_, value)| acl::acl_text(value));
        if let Some(text) = text {
            records.push((record.to_vec(), text));
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Content;

    #[test]
    fn neighbouring_data_blocks_make_one_segment_and_zero_blocks_gaps() {
        let data = |n: u8| (BlockId([n; 32]), 4096);
        let map = BlockMap::new(&Content {
            size: 5 * 4096,
            blocks: vec![
                data(1),
                data(2),
                (BlockId::ZERO, 4096),
                data(3),
                (BlockId::ZERO, 4096),
            ],
        });
        assert_eq!(data_segments(&map), vec![(0, 8192), (12288, 4096)]);
    }

    #[test]
    fn xattrs_become_schily_records_and_acls_their_text_too() {
        let acl = [
            &2u32.to_le_bytes()[..],
            &[0x01, 0, 6, 0, 0xff, 0xff, 0xff, 0xff],
            &[0x04, 0, 4, 0, 0xff, 0xff, 0xff, 0xff],
            &[0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff],
        ]
        .concat();
        let records = xattr_records(&[
            (b"system.posix_acl_access".to_vec(), acl.clone()),
            (b"user.a=b%".to_vec(), b"\0bin".to_vec()),
        ]);
        assert_eq!(
            records,
            vec![
                (b"SCHILY.xattr.system.posix_acl_access".to_vec(), acl),
                (b"SCHILY.xattr.user.a%3Db%25".to_vec(), b"\0bin".to_vec()),
                (
                    b"SCHILY.acl.access".to_vec(),
                    b"user::rw-\ngroup::r--\nother::r--\n".to_vec()
                ),
            ]
        );
    }
}

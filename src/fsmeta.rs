//! File system metadata in and out: the only place that talks to the OS about owners, modes,
//! times, xattrs and special files. Ingest reads through it; restore writes through it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};

use crate::catalog::{Entry, EntryKind};

/// The entry kind of a `symlink_metadata` result.
pub fn kind_of(meta: &std::fs::Metadata) -> EntryKind {
    let ft = FileType::from_raw_mode(meta.mode());
    match ft {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        FileType::Fifo => EntryKind::Fifo,
        FileType::CharacterDevice => EntryKind::CharDev,
        FileType::BlockDevice => EntryKind::BlockDev,
        _ => EntryKind::Socket,
    }
}

/// Nanoseconds since the epoch of a `(secs, nsecs)` pair.
pub fn to_ns(secs: i64, nsecs: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsecs)
}

/// The extended attributes of a path (not following symlinks), sorted by name. A file
/// system without xattr support yields none.
pub fn read_xattrs(path: &Path) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut names) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 256];
        let n = loop {
            match rustix::fs::lgetxattr(path, OsStr::from_bytes(name), &mut value) {
                Ok(n) => break n,
                Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 16, 0),
                Err(rustix::io::Errno::NODATA) => break usize::MAX,
                Err(e) => return Err(e.into()),
            }
        };
        if n != usize::MAX {
            value.truncate(n);
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Creates a FIFO or device node.
pub fn make_special(path: &Path, entry: &Entry) -> std::io::Result<()> {
    let file_type = match entry.kind {
        EntryKind::Fifo => FileType::Fifo,
        EntryKind::CharDev => FileType::CharacterDevice,
        EntryKind::BlockDev => FileType::BlockDevice,
        _ => return Ok(()), // sockets are not recreated: they belong to a running process
    };
    rustix::fs::mknodat(
        CWD,
        path,
        file_type,
        Mode::from_raw_mode(entry.mode & 0o7777),
        entry.rdev,
    )?;
    Ok(())
}

/// Sets owner, mode, xattrs and times of a restored path, in that order (chown clears the
/// set-id bits, so mode comes after it). Returns the xattrs that could not be set.
pub fn apply_metadata(path: &Path, entry: &Entry) -> std::io::Result<Vec<String>> {
    let mut warnings = Vec::new();
    let uid = rustix::fs::Uid::from_raw(entry.uid);
    let gid = rustix::fs::Gid::from_raw(entry.gid);
    match rustix::fs::chownat(CWD, path, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(()) | Err(rustix::io::Errno::PERM) => {} // not root: keep our own ownership
        Err(e) => return Err(e.into()),
    }
    if entry.kind != EntryKind::Symlink {
        rustix::fs::chmodat(
            CWD,
            path,
            Mode::from_raw_mode(entry.mode & 0o7777),
            AtFlags::empty(),
        )?;
    }
    for (name, value) in &entry.xattrs {
        if let Err(e) =
            rustix::fs::lsetxattr(path, OsStr::from_bytes(name), value, XattrFlags::empty())
        {
            warnings.push(format!(
                "cannot set xattr {} on {}: {}",
                String::from_utf8_lossy(name),
                path.display(),
                std::io::Error::from(e)
            ));
        }
    }
    let time = Timespec {
        tv_sec: entry.mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: entry.mtime_ns.rem_euclid(1_000_000_000) as _,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(warnings)
}

/// An entry for a path from its metadata (content and subtree are filled in later).
pub fn entry_from_metadata(
    name: &[u8],
    path: &Path,
    meta: &std::fs::Metadata,
) -> std::io::Result<Entry> {
    let kind = kind_of(meta);
    let target = if kind == EntryKind::Symlink {
        Some(std::fs::read_link(path)?.as_os_str().as_bytes().to_vec())
    } else {
        None
    };
    let size = match kind {
        EntryKind::File => meta.size(),
        EntryKind::Symlink => target.as_ref().map_or(0, |t| t.len() as u64),
        _ => 0,
    };
    Ok(Entry {
        name: name.to_vec(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: to_ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: to_ns(meta.ctime(), meta.ctime_nsec()),
        size,
        inode: meta.ino(),
        nlink: meta.nlink(),
        content: None,
        subtree: None,
        target,
        rdev: if matches!(kind, EntryKind::CharDev | EntryKind::BlockDev) {
            meta.rdev()
        } else {
            0
        },
        xattrs: read_xattrs(path)?,
    })
}

//! File system metadata in and out: the only place that talks to the OS about owners, modes,
//! times, xattrs and special files. Ingest reads through it; restore writes through it, only on
//! descriptors or on names beneath a directory descriptor, never following a symlink.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags, CWD,
};

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

/// Creates a FIFO or device node named `name` in `dir`. Sockets are not recreated: they
/// belong to a running process.
pub fn make_special_at(dir: BorrowedFd<'_>, name: &OsStr, entry: &Entry) -> std::io::Result<()> {
    let file_type = match entry.kind {
        EntryKind::Fifo => FileType::Fifo,
        EntryKind::CharDev => FileType::CharacterDevice,
        EntryKind::BlockDev => FileType::BlockDevice,
        _ => return Ok(()),
    };
    rustix::fs::mknodat(
        dir,
        name,
        file_type,
        Mode::from_raw_mode(entry.mode & 0o7777),
        entry.rdev,
    )?;
    Ok(())
}

fn timestamps(entry: &Entry) -> Timestamps {
    let time = Timespec {
        tv_sec: entry.mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: entry.mtime_ns.rem_euclid(1_000_000_000) as _,
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}

fn ids(entry: &Entry) -> (Option<Uid>, Option<Gid>) {
    (
        Some(Uid::from_raw(entry.uid)),
        Some(Gid::from_raw(entry.gid)),
    )
}

/// Not root: keep our own ownership.
fn chown_result(result: rustix::io::Result<()>) -> std::io::Result<()> {
    match result {
        Ok(()) | Err(rustix::io::Errno::PERM) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn xattr_warning(name: &[u8], shown: &Path, e: rustix::io::Errno) -> String {
    format!(
        "cannot set xattr {} on {}: {}",
        String::from_utf8_lossy(name),
        shown.display(),
        std::io::Error::from(e)
    )
}

/// Sets owner, mode, xattrs and times of an open file or directory that restore made, in that
/// order (chown clears the set-id bits, so mode comes after it). Working on the descriptor
/// means no path is resolved again, so nothing can be redirected. Returns the xattrs that
/// could not be set; `shown` names the file in them.
pub fn apply_metadata_fd(
    fd: BorrowedFd<'_>,
    entry: &Entry,
    shown: &Path,
) -> std::io::Result<Vec<String>> {
    let (uid, gid) = ids(entry);
    chown_result(rustix::fs::fchown(fd, uid, gid))?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(entry.mode & 0o7777))?;
    let mut warnings = Vec::new();
    for (name, value) in &entry.xattrs {
        let name_os = OsStr::from_bytes(name);
        if let Err(e) = rustix::fs::fsetxattr(fd, name_os, value, XattrFlags::empty()) {
            warnings.push(xattr_warning(name, shown, e));
        }
    }
    rustix::fs::futimens(fd, &timestamps(entry))?;
    Ok(warnings)
}

/// [`apply_metadata_fd`] for a symlink or special file `name` in `dir`, which cannot be opened
/// for writing: every call works on `name` itself and never follows a symlink.
pub fn apply_metadata_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    entry: &Entry,
    shown: &Path,
) -> std::io::Result<Vec<String>> {
    let (uid, gid) = ids(entry);
    chown_result(rustix::fs::chownat(
        dir,
        name,
        uid,
        gid,
        AtFlags::SYMLINK_NOFOLLOW,
    ))?;
    if entry.kind != EntryKind::Symlink {
        chmod_nofollow(dir, name, Mode::from_raw_mode(entry.mode & 0o7777))?;
    }
    let mut warnings = Vec::new();
    // The directory through its descriptor, then `name` not followed: l*xattr takes no dirfd.
    let mut at = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    at.push(name);
    for (xname, value) in &entry.xattrs {
        let xname_os = OsStr::from_bytes(xname);
        if let Err(e) = rustix::fs::lsetxattr(&at, xname_os, value, XattrFlags::empty()) {
            warnings.push(xattr_warning(xname, shown, e));
        }
    }
    rustix::fs::utimensat(dir, name, &timestamps(entry), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(warnings)
}

/// `chmod` of `name` in `dir` without following a symlink there: Linux before 6.6 has no
/// `fchmodat(AT_SYMLINK_NOFOLLOW)`, so the node is opened as a path (`O_PATH | O_NOFOLLOW`)
/// and changed through `/proc/self/fd`, which names exactly that inode.
fn chmod_nofollow(dir: BorrowedFd<'_>, name: &OsStr, mode: Mode) -> std::io::Result<()> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::Symlink {
        return Ok(());
    }
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match rustix::fs::chmodat(CWD, proc_path.as_str(), mode, AtFlags::empty()) {
        // No /proc: `name` was made by restore a moment ago under a fresh name.
        Err(rustix::io::Errno::NOENT) => {
            Ok(rustix::fs::chmodat(dir, name, mode, AtFlags::empty())?)
        }
        other => Ok(other?),
    }
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

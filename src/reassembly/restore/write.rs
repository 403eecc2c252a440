//! Writing one planned item beneath the target: a file's data and metadata, a hardlink, a
//! symlink or special file, a directory's metadata.
//!
//! A file whose name is free is created there exclusively (`O_CREAT | O_EXCL | O_NOFOLLOW`, so
//! never through anything already at that name) and written in place; that saves a rename per
//! file on the common restore into an empty target. Anything whose name is taken is made under
//! a temporary name in its directory and renamed over the old one only when it is complete,
//! metadata included: a file already there (perhaps hardlinked to one outside the target) is
//! replaced, not written through. Either way, a file whose blocks are damaged or missing is
//! removed, never left with zeros in their place.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::target::{discard, replace, stat_at, temp_name, TargetDir};
use super::PlanItem;
use crate::catalog::{Entry, EntryKind};
use crate::error::Error;
use crate::fsmeta;
use crate::progress::Progress;
use crate::reassembly::{BlockMap, PointReader};
use crate::store::{BlockId, StoreError};

/// What became of one file.
pub(super) enum FileOutcome {
    /// Data and metadata written; the warnings are metadata that could not be set.
    Written(Vec<String>),
    Skipped,
    /// Its data is damaged or missing: nothing was put in place.
    Damaged(String),
    /// The store could not be reached: nothing was put in place, and the restore stops.
    Unreachable(String),
    /// Not tried: the restore stopped before it.
    NotTried,
    Failed(Error),
    Interrupted,
}

/// How files already in the target are judged, and whether what is written is read back.
#[derive(Clone, Copy, Debug)]
pub(super) struct Checks {
    /// A file already there (same size and mtime) is skipped instead of refused.
    pub overwrite: bool,
    /// Content is compared too: a file already there must hold the point's data to be
    /// skipped, and a written file is read back and compared.
    pub verify: bool,
}

/// Restores one file: skipped if an identical one is there (with `overwrite`), otherwise
/// written whole under a temporary name and renamed over whatever is at its name.
pub(super) fn restore_file(
    reader: &PointReader<'_>,
    target: &TargetDir,
    item: &PlanItem,
    checks: Checks,
    progress: &dyn Progress,
) -> FileOutcome {
    crate::failpoint::hit("restore:file");
    let overwrite = checks.overwrite;
    let shown = target.shown(&item.rel);
    let (dir, name) = match target.parent_of(&item.rel) {
        Ok(found) => found,
        Err(e) => return FileOutcome::Failed(Error::io("cannot open the directory of", shown)(e)),
    };
    if overwrite && already_restored(reader, dir.as_fd(), name, item, checks.verify) {
        progress.add_bytes(item.entry.size);
        return FileOutcome::Skipped;
    }
    // A free name is written in place; a taken one is replaced through a temporary name.
    let (file, temp) = match create_new(dir.as_fd(), name) {
        Ok(file) => (file, None),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let temp = temp_name();
            match create_new(dir.as_fd(), &temp) {
                Ok(file) => (file, Some(temp)),
                Err(e) => return FileOutcome::Failed(Error::io("cannot create", shown)(e)),
            }
        }
        Err(e) => return FileOutcome::Failed(Error::io("cannot create", shown)(e)),
    };
    let filled =
        fill(reader, &file, item, progress, &shown).and_then(|warnings| match checks.verify {
            true => read_back(reader, &file, item, &shown).map(|()| warnings),
            false => Ok(warnings),
        });
    match (filled, temp) {
        (Ok(warnings), None) => FileOutcome::Written(warnings),
        (Ok(warnings), Some(temp)) => match replace(dir.as_fd(), &temp, name, overwrite) {
            Ok(()) => FileOutcome::Written(warnings),
            Err(e) => FileOutcome::Failed(Error::io("cannot create", shown)(e)),
        },
        (Err(outcome), temp) => {
            // Ours either way: made with O_EXCL by this call.
            discard(dir.as_fd(), temp.as_deref().unwrap_or(name));
            outcome
        }
    }
}

/// A file already restored has its size and mtime: the mtime is set only once the data is
/// complete, so an interrupted restore resumes where it stopped. With `verify` its content
/// must be the point's too (a changed byte keeps size and mtime).
fn already_restored(
    reader: &PointReader<'_>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    item: &PlanItem,
    verify: bool,
) -> bool {
    let entry = &item.entry;
    let same_stat = match stat_at(dir, name) {
        Ok(Some(found)) => {
            found.file_type == FileType::RegularFile
                && found.size == entry.size
                && found.mtime_ns == entry.mtime_ns
        }
        _ => false,
    };
    if !same_stat || !verify {
        return same_stat;
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(dir, name, flags, Mode::empty()) else {
        return false;
    };
    let empty = BlockMap::empty();
    holds_content(
        reader,
        &File::from(fd),
        item.blocks.as_ref().unwrap_or(&empty),
    )
    .unwrap_or(false)
}

/// True if `item`, a file, is in the target as restore would leave it (see
/// `already_restored`): what a dry run counts as already there.
pub(super) fn already_there(
    reader: &PointReader<'_>,
    target: &TargetDir,
    item: &PlanItem,
    verify: bool,
) -> bool {
    match target.parent_of(&item.rel) {
        Ok((dir, name)) => already_restored(reader, dir.as_fd(), name, item, verify),
        Err(_) => false,
    }
}

/// Reads a written file back and compares it with the point; a difference is the file's
/// damage (it is not put in place).
fn read_back(
    reader: &PointReader<'_>,
    file: &File,
    item: &PlanItem,
    shown: &Path,
) -> Result<(), FileOutcome> {
    let empty = BlockMap::empty();
    match holds_content(reader, file, item.blocks.as_ref().unwrap_or(&empty)) {
        Ok(true) => Ok(()),
        Ok(false) => Err(FileOutcome::Damaged(
            "read back, it differs from the point".into(),
        )),
        Err(e) => Err(FileOutcome::Failed(Error::io("cannot read back", shown)(e))),
    }
}

/// True if `file` holds exactly the data of `map`: its length, and each block's bytes hash
/// to the block's id (a hole reads as zeros).
pub(super) fn holds_content(
    reader: &PointReader<'_>,
    file: &File,
    map: &BlockMap,
) -> std::io::Result<bool> {
    if file.metadata()?.len() != map.size {
        return Ok(false);
    }
    let codec = reader.blocks().vault().codec();
    let mut buf = Vec::new();
    for &(offset, id, len) in &map.blocks {
        buf.resize(len as usize, 0);
        file.read_exact_at(&mut buf, offset)?;
        let same = if id == BlockId::ZERO {
            buf.iter().all(|&b| b == 0)
        } else {
            codec.id_of(&buf) == id
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Creates `name` in `dir`, failing if anything (a symlink included) is already there.
fn create_new(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<File> {
    // Read and write: `--verify` reads the file back through the same descriptor.
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?;
    Ok(File::from(fd))
}

/// Sizes the file, writes its blocks and sets its metadata; the error is the outcome to report.
fn fill(
    reader: &PointReader<'_>,
    file: &File,
    item: &PlanItem,
    progress: &dyn Progress,
    shown: &Path,
) -> Result<Vec<String>, FileOutcome> {
    let empty = BlockMap::empty();
    let map = item.blocks.as_ref().unwrap_or(&empty);
    file.set_len(item.entry.size)
        .map_err(|e| FileOutcome::Failed(Error::io("cannot size", shown)(e)))?;
    match write_blocks(reader, file, map, progress) {
        Ok(()) => {}
        Err(BlockWriteError::Store(e)) if e.is_unreachable() => {
            return Err(FileOutcome::Unreachable(e.to_string()))
        }
        Err(BlockWriteError::Store(e)) => return Err(FileOutcome::Damaged(e.to_string())),
        Err(BlockWriteError::Io(e)) => {
            return Err(FileOutcome::Failed(Error::io("cannot write", shown)(e)))
        }
    }
    fsmeta::apply_metadata_fd(file.as_fd(), &item.entry, shown)
        .map_err(|e| FileOutcome::Failed(Error::io("cannot set metadata of", shown)(e)))
}

enum BlockWriteError {
    Store(StoreError),
    Io(std::io::Error),
}

/// Writes a file's blocks with positional writes, in parallel across the blocks of a large
/// file; zero blocks stay holes.
fn write_blocks(
    reader: &PointReader<'_>,
    file: &File,
    map: &BlockMap,
    progress: &dyn Progress,
) -> Result<(), BlockWriteError> {
    let write_one = |&(offset, id, len): &(u64, BlockId, u32)| {
        if id == BlockId::ZERO {
            progress.add_bytes(u64::from(len));
            return Ok(()); // a hole: set_len already made it
        }
        let data = reader
            .blocks()
            .read_block(&id, len)
            .map_err(BlockWriteError::Store)?;
        file.write_all_at(&data, offset)
            .map_err(BlockWriteError::Io)?;
        progress.add_bytes(u64::from(len));
        Ok(())
    };
    if map.blocks.len() > 1 {
        map.blocks.par_iter().try_for_each(write_one)
    } else {
        map.blocks.iter().try_for_each(write_one)
    }
}

/// Makes `other` a hardlink to `first` (already restored); returns false if it already was.
pub(super) fn link(
    target: &TargetDir,
    first: &PlanItem,
    other: &PlanItem,
    overwrite: bool,
) -> Result<bool, Error> {
    let shown = target.shown(&other.rel);
    let io = |e: std::io::Error| Error::io("cannot create hardlink", shown.clone())(e);
    let (src_dir, src_name) = target.parent_of(&first.rel).map_err(io)?;
    let (dst_dir, dst_name) = target.parent_of(&other.rel).map_err(io)?;
    if overwrite {
        let src = stat_at(src_dir.as_fd(), src_name).map_err(io)?;
        let dst = stat_at(dst_dir.as_fd(), dst_name).map_err(io)?;
        if let (Some(a), Some(b)) = (src, dst) {
            if (a.dev, a.ino) == (b.dev, b.ino) {
                return Ok(false);
            }
        }
    }
    let temp = temp_name();
    // No AT_SYMLINK_FOLLOW: the name itself is linked, never what it might point to.
    rustix::fs::linkat(&src_dir, src_name, &dst_dir, &temp, AtFlags::empty())
        .map_err(|e| io(e.into()))?;
    replace(dst_dir.as_fd(), &temp, dst_name, overwrite).map_err(io)?;
    Ok(true)
}

/// Makes a symlink, FIFO or device node with its metadata, under a temporary name renamed
/// over whatever is at its name. Sockets are not recreated: they belong to a running process.
pub(super) fn make_special(
    target: &TargetDir,
    item: &PlanItem,
    overwrite: bool,
) -> Result<Vec<String>, Error> {
    if item.entry.kind == EntryKind::Socket {
        return Ok(Vec::new());
    }
    let shown = target.shown(&item.rel);
    let io = |e: std::io::Error| Error::io("cannot create", shown.clone())(e);
    let (dir, name) = target.parent_of(&item.rel).map_err(io)?;
    let temp = temp_name();
    create_special(dir.as_fd(), &temp, &item.entry).map_err(io)?;
    let warnings = match fsmeta::apply_metadata_at(dir.as_fd(), &temp, &item.entry, &shown) {
        Ok(warnings) => warnings,
        Err(e) => {
            discard(dir.as_fd(), &temp);
            return Err(Error::io("cannot set metadata of", shown)(e));
        }
    };
    replace(dir.as_fd(), &temp, name, overwrite).map_err(io)?;
    Ok(warnings)
}

fn create_special(dir: BorrowedFd<'_>, temp: &OsStr, entry: &Entry) -> std::io::Result<()> {
    match entry.kind {
        EntryKind::Symlink => {
            let link_target = OsStr::from_bytes(entry.target.as_deref().unwrap_or_default());
            Ok(rustix::fs::symlinkat(link_target, dir, temp)?)
        }
        _ => fsmeta::make_special_at(dir, temp, entry),
    }
}

/// Sets a restored directory's metadata through its own descriptor (empty `rel`: the target).
pub(super) fn dir_metadata(
    target: &TargetDir,
    rel: &Path,
    entry: &Entry,
) -> Result<Vec<String>, Error> {
    let shown = target.shown(rel);
    let flags = OFlags::RDONLY | OFlags::DIRECTORY;
    let dir = target
        .open_at(rel, flags)
        .map_err(Error::io("cannot open directory", shown.clone()))?;
    fsmeta::apply_metadata_fd(dir.as_fd(), entry, &shown)
        .map_err(Error::io("cannot set metadata of", shown))
}

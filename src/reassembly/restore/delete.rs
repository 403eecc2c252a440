//! `restore --delete`: what the target holds beneath the restored directory that the point
//! does not, removed after the restore (or counted, for a dry run).
//!
//! Only directories the plan restores are looked into, each opened beneath the target
//! without following a symlink; a directory that is not the point's is removed whole without
//! following links inside it. The vault, and the directories leading to it, are never removed.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Dir, OFlags};

use super::target::{remove_entry, TargetDir};
use super::RestorePlan;
use crate::catalog::EntryKind;
use crate::error::{Error, Result};

/// Removes what the target holds beyond `plan` (sparing `keep`); returns how many entries
/// were removed (a directory with everything in it counts once).
pub(super) fn beyond_plan(
    target: &TargetDir,
    plan: &RestorePlan,
    keep: &HashSet<PathBuf>,
) -> Result<u64> {
    let mut removed = 0;
    for (dir, name) in extra_entries(target, plan, keep)? {
        let shown = target.shown(&dir.join(OsStr::from_bytes(&name)));
        let fd = target
            .open_at(&dir, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(Error::io("cannot open", target.shown(&dir)))?;
        remove_entry(fd.as_fd(), OsStr::from_bytes(&name))
            .map_err(Error::io("cannot remove", shown))?;
        removed += 1;
    }
    Ok(removed)
}

/// How many entries [`beyond_plan`] would remove.
pub(super) fn count_beyond_plan(
    target: &TargetDir,
    plan: &RestorePlan,
    keep: &HashSet<PathBuf>,
) -> Result<u64> {
    Ok(extra_entries(target, plan, keep)?.len() as u64)
}

/// The (directory, name) pairs in the restored directories that the plan does not hold.
fn extra_entries(
    target: &TargetDir,
    plan: &RestorePlan,
    keep: &HashSet<PathBuf>,
) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let planned: HashSet<&Path> = plan.items.iter().map(|i| i.rel.as_path()).collect();
    let dirs = std::iter::once(Path::new("")).chain(
        plan.items
            .iter()
            .filter(|i| i.entry.kind == EntryKind::Dir)
            .map(|i| i.rel.as_path()),
    );
    let mut extra = Vec::new();
    for dir in dirs {
        let fd = match target.open_at(dir, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            // Not there (a dry run before the restore made it): nothing in it to remove.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("cannot open", target.shown(dir))(e)),
        };
        let listing = Dir::read_from(&fd)
            .map_err(|e| Error::io("cannot list", target.shown(dir))(e.into()))?;
        for entry in listing {
            let entry = entry.map_err(|e| Error::io("cannot list", target.shown(dir))(e.into()))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let rel = dir.join(OsStr::from_bytes(name));
            if !planned.contains(rel.as_path()) && !keep.contains(&rel) {
                extra.push((dir.to_path_buf(), name.to_vec()));
            }
        }
    }
    Ok(extra)
}

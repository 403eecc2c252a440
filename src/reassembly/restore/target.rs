//! The restore target: a directory descriptor, and every file-system operation of restore done
//! beneath it.
//!
//! Restore writes only beneath its target and never through a link it did not create itself.
//! Paths inside the target are resolved from the target's descriptor with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`) where the kernel has it, otherwise one component at
//! a time with `O_NOFOLLOW`; the last name is then handled with `*at` calls that do not follow
//! it. Whatever is already in the target is replaced, never written through: new things are
//! made under a temporary name beside the old one and renamed over it, so a file hardlinked to
//! one outside keeps the outside content, and a symlink where a directory belongs is removed,
//! not entered.
//!
//! Which targets are allowed at all is decided by [`check_target`]: never the vault or anything
//! inside it, and `/` only when asked for in so many words.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, CWD};
use rustix::io::Errno;

use crate::catalog::tree_path::MAX_TREE_DEPTH;
use crate::error::{Error, Result};

/// Prefix of the temporary names restore writes under before renaming into place.
const TEMP_PREFIX: &str = ".synvault-restore-";
/// `openat2` fails with EAGAIN when a rename races with `RESOLVE_BENEATH`; try again a few
/// times before giving up.
const OPENAT2_TRIES: usize = 8;

/// An open restore target.
#[derive(Debug)]
pub struct TargetDir {
    root: OwnedFd,
    path: PathBuf,
    openat2: bool,
}

impl TargetDir {
    /// Opens the target directory `path`. The path itself is the user's and may pass through
    /// symlinks; nothing below it will.
    pub fn open(path: &Path) -> io::Result<TargetDir> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let root = rustix::fs::openat(CWD, path, flags, Mode::empty())?;
        let probe = rustix::fs::openat2(
            &root,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            beneath(),
        );
        Ok(TargetDir {
            root,
            path: path.to_path_buf(),
            // ENOSYS before Linux 5.6, EPERM under some seccomp filters: walk instead.
            openat2: probe.is_ok(),
        })
    }

    /// The target's own descriptor.
    #[cfg(test)]
    fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// `rel` as a path for messages.
    pub fn shown(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// Opens `rel` (empty: the target itself) with `flags`, never following a symlink on the
    /// way or at the end. `rel` must be relative and plain: `..`, `/` and `.` are refused.
    pub fn open_at(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        if !is_plain_relative(rel) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path is not plainly beneath the target",
            ));
        }
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        if self.openat2 {
            return self.open_with_openat2(rel, flags);
        }
        self.open_by_walking(rel, flags)
    }

    /// The directory holding `rel` (opened as a path, for `*at` calls) and `rel`'s last name.
    pub fn parent_of<'r>(&self, rel: &'r Path) -> io::Result<(OwnedFd, &'r OsStr)> {
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no last name"))?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let dir = self.open_at(parent, OFlags::PATH | OFlags::DIRECTORY)?;
        Ok((dir, name))
    }

    fn open_with_openat2(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let mut tries = 0;
        loop {
            let opened = rustix::fs::openat2(
                &self.root,
                rel,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                beneath(),
            );
            match opened {
                Err(Errno::AGAIN) if tries < OPENAT2_TRIES => tries += 1,
                other => return Ok(other?),
            }
        }
    }

    /// The fallback: each directory on the way opened with `O_NOFOLLOW` from the one before.
    fn open_by_walking(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let names: Vec<&OsStr> = rel.iter().collect();
        let mut dir: Option<OwnedFd> = None;
        for (i, name) in names.iter().enumerate() {
            let from = dir.as_ref().map_or(self.root.as_fd(), AsFd::as_fd);
            let step = if i + 1 == names.len() {
                flags
            } else {
                OFlags::PATH | OFlags::DIRECTORY
            };
            let flags = step | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            dir = Some(rustix::fs::openat(from, *name, flags, Mode::empty())?);
        }
        dir.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty path"))
    }

    #[cfg(test)]
    fn without_openat2(mut self) -> TargetDir {
        self.openat2 = false;
        self
    }
}

fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

fn is_plain_relative(rel: &Path) -> bool {
    rel.components().all(|c| matches!(c, Component::Normal(_)))
}

/// What restore needs to know about something already in the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub file_type: FileType,
    pub size: u64,
    pub mtime_ns: i64,
    pub dev: u64,
    pub ino: u64,
}

impl Found {
    // The field types of `Stat` differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    fn of(stat: &Stat) -> Found {
        Found {
            file_type: FileType::from_raw_mode(stat.st_mode),
            size: stat.st_size as u64,
            mtime_ns: crate::fsmeta::to_ns(stat.st_mtime as i64, stat.st_mtime_nsec as i64),
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
        }
    }
}

/// What is at `name` in `dir`, not following a symlink; `None` if nothing is.
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Found>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(Found::of(&stat))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A fresh name to build something under before it is renamed into place.
pub fn temp_name() -> OsString {
    let random = hex::encode(crate::crypto::random_array::<8>());
    OsString::from(format!("{TEMP_PREFIX}{random}"))
}

/// Makes directory `name` in `dir`. An existing directory is kept (restore merges into it);
/// with `overwrite`, anything else there (a symlink, a file) is removed first, so nothing is
/// ever entered through a link.
pub fn ensure_dir(dir: BorrowedFd<'_>, name: &OsStr, overwrite: bool) -> io::Result<()> {
    // Private until its metadata is set at the end of the restore.
    let mode = Mode::from_raw_mode(0o700);
    match rustix::fs::mkdirat(dir, name, mode) {
        Err(Errno::EXIST) => {}
        other => return Ok(other?),
    }
    match stat_at(dir, name)? {
        Some(found) if found.file_type == FileType::Directory => Ok(()),
        Some(_) if overwrite => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
            Ok(rustix::fs::mkdirat(dir, name, mode)?)
        }
        _ => Err(Errno::EXIST.into()),
    }
}

/// Renames `temp` over `name` in `dir`. With `overwrite`, a directory in the way is removed
/// (without following anything inside it). On failure `temp` is removed.
pub fn replace(dir: BorrowedFd<'_>, temp: &OsStr, name: &OsStr, overwrite: bool) -> io::Result<()> {
    let result = match rustix::fs::renameat(dir, temp, dir, name) {
        Err(Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST) if overwrite => {
            remove_tree(dir, name, 0).and_then(|()| Ok(rustix::fs::renameat(dir, temp, dir, name)?))
        }
        other => other.map_err(io::Error::from),
    };
    if result.is_err() {
        discard(dir, temp);
    }
    result
}

/// Removes a temporary file restore made; a failure leaves only a hidden temporary behind.
pub fn discard(dir: BorrowedFd<'_>, temp: &OsStr) {
    let _ = rustix::fs::unlinkat(dir, temp, AtFlags::empty());
}

/// Removes `name` in `dir`: a file or link, or a directory with everything in it (see
/// [`remove_tree`]).
pub fn remove_entry(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Err(Errno::ISDIR) => remove_tree(dir, name, 0),
        other => Ok(other?),
    }
}

/// Removes the directory `name` in `dir` and everything in it, descending only through
/// directories opened with `O_NOFOLLOW`: a symlink inside is removed, never followed.
fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr, depth: usize) -> io::Result<()> {
    if depth > MAX_TREE_DEPTH {
        return Err(Errno::LOOP.into());
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    let mut children = Vec::new();
    for entry in Dir::read_from(&fd)? {
        let entry = entry?;
        let child = entry.file_name().to_bytes();
        if child != b"." && child != b".." {
            children.push(OsStr::from_bytes(child).to_os_string());
        }
    }
    for child in &children {
        match rustix::fs::unlinkat(&fd, child, AtFlags::empty()) {
            Err(Errno::ISDIR) => remove_tree(fd.as_fd(), child, depth + 1)?,
            other => other?,
        }
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// Refuses a restore target that is the vault `vault` or anything inside it (compared by
/// device and inode, so other spellings and bind mounts of the vault are caught), and `/`
/// unless it is spelled `/` and `overwrite` is given.
pub fn check_target(target: &Path, vault: &Path, overwrite: bool) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::UnsafeTarget {
            path: target.to_path_buf(),
            why,
        })
    };
    let vault_id = dev_ino(vault).map_err(Error::io("cannot read vault", vault))?;
    let existing = deepest_existing(target);
    let real = fs::canonicalize(&existing).map_err(Error::io("cannot resolve", &existing))?;
    if real.ancestors().any(|a| dev_ino(a).ok() == Some(vault_id)) {
        return refuse(format!("is inside the vault {}", vault.display()));
    }
    let is_root = existing == target && dev_ino(&real).ok() == dev_ino(Path::new("/")).ok();
    if is_root && !(target.as_os_str() == "/" && overwrite) {
        return refuse(
            "is the root directory: give `--target /` and --overwrite to restore onto it".into(),
        );
    }
    Ok(())
}

/// Where the vault is beneath the target, if it is: restore leaves that path out.
pub fn vault_beneath(target: &Path, vault: &Path) -> Option<PathBuf> {
    let (target, vault) = (
        fs::canonicalize(target).ok()?,
        fs::canonicalize(vault).ok()?,
    );
    vault.strip_prefix(&target).ok().map(Path::to_path_buf)
}

fn dev_ino(path: &Path) -> io::Result<(u64, u64)> {
    let meta = fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// The longest prefix of `path` that exists (`.` for a relative path none of which does).
fn deepest_existing(path: &Path) -> PathBuf {
    for candidate in path.ancestors() {
        let candidate = if candidate.as_os_str().is_empty() {
            Path::new(".")
        } else {
            candidate
        };
        if fs::metadata(candidate).is_ok() {
            return candidate.to_path_buf();
        }
    }
    PathBuf::from(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        let outside = dir.path().join("outside");
        fs::create_dir_all(target.join("real")).unwrap();
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, target.join("link")).unwrap();
        (dir, target, outside)
    }

    #[test]
    fn nothing_is_opened_through_a_symlink_or_outside() {
        let (_dir, target, _outside) = setup();
        for t in [
            TargetDir::open(&target).unwrap(),
            TargetDir::open(&target).unwrap().without_openat2(),
        ] {
            let dir = OFlags::PATH | OFlags::DIRECTORY;
            assert!(t.open_at(Path::new("real"), dir).is_ok());
            assert!(t.open_at(Path::new(""), dir).is_ok());
            assert!(t.open_at(Path::new("link"), dir).is_err());
            assert!(t.open_at(Path::new("link/x"), dir).is_err());
            for bad in ["..", "../t", "/tmp", "./real", "real/../real"] {
                let err = t.open_at(Path::new(bad), dir).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
            }
        }
    }

    #[test]
    fn a_symlink_where_a_directory_belongs_is_replaced() {
        let (_dir, target, outside) = setup();
        let t = TargetDir::open(&target).unwrap();
        assert!(ensure_dir(t.root(), OsStr::new("link"), false).is_err());
        ensure_dir(t.root(), OsStr::new("link"), true).unwrap();
        assert!(fs::symlink_metadata(target.join("link")).unwrap().is_dir());
        assert!(outside.is_dir());
        ensure_dir(t.root(), OsStr::new("real"), false).unwrap();
    }

    #[test]
    fn replacing_a_directory_removes_it_without_following_links() {
        let (_dir, target, outside) = setup();
        fs::write(outside.join("keep"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, target.join("real/inner")).unwrap();
        let t = TargetDir::open(&target).unwrap();
        let temp = temp_name();
        fs::write(target.join(&temp), b"new").unwrap();
        assert!(replace(t.root(), &temp, OsStr::new("real"), false).is_err());
        assert!(
            !target.join(&temp).exists(),
            "a failed replace removes its temporary"
        );
        fs::write(target.join(&temp), b"new").unwrap();
        replace(t.root(), &temp, OsStr::new("real"), true).unwrap();
        assert_eq!(fs::read(target.join("real")).unwrap(), b"new");
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"x");
    }

    #[test]
    fn the_vault_and_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vault = dir.path().join("vault");
        fs::create_dir_all(vault.join("packs")).unwrap();
        std::os::unix::fs::symlink(&vault, dir.path().join("alias")).unwrap();
        for bad in ["vault", "vault/packs", "vault/new/dir", "alias", "alias/x"] {
            let err = check_target(&dir.path().join(bad), &vault, true).unwrap_err();
            assert!(matches!(err, Error::UnsafeTarget { .. }), "{bad}: {err}");
        }
        check_target(&dir.path().join("elsewhere"), &vault, true).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("slash")).unwrap();
        for (root, overwrite) in [("/", false), ("slash", true), ("/tmp/..", true)] {
            let err = check_target(&dir.path().join(root), &vault, overwrite).unwrap_err();
            assert!(matches!(err, Error::UnsafeTarget { .. }), "{root}");
        }
        check_target(Path::new("/"), &vault, true).unwrap();
        assert_eq!(
            vault_beneath(dir.path(), &vault),
            Some(PathBuf::from("vault"))
        );
        assert_eq!(vault_beneath(&vault.join("packs"), &vault), None);
    }
}

//! The FUSE adapter: mounts a [`View`] read-only and serves it until told to stop.
//!
//! This module only translates: [`fs`] turns kernel requests into view calls and view answers
//! into replies, [`errno`] maps view errors to errnos. It checks the mount point and
//! `/dev/fuse` first so that the common mistakes get a one-line error and their own exit
//! code, mounts with the kernel settings that make reads fast, and unmounts on SIGINT,
//! SIGTERM or an outside `umount`. fuser types never leave this module.

mod errno;
mod fs;

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fuser::{MountOption, SessionACL};

use crate::reassembly::view::View;

/// Why a mount could not start.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount point {} does not exist", .path.display())]
    MissingMountPoint { path: PathBuf },
    #[error("mount point {} is not a directory", .path.display())]
    NotADirectory { path: PathBuf },
    #[error("mount point {} is not empty", .path.display())]
    NotEmpty { path: PathBuf },
    #[error("{} is already a mount point (unmount it first: fusermount3 -u or umount)", .path.display())]
    AlreadyMounted { path: PathBuf },
    #[error("FUSE is not usable on this machine: {why}")]
    NoFuse { why: String },
    #[error("cannot mount at {}", .path.display())]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How to mount.
#[derive(Clone, Copy, Debug)]
pub struct MountOptions {
    /// Let other users than the mounting one see the files (`allow_other`).
    pub allow_other: bool,
    /// Threads serving requests, each on its own cloned `/dev/fuse` descriptor.
    pub threads: usize,
    /// Kernel read-ahead of the mount, KiB (written to the mount's `read_ahead_kb`).
    pub readahead_kib: u64,
    /// Entries the kernel may hold before the mount asks it to drop the oldest (each costs
    /// the mount about half a KiB while held).
    pub max_nodes: usize,
}

/// Entries the mount asks the kernel to drop per tenth of a second, at most.
pub const RELEASE_PER_TICK: usize = 20_000;

/// Default of [`MountOptions::max_nodes`]: about 50 MiB of nodes.
pub const DEFAULT_MAX_NODES: usize = 100_000;

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            allow_other: false,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            readahead_kib: 16 << 10,
            max_nodes: DEFAULT_MAX_NODES,
        }
    }
}

/// Checks that `path` is an existing, empty directory that nothing is mounted on.
pub fn check_mount_point(path: &Path) -> Result<(), MountError> {
    let owned = || path.to_path_buf();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MountError::MissingMountPoint { path: owned() })
        }
        // A FUSE mount whose process died answers ENOTCONN.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTCONN.raw_os_error()) => {
            return Err(MountError::AlreadyMounted { path: owned() })
        }
        Err(source) => {
            return Err(MountError::Mount {
                path: owned(),
                source,
            })
        }
    };
    if !meta.is_dir() {
        return Err(MountError::NotADirectory { path: owned() });
    }
    if is_mount_point(path, &meta) {
        return Err(MountError::AlreadyMounted { path: owned() });
    }
    let mut listing = std::fs::read_dir(path).map_err(|source| MountError::Mount {
        path: owned(),
        source,
    })?;
    if listing.next().is_some() {
        return Err(MountError::NotEmpty { path: owned() });
    }
    Ok(())
}

/// True if something is mounted on `path`: its device differs from its parent's, or it is
/// listed in the mount table (a bind mount of the same file system).
fn is_mount_point(path: &Path, meta: &std::fs::Metadata) -> bool {
    if let Ok(parent) = std::fs::metadata(path.join("..")) {
        if parent.dev() != meta.dev() || parent.ino() == meta.ino() {
            return true;
        }
    }
    let Ok(canonical) = path.canonicalize() else {
        return false;
    };
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|field| Path::new(&unescape_mountinfo(field)) == canonical)
}

/// Undoes the octal escapes (`\040` for a space) of `/proc/self/mountinfo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks that `/dev/fuse` is a character device this process can open.
pub fn check_fuse() -> Result<(), MountError> {
    let device = Path::new("/dev/fuse");
    let meta = std::fs::metadata(device).map_err(|e| MountError::NoFuse {
        why: format!("{}: {e}", device.display()),
    })?;
    if !meta.file_type().is_char_device() {
        return Err(MountError::NoFuse {
            why: format!("{} is not a character device", device.display()),
        });
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map(drop)
        .map_err(|e| MountError::NoFuse {
            why: format!("cannot open {}: {e}", device.display()),
        })
}

fn config(options: &MountOptions, fsname: &str) -> fuser::Config {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(fsname.to_string()),
        MountOption::Subtype("synvault".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    if options.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(options.threads.max(1));
    config.clone_fd = true;
    config
}

/// Raises the kernel read-ahead of the mount at `path` (best effort: the knob is root's).
pub fn tune_readahead(path: &Path, kib: u64) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let (major, minor) = (rustix::fs::major(meta.dev()), rustix::fs::minor(meta.dev()));
    let knob = PathBuf::from(format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb"));
    if let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(knob) {
        let _ = file.write_all(kib.to_string().as_bytes());
    }
}

/// Mounts `view` at `mountpoint` and serves it until `stop` is set (then unmounts) or someone
/// unmounts it. `ready` runs once the mount is live.
///
/// Every tenth of a second it asks the kernel to drop the oldest entries beyond
/// [`MountOptions::max_nodes`] (at most [`RELEASE_PER_TICK`] at a time).
pub fn mount(
    view: View<'static>,
    mountpoint: &Path,
    options: &MountOptions,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> Result<(), MountError> {
    check_mount_point(mountpoint)?;
    check_fuse()?;
    let fsname = format!("synvault:{}", view.blocks().vault().place().location());
    let mount_error = |source| MountError::Mount {
        path: mountpoint.to_path_buf(),
        source,
    };
    let view = Arc::new(view);
    let session = fuser::Session::new(
        fs::SynvaultFs::new(view.clone()),
        mountpoint,
        &config(options, &fsname),
    )
    .map_err(mount_error)?;
    let background = session.spawn().map_err(mount_error)?;
    tune_readahead(mountpoint, options.readahead_kib);
    ready();
    let notifier = background.notifier();
    while !stop.load(Ordering::Relaxed) && !background.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        // From this thread, not a request handler's: the kernel may wait on one to answer.
        for (parent, name) in view.entries_beyond(options.max_nodes, RELEASE_PER_TICK) {
            // An entry the kernel dropped already answers ENOENT: nothing to do.
            let _ = notifier.inval_entry(fuser::INodeNo(parent.0), OsStr::from_bytes(&name));
        }
    }
    if background.guard.is_finished() {
        // Unmounted from outside: the session ended on its own.
        return background.join().map_err(mount_error);
    }
    if background.umount_and_join().is_err() {
        // Busy (a shell sits in it): detach now, the kernel finishes when the last user leaves.
        let _ = rustix::mount::unmount(mountpoint, rustix::mount::UnmountFlags::DETACH);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/mnt/a\040b\134c"), "/mnt/a b\\c");
        assert_eq!(unescape_mountinfo(r"/x\04"), r"/x\04");
    }

    #[test]
    fn mount_point_checks() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            check_mount_point(&missing),
            Err(MountError::MissingMountPoint { .. })
        ));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            check_mount_point(&file),
            Err(MountError::NotADirectory { .. })
        ));
        let full = dir.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("f"), b"x").unwrap();
        assert!(matches!(
            check_mount_point(&full),
            Err(MountError::NotEmpty { .. })
        ));
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        check_mount_point(&empty).unwrap();
        assert!(matches!(
            check_mount_point(Path::new("/")),
            Err(MountError::AlreadyMounted { .. })
        ));
    }
}

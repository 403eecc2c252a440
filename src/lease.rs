//! Reader leases: every command that reads a vault says so, so that prune never deletes a
//! pack from under it.
//!
//! A lease is a file `<vault>/readers/<pid>-<random>.json` naming the reader (pid, command,
//! since) and held with an `flock` for as long as the reader runs. The kernel drops the lock
//! when the process ends however it ends, so a reader killed with SIGKILL holds nothing: the
//! next [`alive`] finds its file unlocked and removes it. Prune sets aside the packs it
//! retires while any reader that started before the retirement is alive.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::backend::{create_private_dir_all, PRIVATE_FILE_MODE};

const DIR: &str = "readers";

/// Who holds a lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reader {
    pub pid: u32,
    pub command: String,
    /// When the reader started (ns since the epoch, UTC).
    pub since_ns: i64,
}

/// A lease held until dropped.
#[derive(Debug)]
pub struct ReaderLease {
    path: PathBuf,
    _file: File,
}

impl ReaderLease {
    /// Takes a lease on the vault at `root` for `command`.
    pub fn take(root: &Path, command: &str) -> Result<ReaderLease> {
        let dir = root.join(DIR);
        create_private_dir_all(&dir).map_err(Error::io("cannot create", &dir))?;
        let reader = Reader {
            pid: std::process::id(),
            command: command.to_string(),
            since_ns: crate::time::now_ns(),
        };
        let path = dir.join(format!(
            "{}-{}.json",
            reader.pid,
            hex::encode(crate::crypto::random_array::<6>())
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&path)
            .map_err(Error::io("cannot create reader lease", &path))?;
        flock(&file, FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| Error::io("cannot lock reader lease", &path)(e.into()))?;
        let json = serde_json::to_vec(&reader).unwrap_or_default();
        file.write_all(&json)
            .map_err(Error::io("cannot write reader lease", &path))?;
        Ok(ReaderLease { path, _file: file })
    }
}

impl Drop for ReaderLease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The readers of the vault at `root` that are alive, oldest first. Leases left by readers
/// that died are removed.
pub fn alive(root: &Path) -> Result<Vec<Reader>> {
    let dir = root.join(DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("cannot read", &dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if flock(&file, FlockOperation::NonBlockingLockShared).is_ok() {
            // Nobody holds it: its reader is gone (or has not locked it yet: a lease is
            // locked before its text is written, so an empty file is a lease being taken).
            let text = fs::read(&path).unwrap_or_default();
            if !text.is_empty() {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        if let Ok(reader) = serde_json::from_slice::<Reader>(&fs::read(&path).unwrap_or_default()) {
            out.push(reader);
        }
    }
    out.sort_by_key(|r| r.since_ns);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_alive_while_held_and_gone_after() {
        let dir = tempfile::tempdir().unwrap();
        let lease = ReaderLease::take(dir.path(), "mount").unwrap();
        let readers = alive(dir.path()).unwrap();
        assert_eq!(readers.len(), 1);
        assert_eq!(readers[0].command, "mount");
        assert_eq!(readers[0].pid, std::process::id());
        drop(lease);
        assert!(alive(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_lease_whose_holder_died_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let readers = dir.path().join(DIR);
        fs::create_dir_all(&readers).unwrap();
        let left = readers.join("1-dead.json");
        fs::write(
            &left,
            serde_json::to_vec(&Reader {
                pid: 1,
                command: "restore".into(),
                since_ns: 5,
            })
            .unwrap(),
        )
        .unwrap();
        assert!(alive(dir.path()).unwrap().is_empty());
        assert!(!left.exists());
    }
}

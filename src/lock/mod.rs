//! The writer lock: one writer at a time per vault, and the lock says who holds it.
//!
//! The lock is an `flock(2)` on `<vault>/lock`, so the kernel releases it when its holder dies
//! however it dies: a stale lock is never left for the user to clear. The file's text names
//! the holder (pid, host, command, since) for the error the next writer gets; text left behind
//! by a holder that died is reported as taken over.
//!
//! Because the lock is an `flock`, a process that exits without unwinding (the CLI's
//! interrupt watchdog ends a command stuck in a blocking read with `exit`) releases it too;
//! [`LockNote`] lets it clear its name first.
//!
//! A vault in object storage is written from several machines: there the writer lock is also
//! a lock object in the bucket ([`bucket`]), taken after the local `flock`.

pub mod bucket;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::error::{Error, Result};
use crate::place::Place;

/// Held while a writer runs; dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    file: File,
    /// The lock object of a vault in object storage.
    bucket: Option<bucket::BucketLock>,
}

/// What happened when the lock was taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lock was free.
    Free,
    /// A holder that is gone left its name behind; this is it.
    TakenOver(String),
}

fn describe_self(command: &str) -> String {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let since = crate::time::format_utc(crate::time::now_ns());
    format!(
        "pid {} on {host} ({command}) since {since}",
        std::process::id()
    )
}

impl WriterLock {
    /// Takes the lock for `command`, or fails with [`Error::Locked`] naming the holder.
    pub fn acquire(vault: &Path, command: &str) -> Result<(WriterLock, Acquired)> {
        WriterLock::acquire_named(vault, "lock", command)
    }

    /// Takes the lock file `name` of the vault (another lock than the writer's, such as the
    /// one that keeps two prunes apart), or fails with [`Error::Locked`] naming the holder.
    pub fn acquire_named(
        vault: &Path,
        name: &str,
        command: &str,
    ) -> Result<(WriterLock, Acquired)> {
        let path = vault.join(name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::store::backend::PRIVATE_FILE_MODE)
            .open(&path)
            .map_err(Error::io("cannot open lock file", &path))?;
        let mut previous = String::new();
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let _ = file.read_to_string(&mut previous);
            let holder = previous.trim();
            return Err(Error::Locked {
                holder: if holder.is_empty() {
                    "another process".into()
                } else {
                    holder.into()
                },
            });
        }
        let _ = file.read_to_string(&mut previous);
        let acquired = match previous.trim() {
            "" => Acquired::Free,
            stale => Acquired::TakenOver(stale.to_string()),
        };
        let me = describe_self(command);
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(me.as_bytes()))
            .map_err(Error::io("cannot write lock file", &path))?;
        Ok((WriterLock { file, bucket: None }, acquired))
    }

    /// The holding of the bucket's lock object, for a vault in object storage.
    pub fn holding(&self) -> Option<&std::sync::Arc<bucket::Holding>> {
        self.bucket.as_ref().map(bucket::BucketLock::holding)
    }

    /// Takes the writer lock of the vault at `place` whose catalog directory is `local`: the
    /// `flock` there and, for a vault in object storage, the bucket's lock object too.
    pub fn acquire_in(
        place: &Place,
        local: &Path,
        command: &str,
    ) -> Result<(WriterLock, Acquired)> {
        let (mut lock, here) = WriterLock::acquire(local, command)?;
        let Some(remote) = place.remote() else {
            return Ok((lock, here));
        };
        let (held, there) = bucket::BucketLock::acquire(remote, &describe_self(command))?;
        lock.bucket = Some(held);
        // The bucket's takeover is the one that tells of another machine's writer.
        let acquired = match (here, there) {
            (_, Acquired::TakenOver(holder)) | (Acquired::TakenOver(holder), _) => {
                Acquired::TakenOver(holder)
            }
            _ => Acquired::Free,
        };
        Ok((lock, acquired))
    }
}

/// Clears the holder's name from the lock file from any thread, for a process about to exit
/// without unwinding (the kernel then drops the `flock` with the process).
#[derive(Debug)]
pub struct LockNote {
    file: File,
}

impl LockNote {
    /// Clears the holder's name, so the next writer does not report a takeover.
    pub fn clear(&self) {
        let _ = self.file.set_len(0);
    }
}

impl WriterLock {
    /// A [`LockNote`] for this lock, or `None` if the file cannot be shared.
    pub fn note(&self) -> Option<LockNote> {
        self.file.try_clone().ok().map(|file| LockNote { file })
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Clear the holder's name first, so the next writer does not report a takeover.
        let _ = self.file.set_len(0);
        let _ = flock(&self.file, FlockOperation::Unlock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_is_refused_and_names_holder() {
        let dir = tempfile::tempdir().unwrap();
        let (held, how) = WriterLock::acquire(dir.path(), "backup /a").unwrap();
        assert_eq!(how, Acquired::Free);
        match WriterLock::acquire(dir.path(), "backup /b") {
            Err(Error::Locked { holder }) => assert!(holder.contains("backup /a"), "{holder}"),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        let (_again, how) = WriterLock::acquire(dir.path(), "backup /c").unwrap();
        assert_eq!(how, Acquired::Free);
    }

    #[test]
    fn a_cleared_note_is_no_takeover() {
        let dir = tempfile::tempdir().unwrap();
        let (held, _) = WriterLock::acquire(dir.path(), "backup /a").unwrap();
        held.note().unwrap().clear();
        // As after an exit without unwinding: the flock goes, the text was cleared.
        std::mem::forget(held);
        let text = std::fs::read_to_string(dir.path().join("lock")).unwrap();
        assert!(text.is_empty(), "{text}");
    }

    #[test]
    fn text_left_by_a_dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lock"), "pid 1 on h (backup) since then").unwrap();
        let (_lock, how) = WriterLock::acquire(dir.path(), "backup").unwrap();
        assert!(matches!(how, Acquired::TakenOver(s) if s.contains("pid 1")));
    }
}

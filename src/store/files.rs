//! The vault's few small named files that live beside its packs: `config.json` and the key
//! files `keys/<id>.key`. They live wherever the packs do — the vault directory, or the
//! bucket of a vault in object storage — so that the store alone is the whole backup.
//!
//! Names are `/`-separated and relative to the vault (`config.json`, `keys/ab12.key`).
//! Writes are atomic and durable: a reader sees the old file or the new one, never a torn one.

use std::fs;
use std::path::{Path, PathBuf};

use super::backend::{sync_dir, write_durably};
use super::{Result, StoreError};

/// Small named files of a vault.
pub trait VaultFiles: Send + Sync + std::fmt::Debug {
    /// The bytes of `name`, or `None` if there is no such file.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Writes `name` atomically and durably, replacing what was there.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<()>;
    /// Removes `name` durably; a file that is not there is no error.
    fn remove(&self, name: &str) -> Result<()>;
    /// The names of the files in folder `dir` (one level, without the folder).
    fn list(&self, dir: &str) -> Result<Vec<String>>;
    /// True if the vault's place holds nothing at all (`init` refuses a place that does).
    fn is_empty(&self) -> Result<bool>;
    /// How people name the place of `name` in messages: a path or a URL.
    fn describe(&self, name: &str) -> String;
}

/// The small files of a vault directory.
#[derive(Debug)]
pub struct LocalFiles {
    root: PathBuf,
}

impl LocalFiles {
    pub fn new(root: impl Into<PathBuf>) -> LocalFiles {
        LocalFiles { root: root.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

impl VaultFiles for LocalFiles {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path)(e)),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(name);
        write_durably(&path, bytes).map_err(StoreError::io("write", &path))
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("remove", &path)(e)),
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        sync_dir(dir).map_err(StoreError::io("sync", dir))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let path = self.path(dir);
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("list", &path)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(StoreError::io("list", &path))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn is_empty(&self) -> Result<bool> {
        match fs::read_dir(&self.root) {
            Ok(mut entries) => Ok(entries.next().is_none()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(StoreError::io("list", &self.root)(e)),
        }
    }

    fn describe(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

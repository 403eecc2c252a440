//! Where packs live. The [`Backend`] trait is the seam for object storage later; the local
//! directory backend is the first implementation, [`MemBackend`] the test double.
//!
//! Contract: `put` is atomic and durable — after it returns, the pack is complete under its
//! name and survives a crash; a reader never sees a partial pack. Packs are immutable, so
//! readers may cache maps of them.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use memmap2::Mmap;

use super::{PackId, Result, StoreError};

/// A store of packs by name.
pub trait Backend: Send + Sync {
    /// Stores a pack atomically and durably. Storing an existing pack again is a no-op.
    fn put(&self, id: &PackId, bytes: &[u8]) -> Result<()>;
    /// Reads `len` bytes at `offset`.
    fn read_range(&self, id: &PackId, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// Reads a whole pack.
    fn read_all(&self, id: &PackId) -> Result<Vec<u8>>;
    /// Size of a pack, or `None` if it is not there.
    fn size(&self, id: &PackId) -> Result<Option<u64>>;
    /// Every pack with its size.
    fn list(&self) -> Result<Vec<(PackId, u64)>>;
    /// Removes a pack.
    fn delete(&self, id: &PackId) -> Result<()>;
    /// Removes what an interrupted `put` left behind (temporary files); returns how many.
    /// Only a writer holding the writer lock may call this: another writer's `put` in
    /// progress would lose its temporary file.
    fn remove_temporary(&self) -> Result<usize> {
        Ok(0)
    }
}

/// Packs in a local directory: `packs/<first two hex>/<hex>.pack`, read through memmap2.
pub struct LocalBackend {
    root: PathBuf,
    maps: Mutex<lru::LruCache<PackId, Arc<Mmap>>>,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("root", &self.root)
            .finish()
    }
}

const OPEN_MAPS: usize = 256;

impl LocalBackend {
    /// A backend over `root` (the vault's `packs` directory), which must exist.
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend {
            root: root.into(),
            maps: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(OPEN_MAPS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }

    /// The file a pack lives in.
    pub fn path_of(&self, id: &PackId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(&hex[..2]).join(format!("{hex}.pack"))
    }

    fn map(&self, id: &PackId) -> Result<Arc<Mmap>> {
        if let Some(map) = self.maps.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(map.clone());
        }
        let path = self.path_of(id);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingPack { pack: *id })
            }
            Err(e) => return Err(StoreError::io("open pack", &path)(e)),
        };
        // SAFETY: packs are immutable once renamed into place and synvault never writes to
        // them; a pack is only deleted by prune, which unlinks (the mapping stays valid).
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(StoreError::io("map pack", &path))?;
        let map = Arc::new(map);
        self.maps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(*id, map.clone());
        Ok(map)
    }
}

/// Writes `bytes` to `path` durably: temp file, fsync, rename, fsync the directory.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = File::create(&tmp)?;
    let result = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, path))
        .and_then(|()| File::open(dir)?.sync_all());
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl Backend for LocalBackend {
    fn put(&self, id: &PackId, bytes: &[u8]) -> Result<()> {
        let path = self.path_of(id);
        if path.exists() {
            return Ok(());
        }
        write_durably(&path, bytes).map_err(StoreError::io("write pack", &path))
    }

    fn read_range(&self, id: &PackId, offset: u64, len: usize) -> Result<Vec<u8>> {
        let map = self.map(id)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(len).and_then(|end| map.get(start..end)) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => Err(StoreError::ShortPack {
                pack: *id,
                offset,
                len,
            }),
        }
    }

    fn read_all(&self, id: &PackId) -> Result<Vec<u8>> {
        let path = self.path_of(id);
        match fs::read(&path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::MissingPack { pack: *id })
            }
            Err(e) => Err(StoreError::io("read pack", &path)(e)),
        }
    }

    fn size(&self, id: &PackId) -> Result<Option<u64>> {
        let path = self.path_of(id);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("stat pack", &path)(e)),
        }
    }

    fn list(&self) -> Result<Vec<(PackId, u64)>> {
        let mut out = Vec::new();
        let dirs = fs::read_dir(&self.root).map_err(StoreError::io("list", &self.root))?;
        for dir in dirs {
            let dir = dir.map_err(StoreError::io("list", &self.root))?.path();
            if !dir.is_dir() {
                continue;
            }
            for file in fs::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
                let file = file.map_err(StoreError::io("list", &dir))?;
                let name = file.file_name();
                let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".pack")) else {
                    continue;
                };
                if let Some(id) = PackId::from_hex(hex) {
                    let len = file
                        .metadata()
                        .map_err(StoreError::io("stat", file.path()))?
                        .len();
                    out.push((id, len));
                }
            }
        }
        Ok(out)
    }

    fn delete(&self, id: &PackId) -> Result<()> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner()).pop(id);
        let path = self.path_of(id);
        fs::remove_file(&path).map_err(StoreError::io("delete pack", &path))
    }

    fn remove_temporary(&self) -> Result<usize> {
        let mut removed = 0;
        let dirs = fs::read_dir(&self.root).map_err(StoreError::io("list", &self.root))?;
        for dir in dirs {
            let dir = dir.map_err(StoreError::io("list", &self.root))?.path();
            if !dir.is_dir() {
                continue;
            }
            for file in fs::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
                let path = file.map_err(StoreError::io("list", &dir))?.path();
                if is_temporary(&path) {
                    fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// A temporary name of [`write_durably`]: `.<name>.<pid>.tmp`.
fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
}

/// Packs in memory, for tests.
#[derive(Debug, Default)]
pub struct MemBackend {
    packs: Mutex<HashMap<PackId, Arc<Vec<u8>>>>,
}

impl MemBackend {
    fn get(&self, id: &PackId) -> Result<Arc<Vec<u8>>> {
        self.packs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or(StoreError::MissingPack { pack: *id })
    }
}

impl Backend for MemBackend {
    fn put(&self, id: &PackId, bytes: &[u8]) -> Result<()> {
        self.packs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*id, Arc::new(bytes.to_vec()));
        Ok(())
    }

    fn read_range(&self, id: &PackId, offset: u64, len: usize) -> Result<Vec<u8>> {
        let pack = self.get(id)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        start
            .checked_add(len)
            .and_then(|end| pack.get(start..end))
            .map(<[u8]>::to_vec)
            .ok_or(StoreError::ShortPack {
                pack: *id,
                offset,
                len,
            })
    }

    fn read_all(&self, id: &PackId) -> Result<Vec<u8>> {
        Ok(self.get(id)?.as_ref().clone())
    }

    fn size(&self, id: &PackId) -> Result<Option<u64>> {
        Ok(self.get(id).ok().map(|p| p.len() as u64))
    }

    fn list(&self) -> Result<Vec<(PackId, u64)>> {
        let packs = self.packs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(packs.iter().map(|(id, p)| (*id, p.len() as u64)).collect())
    }

    fn delete(&self, id: &PackId) -> Result<()> {
        self.packs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(backend: &dyn Backend) {
        let id = PackId::of(b"pack bytes");
        backend.put(&id, b"pack bytes").unwrap();
        assert_eq!(backend.read_range(&id, 5, 5).unwrap(), b"bytes");
        assert!(matches!(
            backend.read_range(&id, 8, 5),
            Err(StoreError::ShortPack { .. })
        ));
        assert_eq!(backend.size(&id).unwrap(), Some(10));
        assert_eq!(backend.list().unwrap(), vec![(id, 10)]);
        backend.delete(&id).unwrap();
        assert!(matches!(
            backend.read_all(&id),
            Err(StoreError::MissingPack { .. })
        ));
    }

    #[test]
    fn temporary_files_are_removed_and_packs_kept() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let id = PackId::of(b"kept");
        backend.put(&id, b"kept").unwrap();
        let hex = id.to_hex();
        let tmp = dir
            .path()
            .join(&hex[..2])
            .join(format!(".{hex}.pack.77.tmp"));
        fs::write(&tmp, b"half a pack").unwrap();
        assert_eq!(backend.remove_temporary().unwrap(), 1);
        assert!(!tmp.exists());
        assert_eq!(backend.read_all(&id).unwrap(), b"kept");
    }

    #[test]
    fn local_and_mem_backends_agree() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&LocalBackend::new(dir.path()));
        exercise(&MemBackend::default());
    }
}

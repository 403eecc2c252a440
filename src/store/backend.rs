//! Where packs live. The [`Backend`] trait is the seam for object storage later; the local
//! directory backend is the first implementation, [`MemBackend`] the test double.
//!
//! Contract: `put` is atomic and durable — after it returns, the pack is complete under its
//! name and survives a crash; a reader never sees a partial pack. Packs are immutable, so
//! readers may cache maps of them.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{PackId, Result, StoreError};

/// A store of packs by name.
pub trait Backend: Send + Sync {
    /// Stores a pack atomically and durably. Storing an existing pack again is a no-op.
    fn put(&self, id: &PackId, bytes: &[u8]) -> Result<()>;
    /// Fills `buf` with the bytes of pack `id` from `offset` on: exactly `buf.len()` of them,
    /// or [`StoreError::ShortPack`]. The caller owns the buffer, so the hot read path (restore,
    /// mount) reuses one per thread and allocates nothing.
    fn read_into(&self, id: &PackId, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Reads a whole pack.
    fn read_all(&self, id: &PackId) -> Result<Vec<u8>>;
    /// Size of a pack, or `None` if it is not there.
    fn size(&self, id: &PackId) -> Result<Option<u64>>;
    /// Every pack with its size.
    fn list(&self) -> Result<Vec<(PackId, u64)>>;
    /// Removes a pack; a pack that is not there is no error.
    fn delete(&self, id: &PackId) -> Result<()>;

    /// Stores the pack `id` of `len` bytes from the file `from` (a pack on a seed disk),
    /// judging the copy itself — the bytes the store will hold — by its length and its name
    /// (a pack is named by the blake3 of its bytes). A stored pack is complete under its name
    /// at once but durable only after [`Backend::sync`], so many can be made durable together.
    fn put_file(&self, id: &PackId, from: &Path, len: u64) -> Result<FileVerdict> {
        let bytes = match fs::read(from) {
            Ok(bytes) => bytes,
            Err(e) => return Ok(FileVerdict::unreadable(&e)),
        };
        let verdict = FileVerdict::judge(bytes.len() as u64, PackId::of(&bytes), id, len);
        if verdict == FileVerdict::Stored {
            self.put(id, &bytes)?;
        }
        Ok(verdict)
    }

    /// How many packs a writer should put at once: one for a local disk, several where each
    /// put is a request over a network.
    fn uploads_in_flight(&self) -> usize {
        1
    }

    /// True if [`Backend::prefetch`] does anything: reads are requests over a network, worth
    /// starting ahead. Readers that would work to name packs ahead ask this first.
    fn fetches_ahead(&self) -> bool {
        false
    }

    /// Says which packs reads will need soon, in the order they will need them; returns at
    /// once. A backend whose reads are requests over a network starts fetching them; the
    /// others ignore it. Errors are left for the reads.
    fn prefetch(&self, _packs: &[PackId]) {}

    /// Makes every pack stored by [`Backend::put_file`] durable.
    fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// Removes what an interrupted `put` or `put_file` left behind (temporary files);
    /// returns how many. Only a writer holding the writer lock may call this: another
    /// writer's copy in progress would lose its temporary file.
    fn remove_temporary(&self) -> Result<usize> {
        Ok(0)
    }
}

/// What became of a pack offered from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileVerdict {
    /// The pack is in the store under its name.
    Stored,
    /// The file is not that pack (the reason, for people); the store is unchanged.
    Refused(String),
}

impl FileVerdict {
    fn judge(found_len: u64, found: PackId, want: &PackId, want_len: u64) -> FileVerdict {
        if found_len != want_len {
            return FileVerdict::Refused(format!(
                "has {found_len} bytes, the journal says {want_len} (truncated or tampered)"
            ));
        }
        if found != *want {
            return FileVerdict::Refused("does not match its blake3 (damaged or tampered)".into());
        }
        FileVerdict::Stored
    }

    fn unreadable(e: &std::io::Error) -> FileVerdict {
        if e.kind() == std::io::ErrorKind::NotFound {
            FileVerdict::Refused("missing from the disk".into())
        } else {
            FileVerdict::Refused(format!("unreadable: {e}"))
        }
    }
}

/// The folder of `packs/` that holds packs being written (see [`LocalBackend::tmp_dir`]).
const TMP_DIR: &str = "tmp";
/// Left in [`TMP_DIR`] once the temporaries that builds before it left beside the packs are
/// removed: that sweep lists every pack, so it runs once per vault.
const OLD_TEMPORARIES_REMOVED: &str = "old-temporaries-removed";

/// Suffix of a pack being copied in by [`LocalBackend::put_file`].
const PARTIAL_COPY_SUFFIX: &str = ".import";

/// Packs in a local directory: `packs/<first two hex>/<hex>.pack`, read with `pread` on files
/// kept open (mapping each pack cost a page fault per 4 KiB read, measured slower).
pub struct LocalBackend {
    root: PathBuf,
    open: Mutex<lru::LruCache<PackId, Arc<File>>>,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("root", &self.root)
            .finish()
    }
}

/// Pack files kept open for reading.
const OPEN_PACKS: usize = 64;

impl LocalBackend {
    /// A backend over `root` (the vault's `packs` directory), which must exist.
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend {
            root: root.into(),
            open: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(OPEN_PACKS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }

    /// The file a pack lives in.
    pub fn path_of(&self, id: &PackId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(&hex[..2]).join(format!("{hex}.pack"))
    }

    fn file(&self, id: &PackId) -> Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = open.get(id) {
            return Ok(file.clone());
        }
        let path = self.path_of(id);
        let file = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingPack { pack: *id })
            }
            Err(e) => return Err(StoreError::io("open pack", &path)(e)),
        };
        open.put(*id, file.clone());
        Ok(file)
    }

    /// Where packs are written before they are renamed into place: one folder, so finding
    /// what a killed writer left does not list every pack.
    fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    /// Every file in the folders of `packs/`: packs, and temporaries of older builds.
    fn files_in_pack_dirs(&self) -> Result<Vec<fs::DirEntry>> {
        let mut out = Vec::new();
        let dirs = fs::read_dir(&self.root).map_err(StoreError::io("list", &self.root))?;
        for dir in dirs {
            let dir = dir.map_err(StoreError::io("list", &self.root))?.path();
            if !dir.is_dir() {
                continue;
            }
            for file in fs::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
                out.push(file.map_err(StoreError::io("list", &dir))?);
            }
        }
        Ok(out)
    }
}

/// Mode of every file synvault creates in a vault: key files, the catalog and packs are the
/// owner's alone (the catalog holds names, link targets and xattrs in clear).
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of every directory synvault creates in a vault.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents with [`PRIVATE_DIR_MODE`].
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
}

/// Creates a new, empty file with [`PRIVATE_FILE_MODE`]; fails if it exists.
pub fn create_private_file(path: &Path) -> std::io::Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
}

/// Writes `bytes` to `path` durably: temp file, fsync, rename, fsync the directory. The file
/// is private to its owner.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    write_durably_via(dir, path, bytes)
}

/// [`write_durably`] with the temporary file in `tmp_dir` (on the same file system).
fn write_durably_via(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir_all(dir)?;
    create_private_dir_all(tmp_dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tmp_dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp); // a leftover of a killed run with the same pid
    let mut file = create_private_file(&tmp)?;
    let result = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, path))
        .and_then(|()| sync_dir(dir));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Fills `buf` from the pack file `file` at `offset`: Ok(Err(ShortPack)) if the file ends
/// first, Err for an I/O error (the caller names the file).
pub(crate) fn read_pack_file(
    file: &File,
    id: &PackId,
    offset: u64,
    buf: &mut [u8],
) -> std::io::Result<Result<()>> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => {
                return Ok(Err(StoreError::ShortPack {
                    pack: *id,
                    offset,
                    len: buf.len(),
                }))
            }
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Ok(()))
}

/// Makes the entries of a directory (a rename into it) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Backend for LocalBackend {
    fn put(&self, id: &PackId, bytes: &[u8]) -> Result<()> {
        let path = self.path_of(id);
        if path.exists() {
            return Ok(());
        }
        write_durably_via(&self.tmp_dir(), &path, bytes)
            .map_err(StoreError::io("write pack", &path))
    }

    fn read_into(&self, id: &PackId, offset: u64, buf: &mut [u8]) -> Result<()> {
        let file = self.file(id)?;
        read_pack_file(&file, id, offset, buf)
            .map_err(StoreError::io("read pack", self.path_of(id)))?
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
        for file in self.files_in_pack_dirs()? {
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
        Ok(out)
    }

    fn delete(&self, id: &PackId) -> Result<()> {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).pop(id);
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            // Already gone: a delete that a killed run did not get to record.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other.map_err(StoreError::io("delete pack", &path)),
        }
    }

    /// Copies in the kernel (`std::io::copy` uses copy_file_range) under a temporary name,
    /// hashes the copy, and renames it into place; a bad copy is removed.
    fn put_file(&self, id: &PackId, from: &Path, len: u64) -> Result<FileVerdict> {
        let path = self.path_of(id);
        let dir = path.parent().unwrap_or(Path::new("."));
        create_private_dir_all(dir).map_err(StoreError::io("create", dir))?;
        let mut source = match File::open(from) {
            Ok(f) => f,
            Err(e) => return Ok(FileVerdict::unreadable(&e)),
        };
        let tmp_dir = self.tmp_dir();
        create_private_dir_all(&tmp_dir).map_err(StoreError::io("create", &tmp_dir))?;
        let tmp = tmp_dir.join(format!(
            ".{}.{}{PARTIAL_COPY_SUFFIX}",
            id.to_hex(),
            std::process::id()
        ));
        let _ = fs::remove_file(&tmp); // left by a killed import that had our pid
        let copied = create_private_file(&tmp)
            .and_then(|mut out| std::io::copy(&mut source, &mut out))
            .map_err(StoreError::io("copy pack into", &tmp));
        let verdict = copied.and_then(|_| {
            let (found_len, found) =
                PackId::of_file(&tmp).map_err(StoreError::io("read back", &tmp))?;
            Ok(FileVerdict::judge(found_len, found, id, len))
        });
        if !matches!(verdict, Ok(FileVerdict::Stored)) {
            let _ = fs::remove_file(&tmp);
            return verdict;
        }
        start_writeback(&tmp);
        fs::rename(&tmp, &path).map_err(StoreError::io("rename pack into", &path))?;
        Ok(FileVerdict::Stored)
    }

    /// One `syncfs` for all copies: far cheaper than an fsync per pack, and the copies'
    /// writeback was started as each was checked.
    fn sync(&self) -> Result<()> {
        let dir = File::open(&self.root).map_err(StoreError::io("open", &self.root))?;
        rustix::fs::syncfs(&dir).map_err(|e| StoreError::io("sync", &self.root)(e.into()))
    }

    /// Lists [`TMP_DIR`] only; the pack folders once per vault, for what older builds left.
    fn remove_temporary(&self) -> Result<usize> {
        let tmp_dir = self.tmp_dir();
        let marker = tmp_dir.join(OLD_TEMPORARIES_REMOVED);
        let mut removed = 0;
        let mut remove = |path: PathBuf| -> Result<()> {
            if is_temporary(&path) {
                fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
                removed += 1;
            }
            Ok(())
        };
        if !marker.exists() {
            for file in self.files_in_pack_dirs()? {
                remove(file.path())?;
            }
            create_private_dir_all(&tmp_dir).map_err(StoreError::io("create", &tmp_dir))?;
            write_durably(&marker, b"").map_err(StoreError::io("write", &marker))?;
        }
        let listing = match fs::read_dir(&tmp_dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(StoreError::io("list", &tmp_dir)(e)),
        };
        for file in listing {
            remove(file.map_err(StoreError::io("list", &tmp_dir))?.path())?;
        }
        Ok(removed)
    }
}

/// A temporary name of [`write_durably`] (`.<name>.<pid>.tmp`) or of
/// [`LocalBackend::put_file`] (`.<hex>.<pid>.import`).
fn is_temporary(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        n.starts_with('.') && (n.ends_with(".tmp") || n.ends_with(PARTIAL_COPY_SUFFIX))
    })
}

/// Starts writing a checked copy to disk now (POSIX_FADV_DONTNEED begins writeback of dirty
/// pages without waiting), so the sync that makes the copies durable waits for little. Only a
/// hint: failure changes nothing.
fn start_writeback(path: &Path) {
    if let Ok(file) = File::open(path) {
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
    }
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

    fn read_into(&self, id: &PackId, offset: u64, buf: &mut [u8]) -> Result<()> {
        let pack = self.get(id)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| pack.get(start..end))
            .ok_or(StoreError::ShortPack {
                pack: *id,
                offset,
                len: buf.len(),
            })?;
        buf.copy_from_slice(bytes);
        Ok(())
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
        let mut buf = [0u8; 5];
        backend.read_into(&id, 5, &mut buf).unwrap();
        assert_eq!(&buf, b"bytes");
        assert!(matches!(
            backend.read_into(&id, 8, &mut buf),
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
        // One left by an older build beside the packs, one by this build in tmp/.
        let old = dir
            .path()
            .join(&hex[..2])
            .join(format!(".{hex}.pack.77.tmp"));
        fs::write(&old, b"half a pack").unwrap();
        let new = dir.path().join(TMP_DIR).join(format!(".{hex}.pack.78.tmp"));
        fs::write(&new, b"half a pack").unwrap();
        assert_eq!(backend.remove_temporary().unwrap(), 2);
        assert!(!old.exists() && !new.exists());
        assert_eq!(backend.read_all(&id).unwrap(), b"kept");
        assert_eq!(backend.list().unwrap(), vec![(id, 4)]);

        // Once swept, the pack folders are not listed again: only tmp/ is.
        fs::write(&old, b"half a pack").unwrap();
        fs::write(&new, b"half a pack").unwrap();
        assert_eq!(backend.remove_temporary().unwrap(), 1);
        assert!(old.exists() && !new.exists());
    }

    #[test]
    fn a_pack_is_written_through_tmp_and_leaves_nothing_there() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let id = PackId::of(b"pack");
        backend.put(&id, b"pack").unwrap();
        let left: Vec<_> = fs::read_dir(dir.path().join(TMP_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(backend.path_of(&id).exists());
    }

    #[test]
    fn local_and_mem_backends_agree() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&LocalBackend::new(dir.path()));
        exercise(&MemBackend::default());
    }
}

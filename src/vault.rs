//! `Vault`: a store, a catalog and key files; every flow works on it.
//!
//! A vault directory holds all of it:
//! ```text
//! <vault>/config.json        format version, vault id, creation time (no secret)
//! <vault>/keys/<id>.key      master key wrapped under argon2id(passphrase), JSON (see `keys`)
//! <vault>/catalog.db         SQLite catalog (WAL)
//! <vault>/packs/ab/<hex>.pack
//! <vault>/lock               the writer lock (see `lock`)
//! <vault>/readers/           a lease per process reading the vault (see `lease`)
//! ```
//! A vault in object storage keeps `config.json`, `keys/`, `packs/` and its `lock` object in
//! the bucket, and the rest in a directory on this machine (see [`crate::place`]).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::{Deserialize, Serialize};

use crate::catalog::sealed::{self, Record};
use crate::catalog::tree_codec::{self, TreeError};
use crate::catalog::{Catalog, CatalogError, Entry, PackState, RecoveryPoint, TreeId};
use crate::chunk::{Chunker, ChunkerKind};
use crate::crypto::{self, KdfParams, Key, Keys, RingCipher};
use crate::error::{Error, Result};
use crate::keys::{self, KeyId};
use crate::lease::ReaderLease;
use crate::lock::bucket::Holding;
use crate::lock::{Acquired, WriterLock};
use crate::place::Place;
use crate::select::PointFilter;
use crate::store::backend::{create_private_dir_all, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};
use crate::store::files::VaultFiles;
use crate::store::meta_pack::{self, MetaPack};
use crate::store::{Backend, BlockCodec, PackId};

/// The vault file that makes a place a vault.
pub const CONFIG: &str = "config.json";
/// The catalog file, in the vault's directory on this machine.
pub const CATALOG: &str = "catalog.db";

/// Vault format version written by this build.
pub const VAULT_FORMAT: u32 = 1;
const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// `config.json`: what a vault is, readable without a key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VaultConfig {
    pub format: u32,
    pub vault_id: String,
    pub created: String,
    /// Where the packs live. Vaults made before this field existed keep theirs locally.
    #[serde(default)]
    pub backend: BackendConfig,
}

/// How a vault's packs are laid out in its store (see [`Place::backend`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackendConfig {
    /// `packs/<first two hex>/<hex>.pack` beside `config.json`, in the vault directory or
    /// under the bucket prefix. (The name is kept for the vaults that already say it.)
    #[default]
    Local,
}

/// This process's command line, shortened, to name it in a reader lease.
fn command_line() -> String {
    let words: Vec<String> = std::env::args().take(4).collect();
    words.join(" ")
}

/// The 16 bytes a vault id names (32 hex digits); an id in another form is hashed, so every
/// vault still gets a stable one.
fn vault_id_bytes(id: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    if hex::decode_to_slice(id, &mut out).is_err() {
        out.copy_from_slice(&blake3::hash(id.as_bytes()).as_bytes()[..16]);
    }
    out
}

/// Options for creating a vault.
#[derive(Clone, Copy, Debug)]
pub struct CreateOptions {
    pub kdf: KdfParams,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            kdf: KdfParams::DEFAULT,
        }
    }
}

/// An open vault.
pub struct Vault {
    /// The directory on this machine holding the catalog: the vault directory, or the state
    /// directory of a vault in object storage.
    root: PathBuf,
    place: Place,
    config: VaultConfig,
    codec: BlockCodec,
    chunker_key: Key,
    /// The key file whose passphrase opened this vault.
    key_id: KeyId,
    /// Kept to wrap it under another passphrase (see `keys`).
    master: Key,
    backend: Box<dyn Backend>,
    catalog: Mutex<Catalog>,
    /// Idle read connections; see [`Vault::read_catalog`].
    readers: Mutex<Vec<Catalog>>,
    /// Says this process reads the vault, so prune sets aside what it retires (see `lease`).
    /// None where the vault directory cannot be written (then nothing can prune it either).
    _lease: Option<ReaderLease>,
    /// The bucket lock this handle's writer holds, confirmed before each commit (see
    /// [`Vault::confirm_writer`]); weak, so it ends when the writer lock is dropped.
    writer: Mutex<Option<Weak<Holding>>>,
}

/// A read connection to the catalog, lent by [`Vault::read_catalog`] and given back on drop.
pub struct CatalogReader<'v> {
    vault: &'v Vault,
    catalog: Option<Catalog>,
}

impl std::ops::Deref for CatalogReader<'_> {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        // INVARIANT: `catalog` is Some from construction until drop takes it.
        #[allow(clippy::expect_used)]
        self.catalog
            .as_ref()
            .expect("a reader holds its connection until dropped")
    }
}

impl CatalogReader<'_> {
    /// The connection, kept by the caller for its own lifetime instead of going back to the
    /// pool (a block reader's locator).
    pub fn into_owned(mut self) -> Result<Catalog, CatalogError> {
        match self.catalog.take() {
            Some(catalog) => Ok(catalog),
            None => Catalog::open_reader(&self.vault.root.join(CATALOG)),
        }
    }
}

impl Drop for CatalogReader<'_> {
    fn drop(&mut self) {
        if let Some(catalog) = self.catalog.take() {
            let mut idle = self.vault.readers.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(catalog);
            }
        }
    }
}

/// Read connections kept open between uses: about one per thread that reads at once.
const MAX_IDLE_READERS: usize = 16;

/// A vault's local catalog opened without the key ([`Vault::open_catalog`]): its points, and
/// its trees as stored (see [`crate::diff::Trees`]).
pub struct LocalCatalog(pub(crate) Catalog);

impl LocalCatalog {
    /// Every point, oldest first.
    pub fn points(&self) -> Result<Vec<RecoveryPoint>> {
        Ok(self.0.points()?)
    }
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("location", self.place.location())
            .finish()
    }
}

/// Reads `config.json` of the vault directory `root`, or fails with [`Error::NotAVault`].
pub fn read_config(root: &Path) -> Result<VaultConfig> {
    read_config_in(&Place::local(root))
}

/// Reads `config.json` of the vault at `place`, or fails with [`Error::NotAVault`].
pub fn read_config_in(place: &Place) -> Result<VaultConfig> {
    let not_a_vault = || Error::NotAVault {
        path: place.display_path(),
    };
    let bytes = place.files().read(CONFIG)?.ok_or_else(not_a_vault)?;
    let config: VaultConfig = serde_json::from_slice(&bytes).map_err(|_| not_a_vault())?;
    if config.format > VAULT_FORMAT {
        return Err(Error::FormatTooNew {
            found: config.format,
            supported: VAULT_FORMAT,
        });
    }
    Ok(config)
}

impl Vault {
    /// Creates a new vault at `root` (which must be missing or empty).
    pub fn create(root: &Path, passphrase: &[u8], options: CreateOptions) -> Result<Vault> {
        Vault::create_in(Place::local(root), passphrase, options)
    }

    /// Creates a new vault at `place` (which must be missing or empty).
    pub fn create_in(place: Place, passphrase: &[u8], options: CreateOptions) -> Result<Vault> {
        if passphrase.is_empty() {
            return Err(Error::InvalidArgument(
                "the passphrase is empty: a vault needs one to protect its key".into(),
            ));
        }
        if place.holds_vault()? {
            return Err(Error::VaultExists {
                path: place.display_path(),
            });
        }
        if !place.files().is_empty()? {
            return Err(Error::NotEmpty {
                path: place.display_path(),
            });
        }
        if let crate::location::Location::Local(root) = place.location() {
            create_private_dir_all(root).map_err(Error::io("cannot create", root))?;
            // The user may have made the (empty) directory with a looser mode.
            set_mode(root, PRIVATE_DIR_MODE)?;
            for dir in ["keys", "packs"] {
                create_private_dir_all(&root.join(dir))
                    .map_err(Error::io("cannot create", root.join(dir)))?;
            }
        }
        keys::write_new(place.files(), &Key::random(), passphrase, options.kdf)?;
        let config = VaultConfig {
            format: VAULT_FORMAT,
            vault_id: hex::encode(crypto::random_array::<16>()),
            created: crate::time::format_utc(crate::time::now_ns()),
            backend: BackendConfig::Local,
        };
        let local = place.local_dir(&config)?;
        create_private_dir_all(&local).map_err(Error::io("cannot create", &local))?;
        let catalog = local.join(CATALOG);
        if catalog.exists() {
            // Left by an earlier vault given the same --catalog directory.
            return Err(Error::InvalidArgument(format!(
                "{} already holds a catalog: give the new vault its own --catalog directory",
                local.display()
            )));
        }
        Catalog::create(&catalog)?;
        // config.json last: a vault is a vault only once everything else is in place.
        let json = serde_json::to_vec_pretty(&config).unwrap_or_default();
        place.files().write(CONFIG, &json)?;
        Vault::open_in(place, passphrase)
    }

    /// Opens the vault at `root` with a passphrase.
    pub fn open(root: &Path, passphrase: &[u8]) -> Result<Vault> {
        Vault::open_in(Place::local(root), passphrase)
    }

    /// Opens the vault at `place` with a passphrase.
    pub fn open_in(place: Place, passphrase: &[u8]) -> Result<Vault> {
        let config = read_config_in(&place)?;
        let (key_id, master) = keys::open_master(place.files(), passphrase)?;
        let local = place.local_dir(&config)?;
        let catalog = Catalog::open(&local.join(CATALOG))?;
        Vault::assemble(place, local, config, key_id, master, catalog)
    }

    /// Opens the local catalog of the vault at `place` and nothing else: no key, no store.
    /// For the commands that show only what the catalog holds in clear (`points`, `find`,
    /// `log`, `diff`): the passphrase guards what leaves the machine, not this local index,
    /// which its directory's mode (0700) guards. Trees read from it are not checked against
    /// their ids (that takes the key), so nothing is restored or mounted from them.
    pub fn open_catalog(place: &Place) -> Result<LocalCatalog> {
        let config = read_config_in(place)?;
        let catalog = Catalog::open(&place.local_dir(&config)?.join(CATALOG))?;
        Ok(LocalCatalog(catalog))
    }

    /// Opens the vault at `place` over a catalog of the caller's (`catalog rebuild` fills a
    /// new one). Readers lent by [`Vault::read_catalog`] still open `catalog.db`.
    pub fn open_with_catalog(place: Place, passphrase: &[u8], catalog: Catalog) -> Result<Vault> {
        let config = read_config_in(&place)?;
        let (key_id, master) = keys::open_master(place.files(), passphrase)?;
        let local = place.local_dir(&config)?;
        Vault::assemble(place, local, config, key_id, master, catalog)
    }

    fn assemble(
        place: Place,
        local: PathBuf,
        config: VaultConfig,
        key_id: KeyId,
        master: Key,
        catalog: Catalog,
    ) -> Result<Vault> {
        let keys = Keys::derive(&master);
        let codec = BlockCodec::new(keys, Box::new(RingCipher), DEFAULT_ZSTD_LEVEL)
            .for_vault(vault_id_bytes(&config.vault_id));
        Ok(Vault {
            _lease: ReaderLease::take(&local, &command_line()).ok(),
            backend: place.reading_backend(&local)?,
            root: local,
            place,
            config,
            chunker_key: codec.keys().chunker.clone(),
            codec,
            key_id,
            master,
            catalog: Mutex::new(catalog),
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(None),
        })
    }

    /// Seals `body` (catalog records, see [`crate::catalog::sealed`]) into a metadata pack
    /// under the catalog key and writes it to the store. Returns the pack's name and size.
    pub fn seal_into_store(&self, body: &[u8]) -> Result<(PackId, u64)> {
        let pack = self.seal(body)?;
        self.backend.put(&pack.id, &pack.bytes)?;
        Ok((pack.id, pack.bytes.len() as u64))
    }

    /// Seals `body` into a metadata pack without writing it. Sealing is the step before a
    /// commit, so a writer that lost its lock stops here.
    pub fn seal(&self, body: &[u8]) -> Result<MetaPack> {
        self.confirm_writer()?;
        meta_pack::seal(
            self.codec.cipher(),
            &self.codec.keys().catalog,
            self.codec.vault_id(),
            body,
        )
        .map_err(Error::io("cannot compress catalog records of", &self.root))
    }

    /// Opens a metadata pack of this vault and parses its records.
    pub fn open_meta_pack(&self, bytes: &[u8]) -> Result<Vec<Record>, String> {
        let body = meta_pack::open(
            self.codec.cipher(),
            &self.codec.keys().catalog,
            self.codec.vault_id(),
            bytes,
        )
        .map_err(|e| e.to_string())?;
        sealed::decode(&body).map_err(|e| e.to_string())
    }

    /// The directory on this machine that holds the catalog: the vault directory, or the
    /// state directory of a vault in object storage.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the vault's store is.
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// The vault's small files (config, key files), beside its packs.
    pub fn files(&self) -> &dyn VaultFiles {
        self.place.files()
    }

    /// The key file whose passphrase opened this vault.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The master key, for `keys` to wrap under another passphrase.
    pub(crate) fn master_key(&self) -> &Key {
        &self.master
    }

    /// What `config.json` says.
    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    /// The frame codec with this vault's keys.
    pub fn codec(&self) -> &BlockCodec {
        &self.codec
    }

    /// This vault with its packs kept by `backend` instead: a decorator over the configured
    /// one (a cache, a counter or a fault injector in tests). Every pack byte of every flow
    /// goes through it.
    pub fn with_backend(mut self, backend: Box<dyn Backend>) -> Vault {
        self.backend = backend;
        self
    }

    /// Where packs live.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// A chunker keyed for this vault.
    pub fn chunker(&self, kind: ChunkerKind) -> Chunker {
        Chunker::new(kind, &self.chunker_key)
    }

    /// The catalog, for one thread at a time.
    pub fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection for reading only, one per caller: readers (the mount's request threads,
    /// restore, read-ahead) neither queue behind each other nor behind a writer. Use
    /// [`Vault::catalog`] to write.
    pub fn read_catalog(&self) -> Result<CatalogReader<'_>, CatalogError> {
        let idle = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let catalog = match idle {
            Some(catalog) => catalog,
            None => Catalog::open_reader(&self.root.join(CATALOG))?,
        };
        Ok(CatalogReader {
            vault: self,
            catalog: Some(catalog),
        })
    }

    /// The entries of a tree, checked before they are trusted: names are plain (see
    /// `tree_codec::decode`) and the entries hash to the tree's id under this vault's key, so a
    /// tree edited in the catalog is an error, never a listing.
    pub fn tree_entries(&self, tree: &TreeId) -> Result<Vec<Entry>, CatalogError> {
        let entries = self.read_catalog()?.tree_entries(tree)?;
        // The catalog alone cannot check the id: it has no key.
        if tree_codec::tree_id(&self.codec.keys().id, &entries) != *tree {
            return Err(CatalogError::BadTree {
                tree: *tree,
                source: TreeError::HashMismatch,
            });
        }
        Ok(entries)
    }

    /// Takes the writer lock for `command`. A takeover of a dead holder's lock is returned so
    /// the caller can warn.
    pub fn lock_writer(&self, command: &str) -> Result<(WriterLock, Acquired)> {
        let (lock, acquired) = WriterLock::acquire_in(&self.place, &self.root, command)?;
        *self.writer.lock().unwrap_or_else(|e| e.into_inner()) = lock.holding().map(Arc::downgrade);
        self.mend_modes()?;
        self.require_current_catalog(command)?;
        Ok((lock, acquired))
    }

    /// Refuses to write a vault in object storage through a catalog that lists a pack the
    /// store no longer holds: another machine's prune deleted it, and a backup through this
    /// catalog would share blocks that are gone. (A catalog that merely lacks another
    /// machine's points is safe to write through: it shares only blocks it knows, and prune
    /// refuses it on its own, see `retention::prune`.) A vault on local disk has one catalog,
    /// beside it, and nothing to check.
    fn require_current_catalog(&self, command: &str) -> Result<()> {
        if self.place.remote().is_none() {
            return Ok(());
        }
        let in_store: HashSet<PackId> = self.backend.list()?.into_iter().map(|(p, _)| p).collect();
        let listed = self.catalog().packs()?;
        let gone = listed
            .iter()
            .find(|(pack, _, state)| *state == PackState::Stored && !in_store.contains(pack));
        match gone {
            Some((pack, ..)) => Err(Error::StaleCatalog {
                command: command.to_string(),
                why: format!("pack {pack}, which the catalog lists, is gone from the store"),
            }),
            None => Ok(()),
        }
    }

    /// Makes sure this handle's writer still holds the vault's lock in object storage (see
    /// [`Holding::confirm`]); nothing to do for a vault on local disk, whose `flock` cannot be
    /// lost. Called before each commit to the store.
    pub fn confirm_writer(&self) -> Result<()> {
        let holding = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match holding.and_then(|h| h.upgrade()) {
            Some(holding) => holding.confirm(),
            None => Ok(()),
        }
    }

    /// Takes the writer lock for `command`, waiting up to `wait` for another writer (a prune,
    /// a backup) to finish; then [`Error::Locked`] as [`Vault::lock_writer`] gives at once.
    pub fn lock_writer_waiting(
        &self,
        command: &str,
        wait: std::time::Duration,
    ) -> Result<(WriterLock, Acquired)> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match self.lock_writer(command) {
                Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// Makes a vault written by an older synvault private: the directory 0700 (which alone
    /// keeps other users out of everything inside), its key files and catalog 0600. Packs are
    /// sealed, and reaching them needs the directory, so they are not walked one by one.
    fn mend_modes(&self) -> Result<()> {
        if self.place.remote().is_some() {
            return Ok(());
        }
        set_mode(&self.root, PRIVATE_DIR_MODE)?;
        for dir in ["keys", "packs"] {
            set_mode(&self.root.join(dir), PRIVATE_DIR_MODE)?;
        }
        let keys = self.root.join("keys");
        let key_files =
            fs::read_dir(&keys).map_err(Error::io("cannot read key directory", &keys))?;
        let mut files: Vec<PathBuf> = key_files.flatten().map(|e| e.path()).collect();
        for name in [
            "config.json",
            "catalog.db",
            "catalog.db-wal",
            "catalog.db-shm",
            "lock",
        ] {
            files.push(self.root.join(name));
        }
        for file in files {
            set_mode(&file, PRIVATE_FILE_MODE)?;
        }
        Ok(())
    }

    /// Adds and removes tags of `point`, sealed in the store as a change (a catalog rebuild
    /// keeps it); returns the point's tags now. A tag is non-empty and holds no comma.
    pub fn retag(
        &self,
        point: &RecoveryPoint,
        add: &[String],
        remove: &[String],
    ) -> Result<Vec<String>> {
        if let Some(bad) = add.iter().find(|t| t.is_empty() || t.contains(',')) {
            return Err(Error::InvalidArgument(format!(
                "{bad:?} is not a tag: a tag is not empty and holds no comma"
            )));
        }
        let mut tags: Vec<String> = point
            .tags
            .iter()
            .filter(|t| !remove.contains(t))
            .cloned()
            .collect();
        for tag in add {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        if tags != point.tags {
            crate::rebuild::commit_change(
                self,
                &sealed::Event::Tags {
                    at_ns: crate::time::now_ns(),
                    point: point.id.0.clone(),
                    tags: tags.clone(),
                },
            )?;
        }
        Ok(tags)
    }

    /// Resolves `latest`, `latest~N` or an id prefix to a recovery point (see
    /// [`crate::select`]: `latest` needs the vault to hold one series of points).
    pub fn resolve_point(&self, query: &str) -> Result<RecoveryPoint> {
        self.select_point(query, &PointFilter::default())
    }

    /// The points that pass `filter`, oldest first.
    pub fn points(&self, filter: &PointFilter) -> Result<Vec<RecoveryPoint>> {
        Ok(filter.apply(self.catalog().points()?))
    }

    /// Resolves `latest`, `latest~N` or an id prefix among the points that pass `filter`.
    pub fn select_point(&self, query: &str, filter: &PointFilter) -> Result<RecoveryPoint> {
        crate::select::select(self.catalog().points()?, query, filter)
    }
}

/// Sets the permission bits of `path` if they differ; a missing path is left alone.
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    let current = match fs::symlink_metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("cannot stat", path)(e)),
    };
    if current == mode {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(Error::io("cannot set the mode of", path))
}

/// A cheap key derivation for unit tests only: a vault made with it is easy to brute-force.
#[cfg(test)]
pub(crate) const TEST_OPTIONS: CreateOptions = CreateOptions {
    kdf: KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: CreateOptions = TEST_OPTIONS;

    #[test]
    fn a_config_without_a_backend_is_a_local_vault() {
        let old = r#"{"format": 1, "vault_id": "ab", "created": "2026-01-01T00:00:00Z"}"#;
        let config: VaultConfig = serde_json::from_str(old).unwrap();
        assert_eq!(config.backend, BackendConfig::Local);
        let written = serde_json::to_string(&config).unwrap();
        assert!(
            written.contains(r#""backend":{"kind":"local"}"#),
            "{written}"
        );
    }

    #[test]
    fn readers_do_not_wait_for_the_writer_connection() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(&dir.path().join("v"), b"pw", FAST).unwrap();
        let writer = vault.catalog(); // held, as during a long write
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let first = vault.read_catalog().unwrap();
                let second = vault.read_catalog().unwrap(); // two readers at once
                let points = (first.points().unwrap(), second.points().unwrap());
                done.send(points).unwrap();
            });
            let read = finished.recv_timeout(std::time::Duration::from_secs(10));
            drop(writer);
            assert_eq!(read.unwrap(), (vec![], vec![]));
        });
        assert!(
            vault.readers.lock().unwrap().len() == 2,
            "connections are reused"
        );
    }

    #[test]
    fn create_open_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("v");
        let v = Vault::create(&root, b"pw", FAST).unwrap();
        let id = v.config().vault_id.clone();
        drop(v);
        assert_eq!(Vault::open(&root, b"pw").unwrap().config().vault_id, id);
        assert!(matches!(
            Vault::open(&root, b"nope"),
            Err(Error::WrongPassphrase)
        ));
        assert!(matches!(
            Vault::create(&root, b"pw", FAST),
            Err(Error::VaultExists { .. })
        ));
        assert!(matches!(
            Vault::open(dir.path(), b"pw"),
            Err(Error::NotAVault { .. })
        ));
        // A directory with something in it that is not a vault is said to be just that.
        let err = Vault::create(dir.path(), b"pw", FAST).unwrap_err();
        assert!(matches!(err, Error::NotEmpty { .. }), "{err}");
        assert!(
            err.to_string().contains("not empty and not a vault"),
            "{err}"
        );
    }
}

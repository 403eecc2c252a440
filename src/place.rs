//! Where the parts of one vault live: its store (packs, `config.json`, key files, and for a
//! bucket the lock object) in the vault directory or in object storage, and its catalog in a
//! directory on this machine (the vault directory itself, or the vault's state directory).
//!
//! Every command opens a vault through a [`Place`], so no flow needs to know which kind of
//! store it works on.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::location::{self, Location, RemoteOptions};
use crate::store::cache::PackCache;
use crate::store::files::{LocalFiles, VaultFiles};
use crate::store::object::ObjectBackend;
use crate::store::{Backend, LocalBackend};
use crate::vault::VaultConfig;

/// The store and catalog directory of a vault.
#[derive(Debug)]
pub struct Place {
    location: Location,
    store: Store,
    catalog_dir: Option<PathBuf>,
    /// Where and how much of a bucket's packs to keep on this machine.
    cache_dir: Option<PathBuf>,
    cache_bytes: u64,
}

/// Where packs and small files are.
#[derive(Debug)]
enum Store {
    Dir { dir: PathBuf, files: LocalFiles },
    Bucket(ObjectBackend),
}

impl Place {
    /// The vault directory `dir`: store and catalog both in it.
    pub fn local(dir: &Path) -> Place {
        Place {
            location: Location::Local(dir.to_path_buf()),
            store: Store::Dir {
                dir: dir.to_path_buf(),
                files: LocalFiles::new(dir),
            },
            catalog_dir: None,
            cache_dir: None,
            cache_bytes: 0,
        }
    }

    /// The place of `location`; for object storage, connects with `options`.
    pub fn open(location: &Location, options: &RemoteOptions) -> Result<Place> {
        match location {
            Location::Local(dir) => Ok(Place::local(dir)),
            Location::Remote(remote) => Ok(Place {
                location: location.clone(),
                store: Store::Bucket(ObjectBackend::connect(remote, options)?),
                catalog_dir: options.catalog_dir.clone(),
                cache_dir: options.cache_dir.clone(),
                cache_bytes: options.cache_bytes,
            }),
        }
    }

    /// Where the vault is, as people wrote it.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The vault's small files: config and keys.
    pub fn files(&self) -> &dyn VaultFiles {
        match &self.store {
            Store::Dir { files, .. } => files,
            Store::Bucket(bucket) => bucket,
        }
    }

    /// The vault's packs.
    pub fn backend(&self) -> Box<dyn Backend> {
        match &self.store {
            Store::Dir { dir, .. } => Box::new(LocalBackend::new(dir.join("packs"))),
            Store::Bucket(bucket) => Box::new(bucket.clone()),
        }
    }

    /// The vault's packs for reading and writing by a vault whose catalog directory is
    /// `local`: a bucket's behind the pack cache on local disk (see [`PackCache`]).
    pub fn reading_backend(&self, local: &Path) -> Result<Box<dyn Backend>> {
        let backend = self.backend();
        if self.remote().is_none() || self.cache_bytes == 0 {
            return Ok(backend);
        }
        let dir = match &self.cache_dir {
            Some(dir) => dir.clone(),
            None => local.join("pack-cache"),
        };
        Ok(Box::new(PackCache::new(backend, &dir, self.cache_bytes)?))
    }

    /// The object store of a vault in a bucket, for its lock object.
    pub fn remote(&self) -> Option<&ObjectBackend> {
        match &self.store {
            Store::Dir { .. } => None,
            Store::Bucket(bucket) => Some(bucket),
        }
    }

    /// The directory on this machine that holds the catalog (and the reader leases) of the
    /// vault `config` describes.
    pub fn local_dir(&self, config: &VaultConfig) -> Result<PathBuf> {
        match (&self.location, &self.catalog_dir) {
            (Location::Local(dir), _) => Ok(dir.clone()),
            (Location::Remote(_), Some(dir)) => Ok(dir.clone()),
            (Location::Remote(_), None) => location::state_dir(&config.vault_id),
        }
    }

    /// The location as a path for messages that name a vault ("no vault at …").
    pub fn display_path(&self) -> PathBuf {
        PathBuf::from(self.location.to_string())
    }

    /// True if `config.json` is there: the place holds a vault.
    pub fn holds_vault(&self) -> Result<bool> {
        Ok(self.files().read(crate::vault::CONFIG)?.is_some())
    }

    /// Fails with [`Error::NotAVault`] unless the place holds a vault.
    pub fn require_vault(&self) -> Result<()> {
        if self.holds_vault()? {
            Ok(())
        } else {
            Err(Error::NotAVault {
                path: self.display_path(),
            })
        }
    }
}

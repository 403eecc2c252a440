//! The vault-level error type and the mapping from errors to process exit codes.
//!
//! Each lower module has its own error enum (`StoreError`, `CatalogError`, …); this one wraps
//! them and adds the conditions a user acts on (wrong passphrase, vault locked, …). The CLI
//! maps every variant to one exit code through [`Error::exit_code`], one exhaustive match.

use std::path::PathBuf;

use crate::catalog::CatalogError;
use crate::seed::SeedError;
use crate::store::StoreError;

/// Result alias for vault operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit codes, as restic users expect them.
pub mod exit {
    /// Everything done.
    pub const SUCCESS: u8 = 0;
    /// A fatal error: nothing (more) was done.
    pub const FATAL: u8 = 1;
    /// The command line was wrong.
    pub const USAGE: u8 = 2;
    /// Finished, but incomplete: unreadable files skipped, or damaged data found.
    pub const INCOMPLETE: u8 = 3;
    /// No vault at that path.
    pub const NO_VAULT: u8 = 10;
    /// The vault is locked by another writer.
    pub const LOCKED: u8 = 11;
    /// The passphrase opens no key file.
    pub const WRONG_PASSPHRASE: u8 = 12;
    /// A seed disk was refused: another vault's or job's, or no journal; or (prepare) it
    /// still holds a job not imported yet.
    pub const SEED_REFUSED: u8 = 13;
    /// Seed disks too small for the source.
    pub const SEED_NO_ROOM: u8 = 14;
    /// The vault's catalog is missing or empty (only `init` creates one).
    pub const NO_CATALOG: u8 = 15;
    /// The vault's catalog is damaged (SQLite cannot read it).
    pub const CATALOG_DAMAGED: u8 = 16;
    /// `catalog rebuild` refused: the catalog opens cleanly (use --force to replace it).
    pub const CATALOG_INTACT: u8 = 17;
    /// A writer refused: the catalog is behind the store (another machine's commits, an old
    /// copy of the catalog).
    pub const STALE_CATALOG: u8 = 18;
    /// The store could not be reached (object storage down past every retry).
    pub const STORE_UNREACHABLE: u8 = 19;
    /// The mount point does not exist.
    pub const MOUNT_POINT_MISSING: u8 = 20;
    /// The mount point is not a directory.
    pub const MOUNT_POINT_NOT_DIR: u8 = 21;
    /// The mount point is a non-empty directory.
    pub const MOUNT_POINT_NOT_EMPTY: u8 = 22;
    /// Something is already mounted on the mount point.
    pub const ALREADY_MOUNTED: u8 = 23;
    /// No usable `/dev/fuse` on this machine.
    pub const NO_FUSE: u8 = 24;
    /// `key remove` refused: the key is the vault's last.
    pub const LAST_KEY: u8 = 25;
    /// `key remove` refused: the key is the one whose passphrase was given.
    pub const KEY_IN_USE: u8 = 26;
    /// A writer in object storage lost its lock to another machine's writer and stopped.
    pub const LOCK_LOST: u8 = 27;
    /// A bug: synvault hit a state it does not expect (it says so in one line).
    pub const INTERNAL: u8 = 101;
    /// Stopped by SIGINT or SIGTERM.
    pub const INTERRUPTED: u8 = 130;
    /// A stream (`dump`) was cut short: its reader went away before the end. 128 + SIGPIPE,
    /// what a shell reports for a writer the signal ended.
    pub const OUTPUT_CLOSED: u8 = 141;
}

/// Everything that can go wrong in a vault operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no vault at {}", .path.display())]
    NotAVault { path: PathBuf },
    #[error("a vault already exists at {}", .path.display())]
    VaultExists { path: PathBuf },
    #[error("{} is not empty and not a vault: init needs a new or empty directory", .path.display())]
    NotEmpty { path: PathBuf },
    #[error("vault format {found} is newer than this synvault supports ({supported})")]
    FormatTooNew { found: u32, supported: u32 },
    #[error("wrong passphrase: it opens none of the vault's key files")]
    WrongPassphrase,
    #[error("vault is locked by {holder}")]
    Locked { holder: String },
    #[error("lost the vault's lock to {holder} (this writer could not refresh it for the stale period); nothing more was committed")]
    LockLost { holder: String },
    #[error("source {} does not exist", .path.display())]
    MissingSource { path: PathBuf },
    #[error("no recovery point matches {query:?}")]
    NoSuchPoint { query: String },
    #[error("recovery point prefix {query:?} is ambiguous")]
    AmbiguousPoint { query: String },
    #[error(
        "{query:?} is ambiguous: the vault holds points of several sources ({series}); choose one with --source PATH or --host NAME"
    )]
    AmbiguousLatest { query: String, series: String },
    #[error("no key matches {query:?}")]
    NoSuchKey { query: String },
    #[error("key prefix {query:?} is ambiguous")]
    AmbiguousKey { query: String },
    #[error("key {id} is the vault's last: removing it would leave no way to open the vault")]
    LastKey { id: String },
    #[error("key {id} is in use: it opened the vault for this command (open with another passphrase to remove it, or use `key passwd`)")]
    KeyInUse { id: String },
    #[error("no {path:?} in recovery point {point}")]
    NoSuchPath { point: String, path: String },
    #[error("no point holds {path:?}: {why}")]
    PathNotInPoints { path: String, why: String },
    #[error("restore stopped: {why}; {not_restored} files not restored (the first: {first}); the same restore with --overwrite resumes it")]
    RestoreCut {
        why: String,
        not_restored: u64,
        first: String,
    },
    #[error("{path:?} in recovery point {point} is not a regular file")]
    NotAFile { point: String, path: String },
    #[error("restore target {} is not empty (use --overwrite to restore into it)", .path.display())]
    TargetNotEmpty { path: PathBuf },
    #[error("{} exists: add --overwrite to restore over it", .path.display())]
    OriginalExists { path: PathBuf },
    #[error("restore target {} {why}", .path.display())]
    UnsafeTarget { path: PathBuf, why: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A broken invariant: a defect of synvault, not of the input (exit 101).
    #[error("internal error (a defect of synvault): {what}")]
    Internal { what: String },
    #[error("recovery point {point} is awaiting seed job {job} and cannot be read yet")]
    AwaitingSeed { point: String, job: String },
    #[error("recovery point {point} is still being written: its backup has not finished")]
    PointRunning { point: String },
    #[error("interrupted")]
    Interrupted,
    #[error("the catalog {} opens cleanly; `synvault catalog rebuild --force` replaces it (the old file is kept aside)", .path.display())]
    CatalogIntact { path: PathBuf },
    #[error("{command} refused: {why} (the catalog is behind the store: another machine wrote to it, or the catalog is an older copy); run `synvault catalog rebuild --force` first")]
    StaleCatalog { command: String, why: String },
    #[error("{what} {}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Seed(#[from] crate::seed::SeedError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl Error {
    /// Wraps an I/O error with what was being done to which path.
    pub fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }

    /// The process exit code this error ends a command with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotAVault { .. } => exit::NO_VAULT,
            Error::Locked { .. } => exit::LOCKED,
            Error::LockLost { .. } => exit::LOCK_LOST,
            Error::WrongPassphrase => exit::WRONG_PASSPHRASE,
            Error::LastKey { .. } => exit::LAST_KEY,
            Error::KeyInUse { .. } => exit::KEY_IN_USE,
            Error::Interrupted => exit::INTERRUPTED,
            Error::Internal { .. } => exit::INTERNAL,
            Error::CatalogIntact { .. } => exit::CATALOG_INTACT,
            Error::StaleCatalog { .. } => exit::STALE_CATALOG,
            Error::RestoreCut { .. } | Error::Store(StoreError::Remote { .. }) => {
                exit::STORE_UNREACHABLE
            }
            Error::InvalidArgument(_)
            | Error::UnsafeTarget { .. }
            | Error::AmbiguousLatest { .. } => exit::USAGE,
            Error::Seed(e) => match e {
                SeedError::NoJournal { .. }
                | SeedError::BadJournal { .. }
                | SeedError::OtherVault { .. }
                | SeedError::OtherJob { .. }
                | SeedError::DiskInUse { .. } => exit::SEED_REFUSED,
                SeedError::TooSmall { .. } | SeedError::NoRoom { .. } => exit::SEED_NO_ROOM,
                SeedError::UnknownJob { .. }
                | SeedError::JobExists { .. }
                | SeedError::NoPoint { .. } => exit::FATAL,
            },
            Error::Catalog(CatalogError::Missing { .. } | CatalogError::Empty { .. }) => {
                exit::NO_CATALOG
            }
            Error::Catalog(CatalogError::Damaged(_) | CatalogError::IntegrityCheck(_)) => {
                exit::CATALOG_DAMAGED
            }
            Error::VaultExists { .. }
            | Error::NotEmpty { .. }
            | Error::FormatTooNew { .. }
            | Error::MissingSource { .. }
            | Error::NoSuchPoint { .. }
            | Error::AmbiguousPoint { .. }
            | Error::NoSuchKey { .. }
            | Error::AmbiguousKey { .. }
            | Error::NoSuchPath { .. }
            | Error::PathNotInPoints { .. }
            | Error::NotAFile { .. }
            | Error::TargetNotEmpty { .. }
            | Error::OriginalExists { .. }
            | Error::AwaitingSeed { .. }
            | Error::PointRunning { .. }
            | Error::Io { .. }
            | Error::Store(_)
            | Error::Catalog(_) => exit::FATAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_defect_is_not_a_usage_error() {
        let defect = Error::Internal {
            what: "the walk lost track of a directory".into(),
        };
        assert_eq!(defect.exit_code(), exit::INTERNAL);
        assert!(defect.to_string().contains("a defect of synvault"));
        assert_eq!(Error::InvalidArgument("x".into()).exit_code(), exit::USAGE);
    }
}

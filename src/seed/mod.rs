//! Seed disks: the first full backup travels by courier, the store imports it without the key,
//! and incrementals run while the disks are on their way.
//!
//! - [`prepare`]: a full backup whose packs go to disk directories (split by capacity), a
//!   journal per disk, the point recorded `awaiting_seed` and its packs `in_transit`.
//! - [`check`]: re-read a disk against its journal before shipping (no vault, no key).
//! - [`import`]: at the store, needs the vault but not the passphrase; every pack is checked
//!   against the journal and the catalog before it enters the store; resumable, any disk order.
//! - [`repair`]: re-make from the source the blocks of packs lost in transit.

pub mod check;
pub mod import;
pub mod journal;
pub mod prepare;
pub mod repair;
pub mod status;

use crate::units::Bytes;
use std::path::PathBuf;

/// What can go wrong with seed disks.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{} has no seed journal ({})", .disk.display(), journal::JOURNAL_NAME)]
    NoJournal { disk: PathBuf },
    #[error("seed journal on {} is unreadable: {why}", .disk.display())]
    BadJournal { disk: PathBuf, why: String },
    #[error("disk {} belongs to vault {found}, not this vault ({expected}): refused", .disk.display())]
    OtherVault {
        disk: PathBuf,
        found: String,
        expected: String,
    },
    #[error("disk {} belongs to seed job {found:?}, not {expected:?}: refused", .disk.display())]
    OtherJob {
        disk: PathBuf,
        found: String,
        expected: String,
    },
    #[error("disk {} holds {holder}: refused (--force overwrites its journal)", .disk.display())]
    DiskInUse { disk: PathBuf, holder: String },
    #[error("no seed job named {job:?} in this vault")]
    UnknownJob { job: String },
    #[error("seed job {job:?} already exists")]
    JobExists { job: String },
    #[error("seed disks hold {} in all, clearly too small for {} of source; add disks or --disk-size", Bytes(*.capacity), Bytes(*.needed))]
    TooSmall { capacity: u64, needed: u64 },
    #[error("seed disks are full: about {} more disk room is needed; job {job:?} is incomplete", Bytes(*.needed))]
    NoRoom { job: String, needed: u64 },
    #[error("seed job {job:?} has no recovery point to repair")]
    NoPoint { job: String },
}

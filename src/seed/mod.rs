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
    #[error("seed disks hold {capacity} bytes in all, clearly too small for {needed} bytes of source; add disks or --disk-size")]
    TooSmall { capacity: u64, needed: u64 },
    #[error("seed disks are full: about {needed} more bytes of disk room are needed; job {job:?} is incomplete")]
    NoRoom { job: String, needed: u64 },
    #[error("cannot parse size {0:?} (use e.g. 250M, 8T)")]
    BadSize(String),
    #[error("seed job {job:?} has no recovery point to repair")]
    NoPoint { job: String },
}

/// Parses `250M`, `8T`, `1.5G` or plain bytes (binary units).
pub fn parse_size(text: &str) -> Result<u64, SeedError> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => return Err(SeedError::BadSize(text.into())),
            };
            (&t[..i], mult)
        }
        _ => (t, 1),
    };
    let value: f64 = num.parse().map_err(|_| SeedError::BadSize(text.into()))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(SeedError::BadSize(text.into()));
    }
    Ok((value * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("250M").unwrap(), 250 << 20);
        assert_eq!(parse_size("8T").unwrap(), 8 << 40);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1M").is_err());
    }
}

//! `seed check`: re-read a disk and compare every pack with its journal, before shipping.
//! Needs neither the vault nor the passphrase.

use std::path::{Path, PathBuf};

use super::journal::{pack_path, Journal, JournalPack};
use super::SeedError;
use crate::store::PackId;

/// Why a pack on a disk is not what its journal says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BadPack {
    pub pack: String,
    pub disk: PathBuf,
    pub reason: String,
}

/// What a check of one disk found.
#[derive(Debug, serde::Serialize)]
pub struct DiskCheck {
    pub disk: PathBuf,
    pub job: String,
    pub disk_index: u32,
    pub disk_count: u32,
    pub packs: u64,
    pub bytes: u64,
    pub bad: Vec<BadPack>,
}

/// Checks a pack file against its journal line: the right size, hashing to its name.
pub fn check_pack_file(path: &Path, entry: &JournalPack) -> Result<(), String> {
    let Some(id) = PackId::from_hex(&entry.name) else {
        return Err("journal names no valid pack".into());
    };
    if entry.blake3 != entry.name {
        return Err("journal's blake3 differs from the pack name".into());
    }
    let (len, hash) = match PackId::of_file(path) {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("missing from the disk".into())
        }
        Err(e) => return Err(format!("unreadable: {e}")),
    };
    if len != entry.size {
        return Err(format!(
            "has {len} bytes, the journal says {} (truncated or tampered)",
            entry.size
        ));
    }
    if hash != id {
        return Err("does not match its blake3 (damaged or tampered)".into());
    }
    Ok(())
}

/// Checks one disk.
pub fn check(disk: &Path) -> Result<DiskCheck, SeedError> {
    let journal = Journal::read(disk)?;
    let mut report = DiskCheck {
        disk: disk.to_path_buf(),
        job: journal.job.clone(),
        disk_index: journal.disk_index,
        disk_count: journal.disk_count,
        packs: journal.packs.len() as u64,
        bytes: journal.total_bytes,
        bad: Vec::new(),
    };
    for entry in &journal.packs {
        if let Err(reason) = check_pack_file(&pack_path(disk, &entry.name), entry) {
            report.bad.push(BadPack {
                pack: entry.name.clone(),
                disk: disk.to_path_buf(),
                reason,
            });
        }
    }
    Ok(report)
}

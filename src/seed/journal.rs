//! The journal on each seed disk: which vault and job it belongs to, which disk of how many,
//! and every pack on it with its size and blake3. It holds no secret: the packs are already
//! encrypted, and a pack's blake3 is its public name.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SeedError;
use crate::store::PackId;

/// File name of the journal at the top of a disk.
pub const JOURNAL_NAME: &str = "synvault-journal.json";
/// Journal format written by this build.
pub const JOURNAL_FORMAT: u32 = 1;

/// One pack on a disk.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalPack {
    pub name: String,
    pub size: u64,
    pub blake3: String,
}

/// `synvault-journal.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Journal {
    pub format: u32,
    pub vault_id: String,
    pub job: String,
    /// 1-based.
    pub disk_index: u32,
    pub disk_count: u32,
    pub packs: Vec<JournalPack>,
    pub total_packs: u64,
    pub total_bytes: u64,
    pub created: String,
    pub tool_version: String,
}

/// Where a pack lives on a disk.
pub fn pack_path(disk: &Path, name: &str) -> PathBuf {
    disk.join("packs").join(format!("{name}.pack"))
}

/// Where a pack lives on a disk, by id.
pub fn pack_path_of(disk: &Path, id: &PackId) -> PathBuf {
    pack_path(disk, &id.to_hex())
}

impl Journal {
    /// Reads and checks the journal of a disk.
    pub fn read(disk: &Path) -> Result<Journal, SeedError> {
        let path = disk.join(JOURNAL_NAME);
        let text = std::fs::read_to_string(&path).map_err(|_| SeedError::NoJournal {
            disk: disk.to_path_buf(),
        })?;
        let journal: Journal = serde_json::from_str(&text).map_err(|e| SeedError::BadJournal {
            disk: disk.to_path_buf(),
            why: e.to_string(),
        })?;
        if journal.format > JOURNAL_FORMAT {
            return Err(SeedError::BadJournal {
                disk: disk.to_path_buf(),
                why: format!(
                    "journal format {} is newer than this synvault supports",
                    journal.format
                ),
            });
        }
        Ok(journal)
    }

    /// Writes the journal durably.
    pub fn write(&self, disk: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::store::backend::write_durably(&disk.join(JOURNAL_NAME), &json)
    }
}

//! `seed prepare`: a full backup whose packs are written to disk directories instead of the
//! store, filling each disk up to its capacity before moving to the next.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use super::journal::{pack_path_of, Journal, JournalPack, JOURNAL_FORMAT, JOURNAL_NAME};
use super::SeedError;
use crate::catalog::seed::SeedJobState;
use crate::catalog::{NewPack, PackState, SeedJobRecord};
use crate::error::{Error, Result};
use crate::ingest::sink::PackDestination;
use crate::ingest::{backup_to, BackupOptions, BackupReport, SeedDestination, Target};
use crate::progress::Progress;
use crate::store::pack::FinishedPack;
use crate::store::{PackId, StoreError};
use crate::vault::Vault;

/// One disk directory and how much may be written to it.
#[derive(Clone, Debug)]
pub struct SeedDisk {
    pub path: PathBuf,
    pub capacity: u64,
}

/// Room kept free on each disk for the journal.
const JOURNAL_RESERVE: u64 = 1 << 20;
/// A source is "clearly" too big when even this compression and dedup could not fit it.
const BEST_CASE_SHRINK: u64 = 4;

/// Free bytes of the file system holding `path`.
pub fn free_space(path: &Path) -> Result<u64> {
    let st =
        rustix::fs::statvfs(path).map_err(|e| Error::io("cannot stat disk", path)(e.into()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

struct Placement {
    current: usize,
    used: Vec<u64>,
    placed: Vec<(PackId, u32, u64)>,
    written_bytes: u64,
}

/// The disks of one job, as a pack destination.
pub struct DiskSet {
    job: String,
    vault_id: String,
    disks: Vec<SeedDisk>,
    source_bytes: std::sync::atomic::AtomicU64,
    placement: Mutex<Placement>,
}

impl DiskSet {
    /// A destination over `disks`, in order.
    pub fn new(job: &str, vault_id: &str, disks: Vec<SeedDisk>) -> DiskSet {
        let n = disks.len();
        DiskSet {
            job: job.to_string(),
            vault_id: vault_id.to_string(),
            disks,
            source_bytes: std::sync::atomic::AtomicU64::new(0),
            placement: Mutex::new(Placement {
                current: 0,
                used: vec![0; n],
                placed: Vec::new(),
                written_bytes: 0,
            }),
        }
    }

    fn write_journals(&self, placed: &[(PackId, u32, u64)]) -> std::io::Result<u32> {
        let disk_count = placed.iter().map(|p| p.1).max().unwrap_or(1);
        let created = crate::time::format_utc(crate::time::now_ns());
        for index in 1..=disk_count {
            let packs: Vec<JournalPack> = placed
                .iter()
                .filter(|p| p.1 == index)
                .map(|(id, _, size)| JournalPack {
                    name: id.to_hex(),
                    size: *size,
                    blake3: id.to_hex(),
                })
                .collect();
            let journal = Journal {
                format: JOURNAL_FORMAT,
                vault_id: self.vault_id.clone(),
                job: self.job.clone(),
                disk_index: index,
                disk_count,
                total_packs: packs.len() as u64,
                total_bytes: packs.iter().map(|p| p.size).sum(),
                packs,
                created: created.clone(),
                tool_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            journal.write(&self.disks[index as usize - 1].path)?;
        }
        Ok(disk_count)
    }
}

impl PackDestination for DiskSet {
    fn write(&self, pack: &FinishedPack) -> Result<(PackState, Option<String>), StoreError> {
        let len = pack.bytes.len() as u64;
        let mut at = self.placement.lock().unwrap_or_else(|e| e.into_inner());
        while at.current < self.disks.len() {
            let disk = &self.disks[at.current];
            if at.used[at.current] + len + JOURNAL_RESERVE <= disk.capacity {
                let path = pack_path_of(&disk.path, &pack.id);
                crate::store::backend::write_durably(&path, &pack.bytes)
                    .map_err(StoreError::io("write pack to seed disk", &path))?;
                let index = at.current;
                at.used[index] += len;
                at.written_bytes += len;
                at.placed.push((pack.id, index as u32 + 1, len));
                return Ok((PackState::InTransit, Some(self.job.clone())));
            }
            at.current += 1;
        }
        Err(StoreError::SeedDisksFull {
            needed: len.max(
                self.source_bytes
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .saturating_sub(at.written_bytes),
            ),
        })
    }
}

impl SeedDestination for DiskSet {
    fn job(&self) -> &str {
        &self.job
    }

    fn accept_source(&self, bytes: u64) -> Result<()> {
        self.source_bytes
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
        let capacity: u64 = self.disks.iter().map(|d| d.capacity).sum();
        if capacity.saturating_mul(BEST_CASE_SHRINK) < bytes {
            return Err(SeedError::TooSmall {
                capacity,
                needed: bytes,
            }
            .into());
        }
        Ok(())
    }

    fn record(&self, source: &str, packs: &[NewPack]) -> Result<SeedJobRecord, StoreError> {
        let at = self.placement.lock().unwrap_or_else(|e| e.into_inner());
        let disk_of: HashMap<PackId, u32> = at.placed.iter().map(|p| (p.0, p.1)).collect();
        let disk_count = self
            .write_journals(&at.placed)
            .map_err(StoreError::io("write seed journal to", &self.disks[0].path))?;
        Ok(SeedJobRecord {
            name: self.job.clone(),
            source: source.to_string(),
            disk_count,
            created_ns: crate::time::now_ns(),
            packs: packs
                .iter()
                .map(|p| (p.id, disk_of.get(&p.id).copied().unwrap_or(1)))
                .collect(),
        })
    }
}

/// One disk of a prepared job: how much of the job it holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DiskUse {
    pub path: PathBuf,
    /// The disk's number in the job (1-based), as its journal and `seed import` name it.
    pub number: u32,
    pub packs: u64,
    pub bytes: u64,
}

/// What `seed prepare` did: the backup onto the disks, and which disks it used.
#[derive(Debug, serde::Serialize)]
pub struct PrepareReport {
    #[serde(flatten)]
    pub backup: BackupReport,
    /// Every disk given, used or not (a disk with no packs was not needed).
    pub disks: Vec<DiskUse>,
}

impl DiskSet {
    /// How much of the job each disk holds.
    fn usage(&self) -> Vec<DiskUse> {
        let at = self.placement.lock().unwrap_or_else(|e| e.into_inner());
        self.disks
            .iter()
            .enumerate()
            .map(|(i, disk)| {
                let number = i as u32 + 1;
                DiskUse {
                    path: disk.path.clone(),
                    number,
                    packs: at.placed.iter().filter(|p| p.1 == number).count() as u64,
                    bytes: at.used.get(i).copied().unwrap_or(0),
                }
            })
            .collect()
    }
}

/// What `seed prepare` was asked to do.
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    pub job: String,
    pub disks: Vec<PathBuf>,
    /// Capacity of every disk; default: each disk's free space.
    pub disk_size: Option<u64>,
    /// Overwrite a disk that holds another job's journal even if that job is not imported.
    pub force: bool,
    pub backup: BackupOptions,
}

/// Runs `seed prepare`. The writer lock must be held by the caller.
pub fn prepare(
    vault: &Vault,
    options: &PrepareOptions,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<PrepareReport> {
    if vault
        .catalog()
        .seed_job(&options.job)?
        .is_some_and(|j| j.point.is_some())
    {
        return Err(SeedError::JobExists {
            job: options.job.clone(),
        }
        .into());
    }
    if !options.force {
        for path in &options.disks {
            refuse_disk_in_use(vault, path, &options.job)?;
        }
    }
    let mut disks = Vec::new();
    for path in &options.disks {
        std::fs::create_dir_all(path.join("packs"))
            .map_err(Error::io("cannot use seed disk", path))?;
        let capacity = match options.disk_size {
            Some(size) => size,
            None => free_space(path)?,
        };
        disks.push(SeedDisk {
            path: path.clone(),
            capacity,
        });
    }
    let set = DiskSet::new(&options.job, &vault.config().vault_id, disks);
    match backup_to(
        vault,
        &options.backup,
        Target::Seed(&set),
        progress,
        interrupted,
    ) {
        Err(Error::Store(StoreError::SeedDisksFull { needed })) => {
            let source = crate::ingest::source_name(&options.backup.paths);
            vault
                .catalog()
                .record_incomplete_seed_job(&options.job, &source)?;
            crate::rebuild::seal_incomplete_seed_job(vault, &options.job, &source)?;
            Err(SeedError::NoRoom {
                job: options.job.clone(),
                needed,
            }
            .into())
        }
        Err(other) => Err(other),
        Ok(backup) => Ok(PrepareReport {
            backup,
            disks: set.usage(),
        }),
    }
}

/// Refuses a disk whose journal belongs to a job that may still need it: another vault's, or
/// one of this vault not imported yet. Writing this job's journal over it would make that job
/// impossible to import. A journal of this same job is its own earlier attempt.
fn refuse_disk_in_use(vault: &Vault, disk: &Path, job: &str) -> Result<()> {
    if std::fs::symlink_metadata(disk.join(JOURNAL_NAME)).is_err() {
        return Ok(());
    }
    let in_use = |holder: String| -> Result<()> {
        Err(SeedError::DiskInUse {
            disk: disk.to_path_buf(),
            holder,
        }
        .into())
    };
    let journal = match Journal::read(disk) {
        Ok(journal) => journal,
        Err(_) => return in_use(format!("an unreadable seed journal ({JOURNAL_NAME})")),
    };
    if journal.vault_id != vault.config().vault_id {
        return in_use(format!(
            "seed job {:?} of another vault ({})",
            journal.job, journal.vault_id
        ));
    }
    if journal.job == job {
        return Ok(());
    }
    let imported = vault
        .catalog()
        .seed_job(&journal.job)?
        .is_some_and(|j| j.state == SeedJobState::Imported);
    if imported {
        return Ok(());
    }
    in_use(format!("seed job {:?}, not imported yet", journal.job))
}

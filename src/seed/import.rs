//! `seed import`: at the store, bring a job's packs in from its disks. Needs the vault
//! directory, not the passphrase: packs are checked by size and blake3 (their public name)
//! against the journal and against what the catalog expects.
//!
//! Plan, then apply: every journal is read and matched to this vault and job before a byte is
//! copied, so a foreign disk is refused whole.
//!
//! A vault in object storage is seeded in the datacenter, on a machine that has the disks
//! and the bucket but neither the passphrase nor the owner's catalog: there the journals alone
//! say what to expect, and each pack is still checked by size and blake3 as it is copied
//! ([`import_into`]). The owner's machine then takes the packs in from the bucket
//! ([`settle_from_store`]), and the job's point becomes complete. Good packs are copied in (temp name, rename),
//! made durable with one `syncfs` per disk, and only then marked `stored` in one catalog
//! transaction per disk. An import killed midway leaves at most complete, unreferenced pack
//! files in the store; running it again copies them again and completes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use super::check::BadPack;
use super::journal::{pack_path, Journal, JournalPack};
use super::SeedError;
use crate::catalog::seed::SeedPack;
use crate::catalog::{Catalog, PackState};
use crate::error::{Error, Result};
use crate::lock::WriterLock;
use crate::place::Place;
use crate::progress::Progress;
use crate::store::backend::create_private_dir_all;
use crate::store::{Backend, FileVerdict, PackId};

/// What an import did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ImportReport {
    pub job: String,
    pub packs_imported: u64,
    pub packs_already_there: u64,
    pub bytes_imported: u64,
    pub seconds: f64,
    pub bad: Vec<BadPack>,
    /// True when every pack of the job is now in the store.
    pub job_complete: bool,
}

impl ImportReport {
    /// True if the disks held nothing new.
    pub fn nothing_to_do(&self) -> bool {
        self.packs_imported == 0 && self.bad.is_empty()
    }
}

/// One disk's journal, matched to the job.
struct DiskPlan {
    disk: PathBuf,
    journal: Journal,
}

/// Reads every journal and refuses the whole import if any disk is another vault's or job's.
fn plan(disks: &[PathBuf], vault_id: &str, job: &str) -> Result<Vec<DiskPlan>> {
    let mut out = Vec::new();
    for disk in disks {
        let journal = Journal::read(disk)?;
        if journal.vault_id != vault_id {
            return Err(SeedError::OtherVault {
                disk: disk.clone(),
                found: journal.vault_id,
                expected: vault_id.to_string(),
            }
            .into());
        }
        if journal.job != job {
            return Err(SeedError::OtherJob {
                disk: disk.clone(),
                found: journal.job,
                expected: job.to_string(),
            }
            .into());
        }
        out.push(DiskPlan {
            disk: disk.clone(),
            journal,
        });
    }
    Ok(out)
}

/// Imports the packs of `job` from `disks` into the vault at `place` (a directory or a bucket).
pub fn import(
    place: &Place,
    job: &str,
    disks: &[PathBuf],
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<ImportReport> {
    let backend = place.backend();
    import_into(place, backend.as_ref(), job, disks, progress, interrupted)
}

/// [`import`] into the store `backend` (the vault's own, or a decorator over it).
pub fn import_into(
    place: &Place,
    backend: &dyn Backend,
    job: &str,
    disks: &[PathBuf],
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<ImportReport> {
    let config = crate::vault::read_config_in(place)?;
    let root = place.local_dir(&config)?;
    let catalog_path = root.join(crate::vault::CATALOG);
    if place.remote().is_some() && !catalog_path.exists() {
        let journals = Journals {
            vault_id: &config.vault_id,
            job,
            disks,
        };
        return import_by_journals(place, &root, backend, journals, progress, interrupted);
    }
    let mut catalog = Catalog::open(&catalog_path)?;
    let (_lock, _) = WriterLock::acquire_in(place, &root, &format!("seed import --job {job}"))?;
    let plans = plan(disks, &config.vault_id, job)?;
    if catalog.seed_job(job)?.and_then(|j| j.point).is_none() {
        return Err(SeedError::UnknownJob {
            job: job.to_string(),
        }
        .into());
    }
    let expected: HashMap<PackId, SeedPack> = catalog
        .seed_packs(job)?
        .into_iter()
        .map(|p| (p.pack, p))
        .collect();
    backend.remove_temporary()?;
    let started = Instant::now();
    let mut report = ImportReport {
        job: job.to_string(),
        ..ImportReport::default()
    };
    progress.set_total(plans.iter().map(|p| p.journal.total_bytes).sum());
    for plan in &plans {
        let stored = import_disk(backend, plan, &expected, &mut report, progress, interrupted)?;
        for bad in report.bad.iter().filter(|b| b.disk == plan.disk) {
            if let Some(id) = PackId::from_hex(&bad.pack) {
                catalog.record_bad_seed_pack(job, &id, &bad.reason)?;
            }
        }
        report.job_complete = catalog.record_seed_import(job, plan.journal.disk_index, &stored)?;
    }
    report.job_complete = catalog
        .seed_job(job)?
        .is_some_and(|j| j.state == crate::catalog::seed::SeedJobState::Imported);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// [`import_into`] a bucket from a machine without the vault's catalog: the journals say
/// which packs the job has; each is checked by size and blake3 as it is copied, and a pack
/// the bucket already holds at its size is not copied again. `job_complete` says whether
/// every disk of the job was given and every pack is in.
fn import_by_journals(
    place: &Place,
    state_dir: &Path,
    backend: &dyn Backend,
    journals: Journals<'_>,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<ImportReport> {
    let job = journals.job;
    create_private_dir_all(state_dir).map_err(Error::io("cannot create", state_dir))?;
    let (_lock, _) = WriterLock::acquire_in(place, state_dir, &format!("seed import --job {job}"))?;
    let plans = plan(journals.disks, journals.vault_id, job)?;
    let started = Instant::now();
    let mut report = ImportReport {
        job: job.to_string(),
        ..ImportReport::default()
    };
    let in_bucket: HashMap<PackId, u64> = backend.list()?.into_iter().collect();
    progress.set_total(plans.iter().map(|p| p.journal.total_bytes).sum());
    let mut disks_seen = std::collections::BTreeSet::new();
    for plan in &plans {
        let expected: HashMap<PackId, SeedPack> = plan
            .journal
            .packs
            .iter()
            .filter_map(|entry| {
                let pack = PackId::from_hex(&entry.name)?;
                let there = in_bucket.get(&pack) == Some(&entry.size);
                Some((
                    pack,
                    SeedPack {
                        pack,
                        size: entry.size,
                        state: if there {
                            PackState::Stored
                        } else {
                            PackState::InTransit
                        },
                        disk_index: plan.journal.disk_index,
                    },
                ))
            })
            .collect();
        import_disk(backend, plan, &expected, &mut report, progress, interrupted)?;
        disks_seen.insert(plan.journal.disk_index);
    }
    let disk_count = plans.first().map_or(0, |p| p.journal.disk_count) as usize;
    report.job_complete = report.bad.is_empty() && disks_seen.len() == disk_count;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// On the owner's machine, takes in the packs of `job` that were imported into the vault's
/// store elsewhere (a bucket seeded in the datacenter): every pack the catalog awaits that the
/// store holds at its size is marked stored; the job's point is complete once none is awaited.
pub fn settle_from_store(place: &Place, job: &str) -> Result<ImportReport> {
    let config = crate::vault::read_config_in(place)?;
    let root = place.local_dir(&config)?;
    let mut catalog = Catalog::open(&root.join(crate::vault::CATALOG))?;
    let (_lock, _) = WriterLock::acquire_in(place, &root, &format!("seed import --job {job}"))?;
    if catalog.seed_job(job)?.and_then(|j| j.point).is_none() {
        return Err(SeedError::UnknownJob {
            job: job.to_string(),
        }
        .into());
    }
    let started = Instant::now();
    let in_store: HashMap<PackId, u64> = place.backend().list()?.into_iter().collect();
    let mut report = ImportReport {
        job: job.to_string(),
        ..ImportReport::default()
    };
    let mut found = Vec::new();
    for pack in catalog.seed_packs(job)? {
        match pack.state {
            PackState::Stored => report.packs_already_there += 1,
            PackState::InTransit if in_store.get(&pack.pack) == Some(&pack.size) => {
                report.packs_imported += 1;
                report.bytes_imported += pack.size;
                found.push(pack.pack);
            }
            PackState::InTransit => {}
        }
    }
    report.job_complete = catalog.record_seed_found(job, &found)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The disks of one job of one vault.
struct Journals<'a> {
    vault_id: &'a str,
    job: &'a str,
    disks: &'a [PathBuf],
}

/// What became of one pack of a disk.
enum PackOutcome {
    Imported(PackId, u64),
    AlreadyThere,
    Bad(BadPack),
}

fn import_disk(
    backend: &dyn Backend,
    plan: &DiskPlan,
    expected: &HashMap<PackId, SeedPack>,
    report: &mut ImportReport,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<Vec<PackId>> {
    // Packs are checked and copied on every core: hashing, not the disk, is the bound when
    // the data is cached.
    let outcomes: Vec<PackOutcome> = plan
        .journal
        .packs
        .par_iter()
        .map(|entry| {
            if interrupted.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            let outcome = import_pack(backend, plan, entry, expected);
            progress.add_bytes(entry.size);
            outcome
        })
        .collect::<Result<_>>()?;
    let mut stored = Vec::new();
    for outcome in outcomes {
        match outcome {
            PackOutcome::Imported(id, size) => {
                stored.push(id);
                report.packs_imported += 1;
                report.bytes_imported += size;
            }
            PackOutcome::AlreadyThere => report.packs_already_there += 1,
            PackOutcome::Bad(bad) => report.bad.push(bad),
        }
    }
    backend.sync()?;
    Ok(stored)
}

fn import_pack(
    backend: &dyn Backend,
    plan: &DiskPlan,
    entry: &JournalPack,
    expected: &HashMap<PackId, SeedPack>,
) -> Result<PackOutcome> {
    let bad = |reason: &str| {
        PackOutcome::Bad(BadPack {
            pack: entry.name.clone(),
            disk: plan.disk.clone(),
            reason: reason.into(),
        })
    };
    let Some(want) = PackId::from_hex(&entry.name).and_then(|id| expected.get(&id)) else {
        return Ok(bad("is not a pack of this job in the catalog"));
    };
    if want.state == PackState::Stored {
        return Ok(PackOutcome::AlreadyThere);
    }
    if want.size != entry.size {
        return Ok(bad(&format!(
            "journal says {} bytes, the catalog {}",
            entry.size, want.size
        )));
    }
    if entry.blake3 != entry.name {
        return Ok(bad("journal's blake3 differs from the pack name"));
    }
    let from = pack_path(&plan.disk, &entry.name);
    match backend.put_file(&want.pack, &from, entry.size)? {
        FileVerdict::Stored => Ok(PackOutcome::Imported(want.pack, entry.size)),
        FileVerdict::Refused(reason) => Ok(bad(&reason)),
    }
}

//! `seed import`: at the store, bring a job's packs in from its disks. Needs the vault
//! directory, not the passphrase: packs are checked by size and blake3 (their public name)
//! against the journal and against what the catalog expects.
//!
//! Plan, then apply: every journal is read and matched to this vault and job before a byte is
//! copied, so a foreign disk is refused whole. Good packs are copied in (temp name, rename),
//! made durable with one `syncfs` per disk, and only then marked `stored` in one catalog
//! transaction per disk. An import killed midway leaves at most complete, unreferenced pack
//! files in the store; running it again copies them again and completes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use super::check::{check_pack_file, BadPack};
use super::journal::{pack_path, Journal, JournalPack};
use super::SeedError;
use crate::catalog::seed::SeedPack;
use crate::catalog::{Catalog, PackState};
use crate::error::{Error, Result};
use crate::lock::WriterLock;
use crate::progress::Progress;
use crate::store::backend::{create_private_dir_all, create_private_file};
use crate::store::{LocalBackend, PackId};

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

/// Imports the packs of `job` from `disks` into the vault at `root`.
pub fn import(
    root: &Path,
    job: &str,
    disks: &[PathBuf],
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<ImportReport> {
    let config = crate::vault::read_config(root)?;
    let mut catalog = Catalog::open(&root.join("catalog.db"))?;
    let (_lock, _) = WriterLock::acquire(root, &format!("seed import --job {job}"))?;
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
    let backend = LocalBackend::new(root.join("packs"));
    remove_stale_copies(&root.join("packs"));
    let started = Instant::now();
    let mut report = ImportReport {
        job: job.to_string(),
        ..ImportReport::default()
    };
    progress.set_total(plans.iter().map(|p| p.journal.total_bytes).sum());
    for plan in &plans {
        let stored = import_disk(
            &backend,
            plan,
            &expected,
            &mut report,
            progress,
            interrupted,
        )?;
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

/// What became of one pack of a disk.
enum PackOutcome {
    Imported(PackId, u64),
    AlreadyThere,
    Bad(BadPack),
}

fn import_disk(
    backend: &LocalBackend,
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
    sync_store(backend)?;
    Ok(stored)
}

fn import_pack(
    backend: &LocalBackend,
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
    match copy_in(
        backend,
        &want.pack,
        &pack_path(&plan.disk, &entry.name),
        entry,
    )? {
        Ok(()) => Ok(PackOutcome::Imported(want.pack, entry.size)),
        Err(reason) => Ok(bad(&reason)),
    }
}

/// Copies a pack in under a temporary name (in the kernel: `std::io::copy` uses
/// copy_file_range), checks the copy — the bytes that will be in the store — against the
/// journal and its name, and renames it into place; a bad copy is removed. Durability comes
/// from the one `syncfs` per disk in [`sync_store`], before the catalog names the pack.
/// The outer error is the store's; the inner one says why the pack is refused.
fn copy_in(
    backend: &LocalBackend,
    id: &PackId,
    from: &Path,
    entry: &JournalPack,
) -> Result<std::result::Result<(), String>> {
    let path = backend.path_of(id);
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir_all(dir).map_err(Error::io("cannot create", dir))?;
    let mut source = match std::fs::File::open(from) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err("missing from the disk".into()))
        }
        Err(e) => return Ok(Err(format!("unreadable: {e}"))),
    };
    let tmp = dir.join(format!(".{}.{}.import", id.to_hex(), std::process::id()));
    let _ = std::fs::remove_file(&tmp); // left by a killed import that had our pid
    let copied = create_private_file(&tmp)
        .map_err(Error::io("cannot create", &tmp))
        .and_then(|mut out| {
            std::io::copy(&mut source, &mut out).map_err(Error::io("cannot copy pack into", &tmp))
        });
    let verdict = copied.map(|_| check_pack_file(&tmp, entry));
    match verdict {
        Ok(Ok(())) => {
            start_writeback(&tmp);
            std::fs::rename(&tmp, &path).map_err(Error::io("cannot copy pack into", &path))?;
            Ok(Ok(()))
        }
        other => {
            let _ = std::fs::remove_file(&tmp);
            other
        }
    }
}

/// Starts writing a checked copy to disk now (POSIX_FADV_DONTNEED begins writeback of dirty
/// pages without waiting), so the syncfs that makes a disk's packs durable waits for little.
/// Only a hint: failure changes nothing.
fn start_writeback(path: &Path) {
    if let Ok(file) = std::fs::File::open(path) {
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
    }
}

fn sync_store(backend: &LocalBackend) -> Result<()> {
    let root = backend.path_of(&PackId([0; 32]));
    let packs = root
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let dir = std::fs::File::open(packs).map_err(Error::io("cannot open", packs))?;
    rustix::fs::syncfs(&dir).map_err(|e| Error::io("cannot sync", packs)(e.into()))
}

/// Removes temporary copies left by an import that was killed (we hold the writer lock, so no
/// other import is running).
fn remove_stale_copies(packs: &Path) {
    let Ok(dirs) = std::fs::read_dir(packs) else {
        return;
    };
    for dir in dirs.flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            if file.file_name().to_string_lossy().ends_with(".import") {
                let _ = std::fs::remove_file(file.path());
            }
        }
    }
}

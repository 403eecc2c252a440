//! `seed status`: where each seed job stands — disks seen, packs and bytes imported, packs
//! refused — answered from the catalog alone (no passphrase, no disks).

use crate::catalog::{Catalog, PackState};
use crate::error::{Error, Result};
use crate::place::Place;
use crate::seed::SeedError;

/// One job's progress.
#[derive(Debug, serde::Serialize)]
pub struct JobStatus {
    pub job: String,
    pub state: &'static str,
    pub point: Option<String>,
    pub source: String,
    pub disk_count: u32,
    pub disks_seen: Vec<u32>,
    pub disks_missing: Vec<u32>,
    pub packs_total: usize,
    pub packs_imported: usize,
    pub bytes_total: u64,
    pub bytes_imported: u64,
    pub bad_packs: Vec<BadPack>,
}

/// A pack an import refused, and why.
#[derive(Debug, serde::Serialize)]
pub struct BadPack {
    pub pack: String,
    pub disk: u32,
    pub reason: String,
}

/// The status of every seed job of the vault at `place`, or of `job` only (an unknown job is
/// an error).
pub fn status(place: &Place, job: Option<&str>) -> Result<Vec<JobStatus>> {
    let config = crate::vault::read_config_in(place)?;
    let root = place.local_dir(&config)?;
    let catalog = Catalog::open(&root.join(crate::vault::CATALOG))?;
    let mut out = Vec::new();
    for record in catalog.seed_jobs()? {
        if job.is_some_and(|j| j != record.name) {
            continue;
        }
        let packs = catalog.seed_packs(&record.name)?;
        let seen = catalog.seed_disks_seen(&record.name)?;
        let stored = packs.iter().filter(|p| p.state == PackState::Stored);
        let disk_of = |pack| {
            packs
                .iter()
                .find(|p| p.pack == pack)
                .map_or(0, |p| p.disk_index)
        };
        out.push(JobStatus {
            state: record.state.as_str(),
            point: record.point.map(|p| p.0),
            source: record.source,
            disk_count: record.disk_count,
            disks_missing: (1..=record.disk_count)
                .filter(|d| !seen.contains(d))
                .collect(),
            disks_seen: seen,
            packs_total: packs.len(),
            packs_imported: stored.clone().count(),
            bytes_total: packs.iter().map(|p| p.size).sum(),
            bytes_imported: stored.map(|p| p.size).sum(),
            bad_packs: catalog
                .seed_bad_packs(&record.name)?
                .into_iter()
                .map(|(pack, reason)| BadPack {
                    pack: pack.to_hex(),
                    disk: disk_of(pack),
                    reason,
                })
                .collect(),
            job: record.name,
        });
    }
    match job {
        Some(job) if out.is_empty() => Err(Error::from(SeedError::UnknownJob {
            job: job.to_string(),
        })),
        _ => Ok(out),
    }
}

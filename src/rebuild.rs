//! `catalog rebuild`: the catalog recreated from the store alone, and the settling of a
//! backup that died between sealing its metadata into the store and committing it.
//!
//! The store holds two kinds of packs. A data pack's footer lists its blocks; a metadata
//! pack (written by every backup before its transaction commits) holds the trees, file
//! versions and point the backup added, and a seed job's shipped packs with their footers.
//! Rebuild reads every metadata pack into a new catalog, then every data pack's footer, then
//! puts back the seed jobs (a pack a job shipped that is not in the store is still in
//! transit) and the points. A point is put back only if everything it reaches is there: its
//! trees, its file versions and a location for every block. Any other point is reported lost,
//! never invented.
//!
//! The new catalog is written beside the old one and renamed into place once complete; the
//! old file (if any) is kept aside under a name with the time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::catalog::sealed::{BodyWriter, Event, Record, SealedSeedJob, SealedSeedPack};
use crate::catalog::seed::SeedJobState;
use crate::catalog::tree_path::MAX_TREE_DEPTH;
use crate::catalog::{
    tree_codec, Bulk, Catalog, CatalogError, ContentId, EntryKind, NewPack, PackState, PointState,
    RecoveryPoint, TreeId,
};
use crate::error::{Error, Result};
use crate::lock::WriterLock;
use crate::place::Place;
use crate::progress::Progress;
use crate::store::backend::create_private_dir_all;
use crate::store::meta_pack::stored_meta_pack;
use crate::store::{pack, BlockId, PackId, StoreError};
use crate::vault::{Vault, CATALOG};

/// What to do.
#[derive(Clone, Copy, Debug, Default)]
pub struct RebuildOptions {
    /// Replace a catalog that opens cleanly.
    pub force: bool,
}

/// A point the store names but cannot give back whole.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
pub struct LostPoint {
    pub id: String,
    pub reason: String,
}

/// What a rebuild found and did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RebuildReport {
    pub points_recovered: u64,
    /// Points the store still describes that were forgotten (left out).
    pub points_forgotten: u64,
    pub points_lost: Vec<LostPoint>,
    /// Data packs in the store.
    pub packs: u64,
    pub metadata_packs: u64,
    pub blocks: u64,
    pub trees: u64,
    pub contents: u64,
    pub seed_jobs: u64,
    /// Packs still on seed disks, known from their job's metadata.
    pub packs_in_transit: u64,
    /// Packs that could not be read or do not belong to this vault, with the reason.
    pub unreadable_packs: Vec<String>,
    /// Where the replaced catalog was kept, if there was one.
    pub old_catalog: Option<String>,
    pub seconds: f64,
}

const REBUILDING: &str = "catalog.db.rebuilding";
/// Data pack footers read per batch (in parallel), then recorded together.
const FOOTER_BATCH: usize = 256;

/// Rebuilds the catalog of the vault directory `root` from its store. Takes the writer lock.
pub fn rebuild(
    root: &Path,
    passphrase: &[u8],
    options: RebuildOptions,
    progress: &dyn Progress,
) -> Result<RebuildReport> {
    rebuild_in(Place::local(root), passphrase, options, progress)
}

/// Rebuilds the catalog of the vault at `place` from its store alone (for a vault in object
/// storage, on any machine: the catalog goes to its directory on this one). Takes the writer
/// lock.
pub fn rebuild_in(
    place: Place,
    passphrase: &[u8],
    options: RebuildOptions,
    progress: &dyn Progress,
) -> Result<RebuildReport> {
    let started = Instant::now();
    let config = crate::vault::read_config_in(&place)?;
    let root = place.local_dir(&config)?;
    let root = root.as_path();
    create_private_dir_all(root).map_err(Error::io("cannot create", root))?;
    let (_lock, _) = WriterLock::acquire_in(&place, root, "catalog rebuild")?;
    let current = root.join(CATALOG);
    if !options.force && opens_cleanly(&current) {
        return Err(Error::CatalogIntact { path: current });
    }
    let fresh = root.join(REBUILDING);
    remove_catalog_files(&fresh)?;
    let catalog = Catalog::create(&fresh)?;
    let filled = Vault::open_with_catalog(place, passphrase, catalog).and_then(|vault| {
        let report = fill(&vault, progress);
        drop(vault);
        report
    });
    let mut report = match filled {
        Ok(report) => report,
        Err(e) => {
            // A wrong passphrase or a failed read leaves nothing behind.
            let _ = remove_catalog_files(&fresh);
            return Err(e);
        }
    };

    if current.exists() {
        let aside = root.join(format!(
            "catalog.db.replaced-{}",
            crate::time::format_utc(crate::time::now_ns())
                .replace([':', ' '], "")
                .replace('-', "")
        ));
        for suffix in ["", "-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{suffix}", current.display()));
            if from.exists() {
                let to = PathBuf::from(format!("{}{suffix}", aside.display()));
                std::fs::rename(&from, &to).map_err(Error::io("cannot move aside", &from))?;
            }
        }
        report.old_catalog = Some(aside.display().to_string());
    }
    std::fs::rename(&fresh, &current).map_err(Error::io("cannot put in place", &fresh))?;
    crate::store::backend::sync_dir(root).map_err(Error::io("cannot sync", root))?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// True if the catalog file opens and SQLite finds its structure sound, or if it is a newer
/// synvault's (not damaged: only that build can tell what it holds).
fn opens_cleanly(path: &Path) -> bool {
    match Catalog::open(path) {
        Ok(catalog) => catalog
            .check_structure()
            .is_ok_and(|problems| problems.is_empty()),
        Err(CatalogError::SchemaTooNew { .. }) => true,
        Err(_) => false,
    }
}

fn remove_catalog_files(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot remove", file)(e)),
        }
    }
    Ok(())
}

/// What the metadata packs said, beside the rows already written.
#[derive(Default)]
struct Sealed {
    points: Vec<RecoveryPoint>,
    jobs: BTreeMap<String, SealedSeedJob>,
    job_packs: Vec<SealedSeedPack>,
    /// (job, lost packs) of every `seed repair`.
    repairs: Vec<(String, Vec<PackId>)>,
    /// Changes made after commits (forget, protect, policy).
    events: Vec<crate::catalog::sealed::Event>,
}

impl Sealed {
    /// Writes trees and file versions at once; keeps the rest for later.
    fn take(&mut self, bulk: &Bulk<'_>, records: Vec<Record>) -> Result<()> {
        for record in records {
            match record {
                Record::Tree(tree) => bulk.tree(&tree)?,
                Record::Content { id, size, list } => bulk.content(&id, size, &list)?,
                Record::Point(point) => self.points.push(*point),
                Record::SeedJob(job) => {
                    self.jobs.insert(job.name.clone(), job);
                }
                Record::SeedPack(pack) => self.job_packs.push(pack),
                // Parts are metadata packs in their own right: read as such.
                Record::DataPacks(_) | Record::Parts(_) => {}
                Record::SeedRepair { job, lost } => self.repairs.push((job, lost)),
                Record::Event(event) => self.events.push(event),
            }
        }
        Ok(())
    }
}

/// Fills the vault's (empty) catalog from its store.
fn fill(vault: &Vault, progress: &dyn Progress) -> Result<RebuildReport> {
    let mut report = RebuildReport::default();
    let listing = vault.backend().list()?;
    progress.set_total(listing.iter().map(|p| p.1).sum());
    let present: HashMap<PackId, u64> = listing.iter().copied().collect();

    let catalog = vault.catalog();
    let bulk = catalog.bulk()?;
    // Metadata first: which stored packs a seed job shipped is known before they are recorded.
    let heads: Vec<(PackId, u64, Result<bool, StoreError>)> = listing
        .par_iter()
        .map(|&(id, size)| (id, size, stored_meta_pack(vault.backend(), &id, size)))
        .collect();
    let mut sealed = Sealed::default();
    let mut data = Vec::new();
    for (id, size, head) in heads {
        match head {
            Ok(true) => {
                progress.add_bytes(size);
                let records = vault
                    .backend()
                    .read_all(&id)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| vault.open_meta_pack(&bytes));
                match records {
                    Ok(records) => {
                        sealed.take(&bulk, records)?;
                        bulk.meta_pack(&id, size)?;
                        report.metadata_packs += 1;
                    }
                    Err(why) => report.unreadable_packs.push(format!("{id}: {why}")),
                }
            }
            Ok(false) => data.push((id, size)),
            Err(e) => report.unreadable_packs.push(format!("{id}: {e}")),
        }
    }

    let job_of: HashMap<PackId, &str> = sealed
        .job_packs
        .iter()
        .map(|p| (p.pack, p.job.as_str()))
        .collect();
    for batch in data.chunks(FOOTER_BATCH) {
        let read: Vec<_> = batch
            .par_iter()
            .map(|&(id, size)| {
                let index = pack::read_index(vault.backend(), vault.codec(), &id, size);
                progress.add_bytes(size);
                (id, size, index)
            })
            .collect();
        let mut packs = Vec::new();
        for (id, size, index) in read {
            match index {
                Ok(index)
                    if index
                        .vault_id
                        .is_some_and(|v| v != *vault.codec().vault_id()) =>
                {
                    report
                        .unreadable_packs
                        .push(format!("{id}: a pack of another vault"));
                }
                Ok(index) => packs.push(NewPack {
                    id,
                    size,
                    state: PackState::Stored,
                    seed_job: job_of.get(&id).map(|job| job.to_string()),
                    entries: index.entries,
                }),
                Err(e) => report.unreadable_packs.push(format!("{id}: {e}")),
            }
        }
        report.packs += packs.len() as u64;
        bulk.data_packs(&packs)?;
    }

    put_back(&bulk, &sealed, &present, &mut report)?;
    let (_, blocks, trees, contents) = bulk.counts()?;
    report.blocks = blocks;
    report.trees = trees;
    report.contents = contents;
    bulk.commit()?;
    Ok(report)
}

/// Puts back what the metadata packs said, once the data packs are recorded: the seed jobs'
/// packs in transit, the points (but the forgotten ones), the seed jobs, then the changes
/// made to points since their commits, in the order they were made.
fn put_back(
    bulk: &Bulk<'_>,
    sealed: &Sealed,
    present: &HashMap<PackId, u64>,
    report: &mut RebuildReport,
) -> Result<()> {
    let jobs = put_back_transit_packs(bulk, sealed, present, report)?;
    let mut events = sealed.events.clone();
    events.sort_by_key(Event::at_ns);
    let (forgets, changes): (Vec<&Event>, Vec<&Event>) = events
        .iter()
        .partition(|e| matches!(e, Event::Forget { .. }));
    for event in forgets {
        bulk.event(event)?;
    }
    put_back_points(bulk, sealed.points.clone(), &job_states(&jobs), report)?;
    put_back_jobs(bulk, &jobs, report)?;
    for event in changes {
        bulk.event(event)?;
    }
    Ok(())
}

/// A seed job to record once its point is in.
struct JobRow<'s> {
    job: &'s SealedSeedJob,
    state: SeedJobState,
    shipped: Vec<(PackId, u32)>,
    seen: Vec<u32>,
}

/// Records the packs of every sealed seed job that are not in the store as in transit (their
/// blocks known from the sealed footers); a job's state follows from what has arrived.
/// Returns the jobs, to be recorded by [`put_back_jobs`] after the points.
fn put_back_transit_packs<'s>(
    bulk: &Bulk<'_>,
    sealed: &'s Sealed,
    present: &HashMap<PackId, u64>,
    report: &mut RebuildReport,
) -> Result<Vec<JobRow<'s>>> {
    let mut jobs: Vec<&SealedSeedJob> = sealed.jobs.values().collect();
    // Older jobs first, as they were recorded: the first job to ship a block holds it.
    jobs.sort_by_key(|job| job.created_ns);
    for job in &jobs {
        let in_transit: Vec<NewPack> = sealed
            .job_packs
            .iter()
            .filter(|p| p.job == job.name && !present.contains_key(&p.pack))
            .map(|p| NewPack {
                id: p.pack,
                size: p.size,
                state: PackState::InTransit,
                seed_job: Some(job.name.clone()),
                entries: p.entries.clone(),
            })
            .collect();
        bulk.data_packs(&in_transit)?;
    }
    // Repairs forget the lost packs they re-made, as they did when they ran.
    let mut dropped = HashSet::new();
    for (job, lost) in &sealed.repairs {
        let lost: Vec<PackId> = lost
            .iter()
            .copied()
            .filter(|p| !present.contains_key(p))
            .collect();
        dropped.extend(bulk.drop_lost_seed_packs(job, &lost)?);
    }
    let mut rows = Vec::new();
    for job in jobs {
        let packs: Vec<&SealedSeedPack> = sealed
            .job_packs
            .iter()
            .filter(|p| p.job == job.name && !dropped.contains(&p.pack))
            .collect();
        let transit = packs
            .iter()
            .filter(|p| !present.contains_key(&p.pack))
            .count();
        let arrived = packs.len() - transit;
        let state = if job.incomplete {
            SeedJobState::Incomplete
        } else if transit == 0 {
            SeedJobState::Imported
        } else if arrived > 0 {
            SeedJobState::Importing
        } else {
            SeedJobState::Prepared
        };
        // A disk is seen once every pack it carried is in the store or was re-made.
        let mut disks: BTreeMap<u32, bool> = BTreeMap::new();
        for p in sealed.job_packs.iter().filter(|p| p.job == job.name) {
            let here = present.contains_key(&p.pack) || dropped.contains(&p.pack);
            *disks.entry(p.disk).or_insert(true) &= here;
        }
        let seen: Vec<u32> = disks
            .into_iter()
            .filter(|&(_, all_here)| all_here)
            .map(|(disk, _)| disk)
            .collect();
        report.packs_in_transit += transit as u64;
        rows.push(JobRow {
            job,
            state,
            shipped: packs.iter().map(|p| (p.pack, p.disk)).collect(),
            seen,
        });
    }
    Ok(rows)
}

/// Records the seed jobs; a job whose point was not put back keeps no point.
fn put_back_jobs(bulk: &Bulk<'_>, jobs: &[JobRow<'_>], report: &mut RebuildReport) -> Result<()> {
    for row in jobs {
        let mut job = row.job.clone();
        if let Some(point) = &job.point {
            if !bulk.knows_point(point)? {
                job.point = None;
            }
        }
        bulk.seed_job(&job, row.state, &row.shipped, &row.seen)?;
        report.seed_jobs += 1;
    }
    Ok(())
}

fn job_states(jobs: &[JobRow<'_>]) -> HashMap<String, SeedJobState> {
    jobs.iter()
        .map(|row| (row.job.name.clone(), row.state))
        .collect()
}

/// Records every point that is whole, oldest first; reports the others.
fn put_back_points(
    bulk: &Bulk<'_>,
    mut points: Vec<RecoveryPoint>,
    jobs: &HashMap<String, SeedJobState>,
    report: &mut RebuildReport,
) -> Result<()> {
    points.sort_by(|a, b| (a.started_ns, &a.id.0).cmp(&(b.started_ns, &b.id.0)));
    let mut check = WholeCheck::default();
    for mut point in points {
        if bulk.knows_point(&point.id.0)? {
            continue;
        }
        if bulk.is_forgotten(&point.id.0)? {
            report.points_forgotten += 1;
            continue;
        }
        if let Err(reason) = check.point(bulk, &point)? {
            report.points_lost.push(LostPoint {
                id: point.id.0.clone(),
                reason,
            });
            continue;
        }
        // A point that waited for a seed job that has since arrived is whole now.
        if point.state == PointState::AwaitingSeed {
            let job = point.awaiting_job.as_deref().unwrap_or_default();
            if jobs.get(job) == Some(&SeedJobState::Imported) {
                point.state = PointState::Complete;
                point.awaiting_job = None;
            }
        }
        bulk.point(&point)?;
        report.points_recovered += 1;
    }
    Ok(())
}

/// Checks that a point is whole; trees and file versions found whole are not looked at twice.
#[derive(Default)]
struct WholeCheck {
    trees: HashSet<TreeId>,
    contents: HashSet<ContentId>,
}

impl WholeCheck {
    /// `Ok(Err(reason))` if the point is not whole.
    fn point(
        &mut self,
        bulk: &Bulk<'_>,
        point: &RecoveryPoint,
    ) -> Result<std::result::Result<(), String>> {
        let mut stack = vec![(point.root_tree, 0usize)];
        let mut walked = Vec::new();
        while let Some((tree, depth)) = stack.pop() {
            if self.trees.contains(&tree) || walked.contains(&tree) {
                continue;
            }
            if depth > MAX_TREE_DEPTH {
                return Ok(Err("its trees are nested too deep".into()));
            }
            let Some(blob) = bulk.tree_blob(&tree)? else {
                return Ok(Err(format!(
                    "tree {} is not in the store",
                    tree_codec::short_hex(&tree)
                )));
            };
            let entries = match tree_codec::decode(&blob) {
                Ok(entries) => entries,
                Err(e) => {
                    return Ok(Err(format!(
                        "tree {} is invalid: {e}",
                        tree_codec::short_hex(&tree)
                    )))
                }
            };
            for entry in entries {
                match (entry.kind, entry.subtree, entry.content) {
                    (EntryKind::Dir, Some(sub), _) => stack.push((sub, depth + 1)),
                    (EntryKind::File, _, Some(content)) => {
                        if let Err(reason) = self.content(bulk, &content)? {
                            return Ok(Err(reason));
                        }
                    }
                    _ => {}
                }
            }
            walked.push(tree);
        }
        self.trees.extend(walked);
        Ok(Ok(()))
    }

    fn content(
        &mut self,
        bulk: &Bulk<'_>,
        id: &ContentId,
    ) -> Result<std::result::Result<(), String>> {
        if self.contents.contains(id) {
            return Ok(Ok(()));
        }
        let short = hex::encode(&id.0[..8]);
        let content = match bulk.content_row(id)? {
            None => return Ok(Err(format!("file version {short} is not in the store"))),
            Some(None) => return Ok(Err(format!("file version {short} is malformed"))),
            Some(Some(content)) => content,
        };
        for (block, _) in &content.blocks {
            if *block != BlockId::ZERO && !bulk.block_located(block)? {
                return Ok(Err(format!(
                    "block {block} of file version {short} is in no pack"
                )));
            }
        }
        self.contents.insert(*id);
        Ok(Ok(()))
    }
}

/// Finishes the commits that a writer which died left between sealing its metadata into the
/// store and committing it: a pending seal whose pack is in the store is applied (the point
/// was durable, so it exists), one whose pack is not is dropped. Metadata parts that no
/// settled commit names belonged to a backup that died before its last pack: they are
/// removed. Runs only when no writer holds the lock (a running writer's pending seal and parts
/// are its own). Returns how many points it put in.
pub fn settle_pending(vault: &Vault) -> Result<usize> {
    {
        let catalog = vault.catalog();
        if catalog.pending_seals()?.is_empty() && catalog.sealing_parts()?.is_empty() {
            return Ok(0);
        }
    }
    let Ok(_lock) = WriterLock::acquire(vault.root(), "settle an interrupted commit") else {
        return Ok(0);
    };
    let mut settled = 0;
    let pending = vault.catalog().pending_seals()?;
    for pack in pending {
        let Some(size) = vault.backend().size(&pack)? else {
            vault.catalog().drop_pending_seal(&pack)?;
            continue;
        };
        let records = read_meta_pack(vault, &pack)?;
        settled += apply_commit(vault, &pack, size, records)?;
    }
    let orphans = vault.catalog().sealing_parts()?;
    for part in orphans {
        vault.backend().delete(&part)?;
        vault.catalog().drop_sealing_part(&part)?;
    }
    Ok(settled)
}

fn read_meta_pack(vault: &Vault, pack: &PackId) -> Result<Vec<Record>> {
    let bytes = vault.backend().read_all(pack)?;
    Ok(vault
        .open_meta_pack(&bytes)
        .map_err(|_| StoreError::CorruptPack {
            pack: *pack,
            why: "metadata pack does not open",
        })?)
}

/// Applies one backup's sealed records (those of its last metadata pack `meta` and of the
/// parts it names) to a catalog that lacks them, in one transaction. A backup whose data packs
/// or parts were taken back (it was interrupted, and its last metadata pack could not be
/// removed then) never committed: its last metadata pack is removed now instead.
fn apply_commit(vault: &Vault, meta: &PackId, size: u64, records: Vec<Record>) -> Result<usize> {
    let never_committed = || -> Result<usize> {
        vault.backend().delete(meta)?;
        vault.catalog().drop_pending_seal(meta)?;
        Ok(0)
    };
    let mut new_packs = Vec::new();
    let mut parts = Vec::new();
    for record in &records {
        match record {
            Record::DataPacks(packs) => {
                for &id in packs {
                    if vault.catalog().has_pack(&id)? {
                        continue;
                    }
                    let Some(size) = vault.backend().size(&id)? else {
                        return never_committed();
                    };
                    let index = pack::read_index(vault.backend(), vault.codec(), &id, size)?;
                    new_packs.push(NewPack {
                        id,
                        size,
                        state: PackState::Stored,
                        seed_job: None,
                        entries: index.entries,
                    });
                }
            }
            Record::Parts(ids) => {
                for &id in ids {
                    let Some(size) = vault.backend().size(&id)? else {
                        return never_committed();
                    };
                    parts.push((id, size));
                }
            }
            _ => {}
        }
    }
    let catalog = vault.catalog();
    let bulk = catalog.bulk()?;
    let mut report = RebuildReport::default();
    if !bulk.knows_pack(meta)? {
        let mut sealed = Sealed::default();
        // One part in memory at a time.
        for (part, part_size) in &parts {
            sealed.take(&bulk, read_meta_pack(vault, part)?)?;
            bulk.meta_pack(part, *part_size)?;
        }
        sealed.take(&bulk, records)?;
        bulk.data_packs(&new_packs)?;
        let mut present = HashMap::new();
        for p in &sealed.job_packs {
            if let Some(size) = vault.backend().size(&p.pack)? {
                present.insert(p.pack, size);
            }
        }
        put_back(&bulk, &sealed, &present, &mut report)?;
        bulk.meta_pack(meta, size)?;
    }
    bulk.drop_pending_seal(meta)?;
    bulk.commit()?;
    Ok(report.points_recovered as usize)
}

/// Seals what a vault made before metadata packs existed holds in its catalog only (trees,
/// file versions, points, seed jobs with the footers of their packs in transit) into one
/// metadata pack, once: the catalog's `unsealed_history` setting says it is due. A crash
/// before the setting is cleared only seals the same records again. The writer lock must be
/// held by the caller.
pub fn seal_history(vault: &Vault) -> Result<bool> {
    let catalog = vault.catalog();
    if catalog.setting(UNSEALED_HISTORY)?.is_none() {
        return Ok(false);
    }
    let body = snapshot_body(&catalog, false)?;
    drop(catalog);
    let (pack, size) = vault.seal_into_store(&body)?;
    let catalog = vault.catalog();
    catalog.record_meta_pack(&pack, size)?;
    catalog.clear_setting(UNSEALED_HISTORY)?;
    Ok(true)
}

/// Everything the catalog holds that packs cannot tell, as one metadata pack body: trees, file
/// versions, seed jobs with the footers of their packs, points, forgotten points, policies.
/// With `marked`, only the trees and file versions prune's mark reached (the points use).
pub fn snapshot_body(catalog: &Catalog, marked: bool) -> Result<Vec<u8>> {
    let now = crate::time::now_ns();
    let mut body = BodyWriter::default();
    catalog.for_each_tree(marked, |tree| body.tree(&tree))?;
    catalog.for_each_content_row(marked, |id, size, list| body.content(&id, size, list))?;
    for job in catalog.seed_jobs()? {
        body.seed_job(&SealedSeedJob {
            name: job.name.clone(),
            source: job.source.clone(),
            disk_count: job.disk_count,
            created_ns: job.created_ns,
            point: job.point.as_ref().map(|p| p.0.clone()),
            incomplete: job.state == SeedJobState::Incomplete,
        });
        for shipped in catalog.seed_packs(&job.name)? {
            let entries = catalog
                .blocks_of_pack(&shipped.pack)?
                .into_iter()
                .map(|(id, loc)| crate::store::PackEntry {
                    id,
                    offset: loc.offset,
                    stored_len: loc.stored_len,
                    raw_len: loc.raw_len,
                })
                .collect();
            body.seed_pack(&SealedSeedPack {
                job: job.name.clone(),
                pack: shipped.pack,
                disk: shipped.disk_index,
                size: shipped.size,
                entries,
            });
        }
    }
    for point in catalog.points()? {
        body.point(&point);
    }
    let mut forgotten: Vec<String> = catalog.forgotten_points()?.into_iter().collect();
    if !forgotten.is_empty() {
        forgotten.sort();
        body.event(&Event::Forget {
            at_ns: now,
            points: forgotten,
        });
    }
    for (source, policy) in catalog.policies()? {
        body.event(&Event::Policy {
            at_ns: now,
            source,
            policy: Some(policy),
        });
    }
    Ok(body.finish())
}

/// The setting that says a vault's history is not sealed into its store yet.
const UNSEALED_HISTORY: &str = "unsealed_history";

/// Seals a seed job recorded without a point (its prepare ran out of room), so a rebuilt
/// catalog knows it too.
pub fn seal_incomplete_seed_job(vault: &Vault, name: &str, source: &str) -> Result<()> {
    let mut body = BodyWriter::default();
    body.seed_job(&SealedSeedJob {
        name: name.to_string(),
        source: source.to_string(),
        disk_count: 0,
        created_ns: crate::time::now_ns(),
        point: None,
        incomplete: true,
    });
    let (pack, size) = vault.seal_into_store(&body.finish())?;
    vault.catalog().record_meta_pack(&pack, size)?;
    Ok(())
}

/// Makes a change to points after their commit (forget, protect, a policy): sealed into the
/// store first, with a pending seal as a backup's commit has, then applied to the catalog in
/// one transaction by the same code a rebuild uses. A kill in between is settled at the next
/// open.
pub fn commit_change(vault: &Vault, event: &Event) -> Result<()> {
    let mut body = BodyWriter::default();
    body.event(event);
    let meta = vault.seal(&body.finish())?;
    vault.catalog().add_pending_seal(&meta.id)?;
    vault.backend().put(&meta.id, &meta.bytes)?;
    let catalog = vault.catalog();
    let bulk = catalog.bulk()?;
    bulk.event(event)?;
    bulk.meta_pack(&meta.id, meta.bytes.len() as u64)?;
    bulk.drop_pending_seal(&meta.id)?;
    bulk.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::store::backend::LocalBackend;
    use crate::store::meta_pack::META_MAGIC;
    use crate::store::Backend;
    use crate::vault::TEST_OPTIONS;
    use crate::{BackupOptions, NoProgress};

    /// The local store, but the process "dies" (panics) right after a metadata pack is durable:
    /// the moment between sealing a backup into the store and committing it.
    struct DiesAfterSealing(LocalBackend);

    impl Backend for DiesAfterSealing {
        fn put(&self, id: &PackId, bytes: &[u8]) -> crate::store::Result<()> {
            self.0.put(id, bytes)?;
            if bytes.starts_with(META_MAGIC) {
                panic!("killed after sealing");
            }
            Ok(())
        }
        fn read_into(&self, id: &PackId, offset: u64, buf: &mut [u8]) -> crate::store::Result<()> {
            self.0.read_into(id, offset, buf)
        }
        fn read_all(&self, id: &PackId) -> crate::store::Result<Vec<u8>> {
            self.0.read_all(id)
        }
        fn size(&self, id: &PackId) -> crate::store::Result<Option<u64>> {
            self.0.size(id)
        }
        fn list(&self) -> crate::store::Result<Vec<(PackId, u64)>> {
            self.0.list()
        }
        fn delete(&self, id: &PackId) -> crate::store::Result<()> {
            self.0.delete(id)
        }
    }

    fn backup(vault: &Vault, src: &Path) -> Result<crate::BackupReport> {
        let options = BackupOptions {
            paths: vec![src.to_path_buf()],
            ..BackupOptions::default()
        };
        crate::backup(vault, &options, &NoProgress, &AtomicBool::new(false))
    }

    #[test]
    fn a_commit_cut_off_after_sealing_is_settled_by_the_next_open_and_rebuilt_alike() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vault");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a.txt"), b"first").unwrap();
        let vault = Vault::create(&root, b"pw", TEST_OPTIONS).unwrap();
        backup(&vault, &src).unwrap();
        drop(vault);

        std::fs::write(src.join("sub/b.txt"), b"second").unwrap();
        let dying = Vault::open(&root, b"pw")
            .unwrap()
            .with_backend(Box::new(DiesAfterSealing(LocalBackend::new(
                root.join("packs"),
            ))));
        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = backup(&dying, &src);
        }));
        assert!(died.is_err());
        drop(dying);

        let vault = Vault::open(&root, b"pw").unwrap();
        assert_eq!(vault.catalog().points().unwrap().len(), 1);
        assert_eq!(vault.catalog().pending_seals().unwrap().len(), 1);
        assert_eq!(settle_pending(&vault).unwrap(), 1);
        let settled = vault.catalog().points().unwrap();
        assert_eq!(settled.len(), 2);
        assert!(vault.catalog().pending_seals().unwrap().is_empty());
        let report = crate::verify(
            &vault,
            crate::VerifyOptions { read_data: true },
            &NoProgress,
        )
        .unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert!(report.unreferenced_packs.is_empty(), "{report:?}");
        drop(vault);

        let report = rebuild(&root, b"pw", RebuildOptions { force: true }, &NoProgress).unwrap();
        assert_eq!(report.points_recovered, 2);
        let vault = Vault::open(&root, b"pw").unwrap();
        assert_eq!(vault.catalog().points().unwrap(), settled);
    }

    #[test]
    fn rebuild_settles_which_points_hold_xattrs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vault");
        let (plain, tagged) = (dir.path().join("plain"), dir.path().join("tagged"));
        std::fs::create_dir_all(plain.join("sub")).unwrap();
        std::fs::write(plain.join("sub/a"), b"a").unwrap();
        std::fs::create_dir_all(tagged.join("sub")).unwrap();
        std::fs::write(tagged.join("sub/b"), b"b").unwrap();
        let flags = rustix::fs::XattrFlags::empty();
        rustix::fs::setxattr(tagged.join("sub/b"), "user.k", b"v", flags).unwrap();
        let vault = Vault::create(&root, b"pw", TEST_OPTIONS).unwrap();
        backup(&vault, &plain).unwrap();
        backup(&vault, &tagged).unwrap();
        drop(vault);

        rebuild(&root, b"pw", RebuildOptions { force: true }, &NoProgress).unwrap();
        let vault = Vault::open(&root, b"pw").unwrap();
        let catalog = vault.catalog();
        let by_source = |src: &Path| {
            let points = catalog.points().unwrap();
            let point = points
                .iter()
                .find(|p| p.source == src.display().to_string())
                .unwrap();
            catalog.tree_xattrs(&point.root_tree).unwrap()
        };
        assert_eq!(by_source(&plain), Some(false));
        assert_eq!(by_source(&tagged), Some(true));
    }

    #[test]
    fn a_pending_seal_whose_pack_never_landed_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vault");
        let vault = Vault::create(&root, b"pw", TEST_OPTIONS).unwrap();
        vault.catalog().add_pending_seal(&PackId([7; 32])).unwrap();
        assert_eq!(settle_pending(&vault).unwrap(), 0);
        assert!(vault.catalog().pending_seals().unwrap().is_empty());
    }

    #[test]
    fn an_older_vault_seals_its_history_on_its_next_backup() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vault");
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a.txt"), b"before metadata packs").unwrap();
        let vault = Vault::create(&root, b"pw", TEST_OPTIONS).unwrap();
        backup(&vault, &src).unwrap();
        // As a vault of an older build: no metadata pack, and the migration's mark.
        for pack in vault.catalog().meta_packs().unwrap() {
            vault.backend().delete(&pack).unwrap();
        }
        vault.catalog().set_setting(UNSEALED_HISTORY, "1").unwrap();
        drop(vault);
        let lost = rebuild(&root, b"pw", RebuildOptions { force: true }, &NoProgress).unwrap();
        assert_eq!(
            lost.points_recovered, 0,
            "the history was only in the old catalog"
        );
        std::fs::rename(
            std::fs::read_dir(&root)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().contains("catalog.db.replaced-"))
                .unwrap(),
            root.join("catalog.db"),
        )
        .unwrap();

        let vault = Vault::open(&root, b"pw").unwrap();
        std::fs::write(src.join("b.txt"), b"after").unwrap();
        backup(&vault, &src).unwrap();
        assert_eq!(vault.catalog().setting(UNSEALED_HISTORY).unwrap(), None);
        let points = vault.catalog().points().unwrap();
        drop(vault);
        let report = rebuild(&root, b"pw", RebuildOptions { force: true }, &NoProgress).unwrap();
        assert_eq!(report.points_recovered, 2, "{report:?}");
        let vault = Vault::open(&root, b"pw").unwrap();
        assert_eq!(vault.catalog().points().unwrap(), points);
    }
}

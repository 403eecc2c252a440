//! `prune`: give back the space of blocks no point uses, without breaking a point or a reader.
//!
//! The steps, in an order that makes a kill at any instant harmless:
//! 1. **Guard.** The store must hold no metadata pack the catalog does not know: a catalog
//!    restored from an old copy would see newer points' packs as garbage. Prune then refuses
//!    and names `catalog rebuild`.
//! 2. **Sweep** what earlier prunes set aside: a retired pack is deleted once no reader that
//!    started before its retirement is alive (see `lease`) and, in object storage, once its
//!    grace period has passed: readers on other machines hold no lease this machine can see,
//!    so a retired pack stays readable for them that long (see [`DEFAULT_REMOTE_GRACE`]).
//! 3. **Mark** every tree, file version and block the points use (all points, whatever their
//!    state), in temporary tables of the catalog: memory does not grow with the vault.
//! 4. **Plan.** A pack with no live block is retired whole; a pack whose dead frames exceed
//!    `max_unused` percent of it is repacked; packs in the store that the catalog never knew
//!    (left by a killed backup or prepare) are retired too.
//! 5. **Repack.** Live frames are copied unchanged (no re-encryption) into new packs, durable
//!    before the catalog names them.
//! 6. **Commit.** One transaction moves the live blocks to the new packs, forgets the dead ones
//!    and lists the old packs as retired. Until then, a kill leaves the old packs in use and
//!    the new ones unknown (collected by the next prune).
//! 7. **Metadata.** When points were forgotten since the last time, one metadata pack sealing
//!    the whole catalog replaces the older ones (retired like data packs).
//! 8. **Sweep** again: what no older reader holds is deleted now; the rest waits.
//!
//! The writer lock is held only for steps 1–2 and 6–8; marking and repacking run beside
//! backups. A backup that commits meanwhile may use a block the mark found unused: step 6
//! first marks every point committed since the mark (under the lock, so no commit comes in
//! between) and keeps any planned pack that holds a block live now and not copied. A backup
//! that starts after step 6 sees the catalog without the retired blocks, so it stores such
//! blocks again rather than share them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::catalog::prune::PackUse;
use crate::catalog::{EntryKind, NewPack, PackState};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::ingest::sink::PACK_TARGET_BYTES;
use crate::lease::{self, Reader};
use crate::lock::WriterLock;
use crate::progress::Progress;
use crate::store::meta_pack::stored_meta_pack;
use crate::store::{PackId, PackWriter};
use crate::vault::Vault;

/// What to do.
#[derive(Clone, Copy, Debug)]
pub struct PruneOptions {
    /// Repack a pack when more than this percentage of it is unused.
    pub max_unused_percent: f64,
    /// Say what would be done, do nothing.
    pub dry_run: bool,
    /// Allow one run to remove more than half of the stored bytes.
    pub allow_deleting_most: bool,
    /// How long a retired pack stays in the store before it is deleted, whatever the leases
    /// say; `None`: [`DEFAULT_REMOTE_GRACE`] in object storage, none on local disk.
    pub grace: Option<Duration>,
}

/// How long a retired pack stays in a bucket: a restore or a mount on another machine, whose
/// catalog still names the pack, may read it that long after the prune.
pub const DEFAULT_REMOTE_GRACE: Duration = Duration::from_secs(24 * 3600);

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused_percent: 10.0,
            dry_run: false,
            allow_deleting_most: false,
            grace: None,
        }
    }
}

/// What prune did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Packs retired whole: no point uses any of their blocks.
    pub packs_unused: u64,
    /// Packs whose live frames were copied into new packs.
    pub packs_repacked: u64,
    /// New packs written by the repack.
    pub packs_written: u64,
    /// Packs in the store the catalog never knew (left by a killed writer).
    pub packs_unknown: u64,
    /// Bytes deleted from the store by this run.
    pub bytes_freed: u64,
    /// Bytes retired but kept while older readers are alive.
    pub bytes_set_aside: u64,
    /// Bytes of unused frames left in packs below the repack threshold.
    pub bytes_unused_left: u64,
    /// Bytes of stored packs before and after.
    pub bytes_stored_before: u64,
    pub bytes_stored_after: u64,
    /// The readers that hold what is set aside.
    pub set_aside_for: Vec<Reader>,
    /// What the grace period sets aside is deleted by the first prune after this time (ns
    /// since the epoch, UTC); `None` if the grace period holds nothing.
    pub set_aside_until_ns: Option<i64>,
    /// A metadata pack sealing the whole catalog replaced the older ones.
    pub metadata_compacted: bool,
    /// Trees and file versions of forgotten points removed from the catalog (only when no
    /// other reader is alive: one might still be reading a forgotten point).
    pub catalog_rows_removed: u64,
    /// The run would remove more than half of the stored bytes (refused without
    /// `allow_deleting_most`).
    pub removes_most: bool,
    /// Seconds the writer lock was held (backups wait only for these).
    pub lock_seconds: f64,
    pub seconds: f64,
}

/// The setting that records when metadata was last compacted.
const META_COMPACTED: &str = "meta_compacted_ns";

/// Runs prune. `writer_lock` takes the vault's writer lock (waiting as the caller allows);
/// prune holds it only for its short catalog steps (the guard and first sweep, then the
/// re-check, commit, metadata compaction and sweep), not while it marks and repacks, so
/// backups run meanwhile. Two prunes never overlap (`prune.lock`).
pub fn prune(
    vault: &Vault,
    options: PruneOptions,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
    writer_lock: &dyn Fn() -> Result<WriterLock>,
) -> Result<PruneReport> {
    let started = Instant::now();
    let _one_prune = WriterLock::acquire_named(vault.root(), PRUNE_LOCK, "prune")?;
    let grace = options.grace.unwrap_or(match vault.place().remote() {
        Some(_) => DEFAULT_REMOTE_GRACE,
        None => Duration::ZERO,
    });
    let mut report = PruneReport {
        dry_run: options.dry_run,
        bytes_stored_before: vault.catalog().stored_bytes()?,
        ..PruneReport::default()
    };

    // Locked: what the store holds that the catalog does not, and the first sweep.
    let locked = Instant::now();
    let lock = writer_lock()?;
    let unknown = guard_against_a_stale_catalog(vault)?;
    let now = crate::time::now_ns();
    if !options.dry_run {
        for (pack, size) in &unknown {
            vault.catalog().retire_unknown_pack(pack, *size, now)?;
        }
        sweep(vault, grace, &mut report)?;
    }
    drop(lock);
    let mut lock_time = locked.elapsed();

    // Unlocked: mark a snapshot of the catalog, plan, write the repacked packs.
    let marked_points = mark(vault, interrupted)?;
    failpoint::hit("prune:marked");
    let usage = vault.catalog().pack_use()?;
    let mut plan = Plan::of(&usage, options.max_unused_percent);
    report.packs_unknown = unknown.len() as u64;
    report.bytes_unused_left = plan.unused_left;
    let leaving = plan.bytes_leaving() + unknown.iter().map(|u| u.1).sum::<u64>();
    report.removes_most = leaving * 2 > report.bytes_stored_before.max(1);
    if report.removes_most && !options.allow_deleting_most && !options.dry_run {
        return Err(Error::InvalidArgument(format!(
            "prune would remove {leaving} of {} stored bytes, more than half; if that is \
             meant, run it again with --allow-deleting-most (if points are missing, \
             `synvault catalog rebuild` first)",
            report.bytes_stored_before
        )));
    }
    if options.dry_run {
        report.packs_unused = plan.unused.len() as u64;
        report.packs_repacked = plan.repack.len() as u64;
        report.seconds = started.elapsed().as_secs_f64();
        report.lock_seconds = lock_time.as_secs_f64();
        return Ok(report);
    }
    progress.set_total(plan.repack.iter().map(|p| p.size).sum());
    failpoint::hit("prune:unknown-retired");
    let written = repack(vault, &plan.repack, progress, interrupted)?;
    failpoint::hit("prune:repacked");

    // Locked: points committed meanwhile are marked too, and a pack one of them now uses is
    // kept; then the commit, the metadata and the sweep.
    let locked = Instant::now();
    let lock = writer_lock()?;
    failpoint::hit("prune:relocked");
    // Another machine may have committed to a bucket while this prune marked: its points are
    // not in this catalog, and the packs they use would be retired.
    guard_against_a_stale_catalog(vault)?;
    mark_new_points(vault, &marked_points, interrupted)?;
    plan.keep_what_is_used_now(vault, &written)?;
    report.packs_unused = plan.unused.len() as u64;
    report.packs_repacked = plan.repack.len() as u64;
    report.packs_written = written.len() as u64;
    let retired: Vec<PackId> = plan
        .unused
        .iter()
        .chain(&plan.repack)
        .map(|p| p.pack)
        .collect();
    let now = crate::time::now_ns();
    vault.catalog().retire_packs(&written, &retired, now)?;
    failpoint::hit("prune:retired");
    report.metadata_compacted = compact_metadata(vault)?;
    failpoint::hit("prune:compacted");
    sweep(vault, grace, &mut report)?;
    let me = std::process::id();
    if lease::alive(vault.root())?.iter().all(|r| r.pid == me) {
        report.catalog_rows_removed = vault.catalog().delete_unmarked()?;
    }
    report.bytes_stored_after = vault.catalog().stored_bytes()?;
    drop(lock);
    lock_time += locked.elapsed();
    report.lock_seconds = lock_time.as_secs_f64();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The lock file that keeps two prunes from overlapping.
const PRUNE_LOCK: &str = "prune.lock";

/// Refuses when the store holds a metadata pack the catalog does not know: the catalog is
/// older than the store (restored from a copy), and what it does not know it would delete.
/// Returns the data packs in the store the catalog does not know (left by killed writers).
fn guard_against_a_stale_catalog(vault: &Vault) -> Result<Vec<(PackId, u64)>> {
    let known = vault.catalog().known_pack_names()?;
    let mut unknown = Vec::new();
    for (pack, size) in vault.backend().list()? {
        if known.contains(&pack) {
            continue;
        }
        if stored_meta_pack(vault.backend(), &pack, size)? {
            return Err(Error::StaleCatalog {
                command: "prune".into(),
                why: format!("the store holds metadata pack {pack} that the catalog does not know"),
            });
        }
        unknown.push((pack, size));
    }
    Ok(unknown)
}

/// Marks everything the points use, in one snapshot of the catalog; returns the points
/// marked.
fn mark(vault: &Vault, interrupted: &AtomicBool) -> Result<HashSet<String>> {
    let catalog = vault.catalog();
    catalog.mark_begin()?;
    mark_points(&catalog, &HashSet::new(), interrupted)
}

/// Marks what the points committed since [`mark`] use (under the writer lock: no commit
/// comes between this and prune's own).
fn mark_new_points(
    vault: &Vault,
    marked: &HashSet<String>,
    interrupted: &AtomicBool,
) -> Result<HashSet<String>> {
    let catalog = vault.catalog();
    catalog.mark_resume()?;
    mark_points(&catalog, marked, interrupted)
}

/// Trees, or file versions, marked in one batch.
const MARK_BATCH: usize = 1024;

/// Marks the points not in `skip`, then ends the mark's transaction. Trees are walked depth
/// first in batches: a batch of trees is one catalog round trip, and so is a batch of file
/// versions with their blocks.
fn mark_points(
    catalog: &crate::catalog::Catalog,
    skip: &HashSet<String>,
    interrupted: &AtomicBool,
) -> Result<HashSet<String>> {
    let mut seen = HashSet::new();
    let marked = (|| -> Result<()> {
        let mut trees = Vec::new();
        for point in catalog.points()? {
            seen.insert(point.id.0.clone());
            if !skip.contains(&point.id.0) {
                trees.push(point.root_tree);
            }
        }
        let mut contents = Vec::new();
        while !trees.is_empty() {
            if interrupted.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            let batch = trees.split_off(trees.len().saturating_sub(MARK_BATCH));
            catalog.mark_trees(&batch, |entries| {
                for entry in entries {
                    match entry.kind {
                        EntryKind::Dir => trees.extend(entry.subtree),
                        EntryKind::File => contents.extend(entry.content),
                        _ => {}
                    }
                }
            })?;
            if contents.len() >= MARK_BATCH {
                catalog.mark_contents(&contents)?;
                contents.clear();
            }
        }
        catalog.mark_contents(&contents)?;
        Ok(())
    })();
    catalog.mark_end()?;
    marked.map(|()| seen)
}

/// Which packs go.
struct Plan {
    unused: Vec<PackUse>,
    repack: Vec<PackUse>,
    /// Dead bytes left in packs kept as they are.
    unused_left: u64,
}

impl Plan {
    fn of(usage: &[PackUse], max_unused_percent: f64) -> Plan {
        let mut plan = Plan {
            unused: Vec::new(),
            repack: Vec::new(),
            unused_left: 0,
        };
        for u in usage {
            if u.live_blocks == 0 {
                plan.unused.push(*u);
            } else if u.dead_blocks > 0
                && u.dead_bytes as f64 * 100.0 > max_unused_percent * u.size as f64
            {
                plan.repack.push(*u);
            } else {
                plan.unused_left += u.dead_bytes;
            }
        }
        plan
    }

    /// Keeps (drops from the plan) every pack that is gone from the catalog, or that holds a
    /// block live now that the repack did not copy: a point committed since the mark uses it.
    fn keep_what_is_used_now(&mut self, vault: &Vault, written: &[NewPack]) -> Result<()> {
        let copied: HashSet<_> = written
            .iter()
            .flat_map(|p| p.entries.iter().map(|e| e.id))
            .collect();
        let catalog = vault.catalog();
        let still_unused = |p: &PackUse| -> Result<bool> {
            Ok(catalog.has_pack(&p.pack)?
                && catalog
                    .live_frames(&p.pack)?
                    .iter()
                    .all(|(id, _)| copied.contains(id)))
        };
        let mut unused = Vec::new();
        for p in std::mem::take(&mut self.unused) {
            if still_unused(&p)? {
                unused.push(p);
            }
        }
        let mut repack = Vec::new();
        for p in std::mem::take(&mut self.repack) {
            if still_unused(&p)? {
                repack.push(p);
            }
        }
        self.unused = unused;
        self.repack = repack;
        Ok(())
    }

    /// Bytes the plan takes out of the store (the repacked packs' live frames come back).
    fn bytes_leaving(&self) -> u64 {
        self.unused.iter().map(|u| u.size).sum::<u64>()
            + self.repack.iter().map(|u| u.dead_bytes).sum::<u64>()
    }
}

/// Copies the live frames of `packs` into new packs, each durable before it is returned.
fn repack(
    vault: &Vault,
    packs: &[PackUse],
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<Vec<NewPack>> {
    let mut written = Vec::new();
    let mut writer = PackWriter::new(PACK_TARGET_BYTES);
    let mut frame = Vec::new();
    let flush = |writer: PackWriter, written: &mut Vec<NewPack>| -> Result<()> {
        let pack = writer.finish(vault.codec());
        vault.backend().put(&pack.id, &pack.bytes)?;
        failpoint::hit("prune:repack-pack-written");
        written.push(NewPack {
            id: pack.id,
            size: pack.bytes.len() as u64,
            state: PackState::Stored,
            seed_job: None,
            entries: pack.entries,
        });
        Ok(())
    };
    for pack in packs {
        let frames = vault.catalog().live_frames(&pack.pack)?;
        for (id, live) in frames {
            if interrupted.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            frame.resize(live.stored_len as usize, 0);
            vault
                .backend()
                .read_into(&live.pack, live.offset, &mut frame)?;
            // The frame is copied as stored: its tag is checked, not re-sealed.
            vault
                .codec()
                .decode(&id, frame.clone(), live.raw_len as usize)
                .map_err(|_| crate::store::StoreError::CorruptFrame {
                    block: id,
                    pack: live.pack,
                    offset: live.offset,
                })?;
            writer.add(id, &frame, live.raw_len as usize);
            if writer.len() >= PACK_TARGET_BYTES {
                let full = std::mem::replace(&mut writer, PackWriter::new(PACK_TARGET_BYTES));
                flush(full, &mut written)?;
            }
        }
        progress.add_bytes(pack.size);
    }
    if !writer.is_empty() {
        flush(writer, &mut written)?;
    }
    Ok(written)
}

/// When points were forgotten since the last compaction, seals the whole catalog into one
/// metadata pack and retires the older ones (their forgotten points' records go with them).
fn compact_metadata(vault: &Vault) -> Result<bool> {
    let catalog = vault.catalog();
    let Some(last_forget) = catalog.last_forgotten_ns()? else {
        return Ok(false);
    };
    let compacted: i64 = catalog
        .setting(META_COMPACTED)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(i64::MIN);
    if compacted >= last_forget {
        return Ok(false);
    }
    let body = crate::rebuild::snapshot_body(&catalog, true)?;
    drop(catalog);
    let meta = vault.seal(&body)?;
    vault.catalog().add_pending_seal(&meta.id)?;
    vault.backend().put(&meta.id, &meta.bytes)?;
    failpoint::hit("prune:snapshot-written");
    let now = crate::time::now_ns();
    let mut catalog = vault.catalog();
    catalog.replace_meta_packs(&meta.id, meta.bytes.len() as u64, now)?;
    catalog.set_setting(META_COMPACTED, &now.to_string())?;
    Ok(true)
}

/// Deletes every retired pack that no reader older than its retirement may still read and
/// whose `grace` period has passed; says what stays set aside and for whom.
fn sweep(vault: &Vault, grace: Duration, report: &mut PruneReport) -> Result<()> {
    let me = std::process::id();
    let readers: Vec<Reader> = lease::alive(vault.root())?
        .into_iter()
        .filter(|r| r.pid != me)
        .collect();
    let mut holding = HashSet::new();
    report.bytes_set_aside = 0;
    report.set_aside_until_ns = None;
    let retired_packs = vault.catalog().retired_packs()?;
    // A prune that lost its lock to another machine's writer deletes nothing more: that
    // writer may have committed points that use these packs.
    if !retired_packs.is_empty() {
        vault.confirm_writer()?;
    }
    let now = crate::time::now_ns();
    let grace_ns = i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX);
    let mut deleted = Vec::new();
    for retired in retired_packs {
        let held_by: Vec<&Reader> = readers
            .iter()
            .filter(|r| r.since_ns <= retired.retired_ns)
            .collect();
        let graced_until = retired.retired_ns.saturating_add(grace_ns);
        if held_by.is_empty() && graced_until <= now {
            vault.backend().delete(&retired.pack)?;
            failpoint::hit("prune:one-deleted");
            deleted.push(retired.pack);
            report.bytes_freed += retired.size;
            continue;
        }
        report.bytes_set_aside += retired.size;
        if graced_until > now {
            let until = report.set_aside_until_ns.get_or_insert(graced_until);
            *until = (*until).max(graced_until);
        }
        for r in held_by {
            if holding.insert((r.pid, r.since_ns)) {
                report.set_aside_for.push(r.clone());
            }
        }
    }
    // A kill before this leaves deleted packs listed as retired: the next sweep deletes them
    // again (a pack already gone counts as deleted) and forgets them then.
    vault.catalog().drop_retired(&deleted)?;
    Ok(())
}

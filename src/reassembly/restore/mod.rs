//! Restore: a point, or a path of it, written to a directory.
//!
//! Plan, then apply. [`RestorePlan`] lists what to create (parents before children); applying
//! it creates directories, writes files in parallel (across files, and across blocks inside a
//! large file, with positional writes; zero blocks stay holes), makes links and special files,
//! and sets metadata last — directories deepest first, so writing into them does not move
//! their times. Damaged or missing blocks fail only their own file, which is then not put in
//! place at all; the rest is restored and the damaged files are listed.
//!
//! Everything is written beneath the target through [`target::TargetDir`], never through a
//! link restore did not make: a free name is created exclusively, a taken one is replaced by
//! a complete file renamed over it ([`write`]). The vault, or anything in it, is never a target; a vault beneath the target is
//! left out. Trees come checked from [`PointReader::list`], and the walk stops at a tree that
//! contains itself or nests too deep.
//!
//! With `overwrite`, a file whose size and mtime already match is skipped. A file gets its
//! mtime only once complete, so an interrupted restore resumes where it stopped: a file it
//! left half written has the wrong mtime and is written again.

mod delete;
mod target;
mod write;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use self::target::TargetDir;
use self::write::FileOutcome;
use super::hardlink::FirstNames;
use super::{BlockMap, PointReader};
use crate::catalog::tree_path::TreePath;
use crate::catalog::{CatalogError, Entry, EntryKind};
use crate::error::{Error, Result};
use crate::filter::PathFilter;
use crate::progress::Progress;
use crate::store::BlockId;

/// What to restore and how.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Path inside the point (empty: all of it).
    pub path: Vec<u8>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub overwrite: bool,
    /// Say what would be restored (and, with `delete`, removed); write nothing.
    pub dry_run: bool,
    /// With `overwrite`: remove what the target holds that the point does not (beneath the
    /// restored directory; never the vault). Not with include or exclude patterns.
    pub delete: bool,
    /// Compare content, not only size and mtime, to skip a file already there, and read
    /// every written file back and compare it with the point.
    pub verify: bool,
}

/// One thing to create: its path relative to the target, and its entry.
#[derive(Clone, Debug)]
pub struct PlanItem {
    pub rel: PathBuf,
    pub entry: Entry,
    /// A file's blocks, looked up while planning so the parallel phase never waits on SQLite.
    pub blocks: Option<BlockMap>,
}

/// Everything a restore will create, parents before children.
#[derive(Debug, Default)]
pub struct RestorePlan {
    pub items: Vec<PlanItem>,
    /// Metadata for the target directory itself (restoring a directory).
    pub root: Option<Entry>,
}

/// What a restore did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RestoreReport {
    /// Nothing was written: the counts are what a restore would do.
    pub dry_run: bool,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub skipped_existing: u64,
    /// Entries of the target that the point does not hold, removed (`delete`).
    pub deleted: u64,
    /// Files read back and found equal to the point (`verify`).
    pub verified: u64,
    /// Files that could not be restored because their data is damaged or missing.
    pub damaged: Vec<String>,
    /// Other problems (metadata that could not be set).
    pub warnings: Vec<String>,
}

fn rel_join(base: &Path, name: &[u8]) -> PathBuf {
    base.join(OsStr::from_bytes(name))
}

/// Include and exclude filters, and the trees from the start of the walk down to here.
struct Walk<'f> {
    include: &'f PathFilter,
    exclude: &'f PathFilter,
    trees: TreePath,
}

/// Builds the plan: walks the point under `options.path` applying include/exclude.
pub fn plan(reader: &PointReader<'_>, options: &RestoreOptions) -> Result<RestorePlan> {
    let include = PathFilter::new(&options.include)?;
    let exclude = PathFilter::new(&options.exclude)?;
    let start = reader.lookup(&options.path)?;
    let mut plan = RestorePlan::default();
    if start.kind != EntryKind::Dir {
        plan.items.push(PlanItem {
            rel: rel_join(Path::new(""), &start.name),
            blocks: file_blocks(reader, &start)?,
            entry: start,
        });
        return Ok(plan);
    }
    let mut walk = Walk {
        include: &include,
        exclude: &exclude,
        trees: TreePath::new(),
    };
    walk_dir(
        reader,
        &mut walk,
        &start,
        Path::new(""),
        include.is_empty(),
        &mut plan.items,
    )?;
    plan.root = Some(start);
    Ok(plan)
}

/// Adds the children of `dir`; returns whether anything was added.
fn walk_dir(
    reader: &PointReader<'_>,
    walk: &mut Walk<'_>,
    dir: &Entry,
    rel: &Path,
    included: bool,
    out: &mut Vec<PlanItem>,
) -> Result<bool> {
    let Some(tree) = dir.subtree else {
        return Ok(false);
    };
    walk.trees
        .enter(tree)
        .map_err(|source| CatalogError::BadTree { tree, source })?;
    let mut any = false;
    for entry in reader.list(&tree)? {
        let child = rel_join(rel, &entry.name);
        let shown = Path::new("/").join(&child);
        let path = shown.as_os_str().as_bytes();
        if walk.exclude.matches(path, &entry.name) {
            continue;
        }
        let here = included || walk.include.matches(path, &entry.name);
        if entry.kind == EntryKind::Dir {
            let at = out.len();
            out.push(PlanItem {
                rel: child.clone(),
                entry: entry.clone(),
                blocks: None,
            });
            let below = walk_dir(reader, walk, &entry, &child, here, out)?;
            if !here && !below {
                out.truncate(at);
                continue;
            }
            any = true;
        } else if here {
            out.push(PlanItem {
                rel: child,
                blocks: file_blocks(reader, &entry)?,
                entry,
            });
            any = true;
        }
    }
    walk.trees.leave();
    Ok(any)
}

fn file_blocks(reader: &PointReader<'_>, entry: &Entry) -> Result<Option<BlockMap>> {
    match entry.kind {
        EntryKind::File => Ok(Some(reader.block_map(entry)?)),
        _ => Ok(None),
    }
}

fn target_is_empty(target: &Path) -> Result<bool> {
    match fs::read_dir(target) {
        Ok(mut d) => Ok(d.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io("cannot read restore target", target)(e)),
    }
}

/// Restores `reader`'s point according to `options`.
pub fn restore(
    reader: &PointReader<'_>,
    options: &RestoreOptions,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<RestoreReport> {
    crate::select::readable(reader.point())?;
    if options.delete && !options.overwrite {
        return Err(Error::InvalidArgument(
            "--delete removes what the target holds beyond the point: give --overwrite too".into(),
        ));
    }
    if options.delete && !(options.include.is_empty() && options.exclude.is_empty()) {
        return Err(Error::InvalidArgument(
            "--delete with --include or --exclude could remove what the patterns leave out: restore without them".into(),
        ));
    }
    let vault = reader.blocks().vault().root().to_path_buf();
    target::check_target(&options.target, &vault, options.overwrite)?;
    if !options.overwrite && !target_is_empty(&options.target)? {
        return Err(Error::TargetNotEmpty {
            path: options.target.clone(),
        });
    }
    let mut plan = plan(reader, options)?;
    if options.dry_run {
        return Ok(dry_run(reader, &plan, options, &vault));
    }
    fs::create_dir_all(&options.target).map_err(Error::io("cannot create", &options.target))?;
    let left_out = leave_out_vault(&mut plan, &options.target, &vault);
    let mut report = apply(reader, &plan, options, progress, interrupted)?;
    report.warnings.extend(left_out);
    if options.delete && plan.root.is_some() {
        let target = TargetDir::open(&options.target)
            .map_err(Error::io("cannot open restore target", &options.target))?;
        report.deleted =
            delete::beyond_plan(&target, &plan, &keep_for_vault(&options.target, &vault))?;
    }
    Ok(report)
}

/// What a restore of `plan` would do, written nowhere: what it would write, what it would
/// skip as already there (with `overwrite`), what `delete` would remove.
fn dry_run(
    reader: &PointReader<'_>,
    plan: &RestorePlan,
    options: &RestoreOptions,
    vault: &Path,
) -> RestoreReport {
    let mut report = RestoreReport {
        dry_run: true,
        ..RestoreReport::default()
    };
    let target = TargetDir::open(&options.target).ok();
    for item in &plan.items {
        match item.entry.kind {
            EntryKind::Dir => report.dirs += 1,
            EntryKind::File => {
                let there = options.overwrite
                    && target
                        .as_ref()
                        .is_some_and(|t| write::already_there(reader, t, item, options.verify));
                if there {
                    report.skipped_existing += 1;
                } else {
                    report.files += 1;
                    report.bytes += item.entry.size;
                }
            }
            _ => report.files += 1,
        }
    }
    if let (Some(target), true, Some(_)) = (&target, options.delete, &plan.root) {
        let keep = keep_for_vault(&options.target, vault);
        report.deleted = delete::count_beyond_plan(target, plan, &keep).unwrap_or(0);
    }
    report
}

/// The vault's path beneath the target and the directories leading to it: never deleted.
fn keep_for_vault(target: &Path, vault: &Path) -> HashSet<PathBuf> {
    target::vault_beneath(target, vault)
        .map(|beneath| beneath.ancestors().map(Path::to_path_buf).collect())
        .unwrap_or_default()
}

/// One part of a point and where it goes back to (see [`original_locations`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginalLocation {
    /// The path in the point.
    pub part: Vec<u8>,
    /// The directory to restore it into.
    pub target: PathBuf,
    /// Where it lands: `target` for a directory, the file's path in `target` otherwise.
    pub at: PathBuf,
}

/// Where the parts of a point under `path` go back to (`--to-original`). Each source goes
/// back to its own path,
/// never to the directory the sources share (the point holds those directories, not their
/// other children); a path inside a source goes back to its place there. A directory is
/// restored as that directory, a file into the directory that holds it.
pub fn original_locations(reader: &PointReader<'_>, path: &[u8]) -> Result<Vec<OriginalLocation>> {
    let point = reader.point();
    let root = point.original_root().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "point {} does not record where its sources were: restore it with --target",
            point.id.short()
        ))
    })?;
    let wanted: PathBuf = Path::new(OsStr::from_bytes(path)).components().collect();
    let mut locations = Vec::new();
    for source in &point.sources {
        let rel = source.strip_prefix(&root).map_err(|_| Error::Internal {
            what: format!(
                "point {} places {} outside its root {}",
                point.id.short(),
                source.display(),
                root.display()
            ),
        })?;
        let part = if rel.starts_with(&wanted) {
            rel.to_path_buf()
        } else if wanted.starts_with(rel) {
            wanted.clone()
        } else {
            continue;
        };
        let bytes = part.as_os_str().as_bytes().to_vec();
        let entry = reader.lookup(&bytes)?;
        let at = root.join(&part);
        let target = match entry.kind {
            EntryKind::Dir => at.clone(),
            _ => at.parent().map_or_else(|| root.clone(), Path::to_path_buf),
        };
        if !locations.iter().any(|l: &OriginalLocation| l.part == bytes) {
            locations.push(OriginalLocation {
                part: bytes,
                target,
                at,
            });
        }
    }
    if locations.is_empty() {
        return Err(Error::NoSuchPath {
            point: point.id.short().into(),
            path: String::from_utf8_lossy(path).into_owned(),
        });
    }
    Ok(locations)
}

/// Restores the parts of the point under `options.path` to where they were backed up from
/// (see [`original_locations`]; `options.target` is not used). A location that exists is
/// restored over only with `options.overwrite`.
pub fn restore_to_original(
    reader: &PointReader<'_>,
    options: &RestoreOptions,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<RestoreReport> {
    let locations = original_locations(reader, &options.path)?;
    if let Some(taken) = locations
        .iter()
        .find(|l| !options.overwrite && l.at.symlink_metadata().is_ok())
    {
        return Err(Error::OriginalExists {
            path: taken.at.clone(),
        });
    }
    let mut report = RestoreReport::default();
    for location in locations {
        let one = RestoreOptions {
            target: location.target,
            path: location.part,
            ..options.clone()
        };
        let done = restore(reader, &one, progress, interrupted)?;
        report.files += done.files;
        report.dirs += done.dirs;
        report.bytes += done.bytes;
        report.skipped_existing += done.skipped_existing;
        report.damaged.extend(done.damaged);
        report.warnings.extend(done.warnings);
    }
    Ok(report)
}

/// Drops what would land on the vault when the vault is beneath the target.
fn leave_out_vault(plan: &mut RestorePlan, target: &Path, vault: &Path) -> Option<String> {
    let beneath = target::vault_beneath(target, vault).filter(|p| !p.as_os_str().is_empty())?;
    let before = plan.items.len();
    plan.items.retain(|item| !item.rel.starts_with(&beneath));
    (plan.items.len() < before).then(|| {
        format!(
            "left out {}: the vault is there",
            target.join(&beneath).display()
        )
    })
}

/// Files whose blocks are located with one catalog query before they are written.
const FILES_LOCATED_TOGETHER: usize = 16;

/// How far past its own files a group of files looks for the packs to come, in file bytes:
/// a remote store fetches those packs while this group is written (a few packs' worth).
const PACKS_AHEAD_BYTES: u64 = 128 << 20;

/// Applies a plan.
pub fn apply(
    reader: &PointReader<'_>,
    plan: &RestorePlan,
    options: &RestoreOptions,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<RestoreReport> {
    let target = TargetDir::open(&options.target)
        .map_err(Error::io("cannot open restore target", &options.target))?;
    let overwrite = options.overwrite;
    let checks = write::Checks {
        overwrite,
        verify: options.verify,
    };
    let mut report = RestoreReport::default();
    progress.set_total(
        plan.items
            .iter()
            .filter(|i| i.entry.kind == EntryKind::File)
            .map(|i| i.entry.size)
            .sum(),
    );
    report.dirs = make_dirs(&target, plan, overwrite)?;
    let (files, links) = hardlink_groups(plan);
    // Set when the store cannot be reached: the files not begun yet are not tried.
    let store_lost = AtomicBool::new(false);
    // A remote store fetches the packs of the groups to come while this one is written.
    let fetches_ahead = reader.blocks().vault().backend().fetches_ahead();
    let bytes_before = if fetches_ahead {
        running_sizes(&files)
    } else {
        Vec::new()
    };
    let outcomes: Vec<FileOutcome> = files
        .par_chunks(FILES_LOCATED_TOGETHER)
        .enumerate()
        .map(|(n, chunk)| {
            let mut ids: Vec<BlockId> = chunk
                .iter()
                .filter_map(|item| item.blocks.as_ref())
                .flat_map(|map| map.blocks.iter().map(|&(_, id, _)| id))
                .collect();
            if fetches_ahead {
                let first = n * FILES_LOCATED_TOGETHER;
                ids.extend(first_blocks_ahead(
                    &files,
                    &bytes_before,
                    first + chunk.len(),
                ));
            }
            reader.blocks().expect(&ids);
            let outcomes: Vec<FileOutcome> = chunk
                .iter()
                .map(|item| {
                    if interrupted.load(Ordering::Relaxed) {
                        return FileOutcome::Interrupted;
                    }
                    if store_lost.load(Ordering::Relaxed) {
                        return FileOutcome::NotTried;
                    }
                    let outcome = write::restore_file(reader, &target, item, checks, progress);
                    if matches!(outcome, FileOutcome::Unreachable(_)) {
                        store_lost.store(true, Ordering::Relaxed);
                    }
                    outcome
                })
                .collect();
            outcomes
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect();
    let damaged_inodes = record_files(&mut report, &files, outcomes)?;
    if options.verify {
        report.verified = report.files;
    }
    make_links(&mut report, &target, &links, &damaged_inodes, overwrite)?;
    for item in plan
        .items
        .iter()
        .filter(|i| !matches!(i.entry.kind, EntryKind::File | EntryKind::Dir))
    {
        report
            .warnings
            .extend(write::make_special(&target, item, overwrite)?);
    }
    set_dir_metadata(&mut report, &target, plan)?;
    Ok(report)
}

/// For each file, the bytes of the files before it.
fn running_sizes(files: &[&PlanItem]) -> Vec<u64> {
    files
        .iter()
        .scan(0, |before, item| {
            let at = *before;
            *before += item.entry.size;
            Some(at)
        })
        .collect()
}

/// The first block of every group's first file from `from` on, within
/// [`PACKS_AHEAD_BYTES`]: enough to name the packs the next groups start in.
fn first_blocks_ahead<'a>(
    files: &'a [&PlanItem],
    bytes_before: &'a [u64],
    from: usize,
) -> impl Iterator<Item = BlockId> + 'a {
    let horizon = bytes_before.get(from).map_or(0, |b| b + PACKS_AHEAD_BYTES);
    (from..files.len())
        .step_by(FILES_LOCATED_TOGETHER)
        .take_while(move |&i| bytes_before[i] < horizon)
        .filter_map(|i| files[i].blocks.as_ref()?.blocks.first().map(|b| b.1))
}

/// Adds the files' outcomes to the report; returns the inodes whose data is damaged.
fn record_files(
    report: &mut RestoreReport,
    files: &[&PlanItem],
    outcomes: Vec<FileOutcome>,
) -> Result<HashSet<u64>> {
    let mut damaged_inodes = HashSet::new();
    let mut lost: Option<String> = None;
    let mut not_restored = Vec::new();
    for (item, outcome) in files.iter().zip(outcomes) {
        match outcome {
            FileOutcome::Written(warnings) => {
                report.files += 1;
                report.bytes += item.entry.size;
                report.warnings.extend(warnings);
            }
            FileOutcome::Skipped => report.skipped_existing += 1,
            FileOutcome::Damaged(why) => {
                damaged_inodes.insert(item.entry.inode);
                report
                    .damaged
                    .push(format!("{}: {why}", item.rel.display()));
            }
            FileOutcome::Unreachable(why) => {
                lost.get_or_insert(why);
                not_restored.push(item);
            }
            FileOutcome::NotTried => not_restored.push(item),
            FileOutcome::Failed(e) => return Err(e),
            FileOutcome::Interrupted => return Err(Error::Interrupted),
        }
    }
    if let Some(why) = lost {
        return Err(Error::RestoreCut {
            why,
            not_restored: not_restored.len() as u64,
            first: not_restored
                .first()
                .map(|item| item.rel.display().to_string())
                .unwrap_or_default(),
        });
    }
    Ok(damaged_inodes)
}

/// Links the other names of each hardlinked file; a name of a damaged file is damaged too.
fn make_links(
    report: &mut RestoreReport,
    target: &TargetDir,
    links: &[(&PlanItem, &PlanItem)],
    damaged_inodes: &HashSet<u64>,
    overwrite: bool,
) -> Result<()> {
    for (first, other) in links {
        if damaged_inodes.contains(&first.entry.inode) {
            report.damaged.push(format!(
                "{}: a hardlink to damaged {}",
                other.rel.display(),
                first.rel.display()
            ));
        } else if write::link(target, first, other, overwrite)? {
            report.files += 1;
        }
    }
    Ok(())
}

/// Directories last, deepest first: creating their contents changed their times.
fn set_dir_metadata(
    report: &mut RestoreReport,
    target: &TargetDir,
    plan: &RestorePlan,
) -> Result<()> {
    for item in plan
        .items
        .iter()
        .rev()
        .filter(|i| i.entry.kind == EntryKind::Dir)
    {
        report
            .warnings
            .extend(write::dir_metadata(target, &item.rel, &item.entry)?);
    }
    if let Some(root) = &plan.root {
        report
            .warnings
            .extend(write::dir_metadata(target, Path::new(""), root)?);
    }
    Ok(())
}

/// Creates the plan's directories, parents first; returns how many.
fn make_dirs(target: &TargetDir, plan: &RestorePlan, overwrite: bool) -> Result<u64> {
    let mut dirs = 0;
    for item in plan.items.iter().filter(|i| i.entry.kind == EntryKind::Dir) {
        dirs += 1;
        let shown = target.shown(&item.rel);
        let (dir, name) = target
            .parent_of(&item.rel)
            .map_err(Error::io("cannot open the directory of", shown.clone()))?;
        target::ensure_dir(dir.as_fd(), name, overwrite)
            .map_err(Error::io("cannot create directory", shown))?;
    }
    Ok(dirs)
}

/// Splits the plan's files into those to write and (first name, other name) hardlink pairs:
/// the first name of each inode gets the data, the others link to it.
fn hardlink_groups(plan: &RestorePlan) -> (Vec<&PlanItem>, Vec<(&PlanItem, &PlanItem)>) {
    let mut first_names = FirstNames::default();
    let mut links = Vec::new();
    let mut files = Vec::new();
    for item in plan
        .items
        .iter()
        .filter(|i| i.entry.kind == EntryKind::File)
    {
        match first_names.link_target(&item.entry, || item) {
            Some(first) => links.push((*first, item)),
            None => files.push(item),
        }
    }
    (files, links)
}

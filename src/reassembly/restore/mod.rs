//! Restore: a point, or a path of it, written to a directory.
//!
//! Plan, then apply. [`RestorePlan`] lists what to create (parents before children); applying
//! it creates directories, writes files in parallel (across files, and across blocks inside a
//! large file, with positional writes; zero blocks stay holes), makes links and special files,
//! and sets metadata last — directories deepest first, so writing into them does not move
//! their times. Damaged blocks fail only their own file; the rest is restored and the damaged
//! files are listed.
//!
//! With `overwrite`, a file whose size and mtime already match is skipped. Mtime is set only
//! after a file's data is complete, so an interrupted restore resumes where it stopped.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::{BlockMap, PointReader};
use crate::catalog::{Entry, EntryKind, PointState};
use crate::error::{Error, Result};
use crate::filter::PathFilter;
use crate::progress::Progress;

/// What to restore and how.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Path inside the point (empty: all of it).
    pub path: Vec<u8>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub overwrite: bool,
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
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub skipped_existing: u64,
    /// Files that could not be restored because their data is damaged or missing.
    pub damaged: Vec<String>,
    /// Other problems (metadata that could not be set).
    pub warnings: Vec<String>,
}

fn rel_join(base: &Path, name: &[u8]) -> PathBuf {
    base.join(OsStr::from_bytes(name))
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
    walk(
        reader,
        &start,
        Path::new(""),
        include.is_empty(),
        &include,
        &exclude,
        &mut plan.items,
    )?;
    plan.root = Some(start);
    Ok(plan)
}

/// Adds the children of `dir`; returns whether anything was added.
fn walk(
    reader: &PointReader<'_>,
    dir: &Entry,
    rel: &Path,
    included: bool,
    include: &PathFilter,
    exclude: &PathFilter,
    out: &mut Vec<PlanItem>,
) -> Result<bool> {
    let Some(tree) = dir.subtree else {
        return Ok(false);
    };
    let mut any = false;
    for entry in reader.list(&tree)? {
        let child = rel_join(rel, &entry.name);
        let shown = Path::new("/").join(&child);
        let path = shown.as_os_str().as_bytes();
        if exclude.matches(path, &entry.name) {
            continue;
        }
        let here = included || include.matches(path, &entry.name);
        if entry.kind == EntryKind::Dir {
            let at = out.len();
            out.push(PlanItem {
                rel: child.clone(),
                entry: entry.clone(),
                blocks: None,
            });
            let below = walk(reader, &entry, &child, here, include, exclude, out)?;
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
    if reader.point().state == PointState::AwaitingSeed {
        return Err(Error::AwaitingSeed {
            point: reader.point().id.short().to_string(),
            job: reader.point().awaiting_job.clone().unwrap_or_default(),
        });
    }
    if !options.overwrite && !target_is_empty(&options.target)? {
        return Err(Error::TargetNotEmpty {
            path: options.target.clone(),
        });
    }
    let plan = plan(reader, options)?;
    fs::create_dir_all(&options.target).map_err(Error::io("cannot create", &options.target))?;
    apply(reader, &plan, options, progress, interrupted)
}

/// Applies a plan.
pub fn apply(
    reader: &PointReader<'_>,
    plan: &RestorePlan,
    options: &RestoreOptions,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<RestoreReport> {
    let target = &options.target;
    let mut report = RestoreReport::default();
    progress.set_total(
        plan.items
            .iter()
            .filter(|i| i.entry.kind == EntryKind::File)
            .map(|i| i.entry.size)
            .sum(),
    );

    for item in plan.items.iter().filter(|i| i.entry.kind == EntryKind::Dir) {
        let path = target.join(&item.rel);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(Error::io("cannot create directory", &path)(e)),
        }
        report.dirs += 1;
    }

    // Hardlinks: the first name of each inode gets the data, the others link to it.
    let mut first_of_inode: HashMap<u64, &PlanItem> = HashMap::new();
    let mut links = Vec::new();
    let mut files = Vec::new();
    for item in plan
        .items
        .iter()
        .filter(|i| i.entry.kind == EntryKind::File)
    {
        if item.entry.nlink > 1 {
            if let Some(first) = first_of_inode.get(&item.entry.inode) {
                links.push((*first, item));
                continue;
            }
            first_of_inode.insert(item.entry.inode, item);
        }
        files.push(item);
    }

    let outcomes: Vec<FileOutcome> = files
        .par_iter()
        .map(|item| {
            if interrupted.load(Ordering::Relaxed) {
                return FileOutcome::Interrupted;
            }
            restore_file(
                reader,
                &target.join(&item.rel),
                item,
                options.overwrite,
                progress,
            )
        })
        .collect();
    for (item, outcome) in files.iter().zip(outcomes) {
        match outcome {
            FileOutcome::Written(warnings) => {
                report.files += 1;
                report.bytes += item.entry.size;
                report.warnings.extend(warnings);
            }
            FileOutcome::Skipped => report.skipped_existing += 1,
            FileOutcome::Damaged(why) => {
                report
                    .damaged
                    .push(format!("{}: {why}", item.rel.display()));
            }
            FileOutcome::Failed(e) => return Err(e),
            FileOutcome::Interrupted => return Err(Error::Interrupted),
        }
    }

    for (first, other) in links {
        let (src, dst) = (target.join(&first.rel), target.join(&other.rel));
        if options.overwrite && dst.symlink_metadata().is_ok() {
            if same_inode(&src, &dst) {
                continue;
            }
            fs::remove_file(&dst).map_err(Error::io("cannot replace", &dst))?;
        }
        fs::hard_link(&src, &dst).map_err(Error::io("cannot create hardlink", &dst))?;
        report.files += 1;
    }

    for item in plan
        .items
        .iter()
        .filter(|i| !matches!(i.entry.kind, EntryKind::File | EntryKind::Dir))
    {
        let path = target.join(&item.rel);
        create_special(&path, &item.entry, options.overwrite)?;
        report.warnings.extend(set_metadata(&path, &item.entry)?);
    }

    // Directories last, deepest first: creating their contents changed their times.
    for item in plan
        .items
        .iter()
        .rev()
        .filter(|i| i.entry.kind == EntryKind::Dir)
    {
        report
            .warnings
            .extend(set_metadata(&target.join(&item.rel), &item.entry)?);
    }
    if let Some(root) = &plan.root {
        report.warnings.extend(set_metadata(target, root)?);
    }
    Ok(report)
}

fn same_inode(a: &Path, b: &Path) -> bool {
    match (a.symlink_metadata(), b.symlink_metadata()) {
        (Ok(x), Ok(y)) => x.ino() == y.ino() && x.dev() == y.dev(),
        _ => false,
    }
}

fn create_special(path: &Path, entry: &Entry, overwrite: bool) -> Result<()> {
    if overwrite && path.symlink_metadata().is_ok() {
        fs::remove_file(path).map_err(Error::io("cannot replace", path))?;
    }
    let result = match entry.kind {
        EntryKind::Symlink => {
            let target = OsStr::from_bytes(entry.target.as_deref().unwrap_or_default());
            std::os::unix::fs::symlink(target, path)
        }
        _ => crate::fsmeta::make_special(path, entry),
    };
    result.map_err(Error::io("cannot create", path))
}

fn set_metadata(path: &Path, entry: &Entry) -> Result<Vec<String>> {
    if entry.kind == EntryKind::Socket {
        return Ok(Vec::new());
    }
    crate::fsmeta::apply_metadata(path, entry).map_err(Error::io("cannot set metadata of", path))
}

enum FileOutcome {
    /// Data and metadata written; the warnings are metadata that could not be set.
    Written(Vec<String>),
    Skipped,
    Damaged(String),
    Failed(Error),
    Interrupted,
}

fn already_restored(path: &Path, entry: &Entry) -> bool {
    match path.symlink_metadata() {
        Ok(m) => {
            m.is_file()
                && m.len() == entry.size
                && crate::fsmeta::to_ns(m.mtime(), m.mtime_nsec()) == entry.mtime_ns
        }
        Err(_) => false,
    }
}

fn restore_file(
    reader: &PointReader<'_>,
    path: &Path,
    item: &PlanItem,
    overwrite: bool,
    progress: &dyn Progress,
) -> FileOutcome {
    let entry = &item.entry;
    if overwrite && already_restored(path, entry) {
        progress.add_bytes(entry.size);
        return FileOutcome::Skipped;
    }
    let empty = BlockMap {
        blocks: Vec::new(),
        size: 0,
    };
    let map = item.blocks.as_ref().unwrap_or(&empty);
    let file = match open_for_restore(path, overwrite) {
        Ok(f) => f,
        Err(e) => return FileOutcome::Failed(Error::io("cannot create", path)(e)),
    };
    if let Err(e) = file.set_len(entry.size) {
        return FileOutcome::Failed(Error::io("cannot size", path)(e));
    }
    match write_blocks(reader, &file, map, progress) {
        // Metadata right after the data, on this thread: the mtime marks the file complete.
        Ok(()) => match set_metadata(path, entry) {
            Ok(warnings) => FileOutcome::Written(warnings),
            Err(e) => FileOutcome::Failed(e),
        },
        Err(BlockWriteError::Store(e)) => FileOutcome::Damaged(e.to_string()),
        Err(BlockWriteError::Io(e)) => FileOutcome::Failed(Error::io("cannot write", path)(e)),
    }
}

fn open_for_restore(path: &Path, overwrite: bool) -> std::io::Result<File> {
    if overwrite {
        if let Ok(m) = path.symlink_metadata() {
            if !m.is_file() {
                if m.is_dir() {
                    fs::remove_dir_all(path)?;
                } else {
                    fs::remove_file(path)?;
                }
            }
        }
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

enum BlockWriteError {
    Store(crate::store::StoreError),
    Io(std::io::Error),
}

fn write_blocks(
    reader: &PointReader<'_>,
    file: &File,
    map: &BlockMap,
    progress: &dyn Progress,
) -> Result<(), BlockWriteError> {
    let write_one = |&(offset, id, len): &(u64, crate::store::BlockId, u32)| {
        if id == crate::store::BlockId::ZERO {
            progress.add_bytes(u64::from(len));
            return Ok(()); // a hole: set_len already made it
        }
        let data = reader
            .blocks()
            .read_block(&id, len)
            .map_err(BlockWriteError::Store)?;
        file.write_all_at(&data, offset)
            .map_err(BlockWriteError::Io)?;
        progress.add_bytes(u64::from(len));
        Ok(())
    };
    if map.blocks.len() > 1 {
        map.blocks.par_iter().try_for_each(write_one)
    } else {
        map.blocks.iter().try_for_each(write_one)
    }
}

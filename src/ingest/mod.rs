//! Ingest: full and incremental backups of directory trees and disk images.
//!
//! A backup walks the source ([`walk`]), reads only new or changed files in parallel
//! ([`file`](mod@file), rayon — the fan-out lives here only), sends new blocks to the
//! [`sink`], builds Merkle trees bottom-up (unchanged directories keep their tree id and are
//! not stored again) and commits packs, blocks, contents, trees and the point in one catalog
//! transaction.
//! Packs are durable before that commit. A backup that fails (disk full, I/O error) or is
//! interrupted removes the packs it wrote before it returns ([`ledger`]), so the disk is as
//! full as before; only a process killed outright leaves unreferenced packs, and the next
//! writer removes the temporary files it left. What the backup reads and what it leaves out
//! (pseudo file systems, the vault itself) is [`walk`]'s rule; how a file that changes while
//! it is read is kept whole is [`file`](mod@file)'s.

pub mod file;
pub mod ledger;
pub mod sink;
pub mod walk;

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::catalog::tree_codec::tree_id;
use crate::catalog::{
    BackupCommit, Catalog, Content, ContentId, Entry, EntryKind, PointKind, PointState, PointStats,
    RecoveryPoint, RecoveryPointId, RootMeta, TreeId, TreeRow,
};
use crate::chunk::ChunkerKind;
use crate::error::{Error, Result};
use crate::filter::PathFilter;
use crate::progress::Progress;
use crate::store::{BlockId, StoreError};
use crate::vault::Vault;
use file::{FileError, FileReader, FileVersion};
pub use ledger::PackLedger;
use sink::BlockSink;
use walk::{Walk, WalkOptions};

/// What to back up and how.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub exclude: Vec<String>,
    pub tags: Vec<String>,
    pub one_file_system: bool,
    pub chunker: ChunkerKind,
    /// Parent point query (`latest`, id prefix); default: newest complete point of the source.
    pub parent: Option<String>,
    /// Read every file even if unchanged.
    pub force: bool,
    /// Protect the point from forgetting by policy until this time (ns, UTC; `i64::MAX`:
    /// forever).
    pub retain_until_ns: Option<i64>,
    /// The point's time instead of now (ns, UTC): for importing a history.
    pub time_ns: Option<i64>,
}

/// What a backup did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackupReport {
    pub point: String,
    pub parent: Option<String>,
    pub state: &'static str,
    pub source: String,
    pub files: u64,
    pub dirs: u64,
    pub files_changed: u64,
    pub bytes: u64,
    pub bytes_read: u64,
    pub blocks_new: u64,
    pub bytes_new: u64,
    pub bytes_stored: u64,
    pub packs_written: u64,
    pub seconds: f64,
    /// Paths skipped, with the reason.
    pub errors: Vec<String>,
    /// What the user should know that did not make the point partial: the vault left out of
    /// its own source, pseudo file systems not walked, files read again because they changed.
    pub warnings: Vec<String>,
}

/// The identity of a source: its canonical paths.
pub fn source_name(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sources' canonical paths; a missing one is [`Error::MissingSource`].
pub fn canonical_sources(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(Error::InvalidArgument(
            "nothing to back up: name at least one path".into(),
        ));
    }
    let mut out = Vec::new();
    for p in paths {
        let canon =
            std::fs::canonicalize(p).map_err(|_| Error::MissingSource { path: p.clone() })?;
        out.push(canon);
    }
    let mut names: Vec<_> = out
        .iter()
        .map(|p| p.file_name().map(|n| n.to_owned()))
        .collect();
    names.sort();
    if out.len() > 1 && names.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::InvalidArgument(
            "two backup paths end in the same name".into(),
        ));
    }
    Ok(out)
}

/// A seed job's destination: removable disks instead of the store.
pub trait SeedDestination: sink::PackDestination {
    /// The job's name.
    fn job(&self) -> &str;
    /// Told the source's size after the walk, before any data is read: refuses up front
    /// when the destination is clearly too small.
    fn accept_source(&self, bytes: u64) -> Result<(), crate::error::Error>;
    /// What the catalog records of the job once the packs are written.
    /// Writes the journals and says what the catalog records of the job, once every pack is
    /// written and before the point is committed.
    fn record(
        &self,
        source: &str,
        packs: &[crate::catalog::NewPack],
    ) -> Result<crate::catalog::SeedJobRecord, crate::store::StoreError>;
}

/// Where a backup's packs go.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// The vault's store: the point is restorable at once.
    Store,
    /// Seed disks: the point awaits the job's import.
    Seed(&'a dyn SeedDestination),
}

/// Runs a backup into the store. The writer lock must be held by the caller.
pub fn backup(
    vault: &Vault,
    options: &BackupOptions,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<BackupReport> {
    backup_to(vault, options, Target::Store, progress, interrupted)
}

/// Runs a backup whose packs go to `target`. The writer lock must be held by the caller.
pub fn backup_to(
    vault: &Vault,
    options: &BackupOptions,
    target: Target<'_>,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<BackupReport> {
    let ledger = PackLedger::new();
    backup_recorded(vault, options, target, progress, interrupted, &ledger)
}

/// Runs a backup whose packs go to `target`, recording them in `ledger`. If it fails it
/// takes back the packs it wrote before it returns (see [`ledger`]); another thread may
/// [`abandon`] the ledger meanwhile, and then nothing is committed. Temporary files that an
/// interrupted writer left in the store are removed first. The writer lock must be held by
/// the caller.
pub fn backup_recorded(
    vault: &Vault,
    options: &BackupOptions,
    target: Target<'_>,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
    ledger: &PackLedger,
) -> Result<BackupReport> {
    let to_store = sink::ToStore(vault.backend());
    let destination: &dyn sink::PackDestination = match target {
        Target::Store => &to_store,
        Target::Seed(seed) => seed,
    };
    let started = std::time::Instant::now();
    let removed_tmp = vault.backend().remove_temporary();
    // A vault made before metadata packs existed seals its history into the store first.
    crate::rebuild::seal_history(vault)?;
    let result = run_backup(
        vault,
        options,
        target,
        destination,
        progress,
        interrupted,
        ledger,
    );
    match result {
        Ok(mut report) => {
            report.seconds = started.elapsed().as_secs_f64();
            if let Err(e) = removed_tmp {
                report
                    .warnings
                    .push(format!("cannot remove temporary files: {e}"));
            }
            Ok(report)
        }
        Err(err) => {
            // The failure is what the user needs to hear of; a pack that cannot be removed
            // stays as unreferenced garbage, which verify reports.
            let _ = abandon(destination, ledger);
            Err(err)
        }
    }
}

/// Takes back the packs `ledger` recorded, unless a commit has begun. Safe from any thread
/// (it touches neither the catalog nor the backup's state), so a watchdog may call it while
/// the backup is stuck in a read.
pub fn abandon(
    destination: &dyn sink::PackDestination,
    ledger: &PackLedger,
) -> Result<usize, crate::store::StoreError> {
    ledger.abandon(&|id| destination.discard(id))
}

/// The steps of a backup; on error the caller takes back the packs.
fn run_backup(
    vault: &Vault,
    options: &BackupOptions,
    target: Target<'_>,
    destination: &dyn sink::PackDestination,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
    ledger: &PackLedger,
) -> Result<BackupReport> {
    let clock_started_ns = crate::time::now_ns();
    let started_ns = options.time_ns.unwrap_or(clock_started_ns);
    let sources = canonical_sources(&options.paths)?;
    let source = source_name(&sources);
    let parent = match &options.parent {
        Some(q) => Some(vault.resolve_point(q)?),
        None if matches!(target, Target::Seed(_)) => None,
        None => vault.catalog().latest_parent(&source)?,
    };
    let exclude = PathFilter::new(&options.exclude)?;
    let walk_options = WalkOptions {
        exclude: &exclude,
        one_file_system: options.one_file_system,
        force: options.force,
        skip_dir: vault_identity(vault, &sources)?,
    };

    let (mut walk, roots) = walk_sources(vault, &sources, parent.as_ref(), &walk_options)?;
    let to_read: u64 = walk.to_read.iter().map(|&i| walk.nodes[i].entry.size).sum();
    if let Target::Seed(dest) = target {
        dest.accept_source(to_read)?;
    }
    progress.set_total(to_read);

    // Share only blocks that are stored, or that travel with the seed job this point waits for
    // anyway: a block found only in another job's packs in transit is stored again.
    let waits_for = match target {
        Target::Store => parent.as_ref().and_then(|p| p.awaiting_job.as_deref()),
        Target::Seed(_) => None,
    };
    let stored = VaultBlocks {
        catalog: Mutex::new(vault.read_catalog()?.into_owned()?),
        awaiting_job: waits_for.map(str::to_owned),
    };
    let chunker = vault.chunker(options.chunker);
    let bytes_read = AtomicU64::new(0);
    let mut warnings = walk_warnings(&walk);
    let (contents, totals, packs) = sink::with_sink_recorded(
        BlockSink::new(vault.codec(), &stored),
        vault.codec(),
        destination,
        ledger,
        |sink| {
            let reader = FileReader {
                codec: vault.codec(),
                chunker: &chunker,
                sink,
                bytes_read: &bytes_read,
                progress,
                interrupted,
            };
            read_files(&reader, &mut walk, &mut warnings, interrupted)
        },
    )?;

    let seed = match target {
        Target::Seed(dest) => Some(dest.record(&source, &packs)?),
        Target::Store => None,
    };
    let mut commit = BackupCommit {
        packs,
        contents,
        seed,
        ..BackupCommit::default()
    };
    let catalog = vault.catalog();
    let root_tree = build_trees(vault, &mut walk, &roots, &catalog, &mut commit)?;
    drop(catalog);
    let stats = point_stats(&walk, bytes_read.load(Ordering::Relaxed), totals);
    let point = new_point(NewPoint {
        options,
        target,
        parent: parent.as_ref(),
        source,
        root_tree,
        root: root_meta(&walk, &roots, &sources, started_ns),
        started_ns,
        finished_ns: started_ns + (crate::time::now_ns() - clock_started_ns),
        stats,
        errors: walk.errors.clone(),
    });
    commit_point(vault, &mut commit, &point, ledger, interrupted)?;
    Ok(BackupReport {
        point: point.id.0.clone(),
        parent: point.parent.map(|p| p.0),
        state: point.state.as_str(),
        source: point.source,
        files: stats.files,
        dirs: stats.dirs,
        files_changed: stats.files_changed,
        bytes: stats.bytes,
        bytes_read: stats.bytes_read,
        blocks_new: totals.blocks_new,
        bytes_new: stats.bytes_new,
        bytes_stored: stats.bytes_stored,
        packs_written: commit.packs.len() as u64,
        seconds: 0.0,
        errors: walk.errors,
        warnings,
    })
}

/// What a new recovery point is made of.
/// The blocks a new point may share, asked of a read connection of the catalog block by
/// block (see [`crate::catalog::Catalog::shares_block`]).
struct VaultBlocks {
    catalog: Mutex<Catalog>,
    /// The seed job the point waits for, whose packs in transit it may share.
    awaiting_job: Option<String>,
}

impl sink::StoredBlocks for VaultBlocks {
    fn holds(&self, id: &BlockId) -> std::result::Result<bool, StoreError> {
        self.catalog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shares_block(id, self.awaiting_job.as_deref())
            .map_err(|e| StoreError::Lookup {
                block: *id,
                why: e.to_string(),
            })
    }
}

struct NewPoint<'a> {
    options: &'a BackupOptions,
    target: Target<'a>,
    parent: Option<&'a RecoveryPoint>,
    source: String,
    root_tree: TreeId,
    root: RootMeta,
    started_ns: i64,
    finished_ns: i64,
    stats: PointStats,
    errors: Vec<String>,
}

/// The point a backup commits: its kind and state follow from the target, the parent and
/// whether anything was left out.
fn new_point(p: NewPoint<'_>) -> RecoveryPoint {
    // A seed point waits for its own job; an incremental on top of a waiting point waits too.
    let awaiting_job = match p.target {
        Target::Seed(dest) => Some(dest.job().to_string()),
        Target::Store => p.parent.and_then(|parent| parent.awaiting_job.clone()),
    };
    RecoveryPoint {
        id: RecoveryPointId::random(),
        parent: p.parent.map(|parent| parent.id.clone()),
        root_tree: p.root_tree,
        source: p.source,
        host: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        tags: p.options.tags.clone(),
        kind: match (p.target, p.parent) {
            (Target::Seed(_), _) => PointKind::Seeded,
            (Target::Store, Some(_)) => PointKind::Incremental,
            (Target::Store, None) => PointKind::Full,
        },
        state: if awaiting_job.is_some() {
            PointState::AwaitingSeed
        } else if p.errors.is_empty() {
            PointState::Complete
        } else {
            PointState::Partial
        },
        awaiting_job,
        retain_until_ns: p.options.retain_until_ns,
        started_ns: p.started_ns,
        finished_ns: p.finished_ns,
        stats: p.stats,
        errors: p.errors,
        root: p.root,
    }
}

/// Seals the commit into the store, then commits the point, unless the backup was
/// interrupted or its ledger abandoned; the ledger knows while the commit runs, so its packs
/// are never taken back from under it.
///
/// The point's metadata is durable in the store before the catalog commits it, so a crash
/// never leaves a catalog point that `catalog rebuild` cannot bring back. A pending seal
/// recorded first lets the next open finish a commit that a crash cut off after the metadata
/// pack was written (see [`crate::rebuild::settle_pending`]).
fn commit_point(
    vault: &Vault,
    commit: &mut BackupCommit,
    point: &RecoveryPoint,
    ledger: &PackLedger,
    interrupted: &AtomicBool,
) -> Result<()> {
    crate::failpoint::hit("backup:before-commit");
    if interrupted.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    let meta = vault.seal(&crate::catalog::sealed::commit_body(commit, point))?;
    vault.catalog().add_pending_seal(&meta.id)?;
    if let Err(e) = vault.backend().put(&meta.id, &meta.bytes) {
        let _ = vault.catalog().drop_pending_seal(&meta.id);
        return Err(e.into());
    }
    commit.sealed_as = Some((meta.id, meta.bytes.len() as u64));
    let committed = if interrupted.load(Ordering::Relaxed) || !ledger.begin_commit() {
        Err(Error::Interrupted)
    } else {
        let committed = vault.catalog().commit_backup(commit, point);
        ledger.end_commit(committed.is_ok());
        committed.map_err(Error::from)
    };
    if committed.is_err() {
        // Not committed: the metadata pack is taken back with the data packs. Should that
        // fail, the next open finds the pending seal and settles it.
        if vault.backend().delete(&meta.id).is_ok() {
            let _ = vault.catalog().drop_pending_seal(&meta.id);
        }
    }
    committed
}

/// Device and inode of the vault directory, which the walk leaves out. A source that is the
/// vault itself is refused.
fn vault_identity(vault: &Vault, sources: &[PathBuf]) -> Result<Option<(u64, u64)>> {
    let Ok(meta) = std::fs::metadata(vault.root()) else {
        return Ok(None);
    };
    let identity = (meta.dev(), meta.ino());
    for source in sources {
        if let Ok(m) = std::fs::metadata(source) {
            if (m.dev(), m.ino()) == identity {
                return Err(Error::InvalidArgument(format!(
                    "{} is the vault itself: it cannot be backed up into itself",
                    source.display()
                )));
            }
        }
    }
    Ok(Some(identity))
}

/// What the walk left out on purpose, said once each.
fn walk_warnings(walk: &Walk) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(vault) = &walk.skipped_dir {
        out.push(format!(
            "left out {}: it is the vault being written to",
            vault.display()
        ));
    }
    if !walk.pseudo_mounts.is_empty() {
        let list: Vec<String> = walk
            .pseudo_mounts
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        out.push(format!(
            "did not descend into pseudo file systems (name them as sources to back them up): {}",
            list.join(", ")
        ));
    }
    out
}

/// Walks every source path. One directory is the root itself; otherwise each path is one
/// entry of a synthetic root.
fn walk_sources(
    vault: &Vault,
    sources: &[PathBuf],
    parent: Option<&RecoveryPoint>,
    options: &WalkOptions<'_>,
) -> Result<(Walk, Vec<usize>)> {
    let catalog = vault.catalog();
    let mut walk = Walk::default();
    let parent_root = parent.map(|p| p.root_tree);
    let single_dir = sources.len() == 1 && sources[0].is_dir();
    let parent_entries: HashMap<Vec<u8>, Entry> = match (single_dir, parent_root) {
        (false, Some(tree)) => catalog
            .tree_entries(&tree)?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect(),
        _ => HashMap::new(),
    };
    let mut roots = Vec::new();
    for path in sources {
        let name = path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_else(|| b"root".to_vec());
        let parent_entry = if single_dir {
            parent_root.map(|tree| synthetic_dir(&name, tree))
        } else {
            parent_entries.get(&name).cloned()
        };
        match walk.add_path(&catalog, path, &name, parent_entry.as_ref(), options)? {
            Some(i) => roots.push(i),
            None => return Err(Error::MissingSource { path: path.clone() }),
        }
    }
    Ok((walk, roots))
}

fn synthetic_dir(name: &[u8], tree: TreeId) -> Entry {
    Entry {
        name: name.to_vec(),
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        size: 0,
        inode: 0,
        nlink: 1,
        content: None,
        subtree: Some(tree),
        target: None,
        rdev: 0,
        xattrs: Vec::new(),
    }
}

/// Reads every file that needs it, in parallel. Hardlinked names are read once.
fn read_files(
    reader: &FileReader<'_>,
    walk: &mut Walk,
    warnings: &mut Vec<String>,
    interrupted: &AtomicBool,
) -> Result<Vec<(ContentId, Content)>> {
    let mut first_of_inode: HashMap<u64, usize> = HashMap::new();
    let mut unique = Vec::new();
    let mut aliases = Vec::new();
    for &i in &walk.to_read {
        let e = &walk.nodes[i].entry;
        if e.nlink > 1 {
            if let Some(&first) = first_of_inode.get(&e.inode) {
                aliases.push((i, first));
                continue;
            }
            first_of_inode.insert(e.inode, i);
        }
        unique.push(i);
    }
    let nodes = &walk.nodes;
    let results: Vec<(usize, Result<FileVersion, FileError>)> = unique
        .par_iter()
        .map(|&i| {
            if interrupted.load(Ordering::Relaxed) {
                return (i, Err(FileError::Interrupted));
            }
            let result = reader.read_version(&nodes[i].path);
            reader.progress.add_file();
            (i, result)
        })
        .collect();
    if interrupted.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    let mut contents: HashMap<usize, ContentId> = HashMap::new();
    let mut new_contents = Vec::new();
    for (i, result) in results {
        match result {
            Ok(version) => {
                if version.changed_before {
                    warnings.push(format!(
                        "{}: changed while it was read; kept a later read of one version",
                        walk.nodes[i].path.display()
                    ));
                }
                let content = version.content;
                let id = content_id(reader, &content);
                let entry = &mut walk.nodes[i].entry;
                entry.content = Some(id);
                // The entry describes the version read, not the one the walk saw.
                entry.size = content.size;
                entry.mtime_ns = version.stamp.mtime_ns;
                entry.ctime_ns = version.stamp.ctime_ns;
                entry.inode = version.stamp.inode;
                contents.insert(i, id);
                new_contents.push((id, content));
            }
            Err(FileError::Source(e)) => {
                walk.errors
                    .push(format!("{}: {e}", walk.nodes[i].path.display()));
                walk.nodes[i].entry.content = None;
            }
            Err(FileError::Store(e)) => return Err(e.into()),
            Err(FileError::Interrupted) => return Err(Error::Interrupted),
        }
    }
    for (alias, first) in aliases {
        walk.nodes[alias].entry.content = contents.get(&first).copied();
        walk.nodes[alias].entry.size = walk.nodes[first].entry.size;
    }
    Ok(new_contents)
}

/// The id of a file version: keyed blake3 of its size and block list.
///
/// A file of one non-zero block is named by that block's id, and its catalog row holds no
/// block list (see [`Content::row_blocks`]): most small files cost one id, not two.
pub fn content_id(reader: &FileReader<'_>, content: &Content) -> ContentId {
    if let [(block, _)] = content.blocks.as_slice() {
        if *block != crate::store::BlockId::ZERO {
            return ContentId(block.0);
        }
    }
    let mut h = blake3::Hasher::new_keyed(&reader.codec.keys().id.0);
    h.update(b"content v1");
    h.update(&content.size.to_le_bytes());
    h.update(&content.encode_blocks());
    ContentId(*h.finalize().as_bytes())
}

/// Builds trees bottom-up, adding the ones the catalog lacks to `commit`. Returns the root.
fn build_trees(
    vault: &Vault,
    walk: &mut Walk,
    roots: &[usize],
    catalog: &crate::catalog::Catalog,
    commit: &mut BackupCommit,
) -> Result<TreeId> {
    let key = &vault.codec().keys().id;
    let mut added = std::collections::HashSet::new();
    // Nodes are pushed parents first, so walking the arena backwards visits children first.
    for i in (0..walk.nodes.len()).rev() {
        if walk.nodes[i].entry.kind != EntryKind::Dir {
            continue;
        }
        let entries = child_entries(walk, &walk.nodes[i].children);
        let id = tree_id(key, &entries);
        if !added.contains(&id) && !catalog.has_tree(&id)? {
            added.insert(id);
            commit.trees.push(TreeRow::new(id, &entries));
        }
        walk.nodes[i].entry.subtree = Some(id);
    }
    let single_dir = roots.len() == 1 && walk.nodes[roots[0]].entry.kind == EntryKind::Dir;
    if single_dir {
        return walk.nodes[roots[0]]
            .entry
            .subtree
            .ok_or(Error::InvalidArgument("empty walk".into()));
    }
    let entries = child_entries(walk, roots);
    let id = tree_id(key, &entries);
    if !catalog.has_tree(&id)? {
        commit.trees.push(TreeRow::new(id, &entries));
    }
    Ok(id)
}

/// The entries of some nodes, sorted by name; files that could not be read are left out.
fn child_entries(walk: &Walk, children: &[usize]) -> Vec<Entry> {
    let mut entries: Vec<Entry> = children
        .iter()
        .map(|&c| &walk.nodes[c].entry)
        .filter(|e| e.kind != EntryKind::File || e.content.is_some())
        .cloned()
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

fn point_stats(walk: &Walk, bytes_read: u64, totals: sink::SinkTotals) -> PointStats {
    let mut stats = PointStats {
        bytes_read,
        bytes_new: totals.bytes_new,
        bytes_stored: totals.bytes_stored,
        ..PointStats::default()
    };
    let read: std::collections::HashSet<usize> = walk.to_read.iter().copied().collect();
    for (i, node) in walk.nodes.iter().enumerate() {
        match node.entry.kind {
            EntryKind::Dir => stats.dirs += 1,
            EntryKind::File if node.entry.content.is_some() => {
                stats.files += 1;
                stats.bytes += node.entry.size;
                if read.contains(&i) {
                    stats.files_changed += 1;
                }
            }
            EntryKind::File => {}
            _ => stats.files += 1,
        }
    }
    stats
}

fn root_meta(walk: &Walk, roots: &[usize], sources: &[PathBuf], started_ns: i64) -> RootMeta {
    if roots.len() == 1 && walk.nodes[roots[0]].entry.kind == EntryKind::Dir && sources.len() == 1 {
        let e = &walk.nodes[roots[0]].entry;
        return RootMeta {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime_ns: e.mtime_ns,
            xattrs: e.xattrs.clone(),
        };
    }
    RootMeta {
        mode: 0o755,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        mtime_ns: started_ns,
        xattrs: Vec::new(),
    }
}

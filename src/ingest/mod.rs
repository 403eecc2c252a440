//! Ingest: full and incremental backups of directory trees and disk images.
//!
//! A backup walks the source ([`walk`]) on one thread while rayon's pool reads the new or
//! changed files ([`file`](mod@file); the fan-out lives here only, in [`pass`]), sends new
//! blocks to the [`sink`], and closes directories into Merkle trees as their children are
//! made (unchanged directories keep their tree id and are not stored again). New trees and
//! file versions go to the catalog's staging tables and into metadata parts as they are made
//! ([`staged`]), so memory follows the reads in flight, not the size of the source. The
//! commit then adds packs, blocks, the staged rows and the point in one catalog transaction.
//! Packs are durable before that commit. A backup that fails (disk full, I/O error) or is
//! interrupted removes the packs it wrote before it returns ([`ledger`]), so the disk is as
//! full as before; only a process killed outright leaves unreferenced packs, and the next
//! writer removes the temporary files it left. What the backup reads and what it leaves out
//! (pseudo file systems, the vault itself) is [`walk`]'s rule, what the user leaves out is
//! [`exclude`]'s; how a file that changes while it is read is kept whole is
//! [`file`](mod@file)'s.
//!
//! A [`dry_run`] makes the same pass (every new or changed file is read, cut and hashed, and
//! its new blocks compressed and sealed to know their size) but writes nothing: its packs go
//! [`Nowhere`](sink::Nowhere), its trees are only named, no point is committed.

pub mod exclude;
pub mod file;
pub mod ledger;
mod pass;
pub mod sink;
mod staged;
pub mod walk;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use crate::catalog::{
    BackupCommit, Catalog, Content, ContentId, Entry, PointKind, PointState, PointStats,
    RecoveryPoint, RecoveryPointId, RootMeta, TreeId,
};
use crate::chunk::ChunkerKind;
use crate::error::{Error, Result};
use crate::filter::PathFilter;
use crate::progress::Progress;
use crate::store::{BlockId, StoreError};
use crate::vault::Vault;
use exclude::ExcludeMarker;
use file::FileReader;
pub use ledger::PackLedger;
use pass::{walk_and_read, Pass, PassInput, PassOutput};
use staged::{Staged, Unstaged};
use walk::WalkOptions;

/// What to back up and how.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    /// Patterns of paths to leave out (restic's rules, see [`crate::filter`]).
    pub exclude: Vec<String>,
    /// Patterns of paths to leave out, ignoring case.
    pub iexclude: Vec<String>,
    /// Leave out the contents of directories tagged as caches by a valid `CACHEDIR.TAG`
    /// (the tag itself is kept).
    pub exclude_caches: bool,
    /// `NAME` or `NAME:HEADER`: leave out the contents of directories that hold a file
    /// `NAME` (starting with `HEADER`), but that file.
    pub exclude_if_present: Vec<String>,
    /// Leave out regular files larger than this many bytes.
    pub exclude_larger_than: Option<u64>,
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
    /// The host the point is recorded as coming from; default: this machine's name.
    pub host: Option<String>,
}

/// What a pass over a source found, read and would store: the counts a [`BackupReport`] and
/// a [`DryRunReport`] share.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct IngestCounts {
    /// Entries that are not directories (regular files, symlinks, devices, …).
    pub files: u64,
    pub dirs: u64,
    /// Regular files the parent point does not have (every file of a first backup).
    pub files_new: u64,
    /// Regular files whose content differs from the parent point's.
    pub files_changed: u64,
    /// Regular files with the parent point's content (not read, or read and found equal).
    pub files_unchanged: u64,
    /// Logical bytes of the regular files.
    pub bytes: u64,
    pub bytes_read: u64,
    /// Blocks new to the vault.
    pub blocks_new: u64,
    /// Plaintext bytes of the new blocks.
    pub bytes_new: u64,
    /// Bytes the new blocks take in packs (compressed and sealed).
    pub bytes_stored: u64,
}

impl IngestCounts {
    fn of(pass: &Pass<'_>) -> IngestCounts {
        let walk = &pass.walker;
        IngestCounts {
            files: walk.stats.files,
            dirs: walk.stats.dirs,
            files_new: walk.files_new,
            files_changed: walk.stats.files_changed,
            files_unchanged: walk.files_unchanged,
            bytes: walk.stats.bytes,
            bytes_read: pass.bytes_read,
            blocks_new: pass.totals.blocks_new,
            bytes_new: pass.totals.bytes_new,
            bytes_stored: pass.totals.bytes_stored,
        }
    }
}

/// What a backup did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackupReport {
    pub point: String,
    pub parent: Option<String>,
    pub state: &'static str,
    pub source: String,
    pub host: String,
    #[serde(flatten)]
    pub counts: IngestCounts,
    pub packs_written: u64,
    pub seconds: f64,
    /// Paths skipped, with the reason.
    pub errors: Vec<String>,
    /// What the user should know that did not make the point partial: the vault left out of
    /// its own source, pseudo file systems not walked, files read again because they changed.
    pub warnings: Vec<String>,
}

/// What a backup would do: the report of a [`dry_run`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct DryRunReport {
    pub dry_run: bool,
    /// The point the backup would compare against.
    pub parent: Option<String>,
    pub source: String,
    pub host: String,
    #[serde(flatten)]
    pub counts: IngestCounts,
    /// Packs the new blocks would fill.
    pub packs: u64,
    pub seconds: f64,
    /// Paths that could not be read, with the reason (the point would be partial).
    pub errors: Vec<String>,
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
    crate::failpoint::hit("backup:started");
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

/// A backup's source, resolved: canonical paths, its name, the parent point, and what the walk
/// leaves out.
struct Source {
    paths: Vec<PathBuf>,
    name: String,
    parent: Option<RecoveryPoint>,
    host: String,
    exclude: PathFilter,
    markers: Vec<ExcludeMarker>,
    /// The vault's directory (device, inode), never walked.
    vault_dir: Option<(u64, u64)>,
}

impl Source {
    /// Checks `options` and finds the source and its parent (a seed job has none unless
    /// asked for).
    fn resolve(vault: &Vault, options: &BackupOptions, seed: bool) -> Result<Source> {
        let paths = canonical_sources(&options.paths)?;
        let name = source_name(&paths);
        let host = host_name(options)?;
        // The parent is of the same source on the same host: another machine's files of the
        // same size, times and inode are not these files.
        let parent = match &options.parent {
            Some(q) => Some(vault.resolve_point(q)?),
            None if seed => None,
            None => vault.catalog().latest_parent(&name, &host)?,
        };
        let exclude =
            PathFilter::new(&options.exclude)?.or(PathFilter::ignoring_case(&options.iexclude)?);
        let mut markers = options
            .exclude_if_present
            .iter()
            .map(|spec| ExcludeMarker::parse(spec))
            .collect::<Result<Vec<_>>>()?;
        if options.exclude_caches {
            markers.push(ExcludeMarker::cachedir_tag());
        }
        Ok(Source {
            vault_dir: vault_identity(vault, &paths)?,
            host,
            paths,
            name,
            parent,
            exclude,
            markers,
        })
    }

    fn walk_options(&self, options: &BackupOptions) -> WalkOptions<'_> {
        WalkOptions {
            exclude: &self.exclude,
            exclude_larger_than: options.exclude_larger_than,
            markers: &self.markers,
            one_file_system: options.one_file_system,
            force: options.force,
            skip_dir: self.vault_dir,
        }
    }
}

/// The host a point is recorded as coming from: `--host`, or this machine's name.
fn host_name(options: &BackupOptions) -> Result<String> {
    match &options.host {
        Some(host) if host.trim().is_empty() || host.chars().any(char::is_control) => Err(
            Error::InvalidArgument(format!("host name {host:?} is empty or unprintable")),
        ),
        Some(host) => Ok(host.clone()),
        None => Ok(rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()),
    }
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
    let source = Source::resolve(vault, options, matches!(target, Target::Seed(_)))?;
    let walk_options = source.walk_options(options);

    if let Target::Seed(dest) = target {
        let bytes = walk::source_bytes(&source.paths, &walk_options, interrupted);
        dest.accept_source(bytes)?;
        progress.set_total(bytes);
    }

    // Share only blocks that are stored, or that travel with the seed job this point waits for
    // anyway: a block found only in another job's packs in transit is stored again.
    let waits_for = match target {
        Target::Store => source
            .parent
            .as_ref()
            .and_then(|p| p.awaiting_job.as_deref()),
        Target::Seed(_) => None,
    };
    let stored = VaultBlocks::new(vault, waits_for)?;
    let mut staged = Staged::new(vault)?;
    let input = PassInput {
        vault,
        sources: &source.paths,
        parent_root: source.parent.as_ref().map(|p| p.root_tree),
        walk: &walk_options,
        chunker: options.chunker,
        count_total: progress.shows_total() && matches!(target, Target::Store),
        progress,
        interrupted,
    };
    let output = PassOutput {
        stored: &stored,
        destination,
        ledger,
        record: &mut staged,
    };
    let result = walk_and_read(&input, output).and_then(|pass| {
        let root_tree = pass.walker.root().ok_or(Error::Internal {
            what: "the walk ended without closing the point's root".into(),
        })?;
        let seed = match target {
            Target::Seed(dest) => Some(dest.record(&source.name, &pass.packs)?),
            Target::Store => None,
        };
        let counts = IngestCounts::of(&pass);
        let mut commit = BackupCommit {
            packs: pass.packs,
            seed,
            ..BackupCommit::default()
        };
        let stats = PointStats {
            bytes_read: counts.bytes_read,
            bytes_new: counts.bytes_new,
            bytes_stored: counts.bytes_stored,
            ..pass.walker.stats
        };
        let point = new_point(NewPoint {
            options,
            target,
            parent: source.parent.as_ref(),
            source: source.name.clone(),
            sources: source.paths.clone(),
            root_path: walk::root_path(&source.paths),
            host: source.host.clone(),
            root_tree,
            root: root_meta(pass.walker.root_entry(), started_ns),
            started_ns,
            finished_ns: started_ns + (crate::time::now_ns() - clock_started_ns),
            stats,
            errors: pass.walker.errors.clone(),
        });
        staged.commit(&mut commit, &point, ledger, interrupted)?;
        Ok(BackupReport {
            point: point.id.0,
            parent: point.parent.map(|p| p.0),
            state: point.state.as_str(),
            source: point.source,
            host: point.host,
            counts,
            packs_written: commit.packs.len() as u64,
            seconds: 0.0,
            errors: pass.walker.errors,
            warnings: pass.warnings,
        })
    });
    if result.is_err() {
        staged.abandon();
    }
    result
}

/// Walks and reads the source as [`backup`] would, and says what it would store, without
/// writing anything to the vault: no pack, no catalog row, no point. It only reads the
/// catalog, so it needs no writer lock and may run beside a backup.
pub fn dry_run(
    vault: &Vault,
    options: &BackupOptions,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<DryRunReport> {
    let started = std::time::Instant::now();
    let source = Source::resolve(vault, options, false)?;
    let walk_options = source.walk_options(options);
    let waits_for = source
        .parent
        .as_ref()
        .and_then(|p| p.awaiting_job.as_deref());
    let stored = VaultBlocks::new(vault, waits_for)?;
    let input = PassInput {
        vault,
        sources: &source.paths,
        parent_root: source.parent.as_ref().map(|p| p.root_tree),
        walk: &walk_options,
        chunker: options.chunker,
        count_total: progress.shows_total(),
        progress,
        interrupted,
    };
    let output = PassOutput {
        stored: &stored,
        destination: &sink::Nowhere,
        ledger: &PackLedger::new(),
        record: &mut Unstaged { vault },
    };
    let pass = walk_and_read(&input, output)?;
    Ok(DryRunReport {
        dry_run: true,
        parent: source.parent.as_ref().map(|p| p.id.0.clone()),
        source: source.name.clone(),
        host: source.host.clone(),
        counts: IngestCounts::of(&pass),
        packs: pass.packs.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
        errors: pass.walker.errors,
        warnings: pass.warnings,
    })
}

/// The blocks a new point may share, asked of a read connection of the catalog block by
/// block (see [`crate::catalog::Catalog::shares_block`]).
struct VaultBlocks {
    catalog: Mutex<Catalog>,
    /// The seed job the point waits for, whose packs in transit it may share.
    awaiting_job: Option<String>,
}

impl VaultBlocks {
    fn new(vault: &Vault, awaiting_job: Option<&str>) -> Result<VaultBlocks> {
        Ok(VaultBlocks {
            catalog: Mutex::new(vault.read_catalog()?.into_owned()?),
            awaiting_job: awaiting_job.map(str::to_owned),
        })
    }
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

/// What a new recovery point is made of.
struct NewPoint<'a> {
    options: &'a BackupOptions,
    target: Target<'a>,
    parent: Option<&'a RecoveryPoint>,
    source: String,
    sources: Vec<PathBuf>,
    root_path: PathBuf,
    host: String,
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
        sources: p.sources,
        root_path: Some(p.root_path),
        host: p.host,
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

fn root_meta(root: Option<&Entry>, started_ns: i64) -> RootMeta {
    if let Some(e) = root {
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

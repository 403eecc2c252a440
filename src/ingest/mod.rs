//! Ingest: full and incremental backups of directory trees and disk images.
//!
//! A backup walks the source ([`walk`]) on one thread while rayon's pool reads the new or
//! changed files ([`file`](mod@file); the fan-out lives here only, in [`Ingest`]), sends new
//! blocks to the [`sink`], and closes directories into Merkle trees as their children are
//! made (unchanged directories keep their tree id and are not stored again). New trees and
//! file versions go to the catalog's staging tables and into metadata parts as they are made
//! ([`staged`]), so memory follows the reads in flight, not the size of the source. The
//! commit then adds packs, blocks, the staged rows and the point in one catalog transaction.
//! Packs are durable before that commit. A backup that fails (disk full, I/O error) or is
//! interrupted removes the packs it wrote before it returns ([`ledger`]), so the disk is as
//! full as before; only a process killed outright leaves unreferenced packs, and the next
//! writer removes the temporary files it left. What the backup reads and what it leaves out
//! (pseudo file systems, the vault itself) is [`walk`]'s rule; how a file that changes while
//! it is read is kept whole is [`file`](mod@file)'s.

pub mod file;
pub mod ledger;
pub mod sink;
mod staged;
pub mod walk;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
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
use file::{FileError, FileReader, FileVersion};
pub use ledger::PackLedger;
use sink::BlockSink;
use staged::Staged;
use walk::{FileToRead, Step, WalkOptions, Walker};

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

    if let Target::Seed(dest) = target {
        let bytes = walk::source_bytes(&sources, &walk_options, interrupted);
        dest.accept_source(bytes)?;
        progress.set_total(bytes);
    }

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
    let mut walker = Walker::new(
        vault,
        &sources,
        parent.as_ref().map(|p| p.root_tree),
        &walk_options,
    )?;
    let mut warnings = Vec::new();
    let mut staged = Staged::new(vault)?;
    let walked = AtomicBool::new(false);
    let made = std::thread::scope(|scope| {
        if progress.shows_total() && matches!(target, Target::Store) {
            // The total, counted beside the walk that reads (unchanged files count as done).
            scope
                .spawn(|| progress.set_total(walk::source_bytes(&sources, &walk_options, &walked)));
        }
        let made = sink::with_sink_recorded(
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
                let mut ingest = Ingest {
                    walker: &mut walker,
                    staged: &mut staged,
                    reader: &reader,
                    links: HashMap::new(),
                    warnings: &mut warnings,
                    unchanged_bytes: 0,
                };
                ingest.run(interrupted)
            },
        );
        walked.store(true, Ordering::Relaxed);
        made
    });
    let result = made.and_then(|((), totals, packs)| {
        warnings.splice(0..0, walk_warnings(&walker));
        let root_tree = walker
            .root()
            .ok_or(Error::InvalidArgument("nothing to back up".into()))?;
        let seed = match target {
            Target::Seed(dest) => Some(dest.record(&source, &packs)?),
            Target::Store => None,
        };
        let mut commit = BackupCommit {
            packs,
            seed,
            ..BackupCommit::default()
        };
        let stats = PointStats {
            bytes_read: bytes_read.load(Ordering::Relaxed),
            bytes_new: totals.bytes_new,
            bytes_stored: totals.bytes_stored,
            ..walker.stats
        };
        let point = new_point(NewPoint {
            options,
            target,
            parent: parent.as_ref(),
            source,
            root_path: walk::root_path(&sources),
            sources: sources.clone(),
            root_tree,
            root: root_meta(walker.root_entry(), started_ns),
            started_ns,
            finished_ns: started_ns + (crate::time::now_ns() - clock_started_ns),
            stats,
            errors: walker.errors.clone(),
        });
        staged.commit(&mut commit, &point, ledger, interrupted)?;
        Ok((point, stats, totals, commit.packs.len() as u64))
    });
    let (point, stats, totals, packs_written) = match result {
        Ok(done) => done,
        Err(e) => {
            staged.abandon();
            return Err(e);
        }
    };
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
        packs_written,
        seconds: 0.0,
        errors: walker.errors,
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
    sources: Vec<PathBuf>,
    root_path: PathBuf,
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
fn walk_warnings(walk: &Walker<'_>) -> Vec<String> {
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

/// Files handed to one read job, read one after another: small files go in batches, so a job
/// (and a wake-up of this thread) is paid per batch, not per file.
const BATCH_FILES: usize = 32;
/// A batch ends once its files hold this many bytes (a large file is a batch of its own;
/// its blocks are hashed and compressed in parallel inside the read).
const BATCH_BYTES: u64 = 8 << 20;
/// Files in flight at most: enough to keep every core busy, few enough that the walk stays
/// close behind the reads (memory follows the reads in flight, not the source).
const READS_IN_FLIGHT: usize = 8 * BATCH_FILES;

/// A hardlinked inode met in this backup: read once, its other names wait for the read.
enum Link {
    Reading(Vec<FileToRead>),
    Read(Option<(ContentId, u64)>),
}

/// The walk and the reads of one backup, side by side: the walker runs on this thread and
/// hands files to rayon's pool; their entries come back in any order and close directories
/// as they complete.
struct Ingest<'w, 'a> {
    walker: &'w mut Walker<'a>,
    staged: &'w mut Staged<'a>,
    reader: &'w FileReader<'w>,
    links: HashMap<u64, Link>,
    warnings: &'w mut Vec<String>,
    /// Bytes of unchanged files reported to progress so far.
    unchanged_bytes: u64,
}

type ReadDone = (FileToRead, std::result::Result<FileVersion, FileError>);

impl Ingest<'_, '_> {
    fn run(&mut self, interrupted: &AtomicBool) -> Result<()> {
        let (done_tx, done_rx) = channel::<Vec<ReadDone>>();
        let stop = AtomicBool::new(false);
        let reader = self.reader;
        rayon::in_place_scope(|scope| {
            let mut in_flight = 0usize;
            let mut batch = Vec::new();
            let mut batch_bytes = 0;
            let send = |batch: Vec<FileToRead>| {
                let done_tx = done_tx.clone();
                let stop = &stop;
                scope.spawn(move |_| {
                    let done = batch
                        .into_iter()
                        .map(|file| {
                            let result = if stop.load(Ordering::Relaxed) {
                                Err(FileError::Interrupted)
                            } else {
                                reader.read_version(&file.path)
                            };
                            reader.progress.add_file();
                            (file, result)
                        })
                        .collect();
                    let _ = done_tx.send(done);
                });
            };
            let walked = (|| -> Result<()> {
                loop {
                    while let Ok(done) = done_rx.try_recv() {
                        self.take_all(done, &mut in_flight)?;
                    }
                    if interrupted.load(Ordering::Relaxed) {
                        return Err(Error::Interrupted);
                    }
                    let step = self.walker.step(self.staged)?;
                    self.report_unchanged();
                    let file = match step {
                        Step::Read(file) => file,
                        Step::Walked => continue,
                        Step::Done => break,
                    };
                    let Some(file) = self.first_of_inode(*file)? else {
                        continue;
                    };
                    batch_bytes += file.entry.size;
                    batch.push(file);
                    if batch.len() < BATCH_FILES && batch_bytes < BATCH_BYTES {
                        continue;
                    }
                    in_flight += batch.len();
                    send(std::mem::take(&mut batch));
                    batch_bytes = 0;
                    while in_flight >= READS_IN_FLIGHT {
                        self.take_all(recv(&done_rx)?, &mut in_flight)?;
                    }
                }
                if !batch.is_empty() {
                    in_flight += batch.len();
                    send(std::mem::take(&mut batch));
                }
                while in_flight > 0 {
                    self.take_all(recv(&done_rx)?, &mut in_flight)?;
                }
                Ok(())
            })();
            if walked.is_err() {
                // The reads still in flight end at once; the scope waits for them.
                stop.store(true, Ordering::Relaxed);
            }
            walked
        })?;
        if interrupted.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        Ok(())
    }

    /// Takes a finished batch; `in_flight` counts its files as done.
    fn take_all(&mut self, done: Vec<ReadDone>, in_flight: &mut usize) -> Result<()> {
        *in_flight -= done.len();
        for one in done {
            self.take(one)?;
        }
        Ok(())
    }

    /// Counts the files the walk kept unchanged as processed.
    fn report_unchanged(&mut self) {
        let unchanged = self.walker.unchanged_bytes;
        if unchanged > self.unchanged_bytes {
            self.reader
                .progress
                .add_bytes(unchanged - self.unchanged_bytes);
            self.unchanged_bytes = unchanged;
        }
    }

    /// `file`, unless it is another name of a hardlinked inode met before: then it takes
    /// that inode's content (now, or once its read is done) and is not read again.
    fn first_of_inode(&mut self, file: FileToRead) -> Result<Option<FileToRead>> {
        if file.entry.nlink <= 1 {
            return Ok(Some(file));
        }
        match self.links.get_mut(&file.entry.inode) {
            None => {
                self.links
                    .insert(file.entry.inode, Link::Reading(Vec::new()));
                Ok(Some(file))
            }
            Some(Link::Reading(waiting)) => {
                waiting.push(file);
                Ok(None)
            }
            Some(Link::Read(content)) => {
                let content = *content;
                self.link(file, content)?;
                Ok(None)
            }
        }
    }

    /// Gives another name of a hardlinked inode the content its first name was read as.
    fn link(&mut self, mut file: FileToRead, content: Option<(ContentId, u64)>) -> Result<()> {
        let entry = content.map(|(id, size)| {
            file.entry.content = Some(id);
            file.entry.size = size;
            file.entry
        });
        self.walker.fill(file.slot, entry, true, self.staged)
    }

    /// Takes one finished read: its file version is staged and its entry filled in.
    fn take(&mut self, (file, result): ReadDone) -> Result<()> {
        let FileToRead {
            slot,
            path,
            mut entry,
        } = file;
        let made = match result {
            Ok(version) => {
                if version.changed_before {
                    self.warnings.push(format!(
                        "{}: changed while it was read; kept a later read of one version",
                        path.display()
                    ));
                }
                let id = content_id(self.reader, &version.content);
                self.staged.content(id, &version.content)?;
                entry.content = Some(id);
                // The entry describes the version read, not the one the walk saw.
                entry.size = version.content.size;
                entry.mtime_ns = version.stamp.mtime_ns;
                entry.ctime_ns = version.stamp.ctime_ns;
                entry.inode = version.stamp.inode;
                Some((id, entry.size))
            }
            Err(FileError::Source(e)) => {
                self.walker.errors.push(format!("{}: {e}", path.display()));
                None
            }
            Err(FileError::Store(e)) => return Err(e.into()),
            Err(FileError::Interrupted) => return Err(Error::Interrupted),
        };
        if entry.nlink > 1 {
            let waiting = self.links.insert(entry.inode, Link::Read(made));
            if let Some(Link::Reading(waiting)) = waiting {
                for alias in waiting {
                    self.link(alias, made)?;
                }
            }
        }
        let entry = made.map(|_| entry);
        self.walker.fill(slot, entry, true, self.staged)
    }
}

/// The next finished batch of reads; the senders live as long as the reads.
fn recv(done: &Receiver<Vec<ReadDone>>) -> Result<Vec<ReadDone>> {
    done.recv().map_err(|_| Error::Interrupted)
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

//! One pass over a source: the walk on this thread and the reads on rayon's pool, side by
//! side, until every directory is closed into its tree. A backup and a dry run both make
//! one; they differ in where the pass's output goes (the store and the staging tables, or
//! nowhere) and in what follows it (a commit, or a report).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};

use super::file::{FileError, FileReader, FileVersion};
use super::sink::{self, BlockSink, PackDestination, SinkTotals, StoredBlocks};
use super::staged::Record;
use super::walk::{FileChange, FileToRead, Step, WalkOptions, Walker};
use super::{content_id, walk, PackLedger};
use crate::catalog::{ContentId, NewPack, TreeId};
use crate::chunk::ChunkerKind;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::vault::Vault;

/// What a pass reads, and how it shows its progress.
pub(super) struct PassInput<'a> {
    pub vault: &'a Vault,
    /// Canonical source paths.
    pub sources: &'a [PathBuf],
    /// The parent point's root tree, for change detection.
    pub parent_root: Option<TreeId>,
    pub walk: &'a WalkOptions<'a>,
    pub chunker: ChunkerKind,
    /// Count the source's bytes beside the walk, for the progress total.
    pub count_total: bool,
    pub progress: &'a dyn Progress,
    pub interrupted: &'a AtomicBool,
}

/// Where a pass's output goes.
pub(super) struct PassOutput<'a, R> {
    /// The blocks the vault already holds.
    pub stored: &'a dyn StoredBlocks,
    pub destination: &'a dyn PackDestination,
    pub ledger: &'a PackLedger,
    /// New trees and file versions.
    pub record: &'a mut R,
}

/// A finished pass: the walk (its root tree, counts and errors), what the sink stored and the
/// packs written.
pub(super) struct Pass<'a> {
    pub walker: Walker<'a>,
    pub totals: SinkTotals,
    pub packs: Vec<NewPack>,
    pub bytes_read: u64,
    /// What the walk left out on purpose, then what the reads saw.
    pub warnings: Vec<String>,
}

/// Walks and reads the source of `input`, sending its output to `output`.
pub(super) fn walk_and_read<'a, R: Record>(
    input: &PassInput<'a>,
    output: PassOutput<'_, R>,
) -> Result<Pass<'a>> {
    let PassInput {
        vault,
        sources,
        progress,
        interrupted,
        ..
    } = *input;
    let chunker = vault.chunker(input.chunker);
    let bytes_read = AtomicU64::new(0);
    let mut walker = Walker::new(vault, sources, input.parent_root, input.walk)?;
    let mut warnings = Vec::new();
    let walked = AtomicBool::new(false);
    let (record, ledger) = (output.record, output.ledger);
    let ((), totals, packs) = std::thread::scope(|scope| {
        // The total, counted beside the walk that reads (unchanged files count as done). A
        // count the walk overtook is cut short and not told: the walk's own total is, below.
        let counter = input.count_total.then(|| {
            scope.spawn(|| {
                crate::failpoint::hit("backup:counting");
                let total = walk::source_bytes(sources, input.walk, &walked);
                let counted = !walked.load(Ordering::Relaxed);
                if counted {
                    progress.set_total(total);
                }
                counted
            })
        });
        let made = sink::with_sink_recorded(
            BlockSink::new(vault.codec(), output.stored),
            vault.codec(),
            output.destination,
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
                    record,
                    reader: &reader,
                    links: HashMap::new(),
                    warnings: &mut warnings,
                    unchanged_bytes: 0,
                };
                ingest.run(interrupted)
            },
        );
        walked.store(true, Ordering::Relaxed);
        let overtaken = counter.is_some_and(|count| !count.join().unwrap_or(false));
        if overtaken && made.is_ok() {
            progress.set_total(walker.stats.bytes);
        }
        made
    })?;
    warnings.splice(0..0, walk_warnings(&walker));
    Ok(Pass {
        walker,
        totals,
        packs,
        bytes_read: bytes_read.load(Ordering::Relaxed),
        warnings,
    })
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

/// The walk and the reads of one pass, side by side: the walker runs on this thread and
/// hands files to rayon's pool; their entries come back in any order and close directories
/// as they complete.
struct Ingest<'w, 'a, R> {
    walker: &'w mut Walker<'a>,
    record: &'w mut R,
    reader: &'w FileReader<'w>,
    links: HashMap<u64, Link>,
    warnings: &'w mut Vec<String>,
    /// Bytes of unchanged files reported to progress so far.
    unchanged_bytes: u64,
}

type ReadDone = (FileToRead, std::result::Result<FileVersion, FileError>);

impl<R: Record> Ingest<'_, '_, R> {
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
                    let step = self.walker.step(self.record)?;
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
        let made = content.map(|(id, size)| {
            file.entry.content = Some(id);
            file.entry.size = size;
            (file.entry, FileChange::of(file.parent_content, id))
        });
        self.walker.fill(file.slot, made, self.record)
    }

    /// Takes one finished read: its file version is recorded and its entry filled in.
    fn take(&mut self, (file, result): ReadDone) -> Result<()> {
        let FileToRead {
            slot,
            path,
            mut entry,
            parent_content,
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
                self.record.content(id, &version.content)?;
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
        let made = made.map(|(id, _)| (entry, FileChange::of(parent_content, id)));
        self.walker.fill(slot, made, self.record)
    }
}

/// The next finished batch of reads; the senders live as long as the reads.
fn recv(done: &Receiver<Vec<ReadDone>>) -> Result<Vec<ReadDone>> {
    done.recv().map_err(|_| Error::Interrupted)
}

//! `seed repair`: when packs were lost or damaged in transit, re-read the source and re-make
//! exactly the blocks those packs held, into the store. A file whose data changed since
//! prepare cannot give its old blocks back: it is listed as not repairable.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;

use super::SeedError;
use crate::catalog::{Content, Entry, EntryKind, PackState, TreeId};
use crate::chunk::ChunkerKind;
use crate::error::{Error, Result};
use crate::ingest::file::FileReader;
use crate::ingest::sink::{self, BlockSink};
use crate::progress::Progress;
use crate::store::{IdSet, PackId};
use crate::vault::Vault;

/// What a repair did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RepairReport {
    pub job: String,
    pub lost_packs: u64,
    pub blocks_lost: u64,
    pub blocks_remade: u64,
    pub files_repaired: Vec<String>,
    /// Files whose source changed (or vanished) since prepare, with the reason.
    pub not_repairable: Vec<String>,
    pub job_complete: bool,
}

/// A file of the seed point that used a lost block.
struct Damaged {
    rel: PathBuf,
    content: Content,
}

/// The files below `tree` that use a block of `lost`, with their paths in the point.
fn collect_damaged(vault: &Vault, tree: TreeId, lost: &IdSet) -> Result<Vec<Damaged>> {
    let mut out = Vec::new();
    vault.walk_tree(
        tree,
        &mut Vec::new(),
        true,
        &mut |path: &[u8], entry: &Entry| {
            let (EntryKind::File, Some(c)) = (entry.kind, entry.content) else {
                return Ok::<_, Error>(());
            };
            let content = vault.catalog().content(&c)?;
            if content.blocks.iter().any(|(b, _)| lost.contains(b)) {
                let rel = OsStr::from_bytes(path.strip_prefix(b"/").unwrap_or(path));
                out.push(Damaged {
                    rel: PathBuf::from(rel),
                    content,
                });
            }
            Ok(())
        },
    )?;
    Ok(out)
}

/// The source path of a point path: one directory is the root itself; several paths are
/// entries of the root named by their last component.
fn source_path(sources: &[PathBuf], rel: &Path) -> Option<PathBuf> {
    if sources.len() == 1 && sources[0].is_dir() {
        return Some(sources[0].join(rel));
    }
    let mut parts = rel.components();
    let first = parts.next()?.as_os_str();
    let base = sources.iter().find(|s| s.file_name() == Some(first))?;
    Some(base.join(parts.as_path()))
}

/// Runs `seed repair`. The writer lock must be held by the caller.
pub fn repair(
    vault: &Vault,
    job: &str,
    paths: &[PathBuf],
    chunker: ChunkerKind,
    progress: &dyn Progress,
    interrupted: &AtomicBool,
) -> Result<RepairReport> {
    let record = vault
        .catalog()
        .seed_job(job)?
        .ok_or_else(|| SeedError::UnknownJob { job: job.into() })?;
    let point_id = record
        .point
        .ok_or_else(|| SeedError::NoPoint { job: job.into() })?;
    let point = vault.resolve_point(&point_id.0)?;
    let lost_packs: Vec<PackId> = vault
        .catalog()
        .seed_packs(job)?
        .into_iter()
        .filter(|p| p.state == PackState::InTransit)
        .map(|p| p.pack)
        .collect();
    let mut report = RepairReport {
        job: job.into(),
        lost_packs: lost_packs.len() as u64,
        ..RepairReport::default()
    };
    if lost_packs.is_empty() {
        report.job_complete = true;
        return Ok(report);
    }
    let mut lost = IdSet::default();
    for pack in &lost_packs {
        lost.extend(
            vault
                .catalog()
                .blocks_of_pack(pack)?
                .into_iter()
                .map(|b| b.0),
        );
        // Blocks the job wrote again because another job's packs carried them too.
        lost.extend(vault.catalog().pending_copies_of_pack(pack)?);
    }
    report.blocks_lost = lost.len() as u64;
    let damaged = collect_damaged(vault, point.root_tree, &lost)?;
    let sources = crate::ingest::canonical_sources(paths)?;

    let chunker = vault.chunker(chunker);
    let bytes_read = AtomicU64::new(0);
    let (outcomes, totals, new_packs) = sink::with_sink(
        BlockSink::only(vault.codec(), lost),
        vault.codec(),
        &sink::ToStore(vault.backend()),
        |sink| {
            let reader = FileReader {
                codec: vault.codec(),
                chunker: &chunker,
                sink,
                bytes_read: &bytes_read,
                progress,
                interrupted,
            };
            damaged
                .par_iter()
                .map(|d| remake(&reader, &sources, d, interrupted))
                .collect::<Result<Vec<_>>>()
        },
    )?;
    for (d, outcome) in damaged.iter().zip(outcomes) {
        match outcome {
            None => report.files_repaired.push(d.rel.display().to_string()),
            Some(why) => report
                .not_repairable
                .push(format!("{}: {why}", d.rel.display())),
        }
    }
    report.blocks_remade = totals.blocks_new;
    // Sealed into the store first, like a backup: a rebuilt catalog forgets the same packs.
    let mut body = crate::catalog::sealed::BodyWriter::default();
    body.data_packs(&new_packs.iter().map(|p| p.id).collect::<Vec<_>>());
    body.seed_repair(job, &lost_packs);
    let (meta, meta_size) = vault.seal_into_store(&body.finish())?;
    report.job_complete = vault
        .catalog()
        .record_seed_repair(job, &new_packs, &lost_packs)?;
    vault.catalog().record_meta_pack(&meta, meta_size)?;
    Ok(report)
}

/// Re-reads one file; `None` if it still has the blocks it had at prepare.
fn remake(
    reader: &FileReader<'_>,
    sources: &[PathBuf],
    d: &Damaged,
    interrupted: &AtomicBool,
) -> Result<Option<String>> {
    if interrupted.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    let Some(path) = source_path(sources, &d.rel) else {
        return Ok(Some("not under the given source paths".into()));
    };
    match reader.read(&path) {
        Ok(content) if content.blocks == d.content.blocks => Ok(None),
        Ok(_) => Ok(Some("changed at the source since prepare".into())),
        Err(crate::ingest::file::FileError::Source(e)) => {
            Ok(Some(format!("cannot read {}: {e}", path.display())))
        }
        Err(crate::ingest::file::FileError::Store(e)) => Err(e.into()),
        Err(crate::ingest::file::FileError::Interrupted) => Err(Error::Interrupted),
    }
}

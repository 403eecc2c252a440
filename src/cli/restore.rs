//! `synvault restore`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use synvault::{BlockReader, PointReader, ReaderOptions, RestoreOptions, RestoreReport};

const RESTORE_CACHE_BYTES: usize = 32 << 20;

use super::filters::FilterArgs;
use super::output::{after_report, bytes, json};
use super::{code_for, interrupt_flag, split_point_path, Cli};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault restore latest --target /tmp/restored
  synvault restore latest~3:etc/ssh --target /tmp/ssh --source /etc
  synvault restore latest --source /home/me/Documents --to-original --overwrite

A point of one directory restores that directory's contents into the target. A point of
several sources holds each at its path below the directory they share (see README).")]
pub struct RestoreArgs {
    /// POINT[:PATH] — `latest`, `latest~N` or an id prefix, optionally a path inside it.
    point: String,
    #[command(flatten)]
    filters: FilterArgs,
    /// Directory to restore into (created if missing).
    #[arg(long, value_name = "DIR", required_unless_present = "to_original")]
    target: Option<PathBuf>,
    /// Restore each source to the path it was backed up from; where something is there
    /// already, only with --overwrite.
    #[arg(long, conflicts_with = "target")]
    to_original: bool,
    /// Restore only paths matching GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave out paths matching GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Restore into a non-empty directory; files already there (same size and mtime; with
    /// --verify, same content) are skipped.
    #[arg(long)]
    overwrite: bool,
    /// Say what would be restored, skipped and deleted; write nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// With --overwrite: remove what the target holds beneath the restored directory that
    /// the point does not.
    #[arg(long, requires = "overwrite")]
    delete: bool,
    /// Compare content to skip a file already there, and read every written file back and
    /// compare it with the point.
    #[arg(long)]
    verify: bool,
    /// Print the result as JSON, progress as JSON lines on stderr.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &RestoreArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let (query, path) = split_point_path(&args.point);
    let point = vault.select_point(query, &args.filters.filter())?;
    // Restore reads each block about once: a small cache (for blocks shared between files)
    // keeps memory low; the work is spread over files and blocks, not read ahead.
    let blocks = Arc::new(BlockReader::with_options(
        &vault,
        ReaderOptions {
            cache_bytes: RESTORE_CACHE_BYTES,
            readahead_threads: 0,
            ..ReaderOptions::default()
        },
    )?);
    let reader = PointReader::new(&vault, point, blocks);
    let options = RestoreOptions {
        target: args.target.clone().unwrap_or_default(),
        path: path.as_bytes().to_vec(),
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        overwrite: args.overwrite,
        dry_run: args.dry_run,
        delete: args.delete,
        verify: args.verify,
    };
    let console = cli.console(args.json);
    let meter = console.progress("restore");
    let started = std::time::Instant::now();
    let report = if args.to_original {
        synvault::reassembly::restore::restore_to_original(
            &reader,
            &options,
            &meter,
            &interrupt_flag(),
        )
    } else {
        synvault::restore(&reader, &options, &meter, &interrupt_flag())
    };
    meter.finish(report.is_ok());
    let report = report?;
    console.problems("warning", &report.warnings);
    console.problems("damaged", &report.damaged);
    let secs = started.elapsed().as_secs_f64();
    let code = code_for(!report.damaged.is_empty());
    if args.json {
        return after_report(code, json(&report));
    }
    after_report(code, print_report(&report, secs))
}

/// The restore is done: what follows only tells about it.
fn print_report(report: &RestoreReport, secs: f64) -> anyhow::Result<()> {
    if report.dry_run {
        outln!(
            "would restore {} files, {} directories, {}; {} already there; {} to delete",
            report.files,
            report.dirs,
            bytes(report.bytes),
            report.skipped_existing,
            report.deleted
        );
        return Ok(());
    }
    outln!(
        "restored {} files, {} directories, {} in {secs:.2} s ({:.0} MB/s){}",
        report.files,
        report.dirs,
        bytes(report.bytes),
        report.bytes as f64 / 1e6 / secs.max(1e-9),
        if report.skipped_existing > 0 {
            format!(", {} already there", report.skipped_existing)
        } else {
            String::new()
        }
    );
    if report.deleted > 0 {
        outln!("deleted {} entries the point does not hold", report.deleted);
    }
    if report.verified > 0 {
        outln!(
            "verified {} files: read back, equal to the point",
            report.verified
        );
    }
    if !report.damaged.is_empty() {
        outln!(
            "{} files left out: their data is damaged (nothing is written under their names)",
            report.damaged.len()
        );
    }
    Ok(())
}

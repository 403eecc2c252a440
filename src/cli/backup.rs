//! `synvault backup`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use synvault::ingest::{sink::ToStore, PackLedger, Target};
use synvault::lock::{Acquired, LockNote};
use synvault::{BackupOptions, BackupReport, ChunkerKind, Vault};

use super::output::{after_report, bytes, json, short, Bar};
use super::{code_for, interrupt_flag_with, Cli};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChunkerArg {
    /// Content-defined blocks (FastCDC, 256 KiB .. 4 MiB), for files.
    Cdc,
    /// Fixed 4 MiB blocks, for disk images.
    Fixed,
}

impl From<ChunkerArg> for ChunkerKind {
    fn from(arg: ChunkerArg) -> ChunkerKind {
        match arg {
            ChunkerArg::Cdc => ChunkerKind::Cdc,
            ChunkerArg::Fixed => ChunkerKind::Fixed,
        }
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Leave out paths matching PATTERN (glob; repeatable).
    #[arg(long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Read exclude patterns from FILE, one per line.
    #[arg(long, value_name = "FILE")]
    exclude_file: Vec<PathBuf>,
    /// Tag the point (repeatable).
    #[arg(long, value_name = "TAG")]
    tag: Vec<String>,
    /// Do not cross file system boundaries.
    #[arg(long)]
    one_file_system: bool,
    /// How to cut files into blocks.
    #[arg(long, value_enum, default_value = "cdc")]
    chunker: ChunkerArg,
    /// Compare against this point instead of the newest complete point of the source.
    #[arg(long, value_name = "POINT")]
    parent: Option<String>,
    /// Read every file, even the unchanged ones.
    #[arg(long)]
    force: bool,
    /// Protect the point from forgetting by policy until DATE (UTC: YYYY-MM-DD[THH:MM[:SS]])
    /// or `forever`.
    #[arg(long, value_name = "DATE", value_parser = super::parse_until)]
    retain_until: Option<i64>,
    /// Record the point at TIME (UTC: YYYY-MM-DD[THH:MM[:SS]]) instead of now, to import a
    /// history.
    #[arg(long, value_name = "TIME", value_parser = synvault::time::parse_utc)]
    time: Option<i64>,
    /// After a successful backup, forget the points the retention policy does not keep.
    #[arg(long)]
    forget: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &BackupArgs) -> anyhow::Result<u8> {
    let vault = Arc::new(cli.open_vault()?);
    let mut exclude = args.exclude.clone();
    for file in &args.exclude_file {
        exclude.extend(synvault::filter::read_pattern_file(file)?);
    }
    let command = format!(
        "backup {}",
        args.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (lock, acquired) = cli.lock_writer(&vault, &command)?;
    if let Acquired::TakenOver(holder) = acquired {
        eprintln!("warning: took over the lock left by {holder}, which is no longer running");
    }
    let options = BackupOptions {
        paths: args.paths.clone(),
        exclude,
        tags: args.tag.clone(),
        one_file_system: args.one_file_system,
        chunker: args.chunker.into(),
        parent: args.parent.clone(),
        force: args.force,
        retain_until_ns: args.retain_until,
        time_ns: args.time,
    };
    let bar = Bar::new("backup");
    let ledger = Arc::new(PackLedger::new());
    let interrupted = interrupt_flag_with(last_words(&vault, &ledger, lock.note()));
    let report = synvault::ingest::backup_recorded(
        &vault,
        &options,
        Target::Store,
        &bar,
        &interrupted,
        &ledger,
    );
    bar.finish();
    let report = report?;
    let forgotten = if args.forget {
        let forgot = synvault::retention::forget::forget(
            &vault,
            &Default::default(),
            synvault::time::now_ns(),
        )?;
        Some(forgot.forgotten.len())
    } else {
        None
    };
    drop(lock);
    if let Some(n) = forgotten {
        eprintln!("forgot {n} points the retention policy does not keep");
    }
    for error in &report.errors {
        eprintln!("warning: skipped {error}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let code = code_for(!report.errors.is_empty());
    after_report(code, print_report(&report, args.json))
}

/// The point is committed by now: what follows only tells about it.
fn print_report(report: &BackupReport, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(report);
    }
    let parent = report
        .parent
        .as_deref()
        .map(|p| format!(" (parent {})", short(p)))
        .unwrap_or_default();
    outln!("point {} {}{parent}", short(&report.point), report.state);
    outln!(
        "  files  {} ({} changed), {} directories, {}",
        report.files,
        report.files_changed,
        report.dirs,
        bytes(report.bytes)
    );
    outln!(
        "  read   {}, new {}, stored {} in {} packs",
        bytes(report.bytes_read),
        bytes(report.bytes_new),
        bytes(report.bytes_stored),
        report.packs_written
    );
    let mbps = report.bytes_read as f64 / 1e6 / report.seconds.max(1e-9);
    outln!("  took   {:.2} s ({mbps:.0} MB/s read)", report.seconds);
    if !report.errors.is_empty() {
        outln!(
            "  {} paths could not be read: the point is partial",
            report.errors.len()
        );
    }
    Ok(())
}

/// What the interrupt watchdog does before it ends a backup stuck in a read: take back the
/// packs not committed, clear the lock's holder name. The vault is held weakly, so a backup
/// that ends normally still closes its catalog.
fn last_words(
    vault: &Arc<Vault>,
    ledger: &Arc<PackLedger>,
    note: Option<LockNote>,
) -> Box<dyn FnOnce() + Send> {
    let (vault, ledger) = (Arc::downgrade(vault), ledger.clone());
    Box::new(move || {
        if let Some(vault) = vault.upgrade() {
            let _ = synvault::ingest::abandon(&ToStore(vault.backend()), &ledger);
        }
        if let Some(note) = note {
            note.clear();
        }
    })
}

//! `synvault backup`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use synvault::ingest::{sink::ToStore, PackLedger, Target};
use synvault::lock::{Acquired, LockNote};
use synvault::{BackupOptions, BackupReport, ChunkerKind, DryRunReport, IngestCounts, Vault};

use super::output::{after_report, bytes, json, short, Bar};
use super::{code_for, interrupt_flag, interrupt_flag_with, size, Cli};

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
    /// Leave out paths matching PATTERN (repeatable; restic's rules, --help tells them).
    ///
    /// A pattern is matched against the whole absolute path of each file and directory, on
    /// whole components: `foo` leaves out every file or directory named foo, at any depth,
    /// but not `foobar`. A pattern that does not start with `/` may match from any component
    /// (`Documents/*.txt` leaves out the .txt files directly inside any Documents directory);
    /// a leading `/` anchors it at the root (`/home/*/.cache`); a trailing `/` is ignored.
    /// `*`, `?` and `[abc]` stay within one component; `**` spans any number of them
    /// (`foo/**/bar`). `!PATTERN` takes back what the patterns before it left out (not below
    /// a directory already left out). A directory left out is not walked.
    #[arg(long, short = 'e', value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Like --exclude, ignoring the case of names (repeatable).
    #[arg(long, value_name = "PATTERN")]
    iexclude: Vec<String>,
    /// Read exclude patterns from FILE, one per line (blank lines and # comments skipped,
    /// $VAR expanded, $$ is a $).
    #[arg(long, value_name = "FILE")]
    exclude_file: Vec<PathBuf>,
    /// Leave out the contents of directories holding a valid CACHEDIR.TAG (the tag is kept).
    #[arg(long)]
    exclude_caches: bool,
    /// Leave out the contents of directories holding a file NAME, optionally only if it
    /// starts with HEADER (the file itself is kept; repeatable).
    #[arg(long, value_name = "NAME[:HEADER]")]
    exclude_if_present: Vec<String>,
    /// Leave out files larger than SIZE (e.g. 10M, 1G; binary units).
    #[arg(long, value_name = "SIZE")]
    exclude_larger_than: Option<String>,
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
    /// Record the point as coming from host NAME instead of this machine's name.
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Read what would be read and say what would be stored, with sizes; write nothing.
    #[arg(long, short = 'n', conflicts_with = "forget")]
    dry_run: bool,
    /// After a successful backup, forget the points the retention policy does not keep.
    #[arg(long)]
    forget: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &BackupArgs) -> anyhow::Result<u8> {
    let options = backup_options(args)?;
    let vault = Arc::new(cli.open_vault()?);
    if args.dry_run {
        return dry_run(&vault, &options, args.json);
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

fn backup_options(args: &BackupArgs) -> anyhow::Result<BackupOptions> {
    let mut exclude = args.exclude.clone();
    for file in &args.exclude_file {
        exclude.extend(synvault::filter::read_pattern_file(file)?);
    }
    let exclude_larger_than = args
        .exclude_larger_than
        .as_deref()
        .map(size::file_size_limit)
        .transpose()?;
    Ok(BackupOptions {
        paths: args.paths.clone(),
        exclude,
        iexclude: args.iexclude.clone(),
        exclude_caches: args.exclude_caches,
        exclude_if_present: args.exclude_if_present.clone(),
        exclude_larger_than,
        tags: args.tag.clone(),
        one_file_system: args.one_file_system,
        chunker: args.chunker.into(),
        parent: args.parent.clone(),
        force: args.force,
        retain_until_ns: args.retain_until,
        time_ns: args.time,
        host: args.host.clone(),
    })
}

/// A dry run holds no writer lock: it writes nothing, and only reads the catalog.
fn dry_run(vault: &Vault, options: &BackupOptions, as_json: bool) -> anyhow::Result<u8> {
    let bar = Bar::new("dry run");
    let report = synvault::dry_run(vault, options, &bar, &interrupt_flag());
    bar.finish();
    let report = report?;
    for error in &report.errors {
        eprintln!("warning: would skip {error}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let code = code_for(!report.errors.is_empty());
    after_report(code, print_dry_run(&report, as_json))
}

fn print_dry_run(report: &DryRunReport, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(report);
    }
    let parent = report
        .parent
        .as_deref()
        .map(|p| format!(" against point {}", short(p)))
        .unwrap_or_default();
    outln!("dry run of {}{parent}: nothing was written", report.source);
    print_counts(&report.counts)?;
    outln!(
        "  would store {} in {} packs",
        bytes(report.counts.bytes_stored),
        report.packs
    );
    outln!("  took   {:.2} s", report.seconds);
    Ok(())
}

/// The files line and the read line, shared by a backup's report and a dry run's.
fn print_counts(counts: &IngestCounts) -> anyhow::Result<()> {
    let kinds: Vec<String> = [
        (counts.files_new, "new"),
        (counts.files_changed, "changed"),
        (counts.files_unchanged, "unchanged"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, kind)| format!("{n} {kind}"))
    .collect();
    let kinds = match kinds.is_empty() {
        true => String::new(),
        false => format!(" ({})", kinds.join(", ")),
    };
    outln!(
        "  files  {}{kinds}, {} directories, {}",
        counts.files,
        counts.dirs,
        bytes(counts.bytes)
    );
    outln!(
        "  read   {}, new {} in {} blocks",
        bytes(counts.bytes_read),
        bytes(counts.bytes_new),
        counts.blocks_new
    );
    Ok(())
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
    print_counts(&report.counts)?;
    outln!(
        "  stored {} in {} packs",
        bytes(report.counts.bytes_stored),
        report.packs_written
    );
    let mbps = report.counts.bytes_read as f64 / 1e6 / report.seconds.max(1e-9);
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

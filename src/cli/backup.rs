//! `synvault backup`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use synvault::ingest::{sink::ToStore, PackLedger, Target};
use synvault::LockNote;
use synvault::{BackupOptions, BackupReport, ChunkerKind, DryRunReport, IngestCounts, Vault};

use super::console::Console;
use super::output::{after_report, bytes, json, short};
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
#[command(after_help = "Examples:
  synvault backup ~/Documents ~/Pictures --tag daily
  synvault backup / --one-file-system --exclude-caches -e /var/tmp -e '*.iso'
  synvault backup ~/Documents --dry-run -v
  synvault backup /srv/data --json 2> progress.jsonl

Exclude patterns follow restic's rules: `synvault man backup` tells them.")]
pub struct BackupArgs {
    /// Files and directories to back up.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Leave out paths matching PATTERN (repeatable).
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
    /// Like --exclude, ignoring the case of names.
    #[arg(long, value_name = "PATTERN")]
    iexclude: Vec<String>,
    /// Read exclude patterns from FILE, one per line.
    ///
    /// Blank lines and # comments are skipped, $VAR is expanded, $$ is a $.
    #[arg(long, value_name = "FILE")]
    exclude_file: Vec<PathBuf>,
    /// Leave out cache directories marked by a CACHEDIR.TAG.
    ///
    /// The contents of a directory holding a valid CACHEDIR.TAG are left out; the tag is kept.
    #[arg(long)]
    exclude_caches: bool,
    /// Leave out directories holding a file NAME[:HEADER] (repeatable).
    ///
    /// The contents of a directory holding a file NAME are left out, optionally only if the
    /// file starts with HEADER; the file itself is kept.
    #[arg(long, value_name = "NAME")]
    exclude_if_present: Vec<String>,
    /// Leave out files larger than SIZE (10M, 1G: binary units).
    #[arg(long, value_name = "SIZE")]
    exclude_larger_than: Option<String>,
    /// Tag the point (repeatable).
    #[arg(long, value_name = "TAG")]
    tag: Vec<String>,
    /// Do not cross file system boundaries.
    #[arg(long)]
    one_file_system: bool,
    /// Blocks: cdc (files) or fixed (disk images).
    #[arg(long, value_enum, default_value = "cdc", hide_possible_values = true)]
    chunker: ChunkerArg,
    /// Compare with POINT, not the source's newest complete point.
    #[arg(long, value_name = "POINT")]
    parent: Option<String>,
    /// Read every file, even the unchanged ones.
    #[arg(long)]
    force: bool,
    /// Keep the point from `forget` until DATE or `forever`.
    ///
    /// DATE is UTC: YYYY-MM-DD[THH:MM[:SS]]; the point is protected as by `points protect`.
    #[arg(long, value_name = "DATE", value_parser = super::parse_until)]
    retain_until: Option<i64>,
    /// Record the point at TIME, not now (to import a history).
    ///
    /// TIME is UTC: YYYY-MM-DD[THH:MM[:SS]].
    #[arg(long, value_name = "TIME", value_parser = synvault::time::parse_utc)]
    time: Option<i64>,
    /// Record the point as from host NAME, not this machine.
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Say what would be stored, with sizes; write nothing.
    ///
    /// Reads what a backup would read, to count the new blocks.
    #[arg(long, short = 'n', conflicts_with = "forget")]
    dry_run: bool,
    /// Then forget the points the retention policy does not keep.
    #[arg(long)]
    forget: bool,
    /// Print the result as JSON, progress as JSON lines on stderr.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &BackupArgs) -> anyhow::Result<u8> {
    let options = backup_options(args)?;
    let console = cli.console(args.json);
    let vault = Arc::new(cli.open_vault()?);
    if args.dry_run {
        return dry_run(&vault, &options, console, args.json);
    }
    let command = format!(
        "backup {}",
        args.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let lock = cli.lock_writer(&vault, &command)?;
    let meter = console.progress("backup");
    let ledger = Arc::new(PackLedger::new());
    let interrupted = interrupt_flag_with(last_words(&vault, &ledger, lock.note()));
    let report = synvault::ingest::backup_recorded(
        &vault,
        &options,
        Target::Store,
        &meter,
        &interrupted,
        &ledger,
    );
    meter.finish(report.is_ok());
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
        console.note(&format!(
            "forgot {n} points the retention policy does not keep"
        ));
    }
    tell_problems(console, "skipped", &report.errors, &report.warnings);
    let code = code_for(!report.errors.is_empty());
    after_report(code, print_report(&report, args.json))
}

fn backup_options(args: &BackupArgs) -> anyhow::Result<BackupOptions> {
    let mut exclude = args.exclude.clone();
    for file in &args.exclude_file {
        exclude.extend(synvault::read_pattern_file(file)?);
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

/// Paths left out (each after `skipped`) and warnings, cut short unless -v.
fn tell_problems(console: Console, skipped: &str, errors: &[String], warnings: &[String]) {
    let errors: Vec<String> = errors.iter().map(|e| format!("{skipped} {e}")).collect();
    console.problems("warning", &errors);
    console.problems("warning", warnings);
}

/// A dry run holds no writer lock: it writes nothing, and only reads the catalog.
fn dry_run(
    vault: &Vault,
    options: &BackupOptions,
    console: Console,
    as_json: bool,
) -> anyhow::Result<u8> {
    let meter = console.progress("dry run");
    let report = synvault::dry_run(vault, options, &meter, &interrupt_flag());
    meter.finish(report.is_ok());
    let report = report?;
    tell_problems(console, "would skip", &report.errors, &report.warnings);
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

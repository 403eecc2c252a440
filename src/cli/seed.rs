//! `synvault seed prepare|check|import|status|repair`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use synvault::seed::prepare::PrepareReport;
use synvault::seed::{self, import::ImportReport, prepare::PrepareOptions};
use synvault::{exit, BackupOptions};

use super::backup::ChunkerArg;
use super::output::{after_report, bytes, json, short};
use super::{code_for, interrupt_flag, size, Cli};

#[derive(Debug, Args)]
#[command(
    after_help = "Example (prepare at the source, import where the vault lives):
  synvault seed prepare --job first --disk /mnt/disk1 --disk /mnt/disk2 /srv/data
  synvault seed import --job first /mnt/disk1 /mnt/disk2"
)]
pub struct SeedArgs {
    #[command(subcommand)]
    command: SeedCommand,
}

#[derive(Debug, Subcommand)]
enum SeedCommand {
    /// Write a full backup onto disk directories to ship (the point awaits their import).
    #[command(after_help = "Examples:
  synvault seed prepare --job first --disk /mnt/disk1 --disk /mnt/disk2 /srv/data
  synvault seed prepare --job first --disk /mnt/usb --disk-size 900G --json /srv/data")]
    Prepare(PrepareArgs),
    /// Re-read disks and compare them with their journals (no vault or passphrase needed).
    #[command(after_help = "Example:
  synvault seed check /mnt/disk1 /mnt/disk2")]
    Check(CheckArgs),
    /// Import a job's disks into the store (needs the vault, not the passphrase).
    #[command(after_help = "Examples:
  synvault seed import --job first /mnt/disk1 /mnt/disk2
  synvault seed import --job first --json /mnt/disk1 2> progress.jsonl")]
    Import(ImportArgs),
    /// Show each seed job: state, disks seen and missing, packs imported, bad packs.
    #[command(after_help = "Examples:
  synvault seed status
  synvault seed status --job first --json")]
    Status(StatusArgs),
    /// Re-make from the source the blocks of packs lost in transit.
    #[command(after_help = "Example:
  synvault seed repair --job first /srv/data")]
    Repair(RepairArgs),
}

#[derive(Debug, Args)]
struct PrepareArgs {
    /// Name of the seed job.
    #[arg(long)]
    job: String,
    /// A disk directory (repeatable, filled in order).
    #[arg(long = "disk", value_name = "DIR", required = true)]
    disks: Vec<PathBuf>,
    /// Room to use on each disk (e.g. 250M, 8T); default: its free space.
    #[arg(long, value_name = "SIZE")]
    disk_size: Option<String>,
    /// Leave out paths matching PATTERN (repeatable).
    #[arg(long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// How to cut files into blocks.
    #[arg(long, value_enum, default_value = "cdc")]
    chunker: ChunkerArg,
    /// Use a disk even if it holds the journal of a job not imported yet (that job can then
    /// no longer be imported from it).
    #[arg(long)]
    force: bool,
    /// Print the result as JSON, progress as JSON lines on stderr.
    #[arg(long)]
    json: bool,
    /// Files and directories to back up.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Disk directories.
    #[arg(required = true)]
    disks: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Name of the seed job.
    #[arg(long)]
    job: String,
    /// Disk directories, in any order. None: take in the job's packs that were imported into
    /// the vault's bucket from another machine.
    disks: Vec<PathBuf>,
    /// Print the result as JSON, progress as JSON lines on stderr.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Only this job.
    #[arg(long)]
    job: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RepairArgs {
    /// Name of the seed job.
    #[arg(long)]
    job: String,
    /// How the job's files were cut into blocks.
    #[arg(long, value_enum, default_value = "cdc")]
    chunker: ChunkerArg,
    /// The source paths the job was prepared from.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub fn run(cli: &Cli, args: &SeedArgs) -> anyhow::Result<u8> {
    match &args.command {
        SeedCommand::Prepare(a) => prepare(cli, a),
        SeedCommand::Check(a) => check(a),
        SeedCommand::Import(a) => import(cli, a),
        SeedCommand::Status(a) => status(cli, a),
        SeedCommand::Repair(a) => repair(cli, a),
    }
}

fn prepare(cli: &Cli, args: &PrepareArgs) -> anyhow::Result<u8> {
    let disk_size = args.disk_size.as_deref().map(size::disk_size).transpose()?;
    let vault = cli.open_vault()?;
    let console = cli.console(args.json);
    let _lock = cli.lock_writer(&vault, &format!("seed prepare --job {}", args.job))?;
    let options = PrepareOptions {
        job: args.job.clone(),
        disks: args.disks.clone(),
        disk_size,
        force: args.force,
        backup: BackupOptions {
            paths: args.paths.clone(),
            exclude: args.exclude.clone(),
            chunker: args.chunker.into(),
            ..BackupOptions::default()
        },
    };
    let meter = console.progress("seed");
    let report = seed::prepare::prepare(&vault, &options, &meter, &interrupt_flag());
    meter.finish(report.is_ok());
    let report = report?;
    let skipped: Vec<String> = report
        .backup
        .errors
        .iter()
        .map(|e| format!("skipped {e}"))
        .collect();
    console.problems("warning", &skipped);
    after_report(
        code_for(!report.backup.errors.is_empty()),
        print_prepared(&report, args),
    )
}

/// The job is prepared: what follows only tells about it.
fn print_prepared(prepared: &PrepareReport, args: &PrepareArgs) -> anyhow::Result<()> {
    if args.json {
        return json(prepared);
    }
    let report = &prepared.backup;
    outln!(
        "seed job {:?}: point {} awaits import; {} in {} packs written to disk in {:.2} s ({:.0} MB/s read)",
        args.job,
        short(&report.point),
        bytes(report.counts.bytes_stored),
        report.packs_written,
        report.seconds,
        report.counts.bytes_read as f64 / 1e6 / report.seconds.max(1e-9)
    );
    for disk in &prepared.disks {
        match disk.packs {
            0 => outln!("disk {} {}: not needed", disk.number, disk.path.display()),
            n => outln!(
                "disk {} {}: {n} packs, {}",
                disk.number,
                disk.path.display(),
                bytes(disk.bytes)
            ),
        }
    }
    outln!(
        "ship the disks, then run `synvault seed import --job {} DISK...` where the vault lives",
        args.job
    );
    Ok(())
}

fn check(args: &CheckArgs) -> anyhow::Result<u8> {
    let mut bad = 0;
    for disk in &args.disks {
        let report = seed::check::check(disk)?;
        for b in &report.bad {
            outln!("bad: pack {} on {}: {}", b.pack, disk.display(), b.reason);
        }
        outln!(
            "{}: job {:?}, disk {} of {}, {} packs, {}: {}",
            disk.display(),
            report.job,
            report.disk_index,
            report.disk_count,
            report.packs,
            bytes(report.bytes),
            if report.bad.is_empty() {
                "ok".to_string()
            } else {
                format!("{} bad packs", report.bad.len())
            }
        );
        bad += report.bad.len();
    }
    Ok(code_for(bad > 0))
}

fn import(cli: &Cli, args: &ImportArgs) -> anyhow::Result<u8> {
    let place = cli.place()?;
    let meter = cli.console(args.json).progress("import");
    let report = if args.disks.is_empty() {
        seed::import::settle_from_store(&place, &args.job)
    } else {
        seed::import::import(&place, &args.job, &args.disks, &meter, &interrupt_flag())
    };
    meter.finish(report.is_ok());
    let report = report?;
    after_report(
        code_for(!report.bad.is_empty()),
        print_import(&report, args),
    )
}

/// The import is done: what follows only tells about it.
fn print_import(report: &ImportReport, args: &ImportArgs) -> anyhow::Result<()> {
    if args.json {
        return json(report);
    }
    for b in &report.bad {
        outln!(
            "refused: pack {} on {}: {}",
            b.pack,
            b.disk.display(),
            b.reason
        );
    }
    if report.nothing_to_do() {
        outln!("nothing to do: every pack on these disks is already in the store");
    } else {
        outln!(
            "imported {} packs, {} in {:.2} s ({:.0} MB/s){}",
            report.packs_imported,
            bytes(report.bytes_imported),
            report.seconds,
            report.bytes_imported as f64 / 1e6 / report.seconds.max(1e-9),
            if report.packs_already_there > 0 {
                format!(", {} already there", report.packs_already_there)
            } else {
                String::new()
            }
        );
    }
    if report.job_complete {
        outln!(
            "seed job {:?} is imported: its points are complete",
            args.job
        );
    }
    Ok(())
}

fn status(cli: &Cli, args: &StatusArgs) -> anyhow::Result<u8> {
    let out = seed::status::status(&cli.place()?, args.job.as_deref())?;
    if args.json {
        json(&out)?;
        return Ok(exit::SUCCESS);
    }
    for s in &out {
        outln!(
            "{}: {} — disks seen {:?} of {}{}, packs {}/{} ({} of {}){}",
            s.job,
            s.state,
            s.disks_seen,
            s.disk_count,
            if s.disks_missing.is_empty() {
                String::new()
            } else {
                format!(" (missing {:?})", s.disks_missing)
            },
            s.packs_imported,
            s.packs_total,
            bytes(s.bytes_imported),
            bytes(s.bytes_total),
            if s.bad_packs.is_empty() {
                String::new()
            } else {
                format!(", {} bad packs", s.bad_packs.len())
            }
        );
        for b in &s.bad_packs {
            outln!("  bad pack {} (disk {}): {}", b.pack, b.disk, b.reason);
        }
    }
    if out.is_empty() {
        outln!("no seed jobs");
    }
    Ok(exit::SUCCESS)
}

fn repair(cli: &Cli, args: &RepairArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let _lock = cli.lock_writer(&vault, &format!("seed repair --job {}", args.job))?;
    let console = cli.console(false);
    let meter = console.progress("repair");
    let report = seed::repair::repair(
        &vault,
        &args.job,
        &args.paths,
        args.chunker.into(),
        &meter,
        &interrupt_flag(),
    );
    meter.finish(report.is_ok());
    let report = report?;
    for file in &report.not_repairable {
        outln!("not repairable: {file}");
    }
    if console.is_verbose() {
        for file in &report.files_repaired {
            outln!("repaired from: {file}");
        }
    }
    outln!(
        "{} lost packs, {} blocks lost, {} re-made from {} files{}",
        report.lost_packs,
        report.blocks_lost,
        report.blocks_remade,
        report.files_repaired.len(),
        if report.job_complete {
            format!("; seed job {:?} is complete", args.job)
        } else {
            String::new()
        }
    );
    Ok(code_for(!report.job_complete))
}

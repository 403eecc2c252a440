//! `synvault verify`.

use clap::Args;
use synvault::verify::{AffectedFile, VerifyReport};
use synvault::VerifyOptions;

use super::output::{after_report, bytes, json, short};
use super::{code_for, Cli};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault verify
  synvault verify --read-data -v
  synvault verify --read-data --json 2> progress.jsonl > report.json")]
pub struct VerifyArgs {
    /// Read every pack and check every block.
    #[arg(long)]
    read_data: bool,
    /// Print the result as JSON, progress as JSON lines on stderr.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &VerifyArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let console = cli.console(args.json);
    let meter = console.progress("verify");
    let report = synvault::verify(
        &vault,
        VerifyOptions {
            read_data: args.read_data,
        },
        &meter,
    );
    meter.finish(report.is_ok());
    let report = report?;
    after_report(
        code_for(!report.is_clean()),
        print_report(&report, args, console.is_verbose()),
    )
}

/// Verify has run: what follows only tells about it (with `verbose`, the unreferenced packs
/// by name).
fn print_report(report: &VerifyReport, args: &VerifyArgs, verbose: bool) -> anyhow::Result<()> {
    if args.json {
        return json(report);
    }
    for problem in &report.problems {
        outln!("damaged: {problem}");
    }
    for bad in &report.bad_trees {
        outln!(
            "damaged: tree {} at {} in point {}: {}",
            bad.tree,
            bad.path,
            bad.point.get(..8).unwrap_or(&bad.point),
            bad.problem
        );
    }
    for file in &report.affected {
        outln!("affected: point {} file {}", short(&file.point), file.path);
    }
    for file in &report.not_restorable {
        outln!(
            "not restorable: point {} file {} (a block it uses is not in a stored pack)",
            short(&file.point),
            file.path
        );
    }
    if !report.unreferenced_packs.is_empty() {
        outln!(
            "{} unreferenced packs (left by an interrupted backup or import; no point uses them, they are not damage)",
            report.unreferenced_packs.len()
        );
        if verbose {
            for pack in &report.unreferenced_packs {
                outln!("unreferenced: pack {pack}");
            }
        }
    }
    outln!(
        "checked {} packs, {} blocks{}: {}",
        report.packs_checked,
        report.blocks_checked,
        if args.read_data {
            format!(", read {}", bytes(report.bytes_read))
        } else {
            String::new()
        },
        if report.is_clean() {
            "no errors".to_string()
        } else {
            format!(
                "{} damaged packs, {} damaged blocks{}",
                report.damaged_packs.len(),
                report.damaged_blocks,
                not_restorable_summary(&report.not_restorable)
            )
        }
    );
    Ok(())
}

/// ", N files of M points not restorable", or nothing.
fn not_restorable_summary(files: &[AffectedFile]) -> String {
    if files.is_empty() {
        return String::new();
    }
    let points: std::collections::HashSet<&str> = files.iter().map(|f| f.point.as_str()).collect();
    format!(
        ", {} files of {} points not restorable",
        files.len(),
        points.len()
    )
}

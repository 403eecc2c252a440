//! `synvault catalog rebuild`.

use clap::{Args, Subcommand};
use synvault::exit;
use synvault::rebuild::{RebuildOptions, RebuildReport};

use super::output::{after_report, json, short};
use super::Cli;

#[derive(Debug, Args)]
#[command(after_help = "Example:
  synvault catalog rebuild")]
pub struct CatalogArgs {
    #[command(subcommand)]
    command: CatalogCommand,
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Recreate the catalog from the store alone (packs and sealed metadata).
    ///
    /// Needs the passphrase. Refuses to replace a catalog that opens cleanly unless --force;
    /// the old file is kept aside as catalog.db.replaced-<time>.
    #[command(after_help = "Examples:
  synvault catalog rebuild
  synvault catalog rebuild --force --json")]
    Rebuild(RebuildArgs),
}

#[derive(Debug, Args)]
struct RebuildArgs {
    /// Replace the catalog even if it opens cleanly.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON, progress as JSON lines on stderr.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &CatalogArgs) -> anyhow::Result<u8> {
    match &args.command {
        CatalogCommand::Rebuild(args) => rebuild(cli, args),
    }
}

fn rebuild(cli: &Cli, args: &RebuildArgs) -> anyhow::Result<u8> {
    let place = cli.place()?;
    place.require_vault()?;
    let pass = cli.passphrase(false)?;
    let meter = cli.console(args.json).progress("rebuild");
    let options = RebuildOptions { force: args.force };
    let report = synvault::rebuild::rebuild_in(place, &pass, options, &meter);
    meter.finish(report.is_ok());
    let report = report?;
    let code = if report.points_lost.is_empty() && report.unreadable_packs.is_empty() {
        exit::SUCCESS
    } else {
        exit::INCOMPLETE
    };
    after_report(code, print_report(&report, args))
}

/// The rebuild is done: what follows only tells about it.
fn print_report(report: &RebuildReport, args: &RebuildArgs) -> anyhow::Result<()> {
    if args.json {
        return json(report);
    }
    for lost in &report.points_lost {
        outln!("lost: point {}: {}", short(&lost.id), lost.reason);
    }
    for pack in &report.unreadable_packs {
        outln!("unreadable: pack {pack}");
    }
    if let Some(old) = &report.old_catalog {
        outln!("the replaced catalog is kept as {old}");
    }
    outln!(
        "rebuilt the catalog in {:.1} s: {} points ({} lost), {} packs, {} metadata packs, {} blocks, {} seed jobs ({} packs in transit)",
        report.seconds,
        report.points_recovered,
        report.points_lost.len(),
        report.packs,
        report.metadata_packs,
        report.blocks,
        report.seed_jobs,
        report.packs_in_transit
    );
    Ok(())
}

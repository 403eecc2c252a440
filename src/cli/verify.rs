//! `synvault verify`.

use clap::Args;
use synvault::VerifyOptions;

use super::output::{bytes, json, Bar};
use super::{code_for, Cli};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Read every pack and check every block.
    #[arg(long)]
    read_data: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &VerifyArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let bar = Bar::new("verify");
    let report = synvault::verify(
        &vault,
        VerifyOptions {
            read_data: args.read_data,
        },
        &bar,
    );
    bar.finish();
    let report = report?;
    if args.json {
        json(&report)?;
        return Ok(code_for(!report.is_clean()));
    }
    for problem in &report.problems {
        println!("damaged: {problem}");
    }
    for bad in &report.bad_trees {
        println!(
            "damaged: tree {} at {} in point {}: {}",
            bad.tree,
            bad.path,
            bad.point.get(..8).unwrap_or(&bad.point),
            bad.problem
        );
    }
    for file in &report.affected {
        println!("affected: point {} file {}", &file.point[..8], file.path);
    }
    if !report.unreferenced_packs.is_empty() {
        println!(
            "{} unreferenced packs (left by an interrupted backup; prune reclaims them)",
            report.unreferenced_packs.len()
        );
    }
    println!(
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
                "{} damaged packs, {} damaged blocks",
                report.damaged_packs.len(),
                report.damaged_blocks
            )
        }
    );
    Ok(code_for(!report.is_clean()))
}

//! `synvault find`: where a name appears across points.

use clap::Args;
use synvault::find::{find, Pattern};

use super::filters::FilterArgs;
use super::output::{bytes, json};
use super::Cli;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault find '*.pdf'
  synvault find --path 'home/*/Documents/**/report*' --since 2026-01-01
  synvault find hosts --point latest --point latest~7 --source /etc --json

Each path is listed once, with the first and last time it appears and in how many points.")]
pub struct FindArgs {
    /// A glob on the name (`*`, `?`, `[...]`); with --path, on the path from the point's root.
    pattern: String,
    /// Match the whole path (`**` spans directories), not only the name.
    #[arg(long)]
    path: bool,
    /// Look only in this point (repeatable; default: every point the filters leave).
    #[arg(long, value_name = "POINT")]
    point: Vec<String>,
    #[command(flatten)]
    filters: FilterArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &FindArgs) -> anyhow::Result<u8> {
    let catalog = cli.open_catalog()?;
    let filter = args.filters.filter();
    let all = catalog.points()?;
    let mut points = match args.point.as_slice() {
        [] => filter.apply(all),
        queries => queries
            .iter()
            .map(|q| synvault::select::select(all.clone(), q, &filter))
            .collect::<Result<Vec<_>, _>>()?,
    };
    points.sort_by_key(|p| (p.started_ns, p.id.0.clone()));
    points.dedup_by(|a, b| a.id == b.id);
    let pattern = Pattern::new(&args.pattern, args.path)?;
    let found = find(&catalog, &points, &pattern)?;
    if args.json {
        json(&found)?;
        return Ok(synvault::exit::SUCCESS);
    }
    for f in &found {
        let span = if f.points == 1 {
            synvault::time::format_utc(f.first_ns)
        } else {
            format!(
                "{} .. {}",
                synvault::time::format_utc(f.first_ns),
                synvault::time::format_utc(f.last_ns)
            )
        };
        outln!(
            "{:<7} {:>10}  {}  in {} of {} points ({span})",
            f.kind,
            bytes(f.size),
            f.path,
            f.points,
            points.len()
        );
    }
    outln!("{} paths", found.len());
    Ok(synvault::exit::SUCCESS)
}

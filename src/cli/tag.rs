//! `synvault tag`: add and remove a point's tags.

use clap::Args;
use synvault::exit;

use super::filters::FilterArgs;
use super::Cli;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault tag latest --add before-upgrade
  synvault tag 3f2a9c1e --add keep --remove daily")]
pub struct TagArgs {
    /// `latest`, `latest~N` or an id prefix.
    point: String,
    #[command(flatten)]
    filters: FilterArgs,
    /// Add TAG (repeatable).
    #[arg(long, value_name = "TAG", required_unless_present = "remove")]
    add: Vec<String>,
    /// Remove TAG (repeatable).
    #[arg(long, value_name = "TAG")]
    remove: Vec<String>,
}

pub fn run(cli: &Cli, args: &TagArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let _lock = cli.lock_writer(&vault, "tag")?;
    let point = vault.select_point(&args.point, &args.filters.filter())?;
    let tags = vault.retag(&point, &args.add, &args.remove)?;
    if tags.is_empty() {
        outln!("point {} has no tags", point.id.short());
    } else {
        outln!("point {} tags: {}", point.id.short(), tags.join(", "));
    }
    Ok(exit::SUCCESS)
}

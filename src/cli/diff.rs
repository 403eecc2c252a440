//! `synvault diff`: what changed between two points.

use clap::Args;
use synvault::diff::{diff, entry_at, Change, ChangeKind, DiffTotals};
use synvault::{EntryKind, Error, PointState, RecoveryPoint};

use super::filters::FilterArgs;
use super::output::bytes;
use super::Cli;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault diff latest~1 latest --source /etc
  synvault diff 3f2a9c1e latest --source /home/me home/me/Documents --json

Marks: + added, - removed, M content modified, U metadata only (mode, owner, times,
xattrs), T type changed. Directories both points share unchanged are not read.")]
pub struct DiffArgs {
    /// The older point: `latest~N`, an id prefix.
    before: String,
    /// The newer point.
    after: String,
    /// Compare only this directory of both points.
    #[arg(default_value = "")]
    path: String,
    #[command(flatten)]
    filters: FilterArgs,
    /// One JSON object per change, one per line, then one with the totals.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct ChangeJson<'a> {
    path: &'a str,
    change: ChangeKind,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_after: Option<u64>,
}

pub fn run(cli: &Cli, args: &DiffArgs) -> anyhow::Result<u8> {
    let catalog = cli.open_catalog()?;
    let filter = args.filters.filter();
    let all = catalog.points()?;
    let before = synvault::select::select(all.clone(), &args.before, &filter)?;
    let after = synvault::select::select(all, &args.after, &filter)?;
    let tree_at = |point: RecoveryPoint| -> anyhow::Result<_> {
        if point.state == PointState::Running {
            return Err(Error::PointRunning {
                point: point.id.short().into(),
            }
            .into());
        }
        let entry = entry_at(&catalog, &point, &args.path)?.ok_or_else(|| Error::NoSuchPath {
            point: point.id.short().into(),
            path: args.path.clone(),
        })?;
        match entry.subtree.filter(|_| entry.kind == EntryKind::Dir) {
            Some(tree) => Ok(tree),
            None => Err(Error::InvalidArgument(format!(
                "{:?} is not a directory in point {}",
                args.path,
                point.id.short()
            ))
            .into()),
        }
    };
    let (old, new) = (tree_at(before)?, tree_at(after)?);
    let prefix = args.path.trim_end_matches('/');
    let mut totals = DiffTotals::default();
    diff(&catalog, old, new, prefix, &mut |change: &Change<'_>| {
        totals.count(change);
        print_change(change, args.json)
    })?;
    if args.json {
        outln!("{}", serde_json::json!({ "totals": totals }));
    } else {
        outln!(
            "{} added, {} removed, {} modified, {} metadata only, {} type changed; +{} -{}",
            totals.added,
            totals.removed,
            totals.modified,
            totals.metadata,
            totals.type_changed,
            bytes(totals.bytes_added),
            bytes(totals.bytes_removed)
        );
    }
    Ok(synvault::exit::SUCCESS)
}

fn print_change(change: &Change<'_>, as_json: bool) -> anyhow::Result<()> {
    let entry = change.after.or(change.before);
    let is_dir = entry.is_some_and(|e| e.kind == EntryKind::Dir);
    if as_json {
        let size =
            |e: Option<&synvault::Entry>| e.filter(|e| e.kind == EntryKind::File).map(|e| e.size);
        let line = ChangeJson {
            path: change.path,
            change: change.kind,
            kind: entry.map_or("", |e| e.kind.as_str()),
            size_before: size(change.before),
            size_after: size(change.after),
        };
        outln!("{}", serde_json::to_string(&line)?);
        return Ok(());
    }
    let mark = match change.kind {
        ChangeKind::Added => '+',
        ChangeKind::Removed => '-',
        ChangeKind::Modified => 'M',
        ChangeKind::Metadata => 'U',
        ChangeKind::Type => 'T',
    };
    outln!("{mark}    {}{}", change.path, if is_dir { "/" } else { "" });
    Ok(())
}

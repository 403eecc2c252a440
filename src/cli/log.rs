//! `synvault log`: every version of one path across points.

use std::path::PathBuf;

use clap::Args;
use synvault::diff::ChangeKind;
use synvault::time::format_utc;
use synvault::versions::{log, Version};
use synvault::{EntryKind, RecoveryPoint};

use super::filters::FilterArgs;
use super::output::{bytes, short};
use super::Cli;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault log /home/me/Documents/report.odt
  synvault log notes.txt --source /home/me/Documents --json

Newest first, one line per version: when it was current (first and last point holding it),
kind, size, mtime, content id (a symlink: its target), and how many points hold it.")]
pub struct LogArgs {
    /// The path: absolute, or relative to the source of the one series chosen.
    path: PathBuf,
    #[command(flatten)]
    filters: FilterArgs,
    /// One JSON object per version, one per line.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct VersionJson<'a> {
    path: String,
    /// When the first and last points holding it were taken (UTC).
    first_time: String,
    last_time: String,
    first_ns: i64,
    last_ns: i64,
    first_point: &'a str,
    last_point: &'a str,
    points: u64,
    change: ChangeKind,
    kind: &'static str,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: String,
    mtime_ns: i64,
    /// A file's content id, a directory's tree id (hex), a symlink's target.
    content: String,
}

pub fn run(cli: &Cli, args: &LogArgs) -> anyhow::Result<u8> {
    let catalog = cli.open_catalog()?;
    let history = log(
        &catalog,
        catalog.points()?,
        &args.path,
        &args.filters.filter(),
    )?;
    let path = history.path.display().to_string();
    for version in &history.versions {
        let (first, last) = (
            &history.points[version.first],
            &history.points[version.last],
        );
        if args.json {
            outln!(
                "{}",
                serde_json::to_string(&version_json(&path, version, first, last))?
            );
        } else {
            print_version(version, first, last)?;
        }
    }
    if !args.json {
        let series = history
            .points
            .first()
            .map_or_else(String::new, |p| format!(" of {} on {}", p.source, p.host));
        outln!(
            "{} versions of {path} in {} points{series}",
            history.versions.len(),
            history.points.len()
        );
    }
    Ok(synvault::exit::SUCCESS)
}

fn version_json<'a>(
    path: &str,
    v: &Version,
    first: &'a RecoveryPoint,
    last: &'a RecoveryPoint,
) -> VersionJson<'a> {
    let e = &v.entry;
    VersionJson {
        path: path.to_string(),
        first_time: format_utc(v.first_ns),
        last_time: format_utc(v.last_ns),
        first_ns: v.first_ns,
        last_ns: v.last_ns,
        first_point: &first.id.0,
        last_point: &last.id.0,
        points: v.points(),
        change: v.change,
        kind: e.kind.as_str(),
        size: e.size,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime: format_utc(e.mtime_ns),
        mtime_ns: e.mtime_ns,
        content: v.content_key(),
    }
}

fn print_version(v: &Version, first: &RecoveryPoint, last: &RecoveryPoint) -> anyhow::Result<()> {
    let e = &v.entry;
    let content = match e.kind {
        EntryKind::Symlink => format!("-> {}", v.content_key()),
        _ => v.content_key().chars().take(12).collect(),
    };
    let held = if v.points() == 1 {
        format!("1 point {}", short(&first.id.0))
    } else {
        format!(
            "{} points {}..{}",
            v.points(),
            short(&first.id.0),
            short(&last.id.0)
        )
    };
    let change = match v.change {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Modified => "modified",
        ChangeKind::Metadata => "metadata",
        ChangeKind::Type => "type changed",
    };
    outln!(
        "{} .. {}  {:<7} {:>10}  mtime {}  {:<12}  {held}  {change}",
        format_utc(v.first_ns),
        format_utc(v.last_ns),
        e.kind.as_str(),
        bytes(if e.kind == EntryKind::File { e.size } else { 0 }),
        format_utc(e.mtime_ns),
        content,
    );
    Ok(())
}

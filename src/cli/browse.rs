//! Read-only commands: `points`, `ls`, `cat`, `stats`.

use std::sync::Arc;

use clap::Args;
use synvault::{BlockReader, Entry, EntryKind, PointReader};

use super::filters::FilterArgs;
use super::output::{bytes, json, short, write_bytes};
use super::{split_point_path, Cli};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault points
  synvault points --source /home/me/Documents --since 2026-11-01
  synvault points --tag daily --json")]
pub struct PointsArgs {
    #[command(flatten)]
    filters: FilterArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    pub command: Option<super::retention::PointsCommand>,
}

#[derive(serde::Serialize)]
struct PointJson<'a> {
    id: &'a str,
    /// When the backup started (UTC).
    time: String,
    /// When it ended (UTC).
    end_time: String,
    parent: Option<&'a str>,
    kind: &'a str,
    state: &'a str,
    /// The series' name: the sources joined by ", ".
    source: &'a str,
    /// Each source's absolute path.
    sources: Vec<String>,
    host: &'a str,
    tags: &'a [String],
    files: u64,
    bytes: u64,
    bytes_new: u64,
    bytes_stored: u64,
    errors: &'a [String],
    /// Protected from forgetting until this time (UTC), or "forever"; absent if not.
    #[serde(skip_serializing_if = "Option::is_none")]
    protected_until: Option<String>,
}

pub fn points(cli: &Cli, args: &PointsArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let points = vault.points(&args.filters.filter())?;
    if args.json {
        let out: Vec<_> = points
            .iter()
            .map(|p| PointJson {
                id: &p.id.0,
                time: synvault::time::format_utc(p.started_ns),
                end_time: synvault::time::format_utc(p.finished_ns),
                parent: p.parent.as_ref().map(|id| id.0.as_str()),
                kind: p.kind.as_str(),
                state: p.state.as_str(),
                source: &p.source,
                sources: p.sources.iter().map(|s| s.display().to_string()).collect(),
                host: &p.host,
                tags: &p.tags,
                files: p.stats.files,
                bytes: p.stats.bytes,
                bytes_new: p.stats.bytes_new,
                bytes_stored: p.stats.bytes_stored,
                errors: &p.errors,
                protected_until: p.retain_until_ns.map(|t| {
                    if t == i64::MAX {
                        "forever".into()
                    } else {
                        synvault::time::format_utc(t)
                    }
                }),
            })
            .collect();
        json(&out)?;
        return Ok(synvault::exit::SUCCESS);
    }
    let now = synvault::time::now_ns();
    let host_width = points
        .iter()
        .map(|p| p.host.len())
        .max()
        .unwrap_or(0)
        .max(4);
    outln!(
        "{:<8}  {:<20}  {:<16}  {:<11}  {:<13}  {:>8}  {:>10}  {:<host_width$}  {:<12}  source",
        "id",
        "time (UTC)",
        "age",
        "kind",
        "state",
        "files",
        "size",
        "host",
        "tags",
    );
    for p in &points {
        let tags = if p.tags.is_empty() {
            "-".to_string()
        } else {
            p.tags.join(",")
        };
        outln!(
            "{:<8}  {:<20}  {:<16}  {:<11}  {:<13}  {:>8}  {:>10}  {:<host_width$}  {:<12}  {}",
            p.id.short(),
            synvault::time::format_utc(p.started_ns),
            synvault::time::ago(now, p.started_ns),
            p.kind.as_str(),
            p.state.as_str(),
            p.stats.files,
            bytes(p.stats.bytes),
            p.host,
            tags,
            p.source
        );
    }
    outln!("{} points", points.len());
    Ok(synvault::exit::SUCCESS)
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault ls latest
  synvault ls -r latest~2 etc/ssh
  synvault ls latest --source /home/me/Documents --json")]
pub struct LsArgs {
    /// `latest`, `latest~N` or an id prefix.
    point: String,
    #[command(flatten)]
    filters: FilterArgs,
    /// Directory inside the point.
    #[arg(default_value = "")]
    path: String,
    /// List subdirectories too.
    #[arg(short, long)]
    recursive: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct EntryJson {
    path: String,
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: String,
    mtime_ns: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

fn mode_string(e: &Entry) -> String {
    let kind = match e.kind {
        EntryKind::File => '-',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::Fifo => 'p',
        EntryKind::CharDev => 'c',
        EntryKind::BlockDev => 'b',
        EntryKind::Socket => 's',
    };
    let mut s = String::from(kind);
    // Owner, group, others: the special bit of each (setuid, setgid, sticky) shows in its
    // execute place, lower case when execute is set too, as `ls -l` prints it.
    for (shift, special, mark) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (e.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, e.mode & special != 0) {
            (true, true) => mark,
            (false, true) => mark.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn entry_json(path: &str, e: &Entry) -> EntryJson {
    EntryJson {
        path: path.to_string(),
        kind: e.kind.as_str(),
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        size: e.size,
        mtime: synvault::time::format_utc(e.mtime_ns),
        mtime_ns: e.mtime_ns,
        target: e
            .target
            .as_ref()
            .map(|t| String::from_utf8_lossy(t).into_owned()),
    }
}

/// Prints one entry as `ls` does: a line of text, or one element of the JSON array.
fn print_entry(path: &str, e: &Entry, as_json: bool, first: &mut bool) -> anyhow::Result<()> {
    if as_json {
        let element = serde_json::to_string(&entry_json(path, e))?;
        let sep = if std::mem::take(first) { "" } else { "," };
        outln!("{sep}{element}");
        return Ok(());
    }
    let target = e
        .target
        .as_ref()
        .map(|t| format!(" -> {}", String::from_utf8_lossy(t)))
        .unwrap_or_default();
    outln!(
        "{} {:>5} {:>5} {:>12} {} {}{target}",
        mode_string(e),
        e.uid,
        e.gid,
        e.size,
        synvault::time::format_utc(e.mtime_ns),
        path
    );
    Ok(())
}

/// `ls`: entries are printed as they are walked (a JSON array streamed element by element), so
/// listing a million entries takes no more memory than listing ten.
pub fn ls(cli: &Cli, args: &LsArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let point = vault.select_point(&args.point, &args.filters.filter())?;
    let reader = PointReader::new(&vault, point, Arc::new(BlockReader::new(&vault)?));
    let mut first = true;
    if args.json {
        outln!("[");
    }
    reader.walk(args.path.as_bytes(), args.recursive, &mut |path, e| {
        print_entry(path, e, args.json, &mut first)
    })?;
    if args.json {
        outln!("]");
    }
    Ok(synvault::exit::SUCCESS)
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault cat latest:etc/hosts
  synvault cat latest --source /home/me/Documents:notes.txt > notes.txt")]
pub struct CatArgs {
    /// POINT:PATH of a regular file.
    target: String,
    #[command(flatten)]
    filters: FilterArgs,
}

pub fn cat(cli: &Cli, args: &CatArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let (query, path) = split_point_path(&args.target);
    let point = vault.select_point(query, &args.filters.filter())?;
    synvault::select::readable(&point)?;
    let reader = PointReader::new(&vault, point, Arc::new(BlockReader::new(&vault)?));
    reader.copy_file(path.as_bytes(), &mut |bytes| -> anyhow::Result<()> {
        Ok(write_bytes(bytes)?)
    })?;
    Ok(synvault::exit::SUCCESS)
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault stats
  synvault stats --source /home/me/Documents --json")]
pub struct StatsArgs {
    /// List only the points these select (the totals stay the vault's).
    #[command(flatten)]
    filters: FilterArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn stats(cli: &Cli, args: &StatsArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let stats = synvault::stats::stats(&vault, &args.filters.filter())?;
    if args.json {
        json(&stats)?;
        return Ok(synvault::exit::SUCCESS);
    }
    outln!(
        "{:<8}  {:<20}  {:>8}  {:>10}  {:>10}  {:>10}",
        "id",
        "time (UTC)",
        "files",
        "size",
        "new",
        "stored"
    );
    for p in &stats.per_point {
        outln!(
            "{:<8}  {:<20}  {:>8}  {:>10}  {:>10}  {:>10}",
            short(&p.id),
            p.time,
            p.files,
            bytes(p.bytes),
            bytes(p.bytes_new),
            bytes(p.bytes_stored)
        );
    }
    outln!("points            {}", stats.points);
    outln!("logical bytes     {}", bytes(stats.logical_bytes));
    outln!("unique bytes      {}", bytes(stats.unique_bytes));
    outln!("stored bytes      {}", bytes(stats.stored_bytes));
    outln!("dedup ratio       {:.2}", stats.dedup_ratio);
    outln!("compression ratio {:.2}", stats.compression_ratio);
    Ok(synvault::exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: EntryKind, mode: u32) -> Entry {
        Entry {
            name: b"x".to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            size: 0,
            inode: 1,
            nlink: 1,
            content: None,
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn mode_strings_keep_setuid_setgid_and_sticky_as_ls_prints_them() {
        for (kind, mode, want) in [
            (EntryKind::File, 0o644, "-rw-r--r--"),
            (EntryKind::File, 0o4755, "-rwsr-xr-x"),
            (EntryKind::File, 0o4644, "-rwSr--r--"),
            (EntryKind::File, 0o2755, "-rwxr-sr-x"),
            (EntryKind::File, 0o2745, "-rwxr-Sr-x"),
            (EntryKind::Dir, 0o1777, "drwxrwxrwt"),
            (EntryKind::Dir, 0o1776, "drwxrwxrwT"),
            (EntryKind::Symlink, 0o777, "lrwxrwxrwx"),
        ] {
            assert_eq!(mode_string(&entry(kind, mode)), want, "{mode:o}");
        }
    }
}

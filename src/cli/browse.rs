//! Read-only commands: `points`, `ls`, `cat`, `stats`.

use std::sync::Arc;

use clap::Args;
use synvault::catalog::tree_path::TreePath;
use synvault::catalog::{CatalogError, TreeId};
use synvault::{BlockReader, Entry, EntryKind, Error, PointReader, PointState};

use super::output::{bytes, json, short, write_bytes};
use super::{split_point_path, Cli};

#[derive(Debug, Args)]
pub struct PointsArgs {
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    pub command: Option<super::retention::PointsCommand>,
}

#[derive(serde::Serialize)]
struct PointJson<'a> {
    id: &'a str,
    time: String,
    parent: Option<&'a str>,
    kind: &'a str,
    state: &'a str,
    source: &'a str,
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
    let points = vault.catalog().points()?;
    if args.json {
        let out: Vec<_> = points
            .iter()
            .map(|p| PointJson {
                id: &p.id.0,
                time: synvault::time::format_utc(p.started_ns),
                parent: p.parent.as_ref().map(|id| id.0.as_str()),
                kind: p.kind.as_str(),
                state: p.state.as_str(),
                source: &p.source,
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
    outln!(
        "{:<8}  {:<20}  {:<11}  {:<13}  {:>8}  {:>10}  source",
        "id",
        "time (UTC)",
        "kind",
        "state",
        "files",
        "size"
    );
    for p in &points {
        outln!(
            "{:<8}  {:<20}  {:<11}  {:<13}  {:>8}  {:>10}  {}",
            p.id.short(),
            synvault::time::format_utc(p.started_ns),
            p.kind.as_str(),
            p.state.as_str(),
            p.stats.files,
            bytes(p.stats.bytes),
            p.source
        );
    }
    outln!("{} points", points.len());
    Ok(synvault::exit::SUCCESS)
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// `latest`, `latest~N` or an id prefix.
    point: String,
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
    for shift in [6, 3, 0] {
        let bits = (e.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// Lists `tree`, and with `recursive` its subtrees, handing each entry to `emit` as it goes
/// (memory holds the directories on the way down, not the listing); `trees` holds the trees
/// above it, so a tree that contains itself is an error rather than a stack overflow.
fn walk(
    reader: &PointReader<'_>,
    tree: TreeId,
    prefix: &str,
    recursive: bool,
    trees: &mut TreePath,
    emit: &mut dyn FnMut(&str, &Entry) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    trees
        .enter(tree)
        .map_err(|source| Error::from(CatalogError::BadTree { tree, source }))?;
    for entry in reader.list(&tree)?.iter() {
        let path = format!("{prefix}/{}", String::from_utf8_lossy(&entry.name));
        emit(&path, entry)?;
        if let Some(sub) = entry
            .subtree
            .filter(|_| recursive && entry.kind == EntryKind::Dir)
        {
            walk(reader, sub, &path, recursive, trees, emit)?;
        }
    }
    trees.leave();
    Ok(())
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
    let point = vault.resolve_point(&args.point)?;
    let reader = PointReader::new(&vault, point, Arc::new(BlockReader::new(&vault)?));
    let start = reader.lookup(args.path.as_bytes())?;
    let prefix = args.path.trim_end_matches('/').to_string();
    let mut first = true;
    if args.json {
        outln!("[");
    }
    match start.subtree.filter(|_| start.kind == EntryKind::Dir) {
        Some(tree) => {
            let mut trees = TreePath::new();
            walk(
                &reader,
                tree,
                &prefix,
                args.recursive,
                &mut trees,
                &mut |path, e| print_entry(path, e, args.json, &mut first),
            )?;
        }
        None => print_entry(&prefix, &start, args.json, &mut first)?,
    }
    if args.json {
        outln!("]");
    }
    Ok(synvault::exit::SUCCESS)
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// POINT:PATH of a regular file.
    target: String,
}

pub fn cat(cli: &Cli, args: &CatArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let (query, path) = split_point_path(&args.target);
    let point = vault.resolve_point(query)?;
    if point.state == PointState::AwaitingSeed {
        return Err(Error::AwaitingSeed {
            point: point.id.short().into(),
            job: point.awaiting_job.clone().unwrap_or_default(),
        }
        .into());
    }
    let reader = PointReader::new(&vault, point, Arc::new(BlockReader::new(&vault)?));
    let entry = reader.lookup(path.as_bytes())?;
    if entry.kind != EntryKind::File {
        return Err(Error::NotAFile {
            point: reader.point().id.short().into(),
            path: path.into(),
        }
        .into());
    }
    let map = reader.block_map(&entry)?;
    for &(_, id, len) in &map.blocks {
        let block = reader.blocks().read_block(&id, len).map_err(Error::from)?;
        write_bytes(&block)?;
    }
    Ok(synvault::exit::SUCCESS)
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn stats(cli: &Cli, args: &StatsArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let stats = synvault::stats::stats(&vault)?;
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

//! The point filters shared by every command that names or lists points: `--source`,
//! `--host`, `--tag`, `--since`, `--until` (see [`synvault::select`]).

use std::path::PathBuf;

use clap::Args;
use synvault::select::{source_path, PointFilter};

/// `latest` counts within one source (set of paths) on one host; in a vault of several, name
/// one with these.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only points of this source path (repeatable: points holding every one). `latest` is
    /// the newest point of one source on one host: where the vault holds several, bare
    /// `latest` is refused until --source or --host names one.
    #[arg(long = "source", value_name = "PATH")]
    sources: Vec<PathBuf>,
    /// Only points made on this host (repeatable: any of them).
    #[arg(long = "host", value_name = "NAME")]
    hosts: Vec<String>,
    /// Only points with this tag (`a,b`: both tags; repeatable: any of the groups).
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    tags: Vec<String>,
    /// Only points made at or after TIME (UTC: YYYY-MM-DD[THH:MM[:SS]]).
    #[arg(long, alias = "newer", value_name = "TIME", value_parser = synvault::time::parse_utc)]
    since: Option<i64>,
    /// Only points made at or before TIME (UTC); `latest --until T` is the newest point as
    /// of T.
    #[arg(long, alias = "older", value_name = "TIME", value_parser = synvault::time::parse_utc)]
    until: Option<i64>,
}

impl FilterArgs {
    /// The library's filter: source paths made absolute, tag groups split at commas.
    pub fn filter(&self) -> PointFilter {
        PointFilter {
            sources: self.sources.iter().map(|p| source_path(p)).collect(),
            hosts: self.hosts.clone(),
            tag_groups: self
                .tags
                .iter()
                .map(|group| {
                    group
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .collect(),
            since_ns: self.since,
            until_ns: self.until,
        }
    }
}

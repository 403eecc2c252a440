//! Choosing recovery points: `latest`, `latest~N` or an id prefix, narrowed by source, host,
//! tag and time.
//!
//! `latest` counts within one *series*: the points of one set of sources on one host. In a
//! vault that holds several series, bare `latest` is refused with the series listed, so that
//! a restore never quietly picks another source's point; the filters choose one. A `--source`
//! that names exactly the paths of one series picks it even when other series include the
//! path as well.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::catalog::{PointState, RecoveryPoint};
use crate::error::{Error, Result};

/// Which points a command considers. Empty: all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PointFilter {
    /// Points whose sources include every one of these absolute paths.
    pub sources: Vec<PathBuf>,
    /// Points made on any of these hosts.
    pub hosts: Vec<String>,
    /// Points that carry every tag of at least one of these groups (restic's rule: `--tag
    /// a,b` needs both, two `--tag` options take either).
    pub tag_groups: Vec<Vec<String>>,
    /// Points made at or after this time (ns, UTC).
    pub since_ns: Option<i64>,
    /// Points made at or before this time (ns, UTC).
    pub until_ns: Option<i64>,
}

impl PointFilter {
    /// True if `point` passes every filter given.
    pub fn matches(&self, point: &RecoveryPoint) -> bool {
        self.sources.iter().all(|s| point.sources.contains(s))
            && (self.hosts.is_empty() || self.hosts.contains(&point.host))
            && (self.tag_groups.is_empty()
                || self
                    .tag_groups
                    .iter()
                    .any(|group| group.iter().all(|t| point.tags.contains(t))))
            && self.since_ns.is_none_or(|t| point.started_ns >= t)
            && self.until_ns.is_none_or(|t| point.started_ns <= t)
    }

    /// The points of `points` that pass, in their order.
    pub fn apply(&self, points: Vec<RecoveryPoint>) -> Vec<RecoveryPoint> {
        points.into_iter().filter(|p| self.matches(p)).collect()
    }
}

/// A source path as a selector names it: absolute (relative to the working directory if
/// given relative), without `.` or a trailing `/`, and with symlinks resolved when it exists
/// here, as backup resolves its sources.
pub fn source_path(text: &Path) -> PathBuf {
    if let Ok(canonical) = std::fs::canonicalize(text) {
        return canonical;
    }
    let absolute = if text.is_absolute() {
        text.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(text)
    };
    absolute.components().collect()
}

/// Refuses a point that cannot be read yet: one whose packs travel on seed disks, or one
/// whose backup is still running. Every reader (restore, `cat`, the mount, the bench) asks
/// this one question.
pub fn readable(point: &RecoveryPoint) -> Result<()> {
    match point.state {
        PointState::AwaitingSeed => Err(Error::AwaitingSeed {
            point: point.id.short().into(),
            job: point
                .awaiting_job
                .clone()
                .unwrap_or_else(|| "(unnamed)".into()),
        }),
        PointState::Running => Err(Error::PointRunning {
            point: point.id.short().into(),
        }),
        PointState::Complete | PointState::Partial => Ok(()),
    }
}

/// One series: its sources and host.
type Series<'p> = (&'p [PathBuf], &'p str);

fn series_of(point: &RecoveryPoint) -> Series<'_> {
    (&point.sources, &point.host)
}

/// The point `query` names among `points` (oldest first, as the catalog lists them) that pass
/// `filter`: `latest` or `latest~N` within the one series left (see the module doc), or the
/// one point whose id starts with `query`.
pub fn select(
    points: Vec<RecoveryPoint>,
    query: &str,
    filter: &PointFilter,
) -> Result<RecoveryPoint> {
    let not_found = || Error::NoSuchPoint {
        query: query.to_string(),
    };
    let points = filter.apply(points);
    if let Some(rest) = query.strip_prefix("latest") {
        let back: usize = match rest.strip_prefix('~') {
            Some(n) => n.parse().map_err(|_| not_found())?,
            None if rest.is_empty() => 0,
            None => return Err(not_found()),
        };
        return series_points(points, filter, query)?
            .into_iter()
            .rev()
            .nth(back)
            .ok_or_else(not_found);
    }
    if query.is_empty() {
        return Err(not_found());
    }
    let mut matches = points.into_iter().filter(|p| p.id.0.starts_with(query));
    let first = matches.next().ok_or_else(not_found)?;
    if matches.next().is_some() {
        return Err(Error::AmbiguousPoint {
            query: query.to_string(),
        });
    }
    Ok(first)
}

/// The points of `points` (oldest first) that pass `filter` and belong to the one series left
/// among them (see the module doc), in their order; none if no point passes. `query` is what
/// the caller was asked for, for the error that names the series when several are left.
pub fn series_points(
    points: Vec<RecoveryPoint>,
    filter: &PointFilter,
    query: &str,
) -> Result<Vec<RecoveryPoint>> {
    let points = filter.apply(points);
    let Some((sources, host)) = one_series(&points, filter, query)? else {
        return Ok(Vec::new());
    };
    Ok(points
        .into_iter()
        .filter(|p| p.sources == sources && p.host == host)
        .collect())
}

/// The one series `latest` counts in (`None` if no point is left), or why there is none.
fn one_series(
    points: &[RecoveryPoint],
    filter: &PointFilter,
    query: &str,
) -> Result<Option<(Vec<PathBuf>, String)>> {
    let all: BTreeSet<Series<'_>> = points.iter().map(series_of).collect();
    let exact: BTreeSet<Series<'_>> = if filter.sources.is_empty() {
        all.clone()
    } else {
        let wanted: BTreeSet<&PathBuf> = filter.sources.iter().collect();
        let exact: BTreeSet<_> = all
            .iter()
            .filter(|(sources, _)| sources.iter().collect::<BTreeSet<_>>() == wanted)
            .copied()
            .collect();
        if exact.is_empty() {
            all.clone()
        } else {
            exact
        }
    };
    match exact.len() {
        0 => Ok(None),
        1 => Ok(exact
            .first()
            .map(|(sources, host)| (sources.to_vec(), host.to_string()))),
        n => Err(Error::AmbiguousLatest {
            query: query.to_string(),
            series: describe(&exact, n),
        }),
    }
}

/// "/a on h1, /b, /c on h1 and 2 more".
fn describe(series: &BTreeSet<Series<'_>>, n: usize) -> String {
    const SHOWN: usize = 3;
    let mut text = series
        .iter()
        .take(SHOWN)
        .map(|(sources, host)| {
            let paths: Vec<String> = sources.iter().map(|s| s.display().to_string()).collect();
            format!("{} on {host}", paths.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    if n > SHOWN {
        text.push_str(&format!("; and {} more", n - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{RecoveryPointId, TreeId};

    fn point(id: &str, sources: &[&str], host: &str, tags: &[&str], t: i64) -> RecoveryPoint {
        RecoveryPoint {
            id: RecoveryPointId(id.into()),
            source: sources.join(", "),
            sources: sources.iter().map(PathBuf::from).collect(),
            host: host.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            started_ns: t,
            ..RecoveryPoint::for_test(id, TreeId([0; 32]))
        }
    }

    fn history() -> Vec<RecoveryPoint> {
        vec![
            point("a1", &["/docs"], "h1", &["daily"], 10),
            point("b1", &["/usr/lib"], "h1", &[], 20),
            point("a2", &["/docs"], "h1", &["daily", "keep"], 30),
            point("c1", &["/docs", "/etc"], "h1", &[], 40),
            point("d1", &["/docs"], "h2", &[], 50),
            point("b2", &["/usr/lib"], "h1", &["weekly"], 60),
        ]
    }

    fn pick(query: &str, filter: &PointFilter) -> Result<String> {
        select(history(), query, filter).map(|p| p.id.0)
    }

    fn sources(paths: &[&str]) -> PointFilter {
        PointFilter {
            sources: paths.iter().map(PathBuf::from).collect(),
            ..PointFilter::default()
        }
    }

    #[test]
    fn bare_latest_in_a_vault_of_several_series_is_refused_with_them_named() {
        let err = pick("latest", &PointFilter::default()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::AmbiguousLatest { .. }), "{err}");
        assert!(
            text.contains("/docs on h2")
                && text.contains("and 1 more")
                && text.contains("--source"),
            "{text}"
        );
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        // One series in the vault: latest is its newest point.
        let only_docs = vec![history().remove(0), history().remove(2)];
        let got = select(only_docs, "latest", &PointFilter::default()).unwrap();
        assert_eq!(got.id.0, "a2");
    }

    #[test]
    fn latest_counts_within_the_chosen_source() {
        let usr = sources(&["/usr/lib"]);
        assert_eq!(pick("latest", &usr).unwrap(), "b2");
        assert_eq!(pick("latest~1", &usr).unwrap(), "b1");
        assert!(matches!(
            pick("latest~2", &usr),
            Err(Error::NoSuchPoint { .. })
        ));
        // /docs is in three series: the exact one on each host, and /docs + /etc.
        let docs = PointFilter {
            hosts: vec!["h1".into()],
            ..sources(&["/docs"])
        };
        assert_eq!(pick("latest", &docs).unwrap(), "a2");
        assert_eq!(pick("latest~1", &docs).unwrap(), "a1");
        assert!(matches!(
            pick("latest", &sources(&["/docs"])),
            Err(Error::AmbiguousLatest { .. })
        ));
        assert_eq!(pick("latest", &sources(&["/etc"])).unwrap(), "c1");
    }

    #[test]
    fn each_filter_narrows_and_an_id_must_pass_them() {
        let ids = |f: &PointFilter| -> Vec<String> {
            f.apply(history()).into_iter().map(|p| p.id.0).collect()
        };
        let host = PointFilter {
            hosts: vec!["h2".into()],
            ..PointFilter::default()
        };
        assert_eq!(ids(&host), ["d1"]);
        let either_tag = PointFilter {
            tag_groups: vec![vec!["keep".into()], vec!["weekly".into()]],
            ..PointFilter::default()
        };
        assert_eq!(ids(&either_tag), ["a2", "b2"]);
        let both_tags = PointFilter {
            tag_groups: vec![vec!["daily".into(), "keep".into()]],
            ..PointFilter::default()
        };
        assert_eq!(ids(&both_tags), ["a2"]);
        let window = PointFilter {
            since_ns: Some(20),
            until_ns: Some(40),
            ..PointFilter::default()
        };
        assert_eq!(ids(&window), ["b1", "a2", "c1"]);
        assert_eq!(ids(&sources(&["/docs", "/etc"])), ["c1"]);
        // An id is found only among the points that pass.
        assert_eq!(pick("d1", &host).unwrap(), "d1");
        assert!(matches!(pick("a1", &host), Err(Error::NoSuchPoint { .. })));
        assert!(matches!(
            pick("a", &PointFilter::default()),
            Err(Error::AmbiguousPoint { .. })
        ));
        // latest as of a time: the newest point of the series at or before it.
        let before = PointFilter {
            until_ns: Some(59),
            ..sources(&["/usr/lib"])
        };
        assert_eq!(pick("latest", &before).unwrap(), "b1");
    }

    #[test]
    fn a_selector_path_is_made_absolute_and_plain() {
        assert_eq!(
            source_path(Path::new("/no/such/./dir/")),
            Path::new("/no/such/dir")
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            source_path(Path::new("no-such-name")),
            cwd.join("no-such-name")
        );
    }
}

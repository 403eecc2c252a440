//! Versions of one path across points: every distinct entry the path held, newest first, each
//! with the run of points that held it. What `synvault log` prints and the mount's
//! `versions/` lists.
//!
//! A catalog question, not a walk: the path is resolved in each point by descending from the
//! root tree one name at a time, and what a tree resolves to is remembered by the tree's id and
//! the rest of the path. An unchanged directory is the same tree id in every point, so 1,000
//! points cost one load per distinct tree on the path, and memory is bounded by those trees,
//! not by the vault.
//!
//! The rule for "distinct": consecutive points whose entries at the path are equal (same kind,
//! same content, same mode, owner, mtime and xattrs; a directory also the same tree) hold one
//! version. A path that is gone from a point and comes back, even identical, starts a new
//! version, so each version is one unbroken run of points. Inode, link count and ctime are not
//! compared (see [`entry_change`]).

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::catalog::{Entry, EntryKind, PointState, RecoveryPoint, TreeId};
use crate::diff::{entry_change, ChangeKind, Trees};
use crate::error::{Error, Result};
use crate::reassembly::root_entry;
use crate::select::{series_points, source_path, PointFilter};

/// Where versions look a name up: one name in one directory tree.
pub trait TreeLookup {
    type Error;
    /// The entry called `name` in directory `tree`, if there is one.
    fn child(&self, tree: &TreeId, name: &[u8]) -> std::result::Result<Option<Entry>, Self::Error>;
}

impl<T: Trees + ?Sized> TreeLookup for T {
    type Error = Error;

    fn child(&self, tree: &TreeId, name: &[u8]) -> Result<Option<Entry>> {
        Ok(self.entries(tree)?.into_iter().find(|e| e.name == name))
    }
}

/// The path whose versions are asked for, as each point names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackedPath {
    /// The same path below every point's root (`/`-separated; empty: the root itself).
    InPoint(Vec<u8>),
    /// A path of the backed-up machine: in each point, relative to where that point's root was
    /// ([`RecoveryPoint::original_root`]); not in a point whose root is elsewhere or unknown.
    Absolute(PathBuf),
}

impl TrackedPath {
    fn in_point(&self, point: &RecoveryPoint) -> Option<Vec<u8>> {
        match self {
            TrackedPath::InPoint(path) => Some(path.clone()),
            TrackedPath::Absolute(path) => {
                let root = point.original_root()?;
                Some(
                    path.strip_prefix(root)
                        .ok()?
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            }
        }
    }
}

/// One version: the entry, and the run of points that held it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// The entry as the first point of the run holds it.
    pub entry: Entry,
    /// How it differs from what the point before the run held there: `Added` if nothing.
    pub change: ChangeKind,
    /// The run: the points from index `first` to `last` (inclusive) of the points asked
    /// about, and no others, hold this version.
    pub first: usize,
    pub last: usize,
    /// When the first and last of those points were taken (ns, UTC).
    pub first_ns: i64,
    pub last_ns: i64,
}

impl Version {
    /// How many points hold this version.
    pub fn points(&self) -> u64 {
        (self.last - self.first + 1) as u64
    }

    /// What tells this version's content apart: a file's content id (hex), a symlink's target,
    /// a directory's tree id (hex), a device's number; empty for a fifo or socket.
    pub fn content_key(&self) -> String {
        let e = &self.entry;
        match e.kind {
            EntryKind::File => e.content.map(|c| hex::encode(c.0)).unwrap_or_default(),
            EntryKind::Dir => e.subtree.map(|t| hex::encode(t.0)).unwrap_or_default(),
            EntryKind::Symlink => e
                .target
                .as_ref()
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .unwrap_or_default(),
            EntryKind::CharDev | EntryKind::BlockDev => e.rdev.to_string(),
            EntryKind::Fifo | EntryKind::Socket => String::new(),
        }
    }
}

/// True if `after` is the same version as `before` (see the module doc).
fn same_version(before: &Entry, after: &Entry) -> bool {
    entry_change(before, after).is_none()
        && (before.kind != EntryKind::Dir || before.subtree == after.subtree)
}

/// What a tree resolves the rest of a path to, by (tree, rest of the path).
type Memo = HashMap<(TreeId, Vec<u8>), Option<Entry>>;

/// Every version of `path` in `points` (oldest first), newest first.
pub fn versions<'p, L: TreeLookup + ?Sized>(
    trees: &L,
    points: impl IntoIterator<Item = &'p RecoveryPoint>,
    path: &TrackedPath,
) -> std::result::Result<Vec<Version>, L::Error> {
    let mut memo = Memo::new();
    let mut runs: Vec<Version> = Vec::new();
    let mut before: Option<Entry> = None;
    for (index, point) in points.into_iter().enumerate() {
        let held = match path.in_point(point) {
            Some(rel) => resolve(trees, point, &rel, &mut memo)?,
            None => None,
        };
        match (&held, &before, runs.last_mut()) {
            (Some(now), Some(was), Some(run)) if same_version(was, now) => {
                run.last = index;
                run.last_ns = point.started_ns;
            }
            (Some(now), was, _) => runs.push(Version {
                entry: now.clone(),
                change: was
                    .as_ref()
                    .map_or(ChangeKind::Added, |was| change_of(was, now)),
                first: index,
                last: index,
                first_ns: point.started_ns,
                last_ns: point.started_ns,
            }),
            (None, _, _) => {}
        }
        before = held;
    }
    runs.reverse();
    Ok(runs)
}

/// How `now` differs from `was`, two different versions: a directory that holds something
/// else is modified, whatever else changed about it.
fn change_of(was: &Entry, now: &Entry) -> ChangeKind {
    let holds_else =
        was.kind == EntryKind::Dir && now.kind == EntryKind::Dir && was.subtree != now.subtree;
    match entry_change(was, now) {
        Some(kind) if !holds_else => kind,
        _ => ChangeKind::Modified,
    }
}

/// The entry at `rel` (`/`-separated below the root) in `point`, if it has one.
fn resolve<L: TreeLookup + ?Sized>(
    trees: &L,
    point: &RecoveryPoint,
    rel: &[u8],
    memo: &mut Memo,
) -> std::result::Result<Option<Entry>, L::Error> {
    let names: Vec<&[u8]> = rel
        .split(|b| *b == b'/')
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(Some(root_entry(point)));
    }
    let mut tree = point.root_tree;
    let mut passed = Vec::new();
    let mut found = None;
    for (depth, name) in names.iter().enumerate() {
        let key = (tree, names[depth..].join(&b'/'));
        if let Some(known) = memo.get(&key) {
            found = known.clone();
            break;
        }
        passed.push(key);
        let last = depth + 1 == names.len();
        match trees.child(&tree, name)? {
            Some(entry) if last => found = Some(entry),
            Some(Entry {
                kind: EntryKind::Dir,
                subtree: Some(below),
                ..
            }) => {
                tree = below;
                continue;
            }
            _ => {}
        }
        break;
    }
    for key in passed {
        memo.insert(key, found.clone());
    }
    Ok(found)
}

/// One path's history in one series: what `synvault log` prints.
#[derive(Clone, Debug)]
pub struct Log {
    /// The path asked about, absolute.
    pub path: PathBuf,
    /// The points of the series it was looked for in, oldest first.
    pub points: Vec<RecoveryPoint>,
    /// Its versions, newest first; their indices are into `points`.
    pub versions: Vec<Version>,
}

/// Every version of `path` in the one series of `points` (a vault's, any order) that
/// `filter` leaves, points still being written aside. An absolute `path` picks the series
/// whose sources hold it; a relative one is taken below the source of a series of one source.
///
/// # Errors
/// Several series left ([`Error::AmbiguousLatest`]), a relative path without one source, and
/// a path that no point holds.
pub fn log(
    trees: &dyn Trees,
    points: Vec<RecoveryPoint>,
    path: &Path,
    filter: &PointFilter,
) -> Result<Log> {
    let all: Vec<RecoveryPoint> = filter
        .apply(points)
        .into_iter()
        .filter(|p| p.state != PointState::Running)
        .collect();
    let query = path.display().to_string();
    let (path, points) = if path.is_absolute() {
        absolute_series(all, path, filter, &query)?
    } else {
        relative_series(all, path, filter, &query)?
    };
    let versions = versions(trees, &points, &TrackedPath::Absolute(path.clone()))?;
    if versions.is_empty() {
        let series = points
            .first()
            .map_or_else(String::new, |p| format!(" of {} on {}", p.source, p.host));
        return Err(Error::PathNotInPoints {
            path: query,
            why: format!("it is in none of the {} points{series}", points.len()),
        });
    }
    Ok(Log {
        path,
        points,
        versions,
    })
}

/// The series holding absolute `path`, and the path as its sources name it.
fn absolute_series(
    all: Vec<RecoveryPoint>,
    path: &Path,
    filter: &PointFilter,
    query: &str,
) -> Result<(PathBuf, Vec<RecoveryPoint>)> {
    let holding = |path: &Path| -> Vec<RecoveryPoint> {
        all.iter()
            .filter(|p| p.sources.iter().any(|s| path.starts_with(s)))
            .cloned()
            .collect()
    };
    let mut path: PathBuf = path.components().collect();
    let mut candidates = holding(&path);
    if candidates.is_empty() {
        // Backup records its sources with symlinks resolved: resolve the directory the path
        // is in, as here, but not the path itself, whose own history (a symlink's) is asked.
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
            let resolved = source_path(dir).join(name);
            candidates = holding(&resolved);
            path = resolved;
        }
    }
    if candidates.is_empty() {
        return Err(Error::PathNotInPoints {
            path: query.to_string(),
            why: "it is below none of the sources of the points chosen".into(),
        });
    }
    Ok((path, series_points(candidates, filter, query)?))
}

/// The series chosen, which must have one source, and `path` below that source.
fn relative_series(
    all: Vec<RecoveryPoint>,
    path: &Path,
    filter: &PointFilter,
    query: &str,
) -> Result<(PathBuf, Vec<RecoveryPoint>)> {
    let points = series_points(all, filter, query)?;
    match points.first().map(|p| p.sources.as_slice()) {
        None => Err(Error::PathNotInPoints {
            path: query.to_string(),
            why: "no point is left to look in".into(),
        }),
        Some([source]) => Ok((source.join(path).components().collect(), points)),
        Some(_) => Err(Error::InvalidArgument(format!(
            "{query:?} is relative and the series chosen has several sources: give the path absolute"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ContentId, RecoveryPointId};
    use crate::diff::CountedTrees;

    fn file(name: &str, content: u8, mode: u32) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind: EntryKind::File,
            mode,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            size: u64::from(content),
            inode: 1,
            nlink: 1,
            content: Some(ContentId([content; 32])),
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
        }
    }

    fn dir(name: &str, tree: TreeId) -> Entry {
        Entry {
            kind: EntryKind::Dir,
            size: 0,
            content: None,
            subtree: Some(tree),
            ..file(name, 0, 0o755)
        }
    }

    fn point(i: usize, root: TreeId) -> RecoveryPoint {
        RecoveryPoint {
            started_ns: i as i64 * 10,
            ..RecoveryPoint::for_test(&format!("p{i:03}"), root)
        }
    }

    /// 1,000 points over `/a/b/c/f`: every root is new, `a` changes every 100 points, `a/b`
    /// every 250, `a/b/c` (which holds `f`) every 500. Resolving `f` in all of them loads each
    /// distinct tree on the path once and nothing else.
    #[test]
    fn versions_over_many_points_load_each_distinct_tree_on_the_path_once() {
        let mut trees = CountedTrees::default();
        let mut points = Vec::new();
        let mut distinct = std::collections::HashSet::new();
        let id = |level: u8, n: usize| {
            let mut id = [level; 32];
            id[1..9].copy_from_slice(&(n as u64).to_le_bytes());
            TreeId(id)
        };
        for i in 0..1000 {
            let (c, b, a, root) = (id(4, i / 500), id(3, i / 250), id(2, i / 100), id(1, i));
            trees.trees.insert(
                c,
                vec![file("f", (i / 500) as u8 + 1, 0o644), file("g", 9, 0o644)],
            );
            trees.trees.insert(b, vec![dir("c", c)]);
            trees
                .trees
                .insert(a, vec![dir("b", b), file("noise", 1, 0o644)]);
            trees.trees.insert(root, vec![dir("a", a)]);
            distinct.extend([c, b, a, root]);
            points.push(point(i, root));
        }
        let found = versions(&trees, &points, &TrackedPath::InPoint(b"a/b/c/f".to_vec())).unwrap();
        let spans: Vec<(usize, usize, ChangeKind)> =
            found.iter().map(|v| (v.first, v.last, v.change)).collect();
        assert_eq!(
            spans,
            [
                (500, 999, ChangeKind::Modified),
                (0, 499, ChangeKind::Added)
            ]
        );
        assert_eq!(found[0].points(), 500);
        assert_eq!((found[0].first_ns, found[0].last_ns), (5000, 9990));
        let loads = trees.loads.borrow();
        let unique: std::collections::HashSet<_> = loads.iter().collect();
        assert_eq!(loads.len(), unique.len(), "a tree was loaded twice");
        assert_eq!(loads.len(), distinct.len());
    }

    #[test]
    fn a_path_gone_and_back_identical_is_a_new_version_and_metadata_counts() {
        let mut trees = CountedTrees::default();
        let roots: Vec<TreeId> = (0..5).map(|n| TreeId([n + 1; 32])).collect();
        let listings = [
            vec![file("f", 1, 0o644)],
            vec![file("f", 1, 0o644)],
            vec![],
            vec![file("f", 1, 0o644)],
            vec![file("f", 1, 0o600)],
        ];
        for (root, listing) in roots.iter().zip(listings) {
            trees.trees.insert(*root, listing);
        }
        let points: Vec<_> = roots
            .iter()
            .enumerate()
            .map(|(i, r)| point(i, *r))
            .collect();
        let found = versions(&trees, &points, &TrackedPath::InPoint(b"/f".to_vec())).unwrap();
        let spans: Vec<(usize, usize, ChangeKind)> =
            found.iter().map(|v| (v.first, v.last, v.change)).collect();
        assert_eq!(
            spans,
            [
                (4, 4, ChangeKind::Metadata),
                (3, 3, ChangeKind::Added),
                (0, 1, ChangeKind::Added)
            ]
        );
        assert_eq!(found[2].content_key(), hex::encode([1u8; 32]));
        // An absolute path is taken below each point's root (`/src` in these points).
        let absolute = TrackedPath::Absolute("/src/f".into());
        assert_eq!(versions(&trees, &points, &absolute).unwrap(), found);
        let elsewhere = TrackedPath::Absolute("/other/f".into());
        assert!(versions(&trees, &points, &elsewhere).unwrap().is_empty());
        let id = RecoveryPointId("p000".into());
        assert_eq!(points[found[2].first].id, id);
    }
}

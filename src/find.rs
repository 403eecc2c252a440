//! `find`: where a name (or a path pattern) appears across points, one line per path with
//! the span of points that hold it.
//!
//! Points are walked oldest first, and what matches below a directory is remembered by the
//! directory's tree id and path: a directory that several points share unchanged (the same
//! tree id at the same path) is walked once, however many points hold it.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use globset::{GlobBuilder, GlobMatcher};

use crate::catalog::{Entry, EntryKind, RecoveryPoint, TreeId};
use crate::diff::Trees;
use crate::error::{Error, Result};

/// What to look for.
#[derive(Debug)]
pub struct Pattern {
    glob: GlobMatcher,
    /// Match the whole path (from the point's root, no leading `/`), not only the name.
    whole_path: bool,
}

impl Pattern {
    /// A glob (`*`, `?`, `[...]` within a name; with `whole_path`, `**` across directories).
    pub fn new(text: &str, whole_path: bool) -> Result<Pattern> {
        let glob = GlobBuilder::new(text.trim_start_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|e| Error::InvalidArgument(format!("bad pattern {text:?}: {e}")))?;
        Ok(Pattern {
            glob: glob.compile_matcher(),
            whole_path,
        })
    }

    fn matches(&self, path: &str, name: &[u8]) -> bool {
        match self.whole_path {
            true => self.glob.is_match(path.trim_start_matches('/')),
            false => self.glob.is_match(String::from_utf8_lossy(name).as_ref()),
        }
    }
}

/// One path that matched, and the points it appears in.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    pub path: String,
    pub kind: &'static str,
    /// Its size in the newest point that holds it.
    pub size: u64,
    /// When it first and last appears (the points' times, ns UTC), and in how many points.
    pub first_ns: i64,
    pub last_ns: i64,
    pub points: u64,
    pub first_point: String,
    pub last_point: String,
}

/// A match below one directory: its path and entry.
type Matches = Rc<Vec<(String, Entry)>>;

/// Every path of `points` (oldest first) that `pattern` matches, sorted by path.
pub fn find(trees: &dyn Trees, points: &[RecoveryPoint], pattern: &Pattern) -> Result<Vec<Found>> {
    let mut memo: HashMap<(TreeId, String), Matches> = HashMap::new();
    let mut found: BTreeMap<(String, &'static str), Found> = BTreeMap::new();
    for point in points {
        for (path, entry) in
            matches_below(trees, point.root_tree, "", pattern, &mut memo, 0)?.iter()
        {
            let key = (path.clone(), entry.kind.as_str());
            let size = if entry.kind == EntryKind::File {
                entry.size
            } else {
                0
            };
            found
                .entry(key)
                .and_modify(|f| {
                    f.last_ns = point.started_ns;
                    f.last_point = point.id.0.clone();
                    f.points += 1;
                    f.size = size;
                })
                .or_insert_with(|| Found {
                    path: path.clone(),
                    kind: entry.kind.as_str(),
                    size,
                    first_ns: point.started_ns,
                    last_ns: point.started_ns,
                    points: 1,
                    first_point: point.id.0.clone(),
                    last_point: point.id.0.clone(),
                });
        }
    }
    Ok(found.into_values().collect())
}

/// Deeper than any real tree: a tree that holds itself stops here.
const MAX_DEPTH: usize = 4096;

fn matches_below(
    trees: &dyn Trees,
    tree: TreeId,
    prefix: &str,
    pattern: &Pattern,
    memo: &mut HashMap<(TreeId, String), Matches>,
    depth: usize,
) -> Result<Matches> {
    if let Some(known) = memo.get(&(tree, prefix.to_string())) {
        return Ok(known.clone());
    }
    if depth > MAX_DEPTH {
        return Err(Error::Internal {
            what: format!(
                "tree {} is nested deeper than {MAX_DEPTH} directories",
                hex::encode(tree.0)
            ),
        });
    }
    let mut out = Vec::new();
    for entry in trees.entries(&tree)? {
        // Most entries are files a name pattern rules out by their name: no path for them.
        let is_dir = entry.kind == EntryKind::Dir && entry.subtree.is_some();
        if !is_dir && !pattern.whole_path && !pattern.matches("", &entry.name) {
            continue;
        }
        let path = format!("{prefix}/{}", String::from_utf8_lossy(&entry.name));
        if let (EntryKind::Dir, Some(sub)) = (entry.kind, entry.subtree) {
            let below = matches_below(trees, sub, &path, pattern, memo, depth + 1)?;
            if pattern.matches(&path, &entry.name) {
                out.push((path.clone(), entry.clone()));
            }
            out.extend(below.iter().cloned());
        } else if pattern.matches(&path, &entry.name) {
            out.push((path, entry));
        }
    }
    let out = Rc::new(out);
    memo.insert((tree, prefix.to_string()), out.clone());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ContentId, RecoveryPointId};
    use crate::diff::CountedTrees as Counted;

    fn entry(name: &str, kind: EntryKind, subtree: Option<TreeId>, size: u64) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            size,
            inode: 1,
            nlink: 1,
            content: (kind == EntryKind::File).then_some(ContentId([size as u8; 32])),
            subtree,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
        }
    }

    fn point(id: &str, root: TreeId, t: i64) -> RecoveryPoint {
        RecoveryPoint {
            id: RecoveryPointId(id.into()),
            started_ns: t,
            ..RecoveryPoint::for_test(id, root)
        }
    }

    #[test]
    fn a_directory_shared_by_every_point_is_walked_once_and_spans_are_counted() {
        let mut t = Counted::default();
        let shared = TreeId([1; 32]);
        t.trees
            .insert(shared, vec![entry("report.pdf", EntryKind::File, None, 10)]);
        let roots: Vec<TreeId> = (2..5).map(|n| TreeId([n; 32])).collect();
        for (i, root) in roots.iter().enumerate() {
            let mut list = vec![entry("docs", EntryKind::Dir, Some(shared), 0)];
            if i == 1 {
                list.push(entry("draft.pdf", EntryKind::File, None, 3));
            }
            t.trees.insert(*root, list);
        }
        let points: Vec<RecoveryPoint> = roots
            .iter()
            .enumerate()
            .map(|(i, r)| point(&format!("p{i}"), *r, i as i64 * 10))
            .collect();
        let found = find(&t, &points, &Pattern::new("*.pdf", false).unwrap()).unwrap();
        let summary: Vec<(&str, u64, i64, i64)> = found
            .iter()
            .map(|f| (f.path.as_str(), f.points, f.first_ns, f.last_ns))
            .collect();
        assert_eq!(
            summary,
            vec![("/docs/report.pdf", 3, 0, 20), ("/draft.pdf", 1, 10, 10)]
        );
        let shared_loads = t.loads.borrow().iter().filter(|id| **id == shared).count();
        assert_eq!(shared_loads, 1);

        // A whole-path pattern: `**` spans directories, `*` does not.
        let deep = find(&t, &points, &Pattern::new("**/report.pdf", true).unwrap()).unwrap();
        assert_eq!(deep.len(), 1);
        let shallow = find(&t, &points, &Pattern::new("*.pdf", true).unwrap()).unwrap();
        assert_eq!(
            shallow.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["/draft.pdf"]
        );
        assert!(Pattern::new("a[", false).is_err());
    }
}

//! What changed between two points: a walk of two trees side by side that skips every
//! subtree whose id is the same in both (an unchanged directory is the same tree id in every
//! point, so a diff of two neighbouring points loads only the directories that changed).
//!
//! Each change is handed out as it is found, in listing order, with its path: added,
//! removed, modified (content, or a symlink's target), metadata only (mode, owner, times,
//! xattrs), or a change of kind (file ↔ directory ↔ symlink …). Below an added or removed
//! directory, and below one that became or stopped being a directory, every entry is
//! reported as added or removed too, so counts and bytes add up.

use crate::catalog::tree_path::TreePath;
use crate::catalog::{CatalogError, Entry, EntryKind, RecoveryPoint, TreeId};
use crate::error::{Error, Result};
use crate::reassembly::root_entry;
use crate::vault::{LocalCatalog, Vault};

/// Where a diff loads directory listings from (a vault; in tests, a counter of loads).
pub trait Trees {
    fn entries(&self, tree: &TreeId) -> Result<Vec<Entry>>;
}

impl Trees for Vault {
    fn entries(&self, tree: &TreeId) -> Result<Vec<Entry>> {
        Ok(self.tree_entries(tree)?)
    }
}

/// A catalog opened without the key ([`Vault::open_catalog`]): trees as stored, not checked
/// against their ids. For showing what changed; nothing is restored from them.
impl Trees for LocalCatalog {
    fn entries(&self, tree: &TreeId) -> Result<Vec<Entry>> {
        Ok(self.0.tree_entries(tree)?)
    }
}

/// The entry at `path` (`/`-separated, empty: the root) in `point`, if it has one.
pub fn entry_at(trees: &dyn Trees, point: &RecoveryPoint, path: &str) -> Result<Option<Entry>> {
    let mut entry = root_entry(point);
    for name in path.split('/').filter(|n| !n.is_empty()) {
        let Some(tree) = entry.subtree.filter(|_| entry.kind == EntryKind::Dir) else {
            return Ok(None);
        };
        match trees
            .entries(&tree)?
            .into_iter()
            .find(|e| e.name == name.as_bytes())
        {
            Some(below) => entry = below,
            None => return Ok(None),
        }
    }
    Ok(Some(entry))
}

/// How one path differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    /// Content differs (a file's data, a symlink's target, a device's number).
    Modified,
    /// Only mode, owner, times or xattrs differ.
    Metadata,
    /// A different kind of entry: file, directory, symlink and so on.
    Type,
}

/// One change: the path (from the diffed directory, `/`-separated) and the entry before and
/// after (`None` where there is none).
#[derive(Clone, Debug)]
pub struct Change<'e> {
    pub path: &'e str,
    pub kind: ChangeKind,
    pub before: Option<&'e Entry>,
    pub after: Option<&'e Entry>,
}

/// Counts of a diff, for its summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiffTotals {
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
    pub metadata: u64,
    pub type_changed: u64,
    /// Bytes of the files added (and of the new side of modified files).
    pub bytes_added: u64,
    /// Bytes of the files removed (and of the old side of modified files).
    pub bytes_removed: u64,
}

impl DiffTotals {
    /// Adds one change.
    pub fn count(&mut self, change: &Change<'_>) {
        let size = |e: Option<&Entry>| {
            e.filter(|e| e.kind == EntryKind::File)
                .map_or(0, |e| e.size)
        };
        match change.kind {
            ChangeKind::Added => self.added += 1,
            ChangeKind::Removed => self.removed += 1,
            ChangeKind::Modified => self.modified += 1,
            ChangeKind::Metadata => self.metadata += 1,
            ChangeKind::Type => self.type_changed += 1,
        }
        if change.kind != ChangeKind::Metadata {
            self.bytes_added += size(change.after);
            self.bytes_removed += size(change.before);
        }
    }
}

/// Compares directory `before` with directory `after` (root trees of two points, or two
/// subtrees), handing each change to `visit`. `prefix` is put before every path.
pub fn diff<E: From<Error>>(
    trees: &dyn Trees,
    before: TreeId,
    after: TreeId,
    prefix: &str,
    visit: &mut dyn FnMut(&Change<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let mut path = TreePath::new();
    compare(trees, before, after, prefix, &mut path, visit)
}

fn compare<E: From<Error>>(
    trees: &dyn Trees,
    before: TreeId,
    after: TreeId,
    prefix: &str,
    path: &mut TreePath,
    visit: &mut dyn FnMut(&Change<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    if before == after {
        return Ok(());
    }
    enter(path, after)?;
    let (old, new) = (trees.entries(&before)?, trees.entries(&after)?);
    // Both listings are sorted by name: merge them.
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) => a.name.cmp(&b.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                one_side(trees, &old[i], ChangeKind::Removed, prefix, path, visit)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                one_side(trees, &new[j], ChangeKind::Added, prefix, path, visit)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                both(trees, &old[i], &new[j], prefix, path, visit)?;
                i += 1;
                j += 1;
            }
        }
    }
    path.leave();
    Ok(())
}

fn both<E: From<Error>>(
    trees: &dyn Trees,
    a: &Entry,
    b: &Entry,
    prefix: &str,
    path: &mut TreePath,
    visit: &mut dyn FnMut(&Change<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let at = join(prefix, &b.name);
    let report = |kind, visit: &mut dyn FnMut(&Change<'_>) -> std::result::Result<(), E>| {
        visit(&Change {
            path: &at,
            kind,
            before: Some(a),
            after: Some(b),
        })
    };
    match entry_change(a, b) {
        Some(ChangeKind::Type) => {
            // What a directory held is gone with it; what a new one holds is new.
            report(ChangeKind::Type, visit)?;
            below(trees, a, ChangeKind::Removed, &at, path, visit)?;
            return below(trees, b, ChangeKind::Added, &at, path, visit);
        }
        Some(kind) => report(kind, visit)?,
        None => {}
    }
    if let (EntryKind::Dir, Some(sa), Some(sb)) = (a.kind, a.subtree, b.subtree) {
        compare(trees, sa, sb, &at, path, visit)?;
    }
    Ok(())
}

/// Reports `entry`, only in one of the points, and everything below it.
fn one_side<E: From<Error>>(
    trees: &dyn Trees,
    entry: &Entry,
    kind: ChangeKind,
    prefix: &str,
    path: &mut TreePath,
    visit: &mut dyn FnMut(&Change<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let at = join(prefix, &entry.name);
    let (before, after) = match kind {
        ChangeKind::Removed => (Some(entry), None),
        _ => (None, Some(entry)),
    };
    visit(&Change {
        path: &at,
        kind,
        before,
        after,
    })?;
    below(trees, entry, kind, &at, path, visit)
}

/// Reports everything below `entry` (at `at`), if it is a directory, as `kind`.
fn below<E: From<Error>>(
    trees: &dyn Trees,
    entry: &Entry,
    kind: ChangeKind,
    at: &str,
    path: &mut TreePath,
    visit: &mut dyn FnMut(&Change<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    if let (EntryKind::Dir, Some(tree)) = (entry.kind, entry.subtree) {
        enter(path, tree)?;
        for child in trees.entries(&tree)? {
            one_side(trees, &child, kind, at, path, visit)?;
        }
        path.leave();
    }
    Ok(())
}

/// How the entry `after` differs from `before`, both at one path: a change of kind, of
/// content (a file's data, a symlink's target, a device's number) or of metadata only (mode,
/// owner, mtime, xattrs); None if it does not. A directory's own entry is compared, not what
/// it holds (compare the subtrees for that). Inode, link count and ctime are not compared:
/// they change when nothing a reader sees does (a backup of a copy, a new hardlink).
pub fn entry_change(before: &Entry, after: &Entry) -> Option<ChangeKind> {
    let (a, b) = (before, after);
    if a.kind != b.kind {
        return Some(ChangeKind::Type);
    }
    let content_differs = match a.kind {
        EntryKind::Dir => false,
        EntryKind::File => a.content != b.content || a.size != b.size,
        EntryKind::Symlink => a.target != b.target,
        EntryKind::CharDev | EntryKind::BlockDev => a.rdev != b.rdev,
        EntryKind::Fifo | EntryKind::Socket => false,
    };
    if content_differs {
        Some(ChangeKind::Modified)
    } else if metadata_differs(a, b) {
        Some(ChangeKind::Metadata)
    } else {
        None
    }
}

fn metadata_differs(a: &Entry, b: &Entry) -> bool {
    a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.mtime_ns != b.mtime_ns
        || a.xattrs != b.xattrs
}

fn join(prefix: &str, name: &[u8]) -> String {
    format!("{prefix}/{}", String::from_utf8_lossy(name))
}

fn enter(path: &mut TreePath, tree: TreeId) -> Result<()> {
    path.enter(tree)
        .map_err(|source| Error::from(CatalogError::BadTree { tree, source }))
}

/// Trees in memory that count every load: what the diff and `find` tests check their
/// skipping of shared subtrees with.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct CountedTrees {
    pub trees: std::collections::HashMap<TreeId, Vec<Entry>>,
    pub loads: std::cell::RefCell<Vec<TreeId>>,
}

#[cfg(test)]
impl Trees for CountedTrees {
    fn entries(&self, tree: &TreeId) -> Result<Vec<Entry>> {
        self.loads.borrow_mut().push(*tree);
        Ok(self.trees.get(tree).cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ContentId;

    type Counted = CountedTrees;

    impl Counted {
        fn tree(&mut self, n: u8, mut entries: Vec<Entry>) -> TreeId {
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            let id = TreeId([n; 32]);
            self.trees.insert(id, entries);
            id
        }
    }

    fn file(name: &str, content: u8, size: u64) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 1,
            ctime_ns: 1,
            size,
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
            content: None,
            subtree: Some(tree),
            size: 0,
            ..file(name, 0, 0)
        }
    }

    fn changes(trees: &Counted, a: TreeId, b: TreeId) -> Vec<(String, ChangeKind)> {
        let mut out = Vec::new();
        diff(trees, a, b, "", &mut |c: &Change<'_>| -> Result<()> {
            out.push((c.path.to_string(), c.kind));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_subtree_shared_by_both_points_is_never_loaded() {
        let mut t = Counted::default();
        let big = t.tree(1, vec![file("x", 1, 10), file("y", 2, 20)]);
        let old_docs = t.tree(2, vec![file("a", 3, 5)]);
        let new_docs = t.tree(3, vec![file("a", 4, 6), file("b", 5, 7)]);
        let gone = t.tree(4, vec![file("old", 6, 8)]);
        let before = t.tree(
            10,
            vec![
                dir("big", big),
                dir("docs", old_docs),
                dir("gone", gone),
                file("f", 7, 1),
            ],
        );
        let mut meta = file("f", 7, 1);
        meta.mode = 0o600;
        let link = Entry {
            kind: EntryKind::Symlink,
            content: None,
            target: Some(b"f".to_vec()),
            ..file("gone", 0, 1)
        };
        let after = t.tree(11, vec![dir("big", big), dir("docs", new_docs), link, meta]);

        let got = changes(&t, before, after);
        assert_eq!(
            got,
            vec![
                ("/docs/a".to_string(), ChangeKind::Modified),
                ("/docs/b".to_string(), ChangeKind::Added),
                ("/f".to_string(), ChangeKind::Metadata),
                ("/gone".to_string(), ChangeKind::Type),
                ("/gone/old".to_string(), ChangeKind::Removed),
            ]
        );
        let loads = t.loads.borrow().clone();
        assert!(
            !loads.contains(&big),
            "the shared subtree was loaded: {loads:?}"
        );
        // Both roots, both docs and what the retyped directory held.
        assert_eq!(loads.len(), 5, "{loads:?}");
        // The same point against itself loads nothing at all.
        t.loads.borrow_mut().clear();
        assert!(changes(&t, before, before).is_empty());
        assert!(t.loads.borrow().is_empty());
    }

    #[test]
    fn everything_below_an_added_or_removed_directory_is_reported_and_counted() {
        let mut t = Counted::default();
        let sub = t.tree(1, vec![file("a", 1, 10), file("b", 2, 20)]);
        let before = t.tree(2, vec![dir("d", sub)]);
        let after = t.tree(3, vec![file("e", 3, 5)]);
        let mut totals = DiffTotals::default();
        diff(&t, before, after, "", &mut |c: &Change<'_>| -> Result<()> {
            totals.count(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            totals,
            DiffTotals {
                added: 1,
                removed: 3,
                bytes_added: 5,
                bytes_removed: 30,
                ..DiffTotals::default()
            }
        );
    }

    #[test]
    fn a_directory_that_changes_kind_takes_what_it_held_with_it() {
        let mut t = Counted::default();
        let old_sub = t.tree(1, vec![file("a", 1, 10), file("b", 2, 20)]);
        let new_sub = t.tree(2, vec![file("c", 3, 5)]);
        let before = t.tree(3, vec![dir("d", old_sub), file("e", 4, 7)]);
        let after = t.tree(4, vec![file("d", 5, 1), dir("e", new_sub)]);
        assert_eq!(
            changes(&t, before, after),
            vec![
                ("/d".to_string(), ChangeKind::Type),
                ("/d/a".to_string(), ChangeKind::Removed),
                ("/d/b".to_string(), ChangeKind::Removed),
                ("/e".to_string(), ChangeKind::Type),
                ("/e/c".to_string(), ChangeKind::Added),
            ]
        );
        let mut totals = DiffTotals::default();
        diff(&t, before, after, "", &mut |c: &Change<'_>| -> Result<()> {
            totals.count(c);
            Ok(())
        })
        .unwrap();
        assert_eq!((totals.bytes_added, totals.bytes_removed), (1 + 5, 30 + 7));
    }
}

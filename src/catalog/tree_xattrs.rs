//! The `trees.xattrs` column: whether an entry of a tree, or of a tree below it, has extended
//! attributes. A mount of a point whose root says "none" tells the kernel to stop asking
//! (each question is a round trip, two per file for `ls -l`).
//!
//! A commit settles the trees of its point and `catalog rebuild` those of every point it puts
//! back. Settling decodes only trees not settled yet, so a point that shares most of its
//! trees with its parent decodes only its new ones. Unknown (NULL: rows from before the
//! column, a tree that is missing or does not decode) counts as "may have xattrs" and is
//! never an error: the column only saves work, and a commit must not fail for it.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::{tree_codec, Catalog, EntryKind, Result, TreeId};

impl Catalog {
    /// Whether an entry of `tree` or below it has extended attributes; None if not known.
    pub fn tree_xattrs(&self, tree: &TreeId) -> Result<Option<bool>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT xattrs FROM trees WHERE id = ?1")?;
        let value: Option<Option<bool>> = stmt.query_row([&tree.0[..]], |r| r.get(0)).optional()?;
        Ok(value.flatten())
    }
}

/// What a tree says of itself before its subtrees are asked.
enum Look {
    /// Settled already, or has xattrs itself, or cannot be read (None).
    Known(Option<bool>),
    /// Not settled, and none of its own entries has xattrs: its subtrees decide.
    Open(Vec<TreeId>),
}

fn look(conn: &Connection, tree: &TreeId) -> Result<Look> {
    let mut stmt = conn.prepare_cached("SELECT xattrs FROM trees WHERE id = ?1")?;
    let settled: Option<Option<bool>> = stmt.query_row([&tree.0[..]], |r| r.get(0)).optional()?;
    match settled {
        None => return Ok(Look::Known(None)),
        Some(Some(xattrs)) => return Ok(Look::Known(Some(xattrs))),
        Some(None) => {}
    }
    let mut stmt = conn.prepare_cached("SELECT entries FROM trees WHERE id = ?1")?;
    let blob: Vec<u8> = stmt.query_row([&tree.0[..]], |r| r.get(0))?;
    let Ok(entries) = tree_codec::decode(&blob) else {
        return Ok(Look::Known(None));
    };
    if entries.iter().any(|e| !e.xattrs.is_empty()) {
        store(conn, tree, true)?;
        return Ok(Look::Known(Some(true)));
    }
    let subtrees = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .filter_map(|e| e.subtree)
        .collect();
    Ok(Look::Open(subtrees))
}

fn store(conn: &Connection, tree: &TreeId, xattrs: bool) -> Result<()> {
    let mut stmt = conn.prepare_cached("UPDATE trees SET xattrs = ?2 WHERE id = ?1")?;
    stmt.execute(params![&tree.0[..], xattrs])?;
    Ok(())
}

/// Settles `root` and the unsettled trees below it; returns what `root` says (None: not
/// known, because a tree below is missing or does not decode).
pub(super) fn settle(conn: &Connection, root: &TreeId) -> Result<Option<bool>> {
    let mut answers: HashMap<TreeId, Option<bool>> = HashMap::new();
    let mut open: HashMap<TreeId, Vec<TreeId>> = HashMap::new();
    // Open trees, each after every open tree below it (trees form no cycles: ids are hashes
    // of the listings, which name their subtrees by id).
    let mut finished = Vec::new();
    let mut stack = vec![(*root, false)];
    while let Some((tree, children_done)) = stack.pop() {
        if children_done {
            finished.push(tree);
            continue;
        }
        if answers.contains_key(&tree) || open.contains_key(&tree) {
            continue;
        }
        match look(conn, &tree)? {
            Look::Known(answer) => {
                answers.insert(tree, answer);
            }
            Look::Open(subtrees) => {
                stack.push((tree, true));
                stack.extend(subtrees.iter().map(|s| (*s, false)));
                open.insert(tree, subtrees);
            }
        }
    }
    for tree in finished {
        let subtrees = open.remove(&tree).unwrap_or_default();
        let answer = combine(subtrees.iter().map(|s| answers.get(s).copied().flatten()));
        if let Some(xattrs) = answer {
            store(conn, &tree, xattrs)?;
        }
        answers.insert(tree, answer);
    }
    Ok(answers.get(root).copied().flatten())
}

/// A tree without xattrs of its own, from its subtrees' answers: any "yes" decides, else any
/// unknown leaves it unknown.
fn combine(subtrees: impl Iterator<Item = Option<bool>>) -> Option<bool> {
    let mut answer = Some(false);
    for sub in subtrees {
        match sub {
            Some(true) => return Some(true),
            None => answer = None,
            Some(false) => {}
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{BackupCommit, Entry, RecoveryPoint, TreeRow};

    fn file(name: &str, xattrs: bool) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            size: 0,
            inode: 0,
            nlink: 1,
            content: None,
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: if xattrs {
                vec![(b"user.a".to_vec(), b"v".to_vec())]
            } else {
                Vec::new()
            },
        }
    }

    fn dir(name: &str, subtree: u8) -> Entry {
        Entry {
            kind: EntryKind::Dir,
            subtree: Some(TreeId([subtree; 32])),
            ..file(name, false)
        }
    }

    /// Commits a point whose root is tree `root`, with `trees` (id byte, entries).
    fn commit(cat: &mut Catalog, point: &str, root: u8, trees: &[(u8, Vec<Entry>)]) {
        let commit = BackupCommit {
            trees: trees
                .iter()
                .map(|(id, entries)| TreeRow::new(TreeId([*id; 32]), entries))
                .collect(),
            ..BackupCommit::default()
        };
        let point = RecoveryPoint::for_test(point, TreeId([root; 32]));
        cat.commit_backup(&commit, &point).unwrap();
    }

    fn xattrs(cat: &Catalog, tree: u8) -> Option<bool> {
        cat.tree_xattrs(&TreeId([tree; 32])).unwrap()
    }

    #[test]
    fn a_commit_settles_every_tree_of_its_point() {
        let mut cat = Catalog::open_in_memory().unwrap();
        // 1 -> {2 -> {3: an xattr deep down}, 4: none}; 5 shares 4 with 1.
        commit(
            &mut cat,
            "p1",
            1,
            &[
                (3, vec![file("x", false), file("y", true)]),
                (2, vec![dir("deep", 3)]),
                (4, vec![file("plain", false)]),
                (1, vec![dir("a", 2), dir("b", 4), file("f", false)]),
            ],
        );
        assert_eq!(xattrs(&cat, 3), Some(true));
        assert_eq!(xattrs(&cat, 2), Some(true));
        assert_eq!(xattrs(&cat, 1), Some(true));
        assert_eq!(xattrs(&cat, 4), Some(false));
        commit(&mut cat, "p2", 5, &[(5, vec![dir("b", 4), dir("b2", 4)])]);
        assert_eq!(xattrs(&cat, 5), Some(false));
        assert_eq!(xattrs(&cat, 99), None);
    }

    #[test]
    fn unknown_rows_are_settled_by_the_next_point_and_a_missing_tree_leaves_its_parents_unknown() {
        let mut cat = Catalog::open_in_memory().unwrap();
        commit(&mut cat, "p1", 1, &[(1, vec![file("f", false)])]);
        // As a catalog from before the column has it.
        cat.conn
            .execute("UPDATE trees SET xattrs = NULL", [])
            .unwrap();
        assert_eq!(xattrs(&cat, 1), None);
        commit(&mut cat, "p2", 2, &[(2, vec![dir("old", 1)])]);
        assert_eq!(xattrs(&cat, 1), Some(false));
        assert_eq!(xattrs(&cat, 2), Some(false));
        // Tree 7 is nowhere: whatever is above it stays unknown, its siblings are settled.
        commit(
            &mut cat,
            "p3",
            3,
            &[(6, vec![]), (3, vec![dir("gone", 7), dir("empty", 6)])],
        );
        assert_eq!(xattrs(&cat, 3), None);
        assert_eq!(xattrs(&cat, 6), Some(false));
    }
}

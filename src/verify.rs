//! Verify: scrub packs and blocks against the catalog, and say what damage affects.
//!
//! The catalog's own file is checked first (SQLite's `quick_check`).
//!
//! Without `read_data`, every pack the catalog names must exist with its recorded size and
//! every block a file uses must be in the catalog. With `read_data`, every pack is read whole:
//! its bytes must hash to its name and every frame must open and hash to its block id. Damage
//! is traced to the points and paths it affects. Packs the catalog does not name (left by an
//! interrupted backup) are listed as unreferenced; they are not damage.
//!
//! Every point that claims to be readable (complete or partial) must be restorable: each
//! block its files use must be located in a stored pack. Files for which that fails are
//! listed by point and path ([`VerifyReport::not_restorable`]).
//!
//! Every tree every point reaches is checked too ([`check_trees`]): it must be in the catalog,
//! decode with plain names, hash to its id, and not contain itself. A tree that fails is
//! reported where a point first reaches it and is not walked further.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rayon::prelude::*;

use crate::catalog::tree_path::{TreePath, MAX_TREE_DEPTH};
use crate::catalog::{
    BlockLocation, Catalog, CatalogError, Content, ContentId, Entry, EntryKind, PackState,
    PointState, TreeId,
};
use crate::error::Result;
use crate::progress::Progress;
use crate::store::{BlockId, IdSet, PackId};
use crate::vault::Vault;

/// What to check.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    pub read_data: bool,
}

/// A file of a point that damage affects.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct AffectedFile {
    pub point: String,
    pub path: String,
}

/// What verify found.
#[derive(Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub packs_checked: u64,
    pub blocks_checked: u64,
    pub bytes_read: u64,
    pub damaged_packs: Vec<String>,
    pub damaged_blocks: u64,
    pub problems: Vec<String>,
    pub affected: Vec<AffectedFile>,
    pub unreferenced_packs: Vec<String>,
    /// Files of complete or partial points that cannot be restored: a block they use is not
    /// in a stored pack (see [`not_restorable_files`]).
    pub not_restorable: Vec<AffectedFile>,
    /// Trees that cannot be trusted (see [`check_trees`]).
    pub bad_trees: Vec<BadTree>,
}

/// A tree that cannot be trusted, where a point first reaches it.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
pub struct BadTree {
    pub point: String,
    /// The directory whose listing the tree is (`/`: the point's root).
    pub path: String,
    pub tree: String,
    pub problem: String,
}

impl VerifyReport {
    /// True if nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.damaged_packs.is_empty()
            && self.problems.is_empty()
            && self.damaged_blocks == 0
            && self.not_restorable.is_empty()
            && self.bad_trees.is_empty()
    }
}

struct PackCheck {
    pack: PackId,
    problem: Option<String>,
    bad_blocks: Vec<BlockId>,
    blocks: u64,
    bytes: u64,
}

/// Runs verify.
pub fn verify(
    vault: &Vault,
    options: VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    // The catalog's own structure first: SQLite answers queries from a damaged file until a
    // query reaches the damaged page, so a clean verify must have looked at every page.
    for problem in vault.catalog().check_structure()? {
        report.problems.push(format!(
            "catalog: {problem} (`synvault catalog rebuild --force` recreates it from the store)"
        ));
    }
    let packs = vault.catalog().packs()?;
    let on_disk: HashMap<PackId, u64> = vault.backend().list()?.into_iter().collect();
    // Packs prune set aside and metadata packs being committed are known too.
    let named: HashSet<PackId> = vault.catalog().known_pack_names()?;
    report.unreferenced_packs = on_disk
        .keys()
        .filter(|p| !named.contains(p))
        .map(PackId::to_hex)
        .collect();

    let stored: Vec<(PackId, u64)> = packs
        .iter()
        .filter(|p| p.2 == PackState::Stored)
        .map(|p| (p.0, p.1))
        .collect();
    progress.set_total(if options.read_data {
        stored.iter().map(|p| p.1).sum()
    } else {
        0
    });
    let meta = vault.catalog().meta_packs()?;
    // Each pack's blocks are asked of the catalog as the pack is checked (by the
    // `blocks_by_pack` index), so memory holds the blocks of the packs in hand, not the vault's.
    let checks: Vec<PackCheck> = stored
        .par_iter()
        .map(|&(pack, size)| {
            let blocks = vault.read_catalog()?.blocks_of_pack(&pack)?;
            check_pack(
                vault,
                PackToCheck {
                    pack,
                    size,
                    meta: meta.contains(&pack),
                    found: on_disk.get(&pack).copied(),
                },
                &blocks,
                options,
                progress,
            )
        })
        .collect::<Result<_>>()?;

    let mut bad_blocks = HashSet::new();
    for check in checks {
        report.packs_checked += 1;
        report.blocks_checked += check.blocks;
        report.bytes_read += check.bytes;
        if let Some(problem) = check.problem {
            report.damaged_packs.push(check.pack.to_hex());
            report.problems.push(problem);
        }
        bad_blocks.extend(check.bad_blocks);
    }
    report.damaged_blocks = bad_blocks.len() as u64;
    let known = vault.catalog().block_ids()?;
    // Only what the points reach: rows of forgotten points that prune has not removed yet
    // (a reader was alive, or it was stopped) are garbage, not damage.
    let reachable = reachable_contents(vault)?;
    let contents: Vec<(ContentId, Content)> = vault
        .catalog()
        .all_contents()?
        .into_iter()
        .filter(|(id, _)| reachable.contains(id))
        .collect();
    let mut hit = HashSet::new();
    for (id, content) in &contents {
        for (block, _) in &content.blocks {
            if *block == BlockId::ZERO {
                continue;
            }
            if bad_blocks.contains(block) {
                hit.insert(*id);
            } else if !known.contains(block) {
                report.problems.push(format!(
                    "block {block} used by a file is not in the catalog (`synvault catalog rebuild --force` reads every pack's footer again)"
                ));
                hit.insert(*id);
            }
        }
    }
    if !hit.is_empty() {
        report.affected = affected_files(vault, &hit)?;
    }
    report.not_restorable = not_restorable_files(vault, &known, &contents)?;
    report.bad_trees = check_trees(vault)?;
    Ok(report)
}

/// A pack the catalog names, and what the store holds under its name.
struct PackToCheck {
    pack: PackId,
    size: u64,
    /// A metadata pack: it must open under the catalog key.
    meta: bool,
    /// Its size in the store, if it is there.
    found: Option<u64>,
}

fn check_pack(
    vault: &Vault,
    to_check: PackToCheck,
    blocks: &[(BlockId, BlockLocation)],
    options: VerifyOptions,
    progress: &dyn Progress,
) -> Result<PackCheck> {
    let PackToCheck {
        pack,
        size,
        meta,
        found,
    } = to_check;
    let mut check = PackCheck {
        pack,
        problem: None,
        bad_blocks: Vec::new(),
        blocks: blocks.len() as u64,
        bytes: 0,
    };
    let all_bad = |mut check: PackCheck, why: String| {
        check.problem = Some(why);
        check.bad_blocks = blocks.iter().map(|b| b.0).collect();
        check
    };
    match found {
        None => return Ok(all_bad(check, format!("pack {pack} is missing"))),
        Some(len) if len != size => {
            return Ok(all_bad(
                check,
                format!("pack {pack} has {len} bytes, the catalog says {size}"),
            ))
        }
        Some(_) => {}
    }
    if !options.read_data {
        return Ok(check);
    }
    let bytes = match vault.backend().read_all(&pack) {
        Ok(b) => b,
        Err(e) => return Ok(all_bad(check, format!("pack {pack} cannot be read: {e}"))),
    };
    check.bytes = bytes.len() as u64;
    progress.add_bytes(check.bytes);
    if PackId::of(&bytes) != pack {
        check.problem = Some(format!(
            "pack {pack} does not match its name (its bytes changed)"
        ));
    } else if meta {
        if let Err(why) = vault.open_meta_pack(&bytes) {
            check.problem = Some(format!("metadata pack {pack}: {why}"));
        }
    }
    for (id, loc) in blocks {
        let frame = bytes
            .get(loc.offset as usize..loc.offset as usize + loc.stored_len as usize)
            .map(<[u8]>::to_vec);
        let ok = frame.is_some_and(|f| vault.codec().decode(id, f, loc.raw_len as usize).is_ok());
        if !ok {
            check.bad_blocks.push(*id);
        }
    }
    Ok(check)
}

/// Every file version some point reaches (trees that cannot be read are skipped: reported by
/// [`check_trees`]).
fn reachable_contents(vault: &Vault) -> Result<HashSet<ContentId>> {
    let catalog = vault.catalog();
    let mut seen_trees = HashSet::new();
    let mut out = HashSet::new();
    for point in catalog.points()? {
        let mut stack = vec![(point.root_tree, 0usize)];
        while let Some((tree, depth)) = stack.pop() {
            if depth > MAX_TREE_DEPTH || !seen_trees.insert(tree) {
                continue;
            }
            let Ok(entries) = catalog.tree_entries(&tree) else {
                continue;
            };
            for entry in entries {
                match (entry.kind, entry.subtree, entry.content) {
                    (EntryKind::Dir, Some(sub), _) => stack.push((sub, depth + 1)),
                    (EntryKind::File, _, Some(content)) => {
                        out.insert(content);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// Every (point, path) whose file uses one of `contents`. Trees that cannot be trusted are
/// reported by [`check_trees`] and not walked here.
fn affected_files(vault: &Vault, contents: &HashSet<ContentId>) -> Result<Vec<AffectedFile>> {
    let points = vault.catalog().points()?;
    let mut out = Vec::new();
    for point in points {
        let mut stack = vec![(point.root_tree, PathBuf::new(), 0)];
        while let Some((tree, path, depth)) = stack.pop() {
            let Ok(entries) = vault.tree_entries(&tree) else {
                continue;
            };
            for entry in entries {
                let child: PathBuf = Path::new(&path).join(OsStr::from_bytes(&entry.name));
                match entry.kind {
                    EntryKind::Dir => {
                        if let Some(sub) = entry.subtree.filter(|_| depth < MAX_TREE_DEPTH) {
                            stack.push((sub, child, depth + 1));
                        }
                    }
                    EntryKind::File if entry.content.is_some_and(|c| contents.contains(&c)) => {
                        out.push(AffectedFile {
                            point: point.id.0.clone(),
                            path: child.display().to_string(),
                        });
                    }
                    _ => {}
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every file of a point that claims to be readable (complete or partial) and cannot be
/// restored: its version is not in the catalog, or a block it uses is not, or is located in a
/// pack that is not stored (in transit, or unknown). Blocks are judged once per file version
/// and each tree is walked once across all points, so shared directories cost nothing more.
fn not_restorable_files(
    vault: &Vault,
    known: &IdSet,
    contents: &[(ContentId, Content)],
) -> Result<Vec<AffectedFile>> {
    let catalog = vault.catalog();
    let not_stored = catalog.blocks_not_stored()?;
    let readable = |content: &Content| {
        content.blocks.iter().all(|(block, _)| {
            *block == BlockId::ZERO || (known.contains(block) && !not_stored.contains(block))
        })
    };
    let readable: HashMap<ContentId, bool> = contents
        .iter()
        .map(|(id, content)| (*id, readable(content)))
        .collect();
    let mut walk = RestorableWalk {
        catalog: &catalog,
        readable: &readable,
        trees: HashMap::new(),
    };
    let mut out = Vec::new();
    for point in catalog.points()? {
        if !matches!(point.state, PointState::Complete | PointState::Partial) {
            continue;
        }
        for path in walk.bad_paths(point.root_tree)?.iter() {
            out.push(AffectedFile {
                point: point.id.0.clone(),
                path: under(Path::new("."), path).display().to_string(),
            });
        }
    }
    out.sort();
    Ok(out)
}

/// `path` below `dir`; an empty `path` (a directory that cannot be read) is `dir` itself.
fn under(dir: &Path, path: &Path) -> PathBuf {
    if path.as_os_str().is_empty() {
        dir.to_path_buf()
    } else if dir == Path::new(".") {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// Paths, relative to a tree, of the files below it that cannot be restored.
type BadPaths = Rc<Vec<PathBuf>>;

/// A depth-first walk of trees that remembers each tree's answer (Merkle trees are shared
/// between points and directories).
struct RestorableWalk<'a> {
    catalog: &'a Catalog,
    /// Per file version: true if every block it uses is in a stored pack.
    readable: &'a HashMap<ContentId, bool>,
    trees: HashMap<TreeId, BadPaths>,
}

/// One directory being walked.
struct Frame {
    tree: TreeId,
    /// Its name in its parent; empty for the root.
    name: PathBuf,
    entries: std::vec::IntoIter<Entry>,
    bad: Vec<PathBuf>,
}

impl RestorableWalk<'_> {
    /// The files below `root` that cannot be restored. Iterative, so depth costs no stack; a
    /// tree met again on its own path (a crafted cycle) is not entered a second time.
    fn bad_paths(&mut self, root: TreeId) -> Result<BadPaths> {
        if let Some(done) = self.trees.get(&root) {
            return Ok(Rc::clone(done));
        }
        let mut on_path = HashSet::from([root]);
        let mut stack = vec![self.enter(root, PathBuf::new())?];
        loop {
            let Some(top) = stack.last_mut() else {
                return Ok(Rc::default());
            };
            if let Some(entry) = top.entries.next() {
                if let Some(frame) = self.visit(top, entry, &mut on_path)? {
                    stack.push(frame);
                }
                continue;
            }
            let Some(done) = stack.pop() else {
                return Ok(Rc::default());
            };
            on_path.remove(&done.tree);
            let bad = Rc::new(done.bad);
            self.trees.insert(done.tree, Rc::clone(&bad));
            match stack.last_mut() {
                Some(parent) => parent.bad.extend(bad.iter().map(|p| under(&done.name, p))),
                None => return Ok(bad),
            }
        }
    }

    /// Judges one entry of `top`; returns the frame of a directory to walk next.
    fn visit(
        &mut self,
        top: &mut Frame,
        entry: Entry,
        on_path: &mut HashSet<TreeId>,
    ) -> Result<Option<Frame>> {
        let name = PathBuf::from(OsStr::from_bytes(&entry.name));
        match (entry.kind, entry.subtree, entry.content) {
            (EntryKind::Dir, Some(sub), _) => {
                if let Some(done) = self.trees.get(&sub) {
                    top.bad.extend(done.iter().map(|p| under(&name, p)));
                } else if on_path.insert(sub) {
                    return Ok(Some(self.enter(sub, name)?));
                }
            }
            (EntryKind::File, _, Some(content))
                if !self.readable.get(&content).copied().unwrap_or(false) =>
            {
                top.bad.push(name);
            }
            _ => {}
        }
        Ok(None)
    }

    /// A frame for `tree`. A tree the catalog lacks or cannot decode makes the whole
    /// directory unrestorable: it is listed itself and not entered.
    fn enter(&self, tree: TreeId, name: PathBuf) -> Result<Frame> {
        let (entries, bad) = match self.catalog.tree_entries(&tree) {
            Ok(entries) => (entries, Vec::new()),
            Err(CatalogError::Corrupt(_))
            | Err(CatalogError::BadTree { .. })
            | Err(CatalogError::Sql(rusqlite::Error::QueryReturnedNoRows)) => {
                (Vec::new(), vec![PathBuf::new()])
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Frame {
            tree,
            name,
            entries: entries.into_iter(),
            bad,
        })
    }
}

/// Checks every tree of every point once: it is in the catalog, decodes with plain names,
/// hashes to its id and does not contain itself (see [`Vault::tree_entries`]).
pub fn check_trees(vault: &Vault) -> Result<Vec<BadTree>> {
    let points = vault.catalog().points()?;
    let mut walk = TreeCheck {
        vault,
        seen: HashSet::new(),
        trees: TreePath::new(),
        bad: Vec::new(),
    };
    for point in &points {
        walk.check(&point.id.0, point.root_tree, Path::new("/"))?;
    }
    Ok(walk.bad)
}

struct TreeCheck<'v> {
    vault: &'v Vault,
    seen: HashSet<TreeId>,
    trees: TreePath,
    bad: Vec<BadTree>,
}

impl TreeCheck<'_> {
    fn check(&mut self, point: &str, tree: TreeId, path: &Path) -> Result<()> {
        if let Err(problem) = self.trees.enter(tree) {
            self.report(point, tree, path, problem.to_string());
            return Ok(());
        }
        if self.seen.insert(tree) {
            self.check_entries(point, tree, path)?;
        }
        self.trees.leave();
        Ok(())
    }

    fn check_entries(&mut self, point: &str, tree: TreeId, path: &Path) -> Result<()> {
        let entries = match self.vault.tree_entries(&tree) {
            Ok(entries) => entries,
            Err(CatalogError::BadTree { source, .. }) => {
                self.report(point, tree, path, source.to_string());
                return Ok(());
            }
            Err(CatalogError::Sql(rusqlite::Error::QueryReturnedNoRows)) => {
                self.report(
                    point,
                    tree,
                    path,
                    "it is not in the catalog (`synvault catalog rebuild --force` reads it back from the store's metadata packs)".into(),
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            if let Some(sub) = entry.subtree.filter(|_| entry.kind == EntryKind::Dir) {
                self.check(point, sub, &path.join(OsStr::from_bytes(&entry.name)))?;
            }
        }
        Ok(())
    }

    fn report(&mut self, point: &str, tree: TreeId, path: &Path, problem: String) {
        self.bad.push(BadTree {
            point: point.to_string(),
            path: path.display().to_string(),
            tree: hex::encode(tree.0),
            problem,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{BackupCommit, RecoveryPoint, TreeRow};

    fn entry(name: &str, content: Option<u8>, subtree: Option<u8>) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind: if subtree.is_some() {
                EntryKind::Dir
            } else {
                EntryKind::File
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            size: 0,
            inode: 0,
            nlink: 1,
            content: content.map(|c| ContentId([c; 32])),
            subtree: subtree.map(|t| TreeId([t; 32])),
            target: None,
            rdev: 0,
            xattrs: vec![],
        }
    }

    /// Root 1 holds a bad file, itself (a crafted cycle), a tree the catalog lacks and
    /// directory 2, which holds a good file and one whose version is not in the catalog.
    fn crafted_catalog() -> Catalog {
        let mut cat = Catalog::open_in_memory().unwrap();
        let root = vec![
            entry("bad", Some(10), None),
            entry("lost", None, Some(9)),
            entry("self", None, Some(1)),
            entry("sub", None, Some(2)),
        ];
        let sub = vec![entry("gone", Some(12), None), entry("ok", Some(11), None)];
        let commit = BackupCommit {
            trees: vec![
                TreeRow::new(TreeId([1; 32]), &root),
                TreeRow::new(TreeId([2; 32]), &sub),
            ],
            ..BackupCommit::default()
        };
        let point = RecoveryPoint::for_test("0123456789abcdef", TreeId([1; 32]));
        cat.commit_backup(&commit, &point).unwrap();
        cat
    }

    #[test]
    fn restorable_walk_names_each_bad_file_and_stops_at_a_cycle() {
        let cat = crafted_catalog();
        let readable = HashMap::from([(ContentId([10; 32]), false), (ContentId([11; 32]), true)]);
        let mut walk = RestorableWalk {
            catalog: &cat,
            readable: &readable,
            trees: HashMap::new(),
        };
        let bad = walk.bad_paths(TreeId([1; 32])).unwrap();
        let bad: Vec<_> = bad.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(bad, ["bad", "lost", "sub/gone"]);
        // Each tree was judged once (the missing one too) and is remembered for every other
        // point sharing it.
        let sub = walk.bad_paths(TreeId([2; 32])).unwrap();
        assert_eq!(*sub, [PathBuf::from("gone")]);
        assert_eq!(walk.trees.len(), 3);
    }
}

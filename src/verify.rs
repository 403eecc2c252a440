//! Verify: scrub packs and blocks against the catalog, and say what damage affects.
//!
//! Without `read_data`, every pack the catalog names must exist with its recorded size and
//! every block a file uses must be in the catalog. With `read_data`, every pack is read whole:
//! its bytes must hash to its name and every frame must open and hash to its block id. Damage
//! is traced to the points and paths it affects. Packs the catalog does not name (left by an
//! interrupted backup) are listed as unreferenced; they are not damage.
//!
//! Every tree every point reaches is checked too ([`check_trees`]): it must be in the catalog,
//! decode with plain names, hash to its id, and not contain itself. A tree that fails is
//! reported where a point first reaches it and is not walked further.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::catalog::tree_path::{TreePath, MAX_TREE_DEPTH};
use crate::catalog::{BlockLocation, CatalogError, ContentId, EntryKind, PackState, TreeId};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::{BlockId, PackId};
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
    let packs = vault.catalog().packs()?;
    let on_disk: HashMap<PackId, u64> = vault.backend().list()?.into_iter().collect();
    let named: HashSet<PackId> = packs.iter().map(|p| p.0).collect();
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
    let mut by_pack: HashMap<PackId, Vec<(BlockId, BlockLocation)>> = HashMap::new();
    for (id, (loc, _)) in vault.catalog().block_locations()? {
        by_pack.entry(loc.pack).or_default().push((id, loc));
    }
    let checks: Vec<PackCheck> = stored
        .par_iter()
        .map(|&(pack, size)| {
            let blocks = by_pack.get(&pack).map_or(&[][..], Vec::as_slice);
            check_pack(
                vault,
                pack,
                size,
                blocks,
                on_disk.get(&pack).copied(),
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
    let contents = vault.catalog().all_contents()?;
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
                    "block {block} used by a file is not in the catalog"
                ));
                hit.insert(*id);
            }
        }
    }
    if !hit.is_empty() {
        report.affected = affected_files(vault, &hit)?;
    }
    report.bad_trees = check_trees(vault)?;
    Ok(report)
}

fn check_pack(
    vault: &Vault,
    pack: PackId,
    size: u64,
    blocks: &[(BlockId, BlockLocation)],
    found: Option<u64>,
    options: VerifyOptions,
    progress: &dyn Progress,
) -> Result<PackCheck> {
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
            Err(Error::Catalog(CatalogError::BadTree { source, .. })) => {
                self.report(point, tree, path, source.to_string());
                return Ok(());
            }
            Err(Error::Catalog(CatalogError::Sql(rusqlite::Error::QueryReturnedNoRows))) => {
                self.report(point, tree, path, "it is not in the catalog".into());
                return Ok(());
            }
            Err(e) => return Err(e),
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

//! A generated history of a small source, and the answers `diff`, `find`, `log` and the
//! mount's `versions/` should give about it, worked out from restored copies of its points
//! with `std::fs` alone.
//!
//! [`STEPS`] and [`apply`] take one tracked path through content and metadata edits, deletes
//! and re-adds and file ↔ directory ↔ symlink; [`generate`] does that to `docs/tracked` while
//! [`CHURN`] changes the rest of the tree (adds, deletes, edits, chmod, touch, xattrs,
//! renames of files and directories, hardlinks, type changes), backs up after each step and
//! restores every point. The generator never makes a ctime-only change (a chmod to the same
//! mode, an xattr set to its value): a tree id covers ctimes, which a restored copy cannot show.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::env::{stderr, Env};
use super::{set_mtime, set_xattr, user_xattrs, write_file};

/// The steps applied to a tracked path between backups, in order.
pub const STEPS: [&str; 19] = [
    "edit",
    "chmod",
    "touch",
    "same",
    "delete",
    "same",
    "readd",
    "to-dir",
    "dir-edit",
    "dir-chmod",
    "to-symlink",
    "retarget",
    "relink",
    "to-file",
    "edit-same-size",
    "delete",
    "readd",
    "to-dir",
    "to-file",
];

pub fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.random()).collect()
}

fn remove(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

/// Sets a random mtime of late 2023 (distinct with overwhelming odds).
fn stamp(path: &Path, rng: &mut StdRng) {
    set_mtime(
        path,
        (
            1_700_000_000 + rng.random_range(0..1_000_000),
            rng.random_range(0..1_000_000_000),
        ),
    )
}

/// Applies one of [`STEPS`] to `path`; `last_file` keeps what a delete removed for the re-add.
pub fn apply(
    step: &str,
    path: &Path,
    rng: &mut StdRng,
    last_file: &mut Option<(Vec<u8>, u32, i64)>,
) {
    match step {
        "same" => {}
        "edit" | "to-file" => {
            remove(path);
            let len = rng.random_range(1..3000);
            write_file(path, random_bytes(rng, len));
            stamp(path, rng);
        }
        "edit-same-size" => {
            let len = fs::metadata(path).unwrap().len() as usize;
            let mtime = mtime_ns(&fs::metadata(path).unwrap());
            write_file(path, random_bytes(rng, len));
            set_mtime(path, (mtime / 1_000_000_000, mtime % 1_000_000_000));
        }
        "chmod" | "dir-chmod" => {
            let mode = fs::metadata(path).unwrap().mode() & 0o777;
            fs::set_permissions(path, fs::Permissions::from_mode(mode ^ 0o040)).unwrap();
        }
        "touch" => stamp(path, rng),
        "delete" => {
            let meta = fs::metadata(path).unwrap();
            *last_file = Some((
                fs::read(path).unwrap(),
                meta.mode() & 0o7777,
                mtime_ns(&meta),
            ));
            remove(path);
        }
        "readd" => {
            // Back exactly as it was before the delete: still a new version.
            let (bytes, mode, mtime) = last_file.clone().unwrap();
            write_file(path, &bytes);
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
            set_mtime(path, (mtime / 1_000_000_000, mtime % 1_000_000_000));
        }
        "to-dir" => {
            remove(path);
            fs::create_dir(path).unwrap();
            write_file(path.join("inside"), random_bytes(rng, 100));
            stamp(&path.join("inside"), rng);
            stamp(path, rng);
        }
        "dir-edit" => {
            let mtime = mtime_ns(&fs::metadata(path).unwrap());
            write_file(path.join("inside"), random_bytes(rng, 200));
            set_mtime(path, (mtime / 1_000_000_000, mtime % 1_000_000_000));
        }
        "to-symlink" | "retarget" => {
            remove(path);
            symlink(format!("target-{}", rng.random_range(0..1000)), path).unwrap();
            stamp(path, rng);
        }
        "relink" => {
            let target = fs::read_link(path).unwrap();
            remove(path);
            symlink(target, path).unwrap();
            stamp(path, rng);
        }
        other => unreachable!("{other}"),
    }
}

/// What happens to the rest of the tree: before point `i`, [`CHURN_PER_POINT`] of these,
/// starting at `3 * i` and wrapping, so each comes back every few points.
pub const CHURN: [&str; 15] = [
    "add",
    "delete",
    "edit",
    "chmod",
    "touch",
    "xattr",
    "rename",
    "hardlink",
    "edit-linked",
    "file-to-symlink",
    "symlink-to-file",
    "file-to-dir",
    "dir-to-file",
    "move-dir",
    "dir-xattr",
];
const CHURN_PER_POINT: usize = 5;

/// The path `generate` takes through [`STEPS`], below the source.
pub const TRACKED: &str = "docs/tracked";

/// The starting tree: four directories deep at most, 32 small files, a symlink, a hardlink
/// pair and a file with an xattr.
fn initial_tree(src: &Path, rng: &mut StdRng) {
    let dirs = ["a", "a/b", "a/b/c", "c", "c/sub", "docs", "links"];
    for (n, dir) in (0..32).zip(dirs.iter().cycle()) {
        let name = match n % 3 {
            0 => format!("f{n}.txt"),
            1 => format!("g{n}.bin"),
            _ => format!("h{n}"),
        };
        let len = rng.random_range(0..2000);
        write_file(src.join(dir).join(name), random_bytes(rng, len));
    }
    write_file(src.join(TRACKED), b"the first version");
    symlink("f0.txt", src.join("a/link")).unwrap();
    fs::hard_link(src.join("a/b/c/h2"), src.join("links/twin")).unwrap();
    set_xattr(&src.join("a/b/g1.bin"), "user.note", b"first");
}

/// Everything below `src` of `kind` ("file", "dir", "symlink"), not the tracked path or
/// what is inside it, as paths relative to `src`, sorted.
fn entries_of(src: &Path, kind: &str) -> Vec<PathBuf> {
    walk(src)
        .into_iter()
        .filter(|(path, node)| node.kind == kind && !path[1..].starts_with(TRACKED))
        .map(|(path, _)| PathBuf::from(&path[1..]))
        .collect()
}

/// A random one of `entries`, or None if there are none.
fn pick(rng: &mut StdRng, entries: Vec<PathBuf>) -> Option<PathBuf> {
    (!entries.is_empty()).then(|| entries[rng.random_range(0..entries.len())].clone())
}

/// Applies one of [`CHURN`] before point `i`, to randomly chosen entries.
fn churn(action: &str, src: &Path, i: usize, rng: &mut StdRng) {
    let file = |rng: &mut StdRng| pick(rng, entries_of(src, "file")).map(|p| src.join(p));
    // Directories holding something, never the root, `docs` or `links`.
    let dir = |rng: &mut StdRng| {
        let dirs: Vec<PathBuf> = entries_of(src, "dir")
            .into_iter()
            .filter(|d| !d.starts_with("docs") && !d.starts_with("links"))
            .filter(|d| fs::read_dir(src.join(d)).unwrap().next().is_some())
            .collect();
        pick(rng, dirs).map(|p| src.join(p))
    };
    let Some(target) = (match action {
        "add" => {
            let parent = dir(rng).unwrap_or_else(|| src.to_path_buf());
            Some(parent.join(format!("f{i}-new.txt")))
        }
        "edit-linked" => {
            let linked: Vec<PathBuf> = entries_of(src, "file")
                .into_iter()
                .filter(|f| fs::metadata(src.join(f)).unwrap().nlink() > 1)
                .collect();
            pick(rng, linked).map(|p| src.join(p))
        }
        "symlink-to-file" => pick(rng, entries_of(src, "symlink")).map(|p| src.join(p)),
        "dir-to-file" | "move-dir" | "dir-xattr" => dir(rng),
        _ => file(rng),
    }) else {
        return;
    };
    let len = rng.random_range(1..1500);
    match action {
        "add" | "edit" | "edit-linked" => write_file(&target, random_bytes(rng, len)),
        "delete" => remove(&target),
        "chmod" => {
            let mode = fs::metadata(&target).unwrap().mode() & 0o777;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode ^ 0o004)).unwrap();
        }
        "touch" => stamp(&target, rng),
        "xattr" | "dir-xattr" => set_xattr(&target, "user.note", format!("point {i}").as_bytes()),
        "rename" => fs::rename(&target, src.join(format!("renamed-{i}"))).unwrap(),
        "hardlink" => fs::hard_link(&target, src.join("links").join(format!("link-{i}"))).unwrap(),
        "file-to-symlink" => {
            remove(&target);
            symlink(format!("pointing-{i}"), &target).unwrap();
        }
        "symlink-to-file" | "dir-to-file" => {
            remove(&target);
            write_file(&target, random_bytes(rng, len));
        }
        "file-to-dir" => {
            remove(&target);
            write_file(target.join("one.txt"), random_bytes(rng, len));
            write_file(target.join("two.bin"), random_bytes(rng, len / 2));
        }
        "move-dir" => fs::rename(&target, src.join(format!("moved-dir-{i}"))).unwrap(),
        other => unreachable!("{other}"),
    }
}

/// A source backed up after each step, and every point restored.
pub struct History {
    /// The source directory (absolute).
    pub src: PathBuf,
    /// The points' ids, oldest first.
    pub points: Vec<String>,
    /// What each point holds, read back from its restored copy; same order.
    pub trees: Vec<Tree>,
}

/// Builds the history in `env`: 20 points, the first of the initial tree, each next one
/// after one of [`STEPS`] on [`TRACKED`] and some [`CHURN`] elsewhere.
pub fn generate(env: &Env) -> History {
    let src = env.path("src");
    let mut rng = StdRng::seed_from_u64(14);
    initial_tree(&src, &mut rng);
    let mut last_file = None;
    let mut points = Vec::new();
    for i in 0..=STEPS.len() {
        if i > 0 {
            apply(STEPS[i - 1], &src.join(TRACKED), &mut rng, &mut last_file);
            for k in 0..CHURN_PER_POINT {
                churn(CHURN[(3 * i + k) % CHURN.len()], &src, i, &mut rng);
            }
        }
        points.push(env.backup(&src)["point"].as_str().unwrap().to_string());
    }
    let trees = points
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let copy = env.path(&format!("restored/{i}"));
            let out = env.run(&["restore", id, "--target", copy.to_str().unwrap()]);
            assert!(out.status.success(), "{}", stderr(&out));
            walk(&copy)
        })
        .collect();
    History { src, points, trees }
}

/// One entry of a restored point, as `std::fs` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// "file", "dir" or "symlink", as synvault names kinds.
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub size: u64,
    pub nlink: u64,
    /// A file's bytes, a symlink's target.
    pub data: Vec<u8>,
}

/// Every entry below a root (not the root itself), by path from the root: `/a/b`.
pub type Tree = BTreeMap<String, Node>;

/// Reads every entry below `root`, never following symlinks.
pub fn walk(root: &Path) -> Tree {
    let mut tree = Tree::new();
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(root.join(dir.trim_start_matches('/'))).unwrap() {
            let entry = entry.unwrap();
            let path = format!("{dir}/{}", entry.file_name().to_str().unwrap());
            let node = read_node(&entry.path());
            if node.kind == "dir" {
                pending.push(path.clone());
            }
            tree.insert(path, node);
        }
    }
    tree
}

fn read_node(path: &Path) -> Node {
    let meta = fs::symlink_metadata(path).unwrap();
    let (kind, data) = if meta.is_symlink() {
        (
            "symlink",
            fs::read_link(path).unwrap().as_os_str().as_bytes().to_vec(),
        )
    } else if meta.is_dir() {
        ("dir", Vec::new())
    } else {
        ("file", fs::read(path).unwrap())
    };
    Node {
        kind,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: mtime_ns(&meta),
        xattrs: user_xattrs(path),
        size: meta.len(),
        nlink: meta.nlink(),
        data,
    }
}

/// How the entry at one path differs between two points, as synvault names it: "added",
/// "removed", "type", "modified" (a file's bytes, a symlink's target), "metadata" (mode,
/// owner, mtime, xattrs); None if it does not. A directory's own entry only; link counts
/// are not compared.
pub fn change(before: Option<&Node>, after: Option<&Node>) -> Option<&'static str> {
    let (a, b) = match (before, after) {
        (None, None) => return None,
        (None, Some(_)) => return Some("added"),
        (Some(_), None) => return Some("removed"),
        (Some(a), Some(b)) => (a, b),
    };
    if a.kind != b.kind {
        Some("type")
    } else if a.data != b.data {
        Some("modified")
    } else if (a.mode, a.uid, a.gid, a.mtime_ns, &a.xattrs)
        != (b.mode, b.uid, b.gid, b.mtime_ns, &b.xattrs)
    {
        Some("metadata")
    } else {
        None
    }
}

/// Every path that differs between two points, with its change and kind (the newer side's,
/// or the older one's if it is gone).
pub fn diff(before: &Tree, after: &Tree) -> BTreeSet<(String, &'static str, &'static str)> {
    let paths: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let (a, b) = (before.get(path), after.get(path));
            let kind = b.or(a).unwrap().kind;
            change(a, b).map(|c| (path.clone(), c, kind))
        })
        .collect()
}

/// True if directory `dir` holds the same in both points: the same paths below it, equal
/// in everything [`Node`] records, link counts included (a hardlink made or removed
/// elsewhere changes what a restore of the directory gives).
fn same_below(before: &Tree, after: &Tree, dir: &str) -> bool {
    let below = |tree: &Tree| -> Vec<(String, Node)> {
        let prefix = format!("{dir}/");
        tree.range(prefix.clone()..)
            .take_while(|(path, _)| path.starts_with(&prefix))
            .map(|(path, node)| (path.clone(), node.clone()))
            .collect()
    };
    below(before) == below(after)
}

/// One version of a path: the first and last point holding it and how it differs from
/// what the point before held ("added" if nothing).
pub type Version = (usize, usize, &'static str);

/// The versions of `path`, newest first: runs of consecutive points whose entries there are
/// the same (a directory also holding the same); a gap starts a new version.
pub fn versions(trees: &[Tree], path: &str) -> Vec<Version> {
    let mut out: Vec<Version> = Vec::new();
    for (i, tree) in trees.iter().enumerate() {
        let Some(now) = tree.get(path) else { continue };
        let was = i.checked_sub(1).and_then(|j| trees[j].get(path));
        let holds_else = now.kind == "dir"
            && was.is_some_and(|w| w.kind == "dir")
            && !same_below(&trees[i - 1], tree, path);
        match (change(was, Some(now)), holds_else) {
            (None, false) => out.last_mut().unwrap().1 = i,
            (_, true) => out.push((i, i, "modified")),
            (Some(c), false) => out.push((i, i, c)),
        }
    }
    out.reverse();
    out
}

//! Shared helpers for the integration tests (`mod common;`).
//!
//! Owns test data and tree comparison. [`generate_tree`] builds a deterministic tree full of
//! what backup tools get wrong: a huge file, a sparse file, duplicates, hardlinks, symlinks,
//! a FIFO and a device node, odd names (spaces, newline, non-UTF-8), `user.*` xattrs, varied
//! modes and owners, and nanosecond mtimes. [`tree_diff`] walks two trees itself, never
//! following symlinks, and lists every difference. Helpers panic with the failing path
//! instead of returning errors: a broken fixture is a failed test.
#![allow(dead_code)]

pub mod env;
pub mod history;
pub mod servers;

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt::Display;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rustix::fs::{AtFlags, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags, CWD};
use rustix::io::Errno;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// Deepest directory level below the root.
const MAX_DEPTH: usize = 5;
/// Owners handed out by `lchown` when [`TreeSpec::privileged`] is set.
const OWNERS: [(u32, u32); 4] = [(0, 0), (1000, 1000), (12345, 54321), (65534, 65534)];
const TEXT: &[u8] = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
tempor incididunt ut labore et dolore magna aliqua.\nUt enim ad minim veniam, quis nostrud \
exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.\n\tDuis aute irure dolor \
in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur.\n";

/// What [`generate_tree`] builds. `Default` is the full-size tree (about 130 MiB written);
/// [`TreeSpec::small`] is a quick one with the same kinds of entries.
#[derive(Debug, Clone)]
pub struct TreeSpec {
    /// Randomly placed regular files; the named edge cases, duplicates and hardlinks come on top.
    pub files: usize,
    /// Size of the one largest file; also caps every other file's size.
    pub max_file_bytes: u64,
    /// Files of 1..=8 MiB (capped at `max_file_bytes`).
    pub medium_files: usize,
    /// Hole between the two 1 MiB data extents of the sparse file.
    pub sparse_hole_bytes: u64,
    /// Varied owners (`lchown`), a char device (`mknod`) and a read-only directory; needs root.
    pub privileged: bool,
}

impl Default for TreeSpec {
    fn default() -> Self {
        Self {
            files: 2000,
            max_file_bytes: 64 * MIB,
            medium_files: 4,
            sparse_hole_bytes: 64 * MIB,
            privileged: rustix::process::geteuid().is_root(),
        }
    }
}

impl TreeSpec {
    /// A tree of a few MiB with every kind of entry, for tests that need no volume.
    pub fn small() -> Self {
        Self {
            files: 100,
            max_file_bytes: 2 * MIB,
            medium_files: 1,
            sparse_hole_bytes: 4 * MIB,
            ..Self::default()
        }
    }
}

/// What [`generate_tree`] built; every path is relative to the root.
#[derive(Debug, Clone)]
pub struct TreeSummary {
    /// Entries below the root, of every kind.
    pub entries: usize,
    /// Regular-file names (each name of a hardlinked inode counts).
    pub regular_files: usize,
    /// Directories, the root excluded.
    pub dirs: usize,
    /// Directories with no entries.
    pub empty_dirs: usize,
    /// Symlinks: relative to a file and to a directory, absolute, dangling, non-UTF-8 target.
    pub symlinks: usize,
    /// FIFOs (one).
    pub fifos: usize,
    /// Char and block device nodes.
    pub devices: usize,
    /// Sum of `st_size` over distinct regular-file inodes; includes the sparse file's hole.
    pub total_bytes: u64,
    /// The file of exactly `max_file_bytes`.
    pub large_file: PathBuf,
    /// 1 MiB data, a `sparse_hole_bytes` hole, 1 MiB data.
    pub sparse_file: PathBuf,
    /// Three names of one inode, in three directories.
    pub hardlinks: Vec<PathBuf>,
    /// Groups of regular files with identical content but separate inodes.
    pub duplicates: Vec<Vec<PathBuf>>,
    /// A file with `user.comment`, `user.binary` (contains NUL), `user.empty` and `user.long`.
    pub xattr_file: PathBuf,
    /// A non-empty directory with a `user.dir` xattr.
    pub xattr_dir: PathBuf,
    /// A file whose directory and own name are not UTF-8.
    pub non_utf8_path: PathBuf,
    /// A file whose name contains `\n`.
    pub newline_path: PathBuf,
    /// A symlink to `does/not/exist`.
    pub dangling_symlink: PathBuf,
    /// A FIFO, mode 0o620.
    pub fifo: PathBuf,
    /// Char device 1:3 (like `/dev/null`); `None` unless `privileged`.
    pub device: Option<PathBuf>,
}

/// Builds a deterministic tree for `seed` under `root` (created if missing, must be empty).
/// Metadata is applied last: owners and modes, then mtimes of non-directories, then directory
/// mtimes bottom-up, the root's last, so nothing later disturbs them.
pub fn generate_tree(root: &Path, seed: u64, spec: &TreeSpec) -> TreeSummary {
    fs::create_dir_all(root).or_panic("create", root);
    let mut listing = fs::read_dir(root).or_panic("list", root);
    assert!(listing.next().is_none(), "{} is not empty", root.display());
    let mut b = Builder {
        root,
        spec,
        rng: StdRng::seed_from_u64(seed),
        dirs: vec![Dir {
            rel: PathBuf::new(),
            depth: 0,
            mode: 0o755,
        }],
        leaves: Vec::new(),
        next_tag: seed << 32,
    };
    let mut notes = Notes::default();
    b.make_dirs(&mut notes);
    b.make_random_files();
    b.make_big_files(&mut notes);
    b.make_duplicates(&mut notes);
    b.make_hardlinks(&mut notes);
    b.make_named_files(&mut notes);
    b.make_links_and_specials(&mut notes);
    b.make_empty_dirs();
    b.apply_dir_attrs();
    b.set_mtimes();
    summarize(root, notes)
}

/// `len` bytes from `StdRng::seed_from_u64(seed)`.
pub fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// Writes `bytes` to `path`, creating missing parent directories.
pub fn write_file(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) {
    let path = path.as_ref();
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).or_panic("create", parent);
    }
    fs::write(path, bytes).or_panic("write", path);
}

/// Bytes actually allocated on disk for `p` (`st_blocks * 512`), without following symlinks.
pub fn allocated_bytes(p: &Path) -> u64 {
    fs::symlink_metadata(p).or_panic("stat", p).blocks() * 512
}

/// Panics listing every difference [`tree_diff`] finds.
#[track_caller]
pub fn assert_trees_equal(a: &Path, b: &Path) {
    let diffs = tree_diff(a, b);
    if !diffs.is_empty() {
        let shown: Vec<&str> = diffs.iter().take(200).map(String::as_str).collect();
        panic!(
            "trees differ: {} vs {} ({} differences):\n{}",
            a.display(),
            b.display(),
            diffs.len(),
            shown.join("\n")
        );
    }
}

/// Which attributes [`tree_diff_with`] compares beyond names, kinds, modes, mtimes and content.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// uid and gid.
    pub ownership: bool,
    /// `user.*` xattrs (other namespaces are never compared).
    pub xattrs: bool,
    /// Link counts of directories, which some filesystems (btrfs, many FUSE ones) report as 1.
    pub dir_nlink: bool,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self {
            ownership: true,
            xattrs: true,
            dir_nlink: true,
        }
    }
}

/// Every difference between the trees at `a` and `b`, one line each, paths relative and
/// `{:?}`-quoted (`"."` is the root). Compares names (raw bytes), kind, full `st_mode`, uid,
/// gid, mtime (s + ns), nlink, `user.*` xattrs, file size and bytes, symlink targets, device
/// numbers, and hardlink grouping. Empty means equal.
pub fn tree_diff(a: &Path, b: &Path) -> Vec<String> {
    tree_diff_with(a, b, &DiffOptions::default())
}

/// [`tree_diff`] with some attributes left out.
pub fn tree_diff_with(a: &Path, b: &Path, opts: &DiffOptions) -> Vec<String> {
    let (ta, tb) = (scan(a), scan(b));
    let mut diffs = Vec::new();
    // Below a missing or retyped entry everything differs; report the top only.
    let mut skip = HashSet::new();
    let under_skipped =
        |rel: &Path, skip: &HashSet<PathBuf>| rel.ancestors().skip(1).any(|p| skip.contains(p));
    for (rel, na) in &ta {
        if under_skipped(rel, &skip) {
            continue;
        }
        match tb.get(rel) {
            None => {
                diffs.push(format!("{}: only in a ({})", show(rel), na.kind.name()));
                skip.insert(rel.clone());
            }
            Some(nb) if na.kind != nb.kind => {
                diffs.push(format!(
                    "{}: kind {} vs {}",
                    show(rel),
                    na.kind.name(),
                    nb.kind.name()
                ));
                skip.insert(rel.clone());
            }
            Some(nb) => compare_node(rel, na, nb, opts, &mut diffs, (a, b)),
        }
    }
    for (rel, nb) in &tb {
        if !ta.contains_key(rel) && !under_skipped(rel, &skip) {
            diffs.push(format!("{}: only in b ({})", show(rel), nb.kind.name()));
            skip.insert(rel.clone());
        }
    }
    compare_link_groups(&ta, &tb, &mut diffs);
    diffs
}

// ---------------------------------------------------------------------------------------------
// Generation

trait OrPanic<T> {
    fn or_panic(self, action: &str, path: &Path) -> T;
}

impl<T, E: Display> OrPanic<T> for Result<T, E> {
    #[track_caller]
    fn or_panic(self, action: &str, path: &Path) -> T {
        match self {
            Ok(value) => value,
            Err(err) => panic!("cannot {action} {}: {err}", path.display()),
        }
    }
}

struct Dir {
    rel: PathBuf,
    depth: usize,
    mode: u32,
}

#[derive(Default)]
struct Notes {
    large_file: PathBuf,
    sparse_file: PathBuf,
    hardlinks: Vec<PathBuf>,
    duplicates: Vec<Vec<PathBuf>>,
    xattr_file: PathBuf,
    xattr_dir: PathBuf,
    non_utf8_path: PathBuf,
    newline_path: PathBuf,
    dangling_symlink: PathBuf,
    fifo: PathBuf,
    device: Option<PathBuf>,
}

struct Builder<'a> {
    root: &'a Path,
    spec: &'a TreeSpec,
    rng: StdRng,
    /// Every directory, the root first; files go into those existing before `make_empty_dirs`.
    dirs: Vec<Dir>,
    /// Non-directories whose mtime is set at the end, one name per inode.
    leaves: Vec<PathBuf>,
    /// Stamped into each file's first bytes so equal-length text files don't collide.
    next_tag: u64,
}

#[derive(Clone, Copy)]
enum Style {
    Random,
    Text,
    Mixed,
}

impl Builder<'_> {
    fn abs(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(rel)
        }
    }

    fn make_dirs(&mut self, notes: &mut Notes) {
        let count = (self.spec.files / 16).max(8);
        for i in 0..count {
            // The first MAX_DEPTH directories form a chain, so the deepest level exists.
            let parent = if i < MAX_DEPTH {
                i
            } else {
                let shallow: Vec<usize> = (0..self.dirs.len())
                    .filter(|&d| self.dirs[d].depth < MAX_DEPTH)
                    .collect();
                shallow[self.rng.random_range(0..shallow.len())]
            };
            let name = match i % 7 {
                3 => format!("dir {i} with spaces"),
                5 => format!("ünïcødé-{i}"),
                _ => format!("d{i:03}"),
            };
            let mode = [0o755, 0o755, 0o755, 0o750, 0o775][self.rng.random_range(0..5)];
            self.add_dir(parent, OsStr::new(&name), mode);
        }
        let latin1 = self.add_dir(0, OsStr::from_bytes(b"latin1-\xe9t\xe9"), 0o755);
        self.dirs[2].mode = 0o700;
        self.dirs[count / 2].mode = 0o1777;
        if self.spec.privileged {
            // Root can still write into it; an unprivileged generator could not.
            self.dirs[count - 1].mode = 0o555;
        }
        let rel = self.dirs[3].rel.clone();
        set_xattr(&self.abs(&rel), "user.dir", b"directory attribute");
        notes.xattr_dir = rel;
        notes.non_utf8_path = self.dirs[latin1]
            .rel
            .join(OsStr::from_bytes(b"caf\xe9-\xff\xfe.bin"));
    }

    fn add_dir(&mut self, parent: usize, name: &OsStr, mode: u32) -> usize {
        let rel = self.dirs[parent].rel.join(name);
        fs::create_dir(self.abs(&rel)).or_panic("create dir", &rel);
        let depth = self.dirs[parent].depth + 1;
        self.dirs.push(Dir { rel, depth, mode });
        self.dirs.len() - 1
    }

    fn make_random_files(&mut self) {
        let cap = (64 * KIB).min(self.spec.max_file_bytes) as f64;
        for i in 0..self.spec.files {
            let name = if i % 50 == 7 {
                format!("file {i} with spaces.txt")
            } else {
                let ext = ["txt", "dat", "bin", "log", "json", "c"][self.rng.random_range(0..6)];
                format!("f{i:04}.{ext}")
            };
            let rel = self.in_random_dir(name);
            // Mostly small: squaring a uniform value skews towards 0 (mean ~21 KiB).
            let u: f64 = self.rng.random();
            let len = if self.rng.random_ratio(1, 30) {
                0
            } else {
                (u * u * cap) as usize
            };
            let bytes = self.content(len);
            let mode = self.random_file_mode();
            if self.rng.random_ratio(1, 100) {
                let len = self.rng.random_range(1..64);
                let value = self.content(len);
                self.add_file(&rel, &bytes, mode, &[("user.random", &value)]);
            } else {
                self.add_file(&rel, &bytes, mode, &[]);
            }
        }
    }

    fn make_big_files(&mut self, notes: &mut Notes) {
        for i in 0..self.spec.medium_files {
            let len = self
                .rng
                .random_range(MIB..=8 * MIB)
                .min(self.spec.max_file_bytes);
            let bytes = self.content(len as usize);
            let rel = self.in_random_dir(format!("medium-{i}.bin"));
            self.add_file(&rel, &bytes, 0o644, &[]);
        }
        notes.large_file = self.in_random_dir("large.bin");
        self.write_large(&notes.large_file, self.spec.max_file_bytes);
        self.finish(&notes.large_file, Some(0o644));

        notes.sparse_file = self.in_random_dir("sparse.img");
        let path = self.abs(&notes.sparse_file);
        let file = File::create(&path).or_panic("create", &path);
        let hole = self.spec.sparse_hole_bytes;
        file.set_len(2 * MIB + hole).or_panic("truncate", &path);
        let head = self.content(MIB as usize);
        let tail = self.content(MIB as usize);
        file.write_all_at(&head, 0).or_panic("write", &path);
        file.write_all_at(&tail, MIB + hole)
            .or_panic("write", &path);
        drop(file);
        self.finish(&notes.sparse_file, Some(0o600));
    }

    /// Streams `len` bytes in 1 MiB segments of varying style, so memory stays small.
    fn write_large(&mut self, rel: &Path, len: u64) {
        let path = self.abs(rel);
        let mut file = File::create(&path).or_panic("create", &path);
        let mut buf = vec![0; MIB as usize];
        let mut left = len;
        while left > 0 {
            let n = left.min(MIB) as usize;
            let style = self.random_style();
            self.fill(&mut buf[..n], style);
            file.write_all(&buf[..n]).or_panic("write", &path);
            left -= n as u64;
        }
    }

    fn make_duplicates(&mut self, notes: &mut Notes) {
        let groups: [(u64, usize); 5] = [
            (37, 2),
            (4 * KIB, 2),
            (100 * KIB, 3),
            (300 * KIB, 2),
            (MIB, 2),
        ];
        for (g, (len, copies)) in groups.into_iter().enumerate() {
            let bytes = self.content(len.min(self.spec.max_file_bytes) as usize);
            let mut group = Vec::new();
            for (k, dir) in self.distinct_dirs(copies).into_iter().enumerate() {
                // Group 0 reuses one name, the others vary it.
                let name = if g == 0 {
                    "same-name.dat".to_owned()
                } else {
                    format!("dup-{g}-{k}.bin")
                };
                let rel = self.dirs[dir].rel.join(name);
                let mode = self.random_file_mode();
                self.add_file(&rel, &bytes, mode, &[]);
                group.push(rel);
            }
            notes.duplicates.push(group);
        }
    }

    fn make_hardlinks(&mut self, notes: &mut Notes) {
        let names = ["hardlink-1.dat", "hardlink 2.dat", "hardlink-3.dat"];
        let dirs = self.distinct_dirs(names.len());
        let rels: Vec<PathBuf> = dirs
            .iter()
            .zip(names)
            .map(|(&d, n)| self.dirs[d].rel.join(n))
            .collect();
        let bytes = self.content((200 * KIB).min(self.spec.max_file_bytes) as usize);
        self.add_file(&rels[0], &bytes, 0o640, &[("user.linked", b"three names")]);
        for rel in &rels[1..] {
            fs::hard_link(self.abs(&rels[0]), self.abs(rel)).or_panic("hardlink", rel);
        }
        notes.hardlinks = rels;
    }

    fn make_named_files(&mut self, notes: &mut Notes) {
        let long_name = format!("{}.txt", "L".repeat(251));
        let plain: [&[u8]; 9] = [
            b"name with spaces.txt",
            b".hidden",
            b"-leading-dash",
            "ünïcødé 名前.txt".as_bytes(),
            b"glob*?[chars].txt",
            b"back\\slash",
            b"tab\tname",
            b"trailing space ",
            long_name.as_bytes(),
        ];
        for name in plain {
            let rel = self.in_random_dir(OsStr::from_bytes(name));
            let len = self.rng.random_range(0..4096);
            let bytes = self.content(len);
            self.add_file(&rel, &bytes, 0o644, &[]);
        }
        notes.newline_path = self.in_random_dir("line\nbreak.txt");
        self.add_file(&notes.newline_path, b"newline in name\n", 0o644, &[]);
        let bytes = self.content(1000);
        self.add_file(&notes.non_utf8_path, &bytes, 0o600, &[]);
        let script = self.in_random_dir("run.sh");
        self.add_file(&script, b"#!/bin/sh\necho synvault\n", 0o755, &[]);

        notes.xattr_file = self.in_random_dir("xattrs.txt");
        let long = self.content(1000);
        let xattrs: [(&str, &[u8]); 4] = [
            ("user.comment", b"synvault test xattr"),
            ("user.binary", b"\0\x01\xff\0binary"),
            ("user.empty", b""),
            ("user.long", &long),
        ];
        self.add_file(&notes.xattr_file, b"has xattrs\n", 0o644, &xattrs);
    }

    fn make_links_and_specials(&mut self, notes: &mut Notes) {
        let dir = self.random_dir();
        let up = "../".repeat(self.dirs[dir].depth).into_bytes();
        let to_file = [&up[..], notes.xattr_file.as_os_str().as_bytes()].concat();
        let to_dir = [&up[..], self.dirs[1].rel.as_os_str().as_bytes()].concat();
        let links: [(&str, &[u8]); 5] = [
            ("link-relative", &to_file),
            ("link-to-dir", &to_dir),
            ("link-absolute", b"/etc/passwd"),
            ("link-dangling", b"does/not/exist"),
            ("link-non-utf8", b"caf\xe9/\xff"),
        ];
        for (name, target) in links {
            let rel = self.dirs[dir].rel.join(name);
            std::os::unix::fs::symlink(OsStr::from_bytes(target), self.abs(&rel))
                .or_panic("symlink", &rel);
            self.finish(&rel, None);
        }
        notes.dangling_symlink = self.dirs[dir].rel.join("link-dangling");

        notes.fifo = self.in_random_dir("pipe.fifo");
        let path = self.abs(&notes.fifo);
        rustix::fs::mkfifoat(CWD, &path, Mode::from_raw_mode(0o600)).or_panic("mkfifo", &path);
        self.finish(&notes.fifo, Some(0o620));
        if self.spec.privileged {
            let rel = self.in_random_dir("null-device");
            let path = self.abs(&rel);
            let dev = rustix::fs::makedev(1, 3);
            rustix::fs::mknodat(
                CWD,
                &path,
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o600),
                dev,
            )
            .or_panic("mknod", &path);
            self.finish(&rel, Some(0o666));
            notes.device = Some(rel);
        }
    }

    /// Made after every file, so nothing lands in them.
    fn make_empty_dirs(&mut self) {
        let some = self.random_dir();
        self.add_dir(some, OsStr::new("empty"), 0o755);
        let deep = self
            .dirs
            .iter()
            .position(|d| d.depth == MAX_DEPTH - 1)
            .unwrap_or(0);
        self.add_dir(deep, OsStr::new(".empty-hidden"), 0o750);
        let spaced = self.add_dir(0, OsStr::new("empty with spaces"), 0o700);
        let path = self.abs(&self.dirs[spaced].rel);
        set_xattr(&path, "user.empty-dir", b"empty but tagged");
        self.add_dir(0, OsStr::new("empty-sticky"), 0o1777);
        let nest = self.add_dir(0, OsStr::new("nest"), 0o755);
        let inner = self.add_dir(nest, OsStr::new("inner"), 0o750);
        self.add_dir(inner, OsStr::new("innermost"), 0o755);
    }

    fn apply_dir_attrs(&mut self) {
        for i in 0..self.dirs.len() {
            let path = self.abs(&self.dirs[i].rel);
            // The root keeps its owner: it belongs to whoever made the temp dir.
            if i > 0 && self.spec.privileged {
                self.random_chown(&path);
            }
            chmod(&path, self.dirs[i].mode);
        }
    }

    fn set_mtimes(&mut self) {
        for rel in std::mem::take(&mut self.leaves) {
            let time = self.random_time();
            set_mtime(&self.abs(&rel), time);
        }
        let mut order: Vec<usize> = (0..self.dirs.len()).collect();
        order.sort_by_key(|&i| Reverse(self.dirs[i].depth));
        for i in order {
            let time = self.random_time();
            set_mtime(&self.abs(&self.dirs[i].rel), time);
        }
    }

    /// Writes a regular file and gives it xattrs, owner and mode, in that order: setting a
    /// `user.*` xattr needs write permission, which a read-only mode would take away.
    fn add_file(&mut self, rel: &Path, bytes: &[u8], mode: u32, xattrs: &[(&str, &[u8])]) {
        let path = self.abs(rel);
        fs::write(&path, bytes).or_panic("write", &path);
        for (name, value) in xattrs {
            set_xattr(&path, name, value);
        }
        self.finish(rel, Some(mode));
    }

    /// Owner and mode of a new non-directory; its mtime comes in `set_mtimes`.
    fn finish(&mut self, rel: &Path, mode: Option<u32>) {
        let path = self.abs(rel);
        if self.spec.privileged {
            self.random_chown(&path);
        }
        if let Some(mode) = mode {
            chmod(&path, mode);
        }
        self.leaves.push(rel.to_path_buf());
    }

    fn random_chown(&mut self, path: &Path) {
        let (uid, gid) = OWNERS[self.rng.random_range(0..OWNERS.len())];
        let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        rustix::fs::chownat(CWD, path, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            .or_panic("lchown", path);
    }

    fn random_dir(&mut self) -> usize {
        self.rng.random_range(0..self.dirs.len())
    }

    fn in_random_dir(&mut self, name: impl AsRef<OsStr>) -> PathBuf {
        let dir = self.random_dir();
        self.dirs[dir].rel.join(name.as_ref())
    }

    fn distinct_dirs(&mut self, n: usize) -> Vec<usize> {
        let mut picked = Vec::new();
        while picked.len() < n {
            let dir = self.random_dir();
            if !picked.contains(&dir) {
                picked.push(dir);
            }
        }
        picked
    }

    fn random_file_mode(&mut self) -> u32 {
        match self.rng.random_range(0..20) {
            0..=11 => 0o644,
            12..=14 => 0o600,
            15..=17 => 0o755,
            18 => 0o444,
            _ => 0o640,
        }
    }

    /// Somewhere in 2001..2027, with nanoseconds that are never 0.
    fn random_time(&mut self) -> (i64, i64) {
        let sec = self.rng.random_range(1_000_000_000..1_800_000_000);
        (sec, self.rng.random_range(1..1_000_000_000))
    }

    fn random_style(&mut self) -> Style {
        match self.rng.random_range(0..10) {
            0..=3 => Style::Random,
            4..=6 => Style::Text,
            _ => Style::Mixed,
        }
    }

    fn content(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        let style = self.random_style();
        self.fill(&mut bytes, style);
        bytes
    }

    /// Random bytes, repeated text (compressible, dedupable), or runs of both.
    fn fill(&mut self, buf: &mut [u8], style: Style) {
        match style {
            Style::Random => self.rng.fill_bytes(buf),
            Style::Text => fill_text(&mut self.rng, buf),
            Style::Mixed => {
                let (mut pos, mut text) = (0, self.rng.random_bool(0.5));
                while pos < buf.len() {
                    let n = self.rng.random_range(512..=16 * 1024).min(buf.len() - pos);
                    let run = &mut buf[pos..pos + n];
                    if text {
                        fill_text(&mut self.rng, run);
                    } else {
                        self.rng.fill_bytes(run);
                    }
                    (pos, text) = (pos + n, !text);
                }
            }
        }
        let tag = format!("<{}>", self.next_tag);
        self.next_tag += 1;
        let n = tag.len().min(buf.len());
        buf[..n].copy_from_slice(&tag.as_bytes()[..n]);
    }
}

fn fill_text(rng: &mut StdRng, buf: &mut [u8]) {
    let mut from = rng.random_range(0..TEXT.len());
    let mut pos = 0;
    while pos < buf.len() {
        let n = (TEXT.len() - from).min(buf.len() - pos);
        buf[pos..pos + n].copy_from_slice(&TEXT[from..from + n]);
        (pos, from) = (pos + n, 0);
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).or_panic("chmod", path);
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).or_panic("set xattr on", path);
}

pub fn set_mtime(path: &Path, (sec, nsec): (i64, i64)) {
    let time = Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .or_panic("set times of", path);
}

fn summarize(root: &Path, notes: Notes) -> TreeSummary {
    let tree = scan(root);
    let count = |kind: Kind| tree.values().filter(|n| n.kind == kind).count();
    let parents: HashSet<&Path> = tree.keys().filter_map(|rel| rel.parent()).collect();
    let empty_dirs = tree
        .iter()
        .filter(|(rel, n)| {
            n.kind == Kind::Dir && !rel.as_os_str().is_empty() && !parents.contains(rel.as_path())
        })
        .count();
    let mut inodes = HashMap::new();
    for node in tree.values().filter(|n| n.kind == Kind::File) {
        inodes.insert(node.inode, node.size);
    }
    TreeSummary {
        entries: tree.len() - 1,
        regular_files: count(Kind::File),
        dirs: count(Kind::Dir) - 1,
        empty_dirs,
        symlinks: count(Kind::Symlink),
        fifos: count(Kind::Fifo),
        devices: count(Kind::Char) + count(Kind::Block),
        total_bytes: inodes.values().sum(),
        large_file: notes.large_file,
        sparse_file: notes.sparse_file,
        hardlinks: notes.hardlinks,
        duplicates: notes.duplicates,
        xattr_file: notes.xattr_file,
        xattr_dir: notes.xattr_dir,
        non_utf8_path: notes.non_utf8_path,
        newline_path: notes.newline_path,
        dangling_symlink: notes.dangling_symlink,
        fifo: notes.fifo,
        device: notes.device,
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
}

impl Kind {
    fn of(ft: fs::FileType) -> Self {
        if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else {
            Kind::Socket
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
            Kind::Char => "char device",
            Kind::Block => "block device",
            Kind::Socket => "socket",
        }
    }
}

struct Node {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    size: u64,
    rdev: u64,
    nlink: u64,
    /// (st_dev, st_ino): only meaningful within one tree.
    inode: (u64, u64),
    target: Vec<u8>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Every entry under `root` (itself included, as the empty path), keyed by relative path.
fn scan(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut tree = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let path = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let node = read_node(&path);
        if node.kind == Kind::Dir {
            for entry in fs::read_dir(&path).or_panic("list", &path) {
                pending.push(rel.join(entry.or_panic("list", &path).file_name()));
            }
        }
        tree.insert(rel, node);
    }
    tree
}

fn read_node(path: &Path) -> Node {
    let md = fs::symlink_metadata(path).or_panic("stat", path);
    let kind = Kind::of(md.file_type());
    let target = match kind {
        Kind::Symlink => fs::read_link(path)
            .or_panic("read link", path)
            .into_os_string()
            .into_vec(),
        _ => Vec::new(),
    };
    Node {
        kind,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        mtime: (md.mtime(), md.mtime_nsec()),
        size: md.size(),
        rdev: md.rdev(),
        nlink: md.nlink(),
        inode: (md.dev(), md.ino()),
        target,
        xattrs: user_xattrs(path),
    }
}

/// `user.*` xattrs of `path` itself; none where the filesystem has no xattr support.
fn user_xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut names = match rustix::fs::llistxattr_query(path) {
        Ok(len) => vec![0; len],
        Err(Errno::NOTSUP) => return BTreeMap::new(),
        Err(err) => panic!("cannot list xattrs of {}: {err}", path.display()),
    };
    let len = rustix::fs::llistxattr(path, &mut names[..]).or_panic("list xattrs of", path);
    names.truncate(len);
    names
        .split(|&b| b == 0)
        .filter(|name| name.starts_with(b"user."))
        .map(|name| {
            let len = rustix::fs::lgetxattr_query(path, name).or_panic("read xattr of", path);
            let mut value = vec![0; len];
            let len =
                rustix::fs::lgetxattr(path, name, &mut value[..]).or_panic("read xattr of", path);
            value.truncate(len);
            (name.to_vec(), value)
        })
        .collect()
}

fn show(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        "\".\"".to_owned()
    } else {
        format!("{rel:?}")
    }
}

fn compare_node(
    rel: &Path,
    a: &Node,
    b: &Node,
    opts: &DiffOptions,
    diffs: &mut Vec<String>,
    roots: (&Path, &Path),
) {
    let p = show(rel);
    if a.mode != b.mode {
        diffs.push(format!("{p}: mode {:o} vs {:o}", a.mode, b.mode));
    }
    if opts.ownership && (a.uid, a.gid) != (b.uid, b.gid) {
        diffs.push(format!(
            "{p}: owner {}:{} vs {}:{}",
            a.uid, a.gid, b.uid, b.gid
        ));
    }
    if a.mtime != b.mtime {
        let ((sa, na), (sb, nb)) = (a.mtime, b.mtime);
        diffs.push(format!("{p}: mtime {sa}.{na:09} vs {sb}.{nb:09}"));
    }
    if (a.kind != Kind::Dir || opts.dir_nlink) && a.nlink != b.nlink {
        diffs.push(format!("{p}: nlink {} vs {}", a.nlink, b.nlink));
    }
    if opts.xattrs {
        compare_xattrs(&p, &a.xattrs, &b.xattrs, diffs);
    }
    match a.kind {
        Kind::File if a.size != b.size => diffs.push(format!("{p}: size {} vs {}", a.size, b.size)),
        Kind::File => {
            let (fa, fb) = (roots.0.join(rel), roots.1.join(rel));
            if let Some(offset) = first_difference(&fa, &fb) {
                diffs.push(format!("{p}: content differs at byte {offset}"));
            }
        }
        Kind::Symlink if a.target != b.target => {
            let (ta, tb) = (OsStr::from_bytes(&a.target), OsStr::from_bytes(&b.target));
            diffs.push(format!("{p}: symlink target {ta:?} vs {tb:?}"));
        }
        Kind::Char | Kind::Block if a.rdev != b.rdev => {
            let dev = |rdev| format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev));
            diffs.push(format!("{p}: device {} vs {}", dev(a.rdev), dev(b.rdev)));
        }
        _ => {}
    }
}

fn compare_xattrs(
    p: &str,
    a: &BTreeMap<Vec<u8>, Vec<u8>>,
    b: &BTreeMap<Vec<u8>, Vec<u8>>,
    diffs: &mut Vec<String>,
) {
    for (name, va) in a {
        let n = OsStr::from_bytes(name);
        match b.get(name) {
            None => diffs.push(format!("{p}: xattr {n:?} only in a")),
            Some(vb) if va != vb => diffs.push(format!("{p}: xattr {n:?} value {va:?} vs {vb:?}")),
            Some(_) => {}
        }
    }
    for name in b.keys().filter(|name| !a.contains_key(*name)) {
        diffs.push(format!(
            "{p}: xattr {:?} only in b",
            OsStr::from_bytes(name)
        ));
    }
}

/// Offset of the first differing byte, or of the end of the shorter file; `None` if equal.
fn first_difference(a: &Path, b: &Path) -> Option<u64> {
    let (mut fa, mut fb) = (
        File::open(a).or_panic("open", a),
        File::open(b).or_panic("open", b),
    );
    let (mut ba, mut bb) = (vec![0; MIB as usize], vec![0; MIB as usize]);
    let mut offset = 0;
    loop {
        let (na, nb) = (
            read_full(&mut fa, &mut ba, a),
            read_full(&mut fb, &mut bb, b),
        );
        let n = na.min(nb);
        if ba[..n] != bb[..n] {
            let at = ba[..n]
                .iter()
                .zip(&bb[..n])
                .position(|(x, y)| x != y)
                .unwrap_or(n);
            return Some(offset + at as u64);
        }
        if na != nb {
            return Some(offset + n as u64);
        }
        if na == 0 {
            return None;
        }
        offset += n as u64;
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8], path: &Path) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => panic!("cannot read {}: {err}", path.display()),
        }
    }
    filled
}

/// Paths sharing an inode in one tree must share one in the other, and no others.
fn compare_link_groups(
    ta: &BTreeMap<PathBuf, Node>,
    tb: &BTreeMap<PathBuf, Node>,
    diffs: &mut Vec<String>,
) {
    let (ga, gb) = (link_groups(ta), link_groups(tb));
    for (rel, na) in ta.iter().filter(|(_, n)| n.kind != Kind::Dir) {
        let Some(nb) = tb.get(rel).filter(|nb| nb.kind == na.kind) else {
            continue;
        };
        let (la, lb) = (&ga[&na.inode], &gb[&nb.inode]);
        if la != lb {
            diffs.push(format!("{}: hardlinked with {la:?} vs {lb:?}", show(rel)));
        }
    }
}

/// Inode -> every non-directory path naming it, sorted.
fn link_groups(tree: &BTreeMap<PathBuf, Node>) -> HashMap<(u64, u64), Vec<&Path>> {
    let mut groups: HashMap<(u64, u64), Vec<&Path>> = HashMap::new();
    for (rel, node) in tree.iter().filter(|(_, n)| n.kind != Kind::Dir) {
        groups.entry(node.inode).or_default().push(rel);
    }
    groups
}

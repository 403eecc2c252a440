//! Walking a source: every name under the backup paths, with its metadata, matched against
//! the parent point so unchanged files are not read again, and closed into Merkle trees
//! bottom-up as it goes.
//!
//! The walk is depth first and holds only the directories it is in, and those whose files
//! are still being read: a [`Walker`] hands out, one [`Step`] at a time, the files whose data
//! must be read, takes their entries back when they are read ([`Walker::fill`], in any order)
//! and closes a directory into its tree ([`Trees`]) as soon as every child is made. Memory
//! follows the depth of the source and the reads in flight, not its number of files. A file
//! is unchanged when its size, mtime, ctime and inode equal the parent entry's: it keeps the
//! parent's content without a byte being read.
//!
//! A file read is *new* if the parent point had no file of its name, *changed* if the content
//! read differs from the parent's, and *unchanged* otherwise (kept or read again).
//!
//! What the user leaves out ([`exclude`](super::exclude)) is never visited.
//!
//! Only regular files are ever read; FIFOs, devices and sockets are entries with metadata
//! only. Below a source path the walk does not descend into:
//! - the vault itself (matched by device and inode, so any path to it counts): it is left out
//!   of the point entirely, and the walk says so once;
//! - pseudo file systems (proc, sysfs, devpts, cgroup, debugfs, tracefs and the like, found
//!   by `statfs` type when a directory is on another device): their mount point is kept as
//!   an empty directory, as `--one-file-system` does. Their files are not data, and some
//!   (`/proc/kmsg`) block a reader for good. A pseudo file system named as a source path is
//!   walked: that is asked for.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::exclude::{excluded, kept_names, too_large, ExcludeMarker};
use crate::catalog::{ContentId, Entry, EntryKind, PointStats, TreeId};
use crate::error::{Error, Result};
use crate::filter::PathFilter;
use crate::vault::Vault;

/// Walk settings.
pub struct WalkOptions<'a> {
    pub exclude: &'a PathFilter,
    /// Leave out regular files larger than this many bytes.
    pub exclude_larger_than: Option<u64>,
    /// A directory holding one of these keeps only the marker (see the module doc).
    pub markers: &'a [ExcludeMarker],
    pub one_file_system: bool,
    /// Read every file even if unchanged.
    pub force: bool,
    /// Device and inode of a directory never to back up (the vault being written to).
    pub skip_dir: Option<(u64, u64)>,
}

/// How a file compares with the parent point's file of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileChange {
    /// The parent point has no file of that name.
    New,
    /// The content differs from the parent's.
    Changed,
    /// The parent's content: kept without reading, or read again and found equal.
    Unchanged,
}

impl FileChange {
    /// How content `read` compares with `parent`, the parent point's content of that name.
    pub fn of(parent: Option<ContentId>, read: ContentId) -> FileChange {
        match parent {
            None => FileChange::New,
            Some(parent) if parent == read => FileChange::Unchanged,
            Some(_) => FileChange::Changed,
        }
    }
}

/// Where closed directories go: the tree of `entries` (sorted by name) is made, and its id
/// returned.
pub trait Trees {
    fn tree(&mut self, entries: &[Entry]) -> Result<TreeId>;
}

/// Where a child's entry goes once it is made: a slot of an open directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    frame: u64,
    index: usize,
}

/// A regular file whose data must be read before its entry can go into its slot.
#[derive(Debug)]
pub struct FileToRead {
    pub slot: Slot,
    pub path: PathBuf,
    pub entry: Entry,
    /// The parent point's content of the file of this name, if it had one.
    pub parent_content: Option<ContentId>,
}

/// What one step of the walk did.
#[derive(Debug)]
pub enum Step {
    /// A file to read; give its entry back through [`Walker::fill`].
    Read(Box<FileToRead>),
    /// One name visited, nothing to read.
    Walked,
    /// Every name is visited (files may still be in flight).
    Done,
}

/// A directory being walked, or waiting for its children.
struct Frame {
    path: PathBuf,
    /// The directory's own entry; `None` for the synthetic root of several sources.
    entry: Option<Entry>,
    dev: u64,
    /// Names still to visit, last first.
    names: Vec<Vec<u8>>,
    /// For a synthetic directory (the root of several sources, or one on the way to a
    /// source): where each of `names` leads, popped with them.
    sources: Vec<Origin>,
    /// The parent point's listing of this directory, by name.
    before: HashMap<Vec<u8>, Entry>,
    /// One slot per child visited, in visiting order; `None` while it is made, and for a file
    /// that could not be read (left out).
    children: Vec<Option<Entry>>,
    /// Children not yet made.
    pending: usize,
    /// Every name visited.
    walked: bool,
    /// Where this directory's entry goes; `None` for the point's root.
    slot: Option<Slot>,
}

/// A name in a synthetic directory of a point of several sources.
#[derive(Debug, PartialEq, Eq)]
enum Origin {
    /// A source: walked whole.
    Source(PathBuf),
    /// A directory on the way to sources (its metadata is kept, not its other children),
    /// with the names below it that lead to them, in listing order.
    Between {
        path: PathBuf,
        below: Vec<(Vec<u8>, Origin)>,
    },
}

/// Where the root of a point of `sources` (canonical, non-empty) lies: the one source
/// directory itself when there is one, else the deepest directory holding every source.
pub fn root_path(sources: &[PathBuf]) -> PathBuf {
    if let [source] = sources {
        if source.is_dir() {
            return source.clone();
        }
    }
    let parents: Vec<&Path> = sources
        .iter()
        .map(|s| s.parent().unwrap_or(Path::new("/")))
        .collect();
    let mut common: PathBuf = parents
        .first()
        .map_or_else(|| "/".into(), |p| p.to_path_buf());
    for parent in &parents[1..] {
        while !parent.starts_with(&common) {
            if !common.pop() {
                break;
            }
        }
    }
    common
}

/// The synthetic root of several sources (or of one that is not a directory): each source at
/// its path below [`root_path`], with the directories between kept as directories. Sources
/// that overlap (one inside another, or one given twice) are refused.
fn layout(root: &Path, sources: &[PathBuf]) -> Result<Vec<(Vec<u8>, Origin)>> {
    let mut top: Vec<(Vec<u8>, Origin)> = Vec::new();
    let mut sorted: Vec<&PathBuf> = sources.iter().collect();
    sorted.sort();
    for source in sorted {
        let rel = source.strip_prefix(root).map_err(|_| lost_source(source))?;
        let names: Vec<Vec<u8>> = rel
            .components()
            .map(|c| c.as_os_str().as_bytes().to_vec())
            .collect();
        let Some((last, between)) = names.split_last() else {
            return Err(lost_source(source));
        };
        let mut level = &mut top;
        let mut path = root.to_path_buf();
        for name in between {
            path.push(OsStr::from_bytes(name));
            let at = match level.iter().position(|(n, _)| n == name) {
                Some(at) => at,
                None => {
                    level.push((
                        name.clone(),
                        Origin::Between {
                            path: path.clone(),
                            below: Vec::new(),
                        },
                    ));
                    level.len() - 1
                }
            };
            level = match &mut level[at].1 {
                Origin::Between { below, .. } => below,
                Origin::Source(outer) => return Err(overlap(source, outer)),
            };
        }
        if let Some((_, taken)) = level.iter().find(|(n, _)| n == last) {
            let outer = match taken {
                Origin::Source(outer) => outer.clone(),
                Origin::Between { path, .. } => path.clone(),
            };
            return Err(overlap(source, &outer));
        }
        level.push((last.clone(), Origin::Source(source.clone())));
    }
    Ok(top)
}

fn overlap(source: &Path, other: &Path) -> Error {
    let (inner, outer) = if source.starts_with(other) {
        (source, other)
    } else {
        (other, source)
    };
    if inner == outer {
        Error::InvalidArgument(format!("{} is given twice", inner.display()))
    } else {
        Error::InvalidArgument(format!(
            "backup paths overlap: {} is inside {}",
            inner.display(),
            outer.display()
        ))
    }
}

fn lost_source(source: &Path) -> Error {
    Error::Internal {
        what: format!("cannot place {} in the point", source.display()),
    }
}

/// Splits a synthetic directory's children into the frame's `names` and `sources`, last
/// first.
fn frame_children(children: Vec<(Vec<u8>, Origin)>) -> (Vec<Vec<u8>>, Vec<Origin>) {
    children.into_iter().rev().unzip()
}

/// The source walk of one backup (see the module doc).
pub struct Walker<'a> {
    vault: &'a Vault,
    options: &'a WalkOptions<'a>,
    frames: HashMap<u64, Frame>,
    next_frame: u64,
    /// Directories being walked, innermost last.
    stack: Vec<u64>,
    /// The point's root tree, once its directory is closed.
    root: Option<TreeId>,
    /// The root directory's entry, when a single directory is the root.
    root_entry: Option<Entry>,
    /// Files, directories and bytes the point holds, counted as entries are made (its
    /// `files_changed`: see [`FileChange::Changed`]).
    pub stats: PointStats,
    /// Regular files that are [`FileChange::New`].
    pub files_new: u64,
    /// Regular files that are [`FileChange::Unchanged`].
    pub files_unchanged: u64,
    /// Bytes of the files kept from the parent point without being read.
    pub unchanged_bytes: u64,
    /// Paths that could not be read, with the reason.
    pub errors: Vec<String>,
    /// Where [`WalkOptions::skip_dir`] was met and left out.
    pub skipped_dir: Option<PathBuf>,
    /// Mount points of pseudo file systems, kept empty.
    pub pseudo_mounts: Vec<PathBuf>,
}

/// `statfs` types of file systems that hold no user data: proc, sysfs, devpts, cgroup,
/// cgroup2, debugfs, tracefs, securityfs, pstore, bpf, configfs, fusectl, mqueue, hugetlbfs,
/// binfmt_misc, selinuxfs, smackfs, efivarfs, nsfs (from `linux/magic.h`). Not autofs: its
/// mount points lead to real data (home directories) once triggered.
const PSEUDO_FS_MAGIC: [i64; 19] = [
    0x9fa0,
    0x6265_6572,
    0x1cd1,
    0x0027_e0eb,
    0x6367_7270,
    0x6462_6720,
    0x7472_6163,
    0x7363_6673,
    0x6165_676c,
    0xcafe_4a11,
    0x6265_6570,
    0x6573_5543,
    0x1980_0202,
    0x9584_58f6,
    0x4249_4e4d,
    0xf97c_ff8c,
    0x4341_5d53,
    0xde5e_81e4,
    0x6e73_6673,
];

/// True if `path` is the root of a pseudo file system: proc, sysfs, devpts, cgroup and the
/// like (the list is in `PSEUDO_FS_MAGIC`).
// `f_type`'s width differs between architectures, hence the cast.
#[allow(clippy::unnecessary_cast)]
pub fn is_pseudo_fs(path: &Path) -> bool {
    rustix::fs::statfs(path)
        .map(|st| PSEUDO_FS_MAGIC.contains(&(st.f_type as i64)))
        .unwrap_or(false)
}

/// What stands between a directory and one of its children.
enum Boundary {
    /// An ordinary child: walk it.
    None,
    /// The directory to skip: leave it out.
    Skipped,
    /// Another file system that is not to be walked: keep it as an empty directory.
    MountPoint { pseudo: bool },
}

fn unchanged(now: &Entry, before: &Entry) -> bool {
    before.kind == EntryKind::File
        && before.content.is_some()
        && now.size == before.size
        && now.mtime_ns == before.mtime_ns
        && now.ctime_ns == before.ctime_ns
        && now.inode == before.inode
}

impl<'a> Walker<'a> {
    /// A walk of `sources` (canonical paths) against the parent point's root tree. One
    /// directory is the root itself; otherwise the root is [`root_path`], synthetic, holding
    /// each source at its path below it (see [`layout`]).
    pub fn new(
        vault: &'a Vault,
        sources: &[PathBuf],
        parent_root: Option<TreeId>,
        options: &'a WalkOptions<'a>,
    ) -> Result<Walker<'a>> {
        let mut walker = Walker {
            vault,
            options,
            frames: HashMap::new(),
            next_frame: 0,
            stack: Vec::new(),
            root: None,
            root_entry: None,
            stats: PointStats::default(),
            files_new: 0,
            files_unchanged: 0,
            unchanged_bytes: 0,
            errors: Vec::new(),
            skipped_dir: None,
            pseudo_mounts: Vec::new(),
        };
        if let [source] = sources {
            if source.is_dir() {
                let meta = source
                    .symlink_metadata()
                    .map_err(|_| Error::MissingSource {
                        path: source.clone(),
                    })?;
                let name = source_name(source);
                let before = parent_root.map(|tree| synthetic_dir(&name, tree));
                walker.visit(source.clone(), &name, &meta, before, None)?;
                return Ok(walker);
            }
        }
        let (names, sources) = frame_children(layout(&root_path(sources), sources)?);
        let id = walker.push_frame(Frame {
            path: PathBuf::new(),
            entry: None,
            dev: 0,
            names,
            sources,
            before: walker.listing(parent_root)?,
            children: Vec::new(),
            pending: 0,
            walked: false,
            slot: None,
        });
        walker.stack.push(id);
        Ok(walker)
    }

    /// Visits the next name. Directories are entered as they are met; a directory whose
    /// names are all visited is closed once its children are made.
    pub fn step(&mut self, trees: &mut dyn Trees) -> Result<Step> {
        let Some(&top) = self.stack.last() else {
            return Ok(Step::Done);
        };
        let frame = self.frame(top)?;
        let Some(name) = frame.names.pop() else {
            frame.walked = true;
            self.stack.pop();
            self.close_ready(top, trees)?;
            return Ok(Step::Walked);
        };
        let before = frame.before.remove(&name);
        let (dev, is_sources) = (frame.dev, !frame.sources.is_empty());
        let path = match frame.sources.pop() {
            Some(Origin::Source(source)) => source,
            Some(Origin::Between { path, below }) => {
                self.enter_between(path, &name, below, before, top)?;
                return Ok(Step::Walked);
            }
            None => frame.path.join(OsStr::from_bytes(&name)),
        };
        if !is_sources && excluded(&path, self.options) {
            return Ok(Step::Walked);
        }
        let meta = match path.symlink_metadata() {
            Ok(meta) => meta,
            Err(_) if is_sources => return Err(Error::MissingSource { path }),
            Err(e) => {
                self.errors.push(format!("{}: {e}", path.display()));
                return Ok(Step::Walked);
            }
        };
        if !is_sources {
            if too_large(&meta, self.options) {
                return Ok(Step::Walked);
            }
            match boundary(&path, &meta, dev, self.options) {
                Boundary::None => {}
                Boundary::Skipped => {
                    self.skipped_dir = Some(path);
                    return Ok(Step::Walked);
                }
                Boundary::MountPoint { pseudo } => {
                    if pseudo {
                        self.pseudo_mounts.push(path.clone());
                    }
                    self.add_mount_point(path, &name, &meta, top)?;
                    return Ok(Step::Walked);
                }
            }
        }
        let slot = self.reserve(top)?;
        match self.visit(path, &name, &meta, before, Some(slot))? {
            Some(file) => Ok(Step::Read(Box::new(file))),
            None => Ok(Step::Walked),
        }
    }

    /// Puts a file's entry, made from its read, into its slot (`None`: a file that could not
    /// be read, left out) and closes the directories that are then complete.
    pub fn fill(
        &mut self,
        slot: Slot,
        made: Option<(Entry, FileChange)>,
        trees: &mut dyn Trees,
    ) -> Result<()> {
        match made {
            Some((entry, change)) => self.put(slot, Some(entry), Some(change))?,
            None => self.put(slot, None, None)?,
        }
        self.close_ready(slot.frame, trees)
    }

    /// Puts a made child into its slot and counts it (directories are counted when entered);
    /// `change` tells about a regular file.
    fn put(&mut self, slot: Slot, entry: Option<Entry>, change: Option<FileChange>) -> Result<()> {
        if let Some(e) = &entry {
            self.count(e, change);
        }
        let frame = self.frame(slot.frame)?;
        frame.children[slot.index] = entry;
        frame.pending -= 1;
        Ok(())
    }

    /// The point's root tree, once every directory is closed.
    pub fn root(&self) -> Option<TreeId> {
        self.root
    }

    /// The root directory's entry, when the point's root is one source directory.
    pub fn root_entry(&self) -> Option<&Entry> {
        self.root_entry.as_ref()
    }

    fn frame(&mut self, id: u64) -> Result<&mut Frame> {
        self.frames.get_mut(&id).ok_or_else(lost_frame)
    }

    fn push_frame(&mut self, frame: Frame) -> u64 {
        let id = self.next_frame;
        self.next_frame += 1;
        self.frames.insert(id, frame);
        id
    }

    /// A new slot in directory `frame`, for a child not yet made.
    fn reserve(&mut self, frame: u64) -> Result<Slot> {
        let frame_ref = self.frame(frame)?;
        frame_ref.children.push(None);
        frame_ref.pending += 1;
        Ok(Slot {
            frame,
            index: frame_ref.children.len() - 1,
        })
    }

    fn count(&mut self, entry: &Entry, change: Option<FileChange>) {
        match entry.kind {
            EntryKind::Dir => {}
            EntryKind::File => {
                self.stats.files += 1;
                self.stats.bytes += entry.size;
                match change.unwrap_or(FileChange::Unchanged) {
                    FileChange::New => self.files_new += 1,
                    FileChange::Changed => self.stats.files_changed += 1,
                    FileChange::Unchanged => self.files_unchanged += 1,
                }
            }
            _ => self.stats.files += 1,
        }
    }

    /// Makes the entry of `path` and puts it in `slot` (`None`: the root), unless it is a
    /// file to read (returned) or a directory (entered: its entry goes in once it closes).
    fn visit(
        &mut self,
        path: PathBuf,
        name: &[u8],
        meta: &std::fs::Metadata,
        before: Option<Entry>,
        slot: Option<Slot>,
    ) -> Result<Option<FileToRead>> {
        let mut entry = match crate::fsmeta::entry_from_metadata(name, &path, meta) {
            Ok(e) => e,
            Err(e) => {
                self.errors.push(format!("{}: {e}", path.display()));
                if let Some(slot) = slot {
                    let frame = self.frame(slot.frame)?;
                    frame.children.pop();
                    frame.pending -= 1;
                }
                return Ok(None);
            }
        };
        match entry.kind {
            EntryKind::File => match before {
                Some(before) if !self.options.force && unchanged(&entry, &before) => {
                    entry.content = before.content;
                    self.unchanged_bytes += entry.size;
                }
                before => {
                    let Some(slot) = slot else {
                        return Err(Error::Internal {
                            what: "a file was walked as the point's root".into(),
                        });
                    };
                    let parent_content = before
                        .filter(|b| b.kind == EntryKind::File)
                        .and_then(|b| b.content);
                    return Ok(Some(FileToRead {
                        slot,
                        path,
                        entry,
                        parent_content,
                    }));
                }
            },
            EntryKind::Dir => {
                let parent_tree = before
                    .filter(|b| b.kind == EntryKind::Dir)
                    .and_then(|b| b.subtree);
                let names = kept_names(&path, self.list(&path), self.options.markers);
                let before = self.listing(parent_tree)?;
                self.enter(path, entry, meta.dev(), names, before, slot);
                return Ok(None);
            }
            _ => {}
        }
        if let Some(slot) = slot {
            let change = (entry.kind == EntryKind::File).then_some(FileChange::Unchanged);
            self.put(slot, Some(entry), change)?;
        }
        Ok(None)
    }

    /// Opens a directory with `names` to visit.
    fn enter(
        &mut self,
        path: PathBuf,
        entry: Entry,
        dev: u64,
        mut names: Vec<Vec<u8>>,
        before: HashMap<Vec<u8>, Entry>,
        slot: Option<Slot>,
    ) {
        self.stats.dirs += 1;
        names.reverse();
        let id = self.push_frame(Frame {
            path,
            entry: Some(entry),
            dev,
            names,
            sources: Vec::new(),
            before,
            children: Vec::new(),
            pending: 0,
            walked: false,
            slot,
        });
        self.stack.push(id);
    }

    /// Enters a directory on the way to sources: its own metadata, and only the names that
    /// lead to them.
    fn enter_between(
        &mut self,
        path: PathBuf,
        name: &[u8],
        below: Vec<(Vec<u8>, Origin)>,
        before: Option<Entry>,
        at: u64,
    ) -> Result<()> {
        let meta = path
            .symlink_metadata()
            .map_err(|_| Error::MissingSource { path: path.clone() })?;
        let entry = crate::fsmeta::entry_from_metadata(name, &path, &meta)
            .map_err(Error::io("cannot read the metadata of", &path))?;
        let parent_tree = before
            .filter(|b| b.kind == EntryKind::Dir)
            .and_then(|b| b.subtree);
        let before = self.listing(parent_tree)?;
        let slot = self.reserve(at)?;
        let (names, sources) = frame_children(below);
        self.stats.dirs += 1;
        let id = self.push_frame(Frame {
            path,
            entry: Some(entry),
            dev: meta.dev(),
            names,
            sources,
            before,
            children: Vec::new(),
            pending: 0,
            walked: false,
            slot: Some(slot),
        });
        self.stack.push(id);
        Ok(())
    }

    /// A directory on another file system, kept empty (as restic does with
    /// --one-file-system).
    fn add_mount_point(
        &mut self,
        path: PathBuf,
        name: &[u8],
        meta: &std::fs::Metadata,
        at: u64,
    ) -> Result<()> {
        match crate::fsmeta::entry_from_metadata(name, &path, meta) {
            Ok(entry) => {
                let slot = self.reserve(at)?;
                self.enter(
                    path,
                    entry,
                    meta.dev(),
                    Vec::new(),
                    HashMap::new(),
                    Some(slot),
                );
            }
            Err(e) => self.errors.push(format!("{}: {e}", path.display())),
        }
        Ok(())
    }

    /// The names in a directory, sorted; an unreadable one is recorded and walked as empty.
    fn list(&mut self, dir: &Path) -> Vec<Vec<u8>> {
        let mut names: Vec<Vec<u8>> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| match e {
                    Ok(e) => Some(e.file_name().as_bytes().to_vec()),
                    Err(err) => {
                        self.errors.push(format!("{}: {err}", dir.display()));
                        None
                    }
                })
                .collect(),
            Err(e) => {
                self.errors.push(format!("{}: {e}", dir.display()));
                Vec::new()
            }
        };
        names.sort();
        names
    }

    /// The parent point's listing of a directory, by name.
    fn listing(&self, tree: Option<TreeId>) -> Result<HashMap<Vec<u8>, Entry>> {
        let Some(tree) = tree else {
            return Ok(HashMap::new());
        };
        Ok(self
            .vault
            .catalog()
            .tree_entries(&tree)?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect())
    }

    /// Closes directory `id` if every name is visited and every child made, then its parent
    /// if that completes it, and so on up.
    fn close_ready(&mut self, mut id: u64, trees: &mut dyn Trees) -> Result<()> {
        loop {
            let frame = self.frame(id)?;
            if !frame.walked || frame.pending > 0 {
                return Ok(());
            }
            let frame = self.frames.remove(&id).ok_or_else(lost_frame)?;
            let mut entries: Vec<Entry> = frame.children.into_iter().flatten().collect();
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            let tree = trees.tree(&entries)?;
            let Some(slot) = frame.slot else {
                self.root = Some(tree);
                self.root_entry = frame.entry;
                return Ok(());
            };
            let mut entry = frame.entry.ok_or_else(lost_frame)?;
            entry.subtree = Some(tree);
            self.put(slot, Some(entry), None)?;
            id = slot.frame;
        }
    }
}

/// A slot that names no open directory: a defect of the walk, said rather than panicked.
fn lost_frame() -> Error {
    Error::Internal {
        what: "the walk lost track of a directory".into(),
    }
}

/// The name a source path has in its point.
fn source_name(path: &Path) -> Vec<u8> {
    path.file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_else(|| b"root".to_vec())
}

/// The entry a single source directory had in the parent point: its root.
fn synthetic_dir(name: &[u8], tree: TreeId) -> Entry {
    Entry {
        name: name.to_vec(),
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        size: 0,
        inode: 0,
        nlink: 1,
        content: None,
        subtree: Some(tree),
        target: None,
        rdev: 0,
        xattrs: Vec::new(),
    }
}

/// The bytes of the regular files under `sources`, as the walk would find them: what a seed
/// destination is asked to hold before any data is read, and a progress bar's total. Ends
/// early (with what it counted) once `stop` is set.
pub fn source_bytes(sources: &[PathBuf], options: &WalkOptions<'_>, stop: &AtomicBool) -> u64 {
    fn dir_bytes(dir: &Path, dev: u64, options: &WalkOptions<'_>, stop: &AtomicBool) -> u64 {
        let Ok(listing) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut names: Vec<Vec<u8>> = listing
            .flatten()
            .map(|e| e.file_name().as_bytes().to_vec())
            .collect();
        names.sort();
        let mut total = 0;
        for name in kept_names(dir, names, options.markers) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let path = dir.join(OsStr::from_bytes(&name));
            if excluded(&path, options) {
                continue;
            }
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            if too_large(&meta, options) {
                continue;
            }
            if meta.is_file() {
                total += meta.len();
            } else if meta.is_dir()
                && matches!(boundary(&path, &meta, dev, options), Boundary::None)
            {
                total += dir_bytes(&path, meta.dev(), options, stop);
            }
        }
        total
    }
    sources
        .iter()
        .filter_map(|source| Some((source, source.symlink_metadata().ok()?)))
        .map(|(source, meta)| match meta.is_dir() {
            true => dir_bytes(source, meta.dev(), options, stop),
            false if meta.is_file() => meta.len(),
            false => 0,
        })
        .sum()
}

/// How the walk treats the child `path` (with `meta`) of a directory on device `dev`. Only
/// directories can be boundaries.
fn boundary(
    path: &Path,
    meta: &std::fs::Metadata,
    dev: u64,
    options: &WalkOptions<'_>,
) -> Boundary {
    if !meta.is_dir() {
        return Boundary::None;
    }
    if options.skip_dir == Some((meta.dev(), meta.ino())) {
        return Boundary::Skipped;
    }
    if meta.dev() == dev {
        return Boundary::None;
    }
    if is_pseudo_fs(path) {
        return Boundary::MountPoint { pseudo: true };
    }
    if options.one_file_system {
        return Boundary::MountPoint { pseudo: false };
    }
    Boundary::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    fn source(path: &str) -> Origin {
        Origin::Source(path.into())
    }

    #[test]
    fn several_sources_lie_at_their_paths_below_the_directory_they_share() {
        let siblings = paths(&["/home/u/Pictures", "/home/u/Documents"]);
        assert_eq!(root_path(&siblings), Path::new("/home/u"));
        assert_eq!(
            layout(Path::new("/home/u"), &siblings).unwrap(),
            vec![
                (b"Documents".to_vec(), source("/home/u/Documents")),
                (b"Pictures".to_vec(), source("/home/u/Pictures")),
            ]
        );
        // Two sources of one name: each under the directories that lead to it.
        let same_name = paths(&["/x/etc", "/etc", "/x/y/z"]);
        assert_eq!(root_path(&same_name), Path::new("/"));
        assert_eq!(
            layout(Path::new("/"), &same_name).unwrap(),
            vec![
                (b"etc".to_vec(), source("/etc")),
                (
                    b"x".to_vec(),
                    Origin::Between {
                        path: "/x".into(),
                        below: vec![
                            (b"etc".to_vec(), source("/x/etc")),
                            (
                                b"y".to_vec(),
                                Origin::Between {
                                    path: "/x/y".into(),
                                    below: vec![(b"z".to_vec(), source("/x/y/z"))],
                                },
                            ),
                        ],
                    },
                ),
            ]
        );
        // One file: its directory is the root.
        assert_eq!(root_path(&paths(&["/no/such/file"])), Path::new("/no/such"));
    }

    #[test]
    fn overlapping_sources_are_refused() {
        for (list, why) in [
            (&["/a", "/a/b"][..], "/a/b is inside /a"),
            (&["/a/b", "/a"][..], "/a/b is inside /a"),
            (&["/a", "/a"][..], "/a is given twice"),
        ] {
            let list = paths(list);
            let err = layout(&root_path(&list), &list).unwrap_err().to_string();
            assert!(err.contains(why), "{list:?}: {err}");
        }
    }

    #[test]
    fn proc_is_a_pseudo_file_system_and_tmp_is_not() {
        assert!(is_pseudo_fs(Path::new("/proc")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_pseudo_fs(dir.path()));
    }

    #[test]
    fn a_file_is_new_changed_or_unchanged_by_its_content() {
        let (a, b) = (ContentId([1; 32]), ContentId([2; 32]));
        assert_eq!(FileChange::of(None, a), FileChange::New);
        assert_eq!(FileChange::of(Some(a), b), FileChange::Changed);
        assert_eq!(FileChange::of(Some(a), a), FileChange::Unchanged);
    }
}

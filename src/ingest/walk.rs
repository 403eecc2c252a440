//! Walking a source: every name under the backup paths, with its metadata, matched against
//! the parent point so unchanged files are not read again.
//!
//! The walk builds an arena of nodes (one per name, children listed by index) and the list of
//! files whose data must be read. A file is unchanged when its size, mtime, ctime and inode
//! equal the parent entry's: it keeps the parent's content without a byte being read.
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

use crate::catalog::{Catalog, Entry, EntryKind, TreeId};
use crate::error::Result;
use crate::filter::PathFilter;

/// One name in the source.
#[derive(Debug)]
pub struct Node {
    pub entry: Entry,
    pub path: PathBuf,
    pub children: Vec<usize>,
}

/// Walk settings.
pub struct WalkOptions<'a> {
    pub exclude: &'a PathFilter,
    pub one_file_system: bool,
    /// Read every file even if unchanged.
    pub force: bool,
    /// Device and inode of a directory never to back up (the vault being written to).
    pub skip_dir: Option<(u64, u64)>,
}

/// The result of a walk.
#[derive(Debug, Default)]
pub struct Walk {
    pub nodes: Vec<Node>,
    /// Files whose data must be read (indices into `nodes`).
    pub to_read: Vec<usize>,
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

type ParentEntries = HashMap<Vec<u8>, Entry>;

fn parent_entries(catalog: &Catalog, tree: Option<TreeId>) -> Result<ParentEntries> {
    let Some(tree) = tree else {
        return Ok(HashMap::new());
    };
    Ok(catalog
        .tree_entries(&tree)?
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect())
}

fn unchanged(now: &Entry, before: &Entry) -> bool {
    before.kind == EntryKind::File
        && before.content.is_some()
        && now.size == before.size
        && now.mtime_ns == before.mtime_ns
        && now.ctime_ns == before.ctime_ns
        && now.inode == before.inode
}

impl Walk {
    /// Adds one source path (file or directory) as a node and walks below it. Returns its
    /// index, or `None` if it was excluded or unreadable (recorded in `errors`).
    pub fn add_path(
        &mut self,
        catalog: &Catalog,
        path: &Path,
        name: &[u8],
        parent: Option<&Entry>,
        options: &WalkOptions<'_>,
    ) -> Result<Option<usize>> {
        match path.symlink_metadata() {
            Ok(meta) => self.add_node(catalog, path, name, &meta, parent, options),
            Err(e) => {
                self.errors.push(format!("{}: {e}", path.display()));
                Ok(None)
            }
        }
    }

    /// [`Walk::add_path`] with the path's `symlink_metadata` at hand.
    fn add_node(
        &mut self,
        catalog: &Catalog,
        path: &Path,
        name: &[u8],
        meta: &std::fs::Metadata,
        parent: Option<&Entry>,
        options: &WalkOptions<'_>,
    ) -> Result<Option<usize>> {
        let mut entry = match crate::fsmeta::entry_from_metadata(name, path, meta) {
            Ok(e) => e,
            Err(e) => {
                self.errors.push(format!("{}: {e}", path.display()));
                return Ok(None);
            }
        };
        let index = self.nodes.len();
        if entry.kind == EntryKind::File {
            match parent {
                Some(before) if !options.force && unchanged(&entry, before) => {
                    entry.content = before.content;
                }
                _ => self.to_read.push(index),
            }
        }
        let is_dir = entry.kind == EntryKind::Dir;
        self.nodes.push(Node {
            entry,
            path: path.to_path_buf(),
            children: Vec::new(),
        });
        if is_dir {
            let parent_tree = parent
                .filter(|p| p.kind == EntryKind::Dir)
                .and_then(|p| p.subtree);
            self.walk_dir(catalog, index, meta.dev(), parent_tree, options)?;
        }
        Ok(Some(index))
    }

    fn walk_dir(
        &mut self,
        catalog: &Catalog,
        index: usize,
        dev: u64,
        parent_tree: Option<TreeId>,
        options: &WalkOptions<'_>,
    ) -> Result<()> {
        let dir = self.nodes[index].path.clone();
        let mut names: Vec<Vec<u8>> = match std::fs::read_dir(&dir) {
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
                return Ok(());
            }
        };
        names.sort();
        let before = parent_entries(catalog, parent_tree)?;
        let mut children = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(OsStr::from_bytes(&name));
            if options.exclude.matches(path.as_os_str().as_bytes(), &name) {
                continue;
            }
            let meta = match path.symlink_metadata() {
                Ok(meta) => meta,
                Err(e) => {
                    self.errors.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            match boundary(&path, &meta, dev, options) {
                Boundary::None => {}
                Boundary::Skipped => {
                    self.skipped_dir = Some(path);
                    continue;
                }
                Boundary::MountPoint { pseudo } => {
                    if pseudo {
                        self.pseudo_mounts.push(path.clone());
                    }
                    self.add_mount_point(&path, &name, &meta, &mut children);
                    continue;
                }
            }
            let parent = before.get(&name);
            if let Some(child) = self.add_node(catalog, &path, &name, &meta, parent, options)? {
                children.push(child);
            }
        }
        self.nodes[index].children = children;
        Ok(())
    }

    /// A directory on another file system, kept empty (as restic does with --one-file-system).
    fn add_mount_point(
        &mut self,
        path: &Path,
        name: &[u8],
        meta: &std::fs::Metadata,
        children: &mut Vec<usize>,
    ) {
        match crate::fsmeta::entry_from_metadata(name, path, meta) {
            Ok(entry) => {
                children.push(self.nodes.len());
                self.nodes.push(Node {
                    entry,
                    path: path.to_path_buf(),
                    children: Vec::new(),
                });
            }
            Err(e) => self.errors.push(format!("{}: {e}", path.display())),
        }
    }
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

    #[test]
    fn proc_is_a_pseudo_file_system_and_tmp_is_not() {
        assert!(is_pseudo_fs(Path::new("/proc")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_pseudo_fs(dir.path()));
    }
}

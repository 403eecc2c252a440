//! Walking a source: every name under the backup paths, with its metadata, matched against
//! the parent point so unchanged files are not read again.
//!
//! The walk builds an arena of nodes (one per name, children listed by index) and the list of
//! files whose data must be read. A file is unchanged when its size, mtime, ctime and inode
//! equal the parent entry's: it keeps the parent's content without a byte being read.

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
}

/// The result of a walk.
#[derive(Debug, Default)]
pub struct Walk {
    pub nodes: Vec<Node>,
    /// Files whose data must be read (indices into `nodes`).
    pub to_read: Vec<usize>,
    /// Paths that could not be read, with the reason.
    pub errors: Vec<String>,
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
        let meta = match path.symlink_metadata() {
            Ok(m) => m,
            Err(e) => {
                self.errors.push(format!("{}: {e}", path.display()));
                return Ok(None);
            }
        };
        let mut entry = match crate::fsmeta::entry_from_metadata(name, path, &meta) {
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
            if options.one_file_system && crosses_device(&path, dev) {
                self.add_mount_point(&path, &name, &mut children);
                continue;
            }
            if let Some(child) = self.add_path(catalog, &path, &name, before.get(&name), options)? {
                children.push(child);
            }
        }
        self.nodes[index].children = children;
        Ok(())
    }

    /// A directory on another file system, kept empty (as restic does with --one-file-system).
    fn add_mount_point(&mut self, path: &Path, name: &[u8], children: &mut Vec<usize>) {
        let entry = path
            .symlink_metadata()
            .and_then(|m| crate::fsmeta::entry_from_metadata(name, path, &m));
        match entry {
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

fn crosses_device(path: &Path, dev: u64) -> bool {
    path.symlink_metadata()
        .map(|m| m.is_dir() && m.dev() != dev)
        .unwrap_or(false)
}

//! Directories: looking names up and listing entries, numbering each entry's node as it is
//! handed out.
//!
//! Listing pages through one path, [`View::list`], whatever the entries go to: the mount's
//! `readdir` and `readdirplus` replies and [`View::read_dir`] are [`DirSink`]s. A sink that
//! hands entries to the kernel as lookups (`readdirplus`) gets each entry's node counted
//! before it sees it, and the count is given back for an entry it has no room for, so the
//! counts match what the kernel received.

use std::sync::Arc;

use super::layout::Child;
use super::node::{Key, Node, What};
use super::{Attr, DirEntry, Entry, EntryKind, NodeId, Result, Shown, View, ViewError};

/// Where [`View::list`] puts a directory's entries: a kernel reply buffer, or a page in memory.
pub trait DirSink {
    /// Whether each entry this sink takes, but `.` and `..`, is a lookup the kernel holds
    /// until it forgets it ([`View::forget`]): true for `readdirplus` replies, false for
    /// `readdir` replies, which carry no attributes.
    const COUNTS_LOOKUPS: bool;

    /// Takes an entry; false if there is no room for it (the listing stops there).
    fn add(&mut self, entry: DirEntry) -> bool;
}

/// A page of entries in memory, for callers other than the kernel: nothing is counted.
struct Page {
    entries: Vec<DirEntry>,
    max: usize,
}

impl DirSink for Page {
    const COUNTS_LOOKUPS: bool = false;

    fn add(&mut self, entry: DirEntry) -> bool {
        let room = self.entries.len() < self.max;
        if room {
            self.entries.push(entry);
        }
        room
    }
}

/// A directory inside a point with its listing loaded, ready to number its entries.
pub(super) struct DirListing {
    pub(super) ino: NodeId,
    point: Arc<Shown>,
    scope: NodeId,
    /// Sorted by name.
    pub(super) entries: Arc<Vec<Entry>>,
}

impl DirListing {
    /// The entry called `name`, and its index.
    fn find(&self, name: &[u8]) -> Option<(usize, &Entry)> {
        let index = self
            .entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()?;
        Some((index, self.entries.get(index)?))
    }
}

/// What a directory lists after `.` and `..`.
enum Listed {
    Entries(DirListing),
    /// A directory of the vault layout: names and how to find their nodes.
    Synthetic(Vec<(Vec<u8>, Child)>),
}

impl View<'_> {
    /// Looks a name up in a directory. The answer is a lookup of the node found, to be given
    /// back with [`View::forget`] (the kernel does so when it evicts the inode).
    pub fn lookup(&self, parent: NodeId, name: &[u8]) -> Result<Attr> {
        let node = self.node(parent)?;
        let found = match &node.what {
            What::Entry { .. } => {
                let dir = self.dir(parent, &node)?;
                dir.find(name)
                    .map(|(index, entry)| self.child(&dir, index, entry, true))
            }
            What::Latest => return Err(ViewError::NotADirectory { ino: parent }),
            What::Synthetic(dir) => self.synthetic_lookup(parent, dir.as_ref(), name)?,
        };
        let Some((ino, child)) = found else {
            return Err(ViewError::NoSuchEntry {
                dir: parent,
                name: String::from_utf8_lossy(name).into_owned(),
            });
        };
        // A failed lookup hands the kernel nothing: give the count back.
        self.attr_of(ino, &child)
            .inspect_err(|_| self.forget(ino, 1))
    }

    /// Hands the entries of directory `ino` from `offset` (0 starts; each entry says where to
    /// continue) to `sink` until it has no room or the listing ends; `.` and `..` come first.
    /// An entry that fails ends the listing before it if others were handed out, so that the
    /// next call, which starts at it, reports the error.
    pub fn list<S: DirSink>(&self, ino: NodeId, offset: u64, sink: &mut S) -> Result<()> {
        let node = self.node(ino)?;
        let listed = self.listed(ino, &node, offset == 0)?;
        let mut position = offset;
        loop {
            let entry = match self.entry_at(&node, &listed, ino, position, S::COUNTS_LOOKUPS) {
                Ok(Some(entry)) => entry,
                Ok(None) => return Ok(()),
                Err(err) if position == offset => return Err(err),
                Err(_) => return Ok(()),
            };
            let child = entry.attr.ino;
            if !sink.add(entry) {
                if S::COUNTS_LOOKUPS && position >= 2 {
                    self.forget(child, 1);
                }
                return Ok(());
            }
            position += 1;
        }
    }

    /// Up to `max` entries of a directory from `offset`, as [`View::list`] hands them out,
    /// counting no lookups.
    pub fn read_dir(&self, ino: NodeId, offset: u64, max: usize) -> Result<Vec<DirEntry>> {
        let mut page = Page {
            entries: Vec::new(),
            max,
        };
        self.list(ino, offset, &mut page)?;
        Ok(page.entries)
    }

    fn listed(&self, ino: NodeId, node: &Node, refresh: bool) -> Result<Listed> {
        match &node.what {
            What::Entry { .. } => Ok(Listed::Entries(self.dir(ino, node)?)),
            What::Latest => Err(ViewError::NotADirectory { ino }),
            What::Synthetic(dir) => Ok(Listed::Synthetic(self.synthetic_listing(
                ino,
                dir.as_ref(),
                refresh,
            )?)),
        }
    }

    /// The entry at `position` of a listing (none past the end); with `lookup`, its node is
    /// counted as handed to the kernel, except for `.` and `..`, which the kernel does not
    /// count.
    fn entry_at(
        &self,
        node: &Node,
        listed: &Listed,
        ino: NodeId,
        position: u64,
        lookup: bool,
    ) -> Result<Option<DirEntry>> {
        let (name, attr) = match (position, listed) {
            (0, _) => (b".".to_vec(), self.attr_of(ino, node)?),
            (1, _) => (b"..".to_vec(), self.attr(node.parent)?),
            (_, Listed::Entries(dir)) => {
                let index = (position - 2) as usize;
                let Some(entry) = dir.entries.get(index) else {
                    return Ok(None);
                };
                let (child, child_node) = self.child(dir, index, entry, lookup);
                (
                    entry.name.clone(),
                    self.handed_attr(child, &child_node, lookup)?,
                )
            }
            (_, Listed::Synthetic(names)) => {
                let Some((name, child)) = names.get((position - 2) as usize) else {
                    return Ok(None);
                };
                let (child, child_node) = self.child_node(ino, child, lookup)?;
                (name.clone(), self.handed_attr(child, &child_node, lookup)?)
            }
        };
        Ok(Some(DirEntry {
            name,
            attr,
            next_offset: position + 1,
        }))
    }

    /// The attributes of a node about to be handed out; if that fails, a count taken for it
    /// (`lookup`) is given back.
    fn handed_attr(&self, ino: NodeId, node: &Node, lookup: bool) -> Result<Attr> {
        self.attr_of(ino, node).inspect_err(|_| {
            if lookup {
                self.forget(ino, 1);
            }
        })
    }

    /// Directory `ino` inside a point, its listing loaded on first use.
    pub(super) fn dir(&self, ino: NodeId, node: &Node) -> Result<DirListing> {
        let not_a_dir = || ViewError::NotADirectory { ino };
        let What::Entry { point, scope, .. } = &node.what else {
            return Err(not_a_dir());
        };
        let entries = match node.children.get() {
            Some(entries) => entries.clone(),
            None => {
                let tree = node
                    .entry()
                    .filter(|e| e.kind == EntryKind::Dir)
                    .and_then(|e| e.subtree)
                    .ok_or_else(not_a_dir)?;
                let loaded = self.listing(&tree)?;
                node.children.get_or_init(|| loaded).clone()
            }
        };
        Ok(DirListing {
            ino,
            point: point.clone(),
            scope: *scope,
            entries,
        })
    }

    /// The node of `entry`, entry `index` of `dir`, made if it has none; with `lookup`,
    /// counted as handed to the kernel.
    pub(super) fn child(
        &self,
        dir: &DirListing,
        index: usize,
        entry: &Entry,
        lookup: bool,
    ) -> (NodeId, Arc<Node>) {
        let key = if entry.kind == EntryKind::File && entry.nlink > 1 {
            Key::Hardlink {
                scope: dir.scope,
                inode: entry.inode,
            }
        } else {
            Key::Child {
                parent: dir.ino,
                index,
            }
        };
        self.nodes.find_or_insert(key, lookup, |_| {
            Node::new(
                dir.ino,
                What::Entry {
                    point: dir.point.clone(),
                    scope: dir.scope,
                    listing: dir.entries.clone(),
                    index,
                },
            )
        })
    }
}

//! Nodes and the table that holds them while the kernel does.
//!
//! The kernel counts every reply that hands it an inode (a lookup, an entry of a
//! `readdirplus` page) and gives the count back with `forget` when it evicts the inode. The
//! table keeps the same count per node and drops a node when it reaches zero, so a mount that
//! lists millions of entries holds only what the kernel holds.
//!
//! Invariants:
//! - A node the kernel holds (count above zero) stays, under the same id: inode numbers are
//!   stable for as long as the kernel can use them.
//! - Ids are never reused. A node dropped and found again gets a new id, built from the same
//!   listing entry, so it reads the same; a stale id (a parent pointer, a late request) finds
//!   nothing instead of another node.
//! - Permanent nodes (the root, the vault-level directories, point roots) ignore counts.
//! - Nodes made without a count (tree read-ahead walking ahead of the reader, plain `readdir`,
//!   listings through [`super::View::read_dir`]) are kept only while they are among the last
//!   [`UNCOUNTED_NODES`] such nodes, unless the kernel takes a count on them meanwhile.
//!
//! A directory entry finds its node through a [`Key`]: its position in its directory's
//! listing, or, for a hardlinked file, its source inode within the point, so that every name
//! of the file is one node; an entry of a synthetic directory under `versions/`, by what names
//! it for good.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, OnceLock, RwLock};

use super::layout::Synthetic;
use super::{read, write, BlockMap, NodeId, Sequential, Shown};
use crate::catalog::Entry;

/// How many nodes without a count are kept: enough for tree read-ahead's window (64 files and
/// the directories on the way), small enough to be a rounding error next to the block cache.
pub(super) const UNCOUNTED_NODES: usize = 4096;

#[derive(Debug)]
pub(super) enum What {
    /// A directory the vault layout makes up (see [`super::layout`]): it lists and looks up
    /// in its own way.
    Synthetic(Arc<dyn Synthetic>),
    /// The vault layout's `latest` symlink.
    Latest,
    /// An entry of a point.
    Entry {
        point: Arc<Shown>,
        /// The point root this node is under; hardlink groups are per scope.
        scope: NodeId,
        listing: Arc<Vec<Entry>>,
        index: usize,
    },
}

#[derive(Debug)]
pub(super) struct Node {
    pub(super) parent: NodeId,
    pub(super) what: What,
    /// Directories inside a point: their listing, sorted by name, once loaded.
    pub(super) children: OnceLock<Arc<Vec<Entry>>>,
    pub(super) map: OnceLock<Arc<BlockMap>>,
    pub(super) sequential: Sequential,
    /// Directories: entries before this index (with their subtrees) were handed to tree
    /// read-ahead.
    pub(super) dir_ahead: AtomicUsize,
    /// Files: the read-ahead sequence number this file was handed out with (0: never).
    pub(super) ahead_seq: AtomicU64,
}

impl Node {
    pub(super) fn new(parent: NodeId, what: What) -> Node {
        Node {
            parent,
            what,
            children: OnceLock::new(),
            map: OnceLock::new(),
            sequential: Sequential::default(),
            dir_ahead: AtomicUsize::new(0),
            ahead_seq: AtomicU64::new(0),
        }
    }

    pub(super) fn entry(&self) -> Option<&Entry> {
        match &self.what {
            What::Entry { listing, index, .. } => listing.get(*index),
            _ => None,
        }
    }
}

/// How a directory entry finds its node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Key {
    /// Entry `index` of the listing of directory `parent`.
    Child { parent: NodeId, index: usize },
    /// A file with several names: its source inode, within the point whose root is `scope`.
    Hardlink { scope: NodeId, inode: u64 },
    /// An entry of synthetic directory `parent`, by what names its content for good (the
    /// directory says what that is: one key must always make the same node).
    Named { parent: NodeId, name: Vec<u8> },
}

#[derive(Debug)]
enum Hold {
    Permanent,
    /// Lookups the kernel holds; zero for a node made ahead of it.
    Counted(u64),
}

#[derive(Debug)]
struct Slot {
    node: Arc<Node>,
    hold: Hold,
    /// How entries find this node (none for permanent nodes).
    key: Option<Key>,
}

#[derive(Debug)]
struct Table {
    slots: HashMap<NodeId, Slot>,
    by_key: HashMap<Key, NodeId>,
    /// Nodes made without a count, oldest first (some may have gained one or gone since).
    uncounted: VecDeque<NodeId>,
    /// Nodes in the order the kernel first took a count on them, oldest first (some may have
    /// gone since): those to ask the kernel to let go of when it holds too many.
    counted: VecDeque<NodeId>,
    /// Nodes with a count above zero.
    counted_now: usize,
    next: u64,
}

/// The nodes of a view, by id. Shareable between threads.
#[derive(Debug)]
pub(super) struct NodeTable {
    table: RwLock<Table>,
}

impl NodeTable {
    /// An empty table; the first node gets id 1 (the root).
    pub(super) fn new() -> NodeTable {
        NodeTable {
            table: RwLock::new(Table {
                slots: HashMap::new(),
                by_key: HashMap::new(),
                uncounted: VecDeque::new(),
                counted: VecDeque::new(),
                counted_now: 0,
                next: 1,
            }),
        }
    }

    pub(super) fn get(&self, ino: NodeId) -> Option<Arc<Node>> {
        read(&self.table).slots.get(&ino).map(|s| s.node.clone())
    }

    /// Nodes held now.
    pub(super) fn len(&self) -> usize {
        read(&self.table).slots.len()
    }

    /// Nodes held by the kernel or permanent, leaving out those made ahead of it.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        let table = read(&self.table);
        let ahead = |s: &&Slot| matches!(s.hold, Hold::Counted(0));
        table.slots.values().filter(|s| !ahead(s)).count()
    }

    /// Adds a node that lives as long as the view; `make` gets its id.
    pub(super) fn insert_permanent(&self, make: impl FnOnce(NodeId) -> Node) -> NodeId {
        let mut table = write(&self.table);
        let ino = table.next_id();
        let node = Arc::new(make(ino));
        table.slots.insert(
            ino,
            Slot {
                node,
                hold: Hold::Permanent,
                key: None,
            },
        );
        ino
    }

    /// The node of `key`, made by `make` if there is none; with `lookup`, the kernel is about
    /// to be told of it, so its count goes up first (a concurrent forget cannot drop it).
    pub(super) fn find_or_insert(
        &self,
        key: Key,
        lookup: bool,
        make: impl FnOnce(NodeId) -> Node,
    ) -> (NodeId, Arc<Node>) {
        let mut table = write(&self.table);
        if let Some(&ino) = table.by_key.get(&key) {
            if let Some(slot) = table.slots.get_mut(&ino) {
                let mut first_count = false;
                if let (Hold::Counted(count), true) = (&mut slot.hold, lookup) {
                    first_count = *count == 0;
                    *count += 1;
                }
                let node = slot.node.clone();
                if first_count {
                    table.counted_now += 1;
                    table.counted.push_back(ino);
                }
                return (ino, node);
            }
        }
        let ino = table.next_id();
        let node = Arc::new(make(ino));
        let slot = Slot {
            node: node.clone(),
            hold: Hold::Counted(u64::from(lookup)),
            key: Some(key.clone()),
        };
        table.slots.insert(ino, slot);
        table.by_key.insert(key, ino);
        if lookup {
            table.counted_now += 1;
            table.counted.push_back(ino);
        } else {
            table.uncounted.push_back(ino);
            table.trim_uncounted();
        }
        (ino, node)
    }

    /// When the kernel holds more than `cap` nodes: up to `most` of those it took first, to
    /// ask it to let go of (it answers with `forget` for those not in use). Each is named
    /// once; one still held after that is not named again.
    pub(super) fn beyond(&self, cap: usize, most: usize) -> Vec<Arc<Node>> {
        let mut table = write(&self.table);
        let mut out = Vec::new();
        let excess = table.counted_now.saturating_sub(cap).min(most);
        while out.len() < excess {
            let Some(ino) = table.counted.pop_front() else {
                break;
            };
            if let Some(slot) = table.slots.get(&ino) {
                if matches!(slot.hold, Hold::Counted(n) if n > 0) {
                    out.push(slot.node.clone());
                }
            }
        }
        out
    }

    /// The kernel gave back `lookups` of its count on `ino`; at zero the node goes.
    pub(super) fn forget(&self, ino: NodeId, lookups: u64) {
        let mut table = write(&self.table);
        let Some(slot) = table.slots.get_mut(&ino) else {
            return;
        };
        if let Hold::Counted(count) = &mut slot.hold {
            let was = *count;
            *count = count.saturating_sub(lookups);
            if *count == 0 {
                if was > 0 {
                    table.counted_now -= 1;
                }
                table.remove(ino);
            }
        }
    }
}

impl Table {
    fn next_id(&mut self) -> NodeId {
        let ino = NodeId(self.next);
        self.next += 1;
        ino
    }

    fn remove(&mut self, ino: NodeId) {
        let Some(slot) = self.slots.remove(&ino) else {
            return;
        };
        if let Some(key) = slot.key {
            if self.by_key.get(&key) == Some(&ino) {
                self.by_key.remove(&key);
            }
        }
    }

    /// Drops the oldest nodes made without a count while there are too many; those that
    /// gained a count since (or are gone) just leave the queue.
    fn trim_uncounted(&mut self) {
        while self.uncounted.len() > UNCOUNTED_NODES {
            let Some(ino) = self.uncounted.pop_front() else {
                break;
            };
            if matches!(
                self.slots.get(&ino).map(|s| &s.hold),
                Some(Hold::Counted(0))
            ) {
                self.remove(ino);
            }
        }
    }
}

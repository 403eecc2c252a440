//! Tree read-ahead: decoding, on the read-ahead pool, the files a reader that walks the tree
//! (tar, cp -r, rsync) will read next.
//!
//! The first read of a file starts a depth-first walk of the point in listing order from the
//! file on, crossing into the directories ahead (listing them, as the reader is about to),
//! and hands the beginnings of the files it meets to the pool in batches. A window counted
//! in files from the file being read bounds the lead: each handed file gets a sequence
//! number, so the lead is the difference between the last number handed and the file's.
//! Directories remember how far into their listing the walk has handed out (`dir_ahead`),
//! so no file is handed twice.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::dir::DirListing;
use super::{load_map, EntryKind, Node, NodeId, View, What};
use crate::store::BlockId;

/// Tree read-ahead: how many files past the one being read, how many bytes in all, how much
/// of each file, and how deep the walk goes.
const DIR_AHEAD_FILES: usize = 64;
const DIR_AHEAD_BYTES: u64 = 16 << 20;
const DIR_AHEAD_FILE_BYTES: u64 = 1 << 20;
const DIR_AHEAD_DEPTH: usize = 64;
/// Files per read-ahead job.
const DIR_AHEAD_BATCH: usize = 16;

/// A directory on a read-ahead walk, and the next of its entries to visit.
struct Step {
    node: Arc<Node>,
    dir: DirListing,
    next: usize,
}

impl View<'_> {
    /// Called on the first read of file `ino`: tops the read-ahead up to the window. Crossing
    /// directories matters: in a tree of small directories, read-ahead confined to one
    /// directory missed every first file and had too little lead for the rest. A listing
    /// alone (ls, find) decodes nothing.
    pub(super) fn read_ahead_tree(&self, ino: NodeId, node: &Node) {
        // How many files were handed out after this one: the read-ahead's lead.
        let seq = node.ahead_seq.load(Ordering::Acquire);
        let handed_last = self.ahead_seq.load(Ordering::Acquire);
        let lead = if seq == 0 {
            0
        } else {
            handed_last.saturating_sub(seq) as usize
        };
        if lead + DIR_AHEAD_BATCH > DIR_AHEAD_FILES {
            return;
        }
        let mut walk = self.walk_after(ino, node);
        let (mut files, mut bytes) = (Vec::new(), 0);
        // Positions are committed only if the files are handed out.
        let mut handed: Vec<(Arc<Node>, usize)> = Vec::new();
        while lead + files.len() < DIR_AHEAD_FILES && bytes < DIR_AHEAD_BYTES {
            let depth = walk.len();
            let Some(at) = walk.last_mut() else { break };
            let index = at.next.max(at.node.dir_ahead.load(Ordering::Acquire));
            let Some(entry) = at.dir.entries.get(index) else {
                // This directory is done: its parent may now hand out past it.
                walk.pop();
                if let Some(up) = walk.last() {
                    handed.push((up.node.clone(), up.next));
                }
                continue;
            };
            at.next = index + 1;
            // Nodes made here are not the kernel's: the node table keeps only the newest
            // such, which covers the window.
            let (child, child_node) = self.child(&at.dir, index, entry, false);
            match entry.kind {
                EntryKind::Dir if depth < DIR_AHEAD_DEPTH => {
                    if let Ok(dir) = self.dir(child, &child_node) {
                        walk.push(Step {
                            node: child_node,
                            dir,
                            next: 0,
                        });
                    }
                }
                EntryKind::File if entry.content.is_some() => {
                    files.push(child_node);
                    bytes += entry.size.min(DIR_AHEAD_FILE_BYTES);
                    handed.push((at.node.clone(), at.next));
                }
                _ => handed.push((at.node.clone(), at.next)),
            }
        }
        // Hand out whole batches: every job wakes a worker, and a wake-up per small file
        // costs about what decoding it does.
        if files.len() < DIR_AHEAD_BATCH && !walk.is_empty() {
            return;
        }
        for (dir, next) in handed {
            dir.dir_ahead.fetch_max(next, Ordering::AcqRel);
        }
        for file in &files {
            let seq = self.ahead_seq.fetch_add(1, Ordering::AcqRel) + 1;
            file.ahead_seq.store(seq, Ordering::Release);
        }
        for batch in files.chunks(DIR_AHEAD_BATCH) {
            let (maps, batch) = (self.maps.clone(), batch.to_vec());
            let spawned = self.blocks.spawn(move |loader| {
                let mut heads = Vec::new();
                for child in batch {
                    let locate = |id: &BlockId| loader.locate(id);
                    if let Ok(map) = load_map(&maps, loader.vault(), locate, &child) {
                        let head = map.blocks.iter().take_while(|b| b.0 < DIR_AHEAD_FILE_BYTES);
                        heads.extend(head.map(|&(_, id, _)| id));
                    }
                }
                loader.warm_many(&heads);
            });
            if !spawned {
                return;
            }
        }
    }

    /// Where a depth-first walk continues after the file `ino`: its directory and each
    /// directory above it up to the point's root, innermost last, each at the entry after
    /// the one the walk came up from.
    fn walk_after(&self, ino: NodeId, file: &Node) -> Vec<Step> {
        let mut walk = Vec::new();
        let mut up = self.step_above(ino, file);
        while let Some((step, parent)) = up {
            let dir = step.node.clone();
            walk.push(step);
            if walk.len() >= DIR_AHEAD_DEPTH {
                break;
            }
            up = self.step_above(parent, &dir);
        }
        walk.reverse();
        walk
    }

    /// The step after `node` in its parent directory's listing, and the parent's id; none
    /// at a point's root or a parent the kernel forgot.
    fn step_above(&self, ino: NodeId, node: &Node) -> Option<(Step, NodeId)> {
        let What::Entry { index, scope, .. } = &node.what else {
            return None;
        };
        if *scope == ino {
            return None;
        }
        let parent = self.node(node.parent).ok()?;
        let dir = self.dir(node.parent, &parent).ok()?;
        let step = Step {
            node: parent,
            dir,
            next: index + 1,
        };
        Some((step, node.parent))
    }
}

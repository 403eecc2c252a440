//! The file-system view of a vault: what the mount asks, answered in synvault's own types.
//!
//! A [`View`] numbers nodes lazily: an entry gets a node id when a lookup or a listing hands
//! it out, and keeps it while the kernel holds it: each lookup and each entry of a listing
//! with attributes counts, [`View::forget`] gives counts back, and a node whose count reaches
//! zero is dropped (see [`node`]). So the kernel sees stable inode numbers, and the view's
//! memory follows what the kernel caches, not everything ever listed. Names of one hardlinked
//! file (source entries with `nlink > 1` and the same source inode, inside one point) share
//! one node. Two layouts:
//!
//! ```text
//! Layout::Point            the point's root directory is the root
//! Layout::Vault            /latest -> points/<newest>
//!                          /points/2026-11-20T02:00:00Z/...      every complete (or partial) point
//!                          /sources/<source>/2026-11-20T02:00:00Z/...
//!                          /versions/<source>/<dir>/.../<file>/2026-11-20T02:00:00Z
//! ```
//! Points are named by their UTC start second; a later point of the same second gets
//! `-<short id>`, and a point's directory has the point's start time as its mtime, so
//! `ls -lt points/` sorts by backup time. Source directories are named by
//! [`source_dir_name`]: the path without its leading `/`, percent-encoded so that the name
//! gives the source back. Points that are running or awaiting their seed are not shown.
//! The vault-level directories are re-read from the catalog whenever they are listed, so new
//! points appear without remounting; their attributes are marked volatile (`stable: false`),
//! everything inside a point never changes.
//!
//! Listings are loaded once per tree and block maps once per content, so reads never touch
//! SQLite; blocks come through the shared [`BlockReader`] cache with read-ahead on sequential
//! access. A read that touches a damaged block fails with [`ViewError::Damaged`] for that read
//! only; the damage is reported once per file and pack through the damage hook.
//!
//! The view must not know FUSE: `mount/` converts these answers to kernel replies.

mod dir;
mod layout;
mod node;
mod read_ahead;
#[cfg(test)]
mod tests;
mod versions;

pub use dir::DirSink;
pub use layout::{point_names, source_dir_name, source_from_dir_name};

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use lru::LruCache;

use super::{fill, root_entry, BlockMap, BlockReader, Sequential};
use crate::catalog::{
    BlockLocation, CatalogError, ContentId, Entry, EntryKind, PackState, PointState, RecoveryPoint,
    TreeId,
};
use crate::store::{BlockId, StoreError};
use crate::vault::Vault;
use node::{Node, NodeTable, What};

/// A node of the view; the kernel sees it as the inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

/// The root directory.
pub const ROOT: NodeId = NodeId(1);

/// Files up to this size get `blocks` from their size; larger ones from their block map, so
/// holes show. Small files are one block: loading their map for `stat` would cost a catalog
/// query per file for nothing.
const EXACT_BLOCKS_FROM: u64 = 256 << 10;
const LISTING_CACHE: usize = 4096;
const MAP_CACHE: usize = 16384;

/// Attributes of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: NodeId,
    pub kind: EntryKind,
    /// Permission and special bits (07777).
    pub perm: u16,
    pub size: u64,
    /// 512-byte units holding data.
    pub blocks: u64,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// The device number as `stat` gives it (`st_rdev`).
    pub rdev: u64,
    /// True if this never changes (inside a point); false for the vault-level directories.
    pub stable: bool,
}

/// One directory entry with its attributes (for listings with attributes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub attr: Attr,
    /// The offset that continues the listing after this entry.
    pub next_offset: u64,
}

/// Totals for `statfs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsTotals {
    /// Unique plaintext bytes in the vault.
    pub bytes: u64,
    /// Nodes held now: those the kernel holds, the vault-level directories, and a bounded
    /// few made ahead of the kernel.
    pub nodes: u64,
}

/// What the root of a view is.
#[derive(Clone, Debug)]
pub enum Layout {
    /// One point's tree.
    Point(Box<RecoveryPoint>),
    /// Every point, by time and by source.
    Vault,
}

/// Everything a view can answer instead of data.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("no node {ino:?}")]
    UnknownNode { ino: NodeId },
    #[error("no entry {name:?} in {dir:?}")]
    NoSuchEntry { dir: NodeId, name: String },
    #[error("{ino:?} is not a directory")]
    NotADirectory { ino: NodeId },
    #[error("{ino:?} is a directory")]
    IsADirectory { ino: NodeId },
    #[error("{ino:?} is not a symlink")]
    NotASymlink { ino: NodeId },
    #[error("{ino:?} has no extended attribute {name:?}")]
    NoSuchXattr { ino: NodeId, name: String },
    #[error("the answer needs {needed} bytes, more than the caller's buffer")]
    BufferTooSmall { needed: usize },
    #[error("damaged data in recovery point {point}, file {path}, pack {pack}")]
    Damaged {
        point: String,
        path: String,
        pack: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("cannot read the catalog")]
    Catalog(#[from] CatalogError),
}

/// Result alias for view answers.
pub type Result<T, E = ViewError> = std::result::Result<T, E>;

/// A point as the vault layout shows it.
#[derive(Debug)]
struct Shown {
    point: RecoveryPoint,
    name: String,
}

/// The vault-level state: which points are shown, and the nodes of their roots.
#[derive(Debug, Default)]
struct VaultState {
    shown: Vec<Arc<Shown>>,
    point_roots: HashMap<String, NodeId>,
    source_dirs: HashMap<String, NodeId>,
    source_point_roots: HashMap<(String, String), NodeId>,
}

/// Block maps by content, shared with read-ahead jobs.
type Maps = Mutex<LruCache<ContentId, Arc<BlockMap>>>;

/// The block map of a file of one block, without asking the catalog: the catalog names such
/// a content by its block (`Content::row_blocks`), and a content id equal to a block id of
/// the file's length can be nothing else (ids are 256-bit keyed hashes).
fn single_block_map(
    locate: impl Fn(&BlockId) -> Option<(BlockLocation, PackState)>,
    content: &ContentId,
    size: u64,
) -> Option<BlockMap> {
    let block = BlockId(content.0);
    let (loc, _) = locate(&block)?;
    (size > 0 && u64::from(loc.raw_len) == size).then(|| BlockMap {
        blocks: vec![(0, block, loc.raw_len)],
        size,
    })
}

/// The block map of a file node: from the node, the shared maps, the locator (one-block
/// files), or the catalog.
fn load_map(
    maps: &Maps,
    vault: &Vault,
    locate: impl Fn(&BlockId) -> Option<(BlockLocation, PackState)>,
    node: &Node,
) -> Result<Arc<BlockMap>> {
    if let Some(map) = node.map.get() {
        return Ok(map.clone());
    }
    let map = match node.entry().and_then(|e| e.content.map(|c| (c, e.size))) {
        None => Arc::new(BlockMap::empty()),
        Some((content, size)) => match single_block_map(&locate, &content, size) {
            Some(map) => Arc::new(map),
            None => {
                let cached = lock(maps).get(&content).cloned();
                match cached {
                    Some(map) => map,
                    None => {
                        let loaded = vault.read_catalog()?.content(&content)?;
                        let map = Arc::new(BlockMap::new(&loaded));
                        lock(maps).put(content, map.clone());
                        map
                    }
                }
            }
        },
    };
    Ok(node.map.get_or_init(|| map).clone())
}

/// Told about trouble worth a log line: once per damaged (file, pack) with the error a read
/// got, and once per distinct catalog error.
pub type DamageHook = Box<dyn Fn(&ViewError) + Send + Sync>;

/// The view. Shareable between threads.
pub struct View<'v> {
    blocks: Arc<BlockReader<'v>>,
    layout: Layout,
    nodes: NodeTable,
    /// The vault layout's root: its entries (none in the point layout).
    top: Vec<(&'static [u8], NodeId)>,
    vault: Mutex<VaultState>,
    listings: Mutex<LruCache<TreeId, Arc<Vec<Entry>>>>,
    maps: Arc<Maps>,
    /// What the hook was told: (file, pack) of damage, (`NodeId(0)`, message) of catalog errors.
    damage_seen: Mutex<HashSet<(NodeId, String)>>,
    on_damage: DamageHook,
    owner: (u32, u32),
    created_ns: i64,
    /// The sequence number of the last file handed to tree read-ahead.
    ahead_seq: AtomicU64,
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("layout", &self.layout)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn lru<K: std::hash::Hash + Eq, V>(n: usize) -> LruCache<K, V> {
    LruCache::new(NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN))
}

impl<'v> View<'v> {
    /// A view over `blocks`' vault with the given layout.
    pub fn new(blocks: Arc<BlockReader<'v>>, layout: Layout) -> View<'v> {
        // The table numbers from 1, so the root gets ROOT.
        let nodes = NodeTable::new();
        let top = match &layout {
            Layout::Point(point) => {
                let shown = Arc::new(Shown {
                    name: point.id.short().to_string(),
                    point: (**point).clone(),
                });
                let what = What::Entry {
                    listing: Arc::new(vec![root_entry(point)]),
                    point: shown,
                    scope: ROOT,
                    index: 0,
                };
                nodes.insert_permanent(|_| Node::new(ROOT, what));
                Vec::new()
            }
            Layout::Vault => layout::insert_top_level(&nodes),
        };
        View {
            blocks,
            layout,
            nodes,
            top,
            vault: Mutex::new(VaultState::default()),
            listings: Mutex::new(lru(LISTING_CACHE)),
            maps: Arc::new(Mutex::new(lru(MAP_CACHE))),
            damage_seen: Mutex::new(HashSet::new()),
            on_damage: Box::new(|_| {}),
            owner: (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            created_ns: crate::time::now_ns(),
            ahead_seq: AtomicU64::new(0),
        }
    }

    /// Sets the hook told about damaged data (once per file and pack).
    pub fn with_damage_hook(mut self, hook: DamageHook) -> View<'v> {
        self.on_damage = hook;
        self
    }

    /// The block reader (cache statistics, timings).
    pub fn blocks(&self) -> &BlockReader<'v> {
        &self.blocks
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn node(&self, ino: NodeId) -> Result<Arc<Node>> {
        self.nodes.get(ino).ok_or(ViewError::UnknownNode { ino })
    }

    /// The kernel forgot `lookups` of the lookups it holds on `ino` (each [`Self::lookup`] and
    /// each entry a counting [`DirSink`] took is one); at zero the node is dropped, unless it
    /// is the root or a vault-level directory. Unknown nodes are ignored.
    pub fn forget(&self, ino: NodeId, lookups: u64) {
        self.nodes.forget(ino, lookups);
    }

    /// When the kernel holds more than `cap` nodes of this view: up to `most` directory entries
    /// (parent, name) it took first, for the mount to ask the kernel to drop. The kernel then
    /// forgets those not in use, and the view with it: its memory stays bounded however much
    /// is listed.
    pub fn entries_beyond(&self, cap: usize, most: usize) -> Vec<(NodeId, Vec<u8>)> {
        self.nodes
            .beyond(cap, most)
            .into_iter()
            .filter_map(|node| Some((node.parent, node.entry()?.name.clone())))
            .collect()
    }

    /// Attributes of a node.
    pub fn attr(&self, ino: NodeId) -> Result<Attr> {
        let node = self.node(ino)?;
        self.attr_of(ino, &node)
    }

    fn attr_of(&self, ino: NodeId, node: &Node) -> Result<Attr> {
        match &node.what {
            What::Entry { scope, point, .. } => {
                let Some(entry) = node.entry() else {
                    return Err(ViewError::UnknownNode { ino });
                };
                // A point's directory in the vault layout is named by the vault listing, which
                // may change; everything inside a point never does. (Its entry is the point's
                // root, the one entry without a name: a version under `versions/` is its own
                // scope too, but keeps its entry's times.)
                let point_dir =
                    matches!(self.layout, Layout::Vault) && *scope == ino && entry.name.is_empty();
                let mut attr = self.entry_attr(ino, node, entry, !point_dir)?;
                if point_dir {
                    // The time of the backup, not of the source directory: `ls -lt` of
                    // `points/` sorts by when points were taken.
                    attr.mtime_ns = point.point.started_ns;
                    attr.ctime_ns = point.point.started_ns;
                }
                Ok(attr)
            }
            What::Latest => {
                let target = self.latest_target();
                Ok(self.synthetic_attr(ino, EntryKind::Symlink, target.len() as u64))
            }
            What::Synthetic(_) => Ok(self.synthetic_attr(ino, EntryKind::Dir, 0)),
        }
    }

    fn entry_attr(&self, ino: NodeId, node: &Node, entry: &Entry, stable: bool) -> Result<Attr> {
        let size = match entry.kind {
            EntryKind::Symlink => entry.target.as_ref().map_or(entry.size, |t| t.len() as u64),
            _ => entry.size,
        };
        let data_bytes = match entry.kind {
            EntryKind::File if size > EXACT_BLOCKS_FROM => self.map_of(node)?.allocated_bytes(),
            EntryKind::File => size,
            _ => 0,
        };
        Ok(Attr {
            ino,
            kind: entry.kind,
            perm: (entry.mode & 0o7777) as u16,
            size,
            blocks: data_bytes.div_ceil(512),
            nlink: u32::try_from(entry.nlink.max(1)).unwrap_or(u32::MAX),
            uid: entry.uid,
            gid: entry.gid,
            mtime_ns: entry.mtime_ns,
            ctime_ns: entry.ctime_ns,
            rdev: entry.rdev,
            stable,
        })
    }

    fn synthetic_attr(&self, ino: NodeId, kind: EntryKind, size: u64) -> Attr {
        let mtime_ns = lock(&self.vault).shown.last().map_or(self.created_ns, |s| {
            s.point.finished_ns.max(s.point.started_ns)
        });
        Attr {
            ino,
            kind,
            perm: if kind == EntryKind::Symlink {
                0o777
            } else {
                0o555
            },
            size,
            blocks: 0,
            nlink: if kind == EntryKind::Dir { 2 } else { 1 },
            uid: self.owner.0,
            gid: self.owner.1,
            mtime_ns,
            ctime_ns: mtime_ns,
            rdev: 0,
            stable: false,
        }
    }

    /// The target of a symlink.
    pub fn read_link(&self, ino: NodeId) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        match (&node.what, node.entry()) {
            (What::Latest, _) => {
                self.refresh()?;
                Ok(self.latest_target())
            }
            (_, Some(entry)) if entry.kind == EntryKind::Symlink => {
                Ok(entry.target.clone().unwrap_or_default())
            }
            _ => Err(ViewError::NotASymlink { ino }),
        }
    }

    /// True if no entry this view shows has extended attributes, now or later: true for a
    /// point whose catalog rows say so (a point never changes); never for the vault layout,
    /// which gains points, nor for a point the catalog has not settled.
    pub fn xattrs_absent(&self) -> bool {
        let Layout::Point(point) = &self.layout else {
            return false;
        };
        if !point.root.xattrs.is_empty() {
            return false;
        }
        let below = self
            .blocks
            .vault()
            .read_catalog()
            .and_then(|catalog| catalog.tree_xattrs(&point.root_tree));
        match below {
            Ok(below) => below == Some(false),
            Err(err) => {
                self.report(&ViewError::Catalog(err));
                false
            }
        }
    }

    /// Names of a node's extended attributes.
    pub fn xattr_names(&self, ino: NodeId) -> Result<Vec<Vec<u8>>> {
        let node = self.node(ino)?;
        Ok(node
            .entry()
            .map(|e| e.xattrs.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default())
    }

    /// The value of one extended attribute.
    pub fn xattr(&self, ino: NodeId, name: &[u8]) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        node.entry()
            .and_then(|e| e.xattrs.iter().find(|(n, _)| n == name))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| ViewError::NoSuchXattr {
                ino,
                name: String::from_utf8_lossy(name).into_owned(),
            })
    }

    /// Up to `len` bytes of a file at `offset` (fewer only at the end).
    pub fn read(&self, ino: NodeId, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let n = self.read_into(ino, offset, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Fills `buf` from a file at `offset`; returns the bytes filled (fewer only at the end).
    /// The caller keeps the buffer, so a server can reuse one per thread.
    pub fn read_into(&self, ino: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let node = self.node(ino)?;
        match node.entry().map(|e| e.kind) {
            Some(EntryKind::File) => {}
            Some(EntryKind::Dir) | None => return Err(ViewError::IsADirectory { ino }),
            Some(_) => return Ok(0),
        }
        if offset == 0 {
            self.read_ahead_tree(ino, &node);
        }
        let map = self.map_of(&node)?;
        let len = (buf.len() as u64).min(map.size.saturating_sub(offset)) as usize;
        node.sequential
            .read_ahead(&self.blocks, &map, offset, len as u64);
        let blocks = &self.blocks;
        fill(
            &map,
            offset,
            &mut buf[..len],
            |id, len| blocks.read_block(id, len).map_err(|e| (*id, e)),
            |id, out| blocks.read_block_to(id, out).map_err(|e| (*id, e)),
        )
        .map_err(|(block, source)| self.damaged(ino, &node, &block, source))
    }

    /// Totals for `statfs`.
    pub fn totals(&self) -> FsTotals {
        let bytes = self
            .blocks
            .vault()
            .read_catalog()
            .and_then(|catalog| catalog.store_totals())
            .map_or(0, |(raw, _)| raw);
        FsTotals {
            bytes,
            nodes: self.nodes.len() as u64,
        }
    }

    /// Passes a catalog error to the hook, once per distinct message: the kernel only sees
    /// EIO, so without this the cause would be lost. Other errors are answers, not trouble.
    pub fn report(&self, err: &ViewError) {
        if let ViewError::Catalog(cause) = err {
            let detail = std::error::Error::source(cause).map(|s| s.to_string());
            let message = format!("{cause}: {}", detail.unwrap_or_default());
            if lock(&self.damage_seen).insert((NodeId(0), message)) {
                (self.on_damage)(err);
            }
        }
    }

    fn damaged(&self, ino: NodeId, node: &Node, block: &BlockId, source: StoreError) -> ViewError {
        let pack = self.blocks.locate(block).map_or_else(
            || format!("(none for block {block})"),
            |(loc, _)| loc.pack.to_hex(),
        );
        let point = match &node.what {
            What::Entry { point, .. } => format!("{} ({})", point.point.id.short(), point.name),
            _ => String::new(),
        };
        let err = ViewError::Damaged {
            point,
            path: self.path_of(ino),
            pack: pack.clone(),
            source: Box::new(source),
        };
        if lock(&self.damage_seen).insert((ino, pack)) {
            (self.on_damage)(&err);
        }
        err
    }

    /// The path of a node inside its point, for messages.
    fn path_of(&self, ino: NodeId) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        for _ in 0..4096 {
            let Ok(node) = self.node(at) else { break };
            match &node.what {
                What::Entry { scope, .. } if *scope != at => {
                    if let Some(e) = node.entry() {
                        parts.push(String::from_utf8_lossy(&e.name).into_owned());
                    }
                    at = node.parent;
                }
                _ => break,
            }
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    fn map_of(&self, node: &Node) -> Result<Arc<BlockMap>> {
        load_map(
            &self.maps,
            self.blocks.vault(),
            |id| self.blocks.locate(id),
            node,
        )
    }

    fn listing(&self, tree: &TreeId) -> Result<Arc<Vec<Entry>>> {
        if let Some(listing) = lock(&self.listings).get(tree) {
            return Ok(listing.clone());
        }
        let mut entries = self.blocks.vault().tree_entries(tree)?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let listing = Arc::new(entries);
        lock(&self.listings).put(*tree, listing.clone());
        Ok(listing)
    }
}

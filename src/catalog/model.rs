//! Row types of the catalog, in synvault's own terms.

use std::fmt;

use crate::store::BlockId;

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &hex::encode(self.0)[..12])
            }
        }
    };
}

hash_id!(
    /// A file version: keyed blake3 of its block list.
    ContentId
);
hash_id!(
    /// A directory listing: keyed blake3 of its canonical encoding (Merkle).
    TreeId
);

/// A recovery point's id: 16 hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RecoveryPointId(pub String);

impl RecoveryPointId {
    /// A fresh random id.
    pub fn random() -> RecoveryPointId {
        RecoveryPointId(hex::encode(crate::crypto::random_array::<8>()))
    }

    /// The 8-digit form people read.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(8)]
    }
}

impl fmt::Display for RecoveryPointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a tree entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDev,
    BlockDev,
    Socket,
}

impl EntryKind {
    /// The name stored in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Fifo => "fifo",
            EntryKind::CharDev => "chardev",
            EntryKind::BlockDev => "blockdev",
            EntryKind::Socket => "socket",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<EntryKind> {
        Some(match s {
            "file" => EntryKind::File,
            "dir" => EntryKind::Dir,
            "symlink" => EntryKind::Symlink,
            "fifo" => EntryKind::Fifo,
            "chardev" => EntryKind::CharDev,
            "blockdev" => EntryKind::BlockDev,
            "socket" => EntryKind::Socket,
            _ => return None,
        })
    }
}

/// One name in a directory, with everything needed to recreate it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Raw bytes of the name.
    pub name: Vec<u8>,
    pub kind: EntryKind,
    /// Permission and special bits (07777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    /// Kept to detect changes, not restored.
    pub ctime_ns: i64,
    /// Logical size (files), target length (symlinks), 0 otherwise.
    pub size: u64,
    /// The source inode: change detection and hardlink groups (entries with `nlink > 1`
    /// and the same inode are one file).
    pub inode: u64,
    pub nlink: u64,
    pub content: Option<ContentId>,
    pub subtree: Option<TreeId>,
    pub target: Option<Vec<u8>>,
    pub rdev: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A file version: its size and ordered blocks.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Content {
    pub size: u64,
    /// (block, length); offsets are the running sum.
    pub blocks: Vec<(BlockId, u32)>,
}

impl Content {
    /// The canonical encoding stored in `contents.block_list`.
    pub fn encode_blocks(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.blocks.len() * 36);
        for (id, len) in &self.blocks {
            out.extend_from_slice(&id.0);
            out.extend_from_slice(&len.to_le_bytes());
        }
        out
    }

    /// The `block_list` column for this content stored under `id`: empty when the content is
    /// one non-zero block whose id is `id` (most small files), to keep the catalog small.
    pub fn row_blocks(&self, id: &ContentId) -> Vec<u8> {
        match self.blocks.as_slice() {
            [(block, _)] if block.0 == id.0 && *block != BlockId::ZERO => Vec::new(),
            _ => self.encode_blocks(),
        }
    }

    /// Reads a `contents` row back (see [`Content::row_blocks`]).
    pub fn from_row(id: &ContentId, size: u64, list: &[u8]) -> Option<Content> {
        if list.is_empty() && size > 0 {
            let len = u32::try_from(size).ok()?;
            return Some(Content {
                size,
                blocks: vec![(BlockId(id.0), len)],
            });
        }
        Content::decode_blocks(size, list)
    }

    /// Parses `contents.block_list`.
    pub fn decode_blocks(size: u64, list: &[u8]) -> Option<Content> {
        if list.len() % 36 != 0 {
            return None;
        }
        let blocks = list
            .chunks_exact(36)
            .map(|c| {
                let mut id = [0u8; 32];
                id.copy_from_slice(&c[..32]);
                (
                    BlockId(id),
                    u32::from_le_bytes([c[32], c[33], c[34], c[35]]),
                )
            })
            .collect();
        Some(Content { size, blocks })
    }
}

/// How a point was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointKind {
    Full,
    Incremental,
    Seeded,
}

impl PointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PointKind::Full => "full",
            PointKind::Incremental => "incremental",
            PointKind::Seeded => "seeded",
        }
    }

    pub fn parse(s: &str) -> Option<PointKind> {
        Some(match s {
            "full" => PointKind::Full,
            "incremental" => PointKind::Incremental,
            "seeded" => PointKind::Seeded,
            _ => return None,
        })
    }
}

/// Whether a point can be restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointState {
    Running,
    Complete,
    /// Some source files could not be read; the rest is restorable.
    Partial,
    AwaitingSeed,
}

impl PointState {
    pub fn as_str(self) -> &'static str {
        match self {
            PointState::Running => "running",
            PointState::Complete => "complete",
            PointState::Partial => "partial",
            PointState::AwaitingSeed => "awaiting_seed",
        }
    }

    pub fn parse(s: &str) -> Option<PointState> {
        Some(match s {
            "running" => PointState::Running,
            "complete" => PointState::Complete,
            "partial" => PointState::Partial,
            "awaiting_seed" => PointState::AwaitingSeed,
            _ => return None,
        })
    }
}

/// Counts of one backup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PointStats {
    pub files: u64,
    pub dirs: u64,
    /// Logical bytes of the files in the point.
    pub bytes: u64,
    pub files_changed: u64,
    pub bytes_read: u64,
    /// Plaintext bytes of blocks new to the vault.
    pub bytes_new: u64,
    /// Bytes those blocks take in packs.
    pub bytes_stored: u64,
}

/// One recovery point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryPoint {
    pub id: RecoveryPointId,
    pub parent: Option<RecoveryPointId>,
    pub root_tree: TreeId,
    /// The name of the point's series: its sources' paths joined by ", " (what `points`
    /// shows, what an incremental's parent and a retention policy are looked up by).
    pub source: String,
    /// Every source's absolute path, in the order given to the backup.
    pub sources: Vec<std::path::PathBuf>,
    /// Where the point's root directory was: the source directory of a point of one
    /// directory, else the deepest directory holding every source, each source at its path
    /// below it. `None` for points made before it was recorded (see [`Self::original_root`]).
    pub root_path: Option<std::path::PathBuf>,
    pub host: String,
    pub tags: Vec<String>,
    pub kind: PointKind,
    pub state: PointState,
    pub started_ns: i64,
    pub finished_ns: i64,
    pub stats: PointStats,
    /// Paths skipped, with the reason.
    pub errors: Vec<String>,
    /// Metadata of the root directory.
    pub root: RootMeta,
    /// The seed job whose packs this point waits for (state `awaiting_seed`).
    pub awaiting_job: Option<String>,
    /// Protected from forgetting by policy until this time (ns, UTC; `i64::MAX`: forever).
    pub retain_until_ns: Option<i64>,
}

impl RecoveryPoint {
    /// Where the point's root directory was, for a restore to the original location. Points
    /// made before it was recorded: the one source (a directory, as most are), or the
    /// directory several sources share, if they share their parent (their layout then was one
    /// entry per source); otherwise unknown.
    pub fn original_root(&self) -> Option<std::path::PathBuf> {
        if let Some(root) = &self.root_path {
            return Some(root.clone());
        }
        match self.sources.as_slice() {
            [one] => Some(one.clone()),
            [first, rest @ ..] => {
                let parent = first.parent()?;
                rest.iter()
                    .all(|s| s.parent() == Some(parent))
                    .then(|| parent.to_path_buf())
            }
            [] => None,
        }
    }
}

#[cfg(test)]
impl RecoveryPoint {
    /// A complete full point of `/src` on host `h` with root `root_tree`, for tests.
    pub(crate) fn for_test(id: &str, root_tree: TreeId) -> RecoveryPoint {
        RecoveryPoint {
            id: RecoveryPointId(id.into()),
            parent: None,
            root_tree,
            source: "/src".into(),
            sources: vec!["/src".into()],
            root_path: Some("/src".into()),
            host: "h".into(),
            tags: vec![],
            kind: PointKind::Full,
            state: PointState::Complete,
            started_ns: 1,
            finished_ns: 2,
            stats: PointStats::default(),
            errors: vec![],
            root: RootMeta::default(),
            awaiting_job: None,
            retain_until_ns: None,
        }
    }
}

/// A seed job as recorded when its disks are prepared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedJobRecord {
    pub name: String,
    pub source: String,
    pub disk_count: u32,
    /// When the job was recorded.
    pub created_ns: i64,
    /// Every pack shipped, with its 1-based disk index.
    pub packs: Vec<(crate::store::PackId, u32)>,
}

/// Metadata of a point's root directory.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RootMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where a block's frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLocation {
    pub pack: crate::store::PackId,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
}

/// Where a pack is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackState {
    Stored,
    InTransit,
}

impl PackState {
    pub fn as_str(self) -> &'static str {
        match self {
            PackState::Stored => "stored",
            PackState::InTransit => "in_transit",
        }
    }
}

//! The block store: frames, packs and the backend that holds them.
//!
//! The store knows nothing of files or recovery points. It turns plaintext blocks into sealed
//! frames ([`block`]), groups frames into immutable packs ([`pack`]) and keeps packs in a
//! [`backend::Backend`], the one seam every pack byte goes through; [`pack_reader`] reads
//! frames back over it (one at a time, or neighbours together). [`files`] holds the vault's
//! few small files beside the packs; [`object`] keeps all of it in S3 or Azure Blob. [`meta_pack`] seals the
//! catalog's own records into packs of their own, so the store alone can rebuild the catalog.
//! Packs are named by the plain blake3 of their bytes, so anyone can check a pack without the
//! key.

pub mod backend;
pub mod block;
pub mod cache;
pub mod files;
pub mod meta_pack;
pub mod object;
pub mod pack;
pub mod pack_reader;

use std::fmt;
use std::path::PathBuf;

pub use backend::{Backend, FileVerdict, LocalBackend, MemBackend};
pub use block::{BlockCodec, BlockId, IdMap, IdSet};
pub use pack::{PackEntry, PackWriter};

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The name of a pack: blake3 of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId(pub [u8; 32]);

impl PackId {
    /// The id of these pack bytes.
    pub fn of(bytes: &[u8]) -> PackId {
        PackId(*blake3::hash(bytes).as_bytes())
    }

    /// The length and id of the pack bytes in a file, streamed through blake3 (a pack is never
    /// held in memory to be checked).
    pub fn of_file(path: &std::path::Path) -> std::io::Result<(u64, PackId)> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = std::io::Read::read(&mut file, &mut buf)?;
            if n == 0 {
                return Ok((len, PackId(*hasher.finalize().as_bytes())));
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
    }

    /// Lower-case hex, as in file names.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<PackId> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(PackId(out))
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackId({})", &self.to_hex()[..12])
    }
}

/// Everything that can go wrong reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {what} {}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pack {pack} is missing")]
    MissingPack { pack: PackId },
    #[error("pack {pack} is too short for a read of {len} bytes at offset {offset}")]
    ShortPack {
        pack: PackId,
        offset: u64,
        len: usize,
    },
    #[error("corrupt frame of block {block} in pack {pack} at offset {offset}")]
    CorruptFrame {
        block: BlockId,
        pack: PackId,
        offset: u64,
    },
    #[error("block {block} is not in the catalog")]
    UnknownBlock { block: BlockId },
    #[error("cannot look block {block} up in the catalog: {why}")]
    Lookup { block: BlockId, why: String },
    #[error("seed disks are full: {} more needed", crate::units::Bytes(*.needed))]
    SeedDisksFull { needed: u64 },
    #[error("the pack writer stopped")]
    WriterStopped,
    #[error("corrupt pack {pack}: {why}")]
    CorruptPack { pack: PackId, why: &'static str },
    #[error("cannot {what} {object}: {why}")]
    Remote {
        what: &'static str,
        object: String,
        why: String,
    },
}

impl StoreError {
    /// True if the store itself could not be reached (not a missing or damaged pack): the
    /// next read will not fare better, so a reader stops instead of going on file by file.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Remote { .. })
    }

    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { what, path, source }
    }
}

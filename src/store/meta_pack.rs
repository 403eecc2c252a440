//! Metadata packs: the catalog's own records, sealed into the store so that the store alone
//! is the backup.
//!
//! ```text
//! META_MAGIC [8] | version u32 LE | vault id [16]
//! nonce [12] | AES-256-GCM(zstd(body)) | tag [16]
//! ```
//! The body is opaque here (the catalog's record stream, see `catalog::sealed`). It is sealed
//! under a key derived from the catalog key, with the header as associated data, so a
//! metadata pack of another vault, or of another format version, does not open as this one.
//! A metadata pack lives beside the data packs under the same naming rule (plain blake3 of
//! its bytes), so the backend, seed import and verify treat both alike; the first eight bytes
//! tell them apart.

use crate::crypto::{open_message, seal_message, subkey, FrameCipher, Key};
use crate::store::PackId;

/// The first bytes of every metadata pack.
pub const META_MAGIC: &[u8; 8] = b"SYNVMETA";
/// Metadata pack format version written by this build.
pub const META_VERSION: u32 = 1;
/// Header length: magic, version, vault id.
pub const META_HEADER_LEN: usize = 28;
const ZSTD_LEVEL: i32 = 3;

/// A sealed metadata pack, ready for the backend.
#[derive(Debug)]
pub struct MetaPack {
    /// blake3 of `bytes`.
    pub id: PackId,
    /// The whole pack.
    pub bytes: Vec<u8>,
}

/// Why a metadata pack does not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaPackError {
    #[error("not a metadata pack")]
    NotMeta,
    #[error("metadata pack format {0} is newer than this synvault reads")]
    TooNew(u32),
    #[error("metadata pack of another vault")]
    OtherVault,
    #[error("metadata pack does not authenticate (damaged, or sealed under another key)")]
    Damaged,
}

fn header(vault_id: &[u8; 16]) -> [u8; META_HEADER_LEN] {
    let mut h = [0u8; META_HEADER_LEN];
    h[..8].copy_from_slice(META_MAGIC);
    h[8..12].copy_from_slice(&META_VERSION.to_le_bytes());
    h[12..].copy_from_slice(vault_id);
    h
}

fn meta_key(catalog_key: &Key) -> Key {
    subkey(catalog_key, b"metadata pack v1")
}

/// True if `head` (at least the first eight bytes of a pack) starts a metadata pack.
pub fn is_meta_pack(head: &[u8]) -> bool {
    head.starts_with(META_MAGIC)
}

/// True if pack `id` (of `size` bytes) in `backend` is a metadata pack, by its first bytes.
pub fn stored_meta_pack(
    backend: &dyn crate::store::Backend,
    id: &crate::store::PackId,
    size: u64,
) -> Result<bool, crate::store::StoreError> {
    if size < META_HEADER_LEN as u64 {
        return Ok(false);
    }
    let mut head = [0u8; 8];
    backend.read_into(id, 0, &mut head)?;
    Ok(is_meta_pack(&head))
}

/// Compresses and seals `body` into a metadata pack of vault `vault_id`.
pub fn seal(
    cipher: &dyn FrameCipher,
    catalog_key: &Key,
    vault_id: &[u8; 16],
    body: &[u8],
) -> std::io::Result<MetaPack> {
    let header = header(vault_id);
    let packed = zstd::bulk::compress(body, ZSTD_LEVEL)?;
    let sealed = seal_message(cipher, &meta_key(catalog_key), &header, &packed);
    let mut bytes = Vec::with_capacity(META_HEADER_LEN + sealed.len());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&sealed);
    Ok(MetaPack {
        id: PackId::of(&bytes),
        bytes,
    })
}

/// Opens a metadata pack of vault `vault_id` and returns its body.
pub fn open(
    cipher: &dyn FrameCipher,
    catalog_key: &Key,
    vault_id: &[u8; 16],
    bytes: &[u8],
) -> Result<Vec<u8>, MetaPackError> {
    if bytes.len() < META_HEADER_LEN || !is_meta_pack(bytes) {
        return Err(MetaPackError::NotMeta);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != META_VERSION {
        return Err(MetaPackError::TooNew(version));
    }
    if bytes[12..META_HEADER_LEN] != vault_id[..] {
        return Err(MetaPackError::OtherVault);
    }
    let packed = open_message(
        cipher,
        &meta_key(catalog_key),
        &bytes[..META_HEADER_LEN],
        &bytes[META_HEADER_LEN..],
    )
    .map_err(|_| MetaPackError::Damaged)?;
    zstd::stream::decode_all(&packed[..]).map_err(|_| MetaPackError::Damaged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::RingCipher;

    #[test]
    fn a_metadata_pack_opens_only_in_its_own_vault_and_untouched() {
        let key = Key::from_bytes([3; 32]);
        let vault = [7u8; 16];
        let body = b"records".repeat(100);
        let pack = seal(&RingCipher, &key, &vault, &body).unwrap();
        assert_eq!(pack.id, PackId::of(&pack.bytes));
        assert!(is_meta_pack(&pack.bytes));
        assert_eq!(open(&RingCipher, &key, &vault, &pack.bytes).unwrap(), body);
        assert_eq!(
            open(&RingCipher, &key, &[8; 16], &pack.bytes),
            Err(MetaPackError::OtherVault)
        );
        assert_eq!(
            open(&RingCipher, &Key::from_bytes([4; 32]), &vault, &pack.bytes),
            Err(MetaPackError::Damaged)
        );
        let mut bad = pack.bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            open(&RingCipher, &key, &vault, &bad),
            Err(MetaPackError::Damaged)
        );
        assert_eq!(
            open(&RingCipher, &key, &vault, b"SYNVPACK\x01\0\0\0"),
            Err(MetaPackError::NotMeta)
        );
    }
}

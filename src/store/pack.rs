//! Packs: immutable files of frames with an encrypted index at the end.
//!
//! ```text
//! PACK_MAGIC_V1 [8] | version u32 LE
//! frame | frame | ...                         (back to back, see `block`)
//! footer = nonce [12] | AES-256-GCM(plain) | tag [16]
//!          plain (version 2): vault id [16] | kind u8 (1 = data) | entries
//!          plain (version 1): entries
//!          entries: n × (BlockId [32] | offset u64 LE | stored_len u32 LE | raw_len u32 LE)
//! footer_len u32 LE | PACK_END_MAGIC_V1 [8]
//! ```
//! The footer is sealed under a key derived from the data key, with the header as associated
//! data. It says which vault wrote the pack and lets the catalog's block index be rebuilt from
//! the packs alone ([`read_index`] reads it with two range reads). A pack's name is the plain
//! blake3 of all its bytes. Version 1 packs (no vault id) are still read. Metadata packs are
//! another format with their own magic (see `meta_pack`).

use crate::crypto::{open_message, seal_message, subkey, NONCE_LEN, TAG_LEN};
use crate::store::block::BlockCodec;
use crate::store::{Backend, BlockId, PackId, StoreError};

/// The first bytes of every pack.
pub const PACK_MAGIC_V1: &[u8; 8] = b"SYNVPACK";
/// The last bytes of every pack.
pub const PACK_END_MAGIC_V1: &[u8; 8] = b"SYNVPEND";
/// Pack format version written by this build.
pub const PACK_VERSION: u32 = 2;
/// Header length.
pub const HEADER_LEN: usize = 12;
const TRAILER_LEN: usize = 12;
const ENTRY_LEN: usize = 48;
/// What a version 2 footer says before its entries: vault id and kind.
const FOOTER_PREFIX_LEN: usize = 17;
/// The kind byte of a pack of block frames.
const KIND_DATA: u8 = 1;

/// A data pack's footer: who wrote the pack and where its blocks are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackIndex {
    /// The vault that wrote it (`None` for a version 1 pack, which did not say).
    pub vault_id: Option<[u8; 16]>,
    /// The blocks in it.
    pub entries: Vec<PackEntry>,
}

/// Where one block sits in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// The block.
    pub id: BlockId,
    /// Offset of its frame from the start of the pack.
    pub offset: u64,
    /// Length of the frame.
    pub stored_len: u32,
    /// Length of the plaintext.
    pub raw_len: u32,
}

/// A finished pack, ready for the backend.
#[derive(Debug)]
pub struct FinishedPack {
    /// blake3 of `bytes`.
    pub id: PackId,
    /// The whole pack.
    pub bytes: Vec<u8>,
    /// The blocks in it.
    pub entries: Vec<PackEntry>,
}

/// Collects frames in memory until the pack is full.
#[derive(Debug)]
pub struct PackWriter {
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
}

fn header_of(version: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(PACK_MAGIC_V1);
    h[8..].copy_from_slice(&version.to_le_bytes());
    h
}

fn header() -> [u8; HEADER_LEN] {
    header_of(PACK_VERSION)
}

impl PackWriter {
    /// An empty pack with room reserved for `target_bytes`.
    pub fn new(target_bytes: usize) -> PackWriter {
        PackWriter::reusing(Vec::new(), target_bytes)
    }

    /// An empty pack in the buffer of one already written (its bytes are dropped): a backup
    /// that fills a new 32 MiB buffer per pack spends a tenth of its time having the kernel
    /// hand it zeroed pages.
    pub fn reusing(mut bytes: Vec<u8>, target_bytes: usize) -> PackWriter {
        bytes.clear();
        bytes.reserve(target_bytes + (4 << 20));
        bytes.extend_from_slice(&header());
        PackWriter {
            bytes,
            entries: Vec::new(),
        }
    }

    /// Appends one frame.
    pub fn add(&mut self, id: BlockId, frame: &[u8], raw_len: usize) {
        self.entries.push(PackEntry {
            id,
            offset: self.bytes.len() as u64,
            stored_len: frame.len() as u32,
            raw_len: raw_len as u32,
        });
        self.bytes.extend_from_slice(frame);
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True if no frame was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seals the footer and names the pack.
    pub fn finish(mut self, codec: &BlockCodec) -> FinishedPack {
        let mut plain = Vec::with_capacity(FOOTER_PREFIX_LEN + self.entries.len() * ENTRY_LEN);
        plain.extend_from_slice(codec.vault_id());
        plain.push(KIND_DATA);
        for e in &self.entries {
            plain.extend_from_slice(&e.id.0);
            plain.extend_from_slice(&e.offset.to_le_bytes());
            plain.extend_from_slice(&e.stored_len.to_le_bytes());
            plain.extend_from_slice(&e.raw_len.to_le_bytes());
        }
        let footer = seal_message(codec.cipher(), &footer_key(codec), &header(), &plain);
        self.bytes.extend_from_slice(&footer);
        self.bytes
            .extend_from_slice(&(footer.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(PACK_END_MAGIC_V1);
        FinishedPack {
            id: PackId::of(&self.bytes),
            bytes: self.bytes,
            entries: self.entries,
        }
    }
}

fn footer_key(codec: &BlockCodec) -> crate::crypto::Key {
    subkey(&codec.keys().data, b"pack footer v1")
}

/// Reads the footer from a whole pack's bytes (tests; readers use [`read_index`]).
#[cfg(test)]
fn read_footer(codec: &BlockCodec, pack: &[u8]) -> Result<PackIndex, &'static str> {
    if pack.len() < HEADER_LEN + TRAILER_LEN + NONCE_LEN + TAG_LEN {
        return Err("too short");
    }
    let footer_len = footer_len(&pack[pack.len() - TRAILER_LEN..])?;
    let footer_start = pack
        .len()
        .checked_sub(TRAILER_LEN + footer_len)
        .filter(|&s| s >= HEADER_LEN)
        .ok_or("bad footer length")?;
    open_footer(
        codec,
        &pack[..HEADER_LEN],
        &pack[footer_start..pack.len() - TRAILER_LEN],
    )
}

/// Reads the footer of pack `id` (`size` bytes) from `backend` with range reads: the header,
/// the trailer, then the sealed footer. The frames are not read.
pub fn read_index(
    backend: &dyn Backend,
    codec: &BlockCodec,
    id: &PackId,
    size: u64,
) -> Result<PackIndex, StoreError> {
    let corrupt = |why| StoreError::CorruptPack { pack: *id, why };
    if size < (HEADER_LEN + TRAILER_LEN + NONCE_LEN + TAG_LEN) as u64 {
        return Err(corrupt("too short"));
    }
    let mut head = [0u8; HEADER_LEN];
    backend.read_into(id, 0, &mut head)?;
    let mut trailer = [0u8; TRAILER_LEN];
    backend.read_into(id, size - TRAILER_LEN as u64, &mut trailer)?;
    let footer_len = footer_len(&trailer).map_err(corrupt)? as u64;
    let footer_start = size
        .checked_sub(TRAILER_LEN as u64 + footer_len)
        .filter(|&s| s >= HEADER_LEN as u64)
        .ok_or(corrupt("bad footer length"))?;
    let mut sealed = vec![0u8; footer_len as usize];
    backend.read_into(id, footer_start, &mut sealed)?;
    open_footer(codec, &head, &sealed).map_err(corrupt)
}

fn footer_len(trailer: &[u8]) -> Result<usize, &'static str> {
    if &trailer[4..] != PACK_END_MAGIC_V1 {
        return Err("bad trailer");
    }
    Ok(u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as usize)
}

fn open_footer(codec: &BlockCodec, head: &[u8], sealed: &[u8]) -> Result<PackIndex, &'static str> {
    let version = if head == header_of(1) {
        1
    } else if head == header_of(2) {
        2
    } else {
        return Err("bad header");
    };
    let plain = open_message(codec.cipher(), &footer_key(codec), head, sealed)
        .map_err(|_| "footer does not authenticate")?;
    let (vault_id, entries) = if version == 1 {
        (None, &plain[..])
    } else {
        if plain.len() < FOOTER_PREFIX_LEN || plain[16] != KIND_DATA {
            return Err("unknown pack kind");
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&plain[..16]);
        (Some(id), &plain[FOOTER_PREFIX_LEN..])
    };
    if entries.len() % ENTRY_LEN != 0 {
        return Err("bad footer size");
    }
    let entries = entries
        .chunks_exact(ENTRY_LEN)
        .map(|e| {
            let mut id = [0u8; 32];
            id.copy_from_slice(&e[..32]);
            let u32_at = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
            let mut off = [0u8; 8];
            off.copy_from_slice(&e[32..40]);
            PackEntry {
                id: BlockId(id),
                offset: u64::from_le_bytes(off),
                stored_len: u32_at(40),
                raw_len: u32_at(44),
            }
        })
        .collect();
    Ok(PackIndex { vault_id, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Key, Keys, RingCipher};

    #[test]
    fn footer_round_trip_and_name() {
        let codec = BlockCodec::new(
            Keys::derive(&Key::from_bytes([1; 32])),
            Box::new(RingCipher),
            1,
        )
        .for_vault([9; 16]);
        let mut w = PackWriter::new(1 << 20);
        let blocks = [b"one".repeat(50), b"two".repeat(70)];
        for b in &blocks {
            let id = codec.id_of(b);
            w.add(id, &codec.encode(&id, b), b.len());
        }
        let pack = w.finish(&codec);
        assert_eq!(pack.id, PackId::of(&pack.bytes));
        let index = read_footer(&codec, &pack.bytes).unwrap();
        assert_eq!(index.vault_id, Some([9; 16]));
        let entries = index.entries;
        assert_eq!(entries, pack.entries);
        let backend = crate::store::MemBackend::default();
        backend.put(&pack.id, &pack.bytes).unwrap();
        let ranged = read_index(&backend, &codec, &pack.id, pack.bytes.len() as u64).unwrap();
        assert_eq!(ranged.entries, entries);
        for (e, b) in entries.iter().zip(&blocks) {
            let frame = pack.bytes[e.offset as usize..][..e.stored_len as usize].to_vec();
            assert_eq!(&codec.decode(&e.id, frame, e.raw_len as usize).unwrap(), b);
        }
        let mut bad = pack.bytes.clone();
        let n = bad.len();
        bad[n - 20] ^= 1;
        assert!(read_footer(&codec, &bad).is_err());
    }

    #[test]
    fn a_pack_made_in_a_written_packs_buffer_holds_nothing_of_it() {
        let codec = BlockCodec::new(
            Keys::derive(&Key::from_bytes([1; 32])),
            Box::new(RingCipher),
            1,
        );
        let pack_of = |writer: PackWriter, block: &[u8]| {
            let mut writer = writer;
            let id = codec.id_of(block);
            writer.add(id, &codec.encode(&id, block), block.len());
            writer.finish(&codec)
        };
        let old = pack_of(PackWriter::new(1 << 20), &b"old".repeat(400));
        // Frames and footers are sealed with random nonces: compare sizes and contents.
        let fresh = pack_of(PackWriter::new(1 << 20), b"new");
        let reused = pack_of(PackWriter::reusing(old.bytes, 1 << 20), b"new");
        assert_eq!(reused.bytes.len(), fresh.bytes.len());
        assert_eq!(reused.id, PackId::of(&reused.bytes));
        let entries = read_footer(&codec, &reused.bytes).unwrap().entries;
        assert_eq!(entries, fresh.entries);
        let e = entries[0];
        let frame = reused.bytes[e.offset as usize..][..e.stored_len as usize].to_vec();
        assert_eq!(codec.decode(&e.id, frame, 3).unwrap(), b"new");
    }

    #[test]
    fn a_version_1_pack_still_reads() {
        let codec = BlockCodec::new(
            Keys::derive(&Key::from_bytes([1; 32])),
            Box::new(RingCipher),
            1,
        );
        let id = codec.id_of(b"old");
        let frame = codec.encode(&id, b"old");
        let mut bytes = header_of(1).to_vec();
        bytes.extend_from_slice(&frame);
        let entry = PackEntry {
            id,
            offset: HEADER_LEN as u64,
            stored_len: frame.len() as u32,
            raw_len: 3,
        };
        let mut plain = id.0.to_vec();
        plain.extend_from_slice(&entry.offset.to_le_bytes());
        plain.extend_from_slice(&entry.stored_len.to_le_bytes());
        plain.extend_from_slice(&entry.raw_len.to_le_bytes());
        let footer = seal_message(codec.cipher(), &footer_key(&codec), &header_of(1), &plain);
        bytes.extend_from_slice(&footer);
        bytes.extend_from_slice(&(footer.len() as u32).to_le_bytes());
        bytes.extend_from_slice(PACK_END_MAGIC_V1);
        let index = read_footer(&codec, &bytes).unwrap();
        assert_eq!(index.vault_id, None);
        assert_eq!(index.entries, [entry]);
    }
}

//! Packs: immutable files of frames with an encrypted index at the end.
//!
//! ```text
//! PACK_MAGIC_V1 [8] | version u32 LE
//! frame | frame | ...                         (back to back, see `block`)
//! footer = nonce [12] | AES-256-GCM(entries) | tag [16]
//!          entries: n × (BlockId [32] | offset u64 LE | stored_len u32 LE | raw_len u32 LE)
//! footer_len u32 LE | PACK_END_MAGIC_V1 [8]
//! ```
//! The footer is sealed under a key derived from the data key, with the header as associated
//! data. It lets the catalog's block index be rebuilt from the packs alone. A pack's name is
//! the plain blake3 of all its bytes.

use crate::crypto::{open_message, seal_message, subkey, NONCE_LEN, TAG_LEN};
use crate::store::block::BlockCodec;
use crate::store::{BlockId, PackId};

/// The first bytes of every pack.
pub const PACK_MAGIC_V1: &[u8; 8] = b"SYNVPACK";
/// The last bytes of every pack.
pub const PACK_END_MAGIC_V1: &[u8; 8] = b"SYNVPEND";
/// Pack format version written by this build.
pub const PACK_VERSION: u32 = 1;
/// Header length.
pub const HEADER_LEN: usize = 12;
const TRAILER_LEN: usize = 12;
const ENTRY_LEN: usize = 48;

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

fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(PACK_MAGIC_V1);
    h[8..].copy_from_slice(&PACK_VERSION.to_le_bytes());
    h
}

impl PackWriter {
    /// An empty pack with room reserved for `target_bytes`.
    pub fn new(target_bytes: usize) -> PackWriter {
        let mut bytes = Vec::with_capacity(target_bytes + (4 << 20));
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
        let mut plain = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
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

/// Reads the block index from a whole pack's bytes.
pub fn read_footer(codec: &BlockCodec, pack: &[u8]) -> Result<Vec<PackEntry>, &'static str> {
    if pack.len() < HEADER_LEN + TRAILER_LEN + NONCE_LEN + TAG_LEN || pack[..HEADER_LEN] != header()
    {
        return Err("bad header");
    }
    let trailer = &pack[pack.len() - TRAILER_LEN..];
    if &trailer[4..] != PACK_END_MAGIC_V1 {
        return Err("bad trailer");
    }
    let footer_len = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as usize;
    let footer_start = pack
        .len()
        .checked_sub(TRAILER_LEN + footer_len)
        .filter(|&s| s >= HEADER_LEN)
        .ok_or("bad footer length")?;
    let sealed = &pack[footer_start..pack.len() - TRAILER_LEN];
    let plain = open_message(codec.cipher(), &footer_key(codec), &header(), sealed)
        .map_err(|_| "footer does not authenticate")?;
    if plain.len() % ENTRY_LEN != 0 {
        return Err("bad footer size");
    }
    Ok(plain
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
        .collect())
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
        );
        let mut w = PackWriter::new(1 << 20);
        let blocks = [b"one".repeat(50), b"two".repeat(70)];
        for b in &blocks {
            let id = codec.id_of(b);
            w.add(id, &codec.encode(&id, b), b.len());
        }
        let pack = w.finish(&codec);
        assert_eq!(pack.id, PackId::of(&pack.bytes));
        let entries = read_footer(&codec, &pack.bytes).unwrap();
        assert_eq!(entries, pack.entries);
        for (e, b) in entries.iter().zip(&blocks) {
            let frame = pack.bytes[e.offset as usize..][..e.stored_len as usize].to_vec();
            assert_eq!(&codec.decode(&e.id, frame, e.raw_len as usize).unwrap(), b);
        }
        let mut bad = pack.bytes.clone();
        let n = bad.len();
        bad[n - 20] ^= 1;
        assert!(read_footer(&codec, &bad).is_err());
    }
}

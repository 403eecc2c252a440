//! Blocks and frames: a block's id, and how its bytes are stored.
//!
//! ```text
//! frame = codec u8 | nonce [12] | AES-256-GCM(payload) | tag [16]
//! codec: 0 = raw payload, 1 = zstd payload
//! associated data = BlockId [32] | codec u8
//! key = keyed blake3(data key, BlockId): every block has its own key
//! ```
//! The id and codec in the associated data mean a frame cannot be swapped for another id's.
//! The per-block key keeps AES-GCM's random-nonce bound out of reach however large the vault
//! grows, and lets a frame move between packs without being re-encrypted. Decoding checks
//! the tag, decompresses, and checks that the plaintext hashes to the id.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::crypto::{random_array, subkey, FrameCipher, Key, Keys, NONCE_LEN, TAG_LEN};

/// A block's id: keyed blake3 of its plaintext.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlockId(pub [u8; 32]);

/// Hashes as its first eight bytes: see [`IdHasher`].
impl Hash for BlockId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

/// A hasher for maps keyed by [`BlockId`]: the id's first eight bytes are the hash. Ids are
/// keyed hashes, uniform and unpredictable without the vault key, so they need no mixing and
/// no flood-resistant hasher; SipHash over every lookup was a visible cost of reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    /// Only for keys other than a bare id: folds the bytes in (correct, not fast).
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by block id, hashed with [`IdHasher`].
pub type IdMap<V> = HashMap<BlockId, V, BuildHasherDefault<IdHasher>>;
/// A set of block ids, hashed with [`IdHasher`].
pub type IdSet = HashSet<BlockId, BuildHasherDefault<IdHasher>>;

impl BlockId {
    /// The marker for an all-zero block: stored as a hole, never as data. No real keyed
    /// hash is all zeros (2^-256).
    pub const ZERO: BlockId = BlockId([0; 32]);

    /// The id of `plain` under the vault's id key.
    pub fn of(id_key: &Key, plain: &[u8]) -> BlockId {
        BlockId(*blake3::keyed_hash(&id_key.0, plain).as_bytes())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex()[..16])
    }
}

impl fmt::Debug for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockId({})", &self.to_hex()[..16])
    }
}

const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// Bytes a frame adds to its payload.
pub const FRAME_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Frame decoding failed: the frame is damaged or belongs to another id.
#[derive(Debug, thiserror::Error)]
#[error("frame does not decode")]
pub struct BadFrame;

/// Encodes and decodes frames with one vault's keys.
pub struct BlockCodec {
    keys: Keys,
    cipher: Box<dyn FrameCipher>,
    zstd_level: i32,
    vault_id: [u8; 16],
}

impl fmt::Debug for BlockCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockCodec")
            .field("zstd_level", &self.zstd_level)
            .finish()
    }
}

fn aad(id: &BlockId, codec: u8) -> [u8; 33] {
    let mut out = [0u8; 33];
    out[..32].copy_from_slice(&id.0);
    out[32] = codec;
    out
}

impl BlockCodec {
    /// A codec over `keys` sealing with `cipher`, compressing at `zstd_level`.
    pub fn new(keys: Keys, cipher: Box<dyn FrameCipher>, zstd_level: i32) -> BlockCodec {
        BlockCodec {
            keys,
            cipher,
            zstd_level,
            vault_id: [0; 16],
        }
    }

    /// This codec for the vault `vault_id`: the packs it finishes say so in their footers.
    pub fn for_vault(mut self, vault_id: [u8; 16]) -> BlockCodec {
        self.vault_id = vault_id;
        self
    }

    /// The vault whose packs this codec writes.
    pub fn vault_id(&self) -> &[u8; 16] {
        &self.vault_id
    }

    /// The vault keys this codec uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The cipher, for sealing other messages (pack footers).
    pub fn cipher(&self) -> &dyn FrameCipher {
        self.cipher.as_ref()
    }

    /// The id `plain` would get.
    pub fn id_of(&self, plain: &[u8]) -> BlockId {
        BlockId::of(&self.keys.id, plain)
    }

    /// Compresses (when that is smaller) and seals one block.
    pub fn encode(&self, id: &BlockId, plain: &[u8]) -> Vec<u8> {
        let compressed = compress(plain, self.zstd_level).filter(|c| c.len() < plain.len());
        let (codec, payload) = match &compressed {
            Some(c) => (CODEC_ZSTD, c.as_slice()),
            None => (CODEC_RAW, plain),
        };
        let nonce: [u8; NONCE_LEN] = random_array();
        let mut frame = Vec::with_capacity(FRAME_OVERHEAD + payload.len());
        frame.push(codec);
        frame.extend_from_slice(&nonce);
        frame.extend_from_slice(payload);
        let key = subkey(&self.keys.data, &id.0);
        let tag =
            self.cipher
                .seal_in_place(&key, &nonce, &aad(id, codec), &mut frame[HEADER_LEN..]);
        frame.extend_from_slice(&tag);
        frame
    }

    /// Opens, decompresses and verifies one frame; `raw_len` is the plaintext length.
    pub fn decode(
        &self,
        id: &BlockId,
        mut frame: Vec<u8>,
        raw_len: usize,
    ) -> Result<Vec<u8>, BadFrame> {
        let mut plain = Vec::with_capacity(raw_len);
        self.decode_into(id, &mut frame, raw_len, &mut plain)?;
        Ok(plain)
    }

    /// [`Self::decode`] into `plain` (emptied first; its capacity is used, and must hold
    /// `raw_len`). The frame is decrypted in place and left as scratch: a reader keeps one
    /// frame buffer per thread, which stays in the CPU's cache from block to block.
    pub fn decode_into(
        &self,
        id: &BlockId,
        frame: &mut [u8],
        raw_len: usize,
        plain: &mut Vec<u8>,
    ) -> Result<(), BadFrame> {
        plain.clear();
        let (codec, len) = self.open_frame(id, frame)?;
        let payload = &frame[HEADER_LEN..HEADER_LEN + len];
        match codec {
            CODEC_RAW if payload.len() == raw_len => plain.extend_from_slice(payload),
            CODEC_ZSTD if plain.capacity() >= raw_len => {
                decompress_into(payload, plain).ok_or(BadFrame)?
            }
            _ => return Err(BadFrame),
        }
        if plain.len() != raw_len || self.id_of(plain) != *id {
            return Err(BadFrame);
        }
        Ok(())
    }

    /// [`Self::decode`] straight into `out`, which is exactly the plaintext's length: a reader
    /// that wants a whole block where it is going (a read buffer) skips a copy and the
    /// cache. The frame is decrypted in place and left as scratch. On error `out` holds
    /// garbage.
    pub fn decode_to_slice(
        &self,
        id: &BlockId,
        frame: &mut [u8],
        out: &mut [u8],
    ) -> Result<(), BadFrame> {
        let (codec, len) = self.open_frame(id, frame)?;
        let payload = &frame[HEADER_LEN..HEADER_LEN + len];
        match codec {
            CODEC_RAW if payload.len() == out.len() => out.copy_from_slice(payload),
            CODEC_ZSTD => {
                let written = with_decompressor(|z| z.decompress_to_buffer(payload, out).ok());
                if written != Some(out.len()) {
                    return Err(BadFrame);
                }
            }
            _ => return Err(BadFrame),
        }
        if self.id_of(out) != *id {
            return Err(BadFrame);
        }
        Ok(())
    }

    /// Checks and decrypts a frame in place; returns its codec and payload length.
    fn open_frame(&self, id: &BlockId, frame: &mut [u8]) -> Result<(u8, usize), BadFrame> {
        if frame.len() < FRAME_OVERHEAD {
            return Err(BadFrame);
        }
        let codec = frame[0];
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&frame[1..HEADER_LEN]);
        let key = subkey(&self.keys.data, &id.0);
        let len = self
            .cipher
            .open_in_place(&key, &nonce, &aad(id, codec), &mut frame[HEADER_LEN..])
            .map_err(|_| BadFrame)?;
        Ok((codec, len))
    }
}

// zstd contexts are expensive to create (about 10% of ingest time when made per block), so
// each thread keeps one of each. They are scratch space, not shared state: nothing in them
// outlives a call's result.
thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn compress(plain: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, compressor) = slot.as_mut()?;
        compressor.compress(plain).ok()
    })
}

/// Decompresses a zstd frame of at most `raw_len` bytes with this thread's context.
pub(crate) fn decompress(payload: &[u8], raw_len: usize) -> Option<Vec<u8>> {
    with_decompressor(|z| z.decompress(payload, raw_len).ok())
}

/// Decompresses `payload` into `out`'s capacity (which bounds the output); `out` is emptied
/// first.
pub(crate) fn decompress_into(payload: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    with_decompressor(|z| z.decompress_to_buffer(payload, out).ok().map(drop))
}

fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> Option<T>,
) -> Option<T> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().ok()?);
        }
        f(slot.as_mut()?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::RingCipher;

    fn codec() -> BlockCodec {
        BlockCodec::new(
            Keys::derive(&Key::from_bytes([9; 32])),
            Box::new(RingCipher),
            3,
        )
    }

    #[test]
    fn round_trip_compressible_and_not() {
        let codec = codec();
        let text = b"hello hello hello hello hello hello".repeat(1000);
        let noise: Vec<u8> = (0..50_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for plain in [text, noise, Vec::new()] {
            let id = codec.id_of(&plain);
            let frame = codec.encode(&id, &plain);
            assert!(frame.len() <= plain.len() + FRAME_OVERHEAD);
            assert_eq!(
                codec.decode(&id, frame.clone(), plain.len()).unwrap(),
                plain
            );
            let mut out = vec![7u8; plain.len()];
            codec
                .decode_to_slice(&id, &mut frame.clone(), &mut out)
                .unwrap();
            assert_eq!(out, plain);
            // A destination of the wrong length is refused, not overrun or left short.
            for wrong in [plain.len() + 1, plain.len().saturating_sub(1)] {
                if wrong != plain.len() {
                    let mut out = vec![0u8; wrong];
                    assert!(codec
                        .decode_to_slice(&id, &mut frame.clone(), &mut out)
                        .is_err());
                }
            }
        }
    }

    #[test]
    fn tampered_or_swapped_frames_fail() {
        let codec = codec();
        let a = b"block a".repeat(100);
        let b = b"block b".repeat(100);
        let (ida, idb) = (codec.id_of(&a), codec.id_of(&b));
        let frame = codec.encode(&ida, &a);
        assert!(codec.decode(&idb, frame.clone(), a.len()).is_err());
        let mut bad = frame.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        assert!(codec.decode(&ida, bad.clone(), a.len()).is_err());
        assert!(codec
            .decode_to_slice(&ida, &mut bad, &mut vec![0; a.len()])
            .is_err());
        let _ = b;
    }

    #[test]
    fn ids_are_keyed() {
        let codec = codec();
        assert_ne!(codec.id_of(b"x").0, *blake3::hash(b"x").as_bytes());
    }
}

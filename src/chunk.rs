//! Chunking: where one block ends and the next begins. Pure: bytes in, boundaries out.
//!
//! Files are cut content-defined with FastCDC: a gear rolling hash over the bytes, a mask of
//! the average's bits before the average size and one bit looser after it. The normalization
//! is deliberately mild: with FastCDC's usual ±2 bits, a cut depends so much on where its
//! block started that after an in-place change the cut chain took several blocks to fall back
//! onto the old one (1 MiB overwritten stored more than 8 MiB for about 3% of keys); with
//! these masks it falls back within a block or two (at most 5 MiB in 300 keys tried), and
//! blocks still average about 1.1 MiB.
//! The gear table is derived from the vault's chunker key, so block sizes are no fingerprint
//! of known files. Disk images use fixed-size blocks instead.

use crate::crypto::Key;

/// Smallest content-defined block (except a file's last).
pub const CDC_MIN_BYTES: usize = 256 * 1024;
/// Average content-defined block.
pub const CDC_AVG_BYTES: usize = 1024 * 1024;
/// Largest block of either chunker.
pub const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024;
/// Block size of the fixed chunker.
pub const FIXED_BYTES: usize = 4 * 1024 * 1024;

/// How a vault cuts file data into blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChunkerKind {
    /// Content-defined (FastCDC), for files.
    #[default]
    Cdc,
    /// Fixed 4 MiB blocks, for disk images.
    Fixed,
}

/// A configured chunker.
#[derive(Clone)]
pub struct Chunker {
    kind: ChunkerKind,
    gear: Box<[u64; 256]>,
    mask_small: u64,
    mask_large: u64,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker").field("kind", &self.kind).finish()
    }
}

/// A mask of the `bits` highest bits: the gear hash's high bits depend on the last 64 bytes.
const fn high_bits(bits: u32) -> u64 {
    !(u64::MAX >> bits)
}

impl Chunker {
    /// A chunker whose gear table is derived from `key`.
    pub fn new(kind: ChunkerKind, key: &Key) -> Chunker {
        let mut gear = Box::new([0u64; 256]);
        let mut xof = blake3::Hasher::new_keyed(&key.0)
            .update(b"gear table")
            .finalize_xof();
        let mut bytes = [0u8; 256 * 8];
        xof.fill(&mut bytes);
        for (slot, word) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            *slot = u64::from_le_bytes(w);
        }
        let avg_bits = CDC_AVG_BYTES.trailing_zeros();
        Chunker {
            kind,
            gear,
            mask_small: high_bits(avg_bits),
            mask_large: high_bits(avg_bits - 1),
        }
    }

    /// Which kind of chunker this is.
    pub fn kind(&self) -> ChunkerKind {
        self.kind
    }

    /// The length of the first block of `data`. `data` must hold at least
    /// [`MAX_BLOCK_BYTES`] bytes unless it is the end of the stream.
    pub fn first_cut(&self, data: &[u8]) -> usize {
        match self.kind {
            ChunkerKind::Fixed => data.len().min(FIXED_BYTES),
            ChunkerKind::Cdc => self.cdc_cut(data),
        }
    }

    fn cdc_cut(&self, data: &[u8]) -> usize {
        let len = data.len();
        if len <= CDC_MIN_BYTES {
            return len;
        }
        let end = len.min(MAX_BLOCK_BYTES);
        let normal = end.min(CDC_AVG_BYTES);
        let mut hash = 0u64;
        let mut i = CDC_MIN_BYTES;
        while i < normal {
            hash = (hash << 1).wrapping_add(self.gear[data[i] as usize]);
            if hash & self.mask_small == 0 {
                return i + 1;
            }
            i += 1;
        }
        while i < end {
            hash = (hash << 1).wrapping_add(self.gear[data[i] as usize]);
            if hash & self.mask_large == 0 {
                return i + 1;
            }
            i += 1;
        }
        end
    }

    /// Every block boundary of a complete buffer, as (offset, length) pairs.
    pub fn blocks<'a>(&'a self, data: &'a [u8]) -> impl Iterator<Item = (usize, usize)> + 'a {
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= data.len() {
                return None;
            }
            let len = self.first_cut(&data[pos..]);
            let start = pos;
            pos += len;
            Some((start, len))
        })
    }
}

/// True if every byte is zero; such blocks are stored as a marker, never as data.
pub fn is_zero(data: &[u8]) -> bool {
    let mut words = data.chunks_exact(16);
    words.all(|w| w == [0u8; 16]) && words.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn sizes_stay_in_bounds_and_cover_input() {
        let chunker = Chunker::new(ChunkerKind::Cdc, &Key::from_bytes([7; 32]));
        let data = pseudo_random(40 << 20, 1);
        let blocks: Vec<_> = chunker.blocks(&data).collect();
        let total: usize = blocks.iter().map(|b| b.1).sum();
        assert_eq!(total, data.len());
        for (_, len) in &blocks[..blocks.len() - 1] {
            assert!((CDC_MIN_BYTES..=MAX_BLOCK_BYTES).contains(len), "{len}");
        }
        let avg = data.len() / blocks.len();
        assert!(
            (CDC_AVG_BYTES / 2..CDC_AVG_BYTES * 2).contains(&avg),
            "{avg}"
        );
    }

    #[test]
    fn insertion_moves_only_nearby_boundaries() {
        let chunker = Chunker::new(ChunkerKind::Cdc, &Key::from_bytes([7; 32]));
        let data = pseudo_random(16 << 20, 2);
        let mut shifted = vec![0xAB; 100];
        shifted.extend_from_slice(&data);
        let a: Vec<_> = chunker
            .blocks(&data)
            .map(|(o, l)| &data[o..o + l])
            .collect();
        let b: Vec<_> = chunker
            .blocks(&shifted)
            .map(|(o, l)| &shifted[o..o + l])
            .collect();
        let shared = b.iter().filter(|blk| a.contains(blk)).count();
        assert!(
            b.len() - shared <= 2,
            "{} of {} new",
            b.len() - shared,
            b.len()
        );
    }

    #[test]
    fn key_changes_boundaries() {
        let data = pseudo_random(8 << 20, 3);
        let a: Vec<_> = Chunker::new(ChunkerKind::Cdc, &Key::from_bytes([1; 32]))
            .blocks(&data)
            .collect();
        let b: Vec<_> = Chunker::new(ChunkerKind::Cdc, &Key::from_bytes([2; 32]))
            .blocks(&data)
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn fixed_blocks_and_zero_detection() {
        let chunker = Chunker::new(ChunkerKind::Fixed, &Key::from_bytes([0; 32]));
        let data = vec![0u8; FIXED_BYTES * 2 + 5];
        let blocks: Vec<_> = chunker.blocks(&data).collect();
        assert_eq!(
            blocks,
            vec![
                (0, FIXED_BYTES),
                (FIXED_BYTES, FIXED_BYTES),
                (2 * FIXED_BYTES, 5)
            ]
        );
        assert!(is_zero(&data));
        let mut one = data.clone();
        one[FIXED_BYTES + 3] = 1;
        assert!(!is_zero(&one));
        let mut tail = vec![0u8; 17];
        tail[16] = 1;
        assert!(!is_zero(&tail));
    }
}

//! Block codec benchmarks: the AEAD alone, the write and read pipelines, chunking, pack reads.
//!
//! The AEAD is compared through the `FrameCipher` seam: `RingCipher` (what ships) against
//! [`AesGcmCipher`], a wrapper around the RustCrypto `aes-gcm` crate defined here. Each is
//! measured on 1 MiB blocks of incompressible (seeded random) and compressible (text-like)
//! data:
//!
//! - `seal` / `open`: the AEAD alone over 1 MiB, in place;
//! - `write`: `id_of` + `encode` (keyed blake3, zstd, seal), as ingest does per block;
//! - `read`: `decode` (open, zstd decompress, blake3 verify), as restore does per block.
//!
//! `chunk` times keyed FastCDC over 16 MiB; `pack` reads one block back from a pack held in a
//! `MemBackend`. All inputs are built outside the timed closures, and the measurement is short
//! (`cargo bench --bench codec` takes about two minutes); pass criterion's
//! `--measurement-time` for steadier figures.

use std::hint::black_box;
use std::time::Duration;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use synvault::Chunker;
use synvault::ChunkerKind;
use synvault::{Backend, BlockCodec, BlockId, MemBackend, PackWriter};
use synvault::{FrameCipher, Key, Keys, OpenError, RingCipher, NONCE_LEN, TAG_LEN};

/// One content-defined block on average.
const BLOCK: usize = 1 << 20;
/// The vault's zstd level (`vault::DEFAULT_ZSTD_LEVEL`).
const ZSTD_LEVEL: i32 = 3;
/// Context under which [`AesGcmCipher`] derives its AES key from a `Key`.
const AES_GCM_KEY_CONTEXT: &[u8] = b"synvault bench aes-gcm key v1";

/// AES-256-GCM from the RustCrypto `aes-gcm` crate behind the `FrameCipher` seam.
///
/// `Key`'s bytes are private to the library, so the AES key is derived from the `Key` with
/// the public keyed hash (`BlockId::of(key, context)`, the same construction as
/// `crypto::subkey`): deterministic per `Key`, so frames round-trip, but not the bytes
/// `RingCipher` would use, so frames are not interchangeable between the two. The derivation
/// is one blake3 call over 29 bytes per frame, far below the cost of sealing 1 MiB. Like
/// `RingCipher`, the key schedule is built on every call.
#[derive(Clone, Copy, Debug, Default)]
struct AesGcmCipher;

impl AesGcmCipher {
    fn aead(key: &Key) -> Aes256Gcm {
        Aes256Gcm::new(&BlockId::of(key, AES_GCM_KEY_CONTEXT).0.into())
    }
}

impl FrameCipher for AesGcmCipher {
    fn seal_in_place(
        &self,
        key: &Key,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        // INVARIANT: sealing fails only for inputs over 64 GiB; frames are at most 4 MiB.
        #[allow(clippy::expect_used)]
        let tag = Self::aead(key)
            .encrypt_inout_detached(&(*nonce).into(), aad, buf.into())
            .expect("frame is far below the AES-GCM length limit");
        tag.into()
    }

    fn open_in_place(
        &self,
        key: &Key,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<usize, OpenError> {
        let len = buf.len().checked_sub(TAG_LEN).ok_or(OpenError)?;
        let (data, tag) = buf.split_at_mut(len);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| OpenError)?;
        Self::aead(key)
            .decrypt_inout_detached(&(*nonce).into(), aad, data.into(), &tag.into())
            .map_err(|_| OpenError)?;
        Ok(len)
    }
}

/// Makes a cipher for a codec.
type MakeCipher = fn() -> Box<dyn FrameCipher>;
/// Makes `len` bytes of one kind of data from a seed.
type MakeData = fn(usize, u64) -> Vec<u8>;

/// The two AEADs under comparison, by bench name.
fn ciphers() -> [(&'static str, MakeCipher); 2] {
    [
        ("ring", || Box::new(RingCipher)),
        ("aes-gcm", || Box::new(AesGcmCipher)),
    ]
}

/// Incompressible bytes, the same on every run.
fn seeded_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    SmallRng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// Log-like text that zstd compresses several-fold, the same on every run.
fn text_like(len: usize, seed: u64) -> Vec<u8> {
    const LEVELS: [&str; 4] = ["INFO", "DEBUG", "WARN", "ERROR"];
    const WORDS: [&str; 16] = [
        "fetched", "stored", "chunk", "block", "pack", "index", "retry", "flushed", "client",
        "session", "opened", "closed", "verified", "request", "snapshot", "catalog",
    ];
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(len + 256);
    while out.len() < len {
        let line = format!(
            "2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z {} worker-{:02} {} {} /srv/data/{:04x}/{:08x} {} bytes in {} ms\n",
            rng.random_range(1..29),
            rng.random_range(0..24),
            rng.random_range(0..60),
            rng.random_range(0..60),
            rng.random_range(0..1000),
            LEVELS[rng.random_range(0..LEVELS.len())],
            rng.random_range(0..16),
            WORDS[rng.random_range(0..WORDS.len())],
            WORDS[rng.random_range(0..WORDS.len())],
            rng.random_range(0..0x1_0000u32),
            rng.random::<u32>(),
            rng.random_range(0..4_000_000u32),
            rng.random_range(0..500),
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

/// The two kinds of data, by bench name, each as a generator of `len` bytes from a seed.
const KINDS: [(&str, MakeData); 2] = [("random", seeded_bytes), ("text", text_like)];

/// One 1 MiB block of each kind.
fn blocks() -> [(&'static str, Vec<u8>); 2] {
    KINDS.map(|(kind, make)| (kind, make(BLOCK, 1)))
}

fn keys() -> Keys {
    Keys::derive(&Key::from_bytes([0x5a; 32]))
}

/// Both crates implement the same AES-256-GCM: same key bytes, same ciphertext and tag.
fn check_same_aead() {
    let key_bytes = [0x42u8; 32];
    let nonce = [7u8; NONCE_LEN];
    let plain = text_like(4096, 3);
    let mut by_ring = plain.clone();
    let ring_tag =
        RingCipher.seal_in_place(&Key::from_bytes(key_bytes), &nonce, b"aad", &mut by_ring);
    let mut by_aes_gcm = plain;
    let aes_gcm_tag = Aes256Gcm::new(&key_bytes.into())
        .encrypt_inout_detached(&nonce.into(), b"aad", by_aes_gcm.as_mut_slice().into())
        .map(<[u8; TAG_LEN]>::from);
    assert!(by_ring == by_aes_gcm && aes_gcm_tag.ok() == Some(ring_tag));
}

fn bench_aead(c: &mut Criterion) {
    check_same_aead();
    let key = Key::from_bytes([0x11; 32]);
    let nonce = [3u8; NONCE_LEN];
    let aad = [9u8; 33];
    let mut seal = c.benchmark_group("seal");
    seal.throughput(Throughput::Bytes(BLOCK as u64));
    for (cipher_name, make) in ciphers() {
        let cipher = make();
        for (kind, plain) in blocks() {
            seal.bench_function(BenchmarkId::new(cipher_name, kind), |b| {
                b.iter_batched_ref(
                    || plain.clone(),
                    |buf| cipher.seal_in_place(&key, &nonce, &aad, buf),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    seal.finish();

    let mut open = c.benchmark_group("open");
    open.throughput(Throughput::Bytes(BLOCK as u64));
    for (cipher_name, make) in ciphers() {
        let cipher = make();
        for (kind, plain) in blocks() {
            let mut sealed = plain.clone();
            let tag = cipher.seal_in_place(&key, &nonce, &aad, &mut sealed);
            sealed.extend_from_slice(&tag);
            let mut check = sealed.clone();
            let opened = cipher.open_in_place(&key, &nonce, &aad, &mut check);
            assert!(matches!(opened, Ok(n) if check[..n] == plain[..]));
            open.bench_function(BenchmarkId::new(cipher_name, kind), |b| {
                b.iter_batched_ref(
                    || sealed.clone(),
                    |buf| cipher.open_in_place(&key, &nonce, &aad, buf),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    open.finish();
}

fn bench_pipelines(c: &mut Criterion) {
    let mut write = c.benchmark_group("write");
    write.throughput(Throughput::Bytes(BLOCK as u64));
    for (cipher_name, make) in ciphers() {
        let codec = BlockCodec::new(keys(), make(), ZSTD_LEVEL);
        for (kind, plain) in blocks() {
            write.bench_function(BenchmarkId::new(cipher_name, kind), |b| {
                b.iter(|| {
                    let plain = black_box(&plain);
                    let id = codec.id_of(plain);
                    codec.encode(&id, plain)
                })
            });
        }
    }
    write.finish();

    let mut read = c.benchmark_group("read");
    read.throughput(Throughput::Bytes(BLOCK as u64));
    for (cipher_name, make) in ciphers() {
        let codec = BlockCodec::new(keys(), make(), ZSTD_LEVEL);
        for (kind, plain) in blocks() {
            let id = codec.id_of(&plain);
            let frame = codec.encode(&id, &plain);
            eprintln!(
                "{cipher_name}/{kind}: 1 MiB block -> {} byte frame",
                frame.len()
            );
            assert!(matches!(codec.decode(&id, frame.clone(), BLOCK), Ok(p) if p == plain));
            read.bench_function(BenchmarkId::new(cipher_name, kind), |b| {
                b.iter_batched(
                    || frame.clone(),
                    |frame| codec.decode(&id, frame, BLOCK),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    read.finish();
}

fn bench_chunk(c: &mut Criterion) {
    let data = seeded_bytes(16 << 20, 4);
    let chunker = Chunker::new(ChunkerKind::Cdc, &keys().chunker);
    let mut group = c.benchmark_group("chunk");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("cdc_16MiB", |b| {
        b.iter(|| chunker.blocks(black_box(&data)).count())
    });
    group.finish();
}

/// One 1 MiB block read back from a pack of eight in a `MemBackend`: range read + decode.
fn bench_pack(c: &mut Criterion) {
    let codec = BlockCodec::new(keys(), Box::new(RingCipher), ZSTD_LEVEL);
    let mut group = c.benchmark_group("pack");
    group.throughput(Throughput::Bytes(BLOCK as u64));
    for (kind, make) in KINDS {
        let mut writer = PackWriter::new(8 * BLOCK);
        for seed in 10..18 {
            let plain = make(BLOCK, seed);
            let id = codec.id_of(&plain);
            writer.add(id, &codec.encode(&id, &plain), plain.len());
        }
        let pack = writer.finish(&codec);
        let backend = MemBackend::default();
        assert!(backend.put(&pack.id, &pack.bytes).is_ok());
        let entry = pack.entries[pack.entries.len() / 2];
        let read = || {
            let mut frame = vec![0; entry.stored_len as usize];
            backend
                .read_into(&pack.id, entry.offset, &mut frame)
                .ok()
                .and_then(|()| codec.decode(&entry.id, frame, entry.raw_len as usize).ok())
        };
        assert!(matches!(read(), Some(p) if p == make(BLOCK, 14)));
        group.bench_function(BenchmarkId::new("read_block_ring", kind), |b| b.iter(read));
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_aead, bench_pipelines, bench_chunk, bench_pack
}
criterion_main!(benches);

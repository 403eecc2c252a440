//! Reassembly benchmarks through `PointReader`, in bytes per second.
//!
//! A vault is built once in a temporary directory (outside every timed closure): one 64 MiB
//! file, half random and half text-like, and 2,000 small files of 1–32 KiB. Then:
//!
//! - `sequential_64MiB`: the large file read front to back in 1 MiB reads with read-ahead,
//!   cache emptied before each pass, so every block is read, opened, decompressed and verified;
//! - `random_4KiB`: 4 KiB reads at random offsets of the large file with the blocks cached (the
//!   steady state of random access: binary search, cache lookup, copy);
//! - `random_4KiB_cold`: the same with an empty cache before each batch of 64 reads, so most
//!   reads decode the block they land in;
//! - `small_files`: every small file read whole, cache emptied before each pass.
//!
//! `cargo bench --bench reassembly` takes about a minute.

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use synvault::KdfParams;
use synvault::{
    backup, BackupOptions, BlockReader, CreateOptions, Entry, NoProgress, PointReader,
    ReaderOptions, Vault,
};

const MIB: usize = 1 << 20;
const SMALL_FILES: usize = 2000;

/// Random bytes, then text that zstd compresses several-fold, the same on every run.
fn file_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = vec![0u8; len / 2];
    rng.fill_bytes(&mut out);
    while out.len() < len {
        let line = format!(
            "2026-11-{:02} worker-{:02} stored block {:08x} in {} ms\n",
            rng.random_range(1..29),
            rng.random_range(0..16),
            rng.random::<u32>(),
            rng.random_range(0..500)
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

/// Builds the source tree and backs it up into a new vault.
fn build(dir: &Path) -> Arc<Vault> {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("small")).unwrap_or_else(|e| panic!("mkdir: {e}"));
    std::fs::write(src.join("large.bin"), file_bytes(64 * MIB, 1))
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut rng = SmallRng::seed_from_u64(2);
    for i in 0..SMALL_FILES {
        let len = rng.random_range(1024..=32 * 1024);
        std::fs::write(
            src.join("small").join(format!("f{i:05}")),
            file_bytes(len, i as u64),
        )
        .unwrap_or_else(|e| panic!("write: {e}"));
    }
    let options = CreateOptions {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    };
    let vault = Vault::create(&dir.join("vault"), b"bench", options)
        .unwrap_or_else(|e| panic!("create vault: {e}"));
    let backup_options = BackupOptions {
        paths: vec![src],
        ..BackupOptions::default()
    };
    backup(
        &vault,
        &backup_options,
        &NoProgress,
        &AtomicBool::new(false),
    )
    .unwrap_or_else(|e| panic!("backup: {e}"));
    Arc::new(vault)
}

fn entries_under(reader: &PointReader<'_>, path: &str) -> Vec<Entry> {
    let dir = reader
        .lookup(path.as_bytes())
        .unwrap_or_else(|e| panic!("lookup: {e}"));
    let tree = dir
        .subtree
        .unwrap_or_else(|| panic!("{path} is not a directory"));
    reader.list(&tree).unwrap_or_else(|e| panic!("list: {e}"))
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let vault = build(dir.path());
    let blocks = Arc::new(
        BlockReader::with_options(vault.clone(), ReaderOptions::default())
            .unwrap_or_else(|e| panic!("reader: {e}")),
    );
    let point = vault
        .resolve_point("latest")
        .unwrap_or_else(|e| panic!("point: {e}"));
    let reader = PointReader::new(&vault, point, blocks.clone());
    let large = reader
        .lookup(b"large.bin")
        .unwrap_or_else(|e| panic!("lookup: {e}"));
    let small = entries_under(&reader, "small");
    let small_bytes: u64 = small.iter().map(|e| e.size).sum();
    let mut buf = vec![0u8; MIB];

    let mut group = c.benchmark_group("reassembly");
    group.throughput(Throughput::Bytes(large.size));
    group.bench_function("sequential_64MiB", |b| {
        b.iter_batched(
            || blocks.clear_cache(),
            |()| {
                let file = reader.open(&large).unwrap_or_else(|e| panic!("open: {e}"));
                let mut offset = 0;
                loop {
                    let n = file
                        .read_at(offset, &mut buf)
                        .unwrap_or_else(|e| panic!("read: {e}"));
                    if n == 0 {
                        break;
                    }
                    offset += n as u64;
                }
                black_box(offset)
            },
            BatchSize::PerIteration,
        )
    });

    let map = reader
        .block_map(&large)
        .unwrap_or_else(|e| panic!("map: {e}"));
    let mut rng = SmallRng::seed_from_u64(3);
    let mut small_buf = [0u8; 4096];
    group.throughput(Throughput::Bytes(4096));
    group.bench_function("random_4KiB", |b| {
        b.iter(|| {
            let offset = rng.random_range(0..large.size - 4096);
            reader
                .read_at(&map, offset, &mut small_buf)
                .unwrap_or_else(|e| panic!("read: {e}"))
        })
    });
    group.throughput(Throughput::Bytes(64 * 4096));
    group.bench_function("random_4KiB_cold", |b| {
        b.iter_batched(
            || blocks.clear_cache(),
            |()| {
                for _ in 0..64 {
                    let offset = rng.random_range(0..large.size - 4096);
                    reader
                        .read_at(&map, offset, &mut small_buf)
                        .unwrap_or_else(|e| panic!("read: {e}"));
                }
            },
            BatchSize::PerIteration,
        )
    });

    group.throughput(Throughput::Bytes(small_bytes));
    group.bench_function("small_files", |b| {
        b.iter_batched(
            || blocks.clear_cache(),
            |()| {
                let mut total = 0;
                for entry in &small {
                    let file = reader.open(entry).unwrap_or_else(|e| panic!("open: {e}"));
                    total += file
                        .read_at(0, &mut buf)
                        .unwrap_or_else(|e| panic!("read: {e}"));
                }
                black_box(total)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);

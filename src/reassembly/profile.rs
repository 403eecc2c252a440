//! `synvault bench reassembly`: read every file of a point through the engine and say where
//! the time went, against the pipeline limit of this machine.
//!
//! The engine pass reads each file with a [`FileReader`] (sequential read-ahead on), files in
//! parallel, into memory only: no disk writes. The limit pass takes the same blocks, reads
//! their frames, and times decrypt, decompress and verify separately on one thread; the
//! pipeline limit is the resulting per-core rate times the number of cores.
//!
//! To time the three decode stages apart, [`decode_stages`] opens frames itself, following
//! the frame layout drawn in `store::block` (version 1). A unit test checks it against
//! `BlockCodec::decode`, so a format change fails a test instead of skewing a benchmark.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::buffers::PoolStats;
use super::{BlockMap, BlockReader, CacheStats, ReadTimes, ReaderOptions};
use crate::catalog::{Entry, EntryKind, RecoveryPoint, TreeId};
use crate::crypto::{subkey, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::store::block::BadFrame;
use crate::store::{BlockCodec, BlockId};
use crate::vault::Vault;

/// `store::block`'s codec byte for a raw payload (frame layout v1).
const CODEC_RAW: u8 = 0;
/// `store::block`'s codec byte for a zstd payload (frame layout v1).
const CODEC_ZSTD: u8 = 1;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// Nanoseconds spent in each decode stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StageTimes {
    pub decrypt_ns: u64,
    pub decompress_ns: u64,
    pub verify_ns: u64,
}

impl StageTimes {
    fn add(&mut self, other: &StageTimes) {
        self.decrypt_ns += other.decrypt_ns;
        self.decompress_ns += other.decompress_ns;
        self.verify_ns += other.verify_ns;
    }

    /// All three stages.
    pub fn total_ns(&self) -> u64 {
        self.decrypt_ns + self.decompress_ns + self.verify_ns
    }
}

/// Decodes one frame like `BlockCodec::decode`, timing each stage. `zstd` is reused across
/// calls, as the codec reuses one per thread (making a context costs more than decoding a
/// small block).
pub fn decode_stages(
    codec: &BlockCodec,
    zstd: &mut zstd::bulk::Decompressor<'_>,
    id: &BlockId,
    mut frame: Vec<u8>,
    raw_len: usize,
) -> Result<(Vec<u8>, StageTimes), BadFrame> {
    if frame.len() < HEADER_LEN + TAG_LEN {
        return Err(BadFrame);
    }
    let mut times = StageTimes::default();
    let t = Instant::now();
    let kind = frame[0];
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&frame[1..HEADER_LEN]);
    let mut aad = [0u8; 33];
    aad[..32].copy_from_slice(&id.0);
    aad[32] = kind;
    let key = subkey(&codec.keys().data, &id.0);
    let len = codec
        .cipher()
        .open_in_place(&key, &nonce, &aad, &mut frame[HEADER_LEN..])
        .map_err(|_| BadFrame)?;
    times.decrypt_ns = t.elapsed().as_nanos() as u64;
    let t = Instant::now();
    let plain = match kind {
        CODEC_RAW => frame[HEADER_LEN..HEADER_LEN + len].to_vec(),
        CODEC_ZSTD => zstd
            .decompress(&frame[HEADER_LEN..HEADER_LEN + len], raw_len)
            .map_err(|_| BadFrame)?,
        _ => return Err(BadFrame),
    };
    times.decompress_ns = t.elapsed().as_nanos() as u64;
    let t = Instant::now();
    let ok = plain.len() == raw_len && codec.id_of(&plain) == *id;
    times.verify_ns = t.elapsed().as_nanos() as u64;
    if !ok {
        return Err(BadFrame);
    }
    Ok((plain, times))
}

/// What `bench reassembly` found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub point: String,
    pub files: u64,
    /// Logical bytes read (holes included).
    pub bytes: u64,
    pub secs: f64,
    /// CPU time of the whole process during the pass (every thread, user and system).
    pub cpu_secs: f64,
    pub mb_per_s: f64,
    /// Blocks decoded per second (cache misses).
    pub blocks_per_s: f64,
    pub cache: CacheStats,
    pub hit_rate: f64,
    /// How often loads found a spare buffer instead of allocating one.
    pub buffers: PoolStats,
    /// The engine's own time split, summed over threads.
    pub engine: ReadTimes,
    /// Decode stages measured on one thread over `limit_bytes` of the same blocks.
    pub stages: StageTimes,
    pub limit_bytes: u64,
    /// Time of reading those frames from packs on one thread.
    pub limit_read_ns: u64,
    pub cores: usize,
    /// decrypt + decompress + verify per core, times the cores, MB/s.
    pub pipeline_limit_mb_per_s: f64,
    /// `mb_per_s` over `pipeline_limit_mb_per_s`.
    pub fraction_of_limit: f64,
}

/// How to run the bench.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    pub reader: ReaderOptions,
    /// Threads reading files in parallel.
    pub threads: usize,
    /// About this many plaintext bytes of blocks, spread evenly over the point, measure the
    /// pipeline limit (0: every block).
    pub limit_sample_bytes: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        let reader = ReaderOptions::default();
        BenchOptions {
            threads: reader.readahead_threads.max(1),
            reader,
            limit_sample_bytes: 512 << 20,
        }
    }
}

/// The block maps of every regular file below `tree`, in listing order.
fn collect_files(reader: &BlockReader<'_>, tree: TreeId) -> Result<Vec<BlockMap>> {
    let vault = reader.vault();
    let mut out = Vec::new();
    vault.walk_tree(
        tree,
        &mut Vec::new(),
        true,
        &mut |_: &[u8], entry: &Entry| {
            match (entry.kind, entry.content) {
                (EntryKind::File, Some(content)) => {
                    out.push(BlockMap::new(&vault.read_catalog()?.content(&content)?));
                }
                (EntryKind::File, None) => out.push(BlockMap::empty()),
                _ => {}
            }
            Ok::<_, Error>(())
        },
    )?;
    Ok(out)
}

/// Reads every file of `point` through the engine, then measures the pipeline limit.
pub fn bench_point(
    vault: Arc<Vault>,
    point: RecoveryPoint,
    options: BenchOptions,
) -> Result<BenchReport> {
    let reader = BlockReader::with_options(vault.clone(), options.reader)?;
    let files = collect_files(&reader, point.root_tree)?;
    let cpu_before = process_cpu_secs();
    let started = Instant::now();
    let bytes = read_all(&reader, &files, options.threads.max(1))?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let cpu_secs = process_cpu_secs() - cpu_before;
    let engine = reader.read_times();
    let cache = reader.cache_stats();
    let (stages, limit_bytes, limit_read_ns) =
        measure_stages(&reader, &files, options.limit_sample_bytes)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_core = limit_bytes as f64 / (stages.total_ns().max(1) as f64 / 1e9);
    let limit = per_core * cores as f64 / 1e6;
    let mb_per_s = bytes as f64 / 1e6 / secs;
    Ok(BenchReport {
        point: point.id.0.clone(),
        files: files.len() as u64,
        bytes,
        secs,
        cpu_secs,
        mb_per_s,
        blocks_per_s: engine.blocks as f64 / secs,
        hit_rate: cache.hit_rate(),
        buffers: reader.buffer_stats(),
        cache,
        engine,
        stages,
        limit_bytes,
        limit_read_ns,
        cores,
        pipeline_limit_mb_per_s: limit,
        fraction_of_limit: if limit > 0.0 { mb_per_s / limit } else { 0.0 },
    })
}

fn process_cpu_secs() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Files a reading thread takes at a time.
const FILES_PER_TAKE: usize = 16;

/// Reads every file on `threads` threads, which take the next few files in tree order from a
/// shared cursor (as a restore walks a tree). Splitting the list into halves instead would
/// have the threads walk identical subtrees in step, one waiting on every block the other
/// is decoding. Returns the bytes read.
fn read_all(reader: &BlockReader<'_>, files: &[BlockMap], threads: usize) -> Result<u64> {
    let cursor = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let read_some = || -> Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let start = cursor.fetch_add(FILES_PER_TAKE, Ordering::Relaxed);
            let Some(take) = files.get(start..files.len().min(start + FILES_PER_TAKE)) else {
                return Ok(());
            };
            // As restore does: where the taken files' blocks are, in one catalog query.
            let ids: Vec<BlockId> = take
                .iter()
                .flat_map(|map| map.blocks.iter().map(|&(_, id, _)| id))
                .collect();
            reader.expect(&ids);
            for map in take {
                bytes.fetch_add(read_file(reader, map, &mut buf)?, Ordering::Relaxed);
            }
        }
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("synvault-bench-{i}"))
                    .spawn_scoped(scope, read_some)
                    .map_err(|e| Error::InvalidArgument(format!("cannot start bench threads: {e}")))
            })
            .collect::<Result<_>>()?;
        workers.into_iter().try_for_each(|w| {
            w.join().unwrap_or_else(|_| {
                Err(Error::Internal {
                    what: "a bench thread panicked".into(),
                })
            })
        })
    })?;
    Ok(bytes.into_inner())
}

/// Reads one file into `buf` (reused across files: the copy out is part of a read, a fresh
/// buffer per file is not).
fn read_file(reader: &BlockReader<'_>, map: &BlockMap, buf: &mut [u8]) -> Result<u64> {
    let file = super::FileReader {
        blocks: reader,
        map: Arc::new(map.clone()),
        sequential: super::Sequential::default(),
    };
    let mut offset = 0;
    loop {
        let n = file.read_at(offset, buf)?;
        if n == 0 {
            return Ok(offset);
        }
        offset += n as u64;
    }
}

/// Times decrypt, decompress and verify over distinct blocks of `files`, on this thread.
fn measure_stages(
    reader: &BlockReader<'_>,
    files: &[BlockMap],
    sample_bytes: u64,
) -> Result<(StageTimes, u64, u64)> {
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<(BlockId, u32)> = files
        .iter()
        .flat_map(|m| m.blocks.iter())
        .filter(|(_, id, _)| *id != BlockId::ZERO && seen.insert(*id))
        .map(|&(_, id, len)| (id, len))
        .collect();
    // Every n-th block, so the sample has the point's mix of data, not its first files'.
    let total: u64 = distinct.iter().map(|(_, len)| u64::from(*len)).sum();
    let stride = if sample_bytes == 0 {
        1
    } else {
        usize::try_from(total / sample_bytes.max(1)).map_or(1, |n| n.max(1))
    };
    let mut times = StageTimes::default();
    let (mut bytes, mut read_ns) = (0u64, 0u64);
    let mut zstd = zstd::bulk::Decompressor::new()
        .map_err(|e| Error::InvalidArgument(format!("cannot make a zstd context: {e}")))?;
    for &(id, _) in distinct.iter().step_by(stride) {
        let Some((loc, _)) = reader.locate(&id) else {
            continue;
        };
        let t = Instant::now();
        let frame = reader.read_frame(&loc)?;
        read_ns += t.elapsed().as_nanos() as u64;
        let (_, stage) = decode_stages(
            reader.vault().codec(),
            &mut zstd,
            &id,
            frame,
            loc.raw_len as usize,
        )
        .map_err(|_| crate::store::StoreError::CorruptFrame {
            block: id,
            pack: loc.pack,
            offset: loc.offset,
        })?;
        times.add(&stage);
        bytes += u64::from(loc.raw_len);
    }
    Ok((times, bytes, read_ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Key, Keys, RingCipher};

    #[test]
    fn stage_decode_agrees_with_the_codec() {
        let codec = BlockCodec::new(
            Keys::derive(&Key::from_bytes([5; 32])),
            Box::new(RingCipher),
            3,
        );
        let text = b"compressible text ".repeat(5000);
        let noise: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        let mut zstd = zstd::bulk::Decompressor::new().unwrap();
        for plain in [text, noise] {
            let id = codec.id_of(&plain);
            let frame = codec.encode(&id, &plain);
            let (out, _) =
                decode_stages(&codec, &mut zstd, &id, frame.clone(), plain.len()).unwrap();
            assert_eq!(out, plain);
            assert_eq!(
                codec.decode(&id, frame.clone(), plain.len()).unwrap(),
                plain
            );
            let mut bad = frame;
            let mid = bad.len() / 2;
            bad[mid] ^= 1;
            assert!(decode_stages(&codec, &mut zstd, &id, bad, plain.len()).is_err());
        }
    }
}

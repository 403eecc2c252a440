//! `synvault bench reassembly`: how fast this machine reassembles a point, and why.

use std::sync::Arc;

use clap::{Args, Subcommand};
use synvault::reassembly::profile::{bench_point, BenchOptions, BenchReport};
use synvault::ReaderOptions;

use super::filters::FilterArgs;
use super::output::{bytes, json};
use super::{size, Cli};

#[derive(Debug, Args)]
#[command(after_help = "Example:
  synvault bench reassembly latest --cache-size 1G")]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Debug, Subcommand)]
enum BenchWhat {
    /// Read every file of a point through the engine (no FUSE, no disk writes).
    #[command(after_help = "Examples:
  synvault bench reassembly
  synvault bench reassembly latest~1 --threads 4 --json")]
    Reassembly(ReassemblyArgs),
}

#[derive(Debug, Args)]
struct ReassemblyArgs {
    /// `latest`, `latest~N` or an id prefix.
    #[arg(default_value = "latest")]
    point: String,
    #[command(flatten)]
    filters: FilterArgs,
    /// Size of the decoded-block cache (e.g. 256M, 1G).
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    cache_size: String,
    /// Threads reading files (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &BenchArgs) -> anyhow::Result<u8> {
    let BenchWhat::Reassembly(args) = &args.what;
    let cache_bytes = size::cache_size(&args.cache_size)?;
    let vault = Arc::new(cli.open_vault()?);
    let point = vault.select_point(&args.point, &args.filters.filter())?;
    synvault::select::readable(&point)?;
    let mut options = BenchOptions {
        reader: ReaderOptions {
            cache_bytes,
            ..ReaderOptions::default()
        },
        ..BenchOptions::default()
    };
    if let Some(threads) = args.threads {
        options.threads = size::threads("--threads", threads)?;
    }
    let report = bench_point(vault, point, options)?;
    if args.json {
        json(&report)?;
    } else {
        print_report(&report)?;
    }
    Ok(synvault::exit::SUCCESS)
}

fn pct(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

fn print_report(r: &BenchReport) -> anyhow::Result<()> {
    outln!("point             {}", r.point);
    outln!("files             {}", r.files);
    outln!("read              {} in {:.2} s", bytes(r.bytes), r.secs);
    outln!("throughput        {:.0} MB/s", r.mb_per_s);
    outln!(
        "cpu               {:.2} s ({:.2} of {} cores busy)",
        r.cpu_secs,
        r.cpu_secs / r.secs,
        r.cores
    );
    outln!(
        "blocks decoded    {} ({:.0} blocks/s), in {} pack reads",
        r.engine.blocks,
        r.blocks_per_s,
        r.engine.reads
    );
    outln!(
        "cache             {:.1}% hits ({} hits, {} misses)",
        100.0 * r.hit_rate,
        r.cache.hits,
        r.cache.misses
    );
    let b = &r.buffers;
    outln!(
        "buffers           {:.1}% reused ({} reused, {} allocated)",
        pct(b.reused, b.reused + b.allocated),
        b.reused,
        b.allocated
    );
    // The engine times decode as one step; the stage pass splits it in its own proportions.
    let e = &r.engine;
    let stages = r.stages.total_ns().max(1) as f64;
    let part = |ns: u64| (e.decode_ns as f64 * ns as f64 / stages) as u64;
    let (decrypt, decompress, verify) = (
        part(r.stages.decrypt_ns),
        part(r.stages.decompress_ns),
        part(r.stages.verify_ns),
    );
    let total = e.locate_ns + e.read_ns + e.decode_ns;
    outln!(
        "time split        locate {:.1}%, read {:.1}%, decrypt {:.1}%, decompress {:.1}%, verify {:.1}%",
        pct(e.locate_ns, total),
        pct(e.read_ns, total),
        pct(decrypt, total),
        pct(decompress, total),
        pct(verify, total)
    );
    let mbps = |ns: u64| r.limit_bytes as f64 / 1e6 / (ns.max(1) as f64 / 1e9);
    outln!(
        "per core          decrypt {:.0} MB/s, decompress {:.0} MB/s, verify {:.0} MB/s, pack read {:.0} MB/s (over {})",
        mbps(r.stages.decrypt_ns),
        mbps(r.stages.decompress_ns),
        mbps(r.stages.verify_ns),
        mbps(r.limit_read_ns),
        bytes(r.limit_bytes)
    );
    outln!(
        "pipeline limit    {:.0} MB/s (decrypt + decompress + verify per core x {} cores)",
        r.pipeline_limit_mb_per_s,
        r.cores
    );
    outln!("engine / limit    {:.0}%", 100.0 * r.fraction_of_limit);
    Ok(())
}

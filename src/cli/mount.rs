//! `synvault mount`: serve a point, or the whole vault by time, as a read-only file system.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use synvault::exit;
use synvault::mount::{self, MountError, MountOptions};
use synvault::{BlockReader, Layout, ReaderOptions, View};

use super::filters::FilterArgs;
use super::{interrupt_flag, size, Cli};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault mount /mnt/vault
  synvault mount --point latest --source /home/me/Documents /mnt/docs
  fusermount -u /mnt/vault")]
pub struct MountArgs {
    /// An empty directory to mount on.
    mountpoint: PathBuf,
    /// Mount this point (`latest`, `latest~N` or an id prefix) as the root; without it, the
    /// whole vault: latest, points/<UTC time>/, sources/<source>/<UTC time>/.
    #[arg(long, value_name = "POINT")]
    point: Option<String>,
    /// With --point: the filters that choose it.
    #[command(flatten)]
    filters: FilterArgs,
    /// Let other users see the files (needs user_allow_other in /etc/fuse.conf unless root).
    #[arg(long)]
    allow_other: bool,
    /// Size of the decoded-block cache (e.g. 256M, 1G).
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    cache_size: String,
    /// Threads serving kernel requests (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Entries the kernel may keep looked up (about 0.5 KiB of the mount's memory each);
    /// beyond them the mount asks the kernel to drop the oldest, so listing millions of
    /// entries stays within memory.
    #[arg(long, value_name = "N", default_value_t = synvault::mount::DEFAULT_MAX_NODES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_nodes: usize,
}

/// The exit code of a mount that could not start.
pub fn exit_code(e: &MountError) -> u8 {
    match e {
        MountError::MissingMountPoint { .. } => exit::MOUNT_POINT_MISSING,
        MountError::NotADirectory { .. } => exit::MOUNT_POINT_NOT_DIR,
        MountError::NotEmpty { .. } => exit::MOUNT_POINT_NOT_EMPTY,
        MountError::AlreadyMounted { .. } => exit::ALREADY_MOUNTED,
        MountError::NoFuse { .. } => exit::NO_FUSE,
        MountError::Mount { .. } => exit::FATAL,
    }
}

/// Two glibc malloc settings keep the mount's memory near its cache size:
/// - one arena: glibc gives each busy thread its own, and memory freed into one arena is not
///   reused by another; with blocks decoded on several threads and evicted by others, the
///   arenas together held up to twice the cache (measured: 490 MB peak RSS for a 256 MiB
///   cache, 272 MB with one arena, which was also faster);
/// - a fixed mmap threshold (256 KiB, glibc's starting value): otherwise glibc raises it
///   after the first large free, block buffers come from the heap, and the heap fragments
///   as blocks of many sizes come and go (8 GiB read from a 137,000-file vault: peak RSS
///   357 MiB, 303 MiB with the fixed threshold, for about 10% of sequential speed).
///
/// glibc reads these only at start, so the mount re-executes itself once with them set,
/// before anything else happens. If that fails, the mount simply runs as it is.
fn exec_with_malloc_settings() {
    const SETTINGS: [(&str, &str); 2] = [
        ("MALLOC_ARENA_MAX", "1"),
        ("MALLOC_MMAP_THRESHOLD_", "262144"),
    ];
    // A setting already in the environment (ours after the re-exec, or the user's) stays.
    let missing: Vec<_> = SETTINGS
        .into_iter()
        .filter(|(var, _)| std::env::var_os(var).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(missing)
        .exec();
    eprintln!(
        "synvault: note: cannot re-execute with malloc settings ({err}); memory may exceed the cache bound"
    );
}

pub fn run(cli: &Cli, args: &MountArgs) -> anyhow::Result<u8> {
    exec_with_malloc_settings();
    // The mount point and FUSE first: those mistakes need no passphrase to report.
    mount::check_mount_point(&args.mountpoint)?;
    mount::check_fuse()?;
    let cache_bytes = size::cache_size(&args.cache_size)?;
    let threads = args
        .threads
        .map(|n| size::threads("--threads", n))
        .transpose()?;
    let vault = Arc::new(cli.open_vault()?);
    let layout = match &args.point {
        None => Layout::Vault,
        Some(query) => {
            let point = vault.select_point(query, &args.filters.filter())?;
            synvault::select::readable(&point)?;
            Layout::Point(Box::new(point))
        }
    };
    let options = ReaderOptions {
        cache_bytes,
        readahead_spares_a_cpu: true,
        ..ReaderOptions::default()
    };
    let blocks = Arc::new(BlockReader::with_options(vault, options)?);
    let view = View::new(blocks, layout).with_damage_hook(Box::new(|err| {
        let mut line = err.to_string();
        let mut cause = std::error::Error::source(err);
        while let Some(c) = cause {
            line.push_str(&format!(": {c}"));
            cause = c.source();
        }
        eprintln!("synvault: warning: {line}");
    }));
    let stop = interrupt_flag();
    let mountpoint = args.mountpoint.clone();
    let console = cli.console(false);
    let defaults = MountOptions::default();
    mount::mount(
        view,
        &args.mountpoint,
        &MountOptions {
            allow_other: args.allow_other,
            threads: threads.unwrap_or(defaults.threads),
            max_nodes: args.max_nodes,
            ..defaults
        },
        &stop,
        || {
            console.note(&format!(
                "synvault: mounted at {} (read-only); Ctrl-C or umount to stop",
                mountpoint.display()
            ));
        },
    )?;
    Ok(synvault::exit::SUCCESS)
}

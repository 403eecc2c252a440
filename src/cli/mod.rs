//! Command line: clap types, passphrase and vault resolution, and one module per subcommand.
//! Only translation lives here: arguments in, a library call, output out.

/// `println!` that returns a [`output::StdoutError`] through `?` instead of panicking when
/// standard output is closed or full.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_line(format_args!($($arg)*))?
    };
}

mod backup;
mod bench;
mod browse;
mod catalog;
mod console;
mod diff;
mod dump;
mod filters;
mod find;
mod generate;
mod init;
mod key;
mod log;
pub(crate) mod mount;
pub(crate) mod output;
mod passphrase;
mod restore;
mod retention;
mod seed;
mod size;
mod tag;
mod verify;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Arg, ArgAction, Parser, Subcommand};
use synvault::location::{Location, RemoteOptions};
use synvault::place::Place;
use synvault::{exit, Error, Vault};

use console::{Console, Verbosity};

/// The heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// Backup vault and restore engine: encrypted, deduplicated, every point a synthetic full.
#[derive(Debug, Parser)]
#[command(
    name = "synvault",
    version,
    about,
    // `--help` prints the short help too, so every command's fits one screen; the long texts
    // (exclude rules, retention rules) are in the man pages. Short help lines are kept short
    // enough to stand beside their flags in 100 columns.
    disable_help_flag = true,
    arg = help_flag(),
    max_term_width = 100,
    after_help = "Examples:
  synvault --vault /srv/vault init
  synvault backup ~/Documents --tag daily
  synvault restore latest --target /tmp/restored

Passphrase: --password-file or --password-command, else $SYNVAULT_PASSWORD, else a prompt.
$SYNVAULT_VAULT and $SYNVAULT_PASSWORD_FILE/_COMMAND stand for their flags. See `synvault man`."
)]
pub struct Cli {
    /// Vault: a directory, s3://bucket/prefix or azure://container/prefix.
    ///
    /// Default: $SYNVAULT_VAULT. A vault in object storage takes its credentials and region
    /// from the service's usual environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION; AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY, …) and keeps its
    /// catalog on this machine (see --catalog).
    #[arg(
        long,
        global = true,
        env = "SYNVAULT_VAULT",
        hide_env = true,
        value_name = "DIR|URL",
        help_heading = GLOBAL
    )]
    vault: Option<PathBuf>,
    /// URL of an S3-compatible service or an emulator.
    ///
    /// Default: $SYNVAULT_ENDPOINT, else what the service's environment says
    /// (AWS_ENDPOINT_URL, …).
    #[arg(
        long,
        global = true,
        env = "SYNVAULT_ENDPOINT",
        hide_env = true,
        value_name = "URL",
        help_heading = GLOBAL
    )]
    endpoint: Option<String>,
    /// Where this machine keeps the catalog of a vault in object storage.
    ///
    /// Default: $SYNVAULT_CATALOG, else $XDG_STATE_HOME/synvault/<vault id> (or
    /// ~/.local/state/synvault/<vault id>). `catalog rebuild` fills it from the bucket.
    #[arg(
        long,
        global = true,
        env = "SYNVAULT_CATALOG",
        hide_env = true,
        value_name = "DIR",
        hide_short_help = true,
        help_heading = GLOBAL
    )]
    catalog: Option<PathBuf>,
    /// Requests to object storage in flight at once: packs a backup uploads, packs a restore
    /// fetches ahead.
    #[arg(
        long,
        global = true,
        value_name = "N",
        default_value_t = 4,
        hide_short_help = true,
        help_heading = GLOBAL
    )]
    uploads: usize,
    /// Retry a failed object-storage request for up to SECONDS, then fail (exit 19).
    ///
    /// Throttling, server errors and dropped connections are retried with exponential
    /// back-off.
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        default_value_t = 180,
        hide_short_help = true,
        help_heading = GLOBAL
    )]
    retry_timeout: u64,
    /// Keep packs read from object storage in DIR.
    ///
    /// Default: `pack-cache` in the catalog's directory (see --catalog).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        hide_short_help = true,
        help_heading = GLOBAL
    )]
    cache_dir: Option<PathBuf>,
    /// Keep at most SIZE of packs read from object storage on this machine (0: none).
    ///
    /// Each pack a restore, cat or mount reads is fetched whole, once, and read locally from
    /// then on; the least recently used go first.
    #[arg(
        long,
        global = true,
        value_name = "SIZE",
        default_value = "2G",
        hide_short_help = true,
        help_heading = GLOBAL
    )]
    disk_cache: String,
    /// Read the passphrase from FILE (its first line).
    ///
    /// Default: $SYNVAULT_PASSWORD_FILE. The passphrase comes from the first source given:
    /// --password-file or --password-command (not both), then $SYNVAULT_PASSWORD, then a
    /// prompt on a terminal.
    #[arg(
        long,
        global = true,
        env = "SYNVAULT_PASSWORD_FILE",
        hide_env = true,
        value_name = "FILE",
        help_heading = GLOBAL
    )]
    password_file: Option<PathBuf>,
    /// Take the passphrase from the first line CMD prints.
    ///
    /// CMD runs with `sh -c`. Default: $SYNVAULT_PASSWORD_COMMAND. See --password-file for
    /// the order of the sources.
    #[arg(
        long,
        global = true,
        env = "SYNVAULT_PASSWORD_COMMAND",
        hide_env = true,
        value_name = "CMD",
        help_heading = GLOBAL
    )]
    password_command: Option<String>,
    /// Wait up to SECONDS for another writer, then exit 11.
    ///
    /// A command that writes (a backup, a prune) waits this long for another writer to
    /// finish before it gives up.
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        default_value_t = 600,
        help_heading = GLOBAL
    )]
    lock_wait: u64,
    /// Say only results, warnings and errors (no progress).
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL)]
    quiet: bool,
    /// Say more: every path skipped or damaged, more detail.
    #[arg(short, long, global = true, action = ArgAction::Count, help_heading = GLOBAL)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// `-h`/`--help`: the short help, for every command (see `disable_help_flag` on [`Cli`]).
fn help_flag() -> Arg {
    Arg::new("help")
        .short('h')
        .long("help")
        .help("Print help (`synvault man COMMAND` tells more)")
        .action(ArgAction::HelpShort)
        .global(true)
        .help_heading(GLOBAL)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new vault.
    Init(init::InitArgs),
    /// Back up paths: full the first time, incremental afterwards.
    Backup(backup::BackupArgs),
    /// List recovery points.
    Points(browse::PointsArgs),
    /// List the entries of a point (or of a directory in it).
    Ls(browse::LsArgs),
    /// Write one file of a point to standard output.
    Cat(browse::CatArgs),
    /// Write a point, or a path of it, to standard output as a tar stream.
    Dump(dump::DumpArgs),
    /// Add or remove a point's tags.
    Tag(tag::TagArgs),
    /// What changed between two points.
    Diff(diff::DiffArgs),
    /// Where a name appears across points.
    Find(find::FindArgs),
    /// Every version of one path across points.
    Log(log::LogArgs),
    /// Restore a point, or a path of it, into a directory.
    Restore(restore::RestoreArgs),
    /// Check the vault's packs; with --read-data, every byte.
    Verify(verify::VerifyArgs),
    /// Logical bytes, stored bytes and dedup ratio, per point.
    Stats(browse::StatsArgs),
    /// Ship the first full backup on disks, import it at the store.
    Seed(seed::SeedArgs),
    /// Mount a point, or the whole vault by time, read-only (FUSE).
    Mount(mount::MountArgs),
    /// Measure how fast this machine reassembles a point.
    Bench(bench::BenchArgs),
    /// The catalog itself: `catalog rebuild` recreates it from the store.
    Catalog(catalog::CatalogArgs),
    /// Retention policies: which points `forget` keeps.
    Policy(retention::PolicyArgs),
    /// Remove points, named or by the retention policy.
    Forget(retention::ForgetArgs),
    /// Delete and repack the packs no point uses.
    Prune(retention::PruneArgs),
    /// Passphrases: list, add, remove or change the vault's keys.
    Key(key::KeyArgs),
    /// Print a shell completion script.
    Completion(generate::CompletionArgs),
    /// Print a man page, or write them all.
    Man(generate::ManArgs),
}

/// The exit code an error in a failed command's chain of causes stands for, if it is one of
/// ours: the library's errors know theirs; the mount's are mapped here, where the mount is
/// run (the library's root error does not know the FUSE shell).
pub fn exit_code_of(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    if let Some(e) = cause.downcast_ref::<Error>() {
        return Some(e.exit_code());
    }
    cause
        .downcast_ref::<synvault::mount::MountError>()
        .map(mount::exit_code)
}

/// Parses the command line and runs it; returns the exit code.
pub fn run() -> anyhow::Result<u8> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Init(args) => init::run(&cli, args),
        Command::Backup(args) => backup::run(&cli, args),
        Command::Points(args) => match &args.command {
            Some(command) => retention::protect(&cli, command),
            None => browse::points(&cli, args),
        },
        Command::Ls(args) => browse::ls(&cli, args),
        Command::Cat(args) => browse::cat(&cli, args),
        Command::Dump(args) => dump::run(&cli, args),
        Command::Tag(args) => tag::run(&cli, args),
        Command::Diff(args) => diff::run(&cli, args),
        Command::Find(args) => find::run(&cli, args),
        Command::Log(args) => log::run(&cli, args),
        Command::Restore(args) => restore::run(&cli, args),
        Command::Verify(args) => verify::run(&cli, args),
        Command::Stats(args) => browse::stats(&cli, args),
        Command::Seed(args) => seed::run(&cli, args),
        Command::Mount(args) => mount::run(&cli, args),
        Command::Bench(args) => bench::run(&cli, args),
        Command::Catalog(args) => catalog::run(&cli, args),
        Command::Policy(args) => retention::policy(&cli, args),
        Command::Forget(args) => retention::forget(&cli, args),
        Command::Prune(args) => retention::prune(&cli, args),
        Command::Key(args) => key::run(&cli, args),
        Command::Completion(args) => generate::completion(args),
        Command::Man(args) => generate::man(args),
    }
}

impl Cli {
    /// Where the command's progress, notes and warnings go, from -q/-v and its `--json`.
    fn console(&self, json: bool) -> Console {
        let verbosity = match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, _) => Verbosity::Verbose,
        };
        Console::new(verbosity, json)
    }

    /// Where the vault named on the command line is.
    fn location(&self) -> anyhow::Result<Location> {
        let given = self.vault.as_ref().ok_or_else(|| {
            anyhow!(Error::InvalidArgument(
                "no vault given: use --vault DIR|URL or SYNVAULT_VAULT".into()
            ))
        })?;
        Ok(Location::parse(given.as_os_str())?)
    }

    /// The store and catalog directory of the vault named on the command line; for a vault
    /// in object storage this connects (nothing is requested yet).
    fn place(&self) -> anyhow::Result<Place> {
        let options = RemoteOptions {
            endpoint: self.endpoint.clone(),
            catalog_dir: self.catalog.clone(),
            uploads: self.uploads,
            retry_timeout: Duration::from_secs(self.retry_timeout),
            cache_dir: self.cache_dir.clone(),
            cache_bytes: size::parse(&self.disk_cache)
                .map_err(|e| anyhow!(Error::InvalidArgument(format!("--disk-cache: {e}"))))?,
            ..RemoteOptions::default()
        };
        Ok(Place::open(&self.location()?, &options)?)
    }

    /// The passphrase: --password-file or --password-command (not both), then
    /// SYNVAULT_PASSWORD, then a prompt on a terminal (to `confirm`, asked twice, and again
    /// after a mismatch).
    fn passphrase(&self, confirm: bool) -> anyhow::Result<Vec<u8>> {
        match (&self.password_file, &self.password_command) {
            (Some(_), Some(_)) => {
                return Err(anyhow!(Error::InvalidArgument(
                    "give a password file or a password command, not both (flags or SYNVAULT_PASSWORD_FILE, SYNVAULT_PASSWORD_COMMAND)".into()
                )))
            }
            (Some(file), None) => return passphrase::from_file(file),
            (None, Some(command)) => return passphrase::from_command(command),
            (None, None) => {}
        }
        if let Some(pw) = std::env::var_os("SYNVAULT_PASSWORD") {
            return Ok(pw.into_encoded_bytes());
        }
        if !passphrase::on_terminal() {
            return Err(anyhow!(Error::InvalidArgument(
                "no passphrase: use --password-file FILE, --password-command CMD, SYNVAULT_PASSWORD, or run on a terminal"
                    .into()
            )));
        }
        if confirm {
            passphrase::prompt_confirmed("vault passphrase: ")
        } else {
            passphrase::prompt("vault passphrase: ")
        }
    }

    /// Takes the vault's writer lock for `command`, waiting as `--lock-wait` allows; says so
    /// when it takes over a lock whose holder is gone.
    fn lock_writer(&self, vault: &Vault, command: &str) -> anyhow::Result<synvault::WriterLock> {
        let wait = Duration::from_secs(self.lock_wait);
        let (lock, acquired) = vault.lock_writer_waiting(command, wait)?;
        if let synvault::Acquired::TakenOver(holder) = acquired {
            self.console(false).warn(&format!(
                "took over the lock left by {holder}, which is no longer running"
            ));
        }
        Ok(lock)
    }

    /// Opens only the local catalog of the vault named on the command line, without asking
    /// for the passphrase: for commands that show what the catalog holds in clear.
    fn open_catalog(&self) -> anyhow::Result<synvault::vault::LocalCatalog> {
        let place = self.place()?;
        place.require_vault()?;
        Ok(Vault::open_catalog(&place)?)
    }

    /// Opens the vault named on the command line.
    fn open_vault(&self) -> anyhow::Result<Vault> {
        let place = self.place()?;
        // Check for a vault before asking for a passphrase: "no vault" is the better answer.
        place.require_vault()?;
        let pass = self.passphrase(false)?;
        let vault = Vault::open_in(place, &pass)?;
        // A backup killed between sealing its point into the store and committing it is
        // finished (or dropped) here, so every command sees what the store holds.
        synvault::rebuild::settle_pending(&vault)?;
        Ok(vault)
    }
}

/// How long a command may take to stop after SIGINT or SIGTERM before the process ends it.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// A flag set by SIGINT or SIGTERM, polled by long operations so they stop cleanly.
fn interrupt_flag() -> Arc<AtomicBool> {
    interrupt_flag_with(Box::new(|| {}))
}

/// [`interrupt_flag`], and a watchdog for what polling cannot stop: a read that blocks (a
/// file on a hung FUSE or NFS mount, a pseudo file named as a source) never polls the flag.
/// If the command has not ended [`INTERRUPT_GRACE`] after the signal, or at a second signal,
/// the watchdog runs `last_words` (work that is safe from another thread at any moment, such
/// as taking back uncommitted packs), says `interrupted` and exits with 130. The writer lock
/// is an `flock`, so the kernel releases it with the process.
fn interrupt_flag_with(last_words: Box<dyn FnOnce() + Send>) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let signals = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];
    for signal in signals {
        // Registration fails only for forbidden signals; these two are allowed.
        let _ = signal_hook::flag::register(signal, flag.clone());
    }
    if let Ok(signals) = signal_hook::iterator::Signals::new(signals) {
        // Without the watchdog the flag still works; only a blocked read would not stop.
        let _ = std::thread::Builder::new()
            .name("interrupt watchdog".into())
            .spawn(move || watchdog(signals, last_words));
    }
    flag
}

fn watchdog(mut signals: signal_hook::iterator::Signals, last_words: Box<dyn FnOnce() + Send>) {
    if signals.forever().next().is_none() {
        return;
    }
    let deadline = std::time::Instant::now() + INTERRUPT_GRACE;
    while std::time::Instant::now() < deadline && signals.pending().next().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    last_words();
    eprintln!("synvault: interrupted");
    std::process::exit(i32::from(exit::INTERRUPTED));
}

/// Exit code for a finished command that left something out.
fn code_for(incomplete: bool) -> u8 {
    if incomplete {
        exit::INCOMPLETE
    } else {
        exit::SUCCESS
    }
}

/// A retain-until argument: a UTC time, or `forever` (`i64::MAX`).
fn parse_until(text: &str) -> Result<i64, String> {
    if text == "forever" {
        return Ok(i64::MAX);
    }
    synvault::time::parse_utc(text)
}

/// Splits `POINT[:PATH]`.
fn split_point_path(arg: &str) -> (&str, &str) {
    arg.split_once(':').unwrap_or((arg, ""))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// A screen: the widest the help is drawn (`max_term_width`), and lines that fit it.
    const SCREEN_COLUMNS: usize = 100;
    const SCREEN_LINES: usize = 50;

    /// The words of every command below `command` (`["seed", "import"]`), clap's `help` aside.
    fn command_words(command: &clap::Command, above: &[String], out: &mut Vec<Vec<String>>) {
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut words = above.to_vec();
            words.push(sub.get_name().to_string());
            command_words(sub, &words, out);
            out.push(words);
        }
    }

    /// What `synvault WORDS... --help` prints on a screen [`SCREEN_COLUMNS`] wide.
    fn help_of(words: &[String]) -> String {
        let args = ["synvault"]
            .into_iter()
            .chain(words.iter().map(String::as_str))
            .chain(["--help"]);
        let err = Cli::command()
            .term_width(SCREEN_COLUMNS)
            .try_get_matches_from(args)
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{words:?}");
        err.to_string()
    }

    #[test]
    fn every_help_gives_an_example_and_fits_one_screen() {
        let mut commands = vec![Vec::new()];
        command_words(&Cli::command(), &[], &mut commands);
        assert!(commands.len() > 30, "{commands:?}");
        for words in &commands {
            let help = help_of(words);
            assert!(
                help.contains("Example"),
                "synvault {words:?} --help: {help}"
            );
            let lines = help.lines().count();
            assert!(
                lines <= SCREEN_LINES,
                "synvault {words:?} --help is {lines} lines: {help}"
            );
            let widest = help.lines().map(|l| l.chars().count()).max();
            assert!(widest <= Some(SCREEN_COLUMNS), "{words:?}: {help}");
        }
    }

    #[test]
    fn the_command_line_definitions_hold_together() {
        Cli::command().debug_assert();
    }
}

//! `synvault policy`, `points protect|unprotect`, `forget` and `prune`.

use clap::{Args, Subcommand};
use synvault::retention::forget::{ForgetOptions, ForgetReport};
use synvault::retention::policy::{Keep, Policy, Span};
use synvault::retention::prune::{PruneOptions, PruneReport};
use synvault::{exit, Error};

use super::console::Console;
use super::output::{after_report, bytes, json, short};
use super::{interrupt_flag, Cli};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault policy set --keep-daily 7 --keep-weekly 4 --keep-monthly 12
  synvault policy show
  synvault forget --dry-run")]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Set the retention policy of a source (or the default for every source).
    ///
    /// Rules are restic's and are ORed: a point any rule keeps is kept. Periods (hour, day, ISO week,
    /// month, year) are taken in UTC from each point's start time (with `--local-time`, in the
    /// local time zone: `TZ`, else /etc/localtime, daylight saving included); in each period the newest
    /// point is kept, a period without points uses no slot, and a rule with slots left keeps
    /// the oldest point. `--keep-within` counts back from the newest point. Protected points,
    /// running ones and those awaiting a seed import are never removed. An empty policy
    /// removes nothing.
    #[command(after_help = "Examples:
  synvault policy set --keep-daily 7 --keep-weekly 4 --keep-monthly 12
  synvault policy set --source /home/me/Documents --keep-last 10 --keep-tag keep

Rules are ORed: a point any rule keeps is kept. Protected points, running ones and those
awaiting a seed import are never removed. `synvault man policy set` tells the rules in full.")]
    Set(PolicySetArgs),
    /// Show the policies.
    #[command(after_help = "Examples:
  synvault policy show
  synvault policy show --json")]
    Show {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the policy of a source (or the default one).
    #[command(after_help = "Examples:
  synvault policy clear --source /home/me/Documents
  synvault policy clear")]
    Clear {
        /// The source (as `points` shows it); default: the default policy.
        #[arg(long, value_name = "PATH")]
        source: Option<String>,
    },
}

#[derive(Debug, Args)]
struct PolicySetArgs {
    /// The source (as `points` shows it); default: all others.
    ///
    /// Without --source, the policy is the default one: for every source without its own.
    #[arg(long, value_name = "PATH")]
    source: Option<String>,
    /// Keep the N newest points (`unlimited` or -1 for all).
    #[arg(long, value_name = "N", value_parser = Keep::parse, allow_hyphen_values = true)]
    keep_last: Option<Keep>,
    /// Keep the newest point of each of the N newest hours.
    ///
    /// Keep the newest point of each of the N newest hours that have points: one without
    /// points uses no slot.
    #[arg(long, value_name = "N", value_parser = Keep::parse, allow_hyphen_values = true)]
    keep_hourly: Option<Keep>,
    /// Keep the newest point of each of the N newest days.
    ///
    /// Keep the newest point of each of the N newest days that have points: one without
    /// points uses no slot.
    #[arg(long, value_name = "N", value_parser = Keep::parse, allow_hyphen_values = true)]
    keep_daily: Option<Keep>,
    /// Keep the newest point of each of the N newest ISO weeks.
    ///
    /// Keep the newest point of each of the N newest ISO weeks that have points: one without
    /// points uses no slot.
    #[arg(long, value_name = "N", value_parser = Keep::parse, allow_hyphen_values = true)]
    keep_weekly: Option<Keep>,
    /// Keep the newest point of each of the N newest months.
    ///
    /// Keep the newest point of each of the N newest months that have points: one without
    /// points uses no slot.
    #[arg(long, value_name = "N", value_parser = Keep::parse, allow_hyphen_values = true)]
    keep_monthly: Option<Keep>,
    /// Keep the newest point of each of the N newest years.
    ///
    /// Keep the newest point of each of the N newest years that have points: one without
    /// points uses no slot.
    #[arg(long, value_name = "N", value_parser = Keep::parse, allow_hyphen_values = true)]
    keep_yearly: Option<Keep>,
    /// Keep every point within DURATION of the newest (7d, 1y2m).
    ///
    /// DURATION is numbers each followed by a unit, y, m, d or h: 7d, 36h, 1y2m3d4h.
    #[arg(long, value_name = "DURATION", value_parser = Span::parse)]
    keep_within: Option<Span>,
    /// Within DURATION of the newest, keep one per hour.
    ///
    /// Within DURATION of the newest point, keep the newest point of each hour.
    #[arg(long, value_name = "DURATION", value_parser = Span::parse)]
    keep_within_hourly: Option<Span>,
    /// Within DURATION of the newest, keep one per day.
    ///
    /// Within DURATION of the newest point, keep the newest point of each day.
    #[arg(long, value_name = "DURATION", value_parser = Span::parse)]
    keep_within_daily: Option<Span>,
    /// Within DURATION of the newest, keep one per ISO week.
    ///
    /// Within DURATION of the newest point, keep the newest point of each ISO week.
    #[arg(long, value_name = "DURATION", value_parser = Span::parse)]
    keep_within_weekly: Option<Span>,
    /// Within DURATION of the newest, keep one per month.
    ///
    /// Within DURATION of the newest point, keep the newest point of each month.
    #[arg(long, value_name = "DURATION", value_parser = Span::parse)]
    keep_within_monthly: Option<Span>,
    /// Within DURATION of the newest, keep one per year.
    ///
    /// Within DURATION of the newest point, keep the newest point of each year.
    #[arg(long, value_name = "DURATION", value_parser = Span::parse)]
    keep_within_yearly: Option<Span>,
    /// Keep every point carrying TAG (repeatable).
    #[arg(long, value_name = "TAG")]
    keep_tag: Vec<String>,
    /// Take periods in the local time zone, not UTC.
    ///
    /// The local time zone is that of the machine that runs `forget`.
    #[arg(long)]
    local_time: bool,
}

impl PolicySetArgs {
    fn policy(&self) -> Policy {
        Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
            keep_within_hourly: self.keep_within_hourly,
            keep_within_daily: self.keep_within_daily,
            keep_within_weekly: self.keep_within_weekly,
            keep_within_monthly: self.keep_within_monthly,
            keep_within_yearly: self.keep_within_yearly,
            keep_tags: self.keep_tag.clone(),
            local_time: self.local_time,
        }
    }
}

pub fn policy(cli: &Cli, args: &PolicyArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    match &args.command {
        PolicyCommand::Show { json: as_json } => {
            let policies = synvault::retention::settings::policies(&vault)?;
            if *as_json {
                let out: Vec<serde_json::Value> = policies
                    .iter()
                    .map(|(source, policy)| {
                        serde_json::json!({
                            "source": if source.is_empty() { None } else { Some(source) },
                            "policy": serde_json::from_str::<serde_json::Value>(policy)
                                .unwrap_or_default(),
                        })
                    })
                    .collect();
                json(&out)?;
            } else if policies.is_empty() {
                outln!("no policy: forget removes nothing");
            } else {
                for (source, policy) in &policies {
                    let name = if source.is_empty() { "default" } else { source };
                    outln!("{name}: {policy}");
                }
            }
            Ok(exit::SUCCESS)
        }
        PolicyCommand::Set(set) => {
            let _lock = cli.lock_writer(&vault, "policy set")?;
            let policy = set.policy();
            let text = serde_json::to_string(&policy)?;
            synvault::retention::settings::set_policy(
                &vault,
                set.source.as_deref(),
                Some(&policy),
            )?;
            outln!("policy set: {text}");
            Ok(exit::SUCCESS)
        }
        PolicyCommand::Clear { source } => {
            let _lock = cli.lock_writer(&vault, "policy clear")?;
            synvault::retention::settings::set_policy(&vault, source.as_deref(), None)?;
            Ok(exit::SUCCESS)
        }
    }
}

/// `points protect` and `points unprotect`.
#[derive(Debug, Subcommand)]
pub enum PointsCommand {
    /// Protect a point from forgetting by policy (and from `forget POINT`).
    #[command(after_help = "Examples:
  synvault points protect latest --until 2030-01-01
  synvault points protect 3f2a9c1e --until forever")]
    Protect {
        point: String,
        /// Until DATE (UTC: YYYY-MM-DD[THH:MM[:SS]]) or `forever`.
        #[arg(long, value_name = "DATE", value_parser = super::parse_until)]
        until: i64,
    },
    /// Remove a point's protection.
    #[command(after_help = "Example:
  synvault points unprotect 3f2a9c1e")]
    Unprotect { point: String },
}

pub fn protect(cli: &Cli, command: &PointsCommand) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let _lock = cli.lock_writer(&vault, "points protect")?;
    let (query, until) = match command {
        PointsCommand::Protect { point, until } => (point, Some(*until)),
        PointsCommand::Unprotect { point } => (point, None),
    };
    let point = vault.resolve_point(query)?;
    synvault::retention::settings::protect(&vault, &point, until)?;
    match until {
        Some(i64::MAX) => outln!("point {} protected forever", point.id.short()),
        Some(t) => outln!(
            "point {} protected until {}",
            point.id.short(),
            synvault::time::format_utc(t)
        ),
        None => outln!("point {} no longer protected", point.id.short()),
    }
    Ok(exit::SUCCESS)
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault forget --dry-run
  synvault forget --prune
  synvault forget latest~1 3f2a9c1e")]
pub struct ForgetArgs {
    /// Points to forget (id prefix, latest, latest~N); none: apply the retention policy.
    points: Vec<String>,
    /// Print, for every point, keep or remove and the rule that decided; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    prune: bool,
    /// Print the result as JSON (and prune's progress as JSON lines on stderr).
    #[arg(long)]
    json: bool,
}

pub fn forget(cli: &Cli, args: &ForgetArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    let lock = cli.lock_writer(&vault, "forget")?;
    let report = synvault::retention::forget::forget(
        &vault,
        &ForgetOptions {
            points: args.points.clone(),
            dry_run: args.dry_run,
        },
        synvault::time::now_ns(),
    )?;
    drop(lock);
    let pruned = if args.prune && !args.dry_run {
        Some(run_prune(
            cli,
            &vault,
            PruneOptions::default(),
            cli.console(args.json),
        )?)
    } else {
        None
    };
    after_report(
        exit::SUCCESS,
        print_forget(&report, pruned.as_ref(), args.json),
    )
}

fn print_forget(
    report: &ForgetReport,
    pruned: Option<&PruneReport>,
    as_json: bool,
) -> anyhow::Result<()> {
    if as_json {
        return json(&serde_json::json!({ "forget": report, "prune": pruned }));
    }
    for v in &report.verdicts {
        outln!(
            "{}  {}  {:<6}  {}  {}",
            short(&v.id),
            v.time,
            if v.keep { "keep" } else { "remove" },
            v.source,
            v.reasons.join(", ")
        );
    }
    outln!(
        "{} {} points",
        if report.dry_run {
            "would forget"
        } else {
            "forgot"
        },
        report.forgotten.len()
    );
    if let Some(p) = pruned {
        print_prune_summary(p)?;
    }
    Ok(())
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault prune --dry-run
  synvault prune --max-unused 0 -v
  synvault prune --json 2> progress.jsonl")]
pub struct PruneArgs {
    /// Repack a pack when more than PERCENT of it is unused (0: every pack with unused data).
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    max_unused: f64,
    /// Say what would be removed and repacked; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Allow one run to remove more than half of the stored bytes.
    #[arg(long)]
    allow_deleting_most: bool,
    /// Keep retired packs this long before deleting them (30m, 24h, 0), for readers on other
    /// machines, which hold no lease this one sees [default: 24h in object storage, 0 on
    /// local disk].
    #[arg(long, value_name = "TIME", value_parser = synvault::units::parse_elapsed)]
    grace: Option<std::time::Duration>,
    /// Print the result as JSON, progress as JSON lines on stderr.
    #[arg(long)]
    json: bool,
}

pub fn prune(cli: &Cli, args: &PruneArgs) -> anyhow::Result<u8> {
    if !(0.0..=100.0).contains(&args.max_unused) {
        return Err(Error::InvalidArgument(format!(
            "--max-unused {} is not a percentage (0 to 100)",
            args.max_unused
        ))
        .into());
    }
    let vault = cli.open_vault()?;
    let console = cli.console(args.json);
    let report = run_prune(
        cli,
        &vault,
        PruneOptions {
            max_unused_percent: args.max_unused,
            dry_run: args.dry_run,
            allow_deleting_most: args.allow_deleting_most,
            grace: args.grace,
        },
        console,
    )?;
    after_report(
        exit::SUCCESS,
        print_prune(&report, args.json, console.is_verbose()),
    )
}

/// Runs prune, which takes the writer lock itself for its short catalog steps.
fn run_prune(
    cli: &Cli,
    vault: &synvault::Vault,
    options: PruneOptions,
    console: Console,
) -> anyhow::Result<PruneReport> {
    let meter = console.progress("prune");
    let interrupted = interrupt_flag();
    let wait = std::time::Duration::from_secs(cli.lock_wait);
    let report = synvault::retention::prune::prune(vault, options, &meter, &interrupted, &|| {
        Ok(vault.lock_writer_waiting("prune", wait)?.0)
    });
    meter.finish(report.is_ok());
    Ok(report?)
}

/// With `verbose`, the store's size before and after, and how long backups had to wait.
fn print_prune(report: &PruneReport, as_json: bool, verbose: bool) -> anyhow::Result<()> {
    if as_json {
        return json(report);
    }
    print_prune_summary(report)?;
    if verbose {
        outln!(
            "  store {} -> {}, {} catalog rows removed, writer lock held {:.2} s of {:.2} s",
            bytes(report.bytes_stored_before),
            bytes(report.bytes_stored_after),
            report.catalog_rows_removed,
            report.lock_seconds,
            report.seconds
        );
    }
    Ok(())
}

fn print_prune_summary(report: &PruneReport) -> anyhow::Result<()> {
    for r in &report.set_aside_for {
        outln!(
            "set aside for pid {} ({}) since {}",
            r.pid,
            r.command,
            synvault::time::format_utc(r.since_ns)
        );
    }
    if let Some(until) = report.set_aside_until_ns {
        outln!(
            "set aside for the grace period (--grace) until {}: the first prune after that \
             deletes it",
            synvault::time::format_utc(until)
        );
    }
    outln!(
        "{}{} packs unused, {} repacked into {}, {} unknown; freed {}, set aside {}, unused left {}{}",
        if report.dry_run { "would prune: " } else { "pruned: " },
        report.packs_unused,
        report.packs_repacked,
        report.packs_written,
        report.packs_unknown,
        bytes(report.bytes_freed),
        bytes(report.bytes_set_aside),
        bytes(report.bytes_unused_left),
        if report.metadata_compacted {
            "; metadata compacted"
        } else {
            ""
        }
    );
    Ok(())
}

//! `forget`: remove points from the vault, named or by the retention policy.
//!
//! Forgetting removes a point from the catalog and leaves a tombstone, sealed into the store
//! first (see `rebuild::commit_change`), so a rebuilt catalog does not bring it back. The
//! point's blocks stay until `prune` finds that no point uses them.
//!
//! By policy, each source is judged by its own policy (or the default one); points that are
//! running, awaiting a seed import or protected are never removed. A point named explicitly
//! is refused if it is protected, running or awaiting a seed import.

use std::collections::BTreeMap;

use crate::catalog::sealed::Event;
use crate::catalog::{PointState, RecoveryPoint};
use crate::error::{Error, Result};
use crate::retention::policy::{decide, PointInfo, Policy};
use crate::vault::Vault;

/// What to forget.
#[derive(Clone, Debug, Default)]
pub struct ForgetOptions {
    /// Points to forget by name (id prefix, `latest`, `latest~N`); empty: apply the policy.
    pub points: Vec<String>,
    /// Say what would be done, do nothing.
    pub dry_run: bool,
}

/// The verdict on one point.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
pub struct Verdict {
    pub id: String,
    pub source: String,
    pub time: String,
    pub keep: bool,
    /// The rules that keep it (empty for a point removed).
    pub reasons: Vec<String>,
}

/// What forget did (or would do).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ForgetReport {
    pub dry_run: bool,
    /// Every point judged, oldest first.
    pub verdicts: Vec<Verdict>,
    /// The points removed (or that would be).
    pub forgotten: Vec<String>,
}

/// The policy of a source: its own, else the vault's default, else none (keeps everything).
pub fn policy_of(vault: &Vault, source: &str) -> Result<Policy> {
    let catalog = vault.catalog();
    let json = match catalog.policy(source)? {
        Some(json) => Some(json),
        None => catalog.policy("")?,
    };
    match json {
        None => Ok(Policy::default()),
        Some(json) => serde_json::from_str(&json).map_err(|e| {
            Error::Catalog(crate::catalog::CatalogError::Corrupt(if e.is_data() {
                "retention policy"
            } else {
                "retention policy JSON"
            }))
        }),
    }
}

/// Runs forget. The writer lock must be held by the caller.
pub fn forget(vault: &Vault, options: &ForgetOptions, now_ns: i64) -> Result<ForgetReport> {
    let mut report = ForgetReport {
        dry_run: options.dry_run,
        ..ForgetReport::default()
    };
    if options.points.is_empty() {
        by_policy(vault, now_ns, &mut report)?;
    } else {
        for query in &options.points {
            let point = vault.resolve_point(query)?;
            if let Some(why) = not_removable(&point, now_ns) {
                return Err(Error::InvalidArgument(format!(
                    "point {} {why}",
                    point.id.short()
                )));
            }
            report.verdicts.push(verdict(&point, false, Vec::new()));
            if !report.forgotten.contains(&point.id.0) {
                report.forgotten.push(point.id.0.clone());
            }
        }
    }
    if !options.dry_run && !report.forgotten.is_empty() {
        crate::rebuild::commit_change(
            vault,
            &Event::Forget {
                at_ns: now_ns,
                points: report.forgotten.clone(),
            },
        )?;
    }
    Ok(report)
}

/// Why a point may not be forgotten, if it may not.
fn not_removable(point: &RecoveryPoint, now_ns: i64) -> Option<String> {
    if let Some(until) = point.retain_until_ns.filter(|&u| u > now_ns) {
        let until = if until == i64::MAX {
            "forever".to_string()
        } else {
            format!("until {}", crate::time::format_utc(until))
        };
        return Some(format!(
            "is protected {until}; `synvault points unprotect {}` first",
            point.id.short()
        ));
    }
    match point.state {
        PointState::Running => Some("is still running".into()),
        PointState::AwaitingSeed => Some("awaits its seed import".into()),
        PointState::Complete | PointState::Partial => None,
    }
}

fn verdict(point: &RecoveryPoint, keep: bool, reasons: Vec<String>) -> Verdict {
    Verdict {
        id: point.id.0.clone(),
        source: point.source.clone(),
        time: crate::time::format_utc(point.started_ns),
        keep,
        reasons,
    }
}

/// Judges every source's points by its policy.
fn by_policy(vault: &Vault, now_ns: i64, report: &mut ForgetReport) -> Result<()> {
    let points = vault.catalog().points()?;
    let mut by_source: BTreeMap<&str, Vec<&RecoveryPoint>> = BTreeMap::new();
    for p in &points {
        by_source.entry(&p.source).or_default().push(p);
    }
    let mut verdicts = Vec::new();
    for (source, points) in by_source {
        let policy = policy_of(vault, source)?;
        let infos: Vec<PointInfo> = points
            .iter()
            .map(|p| PointInfo {
                id: p.id.0.clone(),
                time_ns: p.started_ns,
                tags: p.tags.clone(),
                protected: p.retain_until_ns.is_some_and(|u| u > now_ns),
                eligible: matches!(p.state, PointState::Complete | PointState::Partial),
            })
            .collect();
        for (point, decision) in points.iter().zip(decide(
            &policy,
            &infos,
            now_ns,
            &crate::time::local_offset_secs,
        )) {
            if !decision.keep {
                report.forgotten.push(point.id.0.clone());
            }
            verdicts.push((
                point.started_ns,
                verdict(point, decision.keep, decision.reasons),
            ));
        }
    }
    verdicts.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
    report.verdicts = verdicts.into_iter().map(|v| v.1).collect();
    Ok(())
}

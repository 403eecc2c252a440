//! Keep policy evaluation with restic's `forget` semantics, plus per-point protection.
//!
//! - Points are taken newest first (equal times keep their input order); rules are ORed.
//! - A count rule (hourly, daily, weekly = ISO week, monthly, yearly) keeps, walking newest
//!   first, each point whose period differs from the last period that rule kept, one slot
//!   each: the newest point of each of the N newest periods that have a point. keep-last keeps
//!   the N newest points.
//! - Keep-oldest (restic 0.16+, restic#3624): a count rule that still has slots left when it
//!   reaches the oldest point keeps it even if its period was already kept (reason `oldest …`);
//!   a `keep-within-*` rule keeps the oldest point likewise when it lies inside its window.
//! - keep-within D keeps every point after (newest − D); keep-within-daily D keeps, among those,
//!   the newest per day (no slot limit), and likewise hourly, weekly, monthly, yearly. The
//!   "newest" here is the newest point that is not in the future (as restic does).
//! - keep-tag keeps every point carrying one of the tags; an empty policy removes nothing.
//! - Protected points and points not eligible for removal are always kept.
//!
//! Calendar periods are read in UTC unless [`Policy::local_time`], which uses the fixed offset
//! the caller passes to [`decide`]. Pure: no clock, no time zone database, no catalog.

use serde::{Deserialize, Serialize};

use super::calendar::{step_back_ns, Civil};
pub use super::limit::{Keep, Span};

/// What a vault (or one source) keeps: restic's `forget --keep-*` options.
///
/// `Default` is the empty policy, which keeps every point. A count of `Count(0)` or a zero
/// [`Span`] is the same as leaving the rule out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Keep the N newest points.
    pub keep_last: Option<Keep>,
    /// Keep the newest point of each of the N newest hours that have a point.
    pub keep_hourly: Option<Keep>,
    /// Keep the newest point of each of the N newest days that have a point.
    pub keep_daily: Option<Keep>,
    /// Keep the newest point of each of the N newest ISO weeks that have a point.
    pub keep_weekly: Option<Keep>,
    /// Keep the newest point of each of the N newest months that have a point.
    pub keep_monthly: Option<Keep>,
    /// Keep the newest point of each of the N newest years that have a point.
    pub keep_yearly: Option<Keep>,
    /// Keep every point within this span of the newest point (not of now).
    pub keep_within: Option<Span>,
    /// Within this span of the newest point, keep the newest point of every hour.
    pub keep_within_hourly: Option<Span>,
    /// Within this span of the newest point, keep the newest point of every day.
    pub keep_within_daily: Option<Span>,
    /// Within this span of the newest point, keep the newest point of every ISO week.
    pub keep_within_weekly: Option<Span>,
    /// Within this span of the newest point, keep the newest point of every month.
    pub keep_within_monthly: Option<Span>,
    /// Within this span of the newest point, keep the newest point of every year.
    pub keep_within_yearly: Option<Span>,
    /// Keep every point carrying any of these tags; `""` matches points with no tag (restic).
    pub keep_tags: Vec<String>,
    /// Read calendar periods on the local clock (the offset given to [`decide`]), not UTC.
    pub local_time: bool,
}

impl Policy {
    /// Whether no rule is set: such a policy keeps every point.
    pub fn is_empty(&self) -> bool {
        let counts = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        let spans = [
            self.keep_within,
            self.keep_within_hourly,
            self.keep_within_daily,
            self.keep_within_weekly,
            self.keep_within_monthly,
            self.keep_within_yearly,
        ];
        self.keep_tags.is_empty()
            && counts.iter().flatten().all(|keep| !keep.is_active())
            && spans.iter().flatten().all(Span::is_zero)
    }
}

/// What the policy needs to know of one recovery point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointInfo {
    /// The point's id, echoed in its [`Decision`].
    pub id: String,
    /// Start time, ns since the Unix epoch (UTC). A time after `now` is not special to the
    /// count rules; see [`decide`].
    pub time_ns: i64,
    /// The point's tags, matched against [`Policy::keep_tags`].
    pub tags: Vec<String>,
    /// Its retain-until lies in the future: never removed by policy.
    pub protected: bool,
    /// `false` while the point is running or awaiting a seed import: never removed by policy,
    /// and left out of the rules (it uses no slot and is not the newest for keep-within).
    pub eligible: bool,
}

/// The verdict on one point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The point's id.
    pub id: String,
    /// Keep it (any reason) or remove it (no reason).
    pub keep: bool,
    /// Every rule or guard that keeps the point, e.g. `last 3`, `daily 2026-11-29`,
    /// `weekly 2026-W48`, `oldest monthly 2024-01`, `within 7d`, `within-daily 2026-11-29`,
    /// `tag weekly`, `protected`. Empty when the point is removed.
    pub reasons: Vec<String>,
}

/// The reason given to a point that is not eligible for removal.
pub const NOT_REMOVABLE: &str = "not removable (running or awaiting seed)";

/// Decides, for every point, keep or remove; one [`Decision`] per point, in input order.
///
/// `utc_offset_secs` is the local clock's offset from UTC (east positive), used only when
/// [`Policy::local_time`] is set; it is applied to every point alike, so a history that spans
/// a daylight-saving change is bucketed on one offset (the caller's choice, typically now's).
///
/// `now_ns` matters only for the keep-within rules, as in restic: their reference is the
/// newest point whose time is before `now_ns`, so a point from a clock set in the future does
/// not shift the window (and, lying after the reference, is itself within it). If every
/// point is in the future, every point is within every window (restic's zero reference).
/// The count rules treat future points as ordinary points.
pub fn decide(
    policy: &Policy,
    points: &[PointInfo],
    now_ns: i64,
    utc_offset_secs: i32,
) -> Vec<Decision> {
    let mut reasons: Vec<Vec<String>> = points.iter().map(guard_reasons).collect();
    if policy.is_empty() {
        for point_reasons in &mut reasons {
            point_reasons.push("empty policy keeps everything".to_owned());
        }
    } else {
        let offset_secs = if policy.local_time {
            utc_offset_secs
        } else {
            0
        };
        let order = newest_first_eligible(points);
        let rule_reasons = evaluate(policy, points, &order, now_ns, offset_secs);
        for (index, found) in order.into_iter().zip(rule_reasons) {
            reasons[index].extend(found);
        }
    }
    points
        .iter()
        .zip(reasons)
        .map(|(point, reasons)| Decision {
            id: point.id.clone(),
            keep: !reasons.is_empty(),
            reasons,
        })
        .collect()
}

fn guard_reasons(point: &PointInfo) -> Vec<String> {
    let mut reasons = Vec::new();
    if point.protected {
        reasons.push("protected".to_owned());
    }
    if !point.eligible {
        reasons.push(NOT_REMOVABLE.to_owned());
    }
    reasons
}

/// Indices of the eligible points, newest first; a stable sort keeps equal times in input
/// order, as restic's `sort.Stable` does.
fn newest_first_eligible(points: &[PointInfo]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&index| points[index].eligible)
        .collect();
    order.sort_by_key(|&index| std::cmp::Reverse(points[index].time_ns));
    order
}

/// A calendar period that buckets points.
#[derive(Clone, Copy, Debug)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    const ALL: [Period; 5] = [
        Period::Hour,
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Year,
    ];

    fn name(self) -> &'static str {
        match self {
            Period::Hour => "hourly",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
            Period::Year => "yearly",
        }
    }

    /// The period's name, which is also its bucket key: `2026-11-29T14`, `2026-11-29`,
    /// `2026-W53`, `2026-11`, `2026`.
    fn label(self, at: &Civil) -> String {
        match self {
            Period::Hour => format!(
                "{:04}-{:02}-{:02}T{:02}",
                at.year, at.month, at.day, at.hour
            ),
            Period::Day => format!("{:04}-{:02}-{:02}", at.year, at.month, at.day),
            Period::Week => format!("{:04}-W{:02}", at.iso_year, at.iso_week),
            Period::Month => format!("{:04}-{:02}", at.year, at.month),
            Period::Year => format!("{:04}", at.year),
        }
    }
}

/// The part of the timeline a keep-within rule covers: strictly after a cutoff.
#[derive(Clone, Copy, Debug)]
enum Window {
    /// No point is before now, so there is no reference: restic then covers everything.
    Everything,
    After(i128),
}

impl Window {
    fn new(reference_ns: Option<i64>, span: Span, offset_secs: i32) -> Window {
        match reference_ns {
            None => Window::Everything,
            Some(ns) => Window::After(step_back_ns(ns, offset_secs, span.parts())),
        }
    }

    fn contains(self, time_ns: i64) -> bool {
        match self {
            Window::Everything => true,
            Window::After(cutoff_ns) => i128::from(time_ns) > cutoff_ns,
        }
    }
}

/// A count rule: `period` None is keep-last; `slots_left` None is unlimited.
struct CountRule {
    period: Option<Period>,
    keep: Keep,
    slots_left: Option<u32>,
    last_kept: Option<String>,
}

/// A keep-within-<period> rule: unlimited slots, but only inside its window.
struct WithinRule {
    period: Period,
    window: Window,
    last_kept: Option<String>,
}

/// Reasons for each point of `order` (same order), from the policy's rules.
fn evaluate(
    policy: &Policy,
    points: &[PointInfo],
    order: &[usize],
    now_ns: i64,
    offset_secs: i32,
) -> Vec<Vec<String>> {
    let reference_ns = order
        .iter()
        .map(|&index| points[index].time_ns)
        .find(|&time_ns| time_ns < now_ns);
    let within = active_span(policy.keep_within)
        .map(|span| (span, Window::new(reference_ns, span, offset_secs)));
    let mut count_rules = count_rules(policy);
    let mut within_rules = within_rules(policy, reference_ns, offset_secs);
    let oldest_position = order.len().saturating_sub(1);
    order
        .iter()
        .enumerate()
        .map(|(position, &index)| {
            let point = &points[index];
            let at = Civil::of(point.time_ns, offset_secs);
            let is_oldest = position == oldest_position;
            let mut reasons = tag_reasons(&policy.keep_tags, &point.tags);
            if let Some((span, window)) = within {
                if window.contains(point.time_ns) {
                    reasons.push(format!("within {span}"));
                }
            }
            for rule in &mut count_rules {
                reasons.extend(rule.offer(&at, is_oldest));
            }
            for rule in &mut within_rules {
                reasons.extend(rule.offer(point.time_ns, &at, is_oldest));
            }
            reasons
        })
        .collect()
}

fn active_span(span: Option<Span>) -> Option<Span> {
    span.filter(|span| !span.is_zero())
}

fn count_rules(policy: &Policy) -> Vec<CountRule> {
    let rules = [
        (None, policy.keep_last),
        (Some(Period::Hour), policy.keep_hourly),
        (Some(Period::Day), policy.keep_daily),
        (Some(Period::Week), policy.keep_weekly),
        (Some(Period::Month), policy.keep_monthly),
        (Some(Period::Year), policy.keep_yearly),
    ];
    rules
        .into_iter()
        .filter_map(|(period, keep)| keep.filter(|keep| keep.is_active()).map(|k| (period, k)))
        .map(|(period, keep)| CountRule {
            period,
            keep,
            slots_left: match keep {
                Keep::Count(n) => Some(n),
                Keep::Unlimited => None,
            },
            last_kept: None,
        })
        .collect()
}

fn within_rules(policy: &Policy, reference_ns: Option<i64>, offset_secs: i32) -> Vec<WithinRule> {
    let spans = [
        policy.keep_within_hourly,
        policy.keep_within_daily,
        policy.keep_within_weekly,
        policy.keep_within_monthly,
        policy.keep_within_yearly,
    ];
    Period::ALL
        .into_iter()
        .zip(spans)
        .filter_map(|(period, span)| active_span(span).map(|span| (period, span)))
        .map(|(period, span)| WithinRule {
            period,
            window: Window::new(reference_ns, span, offset_secs),
            last_kept: None,
        })
        .collect()
}

fn tag_reasons(keep_tags: &[String], tags: &[String]) -> Vec<String> {
    keep_tags
        .iter()
        .filter_map(|wanted| {
            if wanted.is_empty() {
                tags.is_empty().then(|| "untagged".to_owned())
            } else {
                tags.contains(wanted).then(|| format!("tag {wanted}"))
            }
        })
        .collect()
}

impl CountRule {
    /// Keeps the point if its period is new to this rule, or if it is the oldest point and
    /// the rule still has slots (restic's keep-oldest); each keep uses one slot.
    fn offer(&mut self, at: &Civil, is_oldest: bool) -> Option<String> {
        if self.slots_left == Some(0) {
            return None;
        }
        let reason = match self.period {
            None => format!("last {}", self.keep),
            Some(period) => {
                let label = period.label(at);
                let repeat = self.last_kept.as_deref() == Some(label.as_str());
                if repeat && !is_oldest {
                    return None;
                }
                let reason = oldest_prefix(repeat, format!("{} {label}", period.name()));
                self.last_kept = Some(label);
                reason
            }
        };
        if let Some(slots) = &mut self.slots_left {
            *slots -= 1;
        }
        Some(reason)
    }
}

impl WithinRule {
    /// Keeps the point if it is inside the window and its period is new to this rule, or if
    /// it is the oldest point and inside the window (restic's keep-oldest).
    fn offer(&mut self, time_ns: i64, at: &Civil, is_oldest: bool) -> Option<String> {
        if !self.window.contains(time_ns) {
            return None;
        }
        let label = self.period.label(at);
        let repeat = self.last_kept.as_deref() == Some(label.as_str());
        if repeat && !is_oldest {
            return None;
        }
        let reason = oldest_prefix(repeat, format!("within-{} {label}", self.period.name()));
        self.last_kept = Some(label);
        Some(reason)
    }
}

fn oldest_prefix(repeat: bool, reason: String) -> String {
    if repeat {
        format!("oldest {reason}")
    } else {
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::calendar::days_from_civil;

    /// ns since the epoch of a UTC `YYYY-MM-DD HH:MM` (days_from_civil is checked against
    /// known instants in calendar.rs).
    fn ns(text: &str) -> i64 {
        let field = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap();
        let days = days_from_civil(i64::from(field(0..4)), field(5..7), field(8..10));
        (days * 86_400 + i64::from(field(11..13)) * 3_600 + i64::from(field(14..16)) * 60)
            * 1_000_000_000
    }

    /// A point whose id is its time, so expectations are lists of times.
    fn point(time: &str) -> PointInfo {
        PointInfo {
            id: time.to_owned(),
            time_ns: ns(time),
            tags: Vec::new(),
            protected: false,
            eligible: true,
        }
    }

    fn points(times: &[&str]) -> Vec<PointInfo> {
        times.iter().map(|time| point(time)).collect()
    }

    /// Three years of points, deliberately not in time order. Hand-worked calendar facts
    /// (checked with `date -u -d DAY +'%a %G-W%V'`): 2027-03-10 Wed 2027-W10, 03-09 W10,
    /// 03-07 Sun W09, 02-14 Sun W06, 2027-01-04 Mon 2027-W01, 2027-01-03 Sun 2026-W53,
    /// 2027-01-01 Fri 2026-W53, 2026-12-28 Mon 2026-W53, 12-27 Sun 2026-W52, 12-24 W52,
    /// 11-29 W48, 06-15 W25, 2026-01-01 Thu 2026-W01, 2025-12-29 Mon 2026-W01,
    /// 2025-12-28 Sun 2025-W52.
    const HISTORY: [&str; 21] = [
        "2026-06-15 06:00",
        "2027-03-10 08:10",
        "2025-01-15 07:00",
        "2027-01-01 12:00",
        "2027-03-10 09:00",
        "2025-12-29 12:00",
        "2026-12-27 22:00",
        "2027-03-07 12:00",
        "2025-02-01 00:00",
        "2027-01-04 00:00",
        "2026-11-29 10:00",
        "2027-03-10 08:30",
        "2025-12-28 12:00",
        "2026-12-28 01:00",
        "2027-03-09 23:00",
        "2025-07-01 00:00",
        "2027-02-14 12:00",
        "2026-01-01 00:00",
        "2027-01-03 23:00",
        "2026-12-24 10:00",
        "2025-01-15 08:00",
    ];

    /// Shortly after the newest point of HISTORY.
    const NOW: &str = "2027-03-10 12:00";

    /// Ids of the kept points, newest first.
    fn kept_at(policy: &Policy, points: &[PointInfo], now: &str, offset_secs: i32) -> Vec<String> {
        let mut kept: Vec<String> = decide(policy, points, ns(now), offset_secs)
            .into_iter()
            .filter(|decision| decision.keep)
            .map(|decision| decision.id)
            .collect();
        kept.sort_unstable_by(|a, b| b.cmp(a));
        kept
    }

    fn kept(policy: &Policy) -> Vec<String> {
        kept_at(policy, &points(&HISTORY), NOW, 0)
    }

    fn reasons_of(policy: &Policy, points: &[PointInfo], id: &str) -> Vec<String> {
        let decisions = decide(policy, points, ns(NOW), 0);
        let found = decisions.into_iter().find(|decision| decision.id == id);
        found.unwrap().reasons
    }

    fn span(text: &str) -> Option<Span> {
        Some(Span::parse(text).unwrap())
    }

    #[test]
    fn count_rules_alone() {
        let count = |n| Some(Keep::Count(n));
        let cases: Vec<(&str, Policy, Vec<&str>)> = vec![
            (
                "last 3",
                Policy {
                    keep_last: count(3),
                    ..Policy::default()
                },
                vec!["2027-03-10 09:00", "2027-03-10 08:30", "2027-03-10 08:10"],
            ),
            (
                // 08:10 shares hour 08 with 08:30, the newer one is kept.
                "hourly 3",
                Policy {
                    keep_hourly: count(3),
                    ..Policy::default()
                },
                vec!["2027-03-10 09:00", "2027-03-10 08:30", "2027-03-09 23:00"],
            ),
            (
                // Three points on 03-10 (newest kept); 03-08 has none and uses no slot.
                "daily 4",
                Policy {
                    keep_daily: count(4),
                    ..Policy::default()
                },
                vec![
                    "2027-03-10 09:00",
                    "2027-03-09 23:00",
                    "2027-03-07 12:00",
                    "2027-02-14 12:00",
                ],
            ),
            (
                // 2026-W53 runs 2026-12-28..2027-01-03: only 01-03 is kept of its three points;
                // 2025-12-29 is 2026-W01 like 2026-01-01, which is newer.
                "weekly 10",
                Policy {
                    keep_weekly: count(10),
                    ..Policy::default()
                },
                vec![
                    "2027-03-10 09:00", // 2027-W10
                    "2027-03-07 12:00", // 2027-W09
                    "2027-02-14 12:00", // 2027-W06
                    "2027-01-04 00:00", // 2027-W01
                    "2027-01-03 23:00", // 2026-W53
                    "2026-12-27 22:00", // 2026-W52
                    "2026-11-29 10:00", // 2026-W48
                    "2026-06-15 06:00", // 2026-W25
                    "2026-01-01 00:00", // 2026-W01
                    "2025-12-28 12:00", // 2025-W52
                ],
            ),
            (
                "monthly 4",
                Policy {
                    keep_monthly: count(4),
                    ..Policy::default()
                },
                vec![
                    "2027-03-10 09:00",
                    "2027-02-14 12:00",
                    "2027-01-04 00:00",
                    "2026-12-28 01:00",
                ],
            ),
            (
                // Slots run out on 2025, so the oldest point is not kept.
                "yearly 3",
                Policy {
                    keep_yearly: count(3),
                    ..Policy::default()
                },
                vec!["2027-03-10 09:00", "2026-12-28 01:00", "2025-12-29 12:00"],
            ),
            (
                "count 0 is off, other rules still apply",
                Policy {
                    keep_last: count(0),
                    keep_yearly: count(2),
                    ..Policy::default()
                },
                vec!["2027-03-10 09:00", "2026-12-28 01:00"],
            ),
        ];
        for (name, policy, want) in cases {
            assert_eq!(kept(&policy), want, "{name}");
        }
    }

    #[test]
    fn a_count_rule_with_slots_left_keeps_the_oldest_point() {
        let yearly_4 = Policy {
            keep_yearly: Some(Keep::Count(4)),
            ..Policy::default()
        };
        let want = [
            "2027-03-10 09:00",
            "2026-12-28 01:00",
            "2025-12-29 12:00",
            "2025-01-15 07:00",
        ];
        assert_eq!(kept(&yearly_4), want);
        let history = points(&HISTORY);
        assert_eq!(
            reasons_of(&yearly_4, &history, "2025-01-15 07:00"),
            ["oldest yearly 2025"]
        );
        assert!(reasons_of(&yearly_4, &history, "2025-01-15 08:00").is_empty());

        // 2025-01 already has 08:00; one slot is left for the oldest point.
        let monthly_12 = Policy {
            keep_monthly: Some(Keep::Count(12)),
            ..Policy::default()
        };
        let want = [
            "2027-03-10 09:00",
            "2027-02-14 12:00",
            "2027-01-04 00:00",
            "2026-12-28 01:00",
            "2026-11-29 10:00",
            "2026-06-15 06:00",
            "2026-01-01 00:00",
            "2025-12-29 12:00",
            "2025-07-01 00:00",
            "2025-02-01 00:00",
            "2025-01-15 08:00",
            "2025-01-15 07:00",
        ];
        assert_eq!(kept(&monthly_12), want);

        // Unlimited always has slots: every day's newest point, plus the oldest point.
        let daily_all = Policy {
            keep_daily: Some(Keep::Unlimited),
            ..Policy::default()
        };
        let mut want: Vec<&str> = HISTORY.to_vec();
        want.retain(|time| !["2027-03-10 08:30", "2027-03-10 08:10"].contains(time));
        want.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(kept(&daily_all), want);
        assert_eq!(
            reasons_of(&daily_all, &history, "2025-01-15 07:00"),
            ["oldest daily 2025-01-15"]
        );
    }

    #[test]
    fn the_oldest_point_in_a_new_period_is_an_ordinary_keep() {
        let times = [
            "2026-12-20 12:00",
            "2026-12-27 12:00",
            "2026-12-31 12:00",
            "2027-01-01 12:00",
            "2027-01-03 12:00",
            "2027-01-04 12:00",
            "2027-01-10 12:00",
        ];
        let history = points(&times);
        let weekly = Policy {
            keep_weekly: Some(Keep::Unlimited),
            ..Policy::default()
        };
        let want = [
            "2027-01-10 12:00",
            "2027-01-03 12:00",
            "2026-12-27 12:00",
            "2026-12-20 12:00",
        ];
        assert_eq!(kept_at(&weekly, &history, "2027-02-01 00:00", 0), want);
        let oldest = reasons_of(&weekly, &history, "2026-12-20 12:00");
        assert_eq!(oldest, ["weekly 2026-W51"]);
        assert_eq!(
            reasons_of(&weekly, &history, "2027-01-03 12:00"),
            ["weekly 2026-W53"]
        );

        let monthly = Policy {
            keep_monthly: Some(Keep::Unlimited),
            ..Policy::default()
        };
        let want = ["2027-01-10 12:00", "2026-12-31 12:00", "2026-12-20 12:00"];
        assert_eq!(kept_at(&monthly, &history, "2027-02-01 00:00", 0), want);
        let oldest = reasons_of(&monthly, &history, "2026-12-20 12:00");
        assert_eq!(oldest, ["oldest monthly 2026-12"]);
    }

    #[test]
    fn within_counts_back_from_the_newest_point_not_from_now() {
        let within_7d = Policy {
            keep_within: span("7d"),
            ..Policy::default()
        };
        let want = [
            "2027-03-10 09:00",
            "2027-03-10 08:30",
            "2027-03-10 08:10",
            "2027-03-09 23:00",
            "2027-03-07 12:00",
        ];
        assert_eq!(kept(&within_7d), want);
        // A year after the newest point the window still ends at the newest point.
        assert_eq!(
            kept_at(&within_7d, &points(&HISTORY), "2028-03-10 00:00", 0),
            want
        );
        assert_eq!(
            reasons_of(&within_7d, &points(&HISTORY), "2027-03-07 12:00"),
            ["within 7d"]
        );

        // 1y back from 2027-03-10 09:00 is 2026-03-10 09:00.
        let within_1y = Policy {
            keep_within: span("1y"),
            ..Policy::default()
        };
        let mut want: Vec<&str> = HISTORY
            .iter()
            .copied()
            .filter(|t| *t > "2026-03-10")
            .collect();
        want.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(want.len(), 14);
        assert_eq!(kept(&within_1y), want);

        // The window is open at its start: a point exactly 7 days older is out.
        let edge = points(&["2027-03-10 09:00", "2027-03-03 09:00", "2027-03-03 09:01"]);
        let want = ["2027-03-10 09:00", "2027-03-03 09:01"];
        assert_eq!(kept_at(&within_7d, &edge, NOW, 0), want);
        // One month before 31 March is 3 March (Go's AddDate rolls 31 February over).
        let month_end = points(&["2027-03-31 00:00", "2027-03-03 00:00", "2027-03-03 00:01"]);
        let within_1m = Policy {
            keep_within: span("1m"),
            ..Policy::default()
        };
        let want = ["2027-03-31 00:00", "2027-03-03 00:01"];
        assert_eq!(kept_at(&within_1m, &month_end, "2027-04-01 00:00", 0), want);
    }

    #[test]
    fn within_period_rules_keep_the_newest_of_each_period_in_the_window() {
        let cases: Vec<(&str, Policy, Vec<&str>)> = vec![
            (
                // Window after 2027-03-09 09:00.
                "within-hourly 1d",
                Policy {
                    keep_within_hourly: span("1d"),
                    ..Policy::default()
                },
                vec!["2027-03-10 09:00", "2027-03-10 08:30", "2027-03-09 23:00"],
            ),
            (
                // Window after 2027-02-28 09:00.
                "within-daily 10d",
                Policy {
                    keep_within_daily: span("10d"),
                    ..Policy::default()
                },
                vec!["2027-03-10 09:00", "2027-03-09 23:00", "2027-03-07 12:00"],
            ),
            (
                // Window after 2026-12-10 09:00: 12-24 is out-voted by 12-27 (both W52).
                "within-weekly 3m",
                Policy {
                    keep_within_weekly: span("3m"),
                    ..Policy::default()
                },
                vec![
                    "2027-03-10 09:00",
                    "2027-03-07 12:00",
                    "2027-02-14 12:00",
                    "2027-01-04 00:00",
                    "2027-01-03 23:00",
                    "2026-12-27 22:00",
                ],
            ),
            (
                // Window after 2026-03-10 09:00.
                "within-monthly 1y",
                Policy {
                    keep_within_monthly: span("1y"),
                    ..Policy::default()
                },
                vec![
                    "2027-03-10 09:00",
                    "2027-02-14 12:00",
                    "2027-01-04 00:00",
                    "2026-12-28 01:00",
                    "2026-11-29 10:00",
                    "2026-06-15 06:00",
                ],
            ),
            (
                // Everything is in the window, so the oldest point is kept too.
                "within-yearly 5y",
                Policy {
                    keep_within_yearly: span("5y"),
                    ..Policy::default()
                },
                vec![
                    "2027-03-10 09:00",
                    "2026-12-28 01:00",
                    "2025-12-29 12:00",
                    "2025-01-15 07:00",
                ],
            ),
        ];
        for (name, policy, want) in cases {
            assert_eq!(kept(&policy), want, "{name}");
        }
        let within_daily = Policy {
            keep_within_daily: span("10d"),
            ..Policy::default()
        };
        let reasons = reasons_of(&within_daily, &points(&HISTORY), "2027-03-09 23:00");
        assert_eq!(reasons, ["within-daily 2027-03-09"]);
        let within_yearly = Policy {
            keep_within_yearly: span("5y"),
            ..Policy::default()
        };
        let reasons = reasons_of(&within_yearly, &points(&HISTORY), "2025-01-15 07:00");
        assert_eq!(reasons, ["oldest within-yearly 2025"]);
    }

    #[test]
    fn rules_are_ored_and_every_keeping_rule_is_named() {
        let policy = Policy {
            keep_last: Some(Keep::Count(2)),
            keep_daily: Some(Keep::Count(3)),
            keep_weekly: Some(Keep::Count(4)),
            keep_monthly: Some(Keep::Count(6)),
            keep_yearly: Some(Keep::Unlimited),
            ..Policy::default()
        };
        let want = [
            "2027-03-10 09:00", // last, daily, weekly, monthly, yearly
            "2027-03-10 08:30", // last
            "2027-03-09 23:00", // daily
            "2027-03-07 12:00", // daily, weekly
            "2027-02-14 12:00", // weekly, monthly
            "2027-01-04 00:00", // weekly, monthly
            "2026-12-28 01:00", // monthly, yearly
            "2026-11-29 10:00", // monthly
            "2026-06-15 06:00", // monthly
            "2025-12-29 12:00", // yearly
            "2025-01-15 07:00", // oldest yearly
        ];
        assert_eq!(kept(&policy), want);
        let history = points(&HISTORY);
        assert_eq!(
            reasons_of(&policy, &history, "2027-03-10 09:00"),
            [
                "last 2",
                "daily 2027-03-10",
                "weekly 2027-W10",
                "monthly 2027-03",
                "yearly 2027"
            ]
        );
        assert_eq!(
            reasons_of(&policy, &history, "2026-12-28 01:00"),
            ["monthly 2026-12", "yearly 2026"]
        );
        assert!(reasons_of(&policy, &history, "2027-03-10 08:10").is_empty());
    }

    #[test]
    fn typical_policy_over_three_years_of_daily_points() {
        let start = days_from_civil(2025, 1, 1);
        let end = days_from_civil(2027, 12, 31);
        let history: Vec<PointInfo> = (start..=end)
            .map(|day| {
                let (y, m, d) = crate::retention::calendar::civil_from_days(day);
                point(&format!("{y:04}-{m:02}-{d:02} 03:00"))
            })
            .collect();
        assert_eq!(history.len(), 365 * 3);
        let mut policy = Policy {
            keep_daily: Some(Keep::Count(7)),
            keep_weekly: Some(Keep::Count(5)),
            keep_monthly: Some(Keep::Count(12)),
            keep_yearly: Some(Keep::Count(3)),
            ..Policy::default()
        };
        // 2027-12-31 is a Friday of 2027-W52; the four weeks before end on Sundays.
        let want = [
            "2027-12-31 03:00",
            "2027-12-30 03:00",
            "2027-12-29 03:00",
            "2027-12-28 03:00",
            "2027-12-27 03:00",
            "2027-12-26 03:00",
            "2027-12-25 03:00", // daily
            "2027-12-19 03:00",
            "2027-12-12 03:00",
            "2027-12-05 03:00", // weekly
            "2027-11-30 03:00",
            "2027-10-31 03:00",
            "2027-09-30 03:00",
            "2027-08-31 03:00",
            "2027-07-31 03:00",
            "2027-06-30 03:00",
            "2027-05-31 03:00",
            "2027-04-30 03:00",
            "2027-03-31 03:00",
            "2027-02-28 03:00",
            "2027-01-31 03:00", // monthly
            "2026-12-31 03:00",
            "2025-12-31 03:00", // yearly
        ];
        assert_eq!(kept_at(&policy, &history, "2028-01-01 00:00", 0), want);
        policy.keep_yearly = Some(Keep::Count(4));
        let with_oldest = kept_at(&policy, &history, "2028-01-01 00:00", 0);
        assert_eq!(with_oldest[..want.len()], want);
        assert_eq!(with_oldest[want.len()..], ["2025-01-01 03:00"]);
    }

    #[test]
    fn tagged_protected_and_ineligible_points_are_kept() {
        let mut history = points(&HISTORY);
        let set = |history: &mut Vec<PointInfo>, id: &str, edit: &dyn Fn(&mut PointInfo)| {
            history.iter_mut().filter(|p| p.id == id).for_each(edit);
        };
        set(&mut history, "2026-06-15 06:00", &|p| {
            p.tags = vec!["monthly".into(), "x".into()]
        });
        set(&mut history, "2025-07-01 00:00", &|p| {
            p.tags = vec!["weekly".into()]
        });
        set(&mut history, "2027-03-10 08:30", &|p| {
            p.tags = vec!["weekly".into()]
        });
        for time in HISTORY.iter().filter(|t| **t > "2025-07-02") {
            set(&mut history, time, &|p| p.tags.push("nightly".into()));
        }
        let tags = Policy {
            keep_tags: vec!["weekly".into(), "monthly".into()],
            ..Policy::default()
        };
        let want = ["2027-03-10 08:30", "2026-06-15 06:00", "2025-07-01 00:00"];
        assert_eq!(kept_at(&tags, &history, NOW, 0), want);
        assert_eq!(
            reasons_of(&tags, &history, "2026-06-15 06:00"),
            ["tag monthly"]
        );
        // restic's empty tag matches untagged points.
        let untagged = Policy {
            keep_tags: vec![String::new()],
            ..Policy::default()
        };
        let want = ["2025-02-01 00:00", "2025-01-15 08:00", "2025-01-15 07:00"];
        assert_eq!(kept_at(&untagged, &history, NOW, 0), want);

        // The running newest point and a seed point are left out of the rules, so keep-last
        // goes to the newest eligible point; a protected point is kept whatever the rules say.
        set(&mut history, "2027-03-10 09:00", &|p| p.eligible = false);
        set(&mut history, "2025-01-15 07:00", &|p| p.eligible = false);
        set(&mut history, "2026-12-27 22:00", &|p| p.protected = true);
        let last_1 = Policy {
            keep_last: Some(Keep::Count(1)),
            ..Policy::default()
        };
        let want = [
            "2027-03-10 09:00",
            "2027-03-10 08:30",
            "2026-12-27 22:00",
            "2025-01-15 07:00",
        ];
        assert_eq!(kept_at(&last_1, &history, NOW, 0), want);
        assert_eq!(
            reasons_of(&last_1, &history, "2027-03-10 09:00"),
            [NOT_REMOVABLE]
        );
        assert_eq!(
            reasons_of(&last_1, &history, "2027-03-10 08:30"),
            ["last 1"]
        );
        assert_eq!(
            reasons_of(&last_1, &history, "2026-12-27 22:00"),
            ["protected"]
        );
        // A protected point takes part in the rules: here it is the newest, so it is keep-last.
        set(&mut history, "2027-03-10 08:30", &|p| p.protected = true);
        assert_eq!(
            reasons_of(&last_1, &history, "2027-03-10 08:30"),
            ["protected", "last 1"]
        );
        // Even a policy that keeps nothing else keeps them.
        let tags = Policy {
            keep_tags: vec!["absent".into()],
            ..Policy::default()
        };
        let want = [
            "2027-03-10 09:00",
            "2027-03-10 08:30",
            "2026-12-27 22:00",
            "2025-01-15 07:00",
        ];
        assert_eq!(kept_at(&tags, &history, NOW, 0), want);
    }

    #[test]
    fn future_points_do_not_move_the_within_window() {
        let mut times = HISTORY.to_vec();
        times.extend(["2027-06-01 00:00", "2028-01-01 00:00"]);
        let history = points(&times);
        let now = "2027-03-10 10:00";
        // The reference is 2027-03-10 09:00, the newest point before now; the future points
        // are after the cutoff, so they are within too.
        let within = Policy {
            keep_within: span("7d"),
            ..Policy::default()
        };
        let want = [
            "2028-01-01 00:00",
            "2027-06-01 00:00",
            "2027-03-10 09:00",
            "2027-03-10 08:30",
            "2027-03-10 08:10",
            "2027-03-09 23:00",
            "2027-03-07 12:00",
        ];
        assert_eq!(kept_at(&within, &history, now, 0), want);
        let within_daily = Policy {
            keep_within_daily: span("2d"),
            ..Policy::default()
        };
        let want = [
            "2028-01-01 00:00",
            "2027-06-01 00:00",
            "2027-03-10 09:00",
            "2027-03-09 23:00",
        ];
        assert_eq!(kept_at(&within_daily, &history, now, 0), want);
        // Count rules see future points as ordinary points.
        let last_2 = Policy {
            keep_last: Some(Keep::Count(2)),
            ..Policy::default()
        };
        assert_eq!(
            kept_at(&last_2, &history, now, 0),
            ["2028-01-01 00:00", "2027-06-01 00:00"]
        );
        let daily_3 = Policy {
            keep_daily: Some(Keep::Count(3)),
            ..Policy::default()
        };
        let want = ["2028-01-01 00:00", "2027-06-01 00:00", "2027-03-10 09:00"];
        assert_eq!(kept_at(&daily_3, &history, now, 0), want);
        // With every point in the future there is no reference: everything is within.
        let within_1d = Policy {
            keep_within: span("1d"),
            ..Policy::default()
        };
        assert_eq!(
            kept_at(&within_1d, &history, "2020-01-01 00:00", 0).len(),
            23
        );
    }

    #[test]
    fn an_empty_policy_removes_nothing() {
        let history = points(&HISTORY);
        let zeroed = Policy {
            keep_last: Some(Keep::Count(0)),
            keep_within: span("0d"),
            local_time: true,
            ..Policy::default()
        };
        for policy in [Policy::default(), zeroed] {
            assert!(policy.is_empty());
            let decisions = decide(&policy, &history, ns(NOW), 0);
            assert!(decisions.iter().all(|d| d.keep));
            assert_eq!(decisions[0].reasons, ["empty policy keeps everything"]);
        }
        assert!(decide(&Policy::default(), &[], ns(NOW), 0).is_empty());
        let last = Policy {
            keep_last: Some(Keep::Count(1)),
            ..Policy::default()
        };
        assert!(decide(&last, &[], ns(NOW), 0).is_empty());
    }

    #[test]
    fn decisions_follow_input_order() {
        let history = points(&HISTORY);
        let last = Policy {
            keep_last: Some(Keep::Count(1)),
            ..Policy::default()
        };
        let decisions = decide(&last, &history, ns(NOW), 0);
        let ids: Vec<&str> = decisions.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, HISTORY);
        assert!(decisions[4].keep && decisions.iter().filter(|d| d.keep).count() == 1);
    }

    #[test]
    fn local_time_buckets_on_the_given_offset() {
        let history = points(&[
            "2026-11-29 23:30",
            "2026-11-30 00:30",
            "2026-11-30 22:30",
            "2026-11-01 12:00",
        ]);
        let mut daily = Policy {
            keep_daily: Some(Keep::Unlimited),
            ..Policy::default()
        };
        // UTC (the offset is ignored without local_time): 00:30 and 22:30 share 11-30.
        let want = ["2026-11-30 22:30", "2026-11-29 23:30", "2026-11-01 12:00"];
        assert_eq!(kept_at(&daily, &history, NOW, 7_200), want);
        // UTC+2: 22:30 is 12-01 00:30 local, while 23:30 and 00:30 share 11-30.
        daily.local_time = true;
        let want = ["2026-11-30 22:30", "2026-11-30 00:30", "2026-11-01 12:00"];
        assert_eq!(kept_at(&daily, &history, NOW, 7_200), want);
        assert_eq!(
            reasons_of_at(&daily, &history, "2026-11-30 22:30", 7_200),
            ["daily 2026-12-01"]
        );
    }

    fn reasons_of_at(policy: &Policy, points: &[PointInfo], id: &str, offset: i32) -> Vec<String> {
        let decisions = decide(policy, points, ns(NOW), offset);
        decisions.into_iter().find(|d| d.id == id).unwrap().reasons
    }

    #[test]
    fn policy_json_round_trips_and_defaults_missing_fields() {
        let policy = Policy {
            keep_daily: Some(Keep::Count(7)),
            keep_yearly: Some(Keep::Unlimited),
            keep_within_daily: span("1y2m"),
            keep_tags: vec!["keep".into()],
            ..Policy::default()
        };
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), policy);
        let short: Policy =
            serde_json::from_str(r#"{"keep_last": -1, "keep_within": "7d"}"#).unwrap();
        assert_eq!(short.keep_last, Some(Keep::Unlimited));
        assert_eq!(short.keep_within, span("7d"));
        assert_eq!(
            serde_json::from_str::<Policy>("{}").unwrap(),
            Policy::default()
        );
        assert!(serde_json::from_str::<Policy>(r#"{"keep_dayly": 3}"#).is_err());
    }
}

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
//! Calendar periods are read in UTC unless [`Policy::local_time`], which reads each point's
//! periods on the [`Clock`] the caller passes to [`decide`] (the local time zone, daylight
//! saving included, as restic does). Pure: no system clock, no time zone database, no catalog.

use serde::{Deserialize, Serialize};

pub use super::limit::{Keep, Span};
use super::rule::evaluate;

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
    /// Read calendar periods on the local clock (the [`Clock`] given to [`decide`]), not UTC.
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

/// A wall clock: its offset from UTC in seconds (east positive) at an instant (ns since the
/// Unix epoch). The offset may change with the instant (daylight saving).
pub type Clock<'a> = &'a dyn Fn(i64) -> i32;

/// The UTC clock.
pub fn utc(_: i64) -> i32 {
    0
}

/// Decides, for every point, keep or remove; one [`Decision`] per point, in input order.
///
/// `local` is the local clock, used only when [`Policy::local_time`] is set: each point's
/// hour, day, week, month and year are those of its own instant on that clock, and a
/// keep-within window is stepped back on the reference point's offset.
///
/// `now_ns` matters only for the keep-within rules, as in restic: their reference is the
/// newest point whose time is before `now_ns`, so a point from a clock set in the future does
/// not shift the window (and, lying after the reference, is itself within it). If every
/// point is in the future, every point is within every window (restic's zero reference).
/// The count rules treat future points as ordinary points.
pub fn decide(policy: &Policy, points: &[PointInfo], now_ns: i64, local: Clock) -> Vec<Decision> {
    let mut reasons: Vec<Vec<String>> = points.iter().map(guard_reasons).collect();
    if policy.is_empty() {
        for point_reasons in &mut reasons {
            point_reasons.push("empty policy keeps everything".to_owned());
        }
    } else {
        let clock = if policy.local_time { local } else { &utc };
        let order = newest_first_eligible(points);
        let rule_reasons = evaluate(policy, points, &order, now_ns, clock);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::calendar::{civil_from_days, days_from_civil};

    /// ns since the epoch of a UTC `YYYY-MM-DD HH:MM` (days_from_civil is checked against
    /// known instants in calendar.rs).
    fn ns(text: &str) -> i64 {
        let field = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap();
        let days = days_from_civil(i64::from(field(0..4)), field(5..7), field(8..10));
        let secs = days * 86_400 + i64::from(field(11..13) * 3_600 + field(14..16) * 60);
        secs * 1_000_000_000
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

    /// A hand-written list of times, `"2027-03-10 09:00, 2027-03-09 23:00"`.
    fn times(list: &str) -> Vec<String> {
        list.split(',').map(|time| time.trim().to_owned()).collect()
    }

    /// A policy in its stored JSON form, e.g. `{"keep_daily": 4}`.
    fn policy(json: &str) -> Policy {
        serde_json::from_str(json).unwrap()
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
    fn kept_at(policy: &Policy, points: &[PointInfo], now: &str, offset: i32) -> Vec<String> {
        let mut kept: Vec<String> = decide(policy, points, ns(now), &|_| offset)
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

    fn reasons_at(policy: &Policy, points: &[PointInfo], id: &str, offset: i32) -> Vec<String> {
        let decisions = decide(policy, points, ns(NOW), &|_| offset);
        decisions.into_iter().find(|d| d.id == id).unwrap().reasons
    }

    fn reasons(policy: &Policy, id: &str) -> Vec<String> {
        reasons_at(policy, &points(&HISTORY), id, 0)
    }

    /// Asserts each (policy, kept times) row against HISTORY.
    fn check_table(rows: &[(&str, &str)]) {
        for (json, want) in rows {
            assert_eq!(kept(&policy(json)), times(want), "{json}");
        }
    }

    #[test]
    fn count_rules_alone() {
        check_table(&[
            (
                r#"{"keep_last": 3}"#,
                "2027-03-10 09:00, 2027-03-10 08:30, 2027-03-10 08:10",
            ),
            // 08:10 shares hour 08 with 08:30, the newer one is kept.
            (
                r#"{"keep_hourly": 3}"#,
                "2027-03-10 09:00, 2027-03-10 08:30, 2027-03-09 23:00",
            ),
            // Three points on 03-10 (the newest is kept); 03-08 has none and uses no slot.
            (
                r#"{"keep_daily": 4}"#,
                "2027-03-10 09:00, 2027-03-09 23:00, 2027-03-07 12:00, 2027-02-14 12:00",
            ),
            // By week: 2027-W10, W09, W06, W01, 2026-W53 (2026-12-28..2027-01-03: only 01-03
            // of its three points), 2026-W52, W48, W25, 2026-W01 (2025-12-29 is 2026-W01 too,
            // and older than 2026-01-01), 2025-W52.
            (
                r#"{"keep_weekly": 10}"#,
                "2027-03-10 09:00, 2027-03-07 12:00, 2027-02-14 12:00, 2027-01-04 00:00, \
                 2027-01-03 23:00, 2026-12-27 22:00, 2026-11-29 10:00, 2026-06-15 06:00, \
                 2026-01-01 00:00, 2025-12-28 12:00",
            ),
            (
                r#"{"keep_monthly": 4}"#,
                "2027-03-10 09:00, 2027-02-14 12:00, 2027-01-04 00:00, 2026-12-28 01:00",
            ),
            // The slots run out on 2025, so the oldest point is not kept.
            (
                r#"{"keep_yearly": 3}"#,
                "2027-03-10 09:00, 2026-12-28 01:00, 2025-12-29 12:00",
            ),
            // A count of 0 is off; the other rules still apply.
            (
                r#"{"keep_last": 0, "keep_yearly": 2}"#,
                "2027-03-10 09:00, 2026-12-28 01:00",
            ),
        ]);
    }

    #[test]
    fn a_count_rule_with_slots_left_keeps_the_oldest_point() {
        let yearly_4 = policy(r#"{"keep_yearly": 4}"#);
        let want = "2027-03-10 09:00, 2026-12-28 01:00, 2025-12-29 12:00, 2025-01-15 07:00";
        assert_eq!(kept(&yearly_4), times(want));
        assert_eq!(
            reasons(&yearly_4, "2025-01-15 07:00"),
            ["oldest yearly 2025"]
        );
        assert!(reasons(&yearly_4, "2025-01-15 08:00").is_empty());

        // 2025-01 already has 08:00; one slot is left for the oldest point.
        let want = "2027-03-10 09:00, 2027-02-14 12:00, 2027-01-04 00:00, 2026-12-28 01:00, \
                    2026-11-29 10:00, 2026-06-15 06:00, 2026-01-01 00:00, 2025-12-29 12:00, \
                    2025-07-01 00:00, 2025-02-01 00:00, 2025-01-15 08:00, 2025-01-15 07:00";
        assert_eq!(kept(&policy(r#"{"keep_monthly": 12}"#)), times(want));

        // Unlimited always has slots: the newest point of every day, plus the oldest point.
        let daily_all = policy(r#"{"keep_daily": "unlimited"}"#);
        let want: Vec<&str> = (HISTORY.iter().copied())
            .filter(|time| !["2027-03-10 08:30", "2027-03-10 08:10"].contains(time))
            .collect();
        let mut want = times(&want.join(","));
        want.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(kept(&daily_all), want);
        let oldest = reasons(&daily_all, "2025-01-15 07:00");
        assert_eq!(oldest, ["oldest daily 2025-01-15"]);
    }

    #[test]
    fn the_oldest_point_in_a_new_period_is_an_ordinary_keep() {
        let history = points(&[
            "2026-12-20 12:00",
            "2026-12-27 12:00",
            "2026-12-31 12:00",
            "2027-01-01 12:00",
            "2027-01-03 12:00",
            "2027-01-04 12:00",
            "2027-01-10 12:00",
        ]);
        let weekly = policy(r#"{"keep_weekly": -1}"#);
        let want = "2027-01-10 12:00, 2027-01-03 12:00, 2026-12-27 12:00, 2026-12-20 12:00";
        assert_eq!(kept_at(&weekly, &history, NOW, 0), times(want));
        let oldest = reasons_at(&weekly, &history, "2026-12-20 12:00", 0);
        assert_eq!(oldest, ["weekly 2026-W51"]);
        let w53 = reasons_at(&weekly, &history, "2027-01-03 12:00", 0);
        assert_eq!(w53, ["weekly 2026-W53"]);

        let monthly = policy(r#"{"keep_monthly": -1}"#);
        let want = "2027-01-10 12:00, 2026-12-31 12:00, 2026-12-20 12:00";
        assert_eq!(kept_at(&monthly, &history, NOW, 0), times(want));
        let oldest = reasons_at(&monthly, &history, "2026-12-20 12:00", 0);
        assert_eq!(oldest, ["oldest monthly 2026-12"]);
    }

    #[test]
    fn within_counts_back_from_the_newest_point_not_from_now() {
        let within_7d = policy(r#"{"keep_within": "7d"}"#);
        let want = times(
            "2027-03-10 09:00, 2027-03-10 08:30, 2027-03-10 08:10, 2027-03-09 23:00, \
             2027-03-07 12:00",
        );
        assert_eq!(kept(&within_7d), want);
        // A year after the newest point the window still ends at the newest point.
        let history = points(&HISTORY);
        assert_eq!(kept_at(&within_7d, &history, "2028-03-10 00:00", 0), want);
        assert_eq!(reasons(&within_7d, "2027-03-07 12:00"), ["within 7d"]);

        // 1y back from 2027-03-10 09:00 is 2026-03-10 09:00.
        let want = "2027-03-10 09:00, 2027-03-10 08:30, 2027-03-10 08:10, 2027-03-09 23:00, \
                    2027-03-07 12:00, 2027-02-14 12:00, 2027-01-04 00:00, 2027-01-03 23:00, \
                    2027-01-01 12:00, 2026-12-28 01:00, 2026-12-27 22:00, 2026-12-24 10:00, \
                    2026-11-29 10:00, 2026-06-15 06:00";
        assert_eq!(kept(&policy(r#"{"keep_within": "1y"}"#)), times(want));

        // The window is open at its start: a point exactly 7 days older is out.
        let edge = points(&["2027-03-10 09:00", "2027-03-03 09:00", "2027-03-03 09:01"]);
        let want = times("2027-03-10 09:00, 2027-03-03 09:01");
        assert_eq!(kept_at(&within_7d, &edge, NOW, 0), want);
        // One month before 31 March is 3 March (Go's AddDate rolls 31 February over).
        let month_end = points(&["2027-03-31 00:00", "2027-03-03 00:00", "2027-03-03 00:01"]);
        let within_1m = policy(r#"{"keep_within": "1m"}"#);
        let want = times("2027-03-31 00:00, 2027-03-03 00:01");
        assert_eq!(kept_at(&within_1m, &month_end, "2027-04-01 00:00", 0), want);
    }

    #[test]
    fn within_period_rules_keep_the_newest_of_each_period_in_the_window() {
        check_table(&[
            // The window starts after 2027-03-09 09:00.
            (
                r#"{"keep_within_hourly": "1d"}"#,
                "2027-03-10 09:00, 2027-03-10 08:30, 2027-03-09 23:00",
            ),
            // After 2027-02-28 09:00.
            (
                r#"{"keep_within_daily": "10d"}"#,
                "2027-03-10 09:00, 2027-03-09 23:00, 2027-03-07 12:00",
            ),
            // After 2026-12-10 09:00: 12-24 loses to 12-27 (both 2026-W52).
            (
                r#"{"keep_within_weekly": "3m"}"#,
                "2027-03-10 09:00, 2027-03-07 12:00, 2027-02-14 12:00, 2027-01-04 00:00, \
                 2027-01-03 23:00, 2026-12-27 22:00",
            ),
            // After 2026-03-10 09:00.
            (
                r#"{"keep_within_monthly": "1y"}"#,
                "2027-03-10 09:00, 2027-02-14 12:00, 2027-01-04 00:00, 2026-12-28 01:00, \
                 2026-11-29 10:00, 2026-06-15 06:00",
            ),
            // Everything is in the window, so the oldest point is kept too.
            (
                r#"{"keep_within_yearly": "5y"}"#,
                "2027-03-10 09:00, 2026-12-28 01:00, 2025-12-29 12:00, 2025-01-15 07:00",
            ),
        ]);
        let within_daily = policy(r#"{"keep_within_daily": "10d"}"#);
        let found = reasons(&within_daily, "2027-03-09 23:00");
        assert_eq!(found, ["within-daily 2027-03-09"]);
        let within_yearly = policy(r#"{"keep_within_yearly": "5y"}"#);
        let found = reasons(&within_yearly, "2025-01-15 07:00");
        assert_eq!(found, ["oldest within-yearly 2025"]);
    }

    #[test]
    fn rules_are_ored_and_every_keeping_rule_is_named() {
        let combined = policy(
            r#"{"keep_last": 2, "keep_daily": 3, "keep_weekly": 4, "keep_monthly": 6,
                "keep_yearly": "unlimited"}"#,
        );
        // last: 03-10 09:00, 08:30; daily: 03-10, 03-09, 03-07; weekly: 03-10, 03-07, 02-14,
        // 01-04; monthly: 2027-03..01, 2026-12, 11, 06; yearly: 2027, 2026, 2025, oldest.
        let want = "2027-03-10 09:00, 2027-03-10 08:30, 2027-03-09 23:00, 2027-03-07 12:00, \
                    2027-02-14 12:00, 2027-01-04 00:00, 2026-12-28 01:00, 2026-11-29 10:00, \
                    2026-06-15 06:00, 2025-12-29 12:00, 2025-01-15 07:00";
        assert_eq!(kept(&combined), times(want));
        assert_eq!(
            reasons(&combined, "2027-03-10 09:00"),
            [
                "last 2",
                "daily 2027-03-10",
                "weekly 2027-W10",
                "monthly 2027-03",
                "yearly 2027"
            ]
        );
        let found = reasons(&combined, "2026-12-28 01:00");
        assert_eq!(found, ["monthly 2026-12", "yearly 2026"]);
        assert!(reasons(&combined, "2027-03-10 08:10").is_empty());
    }

    #[test]
    fn typical_policy_over_three_years_of_daily_points() {
        let days = days_from_civil(2025, 1, 1)..=days_from_civil(2027, 12, 31);
        let history: Vec<PointInfo> = days
            .map(|day| {
                let (y, m, d) = civil_from_days(day);
                point(&format!("{y:04}-{m:02}-{d:02} 03:00"))
            })
            .collect();
        assert_eq!(history.len(), 365 * 3);
        let mut typical =
            policy(r#"{"keep_daily": 7, "keep_weekly": 5, "keep_monthly": 12, "keep_yearly": 3}"#);
        // 2027-12-31 is a Friday of 2027-W52; the four weeks before it end on Sundays.
        let want = times(
            "2027-12-31 03:00, 2027-12-30 03:00, 2027-12-29 03:00, 2027-12-28 03:00, \
             2027-12-27 03:00, 2027-12-26 03:00, 2027-12-25 03:00, \
             2027-12-19 03:00, 2027-12-12 03:00, 2027-12-05 03:00, \
             2027-11-30 03:00, 2027-10-31 03:00, 2027-09-30 03:00, 2027-08-31 03:00, \
             2027-07-31 03:00, 2027-06-30 03:00, 2027-05-31 03:00, 2027-04-30 03:00, \
             2027-03-31 03:00, 2027-02-28 03:00, 2027-01-31 03:00, \
             2026-12-31 03:00, 2025-12-31 03:00",
        );
        let now = "2028-01-01 00:00";
        assert_eq!(kept_at(&typical, &history, now, 0), want);
        typical.keep_yearly = Some(Keep::Count(4));
        let with_oldest = kept_at(&typical, &history, now, 0);
        assert_eq!(with_oldest[..want.len()], want);
        assert_eq!(with_oldest[want.len()..], ["2025-01-01 03:00"]);
    }

    fn edit(history: &mut [PointInfo], id: &str, change: impl Fn(&mut PointInfo)) {
        history.iter_mut().filter(|p| p.id == id).for_each(change);
    }

    #[test]
    fn tagged_points_are_kept() {
        let mut history = points(&HISTORY);
        edit(&mut history, "2026-06-15 06:00", |p| {
            p.tags = vec!["monthly".into(), "x".into()]
        });
        edit(&mut history, "2025-07-01 00:00", |p| {
            p.tags = vec!["weekly".into()]
        });
        edit(&mut history, "2027-03-10 08:30", |p| {
            p.tags = vec!["weekly".into()]
        });
        for time in HISTORY.iter().filter(|t| **t > "2025-07-02") {
            edit(&mut history, time, |p| p.tags.push("nightly".into()));
        }
        let tags = policy(r#"{"keep_tags": ["weekly", "monthly"]}"#);
        let want = times("2027-03-10 08:30, 2026-06-15 06:00, 2025-07-01 00:00");
        assert_eq!(kept_at(&tags, &history, NOW, 0), want);
        let found = reasons_at(&tags, &history, "2026-06-15 06:00", 0);
        assert_eq!(found, ["tag monthly"]);
        // restic's empty tag matches untagged points.
        let untagged = policy(r#"{"keep_tags": [""]}"#);
        let want = times("2025-02-01 00:00, 2025-01-15 08:00, 2025-01-15 07:00");
        assert_eq!(kept_at(&untagged, &history, NOW, 0), want);
    }

    #[test]
    fn protected_and_ineligible_points_are_never_removed() {
        let mut history = points(&HISTORY);
        // The running newest point and a seed point are left out of the rules, so keep-last
        // goes to the newest eligible point; a protected point is kept whatever the rules say.
        edit(&mut history, "2027-03-10 09:00", |p| p.eligible = false);
        edit(&mut history, "2025-01-15 07:00", |p| p.eligible = false);
        edit(&mut history, "2026-12-27 22:00", |p| p.protected = true);
        let last_1 = policy(r#"{"keep_last": 1}"#);
        let want = times("2027-03-10 09:00, 2027-03-10 08:30, 2026-12-27 22:00, 2025-01-15 07:00");
        assert_eq!(kept_at(&last_1, &history, NOW, 0), want);
        let found = |id| reasons_at(&last_1, &history, id, 0);
        assert_eq!(found("2027-03-10 09:00"), [NOT_REMOVABLE]);
        assert_eq!(found("2027-03-10 08:30"), ["last 1"]);
        assert_eq!(found("2026-12-27 22:00"), ["protected"]);
        // A protected point takes part in the rules: as the newest, it is also keep-last.
        edit(&mut history, "2027-03-10 08:30", |p| p.protected = true);
        let found = reasons_at(&last_1, &history, "2027-03-10 08:30", 0);
        assert_eq!(found, ["protected", "last 1"]);
        // A policy that keeps nothing else keeps them all the same.
        let nothing = policy(r#"{"keep_tags": ["absent"]}"#);
        assert_eq!(kept_at(&nothing, &history, NOW, 0), want);
    }

    #[test]
    fn future_points_do_not_move_the_within_window() {
        let mut all = HISTORY.to_vec();
        all.extend(["2027-06-01 00:00", "2028-01-01 00:00"]);
        let history = points(&all);
        let now = "2027-03-10 10:00";
        // The reference is 2027-03-10 09:00, the newest point before now; the future points
        // are after the cutoff, so they are within too.
        let within = policy(r#"{"keep_within": "7d"}"#);
        let want = times(
            "2028-01-01 00:00, 2027-06-01 00:00, 2027-03-10 09:00, 2027-03-10 08:30, \
             2027-03-10 08:10, 2027-03-09 23:00, 2027-03-07 12:00",
        );
        assert_eq!(kept_at(&within, &history, now, 0), want);
        let within_daily = policy(r#"{"keep_within_daily": "2d"}"#);
        let want = times("2028-01-01 00:00, 2027-06-01 00:00, 2027-03-10 09:00, 2027-03-09 23:00");
        assert_eq!(kept_at(&within_daily, &history, now, 0), want);
        // Count rules see future points as ordinary points.
        let last_2 = policy(r#"{"keep_last": 2}"#);
        let want = times("2028-01-01 00:00, 2027-06-01 00:00");
        assert_eq!(kept_at(&last_2, &history, now, 0), want);
        let daily_3 = policy(r#"{"keep_daily": 3}"#);
        let want = times("2028-01-01 00:00, 2027-06-01 00:00, 2027-03-10 09:00");
        assert_eq!(kept_at(&daily_3, &history, now, 0), want);
        // With every point in the future there is no reference: everything is within.
        let within_1d = policy(r#"{"keep_within": "1d"}"#);
        assert_eq!(
            kept_at(&within_1d, &history, "2020-01-01 00:00", 0).len(),
            23
        );
    }

    #[test]
    fn an_empty_policy_removes_nothing() {
        let history = points(&HISTORY);
        let zeroed = policy(r#"{"keep_last": 0, "keep_within": "0d", "local_time": true}"#);
        for empty in [Policy::default(), zeroed] {
            assert!(empty.is_empty());
            let decisions = decide(&empty, &history, ns(NOW), &utc);
            assert!(decisions.iter().all(|d| d.keep));
            assert_eq!(decisions[0].reasons, ["empty policy keeps everything"]);
        }
        assert!(decide(&Policy::default(), &[], ns(NOW), &utc).is_empty());
        assert!(decide(&policy(r#"{"keep_last": 1}"#), &[], ns(NOW), &utc).is_empty());
    }

    #[test]
    fn decisions_follow_input_order() {
        let decisions = decide(
            &policy(r#"{"keep_last": 1}"#),
            &points(&HISTORY),
            ns(NOW),
            &utc,
        );
        let ids: Vec<&str> = decisions.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, HISTORY);
        let kept: Vec<usize> = (0..decisions.len())
            .filter(|&i| decisions[i].keep)
            .collect();
        assert_eq!(kept, [4]);
    }

    #[test]
    fn local_time_buckets_on_the_given_offset() {
        let history = points(&[
            "2026-11-29 23:30",
            "2026-11-30 00:30",
            "2026-11-30 22:30",
            "2026-11-01 12:00",
        ]);
        let mut daily = policy(r#"{"keep_daily": "unlimited"}"#);
        // UTC (the offset is ignored without local_time): 00:30 and 22:30 share 11-30.
        let want = times("2026-11-30 22:30, 2026-11-29 23:30, 2026-11-01 12:00");
        assert_eq!(kept_at(&daily, &history, NOW, 7_200), want);
        // UTC+2: 22:30 is 12-01 00:30 local, while 23:30 and 00:30 share 11-30.
        daily.local_time = true;
        let want = times("2026-11-30 22:30, 2026-11-30 00:30, 2026-11-01 12:00");
        assert_eq!(kept_at(&daily, &history, NOW, 7_200), want);
        let found = reasons_at(&daily, &history, "2026-11-30 22:30", 7_200);
        assert_eq!(found, ["daily 2026-12-01"]);
    }

    #[test]
    fn local_time_reads_each_point_on_its_own_offset() {
        // A clock on UTC+1 until 2026-03-29 01:00 UTC and on UTC+2 after (CET, then CEST).
        let switch = ns("2026-03-29 01:00");
        let cet_cest = |at: i64| if at < switch { 3_600 } else { 7_200 };
        let history = points(&["2026-01-10 23:30", "2026-07-01 22:30", "2026-07-01 21:30"]);
        let mut daily = policy(r#"{"keep_daily": "unlimited", "local_time": true}"#);
        let decisions = decide(&daily, &history, ns(NOW), &cet_cest);
        let reasons: Vec<&Vec<String>> = decisions.iter().map(|d| &d.reasons).collect();
        assert_eq!(reasons[0], &["daily 2026-01-11"]);
        assert_eq!(reasons[1], &["daily 2026-07-02"]);
        assert_eq!(reasons[2], &["daily 2026-07-01"]);
        daily.local_time = false;
        let decisions = decide(&daily, &history, ns(NOW), &cet_cest);
        assert_eq!(decisions[0].reasons, ["daily 2026-01-10"]);
    }

    #[test]
    fn policy_json_round_trips_and_defaults_missing_fields() {
        let full = Policy {
            keep_daily: Some(Keep::Count(7)),
            keep_yearly: Some(Keep::Unlimited),
            keep_within_daily: Some(Span::parse("1y2m").unwrap()),
            keep_tags: vec!["keep".into()],
            ..Policy::default()
        };
        let json = serde_json::to_string(&full).unwrap();
        assert_eq!(policy(&json), full);
        let short = policy(r#"{"keep_last": -1, "keep_within": "7d"}"#);
        assert_eq!(short.keep_last, Some(Keep::Unlimited));
        assert_eq!(short.keep_within, Some(Span::parse("7d").unwrap()));
        assert_eq!(policy("{}"), Policy::default());
        assert!(serde_json::from_str::<Policy>(r#"{"keep_dayly": 3}"#).is_err());
    }
}

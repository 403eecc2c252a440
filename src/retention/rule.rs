//! The rules of a [`Policy`] as they walk the points newest first: a count rule per period
//! (with keep-last as the period of one point), keep-within, keep-within-<period> and
//! keep-tag, each naming the reason it keeps a point. Restic's `ApplyPolicy` loop, in Rust.
//!
//! Knows nothing of protection or eligibility: [`super::policy::decide`] passes only the
//! points the rules may weigh.

use super::calendar::{step_back_ns, Civil};
use super::limit::{Keep, Span};
use super::policy::{Clock, PointInfo, Policy};

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
    /// The span is stepped back on the wall clock of the reference point's offset.
    fn new(reference_ns: Option<i64>, span: Span, clock: Clock) -> Window {
        match reference_ns {
            None => Window::Everything,
            Some(ns) => Window::After(step_back_ns(ns, clock(ns), span.parts())),
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

/// Reasons for each point of `order` (indices into `points`, newest first), from the
/// policy's rules, in the same order. `clock` gives the offset from UTC the periods are read
/// on at each instant (see [`super::policy::Clock`]).
pub(super) fn evaluate(
    policy: &Policy,
    points: &[PointInfo],
    order: &[usize],
    now_ns: i64,
    clock: Clock,
) -> Vec<Vec<String>> {
    let reference_ns = order
        .iter()
        .map(|&index| points[index].time_ns)
        .find(|&time_ns| time_ns < now_ns);
    let within =
        active_span(policy.keep_within).map(|span| (span, Window::new(reference_ns, span, clock)));
    let mut count_rules = count_rules(policy);
    let mut within_rules = within_rules(policy, reference_ns, clock);
    let oldest_position = order.len().saturating_sub(1);
    order
        .iter()
        .enumerate()
        .map(|(position, &index)| {
            let point = &points[index];
            let at = Civil::of(point.time_ns, clock(point.time_ns));
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

fn within_rules(policy: &Policy, reference_ns: Option<i64>, clock: Clock) -> Vec<WithinRule> {
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
            window: Window::new(reference_ns, span, clock),
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

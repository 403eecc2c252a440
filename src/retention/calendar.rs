//! Proleptic Gregorian calendar arithmetic for retention buckets: civil date and hour of an
//! instant, ISO weeks, and restic's "go back N years, months, days, hours" step.
//!
//! Pure integer math on ns since the Unix epoch shifted by a fixed UTC offset; no time zone
//! database, no clock. Intermediate results are `i128` so no input can overflow.

const NS_PER_SEC: i128 = 1_000_000_000;
const NS_PER_HOUR: i128 = 3_600 * NS_PER_SEC;
const NS_PER_DAY: i128 = 86_400 * NS_PER_SEC;

/// The calendar fields of one instant as seen at one fixed UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    /// ISO 8601 week-numbering year: differs from `year` for a few days around 1 January.
    pub iso_year: i64,
    /// ISO 8601 week, 1..=53; weeks run Monday to Sunday.
    pub iso_week: u32,
}

impl Civil {
    /// The fields of `time_ns` (UTC) on a wall clock `offset_secs` ahead of UTC.
    pub fn of(time_ns: i64, offset_secs: i32) -> Civil {
        let wall_ns = i128::from(time_ns) + i128::from(offset_secs) * NS_PER_SEC;
        let days = wall_ns.div_euclid(NS_PER_DAY) as i64;
        let hour = (wall_ns.rem_euclid(NS_PER_DAY) / NS_PER_HOUR) as u32;
        let (year, month, day) = civil_from_days(days);
        let (iso_year, iso_week) = iso_week_of_days(days);
        Civil {
            year,
            month,
            day,
            hour,
            iso_year,
            iso_week,
        }
    }
}

pub(crate) use crate::time::{civil_from_days, days_from_civil};

/// ISO 8601 (year, week) of a day number: the week belongs to the year holding its Thursday.
fn iso_week_of_days(days: i64) -> (i64, u32) {
    // 1970-01-01 was a Thursday; Monday = 0.
    let weekday = (days + 3).rem_euclid(7);
    let thursday = days - weekday + 3;
    let (iso_year, _, _) = civil_from_days(thursday);
    let week = (thursday - days_from_civil(iso_year, 1, 1)) / 7 + 1;
    (iso_year, week as u32)
}

/// `time_ns` moved back by `years`, `months` and `days` on the wall clock `offset_secs` ahead
/// of UTC, then by `hours` of elapsed time — what Go's `t.AddDate(-y, -m, -d).Add(-h)` does,
/// which is how restic measures `--keep-within*`. A day past the end of the target month
/// rolls into the next month (31 March minus one month is 3 March, as in Go).
pub(crate) fn step_back_ns(
    time_ns: i64,
    offset_secs: i32,
    (years, months, days, hours): (u32, u32, u32, u32),
) -> i128 {
    let offset_ns = i128::from(offset_secs) * NS_PER_SEC;
    let wall_ns = i128::from(time_ns) + offset_ns;
    let day_number = wall_ns.div_euclid(NS_PER_DAY);
    let time_of_day_ns = wall_ns.rem_euclid(NS_PER_DAY);
    let (year, month, day) = civil_from_days(day_number as i64);
    let month_index =
        i128::from(year) * 12 + i128::from(month) - 1 - i128::from(years) * 12 - i128::from(months);
    let target_year = month_index.div_euclid(12);
    let target_month = (month_index.rem_euclid(12) + 1) as u32;
    // Years far outside i64 cannot occur for real spans; saturate rather than wrap.
    let target_year = i64::try_from(target_year).unwrap_or(i64::MIN / 1_000);
    let first_of_month = i128::from(days_from_civil(target_year, target_month, 1));
    let target_day = first_of_month + i128::from(day) - 1 - i128::from(days);
    target_day * NS_PER_DAY + time_of_day_ns - i128::from(hours) * NS_PER_HOUR - offset_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_civil_matches_known_instants() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        // 2026-11-29T10:15:03Z is 1_795_947_303 s (see time.rs).
        assert_eq!(days_from_civil(2026, 11, 29), 1_795_947_303 / 86_400);
        assert_eq!(days_from_civil(2000, 2, 29), 951_782_400 / 86_400);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        for days in [-800_000, -1, 0, 59, 10_957, 20_786, 3_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn iso_weeks_around_year_boundaries() {
        let week = |y, m, d| iso_week_of_days(days_from_civil(y, m, d));
        // 2026 has 53 ISO weeks: Monday 2026-12-28 to Sunday 2027-01-03 is 2026-W53.
        assert_eq!(week(2026, 12, 27), (2026, 52));
        assert_eq!(week(2026, 12, 28), (2026, 53));
        assert_eq!(week(2027, 1, 1), (2026, 53));
        assert_eq!(week(2027, 1, 3), (2026, 53));
        assert_eq!(week(2027, 1, 4), (2027, 1));
        // 2024-12-30 (Monday) already belongs to 2025-W01.
        assert_eq!(week(2024, 12, 29), (2024, 52));
        assert_eq!(week(2024, 12, 30), (2025, 1));
        assert_eq!(week(2026, 1, 1), (2026, 1));
        assert_eq!(week(2026, 11, 29), (2026, 48));
    }

    #[test]
    fn civil_fields_follow_the_offset() {
        let ns = 1_795_947_303_000_000_000; // 2026-11-29T10:15:03Z
        let utc = Civil::of(ns, 0);
        assert_eq!((utc.year, utc.month, utc.day, utc.hour), (2026, 11, 29, 10));
        let tokyo = Civil::of(ns, 14 * 3600);
        assert_eq!(
            (tokyo.year, tokyo.month, tokyo.day, tokyo.hour),
            (2026, 11, 30, 0)
        );
        let west = Civil::of(ns, -11 * 3600);
        assert_eq!(
            (west.year, west.month, west.day, west.hour),
            (2026, 11, 28, 23)
        );
    }

    #[test]
    fn step_back_rolls_over_like_go_add_date() {
        let at = |y, m, d, h| {
            i128::from(days_from_civil(y, m, d)) * NS_PER_DAY + i128::from(h) * NS_PER_HOUR
        };
        let from = |y, m, d, h| at(y, m, d, h) as i64;
        assert_eq!(
            step_back_ns(from(2026, 3, 31, 5), 0, (0, 1, 0, 0)),
            at(2026, 3, 3, 5)
        );
        assert_eq!(
            step_back_ns(from(2028, 2, 29, 0), 0, (1, 0, 0, 0)),
            at(2027, 3, 1, 0)
        );
        assert_eq!(
            step_back_ns(from(2027, 1, 2, 1), 0, (1, 2, 3, 4)),
            at(2025, 10, 29, 21)
        );
        // On a clock 2 h ahead, 2026-03-31T23:00Z is 1 April 01:00: minus a month is 1 March.
        assert_eq!(
            step_back_ns(from(2026, 3, 31, 23), 7_200, (0, 1, 0, 0)),
            at(2026, 2, 28, 23)
        );
    }
}

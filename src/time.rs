//! Wall-clock time as nanoseconds since the Unix epoch, its UTC text form, and the local time
//! zone's offset (the system's: `TZ`, else `/etc/localtime`).

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ns since the epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The local time zone's offset from UTC in seconds (east positive) at `ns` since the epoch,
/// daylight saving included. A system without a usable time zone is on UTC.
pub fn local_offset_secs(ns: i64) -> i32 {
    static ZONE: OnceLock<jiff::tz::TimeZone> = OnceLock::new();
    let zone = ZONE.get_or_init(jiff::tz::TimeZone::system);
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|at| zone.to_offset(at).seconds())
        .unwrap_or(0)
}

/// `2026-11-24T10:15:03Z` for a time in ns since the epoch.
pub fn format_utc(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// How long before `now_ns` the time `then_ns` was, as people say it: "just now",
/// "5 minutes ago", "2 hours ago", "3 days ago", "7 weeks ago", "2 years ago" (a time after
/// `now_ns`: "in the future").
pub fn ago(now_ns: i64, then_ns: i64) -> String {
    let secs = now_ns.saturating_sub(then_ns) / 1_000_000_000;
    if secs < 0 {
        return "in the future".into();
    }
    const UNITS: [(i64, &str); 5] = [
        (365 * 86_400, "year"),
        (7 * 86_400, "week"),
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
    ];
    // Two of the larger unit at least before it is used: "10 days ago", not "1 week ago".
    for (i, (unit, name)) in UNITS.iter().enumerate() {
        let floor = if i + 1 < UNITS.len() { 2 * unit } else { *unit };
        if secs >= floor {
            let n = secs / unit;
            let plural = if n == 1 { "" } else { "s" };
            return format!("{n} {name}{plural} ago");
        }
    }
    "just now".into()
}

/// Parses a UTC time: `2026-11-24`, `2026-11-24 10:15`, `2026-11-24T10:15:03` (a trailing `Z`
/// is allowed). Returns ns since the epoch, or what is wrong.
pub fn parse_utc(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a UTC time (YYYY-MM-DD[THH:MM[:SS]][Z])");
    let t = text.trim().trim_end_matches('Z');
    let (date, clock) = match t.split_once(['T', ' ']) {
        Some((d, c)) => (d, Some(c)),
        None => (t, None),
    };
    let mut parts = date.split('-');
    let mut num = |max: i64| -> Result<i64, String> {
        let v: i64 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        if v < 0 || v > max {
            return Err(bad());
        }
        Ok(v)
    };
    let (y, m, d) = (num(9999)?, num(12)?, num(31)?);
    if parts.next().is_some() || m == 0 || d == 0 || d > days_in_month(y, m as u32) {
        return Err(bad());
    }
    let mut secs = 0;
    if let Some(clock) = clock {
        let fields: Vec<&str> = clock.split(':').collect();
        if !(2..=3).contains(&fields.len()) {
            return Err(bad());
        }
        let limits = [23, 59, 59];
        for (i, field) in fields.iter().enumerate() {
            let v: i64 = field.parse().map_err(|_| bad())?;
            if !(0..=limits[i]).contains(&v) {
                return Err(bad());
            }
            secs += v * [3600, 60, 1][i];
        }
    }
    let days = days_from_civil(y, m as u32, d as u32);
    (days * 86_400 + secs)
        .checked_mul(1_000_000_000)
        .ok_or_else(bad)
}

fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's civil-to-days algorithm (proleptic Gregorian): days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian): the (year, month, day) of a
/// day number (days since 1970-01-01).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        let s = 1_000_000_000i64;
        let now = 1_000_000 * s;
        for (secs, want) in [
            (0, "just now"),
            (59, "just now"),
            (60, "1 minute ago"),
            (120, "2 minutes ago"),
            (7_199, "119 minutes ago"),
            (7_200, "2 hours ago"),
            (3 * 86_400, "3 days ago"),
            (13 * 86_400, "13 days ago"),
            (15 * 86_400, "2 weeks ago"),
            (800 * 86_400, "2 years ago"),
            (-5, "in the future"),
        ] {
            assert_eq!(ago(now, now - secs * s), want, "{secs} s");
        }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_utc(1_795_947_303_000_000_000),
            "2026-11-29T10:15:03Z"
        );
        assert_eq!(format_utc(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn parses_what_it_formats_and_refuses_the_rest() {
        for ns in [0, 1_795_947_303_000_000_000, 951_782_400_000_000_000] {
            assert_eq!(parse_utc(&format_utc(ns)).unwrap(), ns);
        }
        assert_eq!(parse_utc("2026-11-29").unwrap(), 1_795_910_400_000_000_000);
        assert_eq!(
            parse_utc("2026-11-29 10:15").unwrap(),
            1_795_947_300_000_000_000
        );
        for bad in [
            "",
            "2026-13-01",
            "2026-02-29",
            "2026-11-29T25:00",
            "tomorrow",
            "2026-1",
        ] {
            assert!(parse_utc(bad).is_err(), "{bad}");
        }
    }
}

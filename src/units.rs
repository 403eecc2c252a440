//! Sizes and lengths of time as people read and write them: `1.5 GiB`, `512 B`; `90s`, `24h`.

use std::fmt;
use std::time::Duration;

/// A byte count shown in binary units with one decimal (`3.2 MiB`), exact below 1 KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut v = self.0 as f64;
        let mut unit = 0;
        while v >= 1024.0 && unit < UNITS.len() - 1 {
            v /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{v:.1} {}", UNITS[unit])
        }
    }
}

/// Parses an elapsed time: a whole number and a unit, `s`, `m` (minutes), `h` or `d`
/// (`30s`, `10m`, `24h`, `2d`); `0` alone is none.
pub fn parse_elapsed(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let seconds_per = match unit {
        "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        "d" => Some(86_400),
        _ => None,
    };
    seconds_per
        .zip(digits.parse::<u64>().ok())
        .and_then(|(per, n)| n.checked_mul(per))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            format!(
                "{text:?} is not a length of time: a whole number and s, m, h or d (30s, 10m, 24h)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_of_time_read_with_one_unit() {
        assert_eq!(parse_elapsed("0"), Ok(Duration::ZERO));
        assert_eq!(parse_elapsed("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_elapsed("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_elapsed("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_elapsed("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_elapsed("2d"), Ok(Duration::from_secs(172_800)));
        for bad in [
            "",
            "h",
            "5",
            "1h30m",
            "-1h",
            "1.5h",
            "5w",
            "99999999999999999999d",
        ] {
            assert!(parse_elapsed(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(Bytes(0).to_string(), "0 B");
        assert_eq!(Bytes(1023).to_string(), "1023 B");
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(Bytes(40 << 20).to_string(), "40.0 MiB");
        assert_eq!(Bytes(3 << 40).to_string(), "3.0 TiB");
    }
}

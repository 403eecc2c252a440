//! The two kinds of limit a keep rule carries: a count of periods ([`Keep`]) and a calendar
//! span counted back from the newest point ([`Span`]), with restic's text forms (`7`,
//! `unlimited`, `-1`; `1y2m3d4h`, `7d`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How many periods (or points, for keep-last) a count rule keeps.
///
/// `Count(0)` turns the rule off, as restic's 0 does. Text and JSON accept a number,
/// `unlimited`, or restic's `-1` for unlimited; JSON writes a number or `"unlimited"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "KeepRepr", into = "KeepRepr")]
pub enum Keep {
    /// At most this many.
    Count(u32),
    /// Every period that has a point.
    Unlimited,
}

impl Keep {
    /// Parses `N`, `unlimited` or `-1` (restic's spelling of unlimited).
    pub fn parse(text: &str) -> Result<Keep, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("unlimited") || text == "-1" {
            return Ok(Keep::Unlimited);
        }
        if text.starts_with('-') {
            return Err(format!(
                "negative count {text:?}: only -1 (or 'unlimited') is allowed"
            ));
        }
        text.parse::<u32>()
            .map(Keep::Count)
            .map_err(|_| format!("invalid count {text:?}: expected a whole number or 'unlimited'"))
    }

    /// Whether the rule keeps anything at all (`Count(0)` does not).
    pub fn is_active(self) -> bool {
        self != Keep::Count(0)
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::Count(n) => write!(f, "{n}"),
            Keep::Unlimited => f.write_str("unlimited"),
        }
    }
}

impl FromStr for Keep {
    type Err = String;
    fn from_str(text: &str) -> Result<Keep, String> {
        Keep::parse(text)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum KeepRepr {
    Number(i64),
    Word(String),
}

impl TryFrom<KeepRepr> for Keep {
    type Error = String;
    fn try_from(repr: KeepRepr) -> Result<Keep, String> {
        match repr {
            KeepRepr::Number(n) => Keep::parse(&n.to_string()),
            KeepRepr::Word(word) => Keep::parse(&word),
        }
    }
}

impl From<Keep> for KeepRepr {
    fn from(keep: Keep) -> KeepRepr {
        match keep {
            Keep::Count(n) => KeepRepr::Number(i64::from(n)),
            Keep::Unlimited => KeepRepr::Word("unlimited".to_owned()),
        }
    }
}

/// A calendar span, restic's `--keep-within` duration: years, months, days and hours.
///
/// Subtracted from a time the way restic does (Go's `AddDate(-y, -m, -d)` on the wall clock,
/// then `h` elapsed hours), so `1m` before 31 March is 3 March (or 2 March in a leap year).
/// A zero span turns its rule off, as in restic. JSON holds the text form (`"1y2m3d4h"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Span {
    /// Calendar years.
    pub years: u32,
    /// Calendar months.
    pub months: u32,
    /// Calendar days.
    pub days: u32,
    /// Elapsed hours.
    pub hours: u32,
}

impl Span {
    /// Parses restic's duration syntax: numbers each followed by a unit, `y` (years), `m`
    /// (months), `d` (days) or `h` (hours), in any order, each unit at most once: `7d`, `2y`,
    /// `1y2m3d4h`, `36h`. Negative numbers are refused (restic's `forget` refuses them too).
    pub fn parse(text: &str) -> Result<Span, String> {
        let mut span = Span::default();
        let mut seen = String::new();
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err("empty duration: expected e.g. 7d, 6m, 1y2m3d4h".to_owned());
        }
        while !rest.is_empty() {
            let digits_len = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (digits, tail) = rest.split_at(digits_len);
            if digits.is_empty() {
                return Err(no_number_error(text, tail));
            }
            let number: u32 = digits
                .parse()
                .map_err(|_| format!("number {digits} too large in duration {text:?}"))?;
            let mut chars = tail.chars();
            let unit = chars.next().ok_or_else(|| {
                format!("missing unit after {number} in duration {text:?}: use y, m, d or h")
            })?;
            let field = match unit {
                'y' => &mut span.years,
                'm' => &mut span.months,
                'd' => &mut span.days,
                'h' => &mut span.hours,
                _ => {
                    return Err(format!(
                        "unknown unit {unit:?} in duration {text:?}: use y (years), m (months), \
                         d (days) or h (hours)"
                    ))
                }
            };
            if seen.contains(unit) {
                return Err(format!("unit {unit:?} given twice in duration {text:?}"));
            }
            seen.push(unit);
            *field = number;
            rest = chars.as_str();
        }
        Ok(span)
    }

    /// Whether every field is zero (the rule is off).
    pub fn is_zero(&self) -> bool {
        *self == Span::default()
    }

    /// The fields as (years, months, days, hours).
    pub(crate) fn parts(&self) -> (u32, u32, u32, u32) {
        (self.years, self.months, self.days, self.hours)
    }
}

fn no_number_error(text: &str, at: &str) -> String {
    if at.starts_with('-') {
        format!("negative duration {text:?} is not allowed")
    } else {
        format!("expected a number at {at:?} in duration {text:?}")
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0d");
        }
        for (value, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if value != 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Span {
    type Err = String;
    fn from_str(text: &str) -> Result<Span, String> {
        Span::parse(text)
    }
}

impl TryFrom<String> for Span {
    type Error = String;
    fn try_from(text: String) -> Result<Span, String> {
        Span::parse(&text)
    }
}

impl From<Span> for String {
    fn from(span: Span) -> String {
        span.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(years: u32, months: u32, days: u32, hours: u32) -> Span {
        Span {
            years,
            months,
            days,
            hours,
        }
    }

    #[test]
    fn span_parses_restic_durations() {
        assert_eq!(Span::parse("7d"), Ok(span(0, 0, 7, 0)));
        assert_eq!(Span::parse("2y"), Ok(span(2, 0, 0, 0)));
        assert_eq!(Span::parse("1y2m3d4h"), Ok(span(1, 2, 3, 4)));
        assert_eq!(Span::parse("4h3d"), Ok(span(0, 0, 3, 4)));
        assert_eq!(Span::parse(" 36h "), Ok(span(0, 0, 0, 36)));
        assert_eq!(Span::parse("0d"), Ok(span(0, 0, 0, 0)));
        assert_eq!(Span::parse("007m"), Ok(span(0, 7, 0, 0)));
    }

    #[test]
    fn span_refuses_bad_durations_with_a_reason() {
        let cases = [
            ("", "empty duration"),
            ("   ", "empty duration"),
            ("7", "missing unit after 7"),
            ("d", "expected a number at \"d\""),
            ("7w", "unknown unit 'w'"),
            ("7D", "unknown unit 'D'"),
            ("1d2d", "unit 'd' given twice"),
            ("-7d", "negative duration"),
            ("1y-2m", "negative duration"),
            ("7 d", "unknown unit ' '"),
            ("99999999999d", "too large"),
            ("1.5d", "unknown unit '.'"),
        ];
        for (text, want) in cases {
            let err = Span::parse(text).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn span_text_and_json_round_trip() {
        for text in ["1y2m3d4h", "7d", "2y", "5h", "0d"] {
            let parsed = Span::parse(text).unwrap();
            assert_eq!(parsed.to_string(), text);
            let json = serde_json::to_string(&parsed).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Span>(&json).unwrap(), parsed);
        }
        assert!(serde_json::from_str::<Span>("\"7w\"").is_err());
    }

    #[test]
    fn keep_parses_counts_and_unlimited() {
        assert_eq!(Keep::parse("7"), Ok(Keep::Count(7)));
        assert_eq!(Keep::parse("0"), Ok(Keep::Count(0)));
        assert_eq!(Keep::parse("unlimited"), Ok(Keep::Unlimited));
        assert_eq!(Keep::parse("-1"), Ok(Keep::Unlimited));
        assert!(Keep::parse("-2").unwrap_err().contains("only -1"));
        assert!(Keep::parse("seven").unwrap_err().contains("invalid count"));
        assert!(!Keep::Count(0).is_active());
        assert!(Keep::Unlimited.is_active());
    }

    #[test]
    fn keep_json_accepts_minus_one_and_writes_unlimited() {
        assert_eq!(serde_json::from_str::<Keep>("3").unwrap(), Keep::Count(3));
        assert_eq!(serde_json::from_str::<Keep>("-1").unwrap(), Keep::Unlimited);
        assert_eq!(
            serde_json::from_str::<Keep>("\"unlimited\"").unwrap(),
            Keep::Unlimited
        );
        assert!(serde_json::from_str::<Keep>("-5").is_err());
        assert_eq!(serde_json::to_string(&Keep::Count(3)).unwrap(), "3");
        assert_eq!(
            serde_json::to_string(&Keep::Unlimited).unwrap(),
            "\"unlimited\""
        );
    }
}

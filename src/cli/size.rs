//! Sizes on the command line (`256M`, `1.5G`, `4096`): binary units, whole bytes, and bounds
//! that each flag states, so a typo such as `--cache-size 1` is an error rather than a cache of
//! one byte.

use anyhow::anyhow;
use synvault::Error;

use super::output::bytes;

/// The largest size any flag takes: 1 EiB. Keeps the arithmetic far from `u64::MAX`.
const MAX_ANY_BYTES: u64 = 1 << 60;

/// Parses `text` as a size in bytes: a number with an optional unit K, M, G, T or P (powers of
/// 1024, with or without a trailing `iB`/`B`).
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        "P" | "PB" | "PIB" => 50,
        _ => return Err(format!("{text:?} is not a size (e.g. 512M, 1.5G)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 512M, 1.5G)"))?;
    let total = value * (1u64 << shift) as f64;
    if !total.is_finite() || total > MAX_ANY_BYTES as f64 {
        return Err(format!("{text:?} is too large"));
    }
    if total.fract() != 0.0 {
        return Err(format!("{text:?} is not a whole number of bytes"));
    }
    Ok(total as u64)
}

/// Parses the value of `flag` and checks it lies in `min..=max`; the error is a usage error
/// that names the flag and the bounds.
pub fn parse_bounded(flag: &str, text: &str, min: u64, max: u64) -> anyhow::Result<u64> {
    let usage = |why: String| anyhow!(Error::InvalidArgument(format!("{flag}: {why}")));
    let value = parse(text).map_err(usage)?;
    if !(min..=max).contains(&value) {
        return Err(usage(format!(
            "{text:?} is out of range: give {} to {}",
            bytes(min),
            bytes(max)
        )));
    }
    Ok(value)
}

/// Bounds of a decoded-block cache: room for a few of the largest blocks (4 MiB), and no
/// more than this machine's memory.
pub fn cache_size(text: &str) -> anyhow::Result<usize> {
    const MIN_CACHE_BYTES: u64 = 16 << 20;
    let info = rustix::system::sysinfo();
    let memory = (info.totalram as u64).saturating_mul(u64::from(info.mem_unit.max(1)));
    let max = memory.max(MIN_CACHE_BYTES);
    let value = parse_bounded("--cache-size", text, MIN_CACHE_BYTES, max)?;
    Ok(usize::try_from(value).unwrap_or(usize::MAX))
}

/// Bounds of a seed disk's size: at least a few MiB (whether a pack fits is for `seed
/// prepare` to say), at most an exbibyte.
pub fn disk_size(text: &str) -> anyhow::Result<u64> {
    const MIN_DISK_BYTES: u64 = 1 << 20;
    parse_bounded("--disk-size", text, MIN_DISK_BYTES, MAX_ANY_BYTES)
}

/// Bounds of a file size limit (`--exclude-larger-than`): any size, 0 leaving out every file
/// that is not empty.
pub fn file_size_limit(text: &str) -> anyhow::Result<u64> {
    parse_bounded("--exclude-larger-than", text, 0, MAX_ANY_BYTES)
}

/// Bounds of a thread count: at least one, and no more than a few per core of a large
/// machine.
pub fn threads(flag: &str, n: usize) -> anyhow::Result<usize> {
    const MAX_THREADS: usize = 1024;
    if !(1..=MAX_THREADS).contains(&n) {
        return Err(anyhow!(Error::InvalidArgument(format!(
            "{flag}: {n} is out of range: give 1 to {MAX_THREADS}"
        ))));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_whole_bytes() {
        assert_eq!(parse("250M").unwrap(), 250 << 20);
        assert_eq!(parse("8T").unwrap(), 8 << 40);
        assert_eq!(parse("1.5k").unwrap(), 1536);
        assert_eq!(parse("4096").unwrap(), 4096);
        assert_eq!(parse("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse("1 MB").unwrap(), 1 << 20);
        for bad in [
            "lots",
            "-1M",
            "0.1",
            "1.2.3M",
            "",
            "M",
            "99999999999T",
            "1e9",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(cache_size("1").is_err());
        assert!(cache_size("0.1").is_err());
        assert!(cache_size("99999999999T").is_err());
        assert_eq!(cache_size("256M").unwrap(), 256 << 20);
        assert!(threads("--threads", 0).is_err());
        assert_eq!(threads("--threads", 4).unwrap(), 4);
    }
}

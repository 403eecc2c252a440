//! `stats`: logical size of every point against what the store holds, i.e. what dedup and
//! compression saved.

use crate::error::Result;
use crate::select::PointFilter;
use crate::vault::Vault;

/// One point's line in the statistics.
#[derive(Debug, serde::Serialize)]
pub struct PointLine {
    pub id: String,
    pub time: String,
    pub files: u64,
    pub bytes: u64,
    pub bytes_new: u64,
    pub bytes_stored: u64,
}

/// Statistics of a vault.
#[derive(Debug, serde::Serialize)]
pub struct VaultStats {
    pub points: usize,
    /// Sum of the logical bytes of every point.
    pub logical_bytes: u64,
    /// Plaintext bytes of distinct blocks.
    pub unique_bytes: u64,
    /// Bytes of all packs.
    pub stored_bytes: u64,
    /// logical ÷ unique.
    pub dedup_ratio: f64,
    /// unique ÷ stored.
    pub compression_ratio: f64,
    pub per_point: Vec<PointLine>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Computes the statistics: the totals of the vault, and a line for each point `filter`
/// passes.
pub fn stats(vault: &Vault, filter: &PointFilter) -> Result<VaultStats> {
    let catalog = vault.catalog();
    let points = catalog.points()?;
    let (unique_bytes, stored_bytes) = catalog.store_totals()?;
    let logical_bytes = points.iter().map(|p| p.stats.bytes).sum();
    Ok(VaultStats {
        points: points.len(),
        logical_bytes,
        unique_bytes,
        stored_bytes,
        dedup_ratio: ratio(logical_bytes, unique_bytes),
        compression_ratio: ratio(unique_bytes, stored_bytes),
        per_point: points
            .iter()
            .filter(|p| filter.matches(p))
            .map(|p| PointLine {
                id: p.id.0.clone(),
                time: crate::time::format_utc(p.started_ns),
                files: p.stats.files,
                bytes: p.stats.bytes,
                bytes_new: p.stats.bytes_new,
                bytes_stored: p.stats.bytes_stored,
            })
            .collect(),
    })
}

//! Catalog queries of retention: policies per source, protected points, forgetting points.

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension};

use super::{Catalog, Result};

impl Catalog {
    /// The policy (JSON) recorded for `source` ('' is the default for every source).
    pub fn policy(&self, source: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT policy FROM policies WHERE source = ?1",
                [source],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every recorded policy: (source, JSON), the default ('') first.
    pub fn policies(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT source, policy FROM policies ORDER BY source")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records the policy of `source` (`None` removes it).
    pub fn set_policy(&self, source: &str, policy: Option<&str>) -> Result<()> {
        match policy {
            Some(json) => self.conn.execute(
                "INSERT INTO policies (source, policy) VALUES (?1, ?2)
                 ON CONFLICT (source) DO UPDATE SET policy = excluded.policy",
                [source, json],
            )?,
            None => self
                .conn
                .execute("DELETE FROM policies WHERE source = ?1", [source])?,
        };
        Ok(())
    }

    /// Protects a point until `until_ns` (`None`: no longer protected). False if there is no
    /// such point.
    pub fn protect_point(&self, id: &str, until_ns: Option<i64>) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE points SET retain_until_ns = ?2 WHERE id = ?1",
            params![id, until_ns],
        )?;
        Ok(changed == 1)
    }

    /// Forgets points in one transaction: their rows go, a tombstone stays, and a seed job
    /// that carried one of them no longer names it. Their trees, file versions and blocks
    /// stay until prune finds them unused.
    pub fn forget_points(&mut self, ids: &[String], at_ns: i64) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut tombstone = tx.prepare(
                "INSERT OR REPLACE INTO forgotten_points (id, forgotten_ns) VALUES (?1, ?2)",
            )?;
            let mut unlink = tx.prepare("UPDATE seed_jobs SET point = NULL WHERE point = ?1")?;
            let mut delete = tx.prepare("DELETE FROM points WHERE id = ?1")?;
            for id in ids {
                tombstone.execute(params![id, at_ns])?;
                unlink.execute([id])?;
                delete.execute([id])?;
            }
        }
        Ok(tx.commit()?)
    }

    /// The ids of every forgotten point.
    pub fn forgotten_points(&self) -> Result<HashSet<String>> {
        let mut stmt = self.conn.prepare("SELECT id FROM forgotten_points")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

//! Bulk writes for `catalog rebuild` and for settling a pending seal: rows put back from the
//! store, in one transaction, through the same inserts a backup uses.

use rusqlite::{params, Connection, OptionalExtension};

use super::sealed::{Event, SealedSeedJob, TreeRow};
use super::seed::SeedJobState;
use super::{
    insert_meta_pack, insert_packs, insert_point, insert_trees, tree_xattrs, Catalog, Content,
    ContentId, NewPack, RecoveryPoint, Result, TreeId,
};
use crate::store::{BlockId, PackId};

/// One open write transaction over a catalog. Dropped without [`Bulk::commit`], it rolls
/// back.
pub struct Bulk<'c> {
    conn: &'c Connection,
    open: bool,
}

impl Catalog {
    /// Calls `each` with every tree row (only those prune's mark reached, if `marked`).
    pub fn for_each_tree(&self, marked: bool, mut each: impl FnMut(TreeRow)) -> Result<()> {
        let mut stmt = self.conn.prepare(if marked {
            "SELECT id, entry_count, entries FROM trees
             WHERE id IN (SELECT id FROM temp.live_trees) ORDER BY rowid"
        } else {
            "SELECT id, entry_count, entries FROM trees ORDER BY rowid"
        })?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            each(TreeRow {
                id: TreeId(super::blob32(row, 0)?),
                entry_count: row.get(1)?,
                blob: row.get(2)?,
            });
        }
        Ok(())
    }

    /// Calls `each` with every file version as stored: id, size, block list column (only
    /// those prune's mark reached, if `marked`).
    pub fn for_each_content_row(
        &self,
        marked: bool,
        mut each: impl FnMut(ContentId, u64, &[u8]),
    ) -> Result<()> {
        let mut stmt = self.conn.prepare(if marked {
            "SELECT id, size, block_list FROM contents
             WHERE id IN (SELECT id FROM temp.live_contents)"
        } else {
            "SELECT id, size, block_list FROM contents"
        })?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let list: Vec<u8> = row.get(2)?;
            each(
                ContentId(super::blob32(row, 0)?),
                row.get::<_, i64>(1)? as u64,
                &list,
            );
        }
        Ok(())
    }

    /// Begins a bulk write: everything until [`Bulk::commit`] lands at once or not at all.
    pub fn bulk(&self) -> Result<Bulk<'_>> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Bulk {
            conn: &self.conn,
            open: true,
        })
    }
}

impl Drop for Bulk<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

impl Bulk<'_> {
    /// Commits every write.
    pub fn commit(mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }

    /// True if the catalog lists this pack (data or metadata).
    pub fn knows_pack(&self, pack: &PackId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM packs WHERE name = ?1")?;
        Ok(stmt.exists([&pack.0[..]])?)
    }

    /// Records data packs and their blocks, as a backup does (a block keeps a stored location
    /// over one in transit; a second copy in transit waits in `block_copies`).
    pub fn data_packs(&self, packs: &[NewPack]) -> Result<()> {
        insert_packs(self.conn, packs)
    }

    /// Applies a sealed change made after a commit: a forgotten point leaves a tombstone (and
    /// its row, if it has one, goes); a protection, a policy or a point's tags are set.
    pub fn event(&self, event: &Event) -> Result<()> {
        match event {
            Event::Forget { at_ns, points } => {
                for id in points {
                    self.conn.execute(
                        "INSERT OR REPLACE INTO forgotten_points (id, forgotten_ns) VALUES (?1, ?2)",
                        params![id, at_ns],
                    )?;
                    self.conn
                        .execute("UPDATE seed_jobs SET point = NULL WHERE point = ?1", [id])?;
                    self.conn
                        .execute("DELETE FROM points WHERE id = ?1", [id])?;
                }
            }
            Event::Protect {
                point, until_ns, ..
            } => {
                self.conn.execute(
                    "UPDATE points SET retain_until_ns = ?2 WHERE id = ?1",
                    params![point, until_ns],
                )?;
            }
            Event::Tags { point, tags, .. } => {
                self.conn.execute(
                    "UPDATE points SET tags = ?2 WHERE id = ?1",
                    params![point, tags.join(",")],
                )?;
            }
            Event::Policy { source, policy, .. } => match policy {
                Some(json) => {
                    self.conn.execute(
                        "INSERT INTO policies (source, policy) VALUES (?1, ?2)
                         ON CONFLICT (source) DO UPDATE SET policy = excluded.policy",
                        [source, json],
                    )?;
                }
                None => {
                    self.conn
                        .execute("DELETE FROM policies WHERE source = ?1", [source])?;
                }
            },
        }
        Ok(())
    }

    /// True if the point was forgotten.
    pub fn is_forgotten(&self, id: &str) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM forgotten_points WHERE id = ?1")?;
        Ok(stmt.exists([id])?)
    }

    /// Forgets the lost packs of a job that a repair re-made wholly (see `seed repair`).
    pub fn drop_lost_seed_packs(&self, job: &str, lost: &[PackId]) -> Result<Vec<PackId>> {
        super::seed::drop_lost_packs(self.conn, job, lost)
    }

    /// Forgets a pending seal.
    pub fn drop_pending_seal(&self, pack: &PackId) -> Result<()> {
        self.conn
            .execute("DELETE FROM pending_seals WHERE pack = ?1", [&pack.0[..]])?;
        Ok(())
    }

    /// Records a metadata pack (no longer a part in flight, if it was one).
    pub fn meta_pack(&self, pack: &PackId, size: u64) -> Result<()> {
        self.conn
            .execute("DELETE FROM sealing_parts WHERE pack = ?1", [&pack.0[..]])?;
        insert_meta_pack(self.conn, pack, size)
    }

    /// Records a tree unless it is known.
    pub fn tree(&self, tree: &TreeRow) -> Result<()> {
        insert_trees(self.conn, &[tree])
    }

    /// Records a file version unless it is known.
    pub fn content(&self, id: &ContentId, size: u64, list: &[u8]) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO contents (id, size, block_list) VALUES (?1, ?2, ?3)",
        )?;
        stmt.execute(params![&id.0[..], size as i64, list])?;
        Ok(())
    }

    /// Records a point, and settles whether its trees hold xattrs (they are all in by then:
    /// rebuild puts points back after every tree).
    pub fn point(&self, point: &RecoveryPoint) -> Result<()> {
        insert_point(self.conn, point)?;
        tree_xattrs::settle(self.conn, &point.root_tree)?;
        Ok(())
    }

    /// True if the catalog has this point.
    pub fn knows_point(&self, id: &str) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM points WHERE id = ?1")?;
        Ok(stmt.exists([id])?)
    }

    /// Records a seed job in `state`, the packs it shipped (with their disks) and the disks
    /// whose packs have all arrived.
    pub fn seed_job(
        &self,
        job: &SealedSeedJob,
        state: SeedJobState,
        packs: &[(PackId, u32)],
        disks_seen: &[u32],
    ) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO seed_jobs (name, point, state, source, disk_count, created_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                job.name,
                job.point,
                state.as_str(),
                job.source,
                job.disk_count,
                job.created_ns
            ],
        )?;
        let mut pack_stmt = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO seed_packs (job, pack, disk_index) VALUES (?1, ?2, ?3)",
        )?;
        for (pack, disk) in packs {
            pack_stmt.execute(params![job.name, &pack.0[..], disk])?;
        }
        let mut seen = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO seed_disks_seen (job, disk_index, seen_ns) VALUES (?1, ?2, ?3)",
        )?;
        for disk in disks_seen {
            seen.execute(params![job.name, disk, job.created_ns])?;
        }
        Ok(())
    }

    /// A tree's stored listing, if the catalog has it.
    pub fn tree_blob(&self, tree: &TreeId) -> Result<Option<Vec<u8>>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT entries FROM trees WHERE id = ?1")?;
        Ok(stmt.query_row([&tree.0[..]], |r| r.get(0)).optional()?)
    }

    /// A file version, if the catalog has it (`Some(None)`: its row does not parse).
    pub fn content_row(&self, id: &ContentId) -> Result<Option<Option<Content>>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT size, block_list FROM contents WHERE id = ?1")?;
        let row: Option<(i64, Vec<u8>)> = stmt
            .query_row([&id.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(row.map(|(size, list)| Content::from_row(id, size as u64, &list)))
    }

    /// True if the block has a location (stored or in transit).
    pub fn block_located(&self, block: &BlockId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM blocks WHERE id = ?1")?;
        Ok(stmt.exists([&block.0[..]])?)
    }

    /// Counts of what the catalog holds: (packs, blocks, trees, contents).
    pub fn counts(&self) -> Result<(u64, u64, u64, u64)> {
        let count = |table: &str| -> Result<u64> {
            let n: i64 =
                self.conn
                    .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
            Ok(n as u64)
        };
        Ok((
            count("packs")?,
            count("blocks")?,
            count("trees")?,
            count("contents")?,
        ))
    }
}

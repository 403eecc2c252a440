//! Catalog queries of prune: marking what the points use, the use of each pack, and the
//! transaction that moves blocks to new packs and retires the old ones.

use rusqlite::params;

use super::{blob32, BlockLocation, Catalog, ContentId, NewPack, Result, TreeId};
use crate::store::{BlockId, PackEntry, PackId};

/// How much of a stored data pack the points use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackUse {
    pub pack: PackId,
    pub size: u64,
    /// Bytes of frames some point uses.
    pub live_bytes: u64,
    /// Bytes of frames no point uses.
    pub dead_bytes: u64,
    pub live_blocks: u64,
    pub dead_blocks: u64,
}

/// A pack prune took out of use, waiting to be deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetiredPack {
    pub pack: PackId,
    pub size: u64,
    pub retired_ns: i64,
}

impl Catalog {
    /// Starts a mark: empty temporary sets of live trees, file versions and blocks (kept by
    /// SQLite, in its temporary store, not in this process's memory). Everything read until
    /// [`Catalog::mark_end`] is one snapshot of the catalog.
    pub fn mark_begin(&self) -> Result<()> {
        self.conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS live_trees (id BLOB PRIMARY KEY) WITHOUT ROWID;
             CREATE TEMP TABLE IF NOT EXISTS live_contents (id BLOB PRIMARY KEY) WITHOUT ROWID;
             CREATE TEMP TABLE IF NOT EXISTS live_blocks (id BLOB PRIMARY KEY) WITHOUT ROWID;
             DELETE FROM temp.live_trees; DELETE FROM temp.live_contents;
             DELETE FROM temp.live_blocks;
             BEGIN;",
        )?;
        Ok(())
    }

    /// Continues a mark begun earlier (points committed since are added to it).
    pub fn mark_resume(&self) -> Result<()> {
        self.conn.execute_batch("BEGIN;")?;
        Ok(())
    }

    /// Marks a tree live; false if it already was.
    pub fn mark_tree(&self, tree: &TreeId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO temp.live_trees (id) VALUES (?1)")?;
        Ok(stmt.execute([&tree.0[..]])? == 1)
    }

    /// Marks a file version and its blocks live.
    pub fn mark_content(&self, id: &ContentId) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO temp.live_contents (id) VALUES (?1)")?;
        if stmt.execute([&id.0[..]])? == 0 {
            return Ok(());
        }
        let content = self.content(id)?;
        let mut block = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO temp.live_blocks (id) VALUES (?1)")?;
        for (b, _) in &content.blocks {
            if *b != BlockId::ZERO {
                block.execute([&b.0[..]])?;
            }
        }
        Ok(())
    }

    /// Ends the mark's writes (the sets stay for the queries below).
    pub fn mark_end(&self) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    /// Deletes the trees and file versions the mark did not reach (those of forgotten points
    /// only); returns how many rows went.
    pub fn delete_unmarked(&self) -> Result<u64> {
        let contents = self.conn.execute(
            "DELETE FROM contents WHERE id NOT IN (SELECT id FROM temp.live_contents)",
            [],
        )?;
        let trees = self.conn.execute(
            "DELETE FROM trees WHERE id NOT IN (SELECT id FROM temp.live_trees)",
            [],
        )?;
        Ok((contents + trees) as u64)
    }

    /// How much of each stored data pack the marked blocks use, in one scan of the blocks.
    pub fn pack_use(&self) -> Result<Vec<PackUse>> {
        let mut stmt = self.conn.prepare(
            "SELECT p.name, p.size,
                    COALESCE(u.live_bytes, 0), COALESCE(u.live_blocks, 0),
                    COALESCE(u.dead_blocks, 0), COALESCE(u.dead_bytes, 0)
             FROM packs p LEFT JOIN (
                 SELECT b.pack AS pack,
                        SUM(CASE WHEN l.id IS NULL THEN 0 ELSE b.stored_len END) AS live_bytes,
                        SUM(CASE WHEN l.id IS NULL THEN b.stored_len ELSE 0 END) AS dead_bytes,
                        SUM(l.id IS NOT NULL) AS live_blocks,
                        SUM(l.id IS NULL) AS dead_blocks
                 FROM blocks b LEFT JOIN temp.live_blocks l ON l.id = b.id
                 GROUP BY b.pack
             ) u ON u.pack = p.id
             WHERE p.kind = 'data' AND p.state = 'stored'",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PackUse {
                pack: PackId(blob32(r, 0)?),
                size: r.get::<_, i64>(1)? as u64,
                live_bytes: r.get::<_, i64>(2)? as u64,
                live_blocks: r.get::<_, i64>(3)? as u64,
                dead_blocks: r.get::<_, i64>(4)? as u64,
                dead_bytes: r.get::<_, i64>(5)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The live blocks of a pack and where they are, in pack order.
    pub fn live_frames(&self, pack: &PackId) -> Result<Vec<(BlockId, BlockLocation)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT b.id, b.offset, b.stored_len, b.raw_len FROM blocks b
             JOIN temp.live_blocks l ON l.id = b.id
             WHERE b.pack = (SELECT id FROM packs WHERE name = ?1) ORDER BY b.offset",
        )?;
        let rows = stmt.query_map([&pack.0[..]], |r| super::located_block(r, pack))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// In one transaction: records the new packs (their blocks move to them), forgets every
    /// block still located in a retired pack (no point uses it: live ones moved) and the
    /// retired packs, and lists them as retired at `at_ns`, to be deleted from the store once
    /// no older reader is alive.
    pub fn retire_packs(&mut self, new: &[NewPack], retired: &[PackId], at_ns: i64) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut moved = Vec::new();
            for pack in new {
                tx.execute(
                    "INSERT INTO packs (name, size, state, seed_job) VALUES (?1, ?2, 'stored', NULL)",
                    params![&pack.id.0[..], pack.size as i64],
                )?;
                let rowid = tx.last_insert_rowid();
                moved.extend(pack.entries.iter().map(|e| (rowid, *e)));
            }
            let mut relocate = tx.prepare(
                "UPDATE blocks SET pack = ?2, offset = ?3, stored_len = ?4, raw_len = ?5
                 WHERE id = ?1",
            )?;
            for (rowid, e) in moved {
                let PackEntry {
                    id,
                    offset,
                    stored_len,
                    raw_len,
                } = e;
                relocate.execute(params![
                    &id.0[..],
                    rowid,
                    offset as i64,
                    stored_len,
                    raw_len
                ])?;
            }
            let mut size_of = tx.prepare("SELECT size FROM packs WHERE name = ?1")?;
            let mut forget_blocks = tx.prepare(
                "DELETE FROM blocks WHERE pack = (SELECT id FROM packs WHERE name = ?1)",
            )?;
            let mut forget_copies = tx.prepare(
                "DELETE FROM block_copies WHERE pack = (SELECT id FROM packs WHERE name = ?1)",
            )?;
            let mut forget_pack = tx.prepare("DELETE FROM packs WHERE name = ?1")?;
            let mut set_aside = tx.prepare(
                "INSERT OR REPLACE INTO retired_packs (name, size, retired_ns) VALUES (?1, ?2, ?3)",
            )?;
            for pack in retired {
                let size: i64 = size_of.query_row([&pack.0[..]], |r| r.get(0))?;
                forget_blocks.execute([&pack.0[..]])?;
                forget_copies.execute([&pack.0[..]])?;
                forget_pack.execute([&pack.0[..]])?;
                set_aside.execute(params![&pack.0[..], size, at_ns])?;
            }
        }
        Ok(tx.commit()?)
    }

    /// Lists a pack the catalog never knew (left by a killed writer) as retired, so it is
    /// deleted like the others once no older reader is alive.
    pub fn retire_unknown_pack(&self, pack: &PackId, size: u64, at_ns: i64) -> Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO retired_packs (name, size, retired_ns) VALUES (?1, ?2, ?3)",
            params![&pack.0[..], size as i64, at_ns],
        )?;
        Ok(())
    }

    /// Every retired pack not deleted yet, oldest first.
    pub fn retired_packs(&self) -> Result<Vec<RetiredPack>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, size, retired_ns FROM retired_packs ORDER BY retired_ns")?;
        let rows = stmt.query_map([], |r| {
            Ok(RetiredPack {
                pack: PackId(blob32(r, 0)?),
                size: r.get::<_, i64>(1)? as u64,
                retired_ns: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets a retired pack once it is deleted from the store.
    pub fn drop_retired(&self, pack: &PackId) -> Result<()> {
        self.conn
            .execute("DELETE FROM retired_packs WHERE name = ?1", [&pack.0[..]])?;
        Ok(())
    }

    /// Every pack the catalog lists (any kind or state) or has retired.
    pub fn known_pack_names(&self) -> Result<std::collections::HashSet<PackId>> {
        let mut stmt = self.conn.prepare(
            "SELECT name FROM packs UNION ALL SELECT name FROM retired_packs
             UNION ALL SELECT pack FROM pending_seals",
        )?;
        let rows = stmt.query_map([], |r| blob32(r, 0).map(PackId))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records a metadata pack that seals the whole catalog, and retires every older one.
    pub fn replace_meta_packs(&mut self, snapshot: &PackId, size: u64, at_ns: i64) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO retired_packs (name, size, retired_ns)
             SELECT name, size, ?1 FROM packs WHERE kind = 'meta' AND name != ?2",
            params![at_ns, &snapshot.0[..]],
        )?;
        tx.execute(
            "DELETE FROM packs WHERE kind = 'meta' AND name != ?1",
            [&snapshot.0[..]],
        )?;
        super::insert_meta_pack(&tx, snapshot, size)?;
        tx.execute(
            "DELETE FROM pending_seals WHERE pack = ?1",
            [&snapshot.0[..]],
        )?;
        Ok(tx.commit()?)
    }

    /// Bytes of stored data packs, and of all stored packs.
    pub fn stored_bytes(&self) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COALESCE(SUM(size), 0) FROM packs WHERE state = 'stored'",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// The newest forgetting, if any point was ever forgotten.
    pub fn last_forgotten_ns(&self) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row("SELECT MAX(forgotten_ns) FROM forgotten_points", [], |r| {
                r.get(0)
            })?)
    }
}

//! Catalog queries of prune: marking what the points use, the use of each pack, and the
//! transaction that moves blocks to new packs and retires the old ones.

use std::rc::Rc;

use rusqlite::params;
use rusqlite::types::Value;
use rusqlite::vtab::array::Array;

use super::{
    blob32, tree_codec, BlockLocation, Catalog, CatalogError, Content, ContentId, Entry, NewPack,
    Result, TreeId,
};
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
            "PRAGMA temp.cache_size = -65536;
             CREATE TEMP TABLE IF NOT EXISTS live_trees (id BLOB PRIMARY KEY) WITHOUT ROWID;
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

    /// Marks `trees` live and calls `each` with the entries of every one not marked before
    /// (a tree already marked was walked already). One batch is a few statements, whatever
    /// its length.
    pub fn mark_trees(&self, trees: &[TreeId], mut each: impl FnMut(Vec<Entry>)) -> Result<()> {
        let fresh = self.insert_returning(
            "INSERT OR IGNORE INTO temp.live_trees (id) SELECT value FROM rarray(?1) RETURNING id",
            trees.iter().map(|t| &t.0),
        )?;
        if fresh.is_empty() {
            return Ok(());
        }
        let expected = fresh.len();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, entries FROM trees WHERE id IN rarray(?1)")?;
        let mut rows = stmt.query([fresh])?;
        let mut found = 0;
        while let Some(row) = rows.next()? {
            let tree = TreeId(blob32(row, 0)?);
            let blob: Vec<u8> = row.get(1)?;
            let entries = tree_codec::decode(&blob)
                .map_err(|source| CatalogError::BadTree { tree, source })?;
            each(entries);
            found += 1;
        }
        if found != expected {
            return Err(CatalogError::Corrupt("a tree a point uses is missing"));
        }
        Ok(())
    }

    /// Marks file versions and their blocks live.
    pub fn mark_contents(&self, contents: &[ContentId]) -> Result<()> {
        let fresh = self.insert_returning(
            "INSERT OR IGNORE INTO temp.live_contents (id) SELECT value FROM rarray(?1) \
             RETURNING id",
            contents.iter().map(|c| &c.0),
        )?;
        if fresh.is_empty() {
            return Ok(());
        }
        let expected = fresh.len();
        let mut blocks = Vec::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, size, block_list FROM contents WHERE id IN rarray(?1)")?;
        let mut rows = stmt.query([fresh])?;
        let mut found = 0;
        while let Some(row) = rows.next()? {
            let id = ContentId(blob32(row, 0)?);
            let list: Vec<u8> = row.get(2)?;
            let content = Content::from_row(&id, row.get::<_, i64>(1)? as u64, &list)
                .ok_or(CatalogError::Corrupt("block list"))?;
            blocks.extend(
                content
                    .blocks
                    .iter()
                    .filter(|(b, _)| *b != BlockId::ZERO)
                    .map(|(b, _)| Value::Blob(b.0.to_vec())),
            );
            found += 1;
        }
        if found != expected {
            return Err(CatalogError::Corrupt(
                "a file version a point uses is missing",
            ));
        }
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO temp.live_blocks (id) SELECT value FROM rarray(?1)",
            )?
            .execute([Rc::new(blocks)])?;
        Ok(())
    }

    /// Runs an `INSERT ... SELECT value FROM rarray(?1) RETURNING id` over `ids`; returns the
    /// ids it inserted (those not in the table before), ready to bind as an array.
    fn insert_returning<'a>(
        &self,
        sql: &str,
        ids: impl Iterator<Item = &'a [u8; 32]>,
    ) -> Result<Array> {
        let ids: Vec<Value> = ids.map(|id| Value::Blob(id.to_vec())).collect();
        let mut stmt = self.conn.prepare_cached(sql)?;
        let fresh = stmt
            .query_map([Rc::new(ids)], |r| r.get::<_, Value>(0))?
            .collect::<rusqlite::Result<Vec<Value>>>()?;
        Ok(Rc::new(fresh))
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
            // The blocks left in a retired pack are those no point uses (the others moved
            // above); a reader older than the retirement may still ask where they are.
            let mut keep_locations = tx.prepare(
                "INSERT OR IGNORE INTO retired_blocks (id, pack, offset, stored_len, raw_len)
                 SELECT id, ?1, offset, stored_len, raw_len FROM blocks
                 WHERE pack = (SELECT id FROM packs WHERE name = ?1)",
            )?;
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
                keep_locations.execute([&pack.0[..]])?;
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

    /// Forgets retired packs once they are deleted from the store, in one transaction.
    pub fn drop_retired(&mut self, packs: &[PackId]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut pack_row = tx.prepare("DELETE FROM retired_packs WHERE name = ?1")?;
            let mut locations = tx.prepare("DELETE FROM retired_blocks WHERE pack = ?1")?;
            for pack in packs {
                pack_row.execute([&pack.0[..]])?;
                locations.execute([&pack.0[..]])?;
            }
        }
        Ok(tx.commit()?)
    }

    /// Every pack the catalog lists (any kind or state) or has retired.
    pub fn known_pack_names(&self) -> Result<std::collections::HashSet<PackId>> {
        let mut stmt = self.conn.prepare(
            "SELECT name FROM packs UNION ALL SELECT name FROM retired_packs
             UNION ALL SELECT pack FROM pending_seals UNION ALL SELECT pack FROM sealing_parts",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{BackupCommit, EntryKind, PackState, RecoveryPoint, TreeRow};

    fn file(name: &[u8], content: ContentId) -> Entry {
        Entry {
            name: name.to_vec(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            size: 1,
            inode: 0,
            nlink: 1,
            content: Some(content),
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: vec![],
        }
    }

    /// One pack of four blocks: a two-block file version and a one-block one use three of
    /// them; a point uses both through one tree.
    fn catalog_with_one_point() -> (Catalog, TreeId) {
        let mut cat = Catalog::open_in_memory().unwrap();
        let block = |n: u8| BlockId([n; 32]);
        let entries = (1..=4)
            .map(|n| PackEntry {
                id: block(n),
                offset: u64::from(n) * 100,
                stored_len: 100,
                raw_len: 90,
            })
            .collect();
        let two = Content {
            size: 180,
            blocks: vec![(block(1), 90), (block(2), 90)],
        };
        let one = Content {
            size: 90,
            blocks: vec![(block(3), 90)],
        };
        let two_id = ContentId([20; 32]);
        let one_id = ContentId(block(3).0);
        let tree = TreeId([9; 32]);
        let commit = BackupCommit {
            packs: vec![NewPack {
                id: PackId([1; 32]),
                size: 500,
                state: PackState::Stored,
                seed_job: None,
                entries,
            }],
            contents: vec![(two_id, two), (one_id, one)],
            trees: vec![TreeRow::new(
                tree,
                &[file(b"a", two_id), file(b"b", one_id)],
            )],
            seed: None,
            sealed_as: None,
            parts: Vec::new(),
        };
        let point = RecoveryPoint::for_test("00112233aabbccdd", tree);
        cat.commit_backup(&commit, &point).unwrap();
        (cat, tree)
    }

    #[test]
    fn a_batched_mark_reaches_every_block_of_every_file_version_once() {
        let (cat, tree) = catalog_with_one_point();
        cat.mark_begin().unwrap();
        let mut contents = Vec::new();
        // The same tree twice in one batch, and again in a second: walked once.
        let mut walked = 0;
        for batch in [vec![tree, tree], vec![tree]] {
            cat.mark_trees(&batch, |entries| {
                walked += 1;
                contents.extend(entries.into_iter().filter_map(|e| e.content));
            })
            .unwrap();
        }
        assert_eq!(walked, 1);
        contents.extend(contents.clone());
        cat.mark_contents(&contents).unwrap();
        cat.mark_end().unwrap();
        let usage = cat.pack_use().unwrap();
        assert_eq!(usage.len(), 1);
        assert_eq!((usage[0].live_blocks, usage[0].dead_blocks), (3, 1));
        assert_eq!((usage[0].live_bytes, usage[0].dead_bytes), (300, 100));
    }

    #[test]
    fn a_mark_that_meets_a_missing_tree_or_file_version_fails_rather_than_miss_its_blocks() {
        let (cat, _) = catalog_with_one_point();
        cat.mark_begin().unwrap();
        assert!(cat.mark_trees(&[TreeId([77; 32])], |_| {}).is_err());
        assert!(cat.mark_contents(&[ContentId([78; 32])]).is_err());
        cat.mark_end().unwrap();
    }
}

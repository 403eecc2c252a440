//! What a running backup has made so far, kept out of memory: its new trees and file versions
//! wait in temporary tables (`temp.staged_*`, on disk beside SQLite's other temporary files)
//! until its commit moves them into the catalog in one statement each; the metadata parts it
//! has sealed into the store are listed in `sealing_parts` until that commit records them as
//! metadata packs. A backup that fails clears both; one that dies leaves `sealing_parts` rows
//! for the next open to settle (see `rebuild::settle_pending`).

use rusqlite::{params, Connection};

use super::{blob32, Catalog, ContentId, Result, TreeRow};
use crate::store::PackId;

/// A file version as its `contents` row holds it: id, size, block list (see
/// [`super::Content::row_blocks`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentRow {
    pub id: ContentId,
    pub size: u64,
    pub list: Vec<u8>,
}

/// SQLite's temporary cache while a backup stages (negative: KiB).
const STAGING_CACHE_KIB: i64 = -8192;

const CREATE_STAGING: &str = "
    CREATE TEMP TABLE IF NOT EXISTS staged_trees (
        id BLOB PRIMARY KEY, entry_count INTEGER NOT NULL, entries BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TEMP TABLE IF NOT EXISTS staged_contents (
        id BLOB PRIMARY KEY, size INTEGER NOT NULL, block_list BLOB NOT NULL
    ) WITHOUT ROWID;";

impl Catalog {
    /// Adds trees and file versions to this connection's staging tables (a transaction on the
    /// temporary database only: the catalog itself is not locked).
    pub fn stage(&self, trees: &[TreeRow], contents: &[ContentRow]) -> Result<()> {
        self.conn.execute_batch(CREATE_STAGING)?;
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO temp.staged_trees (id, entry_count, entries)
                 VALUES (?1, ?2, ?3)",
            )?;
            for tree in trees {
                stmt.execute(params![
                    &tree.id.0[..],
                    i64::from(tree.entry_count),
                    &tree.blob
                ])?;
            }
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO temp.staged_contents (id, size, block_list)
                 VALUES (?1, ?2, ?3)",
            )?;
            for c in contents {
                stmt.execute(params![&c.id.0[..], c.size as i64, &c.list])?;
            }
        }
        Ok(tx.commit()?)
    }

    /// Forgets whatever is staged (a backup that failed, or one about to start). Staging keeps
    /// SQLite's temporary cache small: the staged rows spill to its temporary file, which the
    /// commit reads in key order.
    pub fn clear_staged(&self) -> Result<()> {
        self.conn
            .pragma_update(Some("temp"), "cache_size", STAGING_CACHE_KIB)?;
        self.conn.execute_batch(CREATE_STAGING)?;
        self.conn
            .execute_batch("DELETE FROM temp.staged_trees; DELETE FROM temp.staged_contents;")?;
        Ok(())
    }

    /// Lists a metadata part about to be written to the store. Durable when this returns.
    pub fn add_sealing_part(&self, pack: &PackId) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO sealing_parts (pack, started_ns) VALUES (?1, ?2)",
            params![&pack.0[..], crate::time::now_ns()],
        )?;
        Ok(())
    }

    /// Forgets a metadata part (removed from the store, or never written).
    pub fn drop_sealing_part(&self, pack: &PackId) -> Result<()> {
        self.conn
            .execute("DELETE FROM sealing_parts WHERE pack = ?1", [&pack.0[..]])?;
        Ok(())
    }

    /// Metadata parts written by backups that have not committed: running, or dead.
    pub fn sealing_parts(&self) -> Result<Vec<PackId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT pack FROM sealing_parts ORDER BY started_ns")?;
        let rows = stmt.query_map([], |r| blob32(r, 0).map(PackId))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// Moves what is staged into the catalog, in key order (dense B-tree pages), inside the
/// commit's transaction `tx`. A row the catalog has already (an unchanged directory, a file
/// version another point holds) is kept as it is.
pub(super) fn commit_staged(tx: &Connection) -> Result<()> {
    tx.execute_batch(CREATE_STAGING)?;
    tx.execute_batch(
        "INSERT OR IGNORE INTO trees (id, entry_count, entries)
             SELECT id, entry_count, entries FROM temp.staged_trees ORDER BY id;
         INSERT OR IGNORE INTO contents (id, size, block_list)
             SELECT id, size, block_list FROM temp.staged_contents ORDER BY id;
         DELETE FROM temp.staged_trees; DELETE FROM temp.staged_contents;",
    )?;
    Ok(())
}

/// Records metadata parts as the commit's metadata packs, inside its transaction `tx`.
pub(super) fn commit_parts(tx: &Connection, parts: &[(PackId, u64)]) -> Result<()> {
    for (pack, size) in parts {
        super::insert_meta_pack(tx, pack, *size)?;
        tx.execute("DELETE FROM sealing_parts WHERE pack = ?1", [&pack.0[..]])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{BackupCommit, RecoveryPoint, TreeId};

    #[test]
    fn staged_rows_enter_the_catalog_with_the_commit_and_not_before() {
        let mut cat = Catalog::open_in_memory().unwrap();
        let tree = TreeRow::new(TreeId([7; 32]), &[]);
        let content = ContentRow {
            id: ContentId([9; 32]),
            size: 0,
            list: Vec::new(),
        };
        cat.stage(std::slice::from_ref(&tree), std::slice::from_ref(&content))
            .unwrap();
        assert!(!cat.has_tree(&tree.id).unwrap());
        let part = PackId([3; 32]);
        cat.add_sealing_part(&part).unwrap();
        assert_eq!(cat.sealing_parts().unwrap(), vec![part]);

        let point = RecoveryPoint::for_test("p1", tree.id);
        let commit = BackupCommit {
            parts: vec![(part, 10)],
            ..BackupCommit::default()
        };
        cat.commit_backup(&commit, &point).unwrap();
        assert!(cat.has_tree(&tree.id).unwrap());
        assert!(cat.sealing_parts().unwrap().is_empty());
        assert!(cat.meta_packs().unwrap().contains(&part));
        // The staging tables are empty again: a second commit adds nothing twice.
        let staged: i64 = cat
            .conn
            .query_row("SELECT count(*) FROM temp.staged_trees", [], |r| r.get(0))
            .unwrap();
        assert_eq!(staged, 0);
    }

    #[test]
    fn cleared_rows_never_reach_the_catalog() {
        let mut cat = Catalog::open_in_memory().unwrap();
        let tree = TreeRow::new(TreeId([7; 32]), &[]);
        cat.stage(std::slice::from_ref(&tree), &[]).unwrap();
        cat.clear_staged().unwrap();
        let root = TreeRow::new(TreeId([8; 32]), &[]);
        let point = RecoveryPoint::for_test("p1", root.id);
        let commit = BackupCommit {
            trees: vec![root],
            ..BackupCommit::default()
        };
        cat.commit_backup(&commit, &point).unwrap();
        assert!(!cat.has_tree(&tree.id).unwrap());
    }
}

//! Schema migrations: `catalog-schema/NNNN_*.sql`, applied in order by `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

use super::CatalogError;

const MIGRATIONS: [&str; 15] = [
    include_str!("../../catalog-schema/0001_init.sql"),
    include_str!("../../catalog-schema/0002_seed_jobs.sql"),
    include_str!("../../catalog-schema/0003_block_copies.sql"),
    include_str!("../../catalog-schema/0004_sealed_metadata.sql"),
    include_str!("../../catalog-schema/0005_retention.sql"),
    include_str!("../../catalog-schema/0006_retired_packs.sql"),
    include_str!("../../catalog-schema/0007_blocks_by_pack.sql"),
    include_str!("../../catalog-schema/0008_retired_blocks.sql"),
    include_str!("../../catalog-schema/0009_store_totals.sql"),
    include_str!("../../catalog-schema/0010_blocks_by_pack_offset.sql"),
    include_str!("../../catalog-schema/0011_sealing_parts.sql"),
    include_str!("../../catalog-schema/0012_blocks_by_pack_covering.sql"),
    include_str!("../../catalog-schema/0013_point_sources.sql"),
    include_str!("../../catalog-schema/0014_tree_xattrs.sql"),
    include_str!("../../catalog-schema/0015_block_count.sql"),
];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// The schema version of a catalog: 0 for one that was never migrated (an empty file).
pub(crate) fn version(conn: &Connection) -> Result<u32, CatalogError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Brings the catalog to [`LATEST`], refusing a newer one. All missing steps run in one
/// transaction, so a crash leaves the old version intact.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), CatalogError> {
    let found = version(conn)?;
    if found == LATEST {
        // Nothing to do: don't take the write lock that a migration transaction needs.
        return Ok(());
    }
    if found > LATEST {
        return Err(CatalogError::SchemaTooNew {
            found,
            supported: LATEST,
        });
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have migrated while we waited for the write lock.
    let found = version(&tx)?;
    for (version, sql) in (1..=LATEST).zip(MIGRATIONS).skip(found as usize) {
        tx.execute_batch(sql)
            .map_err(|source| CatalogError::Migration { version, source })?;
    }
    tx.pragma_update(None, "user_version", LATEST)?;
    Ok(tx.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_from_empty_and_refuses_newer() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, LATEST);
        conn.pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(CatalogError::SchemaTooNew { .. })
        ));
    }

    #[test]
    fn rows_of_version_1_survive_the_seed_migration() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO trees (rowid, id, entry_count, entries) VALUES (1, x'00', 0, x'');
             INSERT INTO points (id, root_tree, source, host, kind, state, started_ns, finished_ns,
                 files, dirs, bytes, files_changed, bytes_read, bytes_new, bytes_stored,
                 root_mode, root_uid, root_gid, root_mtime_ns)
             VALUES ('p1', x'00', '/src', 'h', 'full', 'complete', 1, 2, 0, 0, 0, 0, 0, 0, 0, 493, 0, 0, 0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (id, job): (String, Option<String>) = conn
            .query_row("SELECT id, awaiting_job FROM points", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((id.as_str(), job), ("p1", None));
    }

    #[test]
    fn rows_of_version_2_survive_the_block_copies_migration() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO packs (id, name, size, state, seed_job) VALUES (1, x'01', 10, 'in_transit', 'j');
             INSERT INTO blocks (id, pack, offset, stored_len, raw_len) VALUES (x'02', 1, 0, 5, 5);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (pack, copies): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT pack FROM blocks), (SELECT COUNT(*) FROM block_copies)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((pack, copies), (1, 0));
    }

    #[test]
    fn trees_of_version_12_survive_with_their_xattrs_unknown() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..12] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 12).unwrap();
        conn.execute_batch("INSERT INTO trees (id, entry_count, entries) VALUES (x'01', 0, x'');")
            .unwrap();
        migrate(&mut conn).unwrap();
        let (count, xattrs): (i64, Option<bool>) = conn
            .query_row("SELECT entry_count, xattrs FROM trees", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((count, xattrs), (0, None));
    }
}

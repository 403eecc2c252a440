//! Schema migrations: `catalog-schema/NNNN_*.sql`, applied in order by `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

use super::CatalogError;

const MIGRATIONS: [&str; 1] = [include_str!("../../catalog-schema/0001_init.sql")];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// Brings the catalog to [`LATEST`], refusing a newer one. All missing steps run in one
/// transaction, so a crash leaves the old version intact.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), CatalogError> {
    let found: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > LATEST {
        return Err(CatalogError::SchemaTooNew {
            found,
            supported: LATEST,
        });
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
}

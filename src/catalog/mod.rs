//! The catalog: SQLite (WAL) holding every pack, block, file version, tree and recovery point.
//!
//! It is the single source of truth for what exists: packs are trusted only once a catalog
//! transaction names them, and a point becomes visible only when its transaction commits.
//! It knows nothing of bytes on disk. All SQL of synvault is written in this module.

mod migrate;
pub mod model;
pub mod prune;
mod rebuild;
mod retention;
pub mod sealed;
pub mod seed;
mod staging;
pub mod tree_codec;
pub mod tree_path;
mod tree_xattrs;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

pub use migrate::LATEST as SCHEMA_VERSION;
pub use model::*;
pub use rebuild::Bulk;
pub use sealed::TreeRow;
pub use staging::ContentRow;

use crate::store::{BlockId, IdSet, PackEntry, PackId};

/// Result alias for catalog operations.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// Everything that can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {} is missing; `synvault catalog rebuild` recreates it from the store", .path.display())]
    Missing { path: PathBuf },
    #[error("catalog {} is empty; `synvault catalog rebuild` recreates it from the store", .path.display())]
    Empty { path: PathBuf },
    #[error("cannot create catalog {}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog schema {found} is newer than this synvault supports ({supported})")]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("catalog migration to version {version} failed")]
    Migration {
        version: u32,
        #[source]
        source: rusqlite::Error,
    },
    #[error("catalog query failed")]
    Sql(#[source] rusqlite::Error),
    /// SQLite found the file damaged (a torn or overwritten page, a truncated file).
    #[error("the catalog is damaged; `synvault catalog rebuild` recreates it from the store")]
    Damaged(#[source] rusqlite::Error),
    /// `verify`'s check of the catalog's own structure found problems.
    #[error("the catalog is damaged: {0}")]
    IntegrityCheck(String),
    #[error("catalog row is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("tree {} is invalid", tree_codec::short_hex(.tree))]
    BadTree {
        tree: TreeId,
        #[source]
        source: tree_codec::TreeError,
    },
}

impl From<rusqlite::Error> for CatalogError {
    /// A damaged file is told apart from a failed query: it is the user's to act on.
    fn from(err: rusqlite::Error) -> CatalogError {
        match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                CatalogError::Damaged(err)
            }
            _ => CatalogError::Sql(err),
        }
    }
}

/// A new pack and its blocks, to be recorded.
#[derive(Clone, Debug)]
pub struct NewPack {
    pub id: PackId,
    pub size: u64,
    pub state: PackState,
    pub seed_job: Option<String>,
    pub entries: Vec<PackEntry>,
}

/// Everything one backup adds, committed in one transaction.
#[derive(Debug, Default)]
pub struct BackupCommit {
    pub packs: Vec<NewPack>,
    pub contents: Vec<(ContentId, Content)>,
    pub trees: Vec<TreeRow>,
    /// Set when the backup is a seed job's: recorded in the same transaction.
    pub seed: Option<SeedJobRecord>,
    /// The metadata pack (name, size) that sealed this commit into the store, and whose
    /// pending seal the commit settles.
    pub sealed_as: Option<(PackId, u64)>,
    /// Metadata parts (name, size) the backup sealed into the store as it ran, recorded as
    /// metadata packs with the commit. The trees and file versions they hold are staged in
    /// the catalog connection (see [`Catalog::stage`]) and committed with them.
    pub parts: Vec<(PackId, u64)>,
}

/// An open catalog.
#[derive(Debug)]
pub struct Catalog {
    conn: Connection,
}

/// The columns [`located_from_row`] reads, of `blocks b JOIN packs p`.
const LOCATED_COLUMNS: &str = "b.id, p.name, b.offset, b.stored_len, b.raw_len, p.state";

/// A block, where it is, and whether its pack is stored.
fn located_from_row(r: &Row<'_>) -> rusqlite::Result<(BlockId, (BlockLocation, PackState))> {
    let state: String = r.get(5)?;
    Ok((
        BlockId(blob32(r, 0)?),
        (
            BlockLocation {
                pack: PackId(blob32(r, 1)?),
                offset: r.get::<_, i64>(2)? as u64,
                stored_len: r.get(3)?,
                raw_len: r.get(4)?,
            },
            if state == "stored" {
                PackState::Stored
            } else {
                PackState::InTransit
            },
        ),
    ))
}

fn blob32<I: rusqlite::RowIndex + Copy>(row: &Row<'_>, idx: I) -> rusqlite::Result<[u8; 32]> {
    let v: Vec<u8> = row.get(idx)?;
    v.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            idx.idx(row.as_ref()).unwrap_or(0),
            rusqlite::types::Type::Blob,
            "not 32 bytes".into(),
        )
    })
}

/// Encodes xattrs as `n × (name_len u16 | name | value_len u32 | value)`.
pub fn encode_xattrs(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Option<Vec<u8>> {
    if xattrs.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for (name, value) in xattrs {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    Some(out)
}

fn decode_xattrs(mut b: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = u16::from_le_bytes(b.get(..2)?.try_into().ok()?) as usize;
        let name = b.get(2..2 + n)?.to_vec();
        b = &b[2 + n..];
        let v = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let value = b.get(4..4 + v)?.to_vec();
        b = &b[4 + v..];
        out.push((name, value));
    }
    Some(out)
}

const POINT_COLUMNS: &str =
    "id, parent, root_tree, source, host, tags, kind, state, started_ns, finished_ns, \
     files, dirs, bytes, files_changed, bytes_read, bytes_new, bytes_stored, errors, \
     root_mode, root_uid, root_gid, root_mtime_ns, root_xattrs, awaiting_job, retain_until_ns, \
     sources, root_path";

/// A point's sources as the catalog stores them: raw bytes, NUL between paths.
fn encode_sources(sources: &[PathBuf]) -> Vec<u8> {
    sources
        .iter()
        .map(|p| p.as_os_str().as_bytes())
        .collect::<Vec<_>>()
        .join(&0u8)
}

/// The sources of a point: as stored, or for a point made before they were (`None`), its
/// series name split at ", ".
pub(crate) fn decode_sources(stored: Option<&[u8]>, source: &str) -> Vec<PathBuf> {
    match stored {
        Some(bytes) => bytes
            .split(|&b| b == 0)
            .map(|p| PathBuf::from(OsStr::from_bytes(p)))
            .collect(),
        None => source.split(", ").map(PathBuf::from).collect(),
    }
}

/// A point from a row of `SELECT {POINT_COLUMNS}`, read by column name. A value the schema
/// allows but this build does not know (a kind, a state, the error list) is an error, never a
/// default.
fn point_from_row(row: &Row<'_>) -> rusqlite::Result<RecoveryPoint> {
    let bad = |column: &str, what: &str| {
        let index = row.as_ref().column_index(column).unwrap_or(0);
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            what.to_string().into(),
        )
    };
    let tags: String = row.get("tags")?;
    let kind: String = row.get("kind")?;
    let state: String = row.get("state")?;
    let errors: String = row.get("errors")?;
    let u = |column: &str| row.get::<_, i64>(column).map(|v| v as u64);
    Ok(RecoveryPoint {
        id: RecoveryPointId(row.get("id")?),
        parent: row.get::<_, Option<String>>("parent")?.map(RecoveryPointId),
        root_tree: TreeId(blob32(row, "root_tree")?),
        source: row.get("source")?,
        sources: decode_sources(
            row.get_ref("sources")?.as_blob_or_null()?,
            row.get_ref("source")?.as_str()?,
        ),
        root_path: row
            .get_ref("root_path")?
            .as_blob_or_null()?
            .map(|b| PathBuf::from(OsStr::from_bytes(b))),
        host: row.get("host")?,
        tags: tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        kind: PointKind::parse(&kind).ok_or_else(|| bad("kind", "unknown point kind"))?,
        state: PointState::parse(&state).ok_or_else(|| bad("state", "unknown point state"))?,
        started_ns: row.get("started_ns")?,
        finished_ns: row.get("finished_ns")?,
        stats: PointStats {
            files: u("files")?,
            dirs: u("dirs")?,
            bytes: u("bytes")?,
            files_changed: u("files_changed")?,
            bytes_read: u("bytes_read")?,
            bytes_new: u("bytes_new")?,
            bytes_stored: u("bytes_stored")?,
        },
        errors: serde_json::from_str(&errors).map_err(|_| bad("errors", "bad error list"))?,
        root: RootMeta {
            mode: row.get("root_mode")?,
            uid: row.get("root_uid")?,
            gid: row.get("root_gid")?,
            mtime_ns: row.get("root_mtime_ns")?,
            xattrs: match row.get::<_, Option<Vec<u8>>>("root_xattrs")? {
                None => Vec::new(),
                Some(b) => decode_xattrs(&b).ok_or_else(|| bad("root_xattrs", "bad xattrs"))?,
            },
        },
        awaiting_job: row.get("awaiting_job")?,
        retain_until_ns: row.get("retain_until_ns")?,
    })
}

impl Catalog {
    /// Creates the catalog of a new vault: a file only the owner can read (it holds names in
    /// clear), with the current schema. Fails if the file exists.
    pub fn create(path: &Path) -> Result<Catalog> {
        // SQLite gives the WAL and shared-memory files the mode of the database file, so
        // creating that one 0600 keeps all three private.
        crate::store::backend::create_private_file(path).map_err(|source| {
            CatalogError::Create {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let mut conn = Self::connect(path)?;
        Self::configure(&conn)?;
        migrate::migrate(&mut conn)?;
        Ok(Catalog { conn })
    }

    /// Opens an existing catalog and brings its schema up to date. A missing or empty catalog
    /// is an error, never an empty vault: opening creates nothing.
    pub fn open(path: &Path) -> Result<Catalog> {
        if !path.exists() {
            return Err(CatalogError::Missing {
                path: path.to_path_buf(),
            });
        }
        let mut conn = Self::connect(path)?;
        // Before any pragma: switching to WAL would write a header into an empty file.
        if migrate::version(&conn)? == 0 {
            return Err(CatalogError::Empty {
                path: path.to_path_buf(),
            });
        }
        Self::configure(&conn)?;
        migrate::migrate(&mut conn)?;
        Ok(Catalog { conn })
    }

    /// SQLite's own check of the file's structure (`PRAGMA quick_check`): every page and b-tree
    /// readable and well formed. The problems it finds, or none.
    pub fn check_structure(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("PRAGMA quick_check")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        let found = rows.collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(found
            .into_iter()
            .filter(|line| line != "ok")
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect())
    }

    /// Opens a second connection for reading only, beside the one that writes: in WAL mode it
    /// reads a consistent snapshot without waiting for a writer or for other readers. The
    /// schema must already be current (the writer's [`Catalog::open`] migrated it).
    pub fn open_reader(path: &Path) -> Result<Catalog> {
        if !path.exists() {
            return Err(CatalogError::Missing {
                path: path.to_path_buf(),
            });
        }
        let conn = Self::connect(path)?;
        let found = migrate::version(&conn)?;
        if found != SCHEMA_VERSION {
            return Err(CatalogError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(Catalog { conn })
    }

    fn connect(path: &Path) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        // `rarray(?)`: a list of ids bound as one parameter, for batched look-ups.
        rusqlite::vtab::array::load_module(&conn)?;
        Ok(conn)
    }

    fn configure(conn: &Connection) -> Result<()> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.pragma_update(Some("temp"), "cache_size", -65536)?;
        Ok(())
    }

    /// A catalog in memory, for tests.
    pub fn open_in_memory() -> Result<Catalog> {
        let mut conn = Connection::open_in_memory()?;
        rusqlite::vtab::array::load_module(&conn)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate::migrate(&mut conn)?;
        Ok(Catalog { conn })
    }

    /// A vault setting.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Sets a vault setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    /// Removes a vault setting.
    pub fn clear_setting(&self, key: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM settings WHERE key = ?1", [key])?;
        Ok(())
    }

    /// Every block id the vault holds or awaits.
    pub fn block_ids(&self) -> Result<IdSet> {
        let mut stmt = self.conn.prepare("SELECT id FROM blocks")?;
        let rows = stmt.query_map([], |r| blob32(r, 0).map(BlockId))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether a new point may share this block instead of storing it again: it is in a stored
    /// pack, or travels in a pack of `awaiting_job`, the seed job the point waits for anyway.
    /// A block found only in another job's packs in transit is not shared, so it is written
    /// again and the point never depends on a job it does not wait for.
    pub fn shares_block(&self, id: &BlockId, awaiting_job: Option<&str>) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT 1 FROM blocks b JOIN packs p ON p.id = b.pack
             WHERE b.id = ?1 AND (p.state = 'stored' OR p.seed_job IS ?2)",
        )?;
        Ok(stmt.exists(params![&id.0[..], awaiting_job])?)
    }

    /// Blocks whose catalog location is not a stored pack: in transit, or a pack the catalog
    /// does not know. A point using one cannot be restored (verify).
    pub fn blocks_not_stored(&self) -> Result<IdSet> {
        let mut stmt = self.conn.prepare(
            "SELECT b.id FROM blocks b LEFT JOIN packs p ON p.id = b.pack
             WHERE p.state IS NOT 'stored'",
        )?;
        let rows = stmt.query_map([], |r| blob32(r, 0).map(BlockId))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Hands `each` every block in a stored pack with its location, in one scan. Only for
    /// vaults known to be small ([`Catalog::block_count`]): readers of others ask per batch.
    pub fn each_stored_location(&self, mut each: impl FnMut(BlockId, BlockLocation)) -> Result<()> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {LOCATED_COLUMNS} FROM blocks b JOIN packs p ON p.id = b.pack"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (id, (loc, state)) = located_from_row(row)?;
            if state == PackState::Stored {
                each(id, loc);
            }
        }
        Ok(())
    }

    /// Where every block is, with its pack's state: memory grows with the vault, so only tests
    /// use it; readers ask per block ([`Catalog::locate_with_followers`]).
    #[cfg(test)]
    pub fn block_locations(&self) -> Result<crate::store::IdMap<(BlockLocation, PackState)>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {LOCATED_COLUMNS} FROM blocks b JOIN packs p ON p.id = b.pack"
        ))?;
        let rows = stmt.query_map([], located_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Where one block is and whether its pack is stored, if the catalog knows the block. A
    /// block no point uses any more is found in the pack prune retired it with, while that
    /// pack is kept for older readers (it may be deleted once none is alive).
    pub fn locate_block(&self, id: &BlockId) -> Result<Option<(BlockLocation, PackState)>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LOCATED_COLUMNS} FROM blocks b JOIN packs p ON p.id = b.pack WHERE b.id = ?1"
        ))?;
        if let Some((_, found)) = stmt.query_row([&id.0[..]], located_from_row).optional()? {
            return Ok(Some(found));
        }
        let mut retired = self.conn.prepare_cached(
            "SELECT pack, offset, stored_len, raw_len FROM retired_blocks WHERE id = ?1 LIMIT 1",
        )?;
        Ok(retired
            .query_row([&id.0[..]], |r| {
                Ok(BlockLocation {
                    pack: PackId(blob32(r, 0)?),
                    offset: r.get::<_, i64>(1)? as u64,
                    stored_len: r.get(2)?,
                    raw_len: r.get(3)?,
                })
            })
            .optional()?
            .map(|loc| (loc, PackState::Stored)))
    }

    /// Where a block is, and the up to `ahead - 1` blocks that follow it in its pack (in pack
    /// order: a sequential read usually needs them next), in one query through the
    /// `blocks_by_pack` index. Empty if the catalog has no row for the block (see
    /// [`Catalog::locate_block`] for retired ones).
    pub fn locate_with_followers(
        &self,
        id: &BlockId,
        ahead: u32,
    ) -> Result<Vec<(BlockId, (BlockLocation, PackState))>> {
        let mut at = self.conn.prepare_cached(
            "SELECT p.name, p.state, b.pack, b.offset FROM blocks b JOIN packs p ON p.id = b.pack
             WHERE b.id = ?1",
        )?;
        let Some((pack, state, pack_row, offset)) = at
            .query_row([&id.0[..]], |r| {
                let state = if r.get_ref(1)?.as_str()? == "stored" {
                    PackState::Stored
                } else {
                    PackState::InTransit
                };
                Ok((
                    PackId(blob32(r, 0)?),
                    state,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .optional()?
        else {
            return Ok(Vec::new());
        };
        // The run is read from the covering index alone (no search of the table per block).
        let mut run = self.conn.prepare_cached(
            "SELECT id, offset, stored_len, raw_len FROM blocks INDEXED BY blocks_by_pack
             WHERE pack = ?1 AND offset >= ?2 ORDER BY offset LIMIT ?3",
        )?;
        let rows = run.query_map(params![pack_row, offset, ahead], |r| {
            Ok((
                BlockId(blob32(r, 0)?),
                (
                    BlockLocation {
                        pack,
                        offset: r.get::<_, i64>(1)? as u64,
                        stored_len: r.get(2)?,
                        raw_len: r.get(3)?,
                    },
                    state,
                ),
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Where each of `ids` the catalog knows is, in one query; `each` is called once per
    /// block found, in no particular order.
    pub fn locate_blocks(
        &self,
        ids: &[BlockId],
        mut each: impl FnMut(BlockId, BlockLocation, PackState),
    ) -> Result<()> {
        let ids: Vec<rusqlite::types::Value> = ids
            .iter()
            .map(|id| rusqlite::types::Value::Blob(id.0.to_vec()))
            .collect();
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LOCATED_COLUMNS} FROM blocks b JOIN packs p ON p.id = b.pack
             WHERE b.id IN rarray(?1)"
        ))?;
        let mut rows = stmt.query([std::rc::Rc::new(ids)])?;
        while let Some(row) = rows.next()? {
            let (id, (loc, state)) = located_from_row(row)?;
            each(id, loc, state);
        }
        Ok(())
    }

    /// Every pack: name, size, state.
    pub fn packs(&self) -> Result<Vec<(PackId, u64, PackState)>> {
        let mut stmt = self.conn.prepare("SELECT name, size, state FROM packs")?;
        let rows = stmt.query_map([], |r| {
            let state: String = r.get(2)?;
            Ok((
                PackId(blob32(r, 0)?),
                r.get::<_, i64>(1)? as u64,
                if state == "stored" {
                    PackState::Stored
                } else {
                    PackState::InTransit
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The metadata packs the catalog lists.
    pub fn meta_packs(&self) -> Result<std::collections::HashSet<PackId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM packs WHERE kind = 'meta'")?;
        let rows = stmt.query_map([], |r| blob32(r, 0).map(PackId))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The blocks the catalog says a pack holds, in pack order (through the `blocks_by_pack`
    /// index).
    pub fn blocks_of_pack(&self, pack: &PackId) -> Result<Vec<(BlockId, BlockLocation)>> {
        let mut stmt = self.conn.prepare(
            "SELECT b.id, b.offset, b.stored_len, b.raw_len
             FROM blocks b WHERE b.pack = (SELECT id FROM packs WHERE name = ?1) ORDER BY b.offset",
        )?;
        let rows = stmt.query_map([&pack.0[..]], |r| located_block(r, pack))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The entries of one directory, sorted by name.
    pub fn tree_entries(&self, tree: &TreeId) -> Result<Vec<Entry>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT entries FROM trees WHERE id = ?1")?;
        let blob: Vec<u8> = stmt.query_row([&tree.0[..]], |r| r.get(0))?;
        tree_codec::decode(&blob).map_err(|source| CatalogError::BadTree {
            tree: *tree,
            source,
        })
    }

    /// True if the tree is already recorded.
    pub fn has_tree(&self, tree: &TreeId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM trees WHERE id = ?1")?;
        Ok(stmt.exists([&tree.0[..]])?)
    }

    /// One file version.
    pub fn content(&self, id: &ContentId) -> Result<Content> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT size, block_list FROM contents WHERE id = ?1")?;
        let (size, list): (i64, Vec<u8>) =
            stmt.query_row([&id.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Content::from_row(id, size as u64, &list).ok_or(CatalogError::Corrupt("block list"))
    }

    /// Every file version with its block list (verify).
    pub fn all_contents(&self) -> Result<Vec<(ContentId, Content)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, size, block_list FROM contents")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                ContentId(blob32(r, 0)?),
                r.get::<_, i64>(1)? as u64,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, size, list) = row?;
            out.push((
                id,
                Content::from_row(&id, size, &list).ok_or(CatalogError::Corrupt("block list"))?,
            ));
        }
        Ok(out)
    }

    /// Every recovery point, oldest first.
    pub fn points(&self) -> Result<Vec<RecoveryPoint>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {POINT_COLUMNS} FROM points ORDER BY started_ns, id"
        ))?;
        let rows = stmt.query_map([], point_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The newest point of a source on a host an incremental can build on: complete, or
    /// awaiting a seed job (its blocks are known even while its packs travel).
    pub fn latest_parent(&self, source: &str, host: &str) -> Result<Option<RecoveryPoint>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {POINT_COLUMNS} FROM points
                     WHERE source = ?1 AND host = ?2 AND state IN ('complete', 'awaiting_seed')
                     ORDER BY started_ns DESC LIMIT 1"
                ),
                [source, host],
                point_from_row,
            )
            .optional()?)
    }

    /// Records a backup's packs, blocks, contents, trees and its point in one transaction.
    pub fn commit_backup(&mut self, commit: &BackupCommit, point: &RecoveryPoint) -> Result<()> {
        let tx = self.conn.transaction()?;
        insert_packs(&tx, &commit.packs)?;
        {
            let mut stmt = tx.prepare(
                "INSERT OR IGNORE INTO contents (id, size, block_list) VALUES (?1, ?2, ?3)",
            )?;
            let mut contents: Vec<_> = commit.contents.iter().collect();
            contents.sort_unstable_by_key(|(id, _)| *id);
            for (id, content) in contents {
                stmt.execute(params![
                    &id.0[..],
                    content.size as i64,
                    content.row_blocks(id)
                ])?;
            }
        }
        let mut trees: Vec<_> = commit.trees.iter().collect();
        trees.sort_unstable_by_key(|tree| tree.id);
        insert_trees(&tx, &trees)?;
        staging::commit_staged(&tx)?;
        staging::commit_parts(&tx, &commit.parts)?;
        insert_point(&tx, point)?;
        tree_xattrs::settle(&tx, &point.root_tree)?;
        if let Some(seed) = &commit.seed {
            seed::insert_job(&tx, seed, &point.id)?;
        }
        if let Some((pack, size)) = commit.sealed_as {
            insert_meta_pack(&tx, &pack, size)?;
            tx.execute("DELETE FROM pending_seals WHERE pack = ?1", [&pack.0[..]])?;
        }
        Ok(tx.commit()?)
    }

    /// Records that metadata pack `pack` is about to be written for a commit (see
    /// [`Catalog::pending_seals`]). Durable when this returns.
    pub fn add_pending_seal(&self, pack: &PackId) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO pending_seals (pack, started_ns) VALUES (?1, ?2)",
            params![&pack.0[..], crate::time::now_ns()],
        )?;
        Ok(())
    }

    /// Metadata packs whose commit has not happened: their writer is still running, or died
    /// between writing the pack and committing.
    pub fn pending_seals(&self) -> Result<Vec<PackId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT pack FROM pending_seals ORDER BY started_ns")?;
        let rows = stmt.query_map([], |r| blob32(r, 0).map(PackId))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// True if the catalog lists this pack (data or metadata).
    pub fn has_pack(&self, pack: &PackId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM packs WHERE name = ?1")?;
        Ok(stmt.exists([&pack.0[..]])?)
    }

    /// Forgets a pending seal (its pack never reached the store, or was taken back).
    pub fn drop_pending_seal(&self, pack: &PackId) -> Result<()> {
        self.conn
            .execute("DELETE FROM pending_seals WHERE pack = ?1", [&pack.0[..]])?;
        Ok(())
    }

    /// Records a metadata pack written outside a backup (a snapshot of an older vault's
    /// history, a seed job without a point).
    pub fn record_meta_pack(&self, pack: &PackId, size: u64) -> Result<()> {
        insert_meta_pack(&self.conn, pack, size)
    }

    /// Sums for `stats`: (unique plaintext bytes of blocks, bytes of packs), kept by triggers
    /// as rows come and go (`catalog-schema/0009_store_totals.sql`), not summed here.
    pub fn store_totals(&self) -> Result<(u64, u64)> {
        let (raw, packed): (i64, i64) = self.conn.query_row(
            "SELECT unique_bytes, pack_bytes FROM store_totals",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((raw as u64, packed as u64))
    }

    /// How many blocks the catalog knows (kept by triggers, not counted here).
    pub fn block_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT blocks FROM store_totals", [], |r| r.get(0))?;
        Ok(n as u64)
    }
}

/// A block and where it is, from a row of `b.id, b.offset, b.stored_len, b.raw_len` of `pack`.
fn located_block(r: &Row<'_>, pack: &PackId) -> rusqlite::Result<(BlockId, BlockLocation)> {
    Ok((
        BlockId(blob32(r, 0)?),
        BlockLocation {
            pack: *pack,
            offset: r.get::<_, i64>(1)? as u64,
            stored_len: r.get(2)?,
            raw_len: r.get(3)?,
        },
    ))
}

fn insert_meta_pack(conn: &Connection, pack: &PackId, size: u64) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO packs (name, size, state, kind) VALUES (?1, ?2, 'stored', 'meta')",
        params![&pack.0[..], size as i64],
    )?;
    Ok(())
}

fn insert_packs(tx: &Connection, packs: &[NewPack]) -> Result<()> {
    let mut pack_stmt =
        tx.prepare("INSERT INTO packs (name, size, state, seed_job) VALUES (?1, ?2, ?3, ?4)")?;
    let mut blocks = Vec::new();
    for pack in packs {
        pack_stmt.execute(params![
            &pack.id.0[..],
            pack.size as i64,
            pack.state.as_str(),
            pack.seed_job
        ])?;
        let rowid = tx.last_insert_rowid();
        blocks.extend(pack.entries.iter().map(|e| (rowid, pack.state, e)));
    }
    // Inserting in key order fills B-tree pages densely: a smaller catalog.
    blocks.sort_unstable_by_key(|(_, _, e)| e.id);
    let mut insert = BlockInsert::prepare(tx)?;
    for (rowid, state, e) in blocks {
        insert.add(rowid, state, e)?;
    }
    Ok(())
}

/// Records the blocks of new packs. A block already known keeps its location, unless that
/// location is not readable yet (a pack in transit) and the new one is: then it moves to the
/// stored pack. A block written again onto seed disks because its only copy travels in
/// another job's pack is kept as a second copy (`block_copies`), adopted when its pack lands.
struct BlockInsert<'t> {
    upsert: rusqlite::Statement<'t>,
    copy: rusqlite::Statement<'t>,
}

impl<'t> BlockInsert<'t> {
    fn prepare(tx: &'t Connection) -> Result<BlockInsert<'t>> {
        Ok(BlockInsert {
            upsert: tx.prepare(
                "INSERT INTO blocks (id, pack, offset, stored_len, raw_len)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET pack = excluded.pack, offset = excluded.offset,
                     stored_len = excluded.stored_len, raw_len = excluded.raw_len
                 WHERE ?6 AND (SELECT state FROM packs WHERE packs.id = blocks.pack)
                     IS NOT 'stored'",
            )?,
            copy: tx.prepare(
                "INSERT OR IGNORE INTO block_copies (pack, id, offset, stored_len, raw_len)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?,
        })
    }

    fn add(&mut self, pack: i64, state: PackState, e: &PackEntry) -> Result<()> {
        let stored = state == PackState::Stored;
        let changed = self.upsert.execute(params![
            &e.id.0[..],
            pack,
            e.offset as i64,
            e.stored_len,
            e.raw_len,
            stored
        ])?;
        if changed == 0 && !stored {
            self.copy.execute(params![
                pack,
                &e.id.0[..],
                e.offset as i64,
                e.stored_len,
                e.raw_len
            ])?;
        }
        Ok(())
    }
}

fn insert_trees(tx: &Connection, trees: &[&TreeRow]) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO trees (id, entry_count, entries) VALUES (?1, ?2, ?3)",
    )?;
    for tree in trees {
        // OR IGNORE: an unchanged directory is shared with an earlier point (Merkle).
        stmt.execute(params![
            &tree.id.0[..],
            i64::from(tree.entry_count),
            &tree.blob
        ])?;
    }
    Ok(())
}

fn insert_point(tx: &Connection, p: &RecoveryPoint) -> Result<()> {
    let s = &p.stats;
    tx.execute(
        &format!(
            "INSERT INTO points ({POINT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)"
        ),
        params![
            p.id.0,
            p.parent.as_ref().map(|id| id.0.clone()),
            &p.root_tree.0[..],
            p.source,
            p.host,
            p.tags.join(","),
            p.kind.as_str(),
            p.state.as_str(),
            p.started_ns,
            p.finished_ns,
            s.files as i64,
            s.dirs as i64,
            s.bytes as i64,
            s.files_changed as i64,
            s.bytes_read as i64,
            s.bytes_new as i64,
            s.bytes_stored as i64,
            serde_json::to_string(&p.errors).unwrap_or_else(|_| "[]".into()),
            p.root.mode,
            p.root.uid,
            p.root.gid,
            p.root.mtime_ns,
            encode_xattrs(&p.root.xattrs),
            p.awaiting_job,
            p.retain_until_ns,
            encode_sources(&p.sources),
            p.root_path.as_ref().map(|r| r.as_os_str().as_bytes()),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8]) -> Entry {
        Entry {
            name: name.to_vec(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 1,
            gid: 2,
            mtime_ns: 1_700_000_000_123_456_789,
            ctime_ns: 5,
            size: 3,
            inode: 42,
            nlink: 1,
            content: Some(ContentId([3; 32])),
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: vec![(b"user.a".to_vec(), b"\x00\xff".to_vec())],
        }
    }

    #[test]
    fn commit_and_read_back() {
        let mut cat = Catalog::open_in_memory().unwrap();
        let block = BlockId([7; 32]);
        let content = Content {
            size: 3,
            blocks: vec![(block, 3)],
        };
        let tree = TreeId([9; 32]);
        let commit = BackupCommit {
            packs: vec![NewPack {
                id: PackId([1; 32]),
                size: 100,
                state: PackState::Stored,
                seed_job: None,
                entries: vec![PackEntry {
                    id: block,
                    offset: 12,
                    stored_len: 40,
                    raw_len: 3,
                }],
            }],
            contents: vec![(ContentId([3; 32]), content.clone())],
            trees: vec![TreeRow::new(tree, &[entry(b"a\xffb"), entry(b"c d")])],
            seed: None,
            sealed_as: None,
            parts: Vec::new(),
        };
        let point = RecoveryPoint {
            tags: vec!["x".into()],
            root: RootMeta {
                mode: 0o755,
                uid: 1,
                gid: 2,
                mtime_ns: 3,
                xattrs: vec![],
            },
            ..RecoveryPoint::for_test("00112233aabbccdd", tree)
        };
        cat.commit_backup(&commit, &point).unwrap();
        assert_eq!(cat.points().unwrap(), vec![point.clone()]);
        assert_eq!(cat.latest_parent("/src", "h").unwrap(), Some(point));
        assert_eq!(cat.latest_parent("/src", "other").unwrap(), None);
        assert_eq!(
            cat.tree_entries(&tree).unwrap(),
            vec![entry(b"a\xffb"), entry(b"c d")]
        );
        assert_eq!(cat.content(&ContentId([3; 32])).unwrap(), content);
        assert!(cat.block_ids().unwrap().contains(&block));
        assert_eq!(cat.block_locations().unwrap()[&block].0.offset, 12);

        // A value this build does not know is an error, never a default.
        cat.conn
            .execute("UPDATE points SET errors = 'not json'", [])
            .unwrap();
        assert!(cat.points().is_err());
    }
}

//! Catalog queries of seed jobs: what was shipped on which disk, what has arrived, and the
//! moment a job completes (its points become `complete` in the same transaction).

use rusqlite::{params, OptionalExtension, Transaction};

use super::{blob32, Catalog, NewPack, PackState, RecoveryPointId, Result, SeedJobRecord};
use crate::store::{BlockId, PackId};

/// A seed job's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedJobState {
    /// Disks written, nothing imported yet.
    Prepared,
    /// Some packs are in the store.
    Importing,
    /// Every pack is in the store; the point is complete.
    Imported,
    /// Prepare ran out of disk room; nothing can be imported.
    Incomplete,
}

impl SeedJobState {
    pub fn as_str(self) -> &'static str {
        match self {
            SeedJobState::Prepared => "prepared",
            SeedJobState::Importing => "importing",
            SeedJobState::Imported => "imported",
            SeedJobState::Incomplete => "incomplete",
        }
    }

    fn parse(s: &str) -> SeedJobState {
        match s {
            "importing" => SeedJobState::Importing,
            "imported" => SeedJobState::Imported,
            "incomplete" => SeedJobState::Incomplete,
            _ => SeedJobState::Prepared,
        }
    }
}

/// A seed job row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedJob {
    pub name: String,
    pub point: Option<RecoveryPointId>,
    pub state: SeedJobState,
    pub source: String,
    pub disk_count: u32,
    pub created_ns: i64,
}

/// One shipped pack as the catalog expects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedPack {
    pub pack: PackId,
    pub size: u64,
    pub state: PackState,
    pub disk_index: u32,
}

pub(super) fn insert_job(
    tx: &Transaction<'_>,
    job: &SeedJobRecord,
    point: &RecoveryPointId,
) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO seed_jobs (name, point, state, source, disk_count, created_ns)
         VALUES (?1, ?2, 'prepared', ?3, ?4, ?5)",
        params![
            job.name,
            point.0,
            job.source,
            job.disk_count,
            job.created_ns
        ],
    )?;
    let mut stmt =
        tx.prepare("INSERT INTO seed_packs (job, pack, disk_index) VALUES (?1, ?2, ?3)")?;
    for (pack, disk) in &job.packs {
        stmt.execute(params![job.name, &pack.0[..], disk])?;
    }
    Ok(())
}

fn job_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SeedJob> {
    let state: String = row.get(2)?;
    Ok(SeedJob {
        name: row.get(0)?,
        point: row.get::<_, Option<String>>(1)?.map(RecoveryPointId),
        state: SeedJobState::parse(&state),
        source: row.get(3)?,
        disk_count: row.get(4)?,
        created_ns: row.get(5)?,
    })
}

const JOB_COLUMNS: &str = "name, point, state, source, disk_count, created_ns";

impl Catalog {
    /// Records a job whose prepare ran out of room: it exists, but has nothing to import.
    pub fn record_incomplete_seed_job(&self, name: &str, source: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO seed_jobs (name, point, state, source, disk_count, created_ns)
             VALUES (?1, NULL, 'incomplete', ?2, 0, ?3)",
            params![name, source, crate::time::now_ns()],
        )?;
        Ok(())
    }

    /// One job by name.
    pub fn seed_job(&self, name: &str) -> Result<Option<SeedJob>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM seed_jobs WHERE name = ?1"),
                [name],
                job_from_row,
            )
            .optional()?)
    }

    /// Every job, oldest first.
    pub fn seed_jobs(&self) -> Result<Vec<SeedJob>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM seed_jobs ORDER BY created_ns"
        ))?;
        let rows = stmt.query_map([], job_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every pack a job shipped, with its size and state.
    pub fn seed_packs(&self, job: &str) -> Result<Vec<SeedPack>> {
        let mut stmt = self.conn.prepare(
            "SELECT s.pack, p.size, p.state, s.disk_index
             FROM seed_packs s JOIN packs p ON p.name = s.pack WHERE s.job = ?1 ORDER BY s.disk_index",
        )?;
        let rows = stmt.query_map([job], |r| {
            let state: String = r.get(2)?;
            Ok(SeedPack {
                pack: PackId(blob32(r, 0)?),
                size: r.get::<_, i64>(1)? as u64,
                state: if state == "stored" {
                    PackState::Stored
                } else {
                    PackState::InTransit
                },
                disk_index: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Blocks a pack holds a second copy of (see `block_copies`) whose location is not a
    /// stored pack either: lost with the pack, they must be re-made (repair).
    pub fn pending_copies_of_pack(&self, pack: &PackId) -> Result<Vec<BlockId>> {
        let mut stmt = self.conn.prepare(
            "SELECT c.id FROM block_copies c
             JOIN blocks b ON b.id = c.id LEFT JOIN packs q ON q.id = b.pack
             WHERE c.pack = (SELECT id FROM packs WHERE name = ?1) AND q.state IS NOT 'stored'",
        )?;
        let rows = stmt.query_map([&pack.0[..]], |r| blob32(r, 0).map(BlockId))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Disks of a job seen by an import.
    pub fn seed_disks_seen(&self, job: &str) -> Result<Vec<u32>> {
        let mut stmt = self
            .conn
            .prepare("SELECT disk_index FROM seed_disks_seen WHERE job = ?1 ORDER BY disk_index")?;
        let rows = stmt.query_map([job], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Packs of a job that arrived damaged, with the reason.
    pub fn seed_bad_packs(&self, job: &str) -> Result<Vec<(PackId, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT pack, reason FROM seed_bad_packs WHERE job = ?1")?;
        let rows = stmt.query_map([job], |r| Ok((PackId(blob32(r, 0)?), r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Notes a damaged pack.
    pub fn record_bad_seed_pack(&self, job: &str, pack: &PackId, reason: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO seed_bad_packs (job, pack, reason) VALUES (?1, ?2, ?3)",
            params![job, &pack.0[..], reason],
        )?;
        Ok(())
    }

    /// Records one disk's import: its good packs are now in the store (they were made durable
    /// before this call), and the disk was seen. Completes the job if nothing is left in
    /// transit; returns true then.
    pub fn record_seed_import(
        &mut self,
        job: &str,
        disk_index: u32,
        stored: &[PackId],
    ) -> Result<bool> {
        let tx = self.conn.transaction()?;
        {
            let mut mark =
                tx.prepare("UPDATE packs SET state = 'stored' WHERE name = ?1 AND seed_job = ?2")?;
            let mut clear =
                tx.prepare("DELETE FROM seed_bad_packs WHERE job = ?1 AND pack = ?2")?;
            for pack in stored {
                mark.execute(params![&pack.0[..], job])?;
                clear.execute(params![job, &pack.0[..]])?;
                adopt_copies(&tx, pack)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO seed_disks_seen (job, disk_index, seen_ns) VALUES (?1, ?2, ?3)",
            params![job, disk_index, crate::time::now_ns()],
        )?;
        let done = finish_if_done(&tx, job)?;
        tx.commit()?;
        Ok(done)
    }

    /// Marks packs of `job` found in the store (imported there from another machine) as
    /// stored; completes the job if none is awaited any more. Returns whether it is complete.
    pub fn record_seed_found(&mut self, job: &str, stored: &[PackId]) -> Result<bool> {
        let tx = self.conn.transaction()?;
        {
            let mut mark =
                tx.prepare("UPDATE packs SET state = 'stored' WHERE name = ?1 AND seed_job = ?2")?;
            for pack in stored {
                mark.execute(params![&pack.0[..], job])?;
                adopt_copies(&tx, pack)?;
            }
        }
        let done = finish_if_done(&tx, job)?;
        tx.commit()?;
        Ok(done)
    }

    /// Replaces lost packs of a job by packs re-made from the source (repair): the new packs'
    /// blocks take over, the lost packs are forgotten. Completes the job if nothing is left.
    pub fn record_seed_repair(
        &mut self,
        job: &str,
        new_packs: &[NewPack],
        lost: &[PackId],
    ) -> Result<bool> {
        let tx = self.conn.transaction()?;
        {
            let mut pack_stmt = tx.prepare(
                "INSERT INTO packs (name, size, state, seed_job) VALUES (?1, ?2, 'stored', NULL)",
            )?;
            // An upsert, not INSERT OR REPLACE: a replace deletes without firing the delete
            // trigger, and the kept totals (block count, unique bytes) would drift.
            let mut block_stmt = tx.prepare(
                "INSERT INTO blocks (id, pack, offset, stored_len, raw_len) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET pack = excluded.pack, offset = excluded.offset,
                     stored_len = excluded.stored_len, raw_len = excluded.raw_len",
            )?;
            for pack in new_packs {
                pack_stmt.execute(params![&pack.id.0[..], pack.size as i64])?;
                let rowid = tx.last_insert_rowid();
                for e in &pack.entries {
                    block_stmt.execute(params![
                        &e.id.0[..],
                        rowid,
                        e.offset as i64,
                        e.stored_len,
                        e.raw_len
                    ])?;
                }
            }
        }
        drop_lost_packs(&tx, job, lost)?;
        let done = finish_if_done(&tx, job)?;
        tx.commit()?;
        Ok(done)
    }
}

/// Forgets the lost packs of a job whose every block is now located elsewhere (re-made by a
/// repair, or a copy no longer needed); a lost pack that still holds the only location of a
/// block, or a copy some block still waits for, stays. Returns the packs forgotten.
pub(super) fn drop_lost_packs(
    tx: &rusqlite::Connection,
    job: &str,
    lost: &[PackId],
) -> Result<Vec<PackId>> {
    let mut orphaned = tx
        .prepare("SELECT COUNT(*) FROM blocks b JOIN packs p ON p.id = b.pack WHERE p.name = ?1")?;
    let mut drop_seed = tx.prepare("DELETE FROM seed_packs WHERE job = ?1 AND pack = ?2")?;
    let mut drop_bad = tx.prepare("DELETE FROM seed_bad_packs WHERE job = ?1 AND pack = ?2")?;
    let mut copies_left = tx.prepare(
        "SELECT COUNT(*) FROM block_copies c
         JOIN blocks b ON b.id = c.id LEFT JOIN packs q ON q.id = b.pack
         WHERE c.pack = (SELECT id FROM packs WHERE name = ?1)
           AND q.state IS NOT 'stored'",
    )?;
    let mut drop_copies =
        tx.prepare("DELETE FROM block_copies WHERE pack = (SELECT id FROM packs WHERE name = ?1)")?;
    let mut drop_pack = tx.prepare("DELETE FROM packs WHERE name = ?1")?;
    let mut dropped = Vec::new();
    for pack in lost {
        let left: i64 = orphaned.query_row([&pack.0[..]], |r| r.get(0))?;
        let copies: i64 = copies_left.query_row([&pack.0[..]], |r| r.get(0))?;
        if left + copies == 0 {
            drop_seed.execute(params![job, &pack.0[..]])?;
            drop_bad.execute(params![job, &pack.0[..]])?;
            drop_copies.execute([&pack.0[..]])?;
            drop_pack.execute([&pack.0[..]])?;
            dropped.push(*pack);
        }
    }
    Ok(dropped)
}

/// A pack just stored: every block it holds a second copy of whose location is still not
/// readable (another job's pack in transit) moves to it. Its copies are then forgotten: each
/// block is now in a stored pack, this one or another.
fn adopt_copies(tx: &Transaction<'_>, pack: &PackId) -> Result<()> {
    tx.execute(
        "UPDATE blocks SET pack = c.pack, offset = c.offset, stored_len = c.stored_len,
             raw_len = c.raw_len
         FROM block_copies AS c
         WHERE c.pack = (SELECT id FROM packs WHERE name = ?1 AND state = 'stored')
           AND blocks.id = c.id
           AND (SELECT state FROM packs WHERE packs.id = blocks.pack) IS NOT 'stored'",
        [&pack.0[..]],
    )?;
    tx.execute(
        "DELETE FROM block_copies
         WHERE pack = (SELECT id FROM packs WHERE name = ?1 AND state = 'stored')",
        [&pack.0[..]],
    )?;
    Ok(())
}

/// Moves a job forward: `importing` once a pack is in, `imported` (and its points `complete`)
/// once none is in transit.
fn finish_if_done(tx: &Transaction<'_>, job: &str) -> Result<bool> {
    let in_transit: i64 = tx.query_row(
        "SELECT COUNT(*) FROM packs WHERE seed_job = ?1 AND state = 'in_transit'",
        [job],
        |r| r.get(0),
    )?;
    if in_transit > 0 {
        tx.execute(
            "UPDATE seed_jobs SET state = 'importing' WHERE name = ?1 AND state = 'prepared'",
            [job],
        )?;
        return Ok(false);
    }
    tx.execute(
        "UPDATE seed_jobs SET state = 'imported' WHERE name = ?1",
        [job],
    )?;
    tx.execute(
        "UPDATE points SET state = 'complete', awaiting_job = NULL
         WHERE awaiting_job = ?1 AND state = 'awaiting_seed'",
        [job],
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{
        BackupCommit, PointKind, PointState, PointStats, RecoveryPoint, RootMeta, TreeId, TreeRow,
    };
    use crate::store::PackEntry;

    const SHARED: BlockId = BlockId([5; 32]);

    fn pack(n: u8, state: PackState, job: Option<&str>, blocks: &[BlockId]) -> NewPack {
        NewPack {
            id: PackId([n; 32]),
            size: 1000,
            state,
            seed_job: job.map(str::to_string),
            entries: blocks
                .iter()
                .enumerate()
                .map(|(i, id)| PackEntry {
                    id: *id,
                    offset: 8 + 40 * i as u64 + u64::from(n),
                    stored_len: 40,
                    raw_len: 30,
                })
                .collect(),
        }
    }

    /// Commits a backup writing `packs`: a seed job's when `job` is set.
    fn commit(cat: &mut Catalog, id: &str, job: Option<&str>, packs: Vec<NewPack>) {
        let seed = job.map(|name| SeedJobRecord {
            name: name.into(),
            source: format!("/{name}"),
            disk_count: 1,
            created_ns: 1,
            packs: packs.iter().map(|p| (p.id, 1)).collect(),
        });
        let root = TreeId([0; 32]);
        let commit = BackupCommit {
            packs,
            contents: vec![],
            trees: vec![TreeRow::new(root, &[])],
            seed,
            ..BackupCommit::default()
        };
        let point = RecoveryPoint {
            id: RecoveryPointId(id.into()),
            parent: None,
            root_tree: root,
            source: format!("/{id}"),
            sources: vec![format!("/{id}").into()],
            root_path: Some(format!("/{id}").into()),
            host: "h".into(),
            tags: vec![],
            kind: if job.is_some() {
                PointKind::Seeded
            } else {
                PointKind::Full
            },
            state: if job.is_some() {
                PointState::AwaitingSeed
            } else {
                PointState::Complete
            },
            started_ns: 1,
            finished_ns: 2,
            stats: PointStats::default(),
            errors: vec![],
            root: RootMeta::default(),
            awaiting_job: job.map(str::to_string),
            retain_until_ns: None,
        };
        cat.commit_backup(&commit, &point).unwrap();
    }

    fn location(cat: &Catalog, block: BlockId) -> (PackId, PackState) {
        let (loc, state) = cat.block_locations().unwrap()[&block];
        (loc.pack, state)
    }

    fn state(cat: &Catalog, point: &str) -> PointState {
        let points = cat.points().unwrap();
        points.iter().find(|p| p.id.0 == point).unwrap().state
    }

    /// Jobs a and b both carry SHARED: a wrote it first, b again (a's was in transit).
    fn two_jobs() -> Catalog {
        let mut cat = Catalog::open_in_memory().unwrap();
        let a = pack(
            1,
            PackState::InTransit,
            Some("a"),
            &[SHARED, BlockId([1; 32])],
        );
        commit(&mut cat, "pa", Some("a"), vec![a]);
        assert!(!cat.shares_block(&SHARED, None).unwrap());
        assert!(cat.shares_block(&SHARED, Some("a")).unwrap());
        let b = pack(
            2,
            PackState::InTransit,
            Some("b"),
            &[SHARED, BlockId([2; 32])],
        );
        commit(&mut cat, "pb", Some("b"), vec![b]);
        assert_eq!(
            location(&cat, SHARED),
            (PackId([1; 32]), PackState::InTransit)
        );
        cat
    }

    #[test]
    fn a_job_landing_first_adopts_its_copies_of_blocks_still_in_transit() {
        let mut cat = two_jobs();
        assert_eq!(
            cat.pending_copies_of_pack(&PackId([2; 32])).unwrap(),
            [SHARED]
        );
        assert!(cat.record_seed_import("b", 1, &[PackId([2; 32])]).unwrap());
        assert_eq!(location(&cat, SHARED), (PackId([2; 32]), PackState::Stored));
        assert_eq!(state(&cat, "pb"), PointState::Complete);
        assert_eq!(state(&cat, "pa"), PointState::AwaitingSeed);
        assert!(cat
            .pending_copies_of_pack(&PackId([2; 32]))
            .unwrap()
            .is_empty());

        assert!(cat.record_seed_import("a", 1, &[PackId([1; 32])]).unwrap());
        assert_eq!(location(&cat, SHARED), (PackId([2; 32]), PackState::Stored));
        assert_eq!(state(&cat, "pa"), PointState::Complete);
    }

    #[test]
    fn a_copy_of_a_block_already_stored_is_forgotten() {
        let mut cat = two_jobs();
        assert!(cat.record_seed_import("a", 1, &[PackId([1; 32])]).unwrap());
        assert_eq!(location(&cat, SHARED), (PackId([1; 32]), PackState::Stored));
        // b's copy is no longer needed by anyone: a lost pack of b need not re-make it.
        assert!(cat
            .pending_copies_of_pack(&PackId([2; 32]))
            .unwrap()
            .is_empty());
        assert!(cat.record_seed_import("b", 1, &[PackId([2; 32])]).unwrap());
        assert_eq!(location(&cat, SHARED), (PackId([1; 32]), PackState::Stored));
        assert_eq!(state(&cat, "pb"), PointState::Complete);
    }

    #[test]
    fn a_block_stored_again_online_moves_out_of_transit() {
        let mut cat = two_jobs();
        let online = pack(3, PackState::Stored, None, &[SHARED]);
        commit(&mut cat, "pc", None, vec![online]);
        assert_eq!(location(&cat, SHARED), (PackId([3; 32]), PackState::Stored));
        assert!(cat.shares_block(&SHARED, None).unwrap());
        assert!(!cat.shares_block(&BlockId([1; 32]), None).unwrap());
    }

    #[test]
    fn a_lost_pack_is_dropped_only_once_its_copies_are_remade() {
        let mut cat = two_jobs();
        let lost = PackId([2; 32]);
        // The repair re-made b's own block but not the shared copy: the pack stays.
        let remade = pack(4, PackState::Stored, None, &[BlockId([2; 32])]);
        assert!(!cat.record_seed_repair("b", &[remade], &[lost]).unwrap());
        assert_eq!(cat.seed_packs("b").unwrap().len(), 1);
        let remade = pack(5, PackState::Stored, None, &[SHARED]);
        assert!(cat.record_seed_repair("b", &[remade], &[lost]).unwrap());
        assert!(cat.seed_packs("b").unwrap().is_empty());
        assert_eq!(state(&cat, "pb"), PointState::Complete);
        // The kept totals still match the rows: a block that moved is not counted twice.
        let (count, bytes): (i64, i64) = cat
            .conn
            .query_row(
                "SELECT count(*), COALESCE(SUM(raw_len), 0) FROM blocks",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(cat.block_count().unwrap(), count as u64);
        assert_eq!(cat.store_totals().unwrap().0, bytes as u64);
    }
}

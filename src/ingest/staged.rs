//! What a backup adds to the catalog, written as the walk makes it: new trees and file
//! versions are staged in the catalog's temporary tables (see `catalog::staging`) and sealed
//! into metadata parts of at most [`PART_BYTES`] as they accumulate, so neither is held in
//! memory however many files the source has. The commit then seals the rest with the point
//! into the last metadata pack, which names the parts, and moves the staged rows into the
//! catalog in its transaction. A backup that fails takes its parts back ([`Staged::abandon`]).
//! A dry run makes the same tree ids and keeps nothing ([`Unstaged`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use super::walk::Trees;
use super::PackLedger;
use crate::catalog::sealed::BodyWriter;
use crate::catalog::tree_codec::tree_id;
use crate::catalog::{
    BackupCommit, Content, ContentId, ContentRow, Entry, RecoveryPoint, TreeId, TreeRow,
};
use crate::error::{Error, Result};
use crate::store::PackId;
use crate::vault::Vault;

/// Rows staged in one transaction of the temporary tables.
const STAGE_BATCH_BYTES: usize = 4 << 20;
/// Body bytes (before compression) sealed into one metadata part.
pub const PART_BYTES: usize = 16 << 20;

/// Where a pass's new trees (as [`Trees`]) and file versions go.
pub trait Record: Trees {
    /// Takes a file version that was read.
    fn content(&mut self, id: ContentId, content: &Content) -> Result<()>;
}

/// A backup's new trees and file versions, on their way to the catalog and the store.
pub struct Staged<'v> {
    vault: &'v Vault,
    /// Records not yet sealed into a part.
    body: BodyWriter,
    trees: Vec<TreeRow>,
    contents: Vec<ContentRow>,
    /// Bytes of `trees` and `contents`.
    batch_bytes: usize,
    /// Trees this backup adds (the catalog does not see them before the commit).
    new_trees: HashSet<TreeId>,
    /// Parts sealed into the store: (name, size).
    parts: Vec<(PackId, u64)>,
    /// Seal parts once the body reaches this size.
    part_bytes: usize,
}

impl<'v> Staged<'v> {
    /// Starts with nothing staged (what a backup that died in this process left is dropped).
    pub fn new(vault: &'v Vault) -> Result<Staged<'v>> {
        vault.catalog().clear_staged()?;
        Ok(Staged {
            vault,
            body: BodyWriter::default(),
            trees: Vec::new(),
            contents: Vec::new(),
            batch_bytes: 0,
            new_trees: HashSet::new(),
            parts: Vec::new(),
            part_bytes: part_bytes(),
        })
    }

    fn flush_if_full(&mut self) -> Result<()> {
        if self.batch_bytes >= STAGE_BATCH_BYTES {
            self.stage()?;
        }
        if self.body.len() >= self.part_bytes {
            self.seal_part()?;
        }
        Ok(())
    }

    fn stage(&mut self) -> Result<()> {
        self.vault.catalog().stage(&self.trees, &self.contents)?;
        self.trees.clear();
        self.contents.clear();
        self.batch_bytes = 0;
        Ok(())
    }

    /// Seals the records so far into a part in the store, listed in the catalog first so a
    /// part of a backup that dies is found and removed.
    fn seal_part(&mut self) -> Result<()> {
        let meta = self.vault.seal(&self.body.take())?;
        self.vault.catalog().add_sealing_part(&meta.id)?;
        if let Err(e) = self.vault.backend().put(&meta.id, &meta.bytes) {
            let _ = self.vault.catalog().drop_sealing_part(&meta.id);
            return Err(e.into());
        }
        self.parts.push((meta.id, meta.bytes.len() as u64));
        crate::failpoint::hit("backup:part-sealed");
        Ok(())
    }

    /// Seals the rest with `point` into the last metadata pack, then commits the point,
    /// unless the backup was interrupted or its ledger abandoned; the ledger knows while the
    /// commit runs, so its packs are never taken back from under it.
    ///
    /// The point's metadata is durable in the store before the catalog commits it, so a crash
    /// never leaves a catalog point that `catalog rebuild` cannot bring back. A pending seal
    /// recorded first lets the next open finish a commit that a crash cut off after the last
    /// metadata pack was written (see [`crate::rebuild::settle_pending`]).
    pub fn commit(
        &mut self,
        commit: &mut BackupCommit,
        point: &RecoveryPoint,
        ledger: &PackLedger,
        interrupted: &AtomicBool,
    ) -> Result<()> {
        self.stage()?;
        commit.parts = self.parts.clone();
        crate::failpoint::hit("backup:before-commit");
        if interrupted.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let body = std::mem::take(&mut self.body);
        let vault = self.vault;
        let meta = vault.seal(&crate::catalog::sealed::commit_body(commit, point, body))?;
        vault.catalog().add_pending_seal(&meta.id)?;
        if let Err(e) = vault.backend().put(&meta.id, &meta.bytes) {
            let _ = vault.catalog().drop_pending_seal(&meta.id);
            return Err(e.into());
        }
        commit.sealed_as = Some((meta.id, meta.bytes.len() as u64));
        crate::failpoint::hit("backup:sealed");
        let committed = if interrupted.load(Ordering::Relaxed) || !ledger.begin_commit() {
            Err(Error::Interrupted)
        } else {
            let committed = vault.catalog().commit_backup(commit, point);
            ledger.end_commit(committed.is_ok());
            committed.map_err(Error::from)
        };
        if committed.is_err() {
            // Not committed: the last metadata pack is taken back with the data packs (and
            // the parts, by `abandon`). Should that fail, the next open finds the pending seal
            // and settles it.
            if vault.backend().delete(&meta.id).is_ok() {
                let _ = vault.catalog().drop_pending_seal(&meta.id);
            }
        } else {
            self.parts.clear();
        }
        committed
    }

    /// Takes back what a backup that failed staged and sealed. A part that cannot be removed
    /// now stays listed, and the next open removes it.
    pub fn abandon(self) {
        for (part, _) in &self.parts {
            if self.vault.backend().delete(part).is_ok() {
                let _ = self.vault.catalog().drop_sealing_part(part);
            }
        }
        let _ = self.vault.catalog().clear_staged();
    }
}

/// [`PART_BYTES`]; debug builds take `SYNVAULT_PART_BYTES` instead, so tests make many
/// small parts.
fn part_bytes() -> usize {
    #[cfg(debug_assertions)]
    if let Some(bytes) = std::env::var("SYNVAULT_PART_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return bytes;
    }
    PART_BYTES
}

impl Record for Staged<'_> {
    fn content(&mut self, id: ContentId, content: &Content) -> Result<()> {
        let row = ContentRow {
            id,
            size: content.size,
            list: content.row_blocks(&id),
        };
        self.body.content(&row.id, row.size, &row.list);
        self.batch_bytes += 48 + row.list.len();
        self.contents.push(row);
        self.flush_if_full()
    }
}

impl Trees for Staged<'_> {
    fn tree(&mut self, entries: &[Entry]) -> Result<TreeId> {
        let id = tree_id(&self.vault.codec().keys().id, entries);
        if self.new_trees.contains(&id) || self.vault.catalog().has_tree(&id)? {
            return Ok(id);
        }
        self.new_trees.insert(id);
        let row = TreeRow::new(id, entries);
        self.body.tree(&row);
        self.batch_bytes += 40 + row.blob.len();
        self.trees.push(row);
        self.flush_if_full()?;
        Ok(id)
    }
}

/// A dry run's trees and file versions: each directory's tree id is made (its parent's id
/// depends on it), nothing is kept or written.
pub struct Unstaged<'v> {
    pub vault: &'v Vault,
}

impl Record for Unstaged<'_> {
    fn content(&mut self, _id: ContentId, _content: &Content) -> Result<()> {
        Ok(())
    }
}

impl Trees for Unstaged<'_> {
    fn tree(&mut self, entries: &[Entry]) -> Result<TreeId> {
        Ok(tree_id(&self.vault.codec().keys().id, entries))
    }
}

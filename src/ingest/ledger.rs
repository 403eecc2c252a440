//! The packs one backup wrote and has not committed, so a failed or interrupted backup can
//! take them back and leave the disk as full as it found it.
//!
//! The writer thread records each pack it creates; the backup marks the ledger committing
//! just before the catalog transaction and committed after it. [`PackLedger::abandon`]
//! removes the recorded packs only while no commit has begun, so a pack a committed point
//! uses is never touched: once the commit starts, the packs stay whatever happens (an
//! interrupted commit leaves them unreferenced, for verify to report). A pack that existed
//! before this run is never recorded, so it is never removed either.
//!
//! `abandon` may run on another thread than the backup (the CLI's interrupt watchdog, while
//! the backup is stuck in a read that blocks): after it, a commit is refused and a pack
//! recorded later is reported back for removal, so nothing is committed that references a
//! removed pack.

use std::sync::Mutex;

use crate::store::{PackId, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Writing,
    Committing,
    Committed,
    Abandoned,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    packs: Vec<PackId>,
}

/// Packs written by one backup and not yet committed.
#[derive(Debug)]
pub struct PackLedger {
    state: Mutex<State>,
}

impl Default for PackLedger {
    fn default() -> Self {
        PackLedger::new()
    }
}

impl PackLedger {
    /// An empty ledger of a backup that has not committed.
    pub fn new() -> PackLedger {
        PackLedger {
            state: Mutex::new(State {
                phase: Phase::Writing,
                packs: Vec::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a pack this run created. Returns false if the ledger was abandoned meanwhile:
    /// the caller removes the pack itself.
    pub fn record(&self, id: PackId) -> bool {
        let mut state = self.state();
        if state.phase == Phase::Abandoned {
            return false;
        }
        state.packs.push(id);
        true
    }

    /// The packs recorded so far.
    pub fn packs(&self) -> Vec<PackId> {
        self.state().packs.clone()
    }

    /// Called just before the catalog commit. Returns false if the ledger was abandoned: the
    /// backup must not commit.
    pub fn begin_commit(&self) -> bool {
        let mut state = self.state();
        if state.phase == Phase::Abandoned {
            return false;
        }
        state.phase = Phase::Committing;
        true
    }

    /// The commit ended: committed (`true`) or rolled back (`false`, the packs may go).
    pub fn end_commit(&self, committed: bool) {
        self.state().phase = if committed {
            Phase::Committed
        } else {
            Phase::Writing
        };
    }

    /// Removes every recorded pack with `remove`, unless a commit has begun. Returns the
    /// packs removed; a pack that cannot be removed is left (it is unreferenced garbage, not
    /// damage) and the first such error is returned after the others were tried.
    pub fn abandon(
        &self,
        remove: &dyn Fn(&PackId) -> Result<(), StoreError>,
    ) -> Result<usize, StoreError> {
        let mut state = self.state();
        if matches!(state.phase, Phase::Committing | Phase::Committed) {
            return Ok(0);
        }
        state.phase = Phase::Abandoned;
        let mut first_error = None;
        let mut removed = 0;
        for id in std::mem::take(&mut state.packs) {
            match remove(&id) {
                Ok(()) => removed += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn id(n: u8) -> PackId {
        PackId::of(&[n])
    }

    #[test]
    fn abandon_removes_what_was_recorded_and_refuses_a_later_commit() {
        let ledger = PackLedger::new();
        assert!(ledger.record(id(1)));
        assert!(ledger.record(id(2)));
        let removed = RefCell::new(Vec::new());
        let n = ledger
            .abandon(&|p| {
                removed.borrow_mut().push(*p);
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(*removed.borrow(), vec![id(1), id(2)]);
        assert!(!ledger.record(id(3)));
        assert!(!ledger.begin_commit());
    }

    #[test]
    fn nothing_is_removed_once_a_commit_has_begun() {
        let ledger = PackLedger::new();
        ledger.record(id(1));
        assert!(ledger.begin_commit());
        assert_eq!(ledger.abandon(&|_| panic!("removed a pack")).unwrap(), 0);
        ledger.end_commit(true);
        assert_eq!(ledger.abandon(&|_| panic!("removed a pack")).unwrap(), 0);
    }

    #[test]
    fn a_rolled_back_commit_lets_the_packs_go() {
        let ledger = PackLedger::new();
        ledger.record(id(1));
        assert!(ledger.begin_commit());
        ledger.end_commit(false);
        assert_eq!(ledger.abandon(&|_| Ok(())).unwrap(), 1);
    }
}

//! The in-memory block locator: where every block's frame is, and whether its pack is stored
//! or still in transit (no SQLite per block).
//!
//! Invariant: the map is replaced wholesale, never edited, when a block is unknown or still in
//! transit, so a backup or seed import committed after the reader started becomes readable;
//! concurrent misses reload once. A catalog error on reload keeps the old map.

use std::sync::{Arc, Mutex, RwLock};

use crate::catalog::{BlockLocation, PackState};
use crate::store::{BlockId, IdMap};
use crate::vault::Vault;

/// Every block's location and its pack's state, as the catalog gives them.
pub(super) type Locations = IdMap<(BlockLocation, PackState)>;

/// The locator of one reader, shared with its read-ahead threads.
pub(super) struct Locator {
    map: RwLock<Arc<Locations>>,
    /// Held while the map is reloaded, so concurrent misses reload once.
    reloading: Mutex<()>,
}

impl Locator {
    /// A locator over `map`.
    pub(super) fn new(map: Locations) -> Locator {
        Locator {
            map: RwLock::new(Arc::new(map)),
            reloading: Mutex::new(()),
        }
    }

    /// Where a block is, as of the last load.
    pub(super) fn locate(&self, id: &BlockId) -> Option<(BlockLocation, PackState)> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(id).copied()
    }

    /// Where a block is, reloading the map once if it is unknown or still in transit.
    pub(super) fn locate_fresh(
        &self,
        vault: &Vault,
        id: &BlockId,
    ) -> Option<(BlockLocation, PackState)> {
        if let Some(found @ (_, PackState::Stored)) = self.locate(id) {
            return Some(found);
        }
        let seen = Arc::as_ptr(&self.map.read().unwrap_or_else(|e| e.into_inner()));
        let _reloading = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let now = Arc::as_ptr(&self.map.read().unwrap_or_else(|e| e.into_inner()));
        if now == seen {
            // Nobody reloaded while we waited: do it. A catalog error leaves the old map.
            if let Ok(fresh) = vault.read_catalog().and_then(|c| c.block_locations()) {
                *self.map.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
            }
        }
        self.locate(id)
    }
}

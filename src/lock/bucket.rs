//! The writer lock of a vault in object storage: one `lock` object in the bucket, shared by
//! every machine that writes the vault.
//!
//! The object is created with a conditional create (it exists only if nobody holds the lock),
//! names its holder, and is refreshed by its holder in the background. A lock whose holder
//! stopped refreshing it for [`stale_after`] (killed, or its machine gone) is stale and is
//! taken over with a conditional replace, so two writers that find it stale at once cannot
//! both win — and a user never has to delete it by hand. A holder's own clock dates each
//! refresh; set `SYNVAULT_LOCK_STALE_SECONDS` where clocks are far apart (default 300).
//!
//! A holder whose refreshes failed for a stale period (its link was down) may have been taken
//! over without knowing it: so a writer confirms it still holds the lock, and refreshes it,
//! before each commit to the store ([`Holding::confirm`], through `Vault::seal`) and before
//! prune deletes, and stops with [`Error::LockLost`] if it does not.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Acquired;
use crate::error::{Error, Result};
use crate::store::object::ObjectBackend;

const LOCK_OBJECT: &str = "lock";
const DEFAULT_STALE: Duration = Duration::from_secs(300);
/// A lock that nobody refreshed for this long is stale.
pub fn stale_after() -> Duration {
    std::env::var("SYNVAULT_LOCK_STALE_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_STALE, Duration::from_secs_f64)
}

/// What the lock object holds.
#[derive(Serialize, Deserialize)]
struct LockObject {
    /// The holder, for people: pid, host, command, since.
    holder: String,
    /// This holding's own random token: tells a refresher whether the lock is still its own.
    token: String,
    /// When the holder last refreshed the lock (ns since the epoch, its clock).
    refreshed_ns: i64,
}

/// The lock object, held until dropped.
#[derive(Debug)]
pub struct BucketLock {
    holding: Arc<Holding>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    refresher: Option<JoinHandle<()>>,
}

/// One holding of the lock object: whose it is, so a writer can make sure it still holds the
/// lock before it commits (see [`Holding::confirm`]).
#[derive(Debug)]
pub struct Holding {
    bucket: ObjectBackend,
    token: String,
}

impl Holding {
    /// Makes sure the lock object is still this holding's, and refreshes it, so it stays this
    /// holding's for a stale period from now: a writer calls this before each commit to the
    /// store. Fails with [`Error::LockLost`] naming the new holder if another writer took the
    /// lock over (this holder's refreshes failed for a whole stale period), and with the
    /// store's error if the store cannot say: a writer that cannot be sure commits nothing.
    pub fn confirm(&self) -> Result<()> {
        let lost = |holder: String| Err(Error::LockLost { holder });
        let Some((bytes, version)) = self.bucket.read_versioned(LOCK_OBJECT)? else {
            return lost("nobody (the lock object is gone)".into());
        };
        let mut held = match serde_json::from_slice::<LockObject>(&bytes) {
            Ok(held) if held.token == self.token => held,
            Ok(other) => return lost(other.holder),
            Err(_) => return lost("a writer whose lock object does not parse".into()),
        };
        held.refreshed_ns = crate::time::now_ns();
        let json = serde_json::to_vec(&held).unwrap_or_default();
        if self.bucket.replace_if(LOCK_OBJECT, &json, &version)? {
            Ok(())
        } else {
            lost("another writer (the lock object changed while it was confirmed)".into())
        }
    }
}

impl BucketLock {
    /// Takes the lock object for `holder`, or fails with [`Error::Locked`] naming the holder.
    pub fn acquire(bucket: &ObjectBackend, holder: &str) -> Result<(BucketLock, Acquired)> {
        let token = hex::encode(crate::crypto::random_array::<8>());
        let mine = |now| {
            serde_json::to_vec(&LockObject {
                holder: holder.to_string(),
                token: token.clone(),
                refreshed_ns: now,
            })
            .unwrap_or_default()
        };
        // A few rounds: a holder may release, or another writer take over, in between.
        for _ in 0..3 {
            let now = crate::time::now_ns();
            if bucket.create_new(LOCK_OBJECT, &mine(now))? {
                return Ok((BucketLock::hold(bucket, token), Acquired::Free));
            }
            let Some((bytes, version)) = bucket.read_versioned(LOCK_OBJECT)? else {
                continue;
            };
            let theirs = serde_json::from_slice::<LockObject>(&bytes).ok();
            let named = theirs
                .as_ref()
                .map_or("a writer whose lock object does not parse".into(), |t| {
                    t.holder.clone()
                });
            let idle_ns = theirs.as_ref().map_or(i64::MAX, |t| now - t.refreshed_ns);
            if idle_ns < stale_after().as_nanos() as i64 {
                return Err(Error::Locked { holder: named });
            }
            if bucket.replace_if(LOCK_OBJECT, &mine(now), &version)? {
                return Ok((BucketLock::hold(bucket, token), Acquired::TakenOver(named)));
            }
        }
        Err(Error::Locked {
            holder: "other writers (the lock object keeps changing)".into(),
        })
    }

    /// Starts refreshing the lock just taken.
    fn hold(bucket: &ObjectBackend, token: String) -> BucketLock {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let refresher = {
            let (bucket, token, stop) = (bucket.clone(), token.clone(), stop.clone());
            std::thread::Builder::new()
                .name("lock refresher".into())
                .spawn(move || refresh_until_stopped(&bucket, &token, &stop))
                .ok()
        };
        BucketLock {
            holding: Arc::new(Holding {
                bucket: bucket.clone(),
                token,
            }),
            stop,
            refresher,
        }
    }

    /// This holding, for checks before commits.
    pub fn holding(&self) -> &Arc<Holding> {
        &self.holding
    }
}

/// Refreshes the lock a few times per stale period, until told to stop or the lock is no
/// longer this holding's (another writer took it over after refreshes failed for a stale
/// period; the holder is not stopped).
fn refresh_until_stopped(bucket: &ObjectBackend, token: &str, stop: &(Mutex<bool>, Condvar)) {
    let period = (stale_after() / 4).max(Duration::from_millis(200));
    let (stopped, wake) = stop;
    let mut guard = stopped.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (next, _) = wake
            .wait_timeout(guard, period)
            .unwrap_or_else(|e| e.into_inner());
        guard = next;
        if *guard {
            return;
        }
        // A failed refresh is tried again next period; only another holder ends the lock.
        let Ok(Some((bytes, version))) = bucket.read_versioned(LOCK_OBJECT) else {
            continue;
        };
        match serde_json::from_slice::<LockObject>(&bytes) {
            Ok(mut held) if held.token == token => {
                held.refreshed_ns = crate::time::now_ns();
                let json = serde_json::to_vec(&held).unwrap_or_default();
                let _ = bucket.replace_if(LOCK_OBJECT, &json, &version);
            }
            _ => return,
        }
    }
}

impl Drop for BucketLock {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(refresher) = self.refresher.take() {
            let _ = refresher.join();
        }
        // Remove the object only while it is still this holding's.
        let Holding { bucket, token } = &*self.holding;
        if let Ok(Some((bytes, _))) = bucket.read_versioned(LOCK_OBJECT) {
            if serde_json::from_slice::<LockObject>(&bytes).is_ok_and(|l| &l.token == token) {
                let _ = crate::store::files::VaultFiles::remove(bucket, LOCK_OBJECT);
            }
        }
    }
}

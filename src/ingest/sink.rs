//! Where new blocks go during ingest: dedup against the vault, frame, pack, write.
//!
//! Many threads call [`BlockSink::add`]; each block id is encoded once (the first caller wins
//! the set of blocks this run stores). Whether the vault already holds a block is asked of
//! [`StoredBlocks`] (the catalog) block by block, so memory grows with what a backup stores,
//! not with the vault. Full packs go to one writer thread through a small bounded channel, so
//! fsync stalls do not stop hashing and compression, and memory stays bounded; the writer hands
//! a written pack's buffer back for the next pack to fill (see `SpareBuffers`). Where packs go
//! is a [`PackDestination`]: the store, or (seed disks) removable disk directories.
//!
//! Every pack the writer creates is recorded in a [`PackLedger`], so a backup that fails
//! after writing packs can remove them again (see `ledger`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use super::ledger::PackLedger;
use crate::catalog::{NewPack, PackState};
use crate::store::pack::FinishedPack;
use crate::store::{BlockCodec, BlockId, IdSet, PackId, PackWriter, StoreError};

/// Target pack size.
pub const PACK_TARGET_BYTES: usize = 32 << 20;

/// Where finished packs are written.
pub trait PackDestination: Send + Sync {
    /// Writes one pack durably and says how the catalog should record it.
    fn write(&self, pack: &FinishedPack) -> Result<(PackState, Option<String>), StoreError>;
    /// True if the destination already holds this pack (then it is not this run's to remove).
    fn holds(&self, _id: &PackId) -> bool {
        false
    }
    /// Removes a pack this run wrote and will not commit. By default the pack is left.
    fn discard(&self, _id: &PackId) -> Result<(), StoreError> {
        Ok(())
    }
    /// How many packs to write at once.
    fn writers(&self) -> usize {
        1
    }
}

/// Packs go straight into the vault's store.
pub struct ToStore<'a>(pub &'a dyn crate::store::Backend);

impl PackDestination for ToStore<'_> {
    fn write(&self, pack: &FinishedPack) -> Result<(PackState, Option<String>), StoreError> {
        self.0.put(&pack.id, &pack.bytes)?;
        Ok((PackState::Stored, None))
    }

    fn holds(&self, id: &PackId) -> bool {
        // If the store cannot tell, the pack is taken as not this run's: left, never removed.
        self.0.size(id).map_or(true, |size| size.is_some())
    }

    fn discard(&self, id: &PackId) -> Result<(), StoreError> {
        self.0.delete(id)
    }

    fn writers(&self) -> usize {
        self.0.uploads_in_flight()
    }
}

/// Packs are made and dropped: a dry run counts what a backup would write.
pub struct Nowhere;

impl PackDestination for Nowhere {
    fn write(&self, _pack: &FinishedPack) -> Result<(PackState, Option<String>), StoreError> {
        Ok((PackState::Stored, None))
    }
}

/// The blocks a vault already holds, which a backup shares instead of storing them again. The
/// answer must be exact one way: a block said to be held that is not would be lost.
pub trait StoredBlocks: Sync {
    fn holds(&self, id: &BlockId) -> Result<bool, StoreError>;
}

/// No block is held (a sink that stores everything it is given once).
pub struct NoBlocks;

impl StoredBlocks for NoBlocks {
    fn holds(&self, _: &BlockId) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// Deduplicates, encodes and packs blocks.
pub struct BlockSink<'a> {
    codec: &'a BlockCodec,
    /// What the vault holds already.
    stored: &'a dyn StoredBlocks,
    /// The blocks this run stores.
    storing: Mutex<IdSet>,
    /// If set, only these blocks are stored (repair re-makes lost blocks only).
    wanted: Option<IdSet>,
    current: Mutex<PackWriter>,
    to_writer: Mutex<Option<SyncSender<PackWriter>>>,
    /// Buffers of packs written, for the next packs.
    spare: SpareBuffers,
    blocks_new: AtomicU64,
    bytes_new: AtomicU64,
    bytes_stored: AtomicU64,
}

/// Counts of what a sink stored.
#[derive(Clone, Copy, Debug, Default)]
pub struct SinkTotals {
    pub blocks_new: u64,
    pub bytes_new: u64,
    pub bytes_stored: u64,
}

impl<'a> BlockSink<'a> {
    /// A sink that skips the blocks `stored` holds. Returns the receiving end for the writers
    /// [`with_sink`] runs.
    pub fn new(
        codec: &'a BlockCodec,
        stored: &'a dyn StoredBlocks,
    ) -> (BlockSink<'a>, Receiver<PackWriter>) {
        let (tx, rx) = sync_channel(1);
        let sink = BlockSink {
            codec,
            stored,
            storing: Mutex::new(IdSet::default()),
            wanted: None,
            current: Mutex::new(PackWriter::new(PACK_TARGET_BYTES)),
            to_writer: Mutex::new(Some(tx)),
            spare: SpareBuffers::default(),
            blocks_new: AtomicU64::new(0),
            bytes_new: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
        };
        (sink, rx)
    }

    /// A sink that stores only the `wanted` blocks (each once).
    pub fn only(codec: &'a BlockCodec, wanted: IdSet) -> (BlockSink<'a>, Receiver<PackWriter>) {
        let (mut sink, rx) = BlockSink::new(codec, &NoBlocks);
        sink.wanted = Some(wanted);
        (sink, rx)
    }

    /// Stores a block unless the vault (or this run) already has it.
    pub fn add(&self, id: BlockId, plain: &[u8]) -> Result<(), StoreError> {
        if self.wanted.as_ref().is_some_and(|w| !w.contains(&id)) {
            return Ok(());
        }
        let storing_already = self.storing().contains(&id);
        // Not under the lock: the catalog look-up may take microseconds. Two threads with the
        // same new block both get here; the insert lets one of them store it.
        if storing_already || self.stored.holds(&id)? {
            return Ok(());
        }
        if !self.storing().insert(id) {
            return Ok(());
        }
        let frame = self.codec.encode(&id, plain);
        self.blocks_new.fetch_add(1, Ordering::Relaxed);
        self.bytes_new
            .fetch_add(plain.len() as u64, Ordering::Relaxed);
        self.bytes_stored
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        let full = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            current.add(id, &frame, plain.len());
            if current.len() >= PACK_TARGET_BYTES {
                let next = PackWriter::reusing(self.spare.take(), PACK_TARGET_BYTES);
                Some(std::mem::replace(&mut *current, next))
            } else {
                None
            }
        };
        match full {
            Some(pack) => self.send(pack),
            None => Ok(()),
        }
    }

    fn storing(&self) -> std::sync::MutexGuard<'_, IdSet> {
        self.storing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, pack: PackWriter) -> Result<(), StoreError> {
        let tx = self
            .to_writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match tx {
            Some(tx) if tx.send(pack).is_ok() => Ok(()),
            // The writer stopped: it failed, and its error is what `with_sink` returns.
            _ => Err(StoreError::WriterStopped),
        }
    }

    /// Sends the last partial pack and closes the channel; the writer thread then ends.
    pub fn finish(&self) -> Result<SinkTotals, StoreError> {
        let last = std::mem::replace(
            &mut *self.current.lock().unwrap_or_else(|e| e.into_inner()),
            PackWriter::new(0),
        );
        if !last.is_empty() {
            self.send(last)?;
        }
        self.close();
        Ok(SinkTotals {
            blocks_new: self.blocks_new.load(Ordering::Relaxed),
            bytes_new: self.bytes_new.load(Ordering::Relaxed),
            bytes_stored: self.bytes_stored.load(Ordering::Relaxed),
        })
    }

    /// Closes the channel without flushing (on failure), so the writer thread ends.
    pub fn close(&self) {
        self.to_writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

/// The buffer of a written pack, kept for the next pack to fill: a fresh 32 MiB buffer per
/// pack costs the kernel's zeroing of its pages, a tenth of a backup of large blocks. A pack of
/// more than [`SpareBuffers::MOST_BLOCKS`] blocks gives its buffer back to the system instead:
/// there per-block work dominates, nothing is saved, and a buffer kept whole would add to the
/// per-block state such a backup already holds (a point of a million small files).
#[derive(Default)]
struct SpareBuffers(Mutex<Option<Vec<u8>>>);

impl SpareBuffers {
    /// Blocks a pack holds at most for its buffer to be kept (an average block of 8 KiB).
    const MOST_BLOCKS: usize = PACK_TARGET_BYTES / (8 << 10);

    /// The spare buffer, or a new empty one.
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()
    }

    /// Keeps the buffer of a written pack of `blocks` blocks, if there is no spare yet.
    fn give(&self, buffer: Vec<u8>, blocks: usize) {
        if blocks <= Self::MOST_BLOCKS {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(buffer);
        }
    }
}

/// One writer thread's loop over the packs it takes from the shared channel. A writer that
/// fails drops the channel, so the sink stops at once and the other writers end.
fn write_packs(
    codec: &BlockCodec,
    packs: &Mutex<Option<Receiver<PackWriter>>>,
    destination: &dyn PackDestination,
    ledger: &PackLedger,
    spare: &SpareBuffers,
) -> Result<Vec<NewPack>, StoreError> {
    let written = write_packs_until_error(codec, packs, destination, ledger, spare);
    if written.is_err() {
        packs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
    written
}

fn write_packs_until_error(
    codec: &BlockCodec,
    packs: &Mutex<Option<Receiver<PackWriter>>>,
    destination: &dyn PackDestination,
    ledger: &PackLedger,
    spare: &SpareBuffers,
) -> Result<Vec<NewPack>, StoreError> {
    let mut written = Vec::new();
    loop {
        let next = match packs.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(channel) => channel.recv(),
            None => break,
        };
        let Ok(writer) = next else {
            break;
        };
        let pack = writer.finish(codec);
        let existed = destination.holds(&pack.id);
        let (state, seed_job) = destination.write(&pack)?;
        let size = pack.bytes.len() as u64;
        if !existed && !ledger.record(pack.id) {
            // Abandoned while this pack was written: take it back, and stop.
            destination.discard(&pack.id)?;
            return Err(StoreError::WriterStopped);
        }
        spare.give(pack.bytes, pack.entries.len());
        written.push(NewPack {
            id: pack.id,
            size,
            state,
            seed_job,
            entries: pack.entries,
        });
    }
    Ok(written)
}

/// Runs `work` with a sink whose packs a writer thread finishes and writes to `destination`.
/// Returns what `work` returned, the sink's totals and the packs written. A failed writer's
/// error is returned first: it is the cause of any failure `work` saw.
pub fn with_sink<T>(
    sink: (BlockSink<'_>, Receiver<PackWriter>),
    codec: &BlockCodec,
    destination: &dyn PackDestination,
    work: impl FnOnce(&BlockSink<'_>) -> crate::error::Result<T>,
) -> crate::error::Result<(T, SinkTotals, Vec<NewPack>)> {
    with_sink_recorded(sink, codec, destination, &PackLedger::new(), work)
}

/// [`with_sink`], recording every pack written in `ledger`, also when it fails: the caller
/// then abandons the ledger to take the packs back.
pub fn with_sink_recorded<T>(
    sink: (BlockSink<'_>, Receiver<PackWriter>),
    codec: &BlockCodec,
    destination: &dyn PackDestination,
    ledger: &PackLedger,
    work: impl FnOnce(&BlockSink<'_>) -> crate::error::Result<T>,
) -> crate::error::Result<(T, SinkTotals, Vec<NewPack>)> {
    let (sink, packs) = sink;
    let packs = Mutex::new(Some(packs));
    let (done, written) = std::thread::scope(|scope| {
        // Several writers where the store takes several packs at once (object storage).
        let writers: Vec<_> = (0..destination.writers().max(1))
            .map(|_| scope.spawn(|| write_packs(codec, &packs, destination, ledger, &sink.spare)))
            .collect();
        let done = work(&sink).and_then(|value| Ok((value, sink.finish()?)));
        sink.close();
        let written: Result<Vec<Vec<NewPack>>, StoreError> = writers
            .into_iter()
            .map(|w| w.join().unwrap_or(Err(StoreError::WriterStopped)))
            .collect();
        (done, written.map(|w| w.concat()))
    });
    let packs = written?;
    let (value, totals) = done?;
    Ok((value, totals, packs))
}

//! The library API through the `Backend` seam: a decorator that counts calls and fails chosen
//! ones sits under backup, restore, reads of one file, the mount's view, verify and seed
//! import. Every flow must reach the store through it, a failed read must become that file's
//! damage, and a failed write a failed backup that leaves the vault verifying.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use synvault::reassembly::view::ROOT;
use synvault::seed::prepare::{prepare, PrepareOptions};
use synvault::KdfParams;
use synvault::{
    backup, restore, verify, BackupOptions, BlockReader, CreateOptions, Layout, NoProgress,
    PointReader, RestoreOptions, Vault, VerifyOptions, View,
};
use synvault::{Backend, FileVerdict, PackId, StoreError};

const FAST: CreateOptions = CreateOptions {
    kdf: KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    },
};
const MIB: usize = 1 << 20;

/// Counts every call into the store and fails the ones it is told to.
#[derive(Default)]
struct Counted {
    reads: AtomicU64,
    writes: AtomicU64,
    fail_reads_of: Mutex<HashSet<PackId>>,
    fail_writes: AtomicBool,
}

struct Decorated {
    inner: Box<dyn Backend>,
    counts: Arc<Counted>,
}

impl Decorated {
    fn read(&self, id: &PackId) -> Result<(), StoreError> {
        self.counts.reads.fetch_add(1, Ordering::Relaxed);
        if self.counts.fail_reads_of.lock().unwrap().contains(id) {
            return Err(StoreError::MissingPack { pack: *id });
        }
        Ok(())
    }

    fn write(&self, id: &PackId) -> Result<(), StoreError> {
        self.counts.writes.fetch_add(1, Ordering::Relaxed);
        if self.counts.fail_writes.load(Ordering::Relaxed) {
            return Err(StoreError::Io {
                what: "write pack (injected)",
                path: PathBuf::from(id.to_hex()),
                source: std::io::Error::other("injected failure"),
            });
        }
        Ok(())
    }
}

impl Backend for Decorated {
    fn put(&self, id: &PackId, bytes: &[u8]) -> Result<(), StoreError> {
        self.write(id)?;
        self.inner.put(id, bytes)
    }
    fn read_into(&self, id: &PackId, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.read(id)?;
        self.inner.read_into(id, offset, buf)
    }
    fn read_all(&self, id: &PackId) -> Result<Vec<u8>, StoreError> {
        self.read(id)?;
        self.inner.read_all(id)
    }
    fn size(&self, id: &PackId) -> Result<Option<u64>, StoreError> {
        self.inner.size(id)
    }
    fn list(&self) -> Result<Vec<(PackId, u64)>, StoreError> {
        self.inner.list()
    }
    fn delete(&self, id: &PackId) -> Result<(), StoreError> {
        self.inner.delete(id)
    }
    fn put_file(&self, id: &PackId, from: &Path, len: u64) -> Result<FileVerdict, StoreError> {
        self.write(id)?;
        self.inner.put_file(id, from, len)
    }
    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }
    fn remove_temporary(&self) -> Result<usize, StoreError> {
        self.inner.remove_temporary()
    }
}

/// A vault at `root` whose store is decorated; the counts are shared with the caller.
fn open_decorated(root: &Path) -> (Vault, Arc<Counted>) {
    let vault = Vault::open(root, b"pw").unwrap();
    let counts = Arc::new(Counted::default());
    let inner = synvault::place::Place::local(root).backend();
    let vault = vault.with_backend(Box::new(Decorated {
        inner,
        counts: counts.clone(),
    }));
    (vault, counts)
}

fn seeded(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.bin"), seeded(1, 3 * MIB)).unwrap();
    std::fs::write(src.join("sub/b.bin"), seeded(2, 2 * MIB)).unwrap();
    std::fs::write(src.join("small.txt"), b"small file").unwrap();
    src
}

fn options(paths: Vec<PathBuf>) -> BackupOptions {
    BackupOptions {
        paths,
        ..BackupOptions::default()
    }
}

/// A temporary directory with a new vault (`root`) and a source tree beside it.
fn new_vault_and_source() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("vault");
    drop(Vault::create(&root, b"pw", FAST).unwrap());
    let src = source(dir.path());
    (dir, root, src)
}

#[test]
fn every_flow_reaches_the_store_through_the_backend() {
    let (dir, root, src) = new_vault_and_source();
    let stop = AtomicBool::new(false);

    // Backup writes through it.
    let (vault, counts) = open_decorated(&root);
    let report = backup(&vault, &options(vec![src.clone()]), &NoProgress, &stop).unwrap();
    assert!(report.packs_written > 0);
    // Its data packs, and one metadata pack sealing the point.
    assert_eq!(
        counts.writes.load(Ordering::Relaxed),
        report.packs_written as u64 + 1
    );
    let point = vault.resolve_point("latest").unwrap();

    // One file read, as `cat` does.
    let blocks = Arc::new(BlockReader::new(&vault).unwrap());
    let reader = PointReader::new(&vault, point.clone(), blocks.clone());
    let entry = reader.lookup(b"a.bin").unwrap();
    let map = reader.block_map(&entry).unwrap();
    let mut buf = vec![0; 4096];
    let before = counts.reads.load(Ordering::Relaxed);
    assert_eq!(reader.read_at(&map, 0, &mut buf).unwrap(), 4096);
    assert_eq!(&buf[..], &seeded(1, 3 * MIB)[..4096]);
    assert!(counts.reads.load(Ordering::Relaxed) > before, "cat");

    // The mount's view.
    let view = View::new(
        Arc::new(BlockReader::new(&vault).unwrap()),
        Layout::Point(Box::new(point.clone())),
    );
    let before = counts.reads.load(Ordering::Relaxed);
    let attr = view.lookup(ROOT, b"small.txt").unwrap();
    assert_eq!(view.read(attr.ino, 0, 100).unwrap(), b"small file");
    assert!(counts.reads.load(Ordering::Relaxed) > before, "mount");

    // Restore, and verify reading every pack.
    let before = counts.reads.load(Ordering::Relaxed);
    let target = dir.path().join("restored");
    let restore_options = RestoreOptions {
        target: target.clone(),
        ..RestoreOptions::default()
    };
    let restored = restore(&reader, &restore_options, &NoProgress, &stop).unwrap();
    assert!(restored.damaged.is_empty());
    assert_eq!(
        std::fs::read(target.join("sub/b.bin")).unwrap(),
        seeded(2, 2 * MIB)
    );
    assert!(counts.reads.load(Ordering::Relaxed) > before, "restore");
    let before = counts.reads.load(Ordering::Relaxed);
    let verified = verify(&vault, VerifyOptions { read_data: true }, &NoProgress).unwrap();
    assert!(verified.is_clean());
    assert!(counts.reads.load(Ordering::Relaxed) > before, "verify");

    // Seed prepare writes its data packs to disks and only its metadata pack (the point and
    // the job, sealed) to the store; import puts the data packs through it.
    let disk = dir.path().join("disk");
    let seed_src = dir.path().join("seed-src");
    std::fs::create_dir_all(&seed_src).unwrap();
    std::fs::write(seed_src.join("new.bin"), seeded(3, 2 * MIB)).unwrap();
    let writes = counts.writes.load(Ordering::Relaxed);
    let prepared = PrepareOptions {
        job: "j".into(),
        disks: vec![disk.clone()],
        disk_size: None,
        force: false,
        backup: options(vec![seed_src]),
    };
    prepare(&vault, &prepared, &NoProgress, &stop).unwrap();
    assert_eq!(counts.writes.load(Ordering::Relaxed), writes + 1, "prepare");
    let writes = writes + 1;
    let imported = synvault::seed::import::import_into(
        &synvault::place::Place::local(&root),
        vault.backend(),
        "j",
        &[disk],
        &NoProgress,
        &stop,
    )
    .unwrap();
    assert!(imported.job_complete);
    assert_eq!(
        counts.writes.load(Ordering::Relaxed),
        writes + imported.packs_imported,
        "import"
    );
}

#[test]
fn a_failed_read_is_that_file_s_damage_and_a_failed_write_a_failed_backup() {
    let (dir, root, src) = new_vault_and_source();
    let stop = AtomicBool::new(false);
    let (vault, counts) = open_decorated(&root);
    backup(&vault, &options(vec![src.clone()]), &NoProgress, &stop).unwrap();

    // Fail reads of the pack holding b.bin's first block: restore names that file damaged.
    let point = vault.resolve_point("latest").unwrap();
    let blocks = Arc::new(BlockReader::new(&vault).unwrap());
    let reader = PointReader::new(&vault, point, blocks.clone());
    let b = reader.lookup(b"sub/b.bin").unwrap();
    let (_, first, _) = reader.block_map(&b).unwrap().blocks[0];
    let (location, _) = blocks.locate(&first).unwrap();
    counts.fail_reads_of.lock().unwrap().insert(location.pack);
    let restore_options = RestoreOptions {
        target: dir.path().join("restored"),
        ..RestoreOptions::default()
    };
    let report = restore(&reader, &restore_options, &NoProgress, &stop).unwrap();
    assert!(
        report.damaged.iter().any(|d| d.contains("b.bin")),
        "{:?}",
        report.damaged
    );
    assert!(!dir.path().join("restored/sub/b.bin").exists());
    counts.fail_reads_of.lock().unwrap().clear();

    // Fail every write: the backup fails, and the vault still verifies.
    std::fs::write(src.join("c.bin"), seeded(4, 2 * MIB)).unwrap();
    counts.fail_writes.store(true, Ordering::Relaxed);
    let points = vault.catalog().points().unwrap().len();
    assert!(backup(&vault, &options(vec![src]), &NoProgress, &stop).is_err());
    counts.fail_writes.store(false, Ordering::Relaxed);
    assert_eq!(vault.catalog().points().unwrap().len(), points);
    let verified = verify(&vault, VerifyOptions { read_data: true }, &NoProgress).unwrap();
    assert!(verified.is_clean(), "{:?}", verified.problems);
}

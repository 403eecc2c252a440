//! Backup that can be trusted: a file rewritten while it is read is never stored torn, a
//! failed backup gives its disk space back, a read that blocks cannot keep SIGTERM from
//! ending a backup, pseudo file systems and the vault itself are not backed up, and a huge
//! sparse file costs only its data.
//!
//! Tests that need root (loop mounts, FUSE, bind mounts, device nodes) skip without it, and
//! every mount is undone by a guard's `Drop`, also when the test fails.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::common::{allocated_bytes, seeded_bytes, write_file};
use super::{assert_one_line_error, code, stderr, stdout, u, Env, MIB};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Waits for `child` at most `limit`; kills it and fails if it is still running.
fn wait_at_most(mut child: Child, limit: Duration, what: &str) -> (Output, Duration) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} still running after {limit:?}: {}{}",
                stdout(&out),
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    (child.wait_with_output().unwrap(), took)
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(out), stderr(out)))
}

/// Runs `mount`/`umount`-like commands; true if they succeeded.
fn sh(program: &str, args: &[&OsStr]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Unmounts in `Drop`, lazily if the file system is busy.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if !sh("umount", &[self.0.as_os_str()]) {
            sh("umount", &[OsStr::new("-l"), self.0.as_os_str()]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A file that changes while it is read

const VERSION_BYTES: usize = 8 * MIB;

/// Rewrites `path` in place until `stop`, each version all bytes equal to its number, in
/// 1 MiB writes so a reader can see a mix of two versions.
fn rewrite_until(path: &Path, stop: &AtomicBool) {
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut piece = vec![0u8; MIB];
    let mut version = 1u8;
    while !stop.load(Ordering::Relaxed) {
        piece.fill(version);
        for off in (0..VERSION_BYTES).step_by(MIB) {
            file.write_all_at(&piece, off as u64).unwrap();
        }
        version = version.wrapping_add(1).max(1);
    }
}

#[test]
fn a_file_rewritten_during_backup_is_never_stored_torn() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("other.bin"), seeded_bytes(40, MIB));
    write_file(src.join("busy.bin"), vec![0u8; VERSION_BYTES]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop) = (src.join("busy.bin"), stop.clone());
        std::thread::spawn(move || rewrite_until(&path, &stop))
    };
    let mut listed = 0;
    for _ in 0..5 {
        let out = env.run(&["backup", "--json", s(&src)]);
        let report = json_of(&out);
        let errors = report["errors"].to_string();
        if errors.contains("busy.bin") {
            // Listed as changed while read: the point must say it is partial.
            assert!(errors.contains("changed while"), "{errors}");
            assert_eq!(report["state"], "partial", "{report}");
            assert_eq!(code(&out), 3, "{}", stderr(&out));
            listed += 1;
            continue;
        }
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let point = report["point"].as_str().unwrap();
        let cat = env.run(&["cat", &format!("{point}:busy.bin")]);
        assert_eq!(code(&cat), 0, "{}", stderr(&cat));
        let first = cat.stdout.first().copied().unwrap_or(0);
        assert_eq!(
            cat.stdout.len(),
            VERSION_BYTES,
            "stored with a size it never had"
        );
        assert!(
            cat.stdout.iter().all(|&b| b == first) && first != 0,
            "stored torn: bytes of more than one version"
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    eprintln!("changed-while-read listed in {listed} of 5 backups");
    // Once the writer stops, the file is read whole and the point is complete again.
    std::thread::sleep(Duration::from_millis(50));
    let quiet = env.backup(&src);
    assert_eq!(quiet["state"], "complete", "{quiet}");
}

// ---------------------------------------------------------------------------------------------
// After a failed backup the vault stays full

/// A small ext4 file system on a loop device, unmounted in `Drop`.
struct LoopFs {
    mount: Option<Mounted>,
}

impl LoopFs {
    /// `None` (skip) unless root with `mkfs.ext4` and loop devices.
    fn new(image: &Path, at: &Path, bytes: u64) -> Option<LoopFs> {
        if !is_root() {
            eprintln!("skipped: needs root for a loop mount");
            return None;
        }
        File::create(image).unwrap().set_len(bytes).unwrap();
        fs::create_dir_all(at).unwrap();
        if !sh("mkfs.ext4", &[OsStr::new("-q"), image.as_os_str()]) {
            eprintln!("skipped: mkfs.ext4 is not available");
            return None;
        }
        let mounted = sh(
            "mount",
            &[
                OsStr::new("-o"),
                OsStr::new("loop"),
                image.as_os_str(),
                at.as_os_str(),
            ],
        );
        if !mounted {
            eprintln!("skipped: cannot loop-mount");
            return None;
        }
        Some(LoopFs {
            mount: Some(Mounted(at.to_path_buf())),
        })
    }

    fn free_bytes(&self) -> u64 {
        let path = &self.mount.as_ref().unwrap().0;
        let st = rustix::fs::statvfs(path).unwrap();
        st.f_bavail * st.f_frsize
    }
}

/// An `Env` whose vault lives on `disk` (through the symlink `<dir>/vault`).
fn env_on(dir: tempfile::TempDir, disk: &Path) -> Env {
    let real = disk.join("v");
    fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, dir.path().join("vault")).unwrap();
    let env = Env { dir, remote: None };
    let out = env.run(&["init"]);
    assert!(out.status.success(), "init failed: {}", stderr(&out));
    env
}

#[test]
fn a_backup_that_fills_the_disk_takes_back_its_packs() {
    let dir = tempfile::Builder::new()
        .prefix("synvault-test")
        .tempdir()
        .unwrap();
    let disk = dir.path().join("disk");
    // 64 MiB of ext4 holds one 32 MiB pack and a half of the next.
    let Some(fs64) = LoopFs::new(&dir.path().join("disk.img"), &disk, 64 * MIB as u64) else {
        return;
    };
    let env = env_on(dir, &disk);
    // Declared after `env`, so it unmounts before the temporary directory is removed, also
    // when the test fails.
    let fs64 = fs64;
    let small = env.path("small");
    write_file(small.join("a.bin"), seeded_bytes(50, 2 * MIB));
    assert_eq!(env.backup(&small)["state"], "complete");

    let big = env.path("big");
    for i in 0..3 {
        write_file(big.join(format!("{i}.bin")), seeded_bytes(51 + i, 24 * MIB));
    }
    let free_before = fs64.free_bytes();
    let out = env.run(&["backup", s(&big)]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert_one_line_error(&out, "No space left on device");
    let free_after = fs64.free_bytes();
    // Slack for the catalog: SQLite's WAL file keeps the pages the failed transaction
    // wrote (it is reused, not shrunk, until a checkpoint truncates it).
    let slack = MIB as u64;
    assert!(
        free_after + slack >= free_before,
        "free space {free_before} before the failed backup, {free_after} after"
    );

    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 0, "{}{}", stdout(&verify), stderr(&verify));
    let smaller = env.path("smaller");
    write_file(smaller.join("b.bin"), seeded_bytes(60, 8 * MIB));
    assert_eq!(env.backup(&smaller)["state"], "complete");
}

#[test]
fn a_temporary_file_left_by_a_killed_backup_is_removed_by_the_next() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a.bin"), seeded_bytes(61, MIB));
    env.backup(&src);
    let packs = env.vault().join("packs");
    // Where this build writes packs before renaming them into place.
    let leftover = packs
        .join("tmp")
        .join(format!(".{}.pack.4242.tmp", "ab".repeat(32)));
    fs::write(&leftover, seeded_bytes(62, MIB)).unwrap();
    let import = packs
        .join("tmp")
        .join(format!(".{}.4243.import", "cd".repeat(32)));
    fs::write(&import, b"half").unwrap();
    // Beside the packs, where older builds wrote them: a vault they made has not been swept.
    fs::remove_file(packs.join("tmp").join("old-temporaries-removed")).unwrap();
    fs::create_dir_all(packs.join("ff")).unwrap();
    let other = packs.join("ff").join(".ff00.pack.4244.tmp");
    fs::write(&other, b"half").unwrap();

    write_file(src.join("b.bin"), seeded_bytes(63, MIB));
    assert_eq!(env.backup(&src)["state"], "complete");
    assert!(
        !leftover.exists() && !import.exists() && !other.exists(),
        "temporary files left"
    );
    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 0, "{}{}", stdout(&verify), stderr(&verify));
}

// ---------------------------------------------------------------------------------------------
// Every backup can be stopped

/// A FUSE file system with one regular file, `kmsg`, whose reads are never answered, like
/// `/proc/kmsg` with nothing to say.
struct Blocker {
    read_seen: Arc<AtomicBool>,
    held: Mutex<Vec<fuser::ReplyData>>,
}

const BLOCKER_FILE: u64 = 2;

fn blocker_attr(ino: u64) -> fuser::FileAttr {
    let dir = ino == 1;
    fuser::FileAttr {
        ino: fuser::INodeNo(ino),
        size: if dir { 0 } else { 4096 },
        blocks: 8,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: if dir {
            fuser::FileType::Directory
        } else {
            fuser::FileType::RegularFile
        },
        perm: if dir { 0o755 } else { 0o444 },
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl fuser::Filesystem for Blocker {
    fn lookup(
        &self,
        _req: &fuser::Request,
        parent: fuser::INodeNo,
        name: &OsStr,
        reply: fuser::ReplyEntry,
    ) {
        if u64::from(parent) == 1 && name == "kmsg" {
            reply.entry(
                &Duration::from_secs(60),
                &blocker_attr(BLOCKER_FILE),
                fuser::Generation(0),
            );
        } else {
            reply.error(fuser::Errno::ENOENT);
        }
    }

    fn getattr(
        &self,
        _req: &fuser::Request,
        ino: fuser::INodeNo,
        _fh: Option<fuser::FileHandle>,
        reply: fuser::ReplyAttr,
    ) {
        reply.attr(&Duration::from_secs(60), &blocker_attr(u64::from(ino)));
    }

    fn readdir(
        &self,
        _req: &fuser::Request,
        ino: fuser::INodeNo,
        _fh: fuser::FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectory,
    ) {
        if u64::from(ino) == 1 && offset == 0 {
            let _ = reply.add(
                fuser::INodeNo(BLOCKER_FILE),
                1,
                fuser::FileType::RegularFile,
                "kmsg",
            );
        }
        reply.ok();
    }

    fn read(
        &self,
        _req: &fuser::Request,
        _ino: fuser::INodeNo,
        _fh: fuser::FileHandle,
        _offset: u64,
        _size: u32,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: fuser::ReplyData,
    ) {
        // Never answered: kept, since a dropped reply would answer with an error.
        self.read_seen.store(true, Ordering::Relaxed);
        self.held.lock().unwrap().push(reply);
    }
}

/// Mounts a [`Blocker`] at `at`; `None` (skip) where FUSE cannot be used.
fn mount_blocker(at: &Path) -> Option<(fuser::BackgroundSession, Arc<AtomicBool>)> {
    fs::create_dir_all(at).unwrap();
    let read_seen = Arc::new(AtomicBool::new(false));
    let fs = Blocker {
        read_seen: read_seen.clone(),
        held: Mutex::new(Vec::new()),
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![fuser::MountOption::RO];
    match fuser::spawn_mount(fs, at, &config) {
        Ok(session) => Some((session, read_seen)),
        Err(e) if std::env::var_os("SYNVAULT_REQUIRE_FUSE").is_none() => {
            eprintln!("skipped: cannot mount FUSE: {e}");
            None
        }
        Err(e) => panic!("cannot mount FUSE: {e}"),
    }
}

fn mknod(path: &Path, kind: rustix::fs::FileType, rdev: u64) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(0o600),
        rdev,
    )
    .unwrap();
}

#[test]
fn sigterm_ends_a_backup_blocked_in_a_read_within_seconds() {
    if !is_root() {
        eprintln!("skipped: needs root for FUSE and device nodes");
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    // More than a pack of data, so the backup has written a pack when it is stopped.
    write_file(src.join("a.bin"), seeded_bytes(70, 40 * MIB));
    // A FIFO without a writer and a character device whose reads block (as /dev/kmsg,
    // 1:11): both are entries, never opened for reading.
    mknod(&src.join("fifo"), rustix::fs::FileType::Fifo, 0);
    mknod(
        &src.join("kmsg-device"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::makedev(1, 11),
    );
    // And a regular file whose reads never return, as /proc/kmsg's.
    let Some((session, read_seen)) = mount_blocker(&src.join("proc-like")) else {
        return;
    };
    let child = spawn(&env, &["backup", s(&src)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !read_seen.load(Ordering::Relaxed) {
        assert!(Instant::now() < deadline, "the backup never read the file");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The other reader thread goes on with a.bin and writes a pack (on one core it cannot).
    let pack_deadline = Instant::now() + Duration::from_secs(20);
    while env.pack_files().is_empty() && Instant::now() < pack_deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let packs_written = env.pack_files().len();
    eprintln!("packs written before SIGTERM: {packs_written}");
    std::thread::sleep(Duration::from_millis(200));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let (out, took) = wait_at_most(child, Duration::from_secs(5), "backup after SIGTERM");
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_one_line_error(&out, "interrupted");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(env.json(&["points", "--json"]).as_array().unwrap().len(), 0);
    let lock = fs::read_to_string(env.vault().join("lock")).unwrap_or_default();
    assert!(lock.trim().is_empty(), "lock still names {lock}");
    assert!(
        env.pack_files().is_empty(),
        "{packs_written} uncommitted packs written, left: {:?}",
        env.pack_files()
    );

    let next = env.run(&["backup", "--json", "--exclude", "proc-like", s(&src)]);
    assert_eq!(code(&next), 0, "{}", stderr(&next));
    assert!(!stderr(&next).contains("took over"), "{}", stderr(&next));
    let listed = stdout(&env.run(&["ls", "-r", "latest"]));
    assert!(
        listed.contains("fifo") && listed.contains("kmsg-device"),
        "{listed}"
    );
    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 0, "{}{}", stdout(&verify), stderr(&verify));
    drop(session);
}

#[test]
fn a_pseudo_file_system_inside_the_source_is_not_walked() {
    if !is_root() {
        eprintln!("skipped: needs root to mount proc");
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a.txt"), b"data");
    let proc_dir = src.join("proc");
    fs::create_dir_all(&proc_dir).unwrap();
    let bound = sh(
        "mount",
        &[
            OsStr::new("-t"),
            OsStr::new("proc"),
            OsStr::new("proc"),
            proc_dir.as_os_str(),
        ],
    ) || sh(
        "mount",
        &[
            OsStr::new("--bind"),
            OsStr::new("/proc"),
            proc_dir.as_os_str(),
        ],
    );
    if !bound {
        eprintln!("skipped: cannot mount proc");
        return;
    }
    let _guard = Mounted(proc_dir.clone());
    let child = spawn(&env, &["backup", "--json", s(&src)]);
    let (out, _) = wait_at_most(child, Duration::from_secs(60), "backup of a tree with proc");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = json_of(&out);
    assert_eq!(report["state"], "complete", "{report}");
    assert!(
        stderr(&out).contains("pseudo file systems"),
        "{}",
        stderr(&out)
    );
    let listed = stdout(&env.run(&["ls", "-r", "latest"]));
    assert!(listed.contains("/proc"), "{listed}");
    assert!(!listed.contains("/proc/"), "{listed}");
}

// ---------------------------------------------------------------------------------------------
// The vault inside its own source

#[test]
fn the_vault_inside_its_own_source_is_left_out_and_said_once() {
    let env = Env::new();
    let root = env.dir.path().to_path_buf();
    write_file(root.join("data/a.txt"), b"mine");
    let out = env.run(&["backup", "--json", s(&root)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    let said: Vec<&str> = err.lines().filter(|l| l.contains("the vault")).collect();
    assert_eq!(said.len(), 1, "{}", stderr(&out));
    assert!(said[0].contains(s(&env.vault())), "{}", said[0]);
    let listed = stdout(&env.run(&["ls", "-r", "latest"]));
    assert!(listed.contains("/data/a.txt"), "{listed}");
    assert!(
        !listed.contains("catalog.db") && !listed.contains(".key"),
        "{listed}"
    );
}

// ---------------------------------------------------------------------------------------------
// Huge sparse files

#[test]
fn a_huge_sparse_file_costs_its_data_and_restores_sparse() {
    const TIB: u64 = 1 << 40;
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let path = src.join("huge.img");
    let file = File::create(&path).unwrap();
    file.set_len(TIB).unwrap();
    let extents = [0, TIB / 2 + 12345, TIB - MIB as u64];
    for (i, &at) in extents.iter().enumerate() {
        file.write_all_at(&seeded_bytes(80 + i as u64, MIB), at)
            .unwrap();
    }
    drop(file);

    let child = spawn(&env, &["backup", "--json", s(&src)]);
    let (out, _) = wait_at_most(child, Duration::from_secs(120), "backup of a sparse file");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = json_of(&out);
    assert_eq!(u(&report, "bytes"), TIB);
    // The data (3 MiB) and at most a little around each extent, never the holes.
    let read = u(&report, "bytes_read");
    assert!(
        read >= 3 * MIB as u64 && read < 32 * MIB as u64,
        "read {read}"
    );

    let target = env.path("restored");
    let restore = env.run(&["restore", "latest", "--target", s(&target)]);
    assert_eq!(code(&restore), 0, "{}", stderr(&restore));
    let restored = target.join("huge.img");
    assert_eq!(fs::metadata(&restored).unwrap().len(), TIB);
    assert!(
        allocated_bytes(&restored) < 64 * MIB as u64,
        "restored file allocates {}",
        allocated_bytes(&restored)
    );
    let file = File::open(&restored).unwrap();
    for (i, &at) in extents.iter().enumerate() {
        let mut buf = vec![0u8; MIB];
        file.read_exact_at(&mut buf, at).unwrap();
        assert!(
            buf == seeded_bytes(80 + i as u64, MIB),
            "extent {i} differs"
        );
    }
}

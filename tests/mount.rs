//! The FUSE mount through the kernel: exact trees, metadata, hardlinks, EROFS, random and
//! parallel reads, new points while mounted, damage confined to one file, bounded memory,
//! huge directories, nodes given back when the kernel forgets them, the mount-point errors
//! with their exit codes, and `versions/` against restored copies of a generated history.
//!
//! Each test mounts with the built binary in the foreground, as a user would, and a guard
//! unmounts in `Drop` whatever happens. Tests skip only where FUSE is unusable, and never
//! when `SYNVAULT_REQUIRE_FUSE=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::env::{stderr, Env};
use common::history::{self, mtime_ns};
use common::{generate_tree, seeded_bytes, tree_diff_with, write_file, DiffOptions, TreeSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MIB: usize = 1 << 20;
const EROFS: i32 = 30;
const EIO: i32 = 5;

/// Mounting, for the tests' vault.
trait MountExt {
    fn mount(&self, name: &str, args: &[&str]) -> Mount;
}

impl MountExt for Env {
    /// Starts `synvault mount <mnt> <args>` and waits until the kernel lists the mount.
    fn mount(&self, name: &str, args: &[&str]) -> Mount {
        let path = self.path(name);
        fs::create_dir_all(&path).unwrap();
        let log = self.path(&format!("{name}.log"));
        let mut cmd = self.cmd(&["mount", path.to_str().unwrap()]);
        cmd.args(args)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        let mut mount = Mount {
            child: Some(cmd.spawn().unwrap()),
            path,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_mounted(&mount.path) {
            if let Some(status) = mount.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mount exited with {status}: {}", mount.log());
            }
            assert!(
                Instant::now() < deadline,
                "mount never came up: {}",
                mount.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mount
    }
}

/// A running mount; dropping it unmounts and stops the process whatever happened.
struct Mount {
    child: Option<Child>,
    path: PathBuf,
    log: PathBuf,
}

impl Mount {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Stops the mount with `signal` and returns how the process ended.
    fn stop(mut self, signal: rustix::process::Signal) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        send(&child, signal);
        let status = wait_timeout(&mut child, Duration::from_secs(20));
        let status = status.unwrap_or_else(|| {
            let _ = child.kill();
            panic!("mount did not stop on {signal:?}: {}", self.log())
        });
        assert!(
            !is_mounted(&self.path),
            "still mounted after the process ended"
        );
        status
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send(&child, rustix::process::Signal::TERM);
            if wait_timeout(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for cmd in [
            &["fusermount3", "-u"][..],
            &["fusermount", "-u"],
            &["umount", "-l"],
        ] {
            if !is_mounted(&self.path) {
                break;
            }
            let _ = Command::new(cmd[0])
                .args(&cmd[1..])
                .arg(&self.path)
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn send(child: &Child, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True if `/proc/self/mountinfo` lists `path` as a mount point.
fn is_mounted(path: &Path) -> bool {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.as_os_str().as_bytes();
    table.lines().any(|line| {
        let field = line.split(' ').nth(4).unwrap_or("");
        unescape(field) == want
    })
}

fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Whether the mount tests can run here; panics if they must and cannot.
fn fuse_ready() -> bool {
    let device = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse");
    let helper = ["fusermount3", "fusermount"].iter().any(|bin| {
        Command::new(bin)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    let usable = device.is_ok() && (rustix::process::geteuid().is_root() || helper);
    if usable {
        return true;
    }
    if std::env::var("SYNVAULT_REQUIRE_FUSE").as_deref() == Ok("1") {
        panic!(
            "SYNVAULT_REQUIRE_FUSE=1 but FUSE is unusable: /dev/fuse {device:?}, helper {helper}"
        );
    }
    eprintln!("skipping: FUSE is not usable on this machine");
    false
}

fn mount_diff() -> DiffOptions {
    DiffOptions {
        dir_nlink: false,
        ..DiffOptions::default()
    }
}

#[track_caller]
fn assert_same_tree(src: &Path, mounted: &Path) {
    let diffs = tree_diff_with(src, mounted, &mount_diff());
    assert!(
        diffs.is_empty(),
        "{} differences between {} and {}:\n{}",
        diffs.len(),
        src.display(),
        mounted.display(),
        diffs
            .iter()
            .take(100)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The names in a directory, raw.
fn names(dir: &Path) -> BTreeSet<Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect()
}

fn errno_of<T>(result: std::io::Result<T>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

#[test]
fn round_trip_tree_reads_back_exactly_through_the_kernel() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    let summary = generate_tree(&src, 1, &TreeSpec::default());
    let report = env.backup(&src);
    assert_eq!(report["state"], "complete", "{report}");
    let vault = env.mount("mnt", &[]);
    let point = env.mount("one", &["--point", "latest"]);
    // latest -> points/<time>: compare through the link's target (the diff does not follow
    // symlinks).
    let latest = vault
        .path
        .join(fs::read_link(vault.path.join("latest")).unwrap());
    assert!(latest.starts_with(vault.path.join("points")));

    // Whole trees: names (non-UTF-8 too), kinds, modes, owners, mtimes, sizes, bytes,
    // symlink targets, device numbers, FIFOs, xattrs and hardlink groups. Under points/, the
    // point's directory has the point's time instead of the source directory's.
    assert_same_tree(&src, &point.path);
    let diffs = tree_diff_with(&src, &latest, &mount_diff());
    assert!(
        diffs.len() == 1 && diffs[0].starts_with("\".\": mtime "),
        "{diffs:?}"
    );

    // Fields the tree diff leaves out: ctime, and blocks that show the sparse file's hole.
    for rel in [&summary.large_file, &summary.xattr_file, &summary.fifo] {
        let (a, b) = (
            fs::symlink_metadata(src.join(rel)).unwrap(),
            fs::symlink_metadata(latest.join(rel)).unwrap(),
        );
        assert_eq!(
            (a.ctime(), a.ctime_nsec()),
            (b.ctime(), b.ctime_nsec()),
            "{rel:?}"
        );
    }
    let sparse = fs::metadata(latest.join(&summary.sparse_file)).unwrap();
    assert!(sparse.blocks() * 512 < sparse.len() / 4, "{sparse:?}");
    assert!(sparse.blocks() * 512 >= 2 * MIB as u64, "{sparse:?}");

    // Hardlinks share one inode; other files do not.
    let inodes: BTreeSet<u64> = summary
        .hardlinks
        .iter()
        .map(|rel| fs::metadata(latest.join(rel)).unwrap().ino())
        .collect();
    assert_eq!(inodes.len(), 1, "{:?}", summary.hardlinks);
    let dup = &summary.duplicates[0];
    assert_ne!(
        fs::metadata(latest.join(&dup[0])).unwrap().ino(),
        fs::metadata(latest.join(&dup[1])).unwrap().ino()
    );

    random_reads_match(
        &src.join(&summary.large_file),
        &latest.join(&summary.large_file),
    );
    parallel_readers_match(&src, &latest);
    every_write_is_erofs(&latest, &summary.xattr_file, &summary.xattr_dir);

    // SIGTERM and SIGINT both unmount cleanly and end with success.
    assert!(vault.stop(rustix::process::Signal::TERM).success());
    assert!(point.stop(rustix::process::Signal::INT).success());
}

/// 1,000 random (offset, length) reads of the large file equal the source's.
fn random_reads_match(src: &Path, mounted: &Path) {
    let (a, b) = (File::open(src).unwrap(), File::open(mounted).unwrap());
    let size = a.metadata().unwrap().len();
    assert_eq!(size, b.metadata().unwrap().len());
    let mut rng = StdRng::seed_from_u64(42);
    let (mut ba, mut bb) = (vec![0u8; 4 * MIB], vec![0u8; 4 * MIB]);
    for i in 0..1000 {
        let len = match i % 3 {
            0 => rng.random_range(1..=4096),
            1 => rng.random_range(1..=256 << 10),
            _ => rng.random_range(1..=4 * MIB),
        };
        // Some reads run past the end: both must stop at the same place.
        let offset = rng.random_range(0..size + 1000);
        let na = read_at_most(&a, &mut ba[..len], offset);
        let nb = read_at_most(&b, &mut bb[..len], offset);
        assert_eq!(na, nb, "read of {len} at {offset}");
        assert!(
            ba[..na] == bb[..nb],
            "bytes differ in read of {len} at {offset}"
        );
    }
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> usize {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
    done
}

/// 8 threads each read different files at once and get the source's bytes.
fn parallel_readers_match(src: &Path, mounted: &Path) {
    let mut files = Vec::new();
    collect_files(src, Path::new(""), &mut files);
    files.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    let picked: Vec<PathBuf> = files.into_iter().take(64).map(|(p, _)| p).collect();
    std::thread::scope(|s| {
        for t in 0..8 {
            let picked = &picked;
            s.spawn(move || {
                for rel in picked.iter().skip(t).step_by(8) {
                    let want = fs::read(src.join(rel)).unwrap();
                    let mut got = Vec::new();
                    File::open(mounted.join(rel))
                        .unwrap()
                        .read_to_end(&mut got)
                        .unwrap();
                    assert!(want == got, "thread {t}: {rel:?} differs");
                }
            });
        }
    });
}

fn collect_files(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, u64)>) {
    for entry in fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let child = rel.join(entry.file_name());
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            collect_files(root, &child, out);
        } else if meta.is_file() {
            out.push((child, meta.len()));
        }
    }
}

/// Every call that would change the tree answers EROFS.
fn every_write_is_erofs(root: &Path, file: &Path, dir: &Path) {
    let (file, dir) = (root.join(file), root.join(dir));
    let new = root.join("new-entry");
    let attempts: Vec<(&str, Option<i32>)> = vec![
        ("create", errno_of(File::create(&new))),
        (
            "open for write",
            errno_of(fs::OpenOptions::new().write(true).open(&file)),
        ),
        (
            "open for append",
            errno_of(fs::OpenOptions::new().append(true).open(&file)),
        ),
        ("unlink", errno_of(fs::remove_file(&file))),
        ("rename", errno_of(fs::rename(&file, &new))),
        ("mkdir", errno_of(fs::create_dir(&new))),
        ("rmdir", errno_of(fs::remove_dir(&dir))),
        ("symlink", errno_of(std::os::unix::fs::symlink("x", &new))),
        ("link", errno_of(fs::hard_link(&file, &new))),
        (
            "chmod",
            errno_of(fs::set_permissions(
                &file,
                fs::Permissions::from_mode(0o600),
            )),
        ),
        (
            "chown",
            errno_of(std::os::unix::fs::chown(&file, Some(1), Some(1))),
        ),
        ("truncate", truncate_errno(&file)),
        (
            "utimes",
            errno_of(
                rustix::fs::utimensat(
                    rustix::fs::CWD,
                    &file,
                    &rustix::fs::Timestamps {
                        last_access: rustix::fs::Timespec {
                            tv_sec: 1,
                            tv_nsec: 0,
                        },
                        last_modification: rustix::fs::Timespec {
                            tv_sec: 1,
                            tv_nsec: 0,
                        },
                    },
                    rustix::fs::AtFlags::empty(),
                )
                .map_err(std::io::Error::from),
            ),
        ),
        (
            "setxattr",
            errno_of(
                rustix::fs::setxattr(&file, "user.new", b"v", rustix::fs::XattrFlags::empty())
                    .map_err(std::io::Error::from),
            ),
        ),
        (
            "removexattr",
            errno_of(rustix::fs::removexattr(&file, "user.comment").map_err(std::io::Error::from)),
        ),
        (
            "mknod",
            errno_of(
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &new,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o644),
                    0,
                )
                .map_err(std::io::Error::from),
            ),
        ),
    ];
    for (what, errno) in attempts {
        assert_eq!(errno, Some(EROFS), "{what} did not answer EROFS");
    }
    assert!(!new.exists());
}

/// truncate(2) through the coreutils tool (no libc binding here): EROFS if it says so.
fn truncate_errno(path: &Path) -> Option<i32> {
    let out = Command::new("truncate")
        .args(["-s", "0"])
        .arg(path)
        .output()
        .unwrap();
    let text = stderr(&out);
    (!out.status.success() && text.contains("Read-only file system")).then_some(EROFS)
}

/// A point of a vault in a bucket (moto's S3 server, Azurite) mounts and reads back exactly
/// through the kernel, every byte coming over the `Backend` seam from the server.
fn a_point_in_a_bucket_reads_back_exactly(kind: common::servers::Kind) {
    if !fuse_ready() {
        return;
    }
    let Some(server) = common::servers::Server::start(kind) else {
        return;
    };
    let env = server.env("mounted");
    let src = env.path("src");
    let summary = generate_tree(&src, 5, &TreeSpec::small());
    let report = env.backup(&src);
    assert_eq!(report["state"], "complete", "{report}");
    let point = env.mount("one", &["--point", "latest"]);
    assert_same_tree(&src, &point.path);
    let large = &summary.large_file;
    random_reads_match(&src.join(large), &point.path.join(large));
}

#[test]
fn a_point_in_an_s3_bucket_reads_back_exactly_through_the_kernel() {
    a_point_in_a_bucket_reads_back_exactly(common::servers::Kind::S3);
}

#[test]
fn a_point_in_an_azure_container_reads_back_exactly_through_the_kernel() {
    a_point_in_a_bucket_reads_back_exactly(common::servers::Kind::Azure);
}

#[test]
fn new_points_appear_while_mounted_and_names_are_raw_bytes() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a.txt"), b"first");
    write_file(src.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name");
    env.backup(&src);
    let mount = env.mount("mnt", &[]);
    let points = mount.path.join("points");
    let first = names(&points);
    assert_eq!(first.len(), 1);
    assert!(names(&mount.path.join("latest")).contains(b"caf\xe9".as_slice()));

    // Past the second of the first point, so the new one gets a plain name.
    std::thread::sleep(Duration::from_millis(1100));
    write_file(src.join("a.txt"), b"second version");
    let second = env.backup(&src);
    let deadline = Instant::now() + Duration::from_secs(10);
    while names(&points).len() < 2 {
        assert!(Instant::now() < deadline, "the new point never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    let now = names(&points);
    let new_name = now.difference(&first).next().unwrap().clone();
    let new_dir = points.join(OsStr::from_bytes(&new_name));
    assert_eq!(fs::read(new_dir.join("a.txt")).unwrap(), b"second version");
    let old_dir = points.join(OsStr::from_bytes(first.iter().next().unwrap()));
    assert_eq!(fs::read(old_dir.join("a.txt")).unwrap(), b"first");
    // latest follows the newest point; sources/ holds both points of the source.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_link(mount.path.join("latest")).unwrap()
        != Path::new("points").join(OsStr::from_bytes(&new_name))
    {
        assert!(Instant::now() < deadline, "latest never moved");
        std::thread::sleep(Duration::from_millis(200));
    }
    let sources = names(&mount.path.join("sources"));
    assert_eq!(sources.len(), 1, "{sources:?}");
    let source_dir = mount
        .path
        .join("sources")
        .join(OsStr::from_bytes(sources.iter().next().unwrap()));
    assert_eq!(names(&source_dir), now);
    assert!(second["point"].is_string());
    assert!(mount.stop(rustix::process::Signal::INT).success());
}

/// Every point's (source, start time in ns), oldest first, from the catalog.
fn point_rows(env: &Env) -> Vec<(String, i64)> {
    let db = rusqlite::Connection::open(env.vault().join("catalog.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT source, started_ns FROM points ORDER BY started_ns")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn sources_are_named_by_their_escaped_path_and_point_directories_by_their_time() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let older = env.path("50% off");
    let newer = env.path("with space");
    write_file(older.join("a"), b"a");
    write_file(newer.join("b"), b"b");
    env.backup(&older);
    std::thread::sleep(Duration::from_millis(1100));
    env.backup(&newer);
    let mount = env.mount("mnt", &[]);

    // `/` dropped at the start and `%2F` after it, `%` as `%25`, spaces as they are.
    let escaped = |source: &str| {
        let path = source.strip_prefix('/').unwrap();
        path.replace('%', "%25").replace('/', "%2F").into_bytes()
    };
    let rows = point_rows(&env);
    let expected: BTreeSet<Vec<u8>> = rows.iter().map(|(source, _)| escaped(source)).collect();
    assert_eq!(names(&mount.path.join("sources")), expected);
    assert!(
        expected.iter().any(|n| n.ends_with(b"50%25 off")),
        "{expected:?}"
    );

    // Each point's directory, under points/ and under its source, has the point's start time.
    let mtime_ns = |path: &Path| {
        let meta = fs::metadata(path).unwrap();
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
    };
    let points = mount.path.join("points");
    let mut by_time: Vec<(i64, Vec<u8>)> = names(&points)
        .into_iter()
        .map(|name| (mtime_ns(&points.join(OsStr::from_bytes(&name))), name))
        .collect();
    by_time.sort();
    let started: Vec<i64> = rows.iter().map(|(_, ns)| *ns).collect();
    assert_eq!(by_time.iter().map(|(t, _)| *t).collect::<Vec<_>>(), started);
    for (source, started_ns) in &rows {
        let dir = mount
            .path
            .join("sources")
            .join(OsStr::from_bytes(&escaped(source)));
        let only = names(&dir).into_iter().next().unwrap();
        assert_eq!(mtime_ns(&dir.join(OsStr::from_bytes(&only))), *started_ns);
    }
    // `ls -t` sorts them newest first, as the names do.
    let listed = Command::new("ls").arg("-t").arg(&points).output().unwrap();
    let newest_first: Vec<&[u8]> = listed.stdout.split(|&b| b == b'\n').take(2).collect();
    assert_eq!(newest_first, [&by_time[1].1[..], &by_time[0].1[..]]);
}

/// An xattr question's errno (0 if it was answered).
fn xattr_errno(path: &Path, name: &str) -> i32 {
    let mut buf = [0u8; 64];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(_) => 0,
        Err(e) => e.raw_os_error(),
    }
}

#[test]
fn a_point_without_xattrs_stops_the_questions_and_one_with_them_answers_each() {
    if !fuse_ready() {
        return;
    }
    const ENODATA: i32 = 61;
    const EOPNOTSUPP: i32 = 95;
    let env = Env::new();
    let plain = env.path("plain");
    let tagged = env.path("tagged");
    write_file(plain.join("d/a"), b"a");
    write_file(tagged.join("d/a"), b"a");
    write_file(tagged.join("d/b"), b"b");
    let flags = rustix::fs::XattrFlags::empty();
    rustix::fs::setxattr(tagged.join("d/b"), "user.k", b"value", flags).unwrap();
    let plain_point = env.backup(&plain)["point"].as_str().unwrap().to_string();
    let tagged_point = env.backup(&tagged)["point"].as_str().unwrap().to_string();
    let without = env.mount("without", &["--point", &plain_point]);
    let with = env.mount("with", &["--point", &tagged_point]);

    // No entry has xattrs: the kernel is told once and answers itself from then on (ls -l
    // asks these two per file).
    let a = without.path.join("d/a");
    assert_eq!(fs::read(&a).unwrap(), b"a");
    for name in ["security.selinux", "user.k"] {
        assert_eq!(xattr_errno(&a, name), EOPNOTSUPP, "{name}");
    }
    assert_eq!(
        errno_of(rustix::fs::listxattr(&a, &mut [0u8; 64]).map_err(std::io::Error::from)),
        Some(EOPNOTSUPP)
    );
    let ls = Command::new("ls")
        .arg("-lR")
        .arg(&without.path)
        .output()
        .unwrap();
    assert!(ls.status.success() && String::from_utf8_lossy(&ls.stdout).contains(" a\n"));

    // Some entry has them: each question is answered, from the entry.
    let (a, b) = (with.path.join("d/a"), with.path.join("d/b"));
    let mut buf = [0u8; 64];
    let n = rustix::fs::lgetxattr(&b, "user.k", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"value");
    let n = rustix::fs::listxattr(&b, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"user.k\0");
    assert_eq!(xattr_errno(&a, "user.k"), ENODATA);
    assert_eq!(xattr_errno(&b, "security.selinux"), ENODATA);
    assert_eq!(rustix::fs::listxattr(&a, &mut buf).unwrap(), 0);
}

#[test]
fn damaged_pack_fails_one_file_with_eio_and_is_logged_once() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("victim.bin"), seeded_bytes(6, 3 * MIB));
    env.backup(&src);
    let victim_pack = env.pack_files()[0].clone();
    write_file(src.join("other.bin"), seeded_bytes(7, 2 * MIB));
    env.backup(&src);
    let mut bytes = fs::read(&victim_pack).unwrap();
    bytes[4000] ^= 0x01;
    fs::write(&victim_pack, bytes).unwrap();

    let mount = env.mount("mnt", &["--point", "latest"]);
    for _ in 0..3 {
        let err = fs::read(mount.path.join("victim.bin")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(EIO), "{err}");
    }
    assert_eq!(
        fs::read(mount.path.join("other.bin")).unwrap(),
        seeded_bytes(7, 2 * MIB)
    );
    // Ranges of the victim outside the damaged block still read.
    let victim = File::open(mount.path.join("victim.bin")).unwrap();
    let size = victim.metadata().unwrap().len();
    let mut tail = vec![0u8; 4096];
    let n = read_or_eio(&victim, &mut tail, size - 4096);
    let source = seeded_bytes(6, 3 * MIB);
    if let Some(n) = n {
        assert_eq!(&tail[..n], &source[source.len() - 4096..]);
    }
    let pack = victim_pack
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let log = mount.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("damaged")).collect();
    assert_eq!(warnings.len(), 1, "want one damage line: {log}");
    assert!(warnings[0].contains("victim.bin"), "{log}");
    assert!(warnings[0].contains(&pack), "{log}");
    assert!(warnings[0].contains("recovery point"), "{log}");
}

/// The bytes read, or `None` on EIO (the range sits in the damaged block).
fn read_or_eio(file: &File, buf: &mut [u8], offset: u64) -> Option<usize> {
    match file.read_at(buf, offset) {
        Ok(n) => Some(n),
        Err(e) if e.raw_os_error() == Some(EIO) => None,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn huge_directory_lists_completely() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    let dir = src.join("many");
    fs::create_dir_all(&dir).unwrap();
    let want: BTreeSet<Vec<u8>> = (0..100_000)
        .map(|i| format!("entry-{i:06}-{}", "x".repeat(i % 40)).into_bytes())
        .collect();
    for name in &want {
        File::create(dir.join(OsStr::from_bytes(name))).unwrap();
    }
    env.backup(&src);
    let mount = env.mount("mnt", &["--point", "latest"]);
    let listed: Vec<Vec<u8>> = fs::read_dir(mount.path.join("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert_eq!(
        listed.len(),
        want.len(),
        "duplicates or gaps in the listing"
    );
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), want);
    // ls -f style again, now from the kernel's cache, and a stat of a few entries.
    assert_eq!(names(&mount.path.join("many")).len(), 100_000);
    for name in want.iter().step_by(9973) {
        let meta = fs::metadata(mount.path.join("many").join(OsStr::from_bytes(name))).unwrap();
        assert!(meta.is_file() && meta.len() == 0);
    }
    drop(mount);
}

#[test]
fn memory_stays_within_the_cache_bound() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    let data = seeded_bytes(11, 384 * MIB);
    write_file(src.join("big.bin"), &data);
    env.backup(&src);
    let cache_mib = 32;
    let mount = env.mount("mnt", &["--point", "latest", "--cache-size", "32M"]);
    for _ in 0..2 {
        let mut file = File::open(mount.path.join("big.bin")).unwrap();
        let mut buf = vec![0u8; MIB];
        let mut offset = 0;
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n] == data[offset..offset + n], "differs at {offset}");
            offset += n;
        }
        assert_eq!(offset, data.len());
        // Drop the kernel's copy so the second pass goes through the mount again.
        let _ = fs::write("/proc/sys/vm/drop_caches", "1");
    }
    let status = fs::read_to_string(format!("/proc/{}/status", mount.pid())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        hwm_kib < (cache_mib + 128) * 1024,
        "peak RSS {hwm_kib} KiB with a {cache_mib} MiB cache"
    );
}

/// `find` over the mount: the paths it prints, sorted.
fn find(root: &Path) -> Vec<String> {
    let out = Command::new("find").arg(root).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut paths: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            line.strip_prefix(root.to_str().unwrap())
                .unwrap()
                .to_string()
        })
        .collect();
    paths.sort();
    paths
}

/// The mount's node count, which it reports as the file count of `statfs`.
fn mount_nodes(mount: &Mount) -> u64 {
    rustix::fs::statvfs(&mount.path).unwrap().f_files
}

#[test]
fn find_twice_keeps_the_node_count_at_what_the_kernel_holds() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    // 20,000 small files in 200 directories.
    for d in 0..200u64 {
        for f in 0..100u64 {
            let seed = d * 100 + f;
            let path = src.join(format!("d{d:03}/f{f:03}"));
            write_file(path, seeded_bytes(seed, 1 + seed as usize % 200));
        }
    }
    env.backup(&src);
    let want = find(&src);
    let mount = env.mount("mnt", &["--point", "latest"]);
    for pass in 0..2 {
        assert!(find(&mount.path) == want, "pass {pass}: find differs");
        // The kernel holds every entry it listed: the view holds as many, not more.
        let listed = mount_nodes(&mount);
        assert!(
            (20_200..=20_201 + 4096).contains(&listed),
            "pass {pass}: {listed} nodes after find"
        );
        // Evicting the kernel's dentries and inodes sends the forgets.
        if fs::write("/proc/sys/vm/drop_caches", "2").is_err() {
            eprintln!("cannot drop the kernel's caches here: node bound not checked");
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while mount_nodes(&mount) > 100 {
            assert!(
                Instant::now() < deadline,
                "pass {pass}: still {} nodes after the kernel evicted {listed}",
                mount_nodes(&mount)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(
        fs::read(mount.path.join("d123/f045")).unwrap(),
        seeded_bytes(12345, 1 + 12345 % 200)
    );
}

/// With `--max-nodes`, the mount asks the kernel to drop the oldest entries beyond it, so a
/// listing of many more entries leaves the node table near the cap without any help from
/// the kernel's own memory pressure (no `drop_caches` here).
#[test]
fn beyond_max_nodes_the_kernel_is_asked_to_let_go_and_the_table_shrinks() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    for d in 0..100u64 {
        for f in 0..100u64 {
            let seed = d * 100 + f;
            write_file(
                src.join(format!("d{d:03}/f{f:03}")),
                seeded_bytes(seed, 1 + seed as usize % 100),
            );
        }
    }
    env.backup(&src);
    let want = find(&src);
    let mount = env.mount("mnt", &["--point", "latest", "--max-nodes", "1000"]);
    for pass in 0..2 {
        assert!(find(&mount.path) == want, "pass {pass}: find differs");
        // 1,000 held at most once the mount has caught up, plus the nodes made ahead of the
        // kernel (4,096 at most) and the permanent ones.
        let deadline = Instant::now() + Duration::from_secs(20);
        while mount_nodes(&mount) > 1_000 + 4_096 + 10 {
            assert!(
                Instant::now() < deadline,
                "pass {pass}: still {} nodes after listing 10,100 entries",
                mount_nodes(&mount)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(
        fs::read(mount.path.join("d042/f017")).unwrap(),
        seeded_bytes(4217, 1 + 4217 % 100)
    );
}

#[test]
fn bad_mount_points_and_missing_fuse_have_their_own_exit_codes() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("f"), b"x");
    env.backup(&src);
    let check = |target: &Path, code: i32, needle: &str| {
        let out = env.run(&["mount", target.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("synvault:")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(needle), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    check(&env.path("missing"), 20, "does not exist");
    write_file(env.path("a-file"), b"x");
    check(&env.path("a-file"), 21, "not a directory");
    write_file(env.path("full/x"), b"x");
    check(&env.path("full"), 22, "not empty");
    let mount = env.mount("mnt", &[]);
    check(&mount.path, 23, "already a mount point");
    drop(mount);

    // A machine without a usable /dev/fuse: hide it in a private mount namespace.
    if rustix::process::geteuid().is_root()
        && Command::new("unshare").arg("--version").output().is_ok()
    {
        let fake = env.path("not-a-device");
        write_file(&fake, b"");
        fs::create_dir_all(env.path("mnt2")).unwrap();
        let script = format!(
            "mount --bind {} /dev/fuse && exec \"$0\" \"$@\"",
            fake.display()
        );
        let cmd = env.cmd(&["mount", env.path("mnt2").to_str().unwrap()]);
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let envs: Vec<_> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
            .collect();
        let mut wrapped = Command::new("unshare");
        wrapped.args(["-m", "--propagation", "private", "sh", "-c", &script]);
        wrapped.arg(program).args(args).stdin(Stdio::null());
        for (k, v) in envs {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        let out = wrapped.output().unwrap();
        assert_eq!(out.status.code(), Some(24), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("FUSE is not usable"),
            "{}",
            stderr(&out)
        );
        assert!(!is_mounted(&env.path("mnt2")));
    }
}

#[test]
fn a_mount_keeps_reading_a_point_forgotten_and_pruned_and_one_whose_pack_was_repacked() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    let gone = seeded_bytes(801, 4 * MIB);
    let shared = seeded_bytes(802, 4 * MIB);
    write_file(src.join("gone.bin"), &gone);
    write_file(src.join("shared.bin"), &shared);
    let first = env.backup(&src)["point"].as_str().unwrap().to_string();
    // One pack holds both files; the second point uses only shared.bin, so forgetting the
    // first leaves that pack half unused: prune repacks it.
    std::thread::sleep(Duration::from_millis(1100));
    fs::remove_file(src.join("gone.bin")).unwrap();
    env.backup(&src);

    let mount = env.mount("mnt", &[]);
    let points = mount.path.join("points");
    let listed: Vec<Vec<u8>> = names(&points).into_iter().collect();
    assert_eq!(listed.len(), 2);
    let (old, new) = (
        points.join(OsStr::from_bytes(&listed[0])),
        points.join(OsStr::from_bytes(&listed[1])),
    );
    let mut forgotten = File::open(old.join("gone.bin")).unwrap();
    let mut repacked = File::open(new.join("shared.bin")).unwrap();
    let mut got_forgotten = vec![0u8; MIB];
    let mut got_repacked = vec![0u8; MIB];
    forgotten.read_exact(&mut got_forgotten).unwrap();
    repacked.read_exact(&mut got_repacked).unwrap();

    assert!(env.run(&["forget", &first]).status.success());
    let out = env.run(&[
        "prune",
        "--json",
        "--max-unused",
        "0",
        "--allow-deleting-most",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["packs_repacked"], 1, "{report}");
    assert!(
        report["bytes_set_aside"].as_u64().unwrap() >= 8 * MIB as u64,
        "{report}"
    );
    assert_eq!(report["set_aside_for"][0]["pid"], mount.pid(), "{report}");

    // Both files read on to the end, exactly, after their packs were retired.
    forgotten.read_to_end(&mut got_forgotten).unwrap();
    repacked.read_to_end(&mut got_repacked).unwrap();
    assert!(
        got_forgotten == gone,
        "the forgotten point's file changed under the mount"
    );
    assert!(
        got_repacked == shared,
        "the repacked file changed under the mount"
    );
    // The vault layout drops the forgotten point without a remount.
    let deadline = Instant::now() + Duration::from_secs(10);
    while names(&points).len() != 1 {
        assert!(
            Instant::now() < deadline,
            "the forgotten point is still listed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop((forgotten, repacked));
    mount.stop(rustix::process::Signal::TERM);

    let out = env.run(&["prune", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bytes_set_aside"], 0, "{report}");
    assert!(
        report["bytes_freed"].as_u64().unwrap() >= 8 * MIB as u64,
        "{report}"
    );
    let verify = env.run(&["verify", "--read-data"]);
    assert!(verify.status.success());
}

/// The names of `points/`, oldest first (a point's directory has the point's start time).
fn point_names_by_time(mount: &Mount) -> Vec<Vec<u8>> {
    let points = mount.path.join("points");
    let mut by_time: Vec<(i64, Vec<u8>)> = names(&points)
        .into_iter()
        .map(|name| {
            let meta = fs::metadata(points.join(OsStr::from_bytes(&name))).unwrap();
            (meta.mtime() * 1_000_000_000 + meta.mtime_nsec(), name)
        })
        .collect();
    by_time.sort();
    by_time.into_iter().map(|(_, name)| name).collect()
}

/// `versions/<the one source>/`.
fn versions_of_source(mount: &Mount) -> PathBuf {
    let versions = mount.path.join("versions");
    let sources = names(&versions);
    assert_eq!(sources.len(), 1, "{sources:?}");
    versions.join(OsStr::from_bytes(sources.iter().next().unwrap()))
}

#[test]
fn versions_lists_each_distinct_version_of_a_file_and_reads_it_exactly() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    let file = src.join("docs").join("report.txt");
    let mut rng = StdRng::seed_from_u64(3);
    let mut bytes = |len: usize| -> Vec<u8> { (0..len).map(|_| rng.random()).collect() };
    let (one, two) = (bytes(5000), bytes(70_000));
    // Point by point: what the file is (bytes and mode), or None where it is gone.
    let history: [Option<(&[u8], u32)>; 6] = [
        Some((&one, 0o644)),
        Some((&one, 0o644)),
        Some((&two, 0o644)),
        Some((&two, 0o600)),
        None,
        Some((&one, 0o644)),
    ];
    for (i, state) in history.iter().enumerate() {
        match state {
            Some((content, mode)) => {
                if fs::read(&file).ok().as_deref() != Some(*content) {
                    write_file(&file, content);
                }
                fs::set_permissions(&file, fs::Permissions::from_mode(*mode)).unwrap();
            }
            None => fs::remove_file(&file).unwrap(),
        }
        write_file(src.join("noise"), format!("point {i}"));
        env.backup(&src);
    }
    let mount = env.mount("mnt", &[]);
    let point_names = point_names_by_time(&mount);
    assert_eq!(point_names.len(), history.len());
    let source = versions_of_source(&mount);
    // The directories of the newest point, and a directory per file.
    assert_eq!(
        names(&source),
        BTreeSet::from([b"docs".to_vec(), b"noise".to_vec()])
    );
    assert!(fs::metadata(source.join("noise")).unwrap().is_dir());
    let versions = source.join("docs").join("report.txt");
    // Points 0-1 hold one version, 2 a second, 3 a third (mode only), 5 a fourth: back as
    // the first was, after a point without it.
    let firsts = [0, 2, 3, 5];
    let want: BTreeSet<Vec<u8>> = firsts.iter().map(|&i| point_names[i].clone()).collect();
    assert_eq!(names(&versions), want);
    for i in firsts {
        let (content, mode) = history[i].unwrap();
        let version = versions.join(OsStr::from_bytes(&point_names[i]));
        assert_eq!(fs::read(&version).unwrap(), content, "version of point {i}");
        let meta = fs::metadata(&version).unwrap();
        assert_eq!(meta.mode() & 0o7777, mode, "version of point {i}");
        assert_eq!(meta.len(), content.len() as u64);
        // The same entry as the point's own tree shows.
        let in_point = mount
            .path
            .join("points")
            .join(OsStr::from_bytes(&point_names[i]))
            .join("docs/report.txt");
        let there = fs::metadata(&in_point).unwrap();
        assert_eq!(
            (meta.mtime(), meta.mtime_nsec(), meta.uid()),
            (there.mtime(), there.mtime_nsec(), there.uid())
        );
    }
    assert_eq!(errno_of(fs::read_dir(versions.join("nope"))), Some(2));
    assert!(mount.stop(rustix::process::Signal::INT).success());
}

#[test]
fn a_new_point_while_mounted_shows_a_new_version() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    let file = src.join("notes.txt");
    write_file(&file, b"first");
    env.backup(&src);
    let mount = env.mount("mnt", &[]);
    let versions = versions_of_source(&mount).join("notes.txt");
    let first = names(&versions);
    assert_eq!(first.len(), 1);

    // Past the second of the first point, so the new one gets a plain name.
    std::thread::sleep(Duration::from_millis(1100));
    write_file(&file, b"second, longer");
    env.backup(&src);
    let deadline = Instant::now() + Duration::from_secs(10);
    while names(&versions).len() < 2 {
        assert!(Instant::now() < deadline, "the new version never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    let now = names(&versions);
    let new_name = now.difference(&first).next().unwrap();
    assert_eq!(
        fs::read(versions.join(OsStr::from_bytes(new_name))).unwrap(),
        b"second, longer"
    );
    let old_name = first.iter().next().unwrap();
    assert_eq!(
        fs::read(versions.join(OsStr::from_bytes(old_name))).unwrap(),
        b"first"
    );
    assert_eq!(point_names_by_time(&mount).last(), Some(new_name));
    assert!(mount.stop(rustix::process::Signal::INT).success());
}

#[test]
fn versions_of_a_generated_history_agree_with_restored_copies() {
    if !fuse_ready() {
        return;
    }
    let env = Env::new();
    let h = history::generate(&env);
    let mount = env.mount("mnt", &[]);
    let point_names = point_names_by_time(&mount);
    assert_eq!(point_names.len(), h.points.len());
    let source = versions_of_source(&mount);
    // Every path that is not a directory in the newest point: its versions, each read back.
    let newest = h.trees.last().unwrap();
    for path in newest
        .iter()
        .filter(|(_, node)| node.kind != "dir")
        .map(|(path, _)| path)
    {
        let dir = source.join(&path[1..]);
        let firsts: Vec<usize> = history::versions(&h.trees, path)
            .into_iter()
            .map(|(first, ..)| first)
            .collect();
        let want: BTreeSet<Vec<u8>> = firsts.iter().map(|&i| point_names[i].clone()).collect();
        assert_eq!(names(&dir), want, "versions/ of {path}");
        for i in firsts {
            let version = dir.join(OsStr::from_bytes(&point_names[i]));
            let was = &h.trees[i][path];
            let meta = fs::symlink_metadata(&version).unwrap();
            match was.kind {
                "file" => assert_eq!(fs::read(&version).unwrap(), was.data, "{path} of {i}"),
                "symlink" => assert_eq!(
                    fs::read_link(&version).unwrap().as_os_str().as_bytes(),
                    was.data,
                    "{path} of {i}"
                ),
                _ => assert!(meta.is_dir(), "{path} of {i}"),
            }
            assert_eq!(
                (meta.mode(), mtime_ns(&meta)),
                (was.mode, was.mtime_ns),
                "{path} of {i}"
            );
        }
    }
    assert!(mount.stop(rustix::process::Signal::INT).success());
}

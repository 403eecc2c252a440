//! End-to-end tests of the `synvault` binary: round trip, incrementals, dedup,
//! confidentiality, and every bad input with its one-line error and exit code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::env::{assert_one_line_error, code, stderr, stdout, u, Env};
use common::{
    allocated_bytes, assert_trees_equal, generate_tree, seeded_bytes, write_file, TreeSpec,
};
use serde_json::Value;

const MIB: usize = 1 << 20;

#[test]
fn round_trip_restores_every_kind_of_entry_exactly() {
    let env = Env::new();
    let src = env.path("src");
    let summary = generate_tree(&src, 1, &TreeSpec::default());
    assert!(summary.regular_files >= 2000);
    let report = env.backup(&src);
    assert_eq!(report["state"], "complete", "{report}");

    let target = env.path("restored");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_trees_equal(&src, &target);
    // The large hole stays a hole.
    let sparse = target.join(&summary.sparse_file);
    assert!(
        allocated_bytes(&sparse) < 8 * MIB as u64,
        "sparse file allocated {}",
        allocated_bytes(&sparse)
    );

    // A second restore into the same directory refuses; with --overwrite it skips what matches.
    let again = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(code(&again), 1);
    assert_one_line_error(&again, "not empty");
    let resumed = env.run(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--overwrite",
    ]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        stdout(&resumed).contains("already there"),
        "{}",
        stdout(&resumed)
    );
    assert_trees_equal(&src, &target);

    // A path of the point, and cat of one file.
    let large = summary.large_file.to_str().unwrap().to_string();
    let cat = env.run(&["cat", &format!("latest:{large}")]);
    assert!(cat.status.success());
    assert_eq!(cat.stdout, fs::read(src.join(&large)).unwrap());
    let ls = env.json(&["ls", "--json", "latest"]);
    assert!(!ls.as_array().unwrap().is_empty());
}

#[test]
fn incremental_stores_only_changed_blocks() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("big.bin"), seeded_bytes(2, 256 * MIB));
    write_file(src.join("shifted.bin"), seeded_bytes(3, 64 * MIB));
    write_file(
        src.join("other.txt"),
        b"another file that must not be read again",
    );
    let first = env.backup(&src);
    assert_eq!(first["state"], "complete");

    // Unchanged: no byte read, no pack written.
    let packs_before = env.pack_files();
    let unchanged = env.backup(&src);
    assert_eq!(u(&unchanged, "bytes_read"), 0, "{unchanged}");
    assert_eq!(u(&unchanged, "files_changed"), 0);
    assert_eq!(
        env.pack_files(),
        packs_before,
        "an unchanged backup wrote a pack"
    );

    // 1 MiB overwritten in the middle of the 256 MiB file.
    let big = fs::OpenOptions::new()
        .write(true)
        .open(src.join("big.bin"))
        .unwrap();
    big.write_all_at(&seeded_bytes(4, MIB), 128 * MIB as u64)
        .unwrap();
    drop(big);
    let second = env.backup(&src);
    assert!(u(&second, "bytes_new") <= 8 * MIB as u64, "{second}");
    assert_eq!(
        u(&second, "bytes_read"),
        256 * MIB as u64,
        "read another file: {second}"
    );
    assert_eq!(u(&second, "files_changed"), 1);

    // 100 bytes inserted at the start of the 64 MiB file.
    let mut shifted = vec![0x5a; 100];
    shifted.extend_from_slice(&seeded_bytes(3, 64 * MIB));
    write_file(src.join("shifted.bin"), &shifted);
    let third = env.backup(&src);
    assert!(u(&third, "blocks_new") <= 3, "{third}");

    // Old and new points restore exactly.
    let old = env.path("old");
    let points = env.json(&["points", "--json"]);
    let first_id = points[0]["id"].as_str().unwrap();
    assert_eq!(first_id, first["point"].as_str().unwrap());
    assert!(env
        .run(&["restore", first_id, "--target", old.to_str().unwrap()])
        .status
        .success());
    assert_eq!(
        fs::read(old.join("big.bin")).unwrap(),
        seeded_bytes(2, 256 * MIB)
    );
    assert_eq!(
        fs::read(old.join("shifted.bin")).unwrap(),
        seeded_bytes(3, 64 * MIB)
    );
    let new = env.path("new");
    assert!(env
        .run(&["restore", "latest", "--target", new.to_str().unwrap()])
        .status
        .success());
    assert_trees_equal(&src, &new);
    for field in [
        "id", "time", "parent", "kind", "state", "source", "files", "bytes",
    ] {
        assert!(
            points[1].get(field).is_some(),
            "points --json lacks {field}"
        );
    }
    assert_eq!(points[1]["kind"], "incremental");
}

#[test]
fn identical_files_are_stored_once() {
    let env = Env::new();
    let (a, b) = (env.path("a"), env.path("b"));
    let data = seeded_bytes(5, 4 * MIB);
    for p in ["one", "sub/two", "sub/deeper/three"] {
        write_file(a.join(p), &data);
    }
    write_file(b.join("four"), &data);
    env.backup(&a);
    let second = env.backup(&b);
    assert_eq!(u(&second, "bytes_new"), 0, "{second}");
    let stats = env.json(&["stats", "--json"]);
    assert_eq!(u(&stats, "logical_bytes"), 16 * MIB as u64);
    assert_eq!(u(&stats, "unique_bytes"), 4 * MIB as u64, "{stats}");
    assert!(stats["dedup_ratio"].as_f64().unwrap() > 3.9);
}

#[test]
fn nothing_readable_leaves_the_vault() {
    let env = Env::new();
    let src = env.path("src");
    let marker = b"SYNVAULT-MARKER-7f3a9c";
    let mut text = Vec::new();
    for i in 0..20_000 {
        text.extend_from_slice(marker);
        text.extend_from_slice(format!(" line {i}\n").as_bytes());
    }
    write_file(src.join("notes.txt"), &text);
    write_file(src.join("small.txt"), marker);
    env.backup(&src);
    let mut stack = vec![env.vault()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = fs::read(&p).unwrap();
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker),
                "marker found in {}",
                p.display()
            );
            let plain_id = blake3::hash(marker);
            assert!(
                !bytes.windows(32).any(|w| w == plain_id.as_bytes()),
                "plain blake3 of a block found in {}",
                p.display()
            );
        }
    }
}

/// Files under `root` holding `marker`, leaving out the catalog (which stays local).
fn files_holding(root: &Path, marker: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("catalog.db") {
            continue;
        }
        if p.is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if fs::read(&p)
            .unwrap()
            .windows(marker.len())
            .any(|w| w == marker)
        {
            found.push(p.display().to_string());
        }
    }
    found
}

#[test]
fn names_link_targets_and_xattrs_stay_in_the_local_catalog() {
    let env = Env::new();
    let marker = "SVNAME-4c1e8b";
    let src = env.path("src");
    let dir = src.join(format!("dir-{marker}"));
    write_file(dir.join(format!("file-{marker}.txt")), b"plain");
    std::os::unix::fs::symlink(format!("/target/{marker}"), src.join("link")).unwrap();
    let with_xattr = src.join("tagged");
    write_file(&with_xattr, b"x");
    rustix::fs::setxattr(
        &with_xattr,
        "user.note",
        marker.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    write_file(src.join("data.bin"), seeded_bytes(8, MIB));
    // The seed job first, so its disk holds this data's packs and journal.
    let disk = env.path("disk");
    let out = env.run(&[
        "seed",
        "prepare",
        "--job",
        "j",
        "--disk",
        disk.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.backup(&src);
    for root in [env.vault(), disk] {
        let found = files_holding(&root, marker.as_bytes());
        assert!(found.is_empty(), "{marker} found in {found:?}");
    }
}

#[test]
fn bad_inputs_get_one_line_errors_and_exit_codes() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("f"), b"data");

    let wrong = env
        .cmd(&["points"])
        .env("SYNVAULT_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(code(&wrong), 12);
    assert_one_line_error(&wrong, "wrong passphrase");

    let not_vault = Command::new(env!("CARGO_BIN_EXE_synvault"))
        .args(["--vault", env.path("nowhere").to_str().unwrap(), "points"])
        .env("SYNVAULT_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(code(&not_vault), 10);
    assert_one_line_error(&not_vault, "no vault");

    let missing = env.run(&["backup", env.path("missing").to_str().unwrap()]);
    assert_eq!(code(&missing), 1);
    assert_one_line_error(&missing, "does not exist");

    let usage = env.run(&["backup"]);
    assert_eq!(code(&usage), 2);

    let no_point = env.run(&[
        "restore",
        "ffff",
        "--target",
        env.path("t").to_str().unwrap(),
    ]);
    assert_eq!(code(&no_point), 1);
    assert_one_line_error(&no_point, "no recovery point");

    let again = env.run(&["init"]);
    assert_eq!(code(&again), 1);
    assert_one_line_error(&again, "already exists");
    assert_eq!(env.json(&["points", "--json"]).as_array().unwrap().len(), 0);
}

/// Runs a command as `nobody`, so permission bits apply even though tests run as root.
fn as_nobody(mut cmd: Command) -> Command {
    if !rustix::process::geteuid().is_root() {
        return cmd;
    }
    let mut wrapped = Command::new("setpriv");
    wrapped.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
    wrapped.arg(cmd.get_program());
    wrapped.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    cmd = wrapped;
    cmd.stdin(Stdio::null());
    cmd
}

fn chown_tree(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn unreadable_file_makes_a_partial_point() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("ok.txt"), b"fine");
    write_file(src.join("secret.txt"), b"cannot read me");
    chown_tree(env.dir.path());
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    let out = as_nobody(env.cmd(&["backup", "--json", src.to_str().unwrap()]))
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("secret.txt"), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["state"], "partial");
    let target = env.path("t");
    let restored = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert_eq!(fs::read(target.join("ok.txt")).unwrap(), b"fine");
    assert!(!target.join("secret.txt").exists());
}

#[test]
fn flipped_byte_is_found_and_other_files_still_restore() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("victim.bin"), seeded_bytes(6, 3 * MIB));
    env.backup(&src);
    // The first backup's only pack holds only victim.bin's blocks.
    let victim_pack = &env.pack_files()[0];
    write_file(src.join("other.bin"), seeded_bytes(7, 2 * MIB));
    env.backup(&src);
    assert_eq!(env.pack_files().len(), 2);
    let mut bytes = fs::read(victim_pack).unwrap();
    bytes[4000] ^= 0x01;
    fs::write(victim_pack, bytes).unwrap();

    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 3, "{}", stdout(&verify));
    let text = stdout(&verify);
    let pack_name = victim_pack.file_stem().unwrap().to_str().unwrap();
    assert!(
        text.contains(pack_name),
        "verify does not name the pack: {text}"
    );
    assert!(
        text.contains("victim.bin"),
        "verify does not name the file: {text}"
    );
    assert_eq!(
        text.matches("victim.bin").count(),
        2,
        "both points are affected: {text}"
    );

    let target = env.path("t");
    let restore = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(code(&restore), 3, "{}", stderr(&restore));
    assert!(stderr(&restore).contains("victim.bin"));
    assert_eq!(
        fs::read(target.join("other.bin")).unwrap(),
        seeded_bytes(7, 2 * MIB)
    );
    // The damaged file is left out, not written with zeros where its blocks were.
    assert!(!target.join("victim.bin").exists());
    assert!(
        stdout(&restore).contains("1 files left out: their data is damaged"),
        "{}",
        stdout(&restore)
    );
}

/// Starts a backup of `src` made long by a 32 GiB sparse file and returns once it holds the
/// writer lock. Its holes are 3 MiB, below the size backup skips without reading, so its
/// zeros are read (a file of only large holes would cost no reading at all).
fn start_long_backup(env: &Env, src: &Path, stderr: Stdio) -> std::process::Child {
    let sparse = fs::File::create(src.join("sparse.img")).unwrap();
    let size: u64 = 32 << 30;
    sparse.set_len(size).unwrap();
    for at in (0..size).step_by(3 * MIB) {
        sparse.write_all_at(&[1], at).unwrap();
    }
    drop(sparse);
    let child = env
        .cmd(&["backup", src.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::read_to_string(env.vault().join("lock"))
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "backup never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn second_writer_is_refused_and_a_killed_backup_leaves_a_sound_vault() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a.bin"), seeded_bytes(8, 40 * MIB));
    let mut first = start_long_backup(&env, &src, Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(60);
    // Not willing to wait: refused at once, naming the holder.
    let second = env.run(&["backup", "--lock-wait", "0", src.to_str().unwrap()]);
    assert_eq!(code(&second), 11, "{}", stderr(&second));
    assert_one_line_error(&second, &format!("pid {}", first.id()));

    // Kill it once it has written a pack.
    while env.pack_files().is_empty() {
        assert!(Instant::now() < deadline, "first backup never wrote a pack");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();

    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 0, "{}{}", stdout(&verify), stderr(&verify));
    fs::remove_file(src.join("sparse.img")).unwrap();
    let next = env.run(&["backup", "--json", src.to_str().unwrap()]);
    assert_eq!(code(&next), 0, "{}", stderr(&next));
    let target = env.path("t");
    assert!(env
        .run(&["restore", "latest", "--target", target.to_str().unwrap()])
        .status
        .success());
    assert_eq!(
        fs::read(target.join("a.bin")).unwrap(),
        seeded_bytes(8, 40 * MIB)
    );
}

#[test]
fn sigint_stops_a_backup_without_a_point() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a.bin"), seeded_bytes(9, 2 * MIB));
    let child = start_long_backup(&env, &src, Stdio::piped());
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_one_line_error(&out, "interrupted");
    assert_eq!(env.json(&["points", "--json"]).as_array().unwrap().len(), 0);
    assert_eq!(code(&env.run(&["verify", "--read-data"])), 0);
}

#[test]
fn excludes_at_backup_and_includes_at_restore() {
    let env = Env::new();
    let src = env.path("src");
    for p in [
        "keep/a.txt",
        "keep/b.tmp",
        "cache/x.bin",
        "docs/r.pdf",
        "docs/deep/s.pdf",
        "docs/n.txt",
    ] {
        write_file(src.join(p), p.as_bytes());
    }
    let patterns = env.path("excludes");
    fs::write(&patterns, "# comment\n\ncache\n").unwrap();
    let out = env.run(&[
        "backup",
        "--exclude",
        "*.tmp",
        "--exclude-file",
        patterns.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listed = stdout(&env.run(&["ls", "-r", "latest"]));
    assert!(
        listed.contains("/keep/a.txt") && listed.contains("/docs/deep/s.pdf"),
        "{listed}"
    );
    assert!(
        !listed.contains("b.tmp") && !listed.contains("cache"),
        "{listed}"
    );

    let target = env.path("pdfs");
    let out = env.run(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        "*.pdf",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(target.join("docs/r.pdf").exists() && target.join("docs/deep/s.pdf").exists());
    assert!(!target.join("docs/n.txt").exists() && !target.join("keep").exists());

    let sub = env.path("sub");
    let out = env.run(&[
        "restore",
        "latest:docs",
        "--target",
        sub.to_str().unwrap(),
        "--exclude",
        "deep",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(sub.join("n.txt")).unwrap(), b"docs/n.txt");
    assert!(!sub.join("deep").exists());
}

#[path = "cli/seed.rs"]
mod seed;

#[path = "cli/operator.rs"]
mod operator;

#[path = "cli/verify_restorable.rs"]
mod verify_restorable;

#[path = "cli/restore_confinement.rs"]
mod restore_confinement;

#[path = "cli/ingest_trust.rs"]
mod ingest_trust;

#[path = "cli/catalog_rebuild.rs"]
mod catalog_rebuild;

#[path = "cli/retention.rs"]
mod retention;

#[path = "cli/backup_flags.rs"]
mod backup_flags;
#[path = "cli/keys.rs"]
mod keys;
#[path = "cli/output_controls.rs"]
mod output_controls;
#[path = "cli/selectors.rs"]
mod selectors;

#[path = "cli/history.rs"]
mod history;
#[path = "cli/log.rs"]
mod log;
#[path = "cli/restore_flags.rs"]
mod restore_flags;

#[path = "cli/dump.rs"]
mod dump;

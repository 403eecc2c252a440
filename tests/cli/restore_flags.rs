//! Restore's flags: `--dry-run`, `--delete`, `--verify` (and `--overwrite` judged by content
//! with it), `--json`.

use std::fs;
use std::os::unix::fs::{symlink, FileExt};
use std::path::Path;

use super::common::write_file;
use super::{assert_one_line_error, code, stderr, stdout, Env};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A point of `src` with two files and a directory.
fn env_with_point() -> Env {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a.txt"), b"alpha");
    write_file(src.join("dir/b.txt"), b"bravo");
    env.backup(&src);
    env
}

#[test]
fn a_dry_run_says_what_would_happen_and_writes_nothing() {
    let env = env_with_point();
    let target = env.path("t");
    let out = env.run(&["restore", "latest", "--target", s(&target), "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("would restore 2 files, 1 directories"),
        "{}",
        stdout(&out)
    );
    assert!(!target.exists(), "a dry run created the target");

    // Into a target that holds one of the files already, and something extra.
    let restored = env.run(&["restore", "latest", "--target", s(&target)]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    fs::remove_file(target.join("a.txt")).unwrap();
    write_file(target.join("extra.txt"), b"extra");
    let report = env.json(&[
        "restore",
        "latest",
        "--target",
        s(&target),
        "--overwrite",
        "--delete",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(report["dry_run"], true, "{report}");
    assert_eq!(report["files"], 1, "{report}");
    assert_eq!(report["skipped_existing"], 1, "{report}");
    assert_eq!(report["deleted"], 1, "{report}");
    assert!(!target.join("a.txt").exists() && target.join("extra.txt").exists());
}

#[test]
fn delete_removes_what_the_point_does_not_hold_and_nothing_outside() {
    let env = env_with_point();
    let target = env.path("t");
    let outside = env.path("outside");
    write_file(outside.join("keep.txt"), b"outside the target");
    write_file(target.join("extra.txt"), b"extra");
    write_file(target.join("dir/extra-too.txt"), b"extra");
    write_file(target.join("extra-dir/x.txt"), b"x");
    symlink(&outside, target.join("extra-dir/link")).unwrap();
    symlink(&outside, target.join("extra-link")).unwrap();

    let refused = env.run(&["restore", "latest", "--target", s(&target), "--delete"]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    let with_patterns = env.run(&[
        "restore",
        "latest",
        "--target",
        s(&target),
        "--overwrite",
        "--delete",
        "--include",
        "*.txt",
    ]);
    assert_eq!(code(&with_patterns), 2, "{}", stderr(&with_patterns));
    assert_one_line_error(&with_patterns, "--delete with --include");

    let out = env.run(&[
        "restore",
        "latest",
        "--target",
        s(&target),
        "--overwrite",
        "--delete",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("deleted 4 entries"),
        "{}",
        stdout(&out)
    );
    let mut left: Vec<String> = walk(&target);
    left.sort();
    assert_eq!(left, ["a.txt", "dir", "dir/b.txt"]);
    assert_eq!(
        fs::read(outside.join("keep.txt")).unwrap(),
        b"outside the target"
    );
}

#[test]
fn delete_spares_a_vault_inside_the_target() {
    let env = env_with_point();
    // The target holds the vault (and the source): only the vault stays beside the point.
    let target = env.path("");
    let out = env.run(&[
        "restore",
        "latest",
        "--target",
        s(&target),
        "--overwrite",
        "--delete",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!env.path("src").exists(), "the source is not in the point");
    let points = env.run(&["points"]);
    assert!(points.status.success(), "{}", stderr(&points));
    assert_eq!(fs::read(env.path("a.txt")).unwrap(), b"alpha");
}

#[test]
fn verify_judges_by_content_and_reads_back_what_it_wrote() {
    let env = env_with_point();
    let target = env.path("t");
    let out = env.run(&[
        "restore",
        "latest",
        "--target",
        s(&target),
        "--verify",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], 2, "{report}");

    // One byte changed, size and mtime kept: plain --overwrite takes it for restored.
    let a = target.join("a.txt");
    let mtime = fs::metadata(&a).unwrap().modified().unwrap();
    let file = fs::OpenOptions::new().write(true).open(&a).unwrap();
    file.write_all_at(b"A", 0).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    let plain = env.run(&["restore", "latest", "--target", s(&target), "--overwrite"]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert_eq!(fs::read(&a).unwrap(), b"Alpha");
    let verified = env.run(&[
        "restore",
        "latest",
        "--target",
        s(&target),
        "--overwrite",
        "--verify",
    ]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        stdout(&verified).contains("1 already there"),
        "{}",
        stdout(&verified)
    );
    assert_eq!(fs::read(&a).unwrap(), b"alpha");
}

/// Every path beneath `root`, relative, without following symlinks.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.symlink_metadata().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

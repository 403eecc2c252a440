//! What an operator meets around the data: a missing catalog, file modes, an empty passphrase,
//! sizes out of bounds, and standard output closed early or full. Each gets one line and its
//! exit code, never a panic.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::common::{generate_tree, seeded_bytes, write_file, TreeSpec};
use super::{assert_one_line_error, code, stderr, Env, MIB};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An Env with one point of a small tree.
fn env_with_point() -> Env {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 5, &TreeSpec::small());
    write_file(src.join("big.bin"), seeded_bytes(5, 3 * MIB));
    env.backup(&src);
    // Data for a seed job, which a backup has not stored yet.
    write_file(env.path("seeded").join("data.bin"), seeded_bytes(6, MIB));
    env
}

fn assert_no_panic(out: &Output) {
    let err = stderr(out);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE") && code(out) != 101,
        "exit {}: {err}",
        code(out)
    );
}

#[test]
fn a_missing_or_empty_catalog_is_an_error_and_nothing_is_created() {
    let env = env_with_point();
    let catalog = env.vault().join("catalog.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(env.vault().join(format!("catalog.db{suffix}")));
    }
    for args in [
        &["points"][..],
        &["verify"],
        &["backup", s(&env.path("src"))],
    ] {
        let out = env.run(args);
        assert_eq!(code(&out), 15, "{args:?}: {}", stderr(&out));
        assert_one_line_error(&out, "catalog");
        assert!(!catalog.exists(), "{args:?} created a catalog");
    }

    fs::write(&catalog, b"").unwrap();
    let out = env.run(&["points"]);
    assert_eq!(code(&out), 15, "{}", stderr(&out));
    assert_one_line_error(&out, "is empty");
    assert_eq!(fs::metadata(&catalog).unwrap().len(), 0);
}

fn modes_under(root: &Path, out: &mut Vec<(String, u32, bool)>) {
    let meta = fs::symlink_metadata(root).unwrap();
    out.push((
        root.display().to_string(),
        meta.permissions().mode() & 0o7777,
        meta.is_dir(),
    ));
    if meta.is_dir() {
        for entry in fs::read_dir(root).unwrap() {
            modes_under(&entry.unwrap().path(), out);
        }
    }
}

fn assert_private(vault: &Path) {
    let mut modes = Vec::new();
    modes_under(vault, &mut modes);
    assert!(modes.len() > 6, "{modes:?}");
    for (path, mode, is_dir) in modes {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{path} has mode {mode:o}");
    }
}

#[test]
fn a_new_vault_is_private_and_an_old_one_is_mended_by_a_writer() {
    let env = env_with_point();
    assert_private(&env.vault());

    // A vault left readable by an older build: the next writer makes it private again.
    fs::set_permissions(env.vault(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(
        env.vault().join("catalog.db"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = env.run(&["backup", s(&env.path("src"))]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_private(&env.vault());

    // Packs that arrive by seed disk are as private as those a backup writes.
    let disk = env.path("disk");
    let seeded = env.path("seeded");
    write_file(seeded.join("data.bin"), seeded_bytes(9, MIB));
    let out = env.run(&[
        "seed",
        "prepare",
        "--job",
        "j",
        "--disk",
        s(&disk),
        s(&seeded),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["seed", "import", "--job", "j", s(&disk)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_private(&env.vault());
}

#[test]
fn init_refuses_an_empty_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other");
    let out = Command::new(env!("CARGO_BIN_EXE_synvault"))
        .args(["--vault", s(&other), "init"])
        .env("SYNVAULT_PASSWORD", "")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_one_line_error(&out, "passphrase is empty");
    assert!(!other.join("config.json").exists());
}

#[test]
fn init_with_stdout_closed_or_full_still_makes_the_vault() {
    let dir = tempfile::tempdir().unwrap();
    for (name, closed) in [("closed", true), ("full", false)] {
        let vault = dir.path().join(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_synvault"));
        cmd.args(["--vault", s(&vault), "init"])
            .env("SYNVAULT_PASSWORD", "pw")
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let out = if closed {
            let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
            drop(child.stdout.take());
            child.wait_with_output().unwrap()
        } else {
            let full = fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap();
            cmd.stdout(full).output().unwrap()
        };
        assert_no_panic(&out);
        assert_eq!(code(&out), if closed { 0 } else { 1 }, "{}", stderr(&out));
        assert!(vault.join("config.json").exists(), "{name}");
    }
}

#[test]
fn sizes_and_counts_out_of_bounds_are_usage_errors() {
    let env = env_with_point();
    let mnt = env.path("mnt");
    fs::create_dir(&mnt).unwrap();
    for size in ["1", "0.1", "99999999999T", "lots", "0"] {
        let out = env.run(&["bench", "reassembly", "--cache-size", size]);
        assert_eq!(code(&out), 2, "{size}: {}", stderr(&out));
        assert_one_line_error(&out, "--cache-size");
        let out = env.run(&["mount", s(&mnt), "--cache-size", size]);
        assert_eq!(code(&out), 2, "{size}: {}", stderr(&out));
        assert_one_line_error(&out, "--cache-size");
    }
    for size in ["0.1", "99999999999T", "1"] {
        let disk = s(&mnt);
        let out = env.run(&[
            "seed",
            "prepare",
            "--job",
            "j",
            "--disk",
            disk,
            "--disk-size",
            size,
            "src",
        ]);
        assert_eq!(code(&out), 2, "{size}: {}", stderr(&out));
        assert_one_line_error(&out, "--disk-size");
    }
    let out = env.run(&["bench", "reassembly", "--threads", "0"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_one_line_error(&out, "--threads");
}

/// Every command that prints to standard output, against a vault with one point.
fn printing_commands(env: &Env) -> Vec<Vec<String>> {
    let src = s(&env.path("src")).to_string();
    let target = s(&env.path("restored")).to_string();
    let seeded = s(&env.path("seeded")).to_string();
    let disk = s(&env.path("disk")).to_string();
    [
        vec!["points"],
        vec!["points", "--json"],
        vec!["ls", "latest", "-r"],
        vec!["ls", "latest", "--json"],
        vec!["cat", "latest:big.bin"],
        vec!["stats"],
        vec!["verify"],
        vec!["verify", "--json"],
        vec!["backup", &src],
        vec!["backup", "--json", &src],
        vec!["restore", "latest", "--target", &target, "--overwrite"],
        vec!["bench", "reassembly"],
        vec!["seed", "prepare", "--job", "j", "--disk", &disk, &seeded],
        vec!["seed", "check", &disk],
        vec!["seed", "import", "--job", "j", &disk],
        vec!["seed", "status"],
    ]
    .into_iter()
    .map(|args| args.into_iter().map(String::from).collect())
    .collect()
}

fn points_listed(env: &Env) -> usize {
    env.json(&["points", "--json"]).as_array().unwrap().len()
}

#[test]
fn stdout_closed_early_ends_quietly_with_the_command_s_own_code() {
    let env = env_with_point();
    for args in printing_commands(&env) {
        let before = points_listed(&env);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = env
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader goes away before the first line
        let out = child.wait_with_output().unwrap();
        assert_no_panic(&out);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("synvault:"),
            "{args:?}: {}",
            stderr(&out)
        );
        if args[0] == "backup" {
            assert_eq!(points_listed(&env), before + 1, "{args:?} lost its point");
        }
    }
}

#[test]
fn stdout_on_a_full_disk_is_one_line_and_exit_1() {
    let env = env_with_point();
    for args in printing_commands(&env) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = env.cmd(&args).stdout(full).output().unwrap();
        assert_no_panic(&out);
        assert_eq!(code(&out), 1, "{args:?}: {}", stderr(&out));
        assert_one_line_error(&out, "cannot write to standard output");
    }
}

#[test]
fn a_closed_stdout_keeps_an_incomplete_outcome() {
    let env = env_with_point();
    let packs = env.pack_files();
    fs::remove_file(&packs[0]).unwrap();
    let target = env.path("restored");
    let damaged: [&[&str]; 3] = [
        &["verify"],
        &["verify", "--json"],
        &["restore", "latest", "--target", s(&target)],
    ];
    for args in damaged {
        let mut child = env
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_no_panic(&out);
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_damaged_catalog_is_one_line_with_its_own_code_and_verify_finds_a_bad_page() {
    let env = env_with_point();
    let catalog = env.vault().join("catalog.db");
    // Fold the WAL into the file, so the damage below hits committed pages.
    let out = env.run(&["backup", s(&env.path("src"))]);
    assert!(out.status.success(), "{}", stderr(&out));
    let good = env.catalog_bytes();
    assert!(good.len() >= 4 * 4096, "{}", good.len());

    // A page of random bytes: queries that miss it still work, verify must not.
    let mut paged = good.clone();
    paged[2 * 4096..3 * 4096].copy_from_slice(&seeded_bytes(3, 4096));
    fs::write(&catalog, &paged).unwrap();
    let out = env.run(&["verify"]);
    assert_no_panic(&out);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        super::stdout(&out).contains("damaged: catalog:"),
        "{}",
        super::stdout(&out)
    );

    // Half a file: every command says so in one line, with exit 16.
    fs::write(&catalog, &good[..good.len() / 2]).unwrap();
    for args in [
        &["points"][..],
        &["ls", "latest", "-r"],
        &["verify"],
        &["backup", s(&env.path("src"))],
    ] {
        let out = env.run(args);
        assert_no_panic(&out);
        assert_eq!(code(&out), 16, "{args:?}: {}", stderr(&out));
        assert_one_line_error(&out, "catalog is damaged");
    }
}

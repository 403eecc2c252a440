//! The store alone is the backup: a catalog that is lost or damaged is recreated by
//! `synvault catalog rebuild` from packs and sealed metadata, and every point comes back as it
//! was (issue 9, acceptance 1 to 4).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Instant;

use serde_json::Value;

use super::common::env::{assert_one_line_error, code, stderr, stdout, u, Env};
use super::common::{assert_trees_equal, generate_tree, seeded_bytes, write_file, TreeSpec};

const MIB: usize = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn assert_no_panic(out: &Output) {
    let err = stderr(out);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

/// Deletes the catalog and its WAL and shared-memory files.
fn delete_catalog(env: &Env) {
    for name in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = fs::remove_file(env.vault().join(name));
    }
}

fn rebuild(env: &Env, extra: &[&str]) -> Value {
    let mut args = vec!["catalog", "rebuild", "--json"];
    args.extend_from_slice(extra);
    let out = env.run(&args);
    assert_no_panic(&out);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `points --json`.
fn points(env: &Env) -> Vec<Value> {
    env.json(&["points", "--json"]).as_array().unwrap().clone()
}

/// Every column of every row of `points`, as text: what a rebuild must give back exactly
/// (times in ns, statistics, error lists, the root's metadata, the seed job awaited).
fn point_rows(env: &Env) -> Vec<Vec<String>> {
    let db = rusqlite::Connection::open(env.vault().join("catalog.db")).unwrap();
    let mut stmt = db.prepare("SELECT * FROM points ORDER BY id").unwrap();
    let columns = stmt.column_count();
    let rows = stmt
        .query_map([], |row| {
            (0..columns)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => "null".to_string(),
                        rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                        rusqlite::types::ValueRef::Real(f) => f.to_string(),
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                        rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                    })
                })
                .collect()
        })
        .unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

fn restore(env: &Env, point: &str, target: &Path) {
    let out = env.run(&["restore", point, "--target", s(target)]);
    assert_eq!(code(&out), 0, "restore {point}: {}", stderr(&out));
}

/// A partial point: one file cannot be read by the user running the backup.
fn partial_backup(env: &Env, src: &Path) -> Value {
    super::chown_tree(&env.vault());
    super::chown_tree(src);
    let secret = src.join("secret.txt");
    write_file(&secret, b"cannot read me");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let out = super::as_nobody(env.cmd(&["backup", "--json", s(src)]))
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    fs::remove_file(&secret).unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_lost_catalog_is_rebuilt_with_every_point_as_it_was() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 91, &TreeSpec::small());
    let full = env.backup(&src);
    write_file(src.join("changed/new.bin"), seeded_bytes(92, 3 * MIB));
    let tagged = env.json(&["backup", "--json", "--tag", "weekly", "--tag", "x", s(&src)]);
    write_file(src.join("changed/more.txt"), b"third point");
    let third = env.backup(&src);
    let other = env.path("other");
    write_file(other.join("kept.txt"), b"a file of another source");
    let partial = partial_backup(&env, &other);
    assert_eq!(partial["state"], "partial");
    // A seed job, imported.
    let seeded = env.path("seeded");
    write_file(seeded.join("big.bin"), seeded_bytes(93, 5 * MIB));
    let disk = env.path("disk");
    let out = env.run(&[
        "seed",
        "prepare",
        "--job",
        "j1",
        "--disk",
        s(&disk),
        "--disk-size",
        "64M",
        s(&seeded),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = env.run(&["seed", "import", "--job", "j1", s(&disk)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(full["parent"], Value::Null);
    assert_eq!(tagged["parent"], full["point"]);
    assert_eq!(third["parent"], tagged["point"]);

    let before = points(&env);
    assert_eq!(before.len(), 5);
    let rows_before = point_rows(&env);
    let seed_before = env.json(&["seed", "status", "--json"]);
    for p in &before {
        let id = p["id"].as_str().unwrap();
        restore(&env, id, &env.path(&format!("before-{id}")));
    }

    delete_catalog(&env);
    let out = env.run(&["points"]);
    assert_one_line_error(&out, "catalog rebuild");
    let report = rebuild(&env, &[]);
    assert_eq!(u(&report, "points_recovered"), 5, "{report}");
    assert!(report["points_lost"].as_array().unwrap().is_empty());
    assert!(u(&report, "metadata_packs") >= 5, "{report}");

    assert_eq!(points(&env), before);
    assert_eq!(point_rows(&env), rows_before);
    assert_eq!(env.json(&["seed", "status", "--json"]), seed_before);
    for p in &before {
        let id = p["id"].as_str().unwrap();
        let after = env.path(&format!("after-{id}"));
        restore(&env, id, &after);
        assert_trees_equal(&env.path(&format!("before-{id}")), &after);
    }
    assert_trees_equal(
        &src,
        &env.path(&format!("after-{}", third["point"].as_str().unwrap())),
    );
    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 0, "{}", stdout(&verify));

    let next = env.backup(&src);
    assert_eq!(next["parent"], third["point"], "{next}");
    assert_eq!(u(&next, "bytes_read"), 0, "{next}");
    let listed = points(&env);
    let last = listed.iter().find(|p| p["id"] == next["point"]).unwrap();
    assert_eq!(last["kind"], "incremental");
}

#[test]
fn a_rebuild_that_fails_leaves_nothing_behind() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a.txt"), b"one");
    env.backup(&src);
    delete_catalog(&env);
    let out = env
        .cmd(&["catalog", "rebuild"])
        .env("SYNVAULT_PASSWORD", "not the passphrase")
        .output()
        .unwrap();
    assert_eq!(code(&out), 12, "{}", stderr(&out));
    assert_one_line_error(&out, "wrong passphrase");
    let left: Vec<_> = fs::read_dir(env.vault())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("catalog"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    rebuild(&env, &[]);
    assert_eq!(points(&env).len(), 1);
}

#[test]
fn a_seed_job_in_transit_is_known_after_rebuild_and_its_import_completes_it() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a.bin"), seeded_bytes(94, 6 * MIB));
    write_file(src.join("dir/b.txt"), b"small");
    let disk = env.path("disk");
    let out = env.run(&[
        "seed",
        "prepare",
        "--job",
        "far",
        "--disk",
        s(&disk),
        "--disk-size",
        "64M",
        s(&src),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let before = points(&env);
    assert_eq!(before[0]["state"], "awaiting_seed");
    let rows_before = point_rows(&env);
    let status_before = env.json(&["seed", "status", "--json"]);

    delete_catalog(&env);
    let report = rebuild(&env, &[]);
    assert!(u(&report, "packs_in_transit") >= 1, "{report}");
    assert_eq!(u(&report, "seed_jobs"), 1, "{report}");
    assert_eq!(points(&env), before);
    assert_eq!(point_rows(&env), rows_before);
    assert_eq!(env.json(&["seed", "status", "--json"]), status_before);

    let out = env.run(&["seed", "import", "--job", "far", s(&disk)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after = points(&env);
    assert_eq!(after[0]["state"], "complete");
    let target = env.path("t");
    restore(&env, "latest", &target);
    assert_trees_equal(&src, &target);
    assert_eq!(code(&env.run(&["verify", "--read-data"])), 0);
}

#[test]
fn a_damaged_catalog_is_mended_by_rebuild_force() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 95, &TreeSpec::small());
    env.backup(&src);
    write_file(src.join("extra.bin"), seeded_bytes(96, 2 * MIB));
    env.backup(&src);
    let catalog = env.vault().join("catalog.db");
    let good = env.catalog_bytes();
    let before = points(&env);

    let overwritten = {
        let mut b = good.clone();
        let page = 4096 * (b.len() / 4096 / 2);
        b[page..page + 4096].copy_from_slice(&seeded_bytes(97, 4096));
        b
    };
    for damaged in [good[..good.len() / 2].to_vec(), overwritten] {
        fs::write(&catalog, &damaged).unwrap();
        for args in [
            &["points"][..],
            &["ls", "latest", "-r"],
            &["stats"],
            &["restore", "latest", "--target", s(&env.path("never"))],
        ] {
            let out = env.run(args);
            assert_no_panic(&out);
            // A page of noise may miss what a command reads; then it answers normally.
            if code(&out) != 0 {
                assert_eq!(code(&out), 16, "{args:?}: {}", stderr(&out));
                assert_one_line_error(&out, "catalog rebuild");
            }
        }
        let out = env.run(&["verify"]);
        assert_no_panic(&out);
        assert_ne!(code(&out), 0);
        assert!(
            stdout(&out).contains("catalog rebuild") || stderr(&out).contains("catalog rebuild"),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        // Without --force a damaged catalog is replaced too; with it, always.
        let report = rebuild(&env, &["--force"]);
        assert_eq!(u(&report, "points_recovered"), 2, "{report}");
        assert!(report["old_catalog"].is_string());
        assert_eq!(points(&env), before);
        let target = env.path("t");
        let _ = fs::remove_dir_all(&target);
        restore(&env, "latest", &target);
        assert_trees_equal(&src, &target);
    }
    // A clean catalog is not replaced without --force.
    let out = env.run(&["catalog", "rebuild"]);
    assert_eq!(code(&out), 17, "{}", stderr(&out));
    assert_one_line_error(&out, "--force");
}

#[test]
fn backups_killed_at_any_instant_leave_exactly_their_committed_points_after_rebuild() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..300u64 {
        write_file(
            src.join(format!("d{}/f{i}.bin", i % 17)),
            seeded_bytes(100 + i, 4096 + (i as usize * 997) % 40_000),
        );
    }
    write_file(src.join("large.bin"), seeded_bytes(99, 12 * MIB));
    // How long a backup that reads everything takes, to spread the kills over it.
    let started = Instant::now();
    let first = env
        .cmd(&["backup", "--json", "--force", s(&src)])
        .env("SYNVAULT_PART_BYTES", "8192")
        .output()
        .unwrap();
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let span = started.elapsed();

    let kills = 24u32;
    for i in 0..kills {
        write_file(
            src.join(format!("round/{i}.txt")),
            format!("round {i}").as_bytes(),
        );
        // Metadata parts of 8 KiB: kills land between parts as well.
        let mut child = env
            .cmd(&["backup", "--json", "--force", s(&src)])
            .env("SYNVAULT_PART_BYTES", "8192")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Instants from the start to a little past the end of a backup.
        let at = span.mul_f64(1.2 * f64::from(i) / f64::from(kills - 1));
        std::thread::sleep(at);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        // What committed: the points the catalog holds now (the first command after the
        // kill also settles a commit cut off after its metadata was sealed).
        let committed = points(&env);
        let rows = point_rows(&env);
        delete_catalog(&env);
        let report = rebuild(&env, &[]);
        assert!(
            report["points_lost"].as_array().unwrap().is_empty(),
            "kill {i} at {at:?}: {report}"
        );
        assert_eq!(points(&env), committed, "kill {i} at {at:?}");
        assert_eq!(point_rows(&env), rows, "kill {i} at {at:?}");
    }
    // Every point restores: verify checks each one's trees and blocks, the newest is restored.
    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 0, "{}", stdout(&verify));
    env.backup(&src);
    let target = env.path("t");
    restore(&env, "latest", &target);
    assert_trees_equal(&src, &target);
}

/// A backup in `env` with metadata parts of `part_bytes`, stopped at `failpoint` if given.
fn backup_in_parts(env: &Env, src: &Path, part_bytes: &str, failpoint: Option<&str>) -> Output {
    let mut cmd = env.cmd(&["backup", "--json", "--force", s(src)]);
    cmd.env("SYNVAULT_PART_BYTES", part_bytes);
    if let Some(step) = failpoint {
        cmd.env("SYNVAULT_FAILPOINT", step);
    }
    cmd.output().unwrap()
}

#[test]
fn a_backup_sealed_in_parts_is_rebuilt_and_a_killed_one_leaves_no_part_behind() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 94, &TreeSpec::small());

    // Parts of 4 KiB: the point's trees and file versions fill many of them.
    let before = env.meta_pack_files().len();
    let out = backup_in_parts(&env, &src, "4096", None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sealed = env.meta_pack_files().len() - before;
    assert!(sealed >= 4, "{sealed} metadata packs");

    // Killed right after sealing a part: the part is the dead backup's, and the next command
    // removes it; prune does not take it for a newer catalog's.
    write_file(src.join("changed/one.txt"), b"one");
    let whole = env.meta_pack_files();
    let out = backup_in_parts(&env, &src, "4096", Some("backup:part-sealed"));
    assert!(!out.status.success());
    assert!(
        env.meta_pack_files().len() > whole.len(),
        "no part was sealed"
    );
    let committed = points(&env);
    assert_eq!(committed.len(), 1);
    assert_eq!(env.meta_pack_files(), whole);
    let out = env.run(&["prune"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // Killed after its last metadata pack, before its commit: the next command settles the
    // commit with every part it names.
    let out = backup_in_parts(&env, &src, "4096", Some("backup:sealed"));
    assert!(!out.status.success());
    let settled = points(&env);
    assert_eq!(settled.len(), 2, "{settled:?}");
    let newest = settled.iter().find(|p| !committed.contains(p)).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let target = env.path("settled");
    restore(&env, &newest, &target);
    assert_trees_equal(&src, &target);

    // The store alone gives back both points, parts and all.
    let rows = point_rows(&env);
    delete_catalog(&env);
    let report = rebuild(&env, &[]);
    assert!(
        report["points_lost"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(point_rows(&env), rows);
    let target = env.path("rebuilt");
    restore(&env, &newest, &target);
    assert_trees_equal(&src, &target);
    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 0, "{}", stdout(&verify));
}

//! Retention: forget and prune keep exactly the points asked for, give the space back, refuse
//! a catalog older than the store, and never take a pack from under a reader (issue 10).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use super::common::env::{assert_one_line_error, code, stderr, stdout, u, Env};
use super::common::{assert_trees_equal, seeded_bytes, write_file};

const MIB: usize = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ids(env: &Env) -> Vec<String> {
    env.json(&["points", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

fn restore(env: &Env, point: &str, target: &Path) {
    let out = env.run(&["restore", point, "--target", s(target)]);
    assert_eq!(code(&out), 0, "restore {point}: {}", stderr(&out));
}

fn prune(env: &Env, extra: &[&str]) -> Value {
    let mut args = vec!["prune", "--json"];
    args.extend_from_slice(extra);
    env.json(&args)
}

fn store_bytes(vault: &Path) -> u64 {
    let mut total = 0;
    for dir in fs::read_dir(vault.join("packs")).unwrap() {
        for f in fs::read_dir(dir.unwrap().path()).unwrap() {
            total += f.unwrap().metadata().unwrap().len();
        }
    }
    total
}

/// One step of a history: a new file, a file rewritten in part, a file removed.
fn change(src: &Path, step: u64) {
    write_file(
        src.join(format!("new-{step}.bin")),
        seeded_bytes(500 + step, MIB),
    );
    let rewritten = src.join("base-0.bin");
    let mut bytes = fs::read(&rewritten).unwrap();
    let at = (step as usize * 97_000) % (bytes.len() - 300_000);
    bytes[at..at + 300_000].copy_from_slice(&seeded_bytes(600 + step, 300_000));
    fs::write(&rewritten, bytes).unwrap();
    let _ = fs::remove_file(src.join(format!("new-{}.bin", step.saturating_sub(3))));
}

fn base(src: &Path) {
    for i in 0..3u64 {
        write_file(
            src.join(format!("base-{i}.bin")),
            seeded_bytes(400 + i, 2 * MIB),
        );
    }
    write_file(src.join("dir/small.txt"), b"unchanged");
}

/// A source with a history of `1 + steps` points in the vault; returns the source.
fn history(env: &Env, steps: u64) -> PathBuf {
    let src = env.path("src");
    base(&src);
    env.backup(&src);
    for step in 1..=steps {
        change(&src, step);
        env.backup(&src);
    }
    src
}

#[test]
fn forgetting_any_point_leaves_every_other_restoring_exactly() {
    let env = Env::new();
    history(&env, 4);
    let points = ids(&env);
    for id in &points {
        restore(&env, id, &env.path(&format!("before-{id}")));
    }
    // The first full point, then one in the middle.
    for gone in [&points[0], &points[2]] {
        let out = env.run(&["forget", gone]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let report = prune(&env, &["--max-unused", "0", "--allow-deleting-most"]);
        assert!(u(&report, "bytes_freed") > 0, "{report}");
        let verify = env.run(&["verify", "--read-data"]);
        assert_eq!(code(&verify), 0, "{}", stdout(&verify));
        assert!(!ids(&env).contains(gone));
        for id in ids(&env) {
            let after = env.path(&format!("after-{id}-{gone}"));
            restore(&env, &id, &after);
            assert_trees_equal(&env.path(&format!("before-{id}")), &after);
        }
    }
}

/// One step of a history in whole files (a new file, a file rewritten whole, a file
/// removed): what each point holds is then stored alike by any vault, whatever its chunking
/// key, so two vaults' sizes compare closely.
fn change_whole_files(src: &Path, step: u64) {
    write_file(
        src.join(format!("new-{step}.bin")),
        seeded_bytes(900 + step, MIB),
    );
    write_file(
        src.join(format!("rewritten-{}.bin", step % 3)),
        seeded_bytes(950 + step, MIB / 2),
    );
    let _ = fs::remove_file(src.join(format!("new-{}.bin", step.saturating_sub(3))));
}

#[test]
fn after_forgetting_half_and_pruning_the_store_is_as_small_as_a_vault_of_the_kept_points() {
    let env = Env::new();
    let src = env.path("src");
    base(&src);
    env.backup(&src);
    for step in 1..=9 {
        change_whole_files(&src, step);
        env.backup(&src);
    }
    let points = ids(&env);
    assert_eq!(points.len(), 10);
    // The kept points' trees, to back up into a fresh vault in the same order.
    let kept: Vec<&String> = points.iter().skip(1).step_by(2).collect();
    let states: Vec<PathBuf> = kept
        .iter()
        .map(|id| {
            let dir = env.path(&format!("state-{id}"));
            restore(&env, id, &dir);
            dir
        })
        .collect();
    let forgotten: Vec<&str> = points.iter().step_by(2).map(String::as_str).collect();
    let mut args = vec!["forget"];
    args.extend(&forgotten);
    assert_eq!(code(&env.run(&args)), 0);
    prune(&env, &["--max-unused", "0", "--allow-deleting-most"]);
    assert_eq!(ids(&env).len(), 5);
    assert_eq!(code(&env.run(&["verify", "--read-data"])), 0);

    let fresh = Env::new();
    let again = fresh.path("src");
    for state in &states {
        let _ = fs::remove_dir_all(&again);
        let ok = std::process::Command::new("cp")
            .args(["-a", s(state), s(&again)])
            .status()
            .unwrap();
        assert!(ok.success());
        fresh.backup(&again);
    }
    let (pruned, kept_only) = (store_bytes(&env.vault()), store_bytes(&fresh.vault()));
    let ratio = pruned as f64 / kept_only as f64;
    assert!(
        (0.95..=1.05).contains(&ratio),
        "pruned store {pruned} B vs a vault of the kept points {kept_only} B ({ratio:.3})"
    );
}

#[test]
fn prune_refuses_a_catalog_older_than_the_store_and_a_missing_one() {
    let env = Env::new();
    let src = env.path("src");
    base(&src);
    env.backup(&src);
    let catalog = env.vault().join("catalog.db");
    let old = env.catalog_bytes();
    for step in 1..=2 {
        change(&src, step);
        env.backup(&src);
    }
    let before = env.pack_files();

    // A catalog restored from an old copy: the newer points' packs look unused.
    for name in ["catalog.db-wal", "catalog.db-shm"] {
        let _ = fs::remove_file(env.vault().join(name));
    }
    fs::write(&catalog, &old).unwrap();
    let out = env.run(&["prune", "--allow-deleting-most"]);
    assert_eq!(code(&out), 18, "{}", stderr(&out));
    assert_one_line_error(&out, "catalog rebuild");
    assert_eq!(env.pack_files(), before, "a refused prune deleted packs");

    fs::remove_file(&catalog).unwrap();
    let out = env.run(&["prune"]);
    assert_eq!(code(&out), 15, "{}", stderr(&out));
    assert_one_line_error(&out, "catalog rebuild");
    assert_eq!(env.pack_files(), before);

    assert_eq!(code(&env.run(&["catalog", "rebuild"])), 0);
    prune(&env, &[]);
    assert_eq!(ids(&env).len(), 3);
    let target = env.path("t");
    restore(&env, "latest", &target);
    assert_trees_equal(&src, &target);
}

#[test]
fn policy_protection_and_forgetting_survive_a_rebuild() {
    let env = Env::new();
    let src = env.path("src");
    base(&src);
    for step in 0..4 {
        change(&src, step + 1);
        env.json(&["backup", "--json", "--tag", &format!("t{step}"), s(&src)]);
    }
    let points = ids(&env);
    assert_eq!(
        code(&env.run(&["policy", "set", "--keep-last", "1", "--keep-tag", "t1"])),
        0
    );
    let out = env.run(&["points", "protect", &points[0], "--until", "forever"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let dry = env.json(&["forget", "--dry-run", "--json"]);
    let verdicts = dry["forget"]["verdicts"].as_array().unwrap();
    let keep: Vec<bool> = verdicts
        .iter()
        .map(|v| v["keep"].as_bool().unwrap())
        .collect();
    assert_eq!(keep, [true, true, false, true], "{dry}");
    assert_eq!(ids(&env).len(), 4, "a dry run forgot points");
    let out = env.run(&["forget", &points[0]]);
    assert_eq!(code(&out), 2, "a protected point was forgotten by name");
    assert_one_line_error(&out, "unprotect");

    assert_eq!(code(&env.run(&["forget"])), 0);
    let kept = ids(&env);
    assert_eq!(
        kept,
        [points[0].clone(), points[1].clone(), points[3].clone()]
    );
    let policies = env.json(&["policy", "show", "--json"]);

    for name in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = fs::remove_file(env.vault().join(name));
    }
    assert_eq!(code(&env.run(&["catalog", "rebuild"])), 0);
    assert_eq!(ids(&env), kept, "a forgotten point came back");
    assert_eq!(env.json(&["policy", "show", "--json"]), policies);
    let dry = env.json(&["forget", "--dry-run", "--json"]);
    assert!(
        dry["forget"]["verdicts"][0]["reasons"]
            .as_array()
            .unwrap()
            .contains(&Value::from("protected")),
        "{dry}"
    );
    assert_eq!(dry["forget"]["forgotten"].as_array().unwrap().len(), 0);

    // The same once prune has compacted the metadata.
    prune(&env, &["--allow-deleting-most"]);
    for name in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = fs::remove_file(env.vault().join(name));
    }
    assert_eq!(code(&env.run(&["catalog", "rebuild"])), 0);
    assert_eq!(ids(&env), kept);
    assert_eq!(code(&env.run(&["verify", "--read-data"])), 0);
}

#[test]
fn a_reader_keeps_its_packs_until_it_ends_and_a_killed_one_holds_nothing() {
    let env = Env::new();
    let src = env.path("src");
    let big = seeded_bytes(700, 6 * MIB);
    write_file(src.join("big.bin"), &big);
    let first = env.backup(&src)["point"].as_str().unwrap().to_string();
    fs::remove_file(src.join("big.bin")).unwrap();
    write_file(src.join("other.bin"), seeded_bytes(701, MIB));
    env.backup(&src);

    // A reader of the first point, stalled on a full pipe.
    let mut reader = env
        .cmd(&["cat", &format!("{first}:big.bin")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = reader.stdout.take().unwrap();
    let mut head = vec![0u8; 64 * 1024];
    out.read_exact(&mut head).unwrap();

    assert_eq!(code(&env.run(&["forget", &first])), 0);
    let report = prune(&env, &["--allow-deleting-most"]);
    assert!(u(&report, "bytes_set_aside") >= 6 * MIB as u64, "{report}");
    assert_eq!(u(&report, "bytes_freed"), 0, "{report}");
    let holder = &report["set_aside_for"][0];
    assert_eq!(holder["pid"], reader.id(), "{report}");

    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    head.extend(rest);
    assert!(reader.wait().unwrap().success());
    assert!(
        head == big,
        "the reader did not get the file it started reading"
    );
    let report = prune(&env, &[]);
    assert!(u(&report, "bytes_freed") >= 6 * MIB as u64, "{report}");

    // A reader killed outright holds nothing.
    write_file(src.join("third.bin"), seeded_bytes(702, 2 * MIB));
    let third = env.backup(&src)["point"].as_str().unwrap().to_string();
    let mut killed = env
        .cmd(&["cat", &format!("{third}:third.bin")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut some = vec![0u8; 1024];
    killed
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut some)
        .unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert_eq!(code(&env.run(&["forget", &third])), 0);
    let report = prune(&env, &["--allow-deleting-most"]);
    assert_eq!(u(&report, "bytes_set_aside"), 0, "{report}");
    assert!(u(&report, "bytes_freed") >= 2 * MIB as u64, "{report}");
    assert_eq!(code(&env.run(&["verify", "--read-data"])), 0);
}

/// A history of five points with a forgotten first and middle point, and each remaining
/// point restored aside (to compare with after a crash).
fn history_to_prune(env: &Env) -> Vec<(String, PathBuf)> {
    history(env, 4);
    let points = ids(env);
    assert_eq!(code(&env.run(&["forget", &points[0], &points[2]])), 0);
    ids(env)
        .into_iter()
        .map(|id| {
            let dir = env.path(&format!("kept-{id}"));
            restore(env, &id, &dir);
            (id, dir)
        })
        .collect()
}

/// After a prune was killed: the vault verifies, every kept point restores exactly, and a new
/// prune finishes the job (after it nothing is left to free, nothing unknown in the store).
fn assert_whole_after_a_killed_prune(env: &Env, kept: &[(String, PathBuf)], what: &str) {
    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 0, "{what}: {}", stdout(&verify));
    assert_eq!(
        ids(env),
        kept.iter().map(|k| k.0.clone()).collect::<Vec<_>>(),
        "{what}"
    );
    for (id, before) in kept {
        let after = env.path(&format!("after-{what}-{id}"));
        restore(env, id, &after);
        assert_trees_equal(before, &after);
    }
    prune(env, &["--max-unused", "0", "--allow-deleting-most"]);
    let again = prune(env, &["--max-unused", "0", "--allow-deleting-most"]);
    assert_eq!(u(&again, "bytes_freed"), 0, "{what}: {again}");
    assert_eq!(u(&again, "packs_unknown"), 0, "{what}: {again}");
    assert_eq!(u(&again, "packs_unused"), 0, "{what}: {again}");
    let verify = env.json(&["verify", "--read-data", "--json"]);
    assert!(
        verify["unreferenced_packs"].as_array().unwrap().is_empty(),
        "{what}: {verify}"
    );
    assert_totals_are_the_sums(env, what);
}

/// `stats` answers from totals the catalog keeps as rows come and go; they must equal the sums
/// of the rows, whatever wrote them (backups, prunes killed at any step, the prunes after).
fn assert_totals_are_the_sums(env: &Env, what: &str) {
    let stats = env.json(&["stats", "--json"]);
    let db = rusqlite::Connection::open(env.vault().join("catalog.db")).unwrap();
    let sum = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64;
    assert_eq!(
        u(&stats, "unique_bytes"),
        sum("SELECT COALESCE(SUM(raw_len), 0) FROM blocks"),
        "{what}"
    );
    assert_eq!(
        u(&stats, "stored_bytes"),
        sum("SELECT COALESCE(SUM(size), 0) FROM packs"),
        "{what}"
    );
}

#[test]
fn prune_killed_at_each_step_or_at_any_instant_leaves_a_whole_vault() {
    for step in [
        "prune:marked",
        "prune:unknown-retired",
        "prune:repack-pack-written",
        "prune:repacked",
        "prune:relocked",
        "prune:retired",
        "prune:snapshot-written",
        "prune:compacted",
        "prune:one-deleted",
    ] {
        let env = Env::new();
        let kept = history_to_prune(&env);
        let out = env
            .cmd(&["prune", "--max-unused", "0", "--allow-deleting-most"])
            .env("SYNVAULT_FAILPOINT", step)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{step}: prune was not stopped");
        assert_whole_after_a_killed_prune(&env, &kept, step);
    }
    let env = Env::new();
    let kept = history_to_prune(&env);
    for ms in [5u64, 20, 40, 60, 90, 130, 200] {
        let mut child = env
            .cmd(&["prune", "--max-unused", "0", "--allow-deleting-most"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        let verify = env.run(&["verify", "--read-data"]);
        assert_eq!(code(&verify), 0, "killed at {ms} ms: {}", stdout(&verify));
    }
    assert_whole_after_a_killed_prune(&env, &kept, "random");
}

/// Waits until the vault's lock file `lock` names `command`.
fn wait_for_lock_holder(env: &Env, lock: &str, command: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let holder = fs::read_to_string(env.vault().join(lock)).unwrap_or_default();
        if holder.contains(command) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{command} never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_backup_during_prune_completes_and_a_prune_during_a_backup_takes_nothing_it_uses() {
    let env = Env::new();
    let src = history(&env, 3);
    let first = ids(&env)[0].clone();
    // This version of base-0.bin is only in the first point: once it is forgotten, prune
    // plans to drop its blocks.
    let only_in_first = env.run(&["cat", &format!("{first}:base-0.bin")]).stdout;
    assert_eq!(only_in_first.len(), 2 * MIB);
    assert_eq!(code(&env.run(&["forget", &first])), 0);

    // A backup started while prune repacks (paused with its new packs written) runs at once:
    // prune holds the writer lock only for its catalog steps.
    let mut pruning = env
        .cmd(&["prune", "--max-unused", "0", "--allow-deleting-most"])
        .env("SYNVAULT_PAUSE_AT", "prune:repacked")
        .env("SYNVAULT_PAUSE_MS", "2500")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lock_holder(&env, "prune.lock", "prune");
    std::thread::sleep(std::time::Duration::from_millis(300));
    // It brings the forgotten version back: its blocks are shared, not stored again, and
    // prune must keep the pack that holds them.
    write_file(src.join("base-0.bin"), &only_in_first);
    let during = env.backup(&src);
    assert!(u(&during, "bytes_new") < MIB as u64, "{during}");
    assert_eq!(during["state"], "complete", "{during}");
    assert!(
        pruning.try_wait().unwrap().is_none(),
        "the backup waited for the whole prune"
    );
    let pruned = pruning.wait_with_output().unwrap();
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 0, "{}", stdout(&verify));
    let target = env.path("t1");
    restore(&env, "latest", &target);
    assert_trees_equal(&src, &target);

    // A prune started while a backup is about to commit: it waits for the backup's lock.
    let second = ids(&env)[0].clone();
    assert_eq!(code(&env.run(&["forget", &second])), 0);
    change(&src, 5);
    let backing_up = env
        .cmd(&["backup", "--json", s(&src)])
        .env("SYNVAULT_PAUSE_AT", "backup:before-commit")
        .env("SYNVAULT_PAUSE_MS", "2500")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lock_holder(&env, "lock", "backup");
    prune(&env, &["--max-unused", "0", "--allow-deleting-most"]);
    let backed_up = backing_up.wait_with_output().unwrap();
    assert!(backed_up.status.success(), "{}", stderr(&backed_up));
    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 0, "{}", stdout(&verify));
    let target = env.path("t2");
    restore(&env, "latest", &target);
    assert_trees_equal(&src, &target);
    for id in ids(&env) {
        restore(&env, &id, &env.path(&format!("every-{id}")));
    }
}

/// `policy set --local-time` reads days on the local clock of the machine that runs `forget`,
/// daylight saving included: two points 23:30 and 00:30 apart in local time are two days in
/// summer (UTC+2) and in winter (UTC+1), while in UTC each pair shares one day.
#[test]
fn local_time_policy_reads_days_on_the_local_clock_with_daylight_saving() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a"), b"a");
    let times = [
        "2026-01-10T22:30:00Z", // 23:30 CET
        "2026-01-10T23:30:00Z", // 00:30 CET, the next day
        "2026-07-01T21:30:00Z", // 23:30 CEST
        "2026-07-01T22:30:00Z", // 00:30 CEST, the next day
    ];
    for time in times {
        env.json(&["backup", "--json", "--time", time, s(&src)]);
    }
    let berlin = "CET-1CEST,M3.5.0,M10.5.0/3";
    let dry_run = |tz: &str| {
        let out = env
            .cmd(&["forget", "--dry-run", "--json"])
            .env("TZ", tz)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        report["forget"]["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["keep"].as_bool().unwrap(), v["reasons"].to_string()))
            .collect::<Vec<_>>()
    };
    let set = |extra: &[&str]| {
        let mut args = vec!["policy", "set", "--keep-daily", "unlimited"];
        args.extend_from_slice(extra);
        assert_eq!(code(&env.run(&args)), 0);
    };

    set(&[]);
    let utc: Vec<bool> = dry_run(berlin).into_iter().map(|v| v.0).collect();
    // The first point is kept as the oldest (a rule with slots left keeps it).
    assert_eq!(utc, [true, true, false, true], "UTC days ignore TZ");

    set(&["--local-time"]);
    let local = dry_run(berlin);
    assert!(local.iter().all(|v| v.0), "{local:?}");
    assert!(local[1].1.contains("daily 2026-01-11"), "{local:?}");
    assert!(local[3].1.contains("daily 2026-07-02"), "{local:?}");
    // The same policy on a machine in UTC.
    let on_utc: Vec<bool> = dry_run("UTC0").into_iter().map(|v| v.0).collect();
    assert_eq!(on_utc, [true, true, false, true]);
}

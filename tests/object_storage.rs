//! Vaults in object storage against real servers (moto's S3 server, Azurite): the whole life
//! of a vault — init, backups, points, restore, cat, verify, stats — then the catalog lost
//! and rebuilt from the bucket alone; one writer at a time across machines; and URLs of
//! schemes synvault does not know.
//!
//! Each test starts its own server on a free port and stops it when done (see
//! `common::servers`). Tests skip when a server is not installed, and never when
//! `SYNVAULT_REQUIRE_OBJECT_STORAGE=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::Value;
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::env::{assert_one_line_error, code, stderr, stdout, Env};
use common::servers::{FaultProxy, Kind, Server};
use common::{assert_trees_equal, generate_tree, seeded_bytes, write_file, TreeSpec};

/// Init, a full and an incremental backup, then every reading command; then the local
/// catalog deleted and rebuilt from the bucket alone, and every point restores.
fn whole_life_of_a_vault(kind: Kind) {
    let Some(server) = Server::start(kind) else {
        return;
    };
    let env = server.env("life");
    let src = env.path("src");
    generate_tree(&src, 7, &TreeSpec::small());
    let first = env.backup(&src);
    assert_eq!(first["state"], "complete", "{first}");
    let first_copy = env.path("first-copy");
    copy_tree(&src, &first_copy);

    // An incremental: one file changed, one added.
    write_file(src.join("changed.bin"), seeded_bytes(8, 300_000));
    write_file(src.join("added.txt"), b"added after the first point\n");
    let second = env.backup(&src);
    assert_eq!(second["state"], "complete", "{second}");

    let points = env.json(&["points", "--json"]);
    assert_eq!(points.as_array().unwrap().len(), 2, "{points}");

    let target = env.path("restored");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_trees_equal(&src, &target);
    // What the restore read is kept on this machine, whole packs named by their blake3.
    let cached: Vec<_> = fs::read_dir(env.path("catalog/pack-cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!cached.is_empty());
    for pack in &cached {
        let name = pack.file_stem().unwrap().to_str().unwrap();
        assert_eq!(
            blake3::hash(&fs::read(pack).unwrap()).to_hex().as_str(),
            name
        );
    }

    let cat = env.run(&["cat", "latest:/added.txt"]);
    assert!(cat.status.success(), "{}", stderr(&cat));
    assert_eq!(cat.stdout, b"added after the first point\n");

    let verify = env.run(&["verify", "--read-data"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let stats = env.json(&["stats", "--json"]);
    assert!(stats.to_string().contains("points"), "{stats}");

    // The catalog is lost: the bucket alone gives every point back.
    fs::remove_dir_all(env.path("catalog")).unwrap();
    let lost = env.run(&["points"]);
    assert_ne!(
        code(&lost),
        0,
        "points without a catalog: {}",
        stdout(&lost)
    );
    assert_one_line_error(&lost, "catalog rebuild");
    let rebuilt = env.run(&["catalog", "rebuild"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    let points = env.json(&["points", "--json"]);
    assert_eq!(points.as_array().unwrap().len(), 2, "{points}");
    for (point, tree) in [("latest~1", &first_copy), ("latest", &src)] {
        let target = env.path(&format!("rebuilt-{point}"));
        let out = env.run(&["restore", point, "--target", target.to_str().unwrap()]);
        assert!(out.status.success(), "{point}: {}", stderr(&out));
        assert_trees_equal(tree, &target);
    }

    // Forget the first point and prune: the bucket gives back its space, the rest verifies
    // and restores.
    let before = env.json(&["stats", "--json"]);
    let forgot = env.run(&["forget", "latest~1", "--prune"]);
    assert!(forgot.status.success(), "{}", stderr(&forgot));
    let after = env.json(&["stats", "--json"]);
    assert_eq!(env.json(&["points", "--json"]).as_array().unwrap().len(), 1);
    assert_ne!(before, after, "prune changed nothing");
    let verify = env.run(&["verify", "--read-data"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let target = env.path("after-prune");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_trees_equal(&src, &target);
}

#[test]
fn s3_whole_life_of_a_vault() {
    whole_life_of_a_vault(Kind::S3);
}

#[test]
fn azure_whole_life_of_a_vault() {
    whole_life_of_a_vault(Kind::Azure);
}

/// Copies a tree with its metadata (cp -a), to compare an older point with later.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn init_refuses_a_prefix_that_holds_something_else() {
    let Some(server) = Server::start(Kind::S3) else {
        return;
    };
    let env = server.env("taken");
    // The vault prefix is taken; a second init there is refused, as is one over other data.
    let again = env.run(&["init"]);
    assert_eq!(code(&again), 1, "{}", stderr(&again));
    assert_one_line_error(&again, "already exists");

    let other = Env::remote(server.url("taken", ""), server.vars());
    let out = other.run(&["init"]);
    assert_ne!(code(&out), 0);
    assert_one_line_error(&out, "not empty");
}

#[test]
fn a_url_of_an_unknown_scheme_is_an_error_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_synvault"))
        .current_dir(dir.path())
        .env("SYNVAULT_VAULT", "gs://bucket/x")
        .env("SYNVAULT_PASSWORD", "pw")
        .arg("init")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_one_line_error(&out, "does not know the scheme gs://");
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "made a directory"
    );
}

#[test]
fn s3_one_writer_at_a_time_across_machines_and_a_dead_holder_is_taken_over() {
    one_writer_at_a_time_across_machines(Kind::S3);
}

#[test]
fn azure_one_writer_at_a_time_across_machines_and_a_dead_holder_is_taken_over() {
    one_writer_at_a_time_across_machines(Kind::Azure);
}

/// Two machines (two catalogs) write one vault: the second is refused and told who holds
/// the lock; a holder killed with SIGKILL leaves a lock that is taken over once stale.
fn one_writer_at_a_time_across_machines(kind: Kind) {
    let Some(server) = Server::start(kind) else {
        return;
    };
    let first = server.env("locks");
    let url = server.url("locks", "vault");
    let mut vars = server.vars();
    vars.push(("SYNVAULT_LOCK_STALE_SECONDS".into(), "3".into()));
    let second = Env::remote(url, vars.clone());
    assert!(second.run(&["catalog", "rebuild"]).status.success());

    // The first machine's backup holds the lock (paused once it has it).
    let src = first.path("src");
    write_file(src.join("a"), b"a");
    let mut holder = first
        .cmd(&["backup", src.to_str().unwrap()])
        .env("SYNVAULT_LOCK_STALE_SECONDS", "3")
        .env("SYNVAULT_PAUSE_AT", "backup:started")
        .env("SYNVAULT_PAUSE_MS", "120000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the lock object is there: the second machine is refused, told who holds it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let out = second.run(&["--lock-wait", "0", "policy", "clear"]);
        if code(&out) == 11 {
            break out;
        }
        assert!(Instant::now() < deadline, "never locked: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_one_line_error(&refused, "locked by");
    assert!(
        stderr(&refused).contains(&format!("pid {}", holder.id())),
        "{}",
        stderr(&refused)
    );

    // Killed without a chance to release: the lock goes stale, and is taken over.
    holder.kill().unwrap();
    holder.wait().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let out = second.run(&["--lock-wait", "0", "policy", "clear"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("took over"), "{}", stderr(&out));
}

/// Two machines on one bucket, each with its own catalog. One forgets its point and prunes
/// with no grace period (its packs are deleted); the other, whose catalog still lists them, is refused before it
/// writes, naming `catalog rebuild` (exit 18): its backup would have shared blocks that are
/// gone, and its point could not have been restored. Rebuilt, it backs up and restores.
#[test]
fn a_writer_whose_catalog_is_behind_the_bucket_is_refused_until_rebuilt() {
    let Some(server) = Server::start(Kind::S3) else {
        return;
    };
    let first = server.env("behind");
    let second = Env::remote(server.url("behind", "vault"), server.vars());
    let src = first.path("src");
    generate_tree(&src, 11, &TreeSpec::small());
    let point = first.backup(&src);
    assert!(second.run(&["catalog", "rebuild"]).status.success());

    let id = point["point"].as_str().unwrap();
    assert!(first.run(&["forget", id]).status.success());
    let out = first.run(&["prune", "--allow-deleting-most", "--grace", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = second.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(code(&out), 18, "{}", stderr(&out));
    assert_one_line_error(&out, "catalog rebuild");
    let out = second.run(&["catalog", "rebuild", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = second.backup(&src);
    assert_eq!(again["state"], "complete", "{again}");
    let target = second.path("restored");
    let out = second.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_trees_equal(&src, &target);
}

/// A prune in object storage keeps the packs it retires for its grace period (24 h unless
/// told): a restore on another machine, whose catalog still names them and whose lease this
/// machine cannot see, reads them meanwhile. The first prune after the period deletes them.
/// (Restoring again afterwards would not show it: the reader's local pack cache holds them.)
#[test]
fn a_reader_on_another_machine_reads_what_prune_retired_until_the_grace_period_ends() {
    let Some(server) = Server::start(Kind::S3) else {
        return;
    };
    let first = server.env("grace");
    let second = Env::remote(server.url("grace", "vault"), server.vars());
    let (old, new) = (first.path("old"), first.path("new"));
    generate_tree(&old, 21, &TreeSpec::small());
    generate_tree(&new, 22, &TreeSpec::small());
    let forgotten = first.backup(&old);
    first.backup(&new);
    assert!(second.run(&["catalog", "rebuild"]).status.success());
    let id = forgotten["point"].as_str().unwrap();
    assert!(first.run(&["forget", id]).status.success());

    let pruned = first.json(&["prune", "--allow-deleting-most", "--json"]);
    assert_eq!(pruned["bytes_freed"], 0, "{pruned}");
    assert!(pruned["bytes_set_aside"].as_u64().unwrap() > 0, "{pruned}");
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let day_ahead =
        i64::try_from((since_epoch + Duration::from_secs(23 * 3600)).as_nanos()).unwrap();
    assert!(
        pruned["set_aside_until_ns"].as_i64().unwrap() > day_ahead,
        "{pruned}"
    );
    let target = second.path("restored-in-grace");
    let out = second.run(&["restore", id, "--target", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_trees_equal(&old, &target);

    // The period over (cut to nothing here), the next prune deletes what it held.
    let swept = first.json(&["prune", "--grace", "0", "--json"]);
    assert!(swept["bytes_freed"].as_u64().unwrap() > 0, "{swept}");
    assert_eq!(swept["bytes_set_aside"], 0, "{swept}");
    assert!(swept["set_aside_until_ns"].is_null(), "{swept}");
    // They are gone: the other machine, whose catalog names them, may no longer write.
    let out = second.run(&["backup", new.to_str().unwrap()]);
    assert_eq!(code(&out), 18, "{}", stderr(&out));
}

/// A prune that marked before another machine committed a point learns of it when it takes
/// the lock again, and refuses (exit 18) rather than delete the packs that point shares.
#[test]
fn a_prune_refuses_when_another_machine_committed_while_it_marked() {
    let Some(server) = Server::start(Kind::S3) else {
        return;
    };
    let first = server.env("marking");
    let second = Env::remote(server.url("marking", "vault"), server.vars());
    let src = first.path("src");
    generate_tree(&src, 12, &TreeSpec::small());
    let point = first.backup(&src);
    assert!(first
        .run(&["forget", point["point"].as_str().unwrap()])
        .status
        .success());
    assert!(second.run(&["catalog", "rebuild"]).status.success());

    // The first machine's prune marks (nothing is used) and pauses before it locks again;
    // meanwhile the second backs up the same files, sharing the packs prune would retire.
    let prune = first
        .cmd(&["prune", "--allow-deleting-most"])
        .env("SYNVAULT_PAUSE_AT", "prune:marked")
        .env("SYNVAULT_PAUSE_MS", "8000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let shared = second.backup(&src);
    assert_eq!(shared["state"], "complete", "{shared}");
    let out = prune.wait_with_output().unwrap();
    assert_eq!(code(&out), 18, "{}", stderr(&out));
    assert_one_line_error(&out, "catalog rebuild");

    let target = second.path("restored");
    let out = second.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_trees_equal(&src, &target);
}

/// A writer whose lock refreshes fail for a stale period (its link is down) loses the lock to
/// another machine's writer: when its link is back, it commits nothing (exit 27, naming the
/// new holder), and the store holds only the other writer's point.
#[test]
fn a_writer_that_lost_its_lock_commits_nothing() {
    let Some(server) = Server::start(Kind::S3) else {
        return;
    };
    server.make_bucket("lostlock");
    let url = server.url("lostlock", "vault");
    let stale = ("SYNVAULT_LOCK_STALE_SECONDS".to_string(), "2".to_string());
    let proxy = FaultProxy::before(&server);
    let mut first_vars = proxy.vars(&server);
    first_vars.push(stale.clone());
    let first = Env::remote(url.clone(), first_vars);
    assert!(first.run(&["init"]).status.success());
    let mut second_vars = server.vars();
    second_vars.push(stale);
    let second = Env::remote(url.clone(), second_vars.clone());
    assert!(second.run(&["catalog", "rebuild"]).status.success());

    let paused_backup = |env: &Env, src: &std::path::Path, ms: &str| {
        write_file(src.join("a"), b"a");
        env.cmd(&["backup", src.to_str().unwrap()])
            .env("SYNVAULT_PAUSE_AT", "backup:started")
            .env("SYNVAULT_PAUSE_MS", ms)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let loser = paused_backup(&first, &first.path("src"), "8000");
    let deadline = Instant::now() + Duration::from_secs(60);
    while code(&second.run(&["--lock-wait", "0", "policy", "clear"])) != 11 {
        assert!(
            Instant::now() < deadline,
            "the first writer never took the lock"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The first writer's link goes down for longer than the stale period; the second takes
    // the lock over and holds it while the first one's link is back and it goes on.
    proxy.down();
    std::thread::sleep(Duration::from_secs(3));
    let winner = paused_backup(&second, &second.path("src"), "6000");
    std::thread::sleep(Duration::from_secs(1));
    proxy.up();

    let lost = loser.wait_with_output().unwrap();
    assert_eq!(code(&lost), 27, "{}", stderr(&lost));
    assert_one_line_error(&lost, "lost the vault's lock");
    assert!(
        stderr(&lost).contains(&format!("pid {}", winner.id())),
        "{}",
        stderr(&lost)
    );
    let won = winner.wait_with_output().unwrap();
    assert!(won.status.success(), "{}", stderr(&won));
    assert!(stderr(&won).contains("took over"), "{}", stderr(&won));

    // A third machine rebuilds from the store alone: one point, the winner's.
    let third = Env::remote(url, second_vars);
    assert!(third.run(&["catalog", "rebuild"]).status.success());
    let points: Value = serde_json::from_slice(&third.run(&["points", "--json"]).stdout).unwrap();
    assert_eq!(points.as_array().map(Vec::len), Some(1), "{points}");
}

/// The service fails for a while during a backup: the backup retries and completes. It stays
/// down: the backup exits 19 with one line, and afterwards the vault verifies and the next
/// backup completes. A restore that loses the service midway exits 19 naming what it did not
/// restore, and `restore --overwrite` finishes it. No partial pack is ever in the bucket.
#[test]
fn a_service_that_fails_loses_nothing_and_every_job_finishes_once_it_is_back() {
    let Some(server) = Server::start(Kind::S3) else {
        return;
    };
    server.make_bucket("faults");
    let proxy = FaultProxy::before(&server);
    let env = Env::remote(server.url("faults", "vault"), proxy.vars(&server));
    assert!(env.run(&["init"]).status.success());
    let src = env.path("src");
    generate_tree(&src, 11, &TreeSpec::small());
    let retry = ["--retry-timeout", "30"];

    // Down for two seconds while the backup runs: retried, complete.
    proxy.down();
    let flaky = {
        let mut cmd = env.cmd(&[&retry[..], &["backup", "--json", src.to_str().unwrap()]].concat());
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        proxy.up();
        child.wait_with_output().unwrap()
    };
    assert!(flaky.status.success(), "{}", stderr(&flaky));

    // Down for good: one line, exit 19, nothing committed.
    write_file(src.join("new.bin"), seeded_bytes(12, 2_000_000));
    proxy.down();
    let out = env.run(&["--retry-timeout", "2", "backup", src.to_str().unwrap()]);
    assert_eq!(code(&out), 19, "{}", stderr(&out));
    assert_one_line_error(&out, "cannot");
    proxy.up();
    let verify = env.run(&["verify", "--read-data"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let next = env.backup(&src);
    assert_eq!(next["state"], "complete", "{next}");

    // A restore that loses the service: exit 19 naming what is left; --overwrite finishes.
    let target = env.path("restored");
    let mut restore = env
        .cmd(&[
            "--retry-timeout",
            "2",
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
        ])
        .env("SYNVAULT_PAUSE_AT", "restore:file")
        .env("SYNVAULT_PAUSE_MS", "300")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    proxy.down();
    let status = restore.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(restore.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(19), "{err}");
    assert!(err.contains("files not restored (the first: "), "{err}");
    proxy.up();
    let resumed = env.run(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--overwrite",
    ]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_trees_equal(&src, &target);

    // Every pack in the bucket is whole: named by the blake3 of exactly its bytes.
    let verify = env.run(&["verify", "--read-data"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}

/// The datacenter side of seeding a vault in a bucket: a job prepared onto two disks on the
/// owner's machine is imported into the bucket elsewhere — no passphrase, no catalog, the
/// disks in reverse order; a tampered pack is refused and named, its good copy then goes in.
/// The owner's machine takes the packs in from the bucket, and the point restores.
#[test]
fn s3_a_seed_job_is_imported_into_a_bucket_without_the_key_or_the_catalog() {
    seed_job_imported_into_a_bucket(Kind::S3);
}

#[test]
fn azure_a_seed_job_is_imported_into_a_bucket_without_the_key_or_the_catalog() {
    seed_job_imported_into_a_bucket(Kind::Azure);
}

fn seed_job_imported_into_a_bucket(kind: Kind) {
    let Some(server) = Server::start(kind) else {
        return;
    };
    let owner = server.env("seeded");
    let src = owner.path("src");
    generate_tree(&src.join("tree"), 13, &TreeSpec::small());
    for i in 0..3 {
        write_file(
            src.join(format!("data{i}.bin")),
            seeded_bytes(40 + i, 13 << 20),
        );
    }
    let (d1, d2) = (owner.path("disk1"), owner.path("disk2"));
    let prepared = owner.run(&[
        "seed",
        "prepare",
        "--job",
        "j",
        "--disk-size",
        "40M",
        "--disk",
        d1.to_str().unwrap(),
        "--disk",
        d2.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert!(prepared.status.success(), "{}", stderr(&prepared));

    // The datacenter: the bucket and the disks, nothing else.
    let datacenter = Env::remote(server.url("seeded", "vault"), server.vars());
    let import = |disks: &[&std::path::Path]| {
        let mut args = vec!["seed", "import", "--job", "j"];
        args.extend(disks.iter().map(|d| d.to_str().unwrap()));
        datacenter
            .cmd(&args)
            .env_remove("SYNVAULT_PASSWORD")
            .output()
            .unwrap()
    };
    let victim = fs::read_dir(d2.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let pristine = fs::read(&victim).unwrap();
    let mut tampered = pristine.clone();
    tampered[1000] ^= 1;
    fs::write(&victim, &tampered).unwrap();
    let refused = import(&[&d2, &d1]);
    assert_eq!(
        code(&refused),
        3,
        "{}{}",
        stdout(&refused),
        stderr(&refused)
    );
    let name = victim.file_stem().unwrap().to_str().unwrap();
    assert!(stdout(&refused).contains(name), "{}", stdout(&refused));

    fs::write(&victim, &pristine).unwrap();
    let fixed = import(&[&d2, &d1]);
    assert!(
        fixed.status.success(),
        "{}{}",
        stdout(&fixed),
        stderr(&fixed)
    );
    let again = import(&[&d1, &d2]);
    assert!(again.status.success(), "{}", stderr(&again));

    // The owner's machine takes the packs in from the bucket; the point is whole.
    let points = owner.json(&["points", "--json"]);
    assert_eq!(points[0]["state"], "awaiting_seed", "{points}");
    let settled = owner.run(&["seed", "import", "--job", "j"]);
    assert!(
        settled.status.success(),
        "{}{}",
        stdout(&settled),
        stderr(&settled)
    );
    let target = owner.path("restored");
    let out = owner.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_trees_equal(&src, &target);
}

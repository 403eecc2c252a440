//! Seed disks end to end: prepare onto disk directories, import in any order, incrementals
//! while the disks travel, and every bad disk refused without half-importing anything.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{assert_trees_equal, generate_tree, seeded_bytes, write_file, TreeSpec};
use super::{assert_one_line_error, code, stderr, stdout, u, Env, MIB};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A source of ~40 MiB of incompressible data plus a small tree of every kind of entry:
/// two packs, so a 40 MiB disk holds only the first (packs close at 32..36 MiB).
fn seed_source(env: &Env) -> PathBuf {
    let src = env.path("src");
    generate_tree(&src.join("tree"), 11, &TreeSpec::small());
    for i in 0..3 {
        write_file(
            src.join(format!("data{i}.bin")),
            seeded_bytes(20 + i, 13 * MIB),
        );
    }
    src
}

fn prepare(env: &Env, job: &str, disks: &[&Path], size: &str, src: &Path) -> Output {
    let mut args = vec!["seed", "prepare", "--job", job, "--disk-size", size];
    for d in disks {
        args.extend(["--disk", s(d)]);
    }
    args.push(s(src));
    env.run(&args)
}

fn import(env: &Env, job: &str, disks: &[&Path]) -> Output {
    let mut args = vec!["seed", "import", "--job", job];
    args.extend(disks.iter().map(|d| s(d)));
    // Import needs no passphrase.
    env.cmd(&args)
        .env_remove("SYNVAULT_PASSWORD")
        .output()
        .unwrap()
}

/// Deletes the catalog and rebuilds it from the store: the points and seed jobs must read
/// back exactly as they were.
fn rebuild_gives_back_the_same(env: &Env) {
    let points = env.json(&["points", "--json"]);
    let jobs = env.json(&["seed", "status", "--json"]);
    for name in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = fs::remove_file(env.vault().join(name));
    }
    let out = env.run(&["catalog", "rebuild"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(env.json(&["points", "--json"]), points);
    assert_eq!(env.json(&["seed", "status", "--json"]), jobs);
}

fn status(env: &Env, job: &str) -> Value {
    let v = env.json(&["seed", "status", "--job", job, "--json"]);
    v[0].clone()
}

fn copy_tree(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The store's files but its metadata packs (which the vault writes itself, not the import).
fn store_packs(env: &Env) -> Vec<PathBuf> {
    env.pack_files()
}

fn disk_packs(disk: &Path) -> Vec<PathBuf> {
    let mut out: Vec<_> = fs::read_dir(disk.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

#[test]
fn seed_spans_disks_imports_in_any_order_and_incrementals_wait_for_it() {
    let env = Env::new();
    let src = seed_source(&env);
    let original = env.path("original");
    copy_tree(&src, &original);
    let (d1, d2) = (env.path("disk1"), env.path("disk2"));
    let out = prepare(&env, "site-a", &[&d1, &d2], "40M", &src);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // It says which disks it used, and how much each holds.
    for (n, disk) in [(1, &d1), (2, &d2)] {
        let line = format!("disk {n} {}: ", disk.display());
        assert!(stdout(&out).contains(&line), "{line}: {}", stdout(&out));
    }
    assert!(stdout(&out).contains(" packs, "), "{}", stdout(&out));
    assert!(d1.join("synvault-journal.json").exists() && d2.join("synvault-journal.json").exists());
    assert!(
        !disk_packs(&d1).is_empty() && !disk_packs(&d2).is_empty(),
        "capacity should force spanning"
    );

    // Before shipping: the disks check out.
    let check = env.run(&["seed", "check", s(&d1), s(&d2)]);
    assert_eq!(code(&check), 0, "{}", stdout(&check));

    let points = env.json(&["points", "--json"]);
    assert_eq!(points[0]["kind"], "seeded");
    assert_eq!(points[0]["state"], "awaiting_seed");
    let refused = env.run(&["restore", "latest", "--target", s(&env.path("early"))]);
    assert_eq!(code(&refused), 1);
    assert_one_line_error(&refused, "site-a");
    // Every reader gives the same answer, naming the job.
    let mnt = env.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    for args in [
        vec!["cat", "latest:data1.bin"],
        vec!["bench", "reassembly", "latest"],
        vec!["mount", "--point", "latest", s(&mnt)],
    ] {
        let refused = env.run(&args);
        assert_eq!(code(&refused), 1, "{args:?}");
        assert_one_line_error(
            &refused,
            "is awaiting seed job site-a and cannot be read yet",
        );
    }

    // An incremental while the disks travel stores only what changed.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(src.join("data1.bin"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &seeded_bytes(99, MIB), 6 * MIB as u64).unwrap();
    drop(f);
    let incr = env.backup(&src);
    assert_eq!(incr["state"], "awaiting_seed", "{incr}");
    assert!(
        u(&incr, "bytes_new") <= 9 * MIB as u64,
        "stored more than the touched blocks: {incr}"
    );
    assert_eq!(u(&incr, "files_changed"), 1);

    // Disk 2 first, then disk 1 in a second run.
    let second = import(&env, "site-a", &[&d2]);
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    let st = status(&env, "site-a");
    assert_eq!(st["state"], "importing", "{st}");
    assert_eq!(st["disks_missing"], serde_json::json!([1]));
    let first = import(&env, "site-a", &[&d1]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert_eq!(status(&env, "site-a")["state"], "imported");

    let points = env.json(&["points", "--json"]);
    assert!(
        points
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "complete"),
        "{points}"
    );
    let seeded = points[0]["id"].as_str().unwrap();
    let restored_seed = env.path("restored-seed");
    assert_eq!(
        code(&env.run(&["restore", seeded, "--target", s(&restored_seed)])),
        0
    );
    assert_trees_equal(&original, &restored_seed);
    let restored_incr = env.path("restored-incr");
    assert_eq!(
        code(&env.run(&["restore", "latest", "--target", s(&restored_incr)])),
        0
    );
    assert_trees_equal(&src, &restored_incr);

    // Again: nothing to do, exit 0.
    let again = import(&env, "site-a", &[&d1, &d2]);
    assert_eq!(code(&again), 0);
    assert!(
        stdout(&again).contains("nothing to do"),
        "{}",
        stdout(&again)
    );
    assert_eq!(code(&env.run(&["verify", "--read-data"])), 0);
}

#[test]
fn bad_disks_are_refused_and_nothing_is_half_imported() {
    let env = Env::new();
    let src = seed_source(&env);
    let (d1, d2) = (env.path("disk1"), env.path("disk2"));
    assert_eq!(code(&prepare(&env, "a", &[&d1, &d2], "40M", &src)), 0);
    let pristine = env.path("disk1-copy");
    copy_tree(&d1, &pristine);

    // A disk from another vault.
    let other = Env::new();
    let foreign = import(&other, "a", &[&d1]);
    assert_eq!(code(&foreign), 13, "{}", stderr(&foreign));
    assert_one_line_error(&foreign, "belongs to vault");

    // A journal of another job.
    let src_b = env.path("src-b");
    write_file(src_b.join("x"), seeded_bytes(3, MIB));
    let e1 = env.path("disk-b");
    assert_eq!(code(&prepare(&env, "b", &[&e1], "100M", &src_b)), 0);
    let wrong_job = import(&env, "a", &[&e1, &d2]);
    assert_eq!(code(&wrong_job), 13);
    assert_one_line_error(&wrong_job, "seed job \"b\"");
    assert_eq!(
        status(&env, "a")["packs_imported"],
        0,
        "a refused disk imported something"
    );

    // A flipped byte: that pack is refused and named, the rest of the disks import.
    let victim = disk_packs(&d1)[0].clone();
    let mut bytes = fs::read(&victim).unwrap();
    bytes[1000] ^= 1;
    fs::write(&victim, bytes).unwrap();
    let flipped = import(&env, "a", &[&d1, &d2]);
    assert_eq!(code(&flipped), 3, "{}", stdout(&flipped));
    let name = victim.file_stem().unwrap().to_str().unwrap();
    assert!(stdout(&flipped).contains(name), "{}", stdout(&flipped));
    let st = status(&env, "a");
    assert_eq!(st["bad_packs"][0]["pack"], name, "{st}");
    assert_eq!(st["state"], "importing");
    assert!(
        !store_packs(&env)
            .iter()
            .any(|p| p.to_str().unwrap().contains(name)),
        "bad pack entered the store"
    );

    // The corrected copy of the disk completes the job.
    let fixed = import(&env, "a", &[&pristine]);
    assert_eq!(code(&fixed), 0, "{}", stdout(&fixed));
    let st = status(&env, "a");
    assert_eq!(st["state"], "imported", "{st}");
    assert_eq!(st["bad_packs"], serde_json::json!([]));

    // Nothing secret on the disks: no passphrase, no plaintext.
    for disk in [&d1, &d2] {
        let journal = fs::read_to_string(disk.join("synvault-journal.json")).unwrap();
        assert!(!journal.contains("correct horse"));
        for pack in disk_packs(disk) {
            let bytes = fs::read(pack).unwrap();
            let needle = &seeded_bytes(20, 13 * MIB)[..64];
            assert!(
                !bytes.windows(64).any(|w| w == needle),
                "plaintext on the disk"
            );
        }
    }
}

#[test]
fn prepare_refuses_too_small_disks_and_stops_cleanly_when_full() {
    let env = Env::new();
    let src = seed_source(&env);
    let tiny = prepare(&env, "t", &[&env.path("tiny")], "1M", &src);
    assert_eq!(code(&tiny), 14, "{}", stderr(&tiny));
    assert_one_line_error(&tiny, "too small");
    // Sizes in errors are sizes people read, not byte counts.
    assert!(
        stderr(&tiny).contains("hold 1.0 MiB in all"),
        "{}",
        stderr(&tiny)
    );

    let small = env.path("small");
    let full = prepare(&env, "f", &[&small], "16M", &src);
    assert_eq!(code(&full), 14, "{}", stderr(&full));
    assert_one_line_error(&full, "more disk room is needed");
    assert!(stderr(&full).contains("MiB more"), "{}", stderr(&full));
    assert_eq!(
        env.json(&["points", "--json"]).as_array().unwrap().len(),
        0,
        "no point may be committed"
    );
    assert_eq!(status(&env, "f")["state"], "incomplete");
    rebuild_gives_back_the_same(&env);
    for p in disk_packs(&small) {
        assert!(
            !p.to_string_lossy().ends_with(".tmp"),
            "partial pack left: {}",
            p.display()
        );
    }
}

#[test]
fn killed_import_resumes_without_duplicates() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..4 {
        write_file(src.join(format!("f{i}")), seeded_bytes(40 + i, 30 * MIB));
    }
    let disk = env.path("disk");
    assert_eq!(code(&prepare(&env, "k", &[&disk], "1G", &src)), 0);
    let mut child = env
        .cmd(&["seed", "import", "--job", "k", s(&disk)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while store_packs(&env).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    child.wait().unwrap();
    let resumed = import(&env, "k", &[&disk]);
    assert_eq!(code(&resumed), 0, "{}", stdout(&resumed));
    assert_eq!(status(&env, "k")["state"], "imported");
    let mut in_store: Vec<_> = store_packs(&env)
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    let mut on_disk: Vec<_> = disk_packs(&disk)
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    in_store.sort();
    on_disk.sort();
    assert_eq!(
        in_store, on_disk,
        "store holds exactly the job's packs, no temp or partial file"
    );
    assert_eq!(code(&env.run(&["verify", "--read-data"])), 0);
}

#[test]
fn repair_remakes_a_lost_pack_from_the_source() {
    let env = Env::new();
    let src = seed_source(&env);
    let (d1, d2) = (env.path("disk1"), env.path("disk2"));
    assert_eq!(code(&prepare(&env, "r", &[&d1, &d2], "40M", &src)), 0);
    let lost = disk_packs(&d2)[0].clone();
    fs::remove_file(&lost).unwrap();
    let partial = import(&env, "r", &[&d1, &d2]);
    assert_eq!(code(&partial), 3);
    assert!(stdout(&partial).contains("missing"), "{}", stdout(&partial));
    assert_eq!(status(&env, "r")["state"], "importing");

    let repair = env.run(&["seed", "repair", "--job", "r", s(&src)]);
    assert_eq!(code(&repair), 0, "{}{}", stdout(&repair), stderr(&repair));
    // It says what it re-made: the lost blocks, not "0 re-made".
    let said = stdout(&repair);
    let remade: u64 = said
        .split(" re-made")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(remade > 0, "{said}");
    assert!(said.contains(&format!("{remade} blocks lost")), "{said}");
    assert_eq!(status(&env, "r")["state"], "imported");
    let target = env.path("restored");
    assert_eq!(
        code(&env.run(&["restore", "latest", "--target", s(&target)])),
        0
    );
    assert_trees_equal(&src, &target);
    assert_eq!(code(&env.run(&["verify", "--read-data"])), 0);
    rebuild_gives_back_the_same(&env);
    assert_eq!(code(&env.run(&["verify", "--read-data"])), 0);
}

fn point_state(env: &Env, point: &str) -> String {
    let points = env.json(&["points", "--json"]);
    let found = points
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == point)
        .unwrap_or_else(|| panic!("no point {point} in {points}"));
    found["state"].as_str().unwrap().to_string()
}

/// A point either still waits (and restore refuses it), or is complete and restores exactly
/// its source: never zeros for a block that is not in the store. Returns true if complete.
fn complete_and_exact_or_waiting(env: &Env, point: &str, src: &Path, target: &str) -> bool {
    let state = point_state(env, point);
    let target = env.path(target);
    let out = env.run(&["restore", point, "--target", s(&target)]);
    if state == "awaiting_seed" {
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        return false;
    }
    assert_eq!(state, "complete");
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_trees_equal(src, &target);
    true
}

#[test]
fn jobs_sharing_data_in_transit_each_restore_exactly_whichever_lands_first() {
    let env = Env::new();
    let (src_a, src_b, src_c) = (env.path("src-a"), env.path("src-b"), env.path("src-c"));
    for src in [&src_a, &src_b] {
        generate_tree(&src.join("tree"), 7, &TreeSpec::small());
    }
    for src in [&src_a, &src_b, &src_c] {
        write_file(src.join("shared.bin"), seeded_bytes(70, 3 * MIB));
    }
    write_file(src_a.join("only-a.bin"), seeded_bytes(71, MIB));
    write_file(src_b.join("only-b.bin"), seeded_bytes(72, MIB));
    write_file(src_c.join("only-c.bin"), seeded_bytes(73, MIB));
    let (disk_a, disk_b) = (env.path("disk-a"), env.path("disk-b"));
    assert_eq!(code(&prepare(&env, "a", &[&disk_a], "100M", &src_a)), 0);
    let b = prepare(&env, "b", &[&disk_b], "100M", &src_b);
    assert_eq!(code(&b), 0, "{}", stderr(&b));

    // An online backup that shares data with both jobs in transit.
    let online = env.backup(&src_c);
    let online = online["point"].as_str().unwrap().to_string();
    assert!(
        complete_and_exact_or_waiting(&env, &online, &src_c, "restored-c"),
        "an online backup stores again what is only in transit"
    );

    // Only job b's disk lands.
    let imported = import(&env, "b", &[&disk_b]);
    assert_eq!(code(&imported), 0, "{}", stderr(&imported));
    let point_b = status(&env, "b")["point"].as_str().unwrap().to_string();
    let point_a = status(&env, "a")["point"].as_str().unwrap().to_string();
    // Job b wrote again what only job a's disks carried, so it does not wait for a.
    assert!(complete_and_exact_or_waiting(
        &env,
        &point_b,
        &src_b,
        "restored-b"
    ));
    assert_eq!(point_state(&env, &point_a), "awaiting_seed");
    complete_and_exact_or_waiting(&env, &online, &src_c, "restored-c-again");
    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 0, "{}", stdout(&verify));
    // The store alone knows as much, mid-way: one job landed, one in transit.
    rebuild_gives_back_the_same(&env);

    // Then job a's: everything is complete and exact.
    let imported = import(&env, "a", &[&disk_a]);
    assert_eq!(code(&imported), 0, "{}", stderr(&imported));
    for (point, src, target) in [
        (&point_a, &src_a, "final-a"),
        (&point_b, &src_b, "final-b"),
        (&online, &src_c, "final-c"),
    ] {
        assert!(complete_and_exact_or_waiting(&env, point, src, target));
    }
    let verify = env.run(&["verify", "--read-data"]);
    assert_eq!(code(&verify), 0, "{}", stdout(&verify));
}

fn prepare_onto(env: &Env, vault_env: &Env, job: &str, disk: &Path, extra: &[&str]) -> Output {
    let src = env.path("src-small");
    if !src.exists() {
        write_file(src.join("x.bin"), seeded_bytes(80, MIB));
    }
    let mut args = vec!["seed", "prepare", "--job", job, "--disk-size", "50M"];
    args.extend(extra);
    args.extend(["--disk", s(disk), s(&src)]);
    vault_env.run(&args)
}

#[test]
fn prepare_refuses_a_disk_holding_a_job_not_yet_imported() {
    let env = Env::new();
    let disk = env.path("disk");
    assert_eq!(code(&prepare_onto(&env, &env, "first", &disk, &[])), 0);

    let refused = prepare_onto(&env, &env, "second", &disk, &[]);
    assert_eq!(code(&refused), 13, "{}", stderr(&refused));
    assert_one_line_error(&refused, "\"first\"");
    let refused = prepare_onto(&env, &Env::new(), "elsewhere", &disk, &[]);
    assert_eq!(code(&refused), 13, "{}", stderr(&refused));
    assert_one_line_error(&refused, "\"first\"");

    // The refused prepares left the disk alone: the first job still imports from it.
    let imported = import(&env, "first", &[&disk]);
    assert_eq!(code(&imported), 0, "{}", stderr(&imported));
    assert_eq!(status(&env, "first")["state"], "imported");

    // An imported job's disk may be reused; an unimported one only with --force.
    assert_eq!(code(&prepare_onto(&env, &env, "third", &disk, &[])), 0);
    let refused = prepare_onto(&env, &env, "fourth", &disk, &[]);
    assert_eq!(code(&refused), 13, "{}", stderr(&refused));
    assert_one_line_error(&refused, "\"third\"");
    let forced = prepare_onto(&env, &env, "fourth", &disk, &["--force"]);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    let imported = import(&env, "fourth", &[&disk]);
    assert_eq!(code(&imported), 0, "{}", stderr(&imported));
    assert_eq!(status(&env, "fourth")["state"], "imported");
}

//! Restore stays inside its target: a symlink or hardlink already in the target is replaced,
//! never written through; crafted names and trees in the catalog are refused with one line;
//! the vault is never a target; a file with missing data is never left full of zeros. In each
//! case a sentinel tree outside the target is hashed and stat-ed before and after.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use rusqlite::Connection;
use synvault::tree_codec;
use synvault::Entry;

use super::common::{seeded_bytes, write_file};
use super::{assert_one_line_error, code, stderr, stdout, Env, MIB};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every path under a directory (not following symlinks) with its kind, mode, mtime, link
/// count and a hash of its content or link target.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let content = if meta.is_file() {
            blake3::hash(&fs::read(&path).unwrap()).to_hex().to_string()
        } else if meta.file_type().is_symlink() {
            fs::read_link(&path).unwrap().display().to_string()
        } else {
            String::new()
        };
        if meta.is_dir() {
            for child in fs::read_dir(&path).unwrap() {
                stack.push(child.unwrap().path());
            }
        }
        let state = format!(
            "mode {:o} mtime {}.{} nlink {} size {} {content}",
            meta.mode(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.nlink(),
            meta.len()
        );
        out.insert(path.strip_prefix(root).unwrap().to_path_buf(), state);
    }
    out
}

/// A tree outside every restore target that must never change.
struct Sentinel {
    root: PathBuf,
    before: BTreeMap<PathBuf, String>,
}

impl Sentinel {
    /// `outside/victim` (0640) in `outside/` (0750), with old mtimes.
    fn create(env: &Env) -> Sentinel {
        let root = env.path("outside");
        write_file(root.join("victim"), b"outside data, never to change");
        fs::set_permissions(root.join("victim"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o750)).unwrap();
        let old = fs::FileTimes::new().set_modified(std::time::UNIX_EPOCH);
        for p in [root.join("victim"), root.clone()] {
            fs::File::open(&p).unwrap().set_times(old).unwrap();
        }
        let before = snapshot(&root);
        Sentinel { root, before }
    }

    fn victim(&self) -> PathBuf {
        self.root.join("victim")
    }

    #[track_caller]
    fn assert_unchanged(&self, case: &str) {
        assert_eq!(
            snapshot(&self.root),
            self.before,
            "{case}: the sentinel changed"
        );
    }
}

#[track_caller]
fn assert_no_panic(out: &Output) {
    assert_ne!(code(out), 101, "{}", stderr(out));
    assert!(out.status.code().is_some(), "killed: {}", stderr(out));
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
}

#[test]
fn a_symlinked_directory_in_the_target_is_replaced_not_followed() {
    let env = Env::new();
    let sentinel = Sentinel::create(&env);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    std::os::unix::fs::symlink(&sentinel.root, src.join("a")).unwrap();
    env.backup(&src);
    let first = env.json(&["points", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    fs::remove_file(src.join("a")).unwrap();
    write_file(src.join("a/victim"), b"point 2");
    fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o700)).unwrap();
    env.backup(&src);

    let target = env.path("t");
    let out = env.run(&["restore", &first, "--target", s(&target)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(fs::symlink_metadata(target.join("a"))
        .unwrap()
        .file_type()
        .is_symlink());
    let out = env.run(&["restore", "latest", "--target", s(&target), "--overwrite"]);
    assert_no_panic(&out);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    sentinel.assert_unchanged("symlinked directory");
    let a = fs::symlink_metadata(target.join("a")).unwrap();
    assert!(a.is_dir());
    assert_eq!(a.mode() & 0o7777, 0o700);
    assert_eq!(fs::read(target.join("a/victim")).unwrap(), b"point 2");
}

#[test]
fn a_hardlinked_file_in_the_target_is_replaced_not_written_through() {
    let env = Env::new();
    let sentinel = Sentinel::create(&env);
    let src = env.path("src");
    write_file(src.join("f"), b"the point's content");
    env.backup(&src);
    let target = env.path("t");
    fs::create_dir_all(&target).unwrap();
    fs::hard_link(sentinel.victim(), target.join("f")).unwrap();

    let out = env.run(&["restore", "latest", "--target", s(&target), "--overwrite"]);
    assert_no_panic(&out);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(target.join("f")).unwrap(), b"the point's content");
    // Once the target's name is replaced, the outside file is alone again (nlink 1).
    sentinel.assert_unchanged("hardlinked file");
}

/// The catalog of `env`'s vault, to craft trees in.
fn catalog(env: &Env) -> Connection {
    Connection::open(env.vault().join("catalog.db")).unwrap()
}

fn latest_root_tree(db: &Connection) -> Vec<u8> {
    db.query_row(
        "SELECT root_tree FROM points ORDER BY started_ns DESC LIMIT 1",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn tree_blob(db: &Connection, id: &[u8]) -> Vec<u8> {
    db.query_row("SELECT entries FROM trees WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .unwrap()
}

fn set_tree(db: &Connection, id: &[u8], entries: &[Entry]) {
    let blob = tree_codec::encode(entries);
    let n = db
        .execute(
            "UPDATE trees SET entries = ?1, entry_count = ?2 WHERE id = ?3",
            rusqlite::params![blob, entries.len() as i64, id],
        )
        .unwrap();
    assert_eq!(n, 1);
}

fn named(entry: &Entry, name: &[u8]) -> Entry {
    Entry {
        name: name.to_vec(),
        ..entry.clone()
    }
}

/// The names directly in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn crafted_names_are_refused_and_reported_by_verify() {
    let env = Env::new();
    let sentinel = Sentinel::create(&env);
    let src = env.path("src");
    write_file(src.join("f"), b"file data");
    write_file(src.join("d/g"), b"in d");
    env.backup(&src);
    let db = catalog(&env);
    let root = latest_root_tree(&db);
    let original = tree_blob(&db, &root);
    let entries = tree_codec::decode(&original).unwrap();
    let file = entries.iter().find(|e| e.name == b"f").unwrap().clone();
    let dir = entries.iter().find(|e| e.name == b"d").unwrap().clone();
    let victim = sentinel.victim().into_os_string().into_encoded_bytes();
    let linked = Entry {
        nlink: 2,
        inode: 4242,
        ..file.clone()
    };
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        ("../x", vec![named(&file, b"../outside/victim")]),
        ("/abs", vec![named(&file, &victim)]),
        ("a/b", vec![named(&file, b"d/g")]),
        (".", vec![named(&dir, b".")]),
        ("..", vec![named(&dir, b"..")]),
        ("empty", vec![named(&file, b"")]),
        (
            "hardlink member",
            vec![named(&linked, b"h"), named(&linked, &victim)],
        ),
    ];
    let around = names(env.dir.path());
    for (case, extra) in cases {
        let mut crafted = entries.clone();
        crafted.extend(extra);
        set_tree(&db, &root, &crafted);
        let target = env.path("t");
        let out = env.run(&["restore", "latest", "--target", s(&target), "--overwrite"]);
        assert_no_panic(&out);
        assert_one_line_error(&out, "is not a plain file name");
        assert_eq!(code(&out), 1, "{case}");
        sentinel.assert_unchanged(case);
        let now = names(env.dir.path());
        assert!(
            now.iter().all(|n| around.contains(n) || n == "t"),
            "{case}: {now:?}"
        );
        let ls = env.run(&["ls", "-r", "latest"]);
        assert_no_panic(&ls);
        assert_one_line_error(&ls, "is not a plain file name");
        let verify = env.run(&["verify"]);
        assert_eq!(code(&verify), 3, "{case}: {}", stdout(&verify));
        assert!(
            stdout(&verify).contains("is not a plain file name"),
            "{case}: {}",
            stdout(&verify)
        );
        let _ = fs::remove_dir_all(&target);
    }
    db.execute(
        "UPDATE trees SET entries = ?1 WHERE id = ?2",
        rusqlite::params![original, root],
    )
    .unwrap();
    assert_eq!(code(&env.run(&["verify"])), 0);
}

#[test]
fn a_tree_that_contains_itself_is_an_error_not_a_stack_overflow() {
    let env = Env::new();
    let sentinel = Sentinel::create(&env);
    let src = env.path("src");
    write_file(src.join("d/g"), b"in d");
    env.backup(&src);
    let db = catalog(&env);
    let root = tree_codec::decode(&tree_blob(&db, &latest_root_tree(&db))).unwrap();
    let d = root.iter().find(|e| e.name == b"d").unwrap().clone();
    let d_id = d.subtree.unwrap().0;
    let mut looped = tree_codec::decode(&tree_blob(&db, &d_id)).unwrap();
    looped.push(named(&d, b"loop"));
    set_tree(&db, &d_id, &looped);

    let ls = env.run(&["ls", "-r", "latest"]);
    assert_no_panic(&ls);
    assert_one_line_error(&ls, "is invalid");
    let target = env.path("t");
    let out = env.run(&["restore", "latest", "--target", s(&target)]);
    assert_no_panic(&out);
    assert_one_line_error(&out, "is invalid");
    assert_eq!(code(&out), 1);
    sentinel.assert_unchanged("cycle");
    let verify = env.run(&["verify"]);
    assert_eq!(code(&verify), 3, "{}", stdout(&verify));
    let hex_id = hex::encode(d_id);
    assert!(
        stdout(&verify).contains(&format!("damaged: tree {hex_id} at /d")),
        "{}",
        stdout(&verify)
    );
}

/// The vault's files that a refused restore must leave alone. The catalog is compared through
/// `points` instead: every command that opens it writes to it (WAL checkpoint, migration
/// check), and SQLite's side files and the lock come and go.
fn vault_snapshot(env: &Env) -> BTreeMap<PathBuf, String> {
    let mut snap = snapshot(&env.vault());
    snap.retain(|p, _| {
        let name = p.to_string_lossy();
        // The lock, the catalog and reader leases change with every command that opens the
        // vault; the store and keys must not.
        !(name == "lock"
            || name.starts_with("catalog.db")
            || name.starts_with("readers")
            || name.is_empty())
    });
    snap
}

#[test]
fn the_vault_and_the_root_are_refused_as_targets() {
    let env = Env::new();
    let sentinel = Sentinel::create(&env);
    let src = env.path("src");
    write_file(src.join("vault/catalog.db"), b"an old catalog");
    write_file(src.join("vault/packs/x"), b"not a pack");
    write_file(src.join("other.txt"), b"other");
    env.backup(&src);
    let points = env.json(&["points", "--json"]);
    let before = vault_snapshot(&env);
    let vault = env.vault();
    let alias = env.path("alias");
    std::os::unix::fs::symlink(&vault, &alias).unwrap();
    for target in [
        vault.clone(),
        vault.join("packs"),
        vault.join("new/deeper"),
        alias.join("."),
    ] {
        let out = env.run(&["restore", "latest", "--target", s(&target), "--overwrite"]);
        assert_no_panic(&out);
        assert_one_line_error(&out, "is inside the vault");
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert_eq!(vault_snapshot(&env), before, "{}", target.display());
        sentinel.assert_unchanged("vault");
    }
    assert!(!vault.join("new").exists());
    assert_eq!(env.json(&["points", "--json"]), points);

    // The vault beneath the target: restored around, left out with a warning.
    let out = env.run(&[
        "restore",
        "latest",
        "--target",
        s(env.dir.path()),
        "--overwrite",
    ]);
    assert_no_panic(&out);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("left out"), "{}", stderr(&out));
    assert_eq!(fs::read(env.path("other.txt")).unwrap(), b"other");
    assert_eq!(vault_snapshot(&env), before);
    assert_eq!(env.json(&["points", "--json"]), points);
    assert_eq!(code(&env.run(&["verify"])), 0);

    for root in ["/", "/tmp/.."] {
        let out = env.run(&["restore", "latest", "--target", root]);
        assert_no_panic(&out);
        assert_one_line_error(&out, "--target /");
        assert_eq!(code(&out), 2, "{}", stderr(&out));
    }
}

#[test]
fn a_file_whose_pack_is_missing_is_not_left_with_zeros() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("victim.bin"), seeded_bytes(6, 3 * MIB));
    env.backup(&src);
    let victim_pack = env.pack_files()[0].clone();
    write_file(src.join("other.bin"), seeded_bytes(7, 2 * MIB));
    env.backup(&src);
    fs::remove_file(&victim_pack).unwrap();

    let target = env.path("t");
    let out = env.run(&["restore", "latest", "--target", s(&target)]);
    assert_no_panic(&out);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("victim.bin"), "{}", stderr(&out));
    assert!(
        !target.join("victim.bin").exists(),
        "a file with missing data was left in place"
    );
    assert_eq!(names(&target), ["other.bin"], "no temporary is left behind");
    assert_eq!(
        fs::read(target.join("other.bin")).unwrap(),
        seeded_bytes(7, 2 * MIB)
    );
}

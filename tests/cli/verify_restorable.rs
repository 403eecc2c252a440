//! `verify` proves every complete point restorable: a block that a complete point uses but
//! that is not in a stored pack makes it exit 3, naming the point and the file.

use std::path::Path;

use super::common::{seeded_bytes, write_file};
use super::{code, stderr, stdout, Env, MIB};

/// The vault's catalog, opened with foreign keys off so a test can break it.
fn catalog(env: &Env) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(env.vault().join("catalog.db")).unwrap();
    conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
    conn
}

/// Two points: the first holds `one.bin`, the second adds `two.bin` in a pack of its own.
fn two_points(env: &Env) -> (String, String) {
    let src = env.path("src");
    write_file(src.join("a/one.bin"), seeded_bytes(1, 2 * MIB));
    let first = env.backup(&src);
    write_file(src.join("b/two.bin"), seeded_bytes(2, 2 * MIB));
    let second = env.backup(&src);
    let verify = env.run(&["verify"]);
    assert_eq!(code(&verify), 0, "{}", stdout(&verify));
    let id = |v: &serde_json::Value| v["point"].as_str().unwrap().to_string();
    (id(&first), id(&second))
}

/// The pack rowid that holds the blocks of the second point only (the newest pack).
fn newest_pack(env: &Env) -> i64 {
    catalog(env)
        .query_row("SELECT MAX(id) FROM packs WHERE kind = 'data'", [], |r| {
            r.get(0)
        })
        .unwrap()
}

fn assert_names(out: &std::process::Output, second: &str, first: &str) {
    let text = stdout(out);
    assert_eq!(code(out), 3, "{text}{}", stderr(out));
    let line = text
        .lines()
        .find(|l| l.contains("not restorable") && l.contains(&second[..8]))
        .unwrap_or_else(|| panic!("no not-restorable line for {second}: {text}"));
    assert!(
        line.contains(&Path::new("b").join("two.bin").display().to_string()),
        "{text}"
    );
    assert!(!text.contains("one.bin"), "{text}");
    assert!(!text.contains(&first[..8]), "{text}");
    assert!(
        !text.contains("prune"),
        "names a command that does not exist: {text}"
    );
}

#[test]
fn verify_fails_when_a_complete_point_uses_a_pack_in_transit() {
    let env = Env::new();
    let (first, second) = two_points(&env);
    let pack = newest_pack(&env);
    catalog(&env)
        .execute(
            "UPDATE packs SET state = 'in_transit' WHERE id = ?1",
            [pack],
        )
        .unwrap();
    assert_names(&env.run(&["verify"]), &second, &first);
    let json = env.run(&["verify", "--json"]);
    assert_eq!(code(&json), 3);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        report["not_restorable"][0]["point"],
        second.as_str(),
        "{report}"
    );
}

#[test]
fn verify_fails_when_a_block_points_at_no_pack() {
    let env = Env::new();
    let (first, second) = two_points(&env);
    let pack = newest_pack(&env);
    catalog(&env)
        .execute("UPDATE blocks SET pack = 9999 WHERE pack = ?1", [pack])
        .unwrap();
    assert_names(&env.run(&["verify"]), &second, &first);
}

#[test]
fn unreferenced_packs_are_not_blamed_on_a_missing_command() {
    let env = Env::new();
    two_points(&env);
    let stray = env.pack_files()[0].with_file_name(format!("{}.pack", "ab".repeat(32)));
    std::fs::write(&stray, b"left by an interrupted backup").unwrap();
    let out = env.run(&["verify"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.contains("unreferenced"), "{text}");
    assert!(!text.contains("prune"), "{text}");
}

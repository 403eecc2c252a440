//! Choosing points in a vault of several sources: `latest` per source, the filters, tags,
//! absolute source paths, the layout of several sources and `restore --to-original`.

use std::fs;
use std::path::Path;

use serde_json::Value;

use super::common::write_file;
use super::{assert_one_line_error, code, stderr, stdout, Env};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ids(points: &Value) -> Vec<String> {
    points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap()[..8].to_string())
        .collect()
}

/// A vault with two points of `docs`, then one of `lib`: the newest point is `lib`'s.
fn two_sources() -> (Env, String, String) {
    let env = Env::new();
    let docs = env.path("docs");
    let lib = env.path("lib");
    write_file(docs.join("a.txt"), b"first");
    let first = env.backup(&docs)["point"].as_str().unwrap()[..8].to_string();
    write_file(docs.join("a.txt"), b"second");
    let out = env.run(&["backup", s(&docs), "--tag", "daily,keep"]);
    assert!(out.status.success(), "{}", stderr(&out));
    write_file(lib.join("libx.so"), b"lib");
    let out = env.run(&["backup", s(&lib), "--tag", "weekly"]);
    assert!(out.status.success(), "{}", stderr(&out));
    (env, s(&docs).to_string(), first)
}

#[test]
fn latest_in_a_vault_of_several_sources_asks_for_one_and_counts_within_it() {
    let (env, docs, first) = two_sources();
    let bare = env.run(&["cat", "latest:a.txt"]);
    assert_eq!(code(&bare), 2, "{}", stderr(&bare));
    assert_one_line_error(&bare, "choose one with --source");
    assert!(stderr(&bare).contains(&docs), "{}", stderr(&bare));

    let cat = |query: &str| {
        let out = env.run(&["cat", &format!("{query}:a.txt"), "--source", &docs]);
        assert!(out.status.success(), "{query}: {}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(cat("latest"), "second");
    assert_eq!(cat("latest~1"), "first");
    // A relative --source names the same path.
    let out = env
        .cmd(&["cat", "latest~1:a.txt", "--source", "docs"])
        .current_dir(env.path(""))
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "first", "{}", stderr(&out));
    // An id is found among the points the filters leave only.
    let out = env.run(&["ls", &first, "--tag", "weekly"]);
    assert_eq!(code(&out), 1);
    assert_one_line_error(&out, "no recovery point matches");
    // The same filters choose for ls, restore, stats and tag.
    let out = env.run(&["ls", "latest", "--tag", "weekly"]);
    assert!(stdout(&out).contains("libx.so"), "{}", stderr(&out));
    let target = env.path("restored");
    let out = env.run(&[
        "restore",
        "latest~1",
        "--source",
        &docs,
        "--target",
        s(&target),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"first");
    let stats = env.json(&["stats", "--json", "--host", "no-such-host"]);
    assert_eq!(stats["per_point"].as_array().unwrap().len(), 0, "{stats}");
    assert_eq!(stats["points"], 3);
}

#[test]
fn points_show_and_filter_by_source_host_tag_and_time() {
    let (env, docs, first) = two_sources();
    let all = env.json(&["points", "--json"]);
    assert_eq!(all.as_array().unwrap().len(), 3);
    let p = &all[0];
    assert_eq!(p["sources"], serde_json::json!([docs]), "{p}");
    assert!(p["host"].as_str().is_some_and(|h| !h.is_empty()), "{p}");
    assert!(p["end_time"].as_str().is_some(), "{p}");
    assert_eq!(all[1]["tags"], serde_json::json!(["daily", "keep"]));

    let pick = |args: &[&str]| {
        let mut full = vec!["points", "--json"];
        full.extend_from_slice(args);
        ids(&env.json(&full))
    };
    let by_source = pick(&["--source", &docs]);
    assert_eq!(by_source.len(), 2);
    assert_eq!(by_source[0], first);
    assert_eq!(pick(&["--tag", "daily"]).len(), 1);
    assert_eq!(
        pick(&["--tag", "daily,weekly"]).len(),
        0,
        "a group needs both"
    );
    assert_eq!(pick(&["--tag", "daily", "--tag", "weekly"]).len(), 2);
    assert_eq!(pick(&["--host", "no-such-host"]).len(), 0);
    assert_eq!(pick(&["--until", "2000-01-01"]).len(), 0);
    assert_eq!(pick(&["--since", "2000-01-01"]).len(), 3);
    let bad = env.run(&["points", "--since", "yesterday"]);
    assert_eq!(code(&bad), 2);

    // The table: host, tags and how long ago beside UTC.
    let table = stdout(&env.run(&["points"]));
    let header = table.lines().next().unwrap();
    for column in ["time (UTC)", "age", "host", "tags", "source"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(
        table.contains("just now") && table.contains("daily,keep"),
        "{table}"
    );
}

#[test]
fn tags_are_added_and_removed_and_survive_a_catalog_rebuild() {
    let (env, docs, _) = two_sources();
    let out = env.run(&[
        "tag",
        "latest",
        "--source",
        &docs,
        "--add",
        "before-upgrade",
        "--remove",
        "daily",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("keep, before-upgrade"),
        "{}",
        stdout(&out)
    );
    let bad = env.run(&["tag", "latest", "--source", &docs, "--add", "a,b"]);
    assert_eq!(code(&bad), 2);
    assert_one_line_error(&bad, "not a tag");

    fs::remove_file(env.vault().join("catalog.db")).unwrap();
    let out = env.run(&["catalog", "rebuild"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tagged = env.json(&["points", "--json", "--tag", "before-upgrade"]);
    assert_eq!(tagged.as_array().unwrap().len(), 1, "{tagged}");
    assert_eq!(
        tagged[0]["tags"],
        serde_json::json!(["keep", "before-upgrade"])
    );
    assert_eq!(tagged[0]["sources"], serde_json::json!([docs]));
}

#[test]
fn sources_of_one_name_are_kept_at_their_paths_and_go_back_to_them() {
    let env = Env::new();
    let etc = env.path("etc");
    let other = env.path("x/etc");
    write_file(etc.join("hosts"), b"first hosts");
    write_file(other.join("hosts"), b"second hosts");
    write_file(env.path("x/not-a-source"), b"left out");
    let out = env.run(&["backup", s(&etc), s(&other), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Below the directory the sources share, each at its path; only what leads to them.
    let listing = stdout(&env.run(&["ls", "-r", "latest"]));
    assert!(
        listing.contains("/etc/hosts") && listing.contains("/x/etc/hosts"),
        "{listing}"
    );
    assert!(!listing.contains("not-a-source"), "{listing}");
    let point = &env.json(&["points", "--json"])[0];
    assert_eq!(point["sources"], serde_json::json!([s(&etc), s(&other)]));

    // Overlapping sources are refused.
    let out = env.run(&["backup", s(&env.path("x")), s(&other)]);
    assert_eq!(code(&out), 2);
    assert_one_line_error(&out, "is inside");

    // Back to where they came from: refused while they exist, then over them.
    fs::write(etc.join("hosts"), b"changed").unwrap();
    fs::remove_file(other.join("hosts")).unwrap();
    let refused = env.run(&["restore", "latest", "--to-original"]);
    assert_eq!(code(&refused), 1);
    assert_one_line_error(&refused, "exists: add --overwrite");
    let out = env.run(&["restore", "latest", "--to-original", "--overwrite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(etc.join("hosts")).unwrap(), b"first hosts");
    assert_eq!(fs::read(other.join("hosts")).unwrap(), b"second hosts");
    assert_eq!(fs::read(env.path("x/not-a-source")).unwrap(), b"left out");

    // One file of one source goes back into its directory.
    fs::remove_file(other.join("hosts")).unwrap();
    let out = env.run(&["restore", "latest:x/etc/hosts", "--to-original"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(other.join("hosts")).unwrap(), b"second hosts");
    let both = env.run(&["restore", "latest", "--to-original", "--target", "/tmp/x"]);
    assert_eq!(code(&both), 2);
}

#[test]
fn a_point_of_one_directory_goes_back_to_that_directory() {
    let env = Env::new();
    let docs = env.path("docs");
    write_file(docs.join("sub/a.txt"), b"kept");
    env.backup(&docs);
    fs::remove_dir_all(&docs).unwrap();
    let out = env.run(&["restore", "latest", "--to-original"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(docs.join("sub/a.txt")).unwrap(), b"kept");
    // A directory inside it goes back to its place.
    fs::remove_dir_all(docs.join("sub")).unwrap();
    let out = env.run(&["restore", "latest:sub", "--to-original"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(docs.join("sub/a.txt")).unwrap(), b"kept");
}

#[test]
fn an_incremental_builds_only_on_its_own_hosts_points() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a.txt"), b"a");
    let backup = |host: &str| env.json(&["backup", "--json", "--host", host, s(&src)]);
    let first = backup("one");
    let other = backup("two");
    assert_eq!(other["parent"], Value::Null, "{other}");
    let again = backup("one");
    assert_eq!(again["parent"], first["point"], "{again}");
    // latest with --host picks within that host's points.
    let out = env.run(&["cat", "latest:a.txt", "--host", "two"]);
    assert_eq!(stdout(&out), "a", "{}", stderr(&out));
}

#[test]
fn diff_names_each_change_between_two_points() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a.txt"), b"one");
    write_file(src.join("b.txt"), b"gone soon");
    write_file(src.join("d/x.txt"), b"x");
    write_file(src.join("e"), b"a file, then a directory");
    write_file(src.join("same/s.txt"), b"never changes");
    env.backup(&src);
    write_file(src.join("a.txt"), b"two");
    fs::remove_file(src.join("b.txt")).unwrap();
    write_file(src.join("c.txt"), b"new");
    fs::set_permissions(src.join("d/x.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(src.join("e")).unwrap();
    write_file(src.join("e/inside.txt"), b"in");
    env.backup(&src);

    let out = env.run(&["diff", "latest~1", "latest"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "M    /a.txt",
        "-    /b.txt",
        "+    /c.txt",
        "U    /d/x.txt",
        "T    /e/",
        "+    /e/inside.txt",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing: {text}");
    }
    assert!(!text.contains("same"), "{text}");
    // What the new directory holds is added with it.
    assert!(text.contains("2 added, 1 removed, 1 modified"), "{text}");

    let out = env.run(&["diff", "latest~1", "latest", "d", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["path"], "d/x.txt", "{lines:?}");
    assert_eq!(lines[0]["change"], "metadata");
    assert_eq!(lines.last().unwrap()["totals"]["metadata"], 1);
}

#[test]
fn find_lists_each_path_once_with_the_points_it_appears_in() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("docs/report.pdf"), b"report");
    write_file(src.join("notes.txt"), b"n");
    env.backup(&src);
    write_file(src.join("draft.pdf"), b"draft");
    env.backup(&src);
    fs::remove_file(src.join("draft.pdf")).unwrap();
    env.backup(&src);

    let out = env.run(&["find", "*.pdf"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("/docs/report.pdf  in 3 of 3 points"),
        "{text}"
    );
    assert!(text.contains("/draft.pdf  in 1 of 3 points"), "{text}");
    assert!(text.contains("2 paths"), "{text}");

    let found = env.json(&[
        "find",
        "--path",
        "docs/*",
        "--newer",
        "2000-01-01",
        "--json",
    ]);
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["path"], "/docs/report.pdf");
    assert_eq!(found[0]["points"], 3);
    let one = env.json(&["find", "*.pdf", "--point", "latest", "--json"]);
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");
    let bad = env.run(&["find", "a["]);
    assert_eq!(code(&bad), 2);
}

//! Point-in-time browsing against the truth: on a generated history of 20 points
//! (`common::history`: adds, deletes, content and metadata-only edits, type changes,
//! renames, hardlinks), `diff`, `find` and `log` say what the test works out itself by
//! walking restored copies of the points.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::common::history::{self, History, Tree};
use super::{stderr, stdout, Env};

/// Runs a command that must succeed and parses each line of its output as JSON.
fn json_lines(env: &Env, args: &[&str]) -> Vec<Value> {
    let out = env.run(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn text(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_string()
}

fn point_index(h: &History, v: &Value, key: &str) -> usize {
    h.points.iter().position(|id| v[key] == *id).unwrap()
}

#[test]
fn diff_find_and_log_agree_with_restored_copies_of_a_generated_history() {
    let env = Env::new();
    let h = history::generate(&env);
    assert_eq!(h.points.len(), 20);
    check_diffs(&env, &h);
    check_finds(&env, &h);
    check_logs(&env, &h);
}

/// Every consecutive pair, two distant ones and one backwards; and the history holds every
/// kind of change, hardlinks and symlinks, or it proves little.
fn check_diffs(env: &Env, h: &History) {
    let last = h.points.len() - 1;
    let pairs = (1..=last)
        .map(|i| (i - 1, i))
        .chain([(0, last), (4, 15), (last, 0)]);
    let mut seen_changes = BTreeSet::new();
    for (a, b) in pairs {
        let mut lines = json_lines(env, &["diff", "--json", &h.points[a], &h.points[b]]);
        let totals = lines.pop().unwrap()["totals"].clone();
        let got: BTreeSet<(String, String, String)> = lines
            .iter()
            .map(|v| (text(v, "path"), text(v, "change"), text(v, "kind")))
            .collect();
        assert_eq!(got.len(), lines.len(), "a path twice in diff {a} {b}");
        let want = history::diff(&h.trees[a], &h.trees[b]);
        let want_owned: BTreeSet<(String, String, String)> = want
            .iter()
            .map(|(p, c, k)| (p.clone(), c.to_string(), k.to_string()))
            .collect();
        assert_eq!(got, want_owned, "diff of points {a} and {b}");
        assert_eq!(
            totals,
            expected_totals(&h.trees[a], &h.trees[b], &want),
            "totals of points {a} and {b}"
        );
        seen_changes.extend(want.iter().map(|(_, c, _)| *c));
    }
    assert_eq!(
        seen_changes,
        BTreeSet::from(["added", "removed", "modified", "metadata", "type"])
    );
    let all = || h.trees.iter().flat_map(|t| t.values());
    assert!(
        all().any(|n| n.kind == "file" && n.nlink > 1),
        "no hardlink"
    );
    assert!(all().any(|n| n.kind == "symlink"), "no symlink");
    assert!(all().any(|n| !n.xattrs.is_empty()), "no xattr");
}

/// The totals line `diff --json` should end with: counts of each change, and the bytes of
/// files added and removed (both sides of a content change, neither of a metadata one).
fn expected_totals(
    before: &Tree,
    after: &Tree,
    changes: &BTreeSet<(String, &'static str, &'static str)>,
) -> Value {
    let count = |c: &str| changes.iter().filter(|(_, change, _)| *change == c).count();
    let file_bytes = |tree: &Tree, path: &str| {
        tree.get(path)
            .filter(|n| n.kind == "file")
            .map_or(0, |n| n.size)
    };
    let (mut added, mut removed) = (0, 0);
    for (path, _, _) in changes.iter().filter(|(_, c, _)| *c != "metadata") {
        added += file_bytes(after, path);
        removed += file_bytes(before, path);
    }
    serde_json::json!({
        "added": count("added"),
        "removed": count("removed"),
        "modified": count("modified"),
        "metadata": count("metadata"),
        "type_changed": count("type"),
        "bytes_added": added,
        "bytes_removed": removed,
    })
}

/// A pattern, whether it is on the whole path, and what it means, said plainly.
type Query = (&'static str, bool, fn(&str) -> bool);

const QUERIES: [Query; 5] = [
    ("*.txt", false, |path| name(path).ends_with(".txt")),
    ("g?.bin", false, |path| {
        let n = name(path);
        n.len() == 6 && n.starts_with('g') && n.ends_with(".bin")
    }),
    ("inside", false, |path| name(path) == "inside"),
    ("tracked", false, |path| name(path) == "tracked"),
    ("a/**/*.bin", true, |path| {
        path.starts_with("/a/") && name(path).ends_with(".bin")
    }),
];

fn name(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

/// One path `find` should list: path, kind, size in the newest point holding it, points
/// holding it, first and last of them.
type Span = (String, String, u64, u64, usize, usize);

fn check_finds(env: &Env, h: &History) {
    for (pattern, whole_path, matches) in QUERIES {
        let mut want: BTreeMap<(String, &str), Span> = BTreeMap::new();
        for (i, tree) in h.trees.iter().enumerate() {
            for (path, node) in tree.iter().filter(|(path, _)| matches(path)) {
                let size = if node.kind == "file" { node.size } else { 0 };
                let span = want
                    .entry((path.clone(), node.kind))
                    .or_insert_with(|| (path.clone(), node.kind.to_string(), 0, 0, i, i));
                (span.2, span.3, span.5) = (size, span.3 + 1, i);
            }
        }
        let mut args = vec!["find", "--json", pattern];
        if whole_path {
            args.push("--path");
        }
        let out = env.run(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let found: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let got: Vec<Span> = found
            .iter()
            .map(|f| {
                (
                    text(f, "path"),
                    text(f, "kind"),
                    f["size"].as_u64().unwrap(),
                    f["points"].as_u64().unwrap(),
                    point_index(h, f, "first_point"),
                    point_index(h, f, "last_point"),
                )
            })
            .collect();
        assert!(!got.is_empty(), "{pattern} matches nothing");
        assert_eq!(
            got,
            want.into_values().collect::<Vec<_>>(),
            "find {pattern}"
        );
    }
}

/// One version as `log` should list it: first and last point, change, kind, size, mode, mtime.
type Logged = (usize, usize, String, String, u64, u32, i64);

/// Every path any point holds in more than one version, and one in four of the others (each
/// `log` opens the vault, which costs a key derivation).
fn check_logs(env: &Env, h: &History) {
    let paths: BTreeSet<&String> = h.trees.iter().flat_map(|t| t.keys()).collect();
    let (mut many, mut single) = (0, 0);
    for path in paths {
        let versions = history::versions(&h.trees, path);
        if versions.len() == 1 {
            single += 1;
            if single % 4 != 1 {
                continue;
            }
        }
        let want: Vec<Logged> = versions
            .into_iter()
            .map(|(first, last, change)| {
                let node = &h.trees[first][path];
                let size = if node.kind == "dir" { 0 } else { node.size };
                let kind = node.kind.to_string();
                let (mode, mtime) = (node.mode & 0o7777, node.mtime_ns);
                (first, last, change.to_string(), kind, size, mode, mtime)
            })
            .collect();
        many += usize::from(want.len() > 2);
        let absolute = format!("{}{path}", h.src.display());
        let got: Vec<Logged> = json_lines(env, &["log", "--json", &absolute])
            .iter()
            .map(|v| {
                let kind = text(v, "kind");
                let size = if kind == "dir" {
                    0
                } else {
                    v["size"].as_u64().unwrap()
                };
                (
                    point_index(h, v, "first_point"),
                    point_index(h, v, "last_point"),
                    text(v, "change"),
                    kind,
                    size,
                    v["mode"].as_u64().unwrap() as u32 & 0o7777,
                    v["mtime_ns"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "log {path}");
    }
    assert!(many >= 5, "only {many} paths with more than two versions");
    assert!(single >= 5, "only {single} paths with one version");
}

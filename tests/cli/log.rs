//! `synvault log`: a generated history of one path (content edits, metadata-only edits,
//! deletes and re-adds, file ↔ directory ↔ symlink) checked against the versions the test
//! works out itself from what it saw on disk before each backup; and the path rules.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

use super::common::history::{apply, mtime_ns, STEPS};
use super::common::write_file;
use super::{assert_one_line_error, code, stderr, stdout, Env};

/// What the tracked path was when a backup was taken, as the test saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    File {
        bytes: Vec<u8>,
        mode: u32,
        mtime_ns: i64,
    },
    Dir {
        /// Each file inside: name, bytes, mode, mtime.
        children: Vec<(String, Vec<u8>, u32, i64)>,
        mode: u32,
        mtime_ns: i64,
    },
    Symlink {
        target: String,
        mtime_ns: i64,
    },
}

fn seen(path: &Path) -> Option<Seen> {
    let meta = fs::symlink_metadata(path).ok()?;
    let mode = meta.mode() & 0o7777;
    Some(if meta.is_symlink() {
        Seen::Symlink {
            target: fs::read_link(path).unwrap().to_str().unwrap().into(),
            mtime_ns: mtime_ns(&meta),
        }
    } else if meta.is_dir() {
        let mut children: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                let bytes = fs::read(e.path()).unwrap();
                let name = e.file_name().into_string().unwrap();
                (name, bytes, m.mode() & 0o7777, mtime_ns(&m))
            })
            .collect();
        children.sort();
        Seen::Dir {
            children,
            mode,
            mtime_ns: mtime_ns(&meta),
        }
    } else {
        Seen::File {
            bytes: fs::read(path).unwrap(),
            mode,
            mtime_ns: mtime_ns(&meta),
        }
    })
}

/// How `now` differs from `was` as `log` names it ("added" when the point before lacked it).
fn change(was: Option<&Seen>, now: &Seen) -> &'static str {
    let Some(was) = was else { return "added" };
    let (content_differs, meta_differs) = match (was, now) {
        (
            Seen::File {
                bytes: a,
                mode: ma,
                mtime_ns: ta,
            },
            Seen::File {
                bytes: b,
                mode: mb,
                mtime_ns: tb,
            },
        ) => (a != b, (ma, ta) != (mb, tb)),
        (
            Seen::Dir {
                children: a,
                mode: ma,
                mtime_ns: ta,
            },
            Seen::Dir {
                children: b,
                mode: mb,
                mtime_ns: tb,
            },
        ) => (a != b, (ma, ta) != (mb, tb)),
        (
            Seen::Symlink {
                target: a,
                mtime_ns: ta,
            },
            Seen::Symlink {
                target: b,
                mtime_ns: tb,
            },
        ) => (a != b, ta != tb),
        _ => return "type",
    };
    match (content_differs, meta_differs) {
        (true, _) => "modified",
        (false, true) => "metadata",
        (false, false) => unreachable!("the same version"),
    }
}

/// One version as the test expects it: first and last point index, change, kind, size.
type Expected = (usize, usize, &'static str, &'static str, u64);

/// The versions, newest first, of a history of what the path was in each point.
fn expected_versions(history: &[Option<Seen>]) -> Vec<Expected> {
    let mut out: Vec<Expected> = Vec::new();
    for (i, now) in history.iter().enumerate() {
        let Some(now) = now else { continue };
        let before = i.checked_sub(1).and_then(|j| history[j].as_ref());
        if before == Some(now) {
            out.last_mut().unwrap().1 = i;
            continue;
        }
        let (kind, size) = match now {
            Seen::File { bytes, .. } => ("file", bytes.len() as u64),
            Seen::Dir { .. } => ("dir", 0),
            Seen::Symlink { target, .. } => ("symlink", target.len() as u64),
        };
        out.push((i, i, change(before, now), kind, size));
    }
    out.reverse();
    out
}

#[test]
fn log_of_a_generated_history_agrees_with_what_was_written() {
    let env = Env::new();
    let src = env.path("src");
    let tracked = src.join("docs").join("tracked");
    let mut rng = StdRng::seed_from_u64(14);
    write_file(&tracked, b"the first version");
    let mut history = Vec::new();
    let mut ids = Vec::new();
    let mut last_file = None;
    for i in 0..=STEPS.len() {
        if i > 0 {
            apply(STEPS[i - 1], &tracked, &mut rng, &mut last_file);
        }
        // Something else changes in every point, so no two roots are the same tree.
        write_file(src.join("noise"), format!("point {i}"));
        history.push(seen(&tracked));
        ids.push(env.backup(&src)["point"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 20);
    let want = expected_versions(&history);
    let out = env.run(&["log", "--json", tracked.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let index = |v: &Value, key: &str| ids.iter().position(|id| v[key] == *id).unwrap();
    let got_versions: Vec<Expected> = got
        .iter()
        .map(|v| {
            assert_eq!(
                v["points"],
                index(v, "last_point") - index(v, "first_point") + 1
            );
            let change = ["added", "modified", "metadata", "type"]
                .into_iter()
                .find(|c| v["change"] == *c)
                .unwrap();
            let kind = ["file", "dir", "symlink"]
                .into_iter()
                .find(|k| v["kind"] == *k)
                .unwrap();
            let size = if kind == "dir" {
                0
            } else {
                v["size"].as_u64().unwrap()
            };
            (
                index(v, "first_point"),
                index(v, "last_point"),
                change,
                kind,
                size,
            )
        })
        .collect();
    assert_eq!(got_versions, want);
    // Each file version carries its mtime and mode; a symlink its target.
    for (v, (first, ..)) in got.iter().zip(&want) {
        match &history[*first] {
            Some(Seen::File { mode, mtime_ns, .. }) => {
                assert_eq!(v["mode"].as_u64().unwrap() as u32 & 0o7777, *mode);
                assert_eq!(v["mtime_ns"].as_i64().unwrap(), *mtime_ns);
            }
            Some(Seen::Symlink { target, .. }) => assert_eq!(v["content"], *target),
            _ => {}
        }
    }
    // The text form: one line per version and a summary; a relative path under the source.
    let out = env.run(&["log", "docs/tracked", "--source", src.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), want.len() + 1, "{text}");
    assert!(
        text.lines().last().unwrap().starts_with(&format!(
            "{} versions of {} in 20 points",
            want.len(),
            tracked.display()
        )),
        "{text}"
    );
}

#[test]
fn log_refuses_a_path_no_point_holds_and_a_choice_of_several_sources() {
    let env = Env::new();
    let (outer, inner) = (env.path("outer"), env.path("outer/inner"));
    write_file(inner.join("f"), b"x");
    env.backup(&outer);
    env.backup(&inner);
    let f = inner.join("f");
    // Both sources hold it: one is chosen with --source.
    let out = env.run(&["log", f.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_one_line_error(&out, "choose one with --source");
    let out = env.run(&[
        "log",
        f.to_str().unwrap(),
        "--source",
        inner.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 versions of"), "{}", stdout(&out));
    // Below no source, and in none of the points.
    let out = env.run(&["log", "/nowhere/at/all"]);
    assert_eq!(code(&out), 1);
    assert_one_line_error(&out, "below none of the sources");
    let gone = inner.join("never");
    let out = env.run(&[
        "log",
        gone.to_str().unwrap(),
        "--source",
        inner.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1);
    assert_one_line_error(&out, "in none of the 1 points");
    // A relative path needs one series.
    let out = env.run(&["log", "f"]);
    assert_eq!(code(&out), 2);
    assert_one_line_error(&out, "choose one with --source");
}

#[test]
fn log_find_and_diff_read_the_local_catalog_without_the_passphrase() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("notes.txt"), b"first");
    env.backup(&src);
    write_file(src.join("notes.txt"), b"second, longer");
    env.backup(&src);
    let keyless = |args: &[&str]| {
        let out = env
            .cmd(args)
            .env_remove("SYNVAULT_PASSWORD")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let notes = src.join("notes.txt");
    let log = keyless(&["log", notes.to_str().unwrap()]);
    assert!(log.contains("2 versions of"), "{log}");
    let found = keyless(&["find", "notes.*"]);
    assert!(found.contains("notes.txt"), "{found}");
    let diff = keyless(&["diff", "latest~1", "latest"]);
    assert!(diff.contains("0 added, 0 removed, 1 modified"), "{diff}");
    // What reads the data still takes the key.
    let latest = "latest:notes.txt";
    let out = env
        .cmd(&["cat", latest])
        .env_remove("SYNVAULT_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

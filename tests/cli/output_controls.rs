//! Everyday operation: -q and -v, progress as JSON lines with --json, and the shell completions
//! and man pages made from the command definitions.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::common::{seeded_bytes, write_file};
use super::{assert_one_line_error, code, stderr, stdout, Env};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The binary with no vault and no `SYNVAULT_*` settings.
fn synvault(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synvault"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SYNVAULT_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(args).stdin(Stdio::null()).output().unwrap()
}

/// Every line of a `--json` run's stderr, each parsed as JSON; the status lines are checked:
/// the fields a reader needs, a fraction in 0..=1, and 1 at the end of a run that succeeded.
fn json_lines(args: &[&str], out: &Output) -> Vec<Value> {
    assert_eq!(code(out), 0, "{args:?}: {}", stderr(out));
    let lines: Vec<Value> = stderr(out)
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{args:?}: stderr line {line:?} is no JSON: {e}"))
        })
        .collect();
    let statuses: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message_type"] == "status")
        .collect();
    assert!(!statuses.is_empty(), "{args:?}: no status line");
    for status in &statuses {
        assert!(status["seconds_elapsed"].is_u64(), "{status}");
        assert!(status["bytes_done"].is_u64(), "{status}");
        let done = status["percent_done"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&done), "{status}");
    }
    let last = statuses.last().unwrap();
    assert_eq!(last["percent_done"], 1.0, "{args:?}: {last}");
    lines
}

/// The last status line of a run's JSON lines.
fn last_status(lines: &[Value]) -> &Value {
    lines
        .iter()
        .rev()
        .find(|l| l["message_type"] == "status")
        .unwrap()
}

#[test]
fn progress_is_json_lines_on_stderr_and_reaches_one() {
    let env = Env::new();
    write_file(env.path("src/a.bin"), seeded_bytes(1, 48 << 10));
    write_file(env.path("src/notes.txt"), b"hello");
    // The vault lies inside this source: the backup warns that it left it out, in JSON too.
    let source = env.dir.path();
    let args = ["backup", "--json", s(source)];
    let out = env.run(&args);
    let lines = json_lines(&args, &out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = last_status(&lines);
    assert_eq!(last["bytes_done"], report["bytes_read"], "{last}");
    assert_eq!(last["total_bytes"], report["bytes"], "{last}");
    assert_eq!(last["files_done"], 2, "{last}");
    // A walk that ends before the count beside it tells its own total, not the count's part.
    let mut slow_count = env.cmd(&args);
    slow_count.env("SYNVAULT_PAUSE_AT", "backup:counting");
    slow_count.env("SYNVAULT_PAUSE_MS", "300");
    let out = slow_count.output().unwrap();
    let lines = json_lines(&args, &out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(last_status(&lines)["total_bytes"], report["bytes"]);
    assert!(
        lines.iter().any(|l| l["message_type"] == "warning"
            && l["message"]
                .as_str()
                .unwrap()
                .contains("vault being written to")),
        "{lines:?}"
    );

    let target = env.path("restored");
    let args = ["restore", "latest", "--target", s(&target), "--json"];
    let out = env.run(&args);
    let lines = json_lines(&args, &out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"], 2, "{report}");
    assert!(u64_of(last_status(&lines), "bytes_done") >= 48 << 10);
    assert_eq!(
        fs::read(target.join("src/notes.txt")).unwrap(),
        b"hello",
        "{lines:?}"
    );

    for args in [
        &["verify", "--read-data", "--json"][..],
        &["prune", "--json"],
    ] {
        let out = env.run(args);
        json_lines(args, &out);
        let _: Value = serde_json::from_slice(&out.stdout).unwrap();
    }
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn seed_import_tells_its_progress_as_json_lines() {
    let env = Env::new();
    write_file(env.path("src/x.bin"), seeded_bytes(2, 32 << 10));
    let disk = env.path("disk");
    let out = env.run(&[
        "seed",
        "prepare",
        "--job",
        "first",
        "--disk-size",
        "10M",
        "--disk",
        s(&disk),
        s(&env.path("src")),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let args = ["seed", "import", "--job", "first", "--json", s(&disk)];
    let out = env.run(&args);
    let lines = json_lines(&args, &out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(last_status(&lines)["bytes_done"], report["bytes_imported"]);
}

#[test]
fn quiet_keeps_results_and_warnings_and_drops_notes() {
    let env = Env::new();
    write_file(env.path("src/a.txt"), b"a");
    // `--forget` notes how many points it forgot; the vault inside the source is a warning.
    let source = s(env.dir.path());
    let plain = env.run(&["backup", "--forget", source]);
    assert_eq!(code(&plain), 0, "{}", stderr(&plain));
    assert!(
        stderr(&plain).contains("forgot 0 points"),
        "{}",
        stderr(&plain)
    );

    let quiet = env.run(&["backup", "--forget", "-q", source]);
    assert_eq!(code(&quiet), 0, "{}", stderr(&quiet));
    assert!(stdout(&quiet).contains("point "), "{}", stdout(&quiet));
    let err = stderr(&quiet);
    assert!(!err.contains("forgot"), "{err}");
    assert!(err.contains("warning: left out"), "{err}");
}

#[test]
fn verbose_tells_more_and_does_not_go_with_quiet() {
    let env = Env::new();
    write_file(env.path("src/a.txt"), b"a");
    env.backup(&env.path("src"));
    let plain = env.run(&["prune"]);
    assert_eq!(code(&plain), 0, "{}", stderr(&plain));
    assert!(
        !stdout(&plain).contains("writer lock held"),
        "{}",
        stdout(&plain)
    );
    let verbose = env.run(&["prune", "-v"]);
    assert_eq!(code(&verbose), 0, "{}", stderr(&verbose));
    assert!(
        stdout(&verbose).contains("writer lock held"),
        "{}",
        stdout(&verbose)
    );

    let both = env.run(&["prune", "-q", "-v"]);
    assert_eq!(code(&both), 2, "{}", stderr(&both));
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
}

#[test]
fn completions_generate_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = synvault(&["completion", shell]);
        assert_eq!(code(&out), 0, "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for word in ["backup", "restore", "seed", "import", "exclude", "quiet"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = synvault(&["completion", "tcsh"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[test]
fn man_pages_are_made_from_the_commands() {
    let out = synvault(&["man"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH synvault 1"), "{page}");
    for part in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        "backup",
        "restore",
    ] {
        assert!(page.contains(part), "the man page lacks {part}");
    }

    let out = synvault(&["man", "backup"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH synvault\\-backup 1") || page.contains(".TH synvault-backup 1"));
    // The long texts that --help leaves out are in the page.
    assert!(page.contains("CACHEDIR.TAG"), "{page}");
    assert!(page.contains("spans any number"), "{page}");

    let dir = tempfile::tempdir().unwrap();
    let out = synvault(&["man", "--dir", s(dir.path())]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for name in ["synvault.1", "synvault-backup.1", "synvault-seed-import.1"] {
        let page = fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(page.contains(".TH"), "{name}");
    }

    let out = synvault(&["man", "nope"]);
    assert_eq!(code(&out), 2);
    assert_one_line_error(&out, "no command `nope`");
}

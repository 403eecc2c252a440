//! Passphrases: where they come from (a file, a command, the environment, a terminal) and
//! `key list | add | remove | passwd`. After every change the vault still opens and restores.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::common::{assert_trees_equal, write_file};
use super::{assert_one_line_error, code, stderr, stdout, Env};

/// The passphrase `Env` gives.
const FIRST: &str = "correct horse";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An Env with one point of two tiny files.
fn env_with_point() -> Env {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a.txt"), b"alpha");
    write_file(src.join("sub/b.txt"), b"beta");
    env.backup(&src);
    env
}

/// Runs `args` with `passphrase` in SYNVAULT_PASSWORD.
fn run_with(env: &Env, passphrase: &str, args: &[&str]) -> Output {
    env.cmd(args)
        .env("SYNVAULT_PASSWORD", passphrase)
        .output()
        .unwrap()
}

/// The newest point restores with `passphrase`, equal to the source.
fn assert_restores_with(env: &Env, passphrase: &str) {
    let target = env.path(&format!("restored-{}", passphrase.replace(' ', "-")));
    let _ = fs::remove_dir_all(&target);
    let out = run_with(
        env,
        passphrase,
        &["restore", "latest", "--target", s(&target)],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_trees_equal(&env.path("src"), &target);
}

fn keys(env: &Env, passphrase: &str) -> Vec<Value> {
    let out = run_with(env, passphrase, &["key", "list", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    listed.as_array().unwrap().clone()
}

/// The id of the key marked current when opened with `passphrase`.
fn current_key(env: &Env, passphrase: &str) -> String {
    let listed = keys(env, passphrase);
    let current: Vec<&Value> = listed.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(current.len(), 1, "{listed:?}");
    current[0]["id"].as_str().unwrap().to_string()
}

/// Adds a key for `passphrase` (read from a file) and returns its id.
fn add_key(env: &Env, passphrase: &str) -> String {
    let file = env.path("new-pass");
    fs::write(&file, format!("{passphrase}\n")).unwrap();
    let out = env.run(&["key", "add", "--new-password-file", s(&file)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let id = text.trim().strip_prefix("added key ").unwrap();
    id.to_string()
}

#[test]
fn the_passphrase_comes_from_a_file_or_a_command_before_the_environment() {
    let env = env_with_point();
    let file = env.path("pass");
    fs::write(&file, format!("{FIRST}\nnot this line\n")).unwrap();
    let from_env_file = env
        .cmd(&["points"])
        .env("SYNVAULT_PASSWORD", "wrong")
        .env("SYNVAULT_PASSWORD_FILE", &file)
        .output()
        .unwrap();
    assert_eq!(code(&from_env_file), 0, "{}", stderr(&from_env_file));

    let command = format!("printf '{FIRST}\\nnot this line\\n'");
    let from_flag = run_with(&env, "wrong", &["points", "--password-command", &command]);
    assert_eq!(code(&from_flag), 0, "{}", stderr(&from_flag));
    let from_env_command = env
        .cmd(&["points"])
        .env("SYNVAULT_PASSWORD", "wrong")
        .env("SYNVAULT_PASSWORD_COMMAND", &command)
        .output()
        .unwrap();
    assert_eq!(code(&from_env_command), 0, "{}", stderr(&from_env_command));

    let wrong = env.run(&["points", "--password-command", "echo nope"]);
    assert_eq!(code(&wrong), 12);
    assert_one_line_error(&wrong, "wrong passphrase");
    let failing = env.run(&["points", "--password-command", "exit 3"]);
    assert_eq!(code(&failing), 1);
    assert_one_line_error(&failing, "the password command failed (exit status: 3)");
    let silent = env.run(&["points", "--password-command", "true"]);
    assert_eq!(code(&silent), 1);
    assert_one_line_error(&silent, "the password command printed no passphrase");
    let both = env
        .cmd(&["points", "--password-command", &command])
        .env("SYNVAULT_PASSWORD_FILE", &file)
        .output()
        .unwrap();
    assert_eq!(code(&both), 2);
    assert_one_line_error(&both, "not both");
    assert_restores_with(&env, FIRST);
}

#[test]
fn an_added_key_opens_the_vault_beside_the_first() {
    let env = env_with_point();
    let first = current_key(&env, FIRST);
    let second = add_key(&env, "battery staple");
    assert_ne!(first, second);
    assert_eq!(current_key(&env, "battery staple"), second);
    let listed = keys(&env, FIRST);
    let ids: Vec<&str> = listed.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&first.as_str()) && ids.contains(&second.as_str()));
    assert!(
        listed.iter().all(|k| k["created"].is_string()),
        "{listed:?}"
    );
    let text = stdout(&env.run(&["key", "list"]));
    assert!(text.contains(&format!("* {first}")), "{text}");
    assert!(text.contains(&format!("  {second}")), "{text}");
    assert_restores_with(&env, FIRST);
    assert_restores_with(&env, "battery staple");

    let empty = env.path("empty");
    fs::write(&empty, "\n").unwrap();
    let refused = env.run(&["key", "add", "--new-password-file", s(&empty)]);
    assert_eq!(code(&refused), 2);
    assert_one_line_error(&refused, "the passphrase is empty");
    let no_source = env.run(&["key", "add"]);
    assert_eq!(code(&no_source), 2);
    assert_one_line_error(&no_source, "no new passphrase");
    assert_eq!(keys(&env, FIRST).len(), 2);
}

#[test]
fn remove_refuses_the_last_key_and_the_key_in_use() {
    let env = env_with_point();
    let first = current_key(&env, FIRST);
    let last = env.run(&["key", "remove", &first]);
    assert_eq!(code(&last), 25, "{}", stderr(&last));
    assert_one_line_error(&last, "last");

    let second = add_key(&env, "battery staple");
    let in_use = env.run(&["key", "remove", &first]);
    assert_eq!(code(&in_use), 26, "{}", stderr(&in_use));
    assert_one_line_error(&in_use, "in use");
    let unknown = env.run(&["key", "remove", "xyz"]);
    assert_eq!(code(&unknown), 1);
    assert_one_line_error(&unknown, "no key matches");
    assert_eq!(keys(&env, FIRST).len(), 2);

    // Opened with the second passphrase, the first key goes, named by a prefix.
    let removed = run_with(&env, "battery staple", &["key", "remove", &first[..6]]);
    assert_eq!(code(&removed), 0, "{}", stderr(&removed));
    assert_eq!(stdout(&removed).trim(), format!("removed key {first}"));
    let old = env.run(&["points"]);
    assert_eq!(code(&old), 12);
    assert_one_line_error(&old, "wrong passphrase");
    let remaining = keys(&env, "battery staple");
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0]["id"], second.as_str());
    assert_restores_with(&env, "battery staple");
}

#[test]
fn passwd_replaces_the_passphrase_in_use() {
    let env = env_with_point();
    let first = current_key(&env, FIRST);
    let out = env
        .cmd(&["key", "passwd"])
        .env("SYNVAULT_NEW_PASSWORD", "battery staple")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("replaces key {first}")));
    let old = env.run(&["points"]);
    assert_eq!(code(&old), 12);
    assert_one_line_error(&old, "wrong passphrase");
    let listed = keys(&env, "battery staple");
    assert_eq!(listed.len(), 1);
    assert_ne!(listed[0]["id"], first.as_str());
    assert_restores_with(&env, "battery staple");

    // A wrong current passphrase changes nothing.
    let refused = env
        .cmd(&["key", "passwd"])
        .env("SYNVAULT_NEW_PASSWORD", "other")
        .output()
        .unwrap();
    assert_eq!(code(&refused), 12);
    assert_eq!(keys(&env, "battery staple").len(), 1);
}

/// Runs `synvault --vault DIR init` on a terminal (`script` gives it one) that types `typed`.
fn init_on_terminal(vault: &Path, typed: &str) -> Output {
    let command = format!(
        "{} --vault {} init",
        env!("CARGO_BIN_EXE_synvault"),
        s(vault)
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &command, "/dev/null"]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SYNVAULT_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), typed.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn init_on_a_terminal_asks_again_after_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    let out = init_on_terminal(&vault, "one\ntwo\nthree\nthree\n");
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("the passphrases differ; try again"));
    let opens = Command::new(env!("CARGO_BIN_EXE_synvault"))
        .args(["--vault", s(&vault), "points"])
        .env("SYNVAULT_PASSWORD", "three")
        .output()
        .unwrap();
    assert_eq!(code(&opens), 0, "{}", stderr(&opens));

    let other = dir.path().join("other");
    let out = init_on_terminal(&other, "a\nb\nc\nd\ne\nf\n");
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(stdout(&out).contains("synvault: invalid argument: the passphrases differed 3 times"));
    assert!(!other.join("config.json").exists());
}

//! A vault in a temporary directory and the built binary run against it, with the output
//! checks every CLI-level test uses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// A vault in a temporary directory (or in a bucket, its catalog in the directory) and a way
/// to run the binary against it.
pub struct Env {
    pub dir: TempDir,
    /// A vault in object storage: its URL and the environment that reaches the server.
    pub remote: Option<(String, Vec<(String, String)>)>,
}

impl Env {
    /// A new vault (`init` run) in its own temporary directory.
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("synvault-test")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let env = Env { dir, remote: None };
        let out = env.run(&["init"]);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        env
    }

    /// An environment for the vault at `url` (object storage) reached with `vars`, its
    /// catalog in `<dir>/catalog`. Nothing is run.
    pub fn remote(url: String, vars: Vec<(String, String)>) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("synvault-test")
            .tempdir()
            .unwrap();
        Env {
            dir,
            remote: Some((url, vars)),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn vault(&self) -> PathBuf {
        self.path("vault")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_synvault"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SYNVAULT_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("SYNVAULT_PASSWORD", "correct horse");
        match &self.remote {
            None => cmd.arg("--vault").arg(self.vault()),
            Some((url, vars)) => cmd
                .envs(vars.iter().map(|(k, v)| (k, v)))
                .env("SYNVAULT_CATALOG", self.path("catalog"))
                .arg("--vault")
                .arg(url),
        };
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs a command that must succeed and returns its stdout parsed as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn backup(&self, src: &Path) -> Value {
        self.json(&["backup", "--json", src.to_str().unwrap()])
    }

    /// The catalog file's bytes with its WAL folded in (so they hold every commit).
    pub fn catalog_bytes(&self) -> Vec<u8> {
        let catalog = self.vault().join("catalog.db");
        let db = rusqlite::Connection::open(&catalog).unwrap();
        db.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .unwrap();
        drop(db);
        fs::read(&catalog).unwrap()
    }

    /// Every file in the store but metadata packs: data packs, and anything a writer left.
    pub fn pack_files(&self) -> Vec<PathBuf> {
        self.store_files()
            .into_iter()
            .filter(|f| !is_meta_pack(f))
            .collect()
    }

    /// The metadata packs in the store (the catalog's records, sealed).
    pub fn meta_pack_files(&self) -> Vec<PathBuf> {
        self.store_files()
            .into_iter()
            .filter(|f| is_meta_pack(f))
            .collect()
    }

    /// Every file under `packs/` (packs, and any temporary left), but the marker the store
    /// keeps in `packs/tmp/` once older builds' temporaries are swept.
    fn store_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in fs::read_dir(self.vault().join("packs")).unwrap() {
            for f in fs::read_dir(dir.unwrap().path()).unwrap() {
                let path = f.unwrap().path();
                if !path.ends_with("tmp/old-temporaries-removed") {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }
}

/// True if the file starts as a metadata pack does.
pub fn is_meta_pack(path: &Path) -> bool {
    let mut head = [0u8; 8];
    fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"SYNVMETA"
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// The error is one line starting with `synvault:`, no panic, no backtrace.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("synvault:")).collect();
    assert_eq!(lines.len(), 1, "want one error line, got: {err}");
    assert!(
        lines[0].contains(needle),
        "error {:?} lacks {needle:?}",
        lines[0]
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

pub fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

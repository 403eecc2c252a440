//! The backup flags people reach for: exclude rules as restic documents them, cache and marker
//! directories, a size limit, the recorded host, a dry run that writes nothing, and reports
//! that count new blocks and tell new files from changed ones.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde_json::Value;

use super::common::{seeded_bytes, write_file};
use super::{assert_one_line_error, code, stderr, stdout, u, Env};

const CACHEDIR_TAG: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Backs up `src` with `flags` and returns the paths of the new point, sorted.
fn backed_up(env: &Env, src: &Path, flags: &[&str]) -> Vec<String> {
    let mut args = vec!["backup"];
    args.extend_from_slice(flags);
    args.push(s(src));
    let out = env.run(&args);
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    let listed = env.json(&["ls", "-r", "--json", "latest"]);
    let mut paths: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    paths
}

fn write_tree(root: &Path, files: &[&str]) {
    for f in files {
        write_file(root.join(f), f.as_bytes());
    }
}

#[test]
fn exclude_patterns_follow_restics_documented_rules() {
    let env = Env::new();
    let src = env.path("src");
    write_tree(
        &src,
        &[
            "a/foo/x",
            "a/foobar",
            "Documents/n.txt",
            "Documents/r.pdf",
            "Documents/deep/d.txt",
            "work/Documents/w.txt",
            "foo2/z/y/bar/b",
            "keep/bar/k",
            "bin/bash",
            "usr/bin/ls",
            "Music/song.MP3",
            "home/Music/m",
            "home/code/c",
        ],
    );
    let anchored = format!("{}/bin", s(&src));
    let home = format!("{}/home/*", s(&src));
    let code_dir = format!("!{}/home/code", s(&src));
    let paths = backed_up(
        &env,
        &src,
        &[
            "--exclude",
            "foo",
            "--exclude",
            "Documents/*.txt",
            "--exclude",
            "foo2/**/bar",
            "--exclude",
            &anchored,
            "--exclude",
            &home,
            "--exclude",
            &code_dir,
            "--iexclude",
            "*.mp3",
        ],
    );
    // `foo` is a whole component at any depth: not `foobar`.
    assert!(!paths.iter().any(|p| p.contains("/foo/")), "{paths:?}");
    assert!(paths.contains(&"/a/foobar".to_string()), "{paths:?}");
    // `Documents/*.txt`: the text files directly in any Documents, nothing else.
    for gone in ["/Documents/n.txt", "/work/Documents/w.txt"] {
        assert!(!paths.contains(&gone.to_string()), "{gone}: {paths:?}");
    }
    for kept in ["/Documents/r.pdf", "/Documents/deep/d.txt"] {
        assert!(paths.contains(&kept.to_string()), "{kept}: {paths:?}");
    }
    // `**` spans directories.
    assert!(paths.contains(&"/foo2/z/y".to_string()), "{paths:?}");
    assert!(paths.contains(&"/keep/bar/k".to_string()), "{paths:?}");
    assert!(!paths.contains(&"/foo2/z/y/bar".to_string()), "{paths:?}");
    // A leading `/` anchors at the root of the path (the source's absolute path).
    assert!(!paths.contains(&"/bin".to_string()), "{paths:?}");
    assert!(paths.contains(&"/usr/bin/ls".to_string()), "{paths:?}");
    // `!` takes back what an earlier pattern left out.
    assert!(paths.contains(&"/home/code/c".to_string()), "{paths:?}");
    assert!(!paths.contains(&"/home/Music".to_string()), "{paths:?}");
    // --iexclude ignores case.
    assert!(!paths.contains(&"/Music/song.MP3".to_string()), "{paths:?}");

    let bad = env.run(&["backup", "--exclude", "a[", s(&src)]);
    assert_eq!(code(&bad), 2);
    assert_one_line_error(&bad, "bad pattern \"a[\"");
    // --help fits one screen and names the page that tells the rules.
    let help = stdout(&env.run(&["backup", "--help"]));
    assert!(help.contains("`synvault man backup`"), "{help}");
    let page = stdout(&env.run(&["man", "backup"]));
    assert!(
        page.contains("`Documents/*.txt`") && page.contains("`**`") && page.contains("`!PATTERN`"),
        "{page}"
    );
}

#[test]
fn exclude_files_expand_the_environment_and_skip_comments() {
    let env = Env::new();
    let src = env.path("src");
    write_tree(&src, &["one/a", "two/b", "three/c"]);
    let patterns = env.path("excludes");
    fs::write(&patterns, "# comment\n\n$SRC/one\n${SRC}/two\n").unwrap();
    let out = env
        .cmd(&["backup", "--exclude-file", s(&patterns), s(&src)])
        .env("SRC", &src)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listed = stdout(&env.run(&["ls", "-r", "latest"]));
    assert!(listed.contains("/three/c"), "{listed}");
    assert!(
        !listed.contains("/one") && !listed.contains("/two"),
        "{listed}"
    );
}

#[test]
fn cache_and_marker_directories_keep_only_their_marker() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("cache/CACHEDIR.TAG"), CACHEDIR_TAG);
    write_tree(&src, &["cache/blob", "cache/sub/deep"]);
    // A tag without the signature is no tag.
    write_file(src.join("fake/CACHEDIR.TAG"), b"Signature: not it\n");
    write_tree(&src, &["fake/data"]);
    write_tree(
        &src,
        &["proj/.nobackup", "proj/build/o", "other/.keepme", "other/x"],
    );
    write_file(src.join("headed/.marker"), b"SKIP this directory");
    write_tree(&src, &["headed/h", "unheaded/.marker", "unheaded/u"]);
    let paths = backed_up(
        &env,
        &src,
        &[
            "--exclude-caches",
            "--exclude-if-present",
            ".nobackup",
            "--exclude-if-present",
            ".marker:SKIP",
        ],
    );
    for kept in [
        "/cache",
        "/cache/CACHEDIR.TAG",
        "/fake/data",
        "/proj",
        "/proj/.nobackup",
        "/other/x",
        "/headed/.marker",
        "/unheaded/u",
    ] {
        assert!(paths.contains(&kept.to_string()), "{kept}: {paths:?}");
    }
    for gone in ["/cache/blob", "/cache/sub", "/proj/build", "/headed/h"] {
        assert!(!paths.contains(&gone.to_string()), "{gone}: {paths:?}");
    }

    let bad = env.run(&["backup", "--exclude-if-present", "a/b", s(&src)]);
    assert_eq!(code(&bad), 2);
    assert_one_line_error(&bad, "--exclude-if-present \"a/b\"");
}

#[test]
fn files_larger_than_the_limit_are_left_out() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("small.bin"), seeded_bytes(1, 4096));
    write_file(src.join("sub/large.bin"), seeded_bytes(2, 4097));
    let paths = backed_up(&env, &src, &["--exclude-larger-than", "4K"]);
    assert!(paths.contains(&"/small.bin".to_string()), "{paths:?}");
    assert!(paths.contains(&"/sub".to_string()), "{paths:?}");
    assert!(!paths.contains(&"/sub/large.bin".to_string()), "{paths:?}");

    let bad = env.run(&["backup", "--exclude-larger-than", "4X", s(&src)]);
    assert_eq!(code(&bad), 2);
    assert_one_line_error(&bad, "--exclude-larger-than");
}

#[test]
fn the_point_records_the_host_given_or_this_machines_name() {
    let env = Env::new();
    let src = env.path("src");
    write_tree(&src, &["a"]);
    let named = env.json(&["backup", "--json", "--host", "laptop-7", s(&src)]);
    assert_eq!(named["host"], "laptop-7");
    let own = env.backup(&src);
    let this_machine = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    assert_eq!(own["host"], this_machine.as_str());
    let points = env.json(&["points", "--json"]);
    assert_eq!(points[0]["host"], "laptop-7");
    assert_eq!(points[1]["host"], this_machine.as_str());

    let empty = env.run(&["backup", "--host", " ", s(&src)]);
    assert_eq!(code(&empty), 2);
    assert_one_line_error(&empty, "host name");
}

/// What a vault holds that a write would change: its store's files (path and bytes), its
/// catalog, its points.
#[derive(Debug, PartialEq)]
struct VaultState {
    store: Vec<(String, Vec<u8>)>,
    catalog: Vec<u8>,
    points: Value,
}

fn vault_state(env: &Env) -> VaultState {
    let mut files = Vec::new();
    let mut stack = vec![env.vault().join("packs")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.display().to_string(), fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    VaultState {
        store: files,
        catalog: env.catalog_bytes(),
        points: env.json(&["points", "--json"]),
    }
}

fn dry_run(env: &Env, src: &Path) -> Value {
    env.json(&["backup", "--dry-run", "--json", s(src)])
}

#[test]
fn a_dry_run_writes_nothing_and_says_what_a_backup_would_store() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..4u64 {
        write_file(src.join(format!("f{i}.bin")), seeded_bytes(i, 3000));
    }
    write_file(src.join("copy.bin"), seeded_bytes(0, 3000));
    let before = vault_state(&env);
    let planned = dry_run(&env, &src);
    assert_eq!(vault_state(&env), before, "a dry run changed the vault");
    assert_eq!(planned["dry_run"], true);
    assert_eq!(u(&planned, "files_new"), 5, "{planned}");
    assert_eq!(u(&planned, "files_changed"), 0, "{planned}");
    assert_eq!(u(&planned, "bytes_read"), 15_000, "{planned}");
    assert_eq!(u(&planned, "blocks_new"), 4, "{planned}");

    // What it said is what the backup then does.
    let done = env.backup(&src);
    for key in [
        "files_new",
        "bytes_read",
        "blocks_new",
        "bytes_new",
        "bytes_stored",
    ] {
        assert_eq!(planned[key], done[key], "{key}: {planned} vs {done}");
    }

    // Against that point: one file changed, one new, the rest unchanged and not read.
    let f0 = fs::OpenOptions::new()
        .write(true)
        .open(src.join("f0.bin"))
        .unwrap();
    f0.write_all_at(b"changed", 100).unwrap();
    drop(f0);
    write_file(src.join("new.bin"), seeded_bytes(9, 2000));
    let before = vault_state(&env);
    let planned = dry_run(&env, &src);
    assert_eq!(vault_state(&env), before, "a dry run changed the vault");
    assert_eq!(planned["parent"], done["point"]);
    assert_eq!(u(&planned, "files_new"), 1, "{planned}");
    assert_eq!(u(&planned, "files_changed"), 1, "{planned}");
    assert_eq!(u(&planned, "files_unchanged"), 4, "{planned}");
    assert_eq!(u(&planned, "bytes_read"), 5000, "{planned}");
    assert_eq!(u(&planned, "blocks_new"), 2, "{planned}");

    let text = env.run(&["backup", "-n", s(&src)]);
    assert_eq!(code(&text), 0, "{}", stderr(&text));
    let text = stdout(&text);
    assert!(text.contains("nothing was written"), "{text}");
    assert!(text.contains("(1 new, 1 changed, 4 unchanged)"), "{text}");
    assert!(
        text.contains("in 2 blocks") && text.contains("would store"),
        "{text}"
    );
    assert_eq!(vault_state(&env), before, "a dry run changed the vault");
}

#[test]
fn a_dry_run_needs_no_writer_lock() {
    let env = Env::new();
    let src = env.path("src");
    write_tree(&src, &["a", "b"]);
    let (_held, _) = synvault::WriterLock::acquire(&env.vault(), "test").unwrap();
    let blocked = env.run(&["backup", "--lock-wait", "0", s(&src)]);
    assert_eq!(code(&blocked), 11, "{}", stderr(&blocked));
    let planned = dry_run(&env, &src);
    assert_eq!(u(&planned, "files_new"), 2, "{planned}");
    let refused = env.run(&["backup", "--dry-run", "--forget", s(&src)]);
    assert_eq!(code(&refused), 2);
}

#[test]
fn reports_count_new_blocks_and_a_first_backup_says_new_not_changed() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..3u64 {
        write_file(src.join(format!("f{i}.bin")), seeded_bytes(10 + i, 2000));
    }
    write_file(src.join("same-as-f0.bin"), seeded_bytes(10, 2000));
    let out = env.run(&["backup", s(&src)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("files  4 (4 new)"), "{text}");
    assert!(!text.contains("changed"), "{text}");
    assert!(text.contains("in 3 blocks"), "{text}");

    write_file(src.join("f1.bin"), seeded_bytes(20, 2000));
    write_file(src.join("f3.bin"), seeded_bytes(21, 2000));
    let next = env.backup(&src);
    assert_eq!(u(&next, "blocks_new"), 2, "{next}");
    assert_eq!(u(&next, "files_new"), 1, "{next}");
    assert_eq!(u(&next, "files_changed"), 1, "{next}");
    assert_eq!(u(&next, "files_unchanged"), 3, "{next}");

    // Reading everything again finds the same content: unchanged, not changed.
    let forced = env.json(&["backup", "--json", "--force", s(&src)]);
    assert_eq!(u(&forced, "files_unchanged"), 5, "{forced}");
    assert_eq!(u(&forced, "blocks_new"), 0, "{forced}");

    // A seed job counts the blocks it writes to its disks.
    let other = env.path("other");
    for i in 0..3u64 {
        write_file(other.join(format!("g{i}.bin")), seeded_bytes(30 + i, 2000));
    }
    let disk = env.path("disk");
    let seeded = env.json(&[
        "seed",
        "prepare",
        "--json",
        "--job",
        "j",
        "--disk",
        s(&disk),
        s(&other),
    ]);
    assert_eq!(u(&seeded, "blocks_new"), 3, "{seeded}");
    assert_eq!(u(&seeded, "files_new"), 3, "{seeded}");
}

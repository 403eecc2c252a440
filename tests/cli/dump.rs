//! `synvault dump`: a tar stream that GNU tar extracts into what restore makes of the same
//! point, lists as the point's names, cut to a subtree; refused on a terminal; and a reader
//! that goes away ends it quietly with its own exit code.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::common::{
    allocated_bytes, generate_tree, seeded_bytes, tree_diff_with, write_file, DiffOptions, TreeSpec,
};
use super::{assert_one_line_error, code, stderr, Env};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// How a person extracts a dump as root: owners, modes, xattrs and ACLs kept (and no word
/// about the generated tree's times in the future).
const TAR_X: [&str; 7] = [
    "--warning=no-timestamp",
    "--same-owner",
    "-p",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
    "-x",
];
const ACL_XATTRS: [&str; 2] = ["system.posix_acl_access", "system.posix_acl_default"];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `synvault dump DUMP_ARGS | tar TAR_ARGS` (in the C locale) and returns tar's output;
/// both must succeed, and tar must not warn (an unknown PAX keyword, a bad header).
fn dump_into_tar(env: &Env, dump_args: &[&str], tar_args: &[&str]) -> Output {
    let mut dump = env
        .cmd(&[&["dump"], dump_args].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tar = Command::new("tar")
        .args(tar_args)
        .args(["-f", "-"])
        .env("LC_ALL", "C")
        .stdin(dump.stdout.take().unwrap())
        .output()
        .unwrap();
    let dumped = dump.wait_with_output().unwrap();
    assert!(dumped.status.success(), "dump: {}", stderr(&dumped));
    assert!(tar.status.success(), "tar: {}", stderr(&tar));
    assert!(tar.stderr.is_empty(), "tar warned: {}", stderr(&tar));
    tar
}

/// Extracts `synvault dump TARGET` into a new directory `dir` of the env.
fn extract(env: &Env, target: &str, dir: &str) -> PathBuf {
    let into = env.path(dir);
    fs::create_dir(&into).unwrap();
    dump_into_tar(env, &[target], &[&TAR_X[..], &["-C", s(&into)]].concat());
    into
}

fn restore(env: &Env, target: &str, dir: &str) -> PathBuf {
    let into = env.path(dir);
    let out = env.run(&["restore", target, "--target", s(&into)]);
    assert!(out.status.success(), "{}", stderr(&out));
    into
}

/// The names `tar t` lists, one per line.
fn tar_list(env: &Env, target: &str) -> Vec<String> {
    let listed = dump_into_tar(env, &[target], &["-t"]);
    let mut names: Vec<String> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// A name as GNU tar's default quoting shows it in the C locale: `\\`, `\n` and `\t`
/// escaped, other bytes outside printable ASCII in octal.
fn tar_quoted(name: &[u8]) -> String {
    let mut out = String::new();
    for &b in name {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

/// The names a dump of `root` holds as `tar t` lists them: `./` and every entry below as
/// `./path`, directories with a trailing `/`.
fn expected_names(root: &Path) -> Vec<String> {
    let mut names = vec!["./".to_string()];
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for entry in fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let child = rel.join(entry.file_name());
            let mut name = format!("./{}", tar_quoted(child.as_os_str().as_bytes()));
            if entry.file_type().unwrap().is_dir() {
                name.push('/');
                pending.push(child);
            }
            names.push(name);
        }
    }
    names.sort();
    names
}

/// A POSIX ACL in the kernel's xattr form: (tag, permissions, id) entries, sorted by tag.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut value = vec![0; 4096];
    let len = rustix::fs::lgetxattr(path, name, &mut value).ok()?;
    value.truncate(len);
    Some(value)
}

/// A file with an access ACL naming user 1234, and a directory with a default ACL.
fn add_acls(src: &Path) -> [PathBuf; 2] {
    let none = u32::MAX;
    let file = PathBuf::from("acl/shared.txt");
    let dir = PathBuf::from("acl/inherit");
    write_file(src.join(&file), b"shared with user 1234");
    fs::create_dir(src.join(&dir)).unwrap();
    let access = acl(&[
        (0x01, 6, none),
        (0x02, 6, 1234),
        (0x04, 4, none),
        (0x10, 6, none),
        (0x20, 4, none),
    ]);
    let default = acl(&[
        (0x01, 7, none),
        (0x02, 5, 99),
        (0x04, 5, none),
        (0x10, 5, none),
        (0x20, 0, none),
    ]);
    let flags = rustix::fs::XattrFlags::empty();
    rustix::fs::setxattr(src.join(&file), ACL_XATTRS[0], &access, flags).unwrap();
    rustix::fs::setxattr(src.join(&dir), ACL_XATTRS[1], &default, flags).unwrap();
    [file, dir]
}

#[test]
fn a_dump_extracted_by_gnu_tar_is_what_restore_makes() {
    let env = Env::new();
    let src = env.path("src");
    let spec = TreeSpec {
        files: 40,
        max_file_bytes: 64 * KIB,
        medium_files: 0,
        sparse_hole_bytes: 32 * MIB,
        ..TreeSpec::default()
    };
    let summary = generate_tree(&src, 14, &spec);
    let acl_paths = add_acls(&src);
    env.backup(&src);

    let extracted = extract(&env, "latest", "extracted");
    let restored = restore(&env, "latest", "restored");
    let root = rustix::process::geteuid().is_root();
    let options = DiffOptions {
        ownership: root,
        ..DiffOptions::default()
    };
    let diffs = tree_diff_with(&restored, &extracted, &options);
    assert!(
        diffs.is_empty(),
        "restored vs extracted:\n{}",
        diffs.join("\n")
    );

    // Every name of the hardlinked file is one inode; the holes stayed holes.
    let inodes: Vec<u64> = summary
        .hardlinks
        .iter()
        .map(|rel| fs::metadata(extracted.join(rel)).unwrap().ino())
        .collect();
    assert!(inodes.windows(2).all(|w| w[0] == w[1]), "{inodes:?}");
    let sparse = extracted.join(&summary.sparse_file);
    let size = fs::metadata(&sparse).unwrap().len();
    assert_eq!(size, 34 * MIB);
    assert!(
        allocated_bytes(&sparse) <= allocated_bytes(&restored.join(&summary.sparse_file))
            && allocated_bytes(&sparse) < size / 4,
        "the sparse file allocated {} of {size}",
        allocated_bytes(&sparse)
    );
    // ACLs (xattrs the tree comparison leaves out) came through `--acls` as they were.
    for (rel, name) in acl_paths.iter().zip(ACL_XATTRS) {
        let want = xattr(&src.join(rel), name);
        assert!(want.is_some(), "{name} on {rel:?}");
        assert_eq!(xattr(&extracted.join(rel), name), want, "{name} on {rel:?}");
        assert_eq!(xattr(&restored.join(rel), name), want, "{name} on {rel:?}");
    }

    // `tar t` lists exactly the point's names.
    assert_eq!(tar_list(&env, "latest"), expected_names(&src));
}

#[test]
fn a_dump_of_a_path_holds_that_subtree_or_file_alone() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("top.txt"), b"not in the subtree");
    write_file(src.join("sub/dir/a.txt"), b"alpha");
    write_file(src.join("sub/dir/deeper/b.bin"), seeded_bytes(3, 5000));
    std::os::unix::fs::symlink("a.txt", src.join("sub/dir/link")).unwrap();
    fs::hard_link(
        src.join("sub/dir/a.txt"),
        src.join("sub/dir/deeper/a-again.txt"),
    )
    .unwrap();
    env.backup(&src);

    let names = tar_list(&env, "latest:sub/dir");
    assert_eq!(
        names,
        [
            "./",
            "./a.txt",
            "./deeper/",
            "./deeper/a-again.txt",
            "./deeper/b.bin",
            "./link"
        ]
    );
    let extracted = extract(&env, "latest:sub/dir", "extracted");
    let restored = restore(&env, "latest:sub/dir", "restored");
    let diffs = tree_diff_with(&restored, &extracted, &DiffOptions::default());
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));

    assert_eq!(tar_list(&env, "latest:sub/dir/deeper/b.bin"), ["b.bin"]);
    let one = extract(&env, "latest:sub/dir/deeper/b.bin", "one");
    assert_eq!(fs::read(one.join("b.bin")).unwrap(), seeded_bytes(3, 5000));

    // A path the point does not hold: cat's error and exit code, and nothing written.
    let missing = env.run(&["dump", "latest:sub/nope"]);
    assert_eq!(code(&missing), code(&env.run(&["cat", "latest:sub/nope"])));
    assert_eq!(code(&missing), 1);
    assert_one_line_error(&missing, "no \"sub/nope\" in recovery point");
    assert!(missing.stdout.is_empty());
    let format = env.run(&["dump", "latest", "--format", "zip"]);
    assert_eq!(code(&format), 2, "{}", stderr(&format));
}

#[test]
fn a_dump_to_a_terminal_is_refused() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("a.txt"), b"alpha");
    env.backup(&src);
    // `script` runs the command with a terminal as its standard output.
    let command = format!(
        "'{}' --vault '{}' dump latest",
        env!("CARGO_BIN_EXE_synvault"),
        s(&env.vault())
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("SYNVAULT_PASSWORD", "correct horse")
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 2, "{screen}");
    let errors: Vec<&str> = screen
        .lines()
        .filter(|l| l.starts_with("synvault:"))
        .collect();
    assert_eq!(errors.len(), 1, "{screen}");
    assert!(
        errors[0].contains("standard output is a terminal"),
        "{screen}"
    );
    assert!(
        !screen.contains("ustar"),
        "a tar stream reached the terminal"
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_dump_quietly_with_its_own_code() {
    let env = Env::new();
    let src = env.path("src");
    // Far more than a pipe holds, so the dump is still writing when the reader goes.
    write_file(src.join("big.bin"), seeded_bytes(5, 2 * MIB as usize));
    env.backup(&src);
    let mut dump = env
        .cmd(&["dump", "latest"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 100];
    std::io::Read::read_exact(dump.stdout.as_mut().unwrap(), &mut head).unwrap();
    drop(dump.stdout.take());
    let out = dump.wait_with_output().unwrap();
    assert_eq!(code(&out), 141, "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

#[test]
fn a_damaged_block_ends_the_dump_with_an_error_naming_its_file() {
    let env = Env::new();
    let src = env.path("src");
    write_file(src.join("victim.bin"), seeded_bytes(6, 300 * KIB as usize));
    env.backup(&src);
    let pack = &env.pack_files()[0];
    let mut bytes = fs::read(pack).unwrap();
    bytes[4000] ^= 0x01;
    fs::write(pack, bytes).unwrap();
    let out = env.run(&["dump", "latest"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_one_line_error(&out, "cannot read \"./victim.bin\" of the point");
}

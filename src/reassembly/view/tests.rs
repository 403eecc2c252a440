//! Unit tests of the View, without FUSE: a real vault in a temporary directory.

use super::*;
use crate::catalog::RecoveryPointId;
use crate::ingest::{backup, BackupOptions};
use crate::progress::NoProgress;
use crate::vault::{CreateOptions, Vault};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

const FAST: CreateOptions = crate::vault::TEST_OPTIONS;

/// A vault holding one backup of a small tree: a dir of `wide` files, a hardlink pair,
/// a symlink, a file with an xattr-free 3 MiB body.
fn vault_with_tree(dir: &Path, wide: usize) -> Vault {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("wide")).unwrap();
    for i in 0..wide {
        std::fs::write(src.join("wide").join(format!("f{i:05}")), i.to_string()).unwrap();
    }
    let big: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    std::fs::write(src.join("big"), &big).unwrap();
    std::fs::hard_link(src.join("big"), src.join("big-link")).unwrap();
    std::os::unix::fs::symlink("big", src.join("sym")).unwrap();
    let vault = Vault::create(&dir.join("vault"), b"pw", FAST).unwrap();
    let options = BackupOptions {
        paths: vec![src],
        ..BackupOptions::default()
    };
    backup(&vault, &options, &NoProgress, &AtomicBool::new(false)).unwrap();
    vault
}

fn view(vault: &Vault, layout: Layout) -> View<'_> {
    View::new(Arc::new(BlockReader::new(vault).unwrap()), layout)
}

fn all_entries(view: &View<'_>, dir: NodeId, page: usize) -> Vec<DirEntry> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let got = view.read_dir(dir, offset, page).unwrap();
        let Some(last) = got.last() else { break };
        offset = last.next_offset;
        out.extend(got);
    }
    out
}

#[test]
fn point_layout_lists_looks_up_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with_tree(dir.path(), 1000);
    let point = vault.resolve_point("latest").unwrap();
    let view = view(&vault, Layout::Point(Box::new(point)));
    let wide = view.lookup(ROOT, b"wide").unwrap();
    assert_eq!(wide.kind, EntryKind::Dir);
    // Listed across many small pages: every entry once, in order, `.` and `..` first.
    let entries = all_entries(&view, wide.ino, 7);
    assert_eq!(entries.len(), 1002);
    assert_eq!(entries[0].name, b".");
    assert_eq!(entries[1].name, b"..");
    assert_eq!(entries[1].attr.ino, ROOT);
    let names: Vec<_> = entries[2..].iter().map(|e| e.name.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted);
    // Stable inode numbers: a lookup finds what the listing said.
    let f = view.lookup(wide.ino, b"f00042").unwrap();
    assert_eq!(f.ino, entries[2 + 42].attr.ino);
    assert_eq!(view.read(f.ino, 0, 100).unwrap(), b"42");
    assert!(matches!(
        view.lookup(wide.ino, b"nope"),
        Err(ViewError::NoSuchEntry { .. })
    ));
    // Hardlinks are one node; the symlink reads back.
    let (big, link) = (
        view.lookup(ROOT, b"big").unwrap(),
        view.lookup(ROOT, b"big-link").unwrap(),
    );
    assert_eq!(big.ino, link.ino);
    assert_eq!(big.nlink, 2);
    let sym = view.lookup(ROOT, b"sym").unwrap();
    assert_eq!(view.read_link(sym.ino).unwrap(), b"big");
    // Reads across block boundaries and past the end.
    let data = view.read(big.ino, (3 << 20) - 10, 100).unwrap();
    assert_eq!(data.len(), 10);
    let whole = view.read(big.ino, 0, 4 << 20).unwrap();
    assert_eq!(whole.len(), 3 << 20);
    assert_eq!(&whole[(3 << 20) - 10..], &data[..]);
    assert!(matches!(
        view.read(wide.ino, 0, 1),
        Err(ViewError::IsADirectory { .. })
    ));
}

#[test]
fn vault_layout_shows_complete_points_by_time_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with_tree(dir.path(), 3);
    let first = vault.resolve_point("latest").unwrap();
    // Two more points in the same second (one complete, one awaiting its seed) and one
    // still running: only the complete one shows, with a suffix.
    let mut same_second = first.clone();
    same_second.id = RecoveryPointId("aaaabbbbccccdddd".into());
    same_second.started_ns += 1;
    let mut waiting = first.clone();
    waiting.id = RecoveryPointId("1111222233334444".into());
    waiting.state = PointState::AwaitingSeed;
    let mut running = first.clone();
    running.id = RecoveryPointId("5555666677778888".into());
    running.state = PointState::Running;
    for p in [&same_second, &waiting, &running] {
        vault
            .catalog()
            .commit_backup(&Default::default(), p)
            .unwrap();
    }
    let view = view(&vault, Layout::Vault);
    let root: Vec<_> = all_entries(&view, ROOT, 100)
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(root, [&b"."[..], b"..", b"latest", b"points", b"sources"]);
    let points = view.lookup(ROOT, b"points").unwrap();
    assert!(!points.stable);
    let names: Vec<_> = all_entries(&view, points.ino, 100)[2..]
        .iter()
        .map(|e| String::from_utf8(e.name.clone()).unwrap())
        .collect();
    let base = crate::time::format_utc(first.started_ns);
    assert_eq!(names, [base.clone(), format!("{base}-aaaabbbb")]);
    let latest = view.lookup(ROOT, b"latest").unwrap();
    assert_eq!(
        view.read_link(latest.ino).unwrap(),
        format!("points/{base}-aaaabbbb").into_bytes()
    );
    let sources = view.lookup(ROOT, b"sources").unwrap();
    let listed = all_entries(&view, sources.ino, 100);
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2].name, source_dir_name(&first.source).into_bytes());
    let by_source = all_entries(&view, listed[2].attr.ino, 100);
    assert_eq!(by_source.len(), 4);
    // The point's tree under points/ reads like the point itself.
    let root_of_first = view.lookup(points.ino, base.as_bytes()).unwrap();
    let big = view.lookup(root_of_first.ino, b"big").unwrap();
    assert!(big.stable);
    assert_eq!(view.read(big.ino, 0, 4).unwrap().len(), 4);
}

#[test]
fn damage_fails_the_read_and_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with_tree(dir.path(), 1);
    let point = vault.resolve_point("latest").unwrap();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let view = view(&vault, Layout::Point(Box::new(point)))
        .with_damage_hook(Box::new(move |err| lock(&sink).push(err.to_string())));
    let big = view.lookup(ROOT, b"big").unwrap();
    let small = view.lookup(ROOT, b"sym").unwrap();
    let map = {
        let node = view.node(big.ino).unwrap();
        view.map_of(&node).unwrap()
    };
    let (loc, _) = view.blocks().locate(&map.blocks[0].1).unwrap();
    let packs = crate::store::LocalBackend::new(vault.root().join("packs"));
    let path = packs.path_of(&loc.pack);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[loc.offset as usize + 20] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    for _ in 0..3 {
        assert!(matches!(
            view.read(big.ino, 0, 10),
            Err(ViewError::Damaged { .. })
        ));
    }
    assert_eq!(view.read_link(small.ino).unwrap(), b"big");
    let reports = lock(&reports);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].contains("/big") && reports[0].contains(&loc.pack.to_hex()));
}

#[test]
fn source_names_escape_slashes() {
    assert_eq!(source_dir_name("/home/a b/x"), "home%2Fa b%2Fx");
    assert_eq!(source_dir_name("/"), "%2F");
    assert_eq!(source_dir_name("/50%/y"), "50%25%2Fy");
}

#[test]
fn tree_read_ahead_crosses_directories_and_keeps_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for (sub, count) in [("a", 10), ("b", 10), ("c", 100)] {
        std::fs::create_dir_all(src.join(sub)).unwrap();
        for i in 0..count {
            let body = format!("{sub}{i} ").repeat(100 + i);
            std::fs::write(src.join(sub).join(format!("f{i:03}")), body).unwrap();
        }
    }
    let vault = Arc::new(Vault::create(&dir.path().join("vault"), b"pw", FAST).unwrap());
    let options = BackupOptions {
        paths: vec![src],
        ..BackupOptions::default()
    };
    backup(&vault, &options, &NoProgress, &AtomicBool::new(false)).unwrap();
    let point = vault.resolve_point("latest").unwrap();
    let reader = crate::reassembly::ReaderOptions {
        readahead_threads: 2,
        ..Default::default()
    };
    let blocks = Arc::new(BlockReader::with_options(vault.clone(), reader).unwrap());
    let view = View::new(blocks.clone(), Layout::Point(Box::new(point)));

    let a = view.lookup(ROOT, b"a").unwrap();
    let first = view.lookup(a.ino, b"f000").unwrap();
    let mut buf = vec![0u8; 1 << 16];
    assert!(view.read_into(first.ino, 0, &mut buf).unwrap() > 0);
    // The file read, then the 64 after it in tree order: a's other 9, all of b, 45 of c.
    let decoded = || blocks.read_times().blocks;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while decoded() < 65 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(decoded(), 65, "read-ahead stops at its window");
    // b's first file was decoded before anyone listed b: reading it decodes nothing.
    let b = view.lookup(ROOT, b"b").unwrap();
    let next = view.lookup(b.ino, b"f000").unwrap();
    let n = view.read_into(next.ino, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], "b0 ".repeat(100).as_bytes());
    let hits = blocks.cache_stats().hits;
    assert!(hits >= 1, "{:?}", blocks.cache_stats());
    assert_eq!(decoded(), 65);
}

#[test]
fn catalog_errors_are_reported_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with_tree(dir.path(), 1);
    let told = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = told.clone();
    let view = view(&vault, Layout::Vault).with_damage_hook(Box::new(move |err| {
        assert!(matches!(err, ViewError::Catalog(_)));
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let corrupt = |what| ViewError::Catalog(crate::catalog::CatalogError::Corrupt(what));
    view.report(&corrupt("a"));
    view.report(&corrupt("a"));
    view.report(&corrupt("b"));
    view.report(&ViewError::NoSuchEntry {
        dir: ROOT,
        name: "x".into(),
    });
    assert_eq!(told.load(Ordering::SeqCst), 2);
}

#[test]
fn a_tree_edited_in_the_catalog_is_an_error_not_a_listing() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with_tree(dir.path(), 3);
    let point = vault.resolve_point("latest").unwrap();
    let root = vault.tree_entries(&point.root_tree).unwrap();
    let wide = root.iter().find(|e| e.name == b"wide").unwrap();
    let wide_tree = wide.subtree.unwrap();
    // A plain-looking rename, written straight into the catalog: names stay valid, so only
    // the check against the tree's id can catch it.
    let mut edited = vault.tree_entries(&wide_tree).unwrap();
    edited[0].name = b"renamed".to_vec();
    let db = rusqlite::Connection::open(vault.root().join("catalog.db")).unwrap();
    db.execute(
        "UPDATE trees SET entries = ?1 WHERE id = ?2",
        rusqlite::params![
            crate::catalog::tree_codec::encode(&edited),
            &wide_tree.0[..]
        ],
    )
    .unwrap();

    let view = view(&vault, Layout::Point(Box::new(point)));
    let wide = view.lookup(ROOT, b"wide").unwrap();
    assert!(matches!(
        view.read_dir(wide.ino, 0, 100),
        Err(ViewError::Catalog(CatalogError::BadTree { .. }))
    ));
}

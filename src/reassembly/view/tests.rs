//! Unit tests of the View, without FUSE: a real vault in a temporary directory.

use super::*;
use crate::catalog::RecoveryPointId;
use crate::ingest::{backup, BackupOptions};
use crate::progress::NoProgress;
use crate::vault::{CreateOptions, Vault};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
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
    assert_eq!(
        root,
        [
            &b"."[..],
            b"..",
            b"latest",
            b"points",
            b"sources",
            b"versions"
        ]
    );
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
    assert_eq!(
        listed[2].name,
        source_dir_name(first.source.as_bytes()).into_bytes()
    );
    assert!(view.lookup(sources.ino, b"home%2fx").is_err());
    let by_source = all_entries(&view, listed[2].attr.ino, 100);
    assert_eq!(by_source.len(), 4);
    // A point's directory has the point's time, wherever it is listed or looked up.
    let times = |entries: &[DirEntry]| -> Vec<(i64, i64)> {
        entries[2..]
            .iter()
            .map(|e| (e.attr.mtime_ns, e.attr.ctime_ns))
            .collect()
    };
    let (t0, t1) = (first.started_ns, same_second.started_ns);
    assert_eq!(
        times(&all_entries(&view, points.ino, 100)),
        [(t0, t0), (t1, t1)]
    );
    assert_eq!(times(&by_source), [(t0, t0), (t1, t1)]);
    assert_ne!(first.root.mtime_ns, t0);
    // The point's tree under points/ reads like the point itself.
    let root_of_first = view.lookup(points.ino, base.as_bytes()).unwrap();
    assert_eq!(root_of_first.mtime_ns, t0);
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
fn source_names_are_one_reversible_encoding() {
    let cases: [(&[u8], &str); 13] = [
        (b"/home/alice", "home%2Falice"),
        (b"/home/a b/x", "home%2Fa b%2Fx"),
        (b"/50%/y", "50%25%2Fy"),
        (b"/a%2Fb", "a%252Fb"),
        (b"/caf\xe9/\xff", "caf%E9%2F%FF"),
        (b"/tab\there\n", "tab%09here%0A"),
        (b"/.config/x.y", "%2Econfig%2Fx.y"),
        (b"/..", "%2E."),
        (b"/", "%2F"),
        (b"//srv", "%2F%2Fsrv"),
        (b"relative/x", ".%2Frelative%2Fx"),
        (b"", ".%2F"),
        (
            "/d\u{e9}j\u{e0} vu, /etc".as_bytes(),
            "d\u{e9}j\u{e0} vu, %2Fetc",
        ),
    ];
    let mut names = std::collections::HashSet::new();
    for (source, name) in cases {
        assert_eq!(source_dir_name(source), name, "{source:?}");
        assert_eq!(
            source_from_dir_name(name.as_bytes()).as_deref(),
            Some(source)
        );
        assert!(names.insert(name), "{name} twice");
    }
    // Names no source has: lower-case or broken escapes, escapes of bytes that need none,
    // bytes that need one, and what the forms above never produce.
    for name in [
        &b"home%2fx"[..],
        b"a%4",
        b"a%zz",
        b"a%41",
        b"caf\xe9",
        b"a\nb",
        b".hidden",
        b".",
        b"..",
        b"%2Fa%2F",
        b".%2F.",
    ] {
        assert_eq!(source_from_dir_name(name), None, "{name:?}");
    }
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

/// A `readdirplus` reply as the kernel takes it: room for `room` entries, each of which (but
/// `.` and `..`) the kernel then holds a lookup on.
struct KernelPage {
    entries: Vec<DirEntry>,
    room: usize,
}

impl DirSink for KernelPage {
    const COUNTS_LOOKUPS: bool = true;

    fn add(&mut self, entry: DirEntry) -> bool {
        let room = self.entries.len() < self.room;
        if room {
            self.entries.push(entry);
        }
        room
    }
}

/// One `readdirplus` page of `room` entries from `offset`.
fn kernel_page(view: &View<'_>, dir: NodeId, offset: u64, room: usize) -> Vec<DirEntry> {
    let mut page = KernelPage {
        entries: Vec::new(),
        room,
    };
    view.list(dir, offset, &mut page).unwrap();
    page.entries
}

fn is_dot(entry: &DirEntry) -> bool {
    entry.name == b"." || entry.name == b".."
}

#[test]
fn forgotten_nodes_are_dropped_and_found_again_with_the_same_content() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with_tree(dir.path(), 50);
    let point = vault.resolve_point("latest").unwrap();
    let view = view(&vault, Layout::Point(Box::new(point)));
    // Counting only what the kernel holds: reads also make a few nodes ahead of it (tree
    // read-ahead), which the last test bounds.
    assert_eq!(view.nodes.held(), 1, "the root only");
    let wide = view.lookup(ROOT, b"wide").unwrap();
    let name = |i: usize| format!("f{i:05}").into_bytes();
    let files: Vec<Attr> = (0..50)
        .map(|i| view.lookup(wide.ino, &name(i)).unwrap())
        .collect();
    // A second lookup of a name finds the same node and counts it again.
    assert_eq!(view.lookup(wide.ino, &name(7)).unwrap().ino, files[7].ino);
    assert_eq!(view.nodes.held(), 52);

    for file in &files {
        view.forget(file.ino, 1);
    }
    assert_eq!(
        view.nodes.held(),
        3,
        "root, wide, and f00007 held once more"
    );
    assert_eq!(view.read(files[7].ino, 0, 10).unwrap(), b"7");
    view.forget(files[7].ino, 1);
    assert_eq!(view.nodes.held(), 2);
    assert!(matches!(
        view.attr(files[42].ino),
        Err(ViewError::UnknownNode { .. })
    ));

    // Found again: a new number, the same file.
    for i in [0, 7, 42, 49] {
        let again = view.lookup(wide.ino, &name(i)).unwrap();
        assert!(
            files.iter().all(|f| f.ino != again.ino),
            "ids are not reused"
        );
        assert_eq!(
            view.read(again.ino, 0, 10).unwrap(),
            i.to_string().as_bytes()
        );
        assert_eq!(again.size, files[i].size);
        view.forget(again.ino, 1);
    }
    assert_eq!(view.nodes.held(), 2);

    // Both names of a hardlinked file are one node, held until both lookups are forgotten.
    let (big, link) = (
        view.lookup(ROOT, b"big").unwrap(),
        view.lookup(ROOT, b"big-link").unwrap(),
    );
    assert_eq!(big.ino, link.ino);
    view.forget(big.ino, 1);
    assert_eq!(view.read(link.ino, 0, 4).unwrap().len(), 4);
    view.forget(link.ino, 1);
    assert!(view.attr(big.ino).is_err());

    // The root never goes; forgetting what is unknown does nothing.
    view.forget(wide.ino, 1);
    view.forget(ROOT, 10);
    view.forget(NodeId(1 << 40), 1);
    assert_eq!(view.nodes.held(), 1);
    assert!(view.attr(ROOT).is_ok());
    assert_eq!(view.lookup(ROOT, b"sym").unwrap().kind, EntryKind::Symlink);
}

#[test]
fn a_listing_counts_exactly_the_entries_the_kernel_took() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with_tree(dir.path(), 100);
    let point = vault.resolve_point("latest").unwrap();
    let view = view(&vault, Layout::Point(Box::new(point)));
    let wide = view.lookup(ROOT, b"wide").unwrap();
    // Pages of 7: `.` and `..` are not counted, and each page's refused eighth entry is
    // given back.
    let mut offset = 0;
    let mut taken = Vec::new();
    loop {
        let page = kernel_page(&view, wide.ino, offset, 7);
        let Some(last) = page.last() else { break };
        offset = last.next_offset;
        taken.extend(page.into_iter().filter(|e| !is_dot(e)));
    }
    assert_eq!(taken.len(), 100);
    assert_eq!(view.nodes.held(), 2 + 100);
    // What the listing handed out is what a lookup finds, until forgotten.
    assert_eq!(
        view.lookup(wide.ino, b"f00031").unwrap().ino,
        taken[31].attr.ino
    );
    view.forget(taken[31].attr.ino, 1);
    for entry in &taken {
        view.forget(entry.attr.ino, 1);
    }
    assert_eq!(view.nodes.held(), 2);
    // A listing that counts nothing (plain readdir) keeps its nodes only as a bounded few.
    assert_eq!(all_entries(&view, wide.ino, 10).len(), 102);
    assert_eq!(view.nodes.held(), 2);
    assert_eq!(view.nodes.len(), 2 + 100);
}

/// Writes `dirs` x `subdirs` directories of `files` small files each under `root`, bodies and
/// sizes from `seed`; returns each file's path (relative) and body.
fn seeded_tree(
    root: &Path,
    seed: u64,
    (dirs, subdirs, files): (usize, usize, usize),
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = BTreeMap::new();
    for d in 0..dirs {
        for s in 0..subdirs {
            let rel = format!("d{d:03}/s{s:02}");
            std::fs::create_dir_all(root.join(&rel)).unwrap();
            for f in 0..files {
                let mut body = vec![0u8; rng.random_range(1..200)];
                rng.fill(&mut body[..]);
                let path = format!("{rel}/f{f:03}");
                std::fs::write(root.join(&path), &body).unwrap();
                out.insert(path.into_bytes(), body);
            }
        }
    }
    out
}

/// Walks the tree under `dir` as `find` does through the kernel: lists each directory in
/// `readdirplus` pages, reads every `read_every`th file, and forgets a directory's entries
/// once it is done, as the kernel does when it evicts them. Records the files seen with
/// their bytes and the most nodes the view held at once.
struct FindLike<'a, 'v> {
    view: &'a View<'v>,
    read_every: usize,
    files: BTreeMap<Vec<u8>, Vec<u8>>,
    peak_nodes: usize,
}

impl FindLike<'_, '_> {
    fn walk(&mut self, dir: NodeId, path: &[u8]) {
        let mut offset = 0;
        let mut held = Vec::new();
        loop {
            let page = kernel_page(self.view, dir, offset, 64);
            let Some(last) = page.last() else { break };
            offset = last.next_offset;
            held.extend(page.into_iter().filter(|e| !is_dot(e)));
            self.peak_nodes = self.peak_nodes.max(self.view.nodes.len());
        }
        for entry in &held {
            let child = [path, b"/".as_slice(), &entry.name].concat();
            let child = child.strip_prefix(b"/").unwrap_or(&child).to_vec();
            match entry.attr.kind {
                EntryKind::Dir => self.walk(entry.attr.ino, &child),
                _ if self.files.len() % self.read_every == 0 => {
                    let body = self.view.read(entry.attr.ino, 0, 4096).unwrap();
                    self.files.insert(child, body);
                }
                _ => {
                    self.files.insert(child, Vec::new());
                }
            }
            self.peak_nodes = self.peak_nodes.max(self.view.nodes.len());
        }
        for entry in &held {
            self.view.forget(entry.attr.ino, 1);
        }
    }
}

#[test]
fn listing_a_large_tree_again_and_again_keeps_the_node_table_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    // 20,000 files in 200 directories of 100, under 20 directories of 10.
    let want = seeded_tree(&src, 20_000, (20, 10, 100));
    let vault = Vault::create(&dir.path().join("vault"), b"pw", FAST).unwrap();
    let options = BackupOptions {
        paths: vec![src],
        ..BackupOptions::default()
    };
    backup(&vault, &options, &NoProgress, &AtomicBool::new(false)).unwrap();
    let point = vault.resolve_point("latest").unwrap();
    let view = view(&vault, Layout::Point(Box::new(point)));

    // What the kernel holds at most: the entries of one directory per level (20, 10 and
    // 100); besides, the root and the few nodes made ahead without a count.
    let bound = 1 + 20 + 10 + 100 + node::UNCOUNTED_NODES;
    for pass in 0..3 {
        let mut find = FindLike {
            view: &view,
            read_every: 97,
            files: BTreeMap::new(),
            peak_nodes: 0,
        };
        find.walk(ROOT, b"");
        assert!(
            want.keys().eq(find.files.keys()),
            "pass {pass}: the walk saw other files"
        );
        let read: Vec<_> = find.files.iter().filter(|(_, b)| !b.is_empty()).collect();
        assert!(read.len() > 200, "pass {pass}: {} files read", read.len());
        for (path, body) in read {
            assert_eq!(body, &want[path], "pass {pass}: {path:?} reads wrong");
        }
        assert!(
            find.peak_nodes <= bound,
            "pass {pass}: {} nodes held, bound {bound}",
            find.peak_nodes
        );
        assert!(view.nodes.len() <= 1 + node::UNCOUNTED_NODES, "pass {pass}");
    }
}

#[test]
fn only_a_point_settled_without_xattrs_says_it_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_with_tree(dir.path(), 2);
    let plain = vault.resolve_point("latest").unwrap();
    assert!(view(&vault, Layout::Point(Box::new(plain.clone()))).xattrs_absent());
    // The vault layout gains points, which may have xattrs.
    assert!(!view(&vault, Layout::Vault).xattrs_absent());

    let src = dir.path().join("src");
    rustix::fs::setxattr(
        src.join("wide").join("f00001"),
        "user.k",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let options = BackupOptions {
        paths: vec![src],
        ..BackupOptions::default()
    };
    backup(&vault, &options, &NoProgress, &AtomicBool::new(false)).unwrap();
    let tagged = vault.resolve_point("latest").unwrap();
    let view = view(&vault, Layout::Point(Box::new(tagged)));
    assert!(!view.xattrs_absent());
    let wide = view.lookup(ROOT, b"wide").unwrap();
    let file = view.lookup(wide.ino, b"f00001").unwrap();
    assert_eq!(view.xattr(file.ino, b"user.k").unwrap(), b"v");
    assert_eq!(view.xattr_names(file.ino).unwrap(), [b"user.k".to_vec()]);
    let other = view.lookup(wide.ino, b"f00000").unwrap();
    assert!(matches!(
        view.xattr(other.ino, b"user.k"),
        Err(ViewError::NoSuchXattr { .. })
    ));

    // A catalog that has not settled the point's trees (one from before the column) says
    // nothing for sure.
    let db = rusqlite::Connection::open(vault.root().join("catalog.db")).unwrap();
    db.execute(
        "UPDATE trees SET xattrs = NULL WHERE id = ?1",
        [&plain.root_tree.0[..]],
    )
    .unwrap();
    assert!(!self::view(&vault, Layout::Point(Box::new(plain))).xattrs_absent());
}

#[test]
fn versions_of_a_path_that_changed_kind_are_each_shown_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let x = src.join("x");
    let vault = Vault::create(&dir.path().join("vault"), b"pw", FAST).unwrap();
    let options = BackupOptions {
        paths: vec![src.clone()],
        ..BackupOptions::default()
    };
    let back_up = || backup(&vault, &options, &NoProgress, &AtomicBool::new(false)).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(&x, b"a file").unwrap();
    back_up();
    std::fs::remove_file(&x).unwrap();
    std::fs::create_dir(&x).unwrap();
    std::fs::write(x.join("y"), b"inside").unwrap();
    let dir_meta = std::fs::metadata(&x).unwrap();
    let dir_mtime_ns = std::os::unix::fs::MetadataExt::mtime(&dir_meta) * 1_000_000_000
        + std::os::unix::fs::MetadataExt::mtime_nsec(&dir_meta);
    back_up();
    std::fs::remove_dir_all(&x).unwrap();
    std::fs::write(&x, b"a file again").unwrap();
    back_up();

    let view = view(&vault, Layout::Vault);
    let named = |dir: NodeId| -> Vec<(Vec<u8>, Attr)> {
        all_entries(&view, dir, 100)[2..]
            .iter()
            .map(|e| (e.name.clone(), e.attr.clone()))
            .collect()
    };
    let points = view.lookup(ROOT, b"points").unwrap();
    let point_names: Vec<Vec<u8>> = named(points.ino).into_iter().map(|(n, _)| n).collect();
    let versions = view.lookup(ROOT, b"versions").unwrap();
    let [(_, source)] = named(versions.ino).try_into().unwrap();
    let x_versions = view.lookup(source.ino, b"x").unwrap();
    assert_eq!(x_versions.kind, EntryKind::Dir);
    // Newest first, one per point, each named as points/ names the point it appeared in.
    let listed = named(x_versions.ino);
    let newest_first: Vec<Vec<u8>> = point_names.iter().rev().cloned().collect();
    assert_eq!(
        listed.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        newest_first
    );
    let [(_, again), (_, as_dir), (_, first)] = listed.try_into().unwrap();
    assert_eq!(view.read(first.ino, 0, 100).unwrap(), b"a file");
    assert_eq!(view.read(again.ino, 0, 100).unwrap(), b"a file again");
    // The directory version is browsable; its times are the directory's, not the point's.
    assert_eq!(as_dir.kind, EntryKind::Dir);
    let y = view.lookup(as_dir.ino, b"y").unwrap();
    assert_eq!(view.read(y.ino, 0, 100).unwrap(), b"inside");
    assert_eq!(as_dir.mtime_ns, dir_mtime_ns);
    assert!(as_dir.stable && first.stable);
    // Looked up again, a version is the same node; a name that is no version is none.
    assert_eq!(
        view.lookup(x_versions.ino, &newest_first[2]).unwrap().ino,
        first.ino
    );
    assert!(matches!(
        view.lookup(x_versions.ino, b"2000-01-01T00:00:00Z"),
        Err(ViewError::NoSuchEntry { .. })
    ));
}

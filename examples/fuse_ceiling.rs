//! The FUSE ceiling of this machine: a minimal read-only file system that mirrors the shape
//! of a directory (names, kinds, sizes, modes) and serves constant bytes from memory.
//!
//! `benches/mount-compare.sh` reads it the same way as synvault's mount, so the difference
//! between the two is what synvault itself costs. It uses the same kernel settings as
//! synvault's adapter (readdirplus, no opens, long TTLs, 1 MiB reads, a thread per core on
//! cloned descriptors, the same mount options and a 16 MiB kernel read-ahead), so it
//! measures the kernel and the FUSE protocol, nothing else.
//!
//! Usage: `fuse_ceiling SOURCE_DIR MOUNTPOINT` (foreground; stop with Ctrl-C or umount).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, Request,
};

const TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The bytes every file is made of.
static FILL: [u8; 1 << 20] = [b'x'; 1 << 20];

struct Node {
    parent: u64,
    name: Vec<u8>,
    attr: FileAttr,
    target: Vec<u8>,
    /// (name, ino), sorted by name.
    children: Vec<(Vec<u8>, u64)>,
}

struct Ceiling {
    nodes: Vec<Node>,
}

fn kind(meta: &std::fs::Metadata) -> FileType {
    let ft = meta.file_type();
    FileType::from_std(ft).unwrap_or(FileType::RegularFile)
}

fn scan(root: &Path) -> Vec<Node> {
    let mut nodes = Vec::new();
    let meta = std::fs::symlink_metadata(root).unwrap();
    nodes.push(node(0, b"", &meta, root, 1));
    let mut pending = vec![(1u64, root.to_path_buf())];
    while let Some((ino, path)) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let child = entry.path();
            let meta = std::fs::symlink_metadata(&child).unwrap();
            let child_ino = nodes.len() as u64 + 1;
            let name = entry.file_name().as_bytes().to_vec();
            nodes.push(node(ino, &name, &meta, &child, child_ino));
            nodes[ino as usize - 1].children.push((name, child_ino));
            if meta.is_dir() {
                pending.push((child_ino, child));
            }
        }
    }
    nodes
}

fn node(parent: u64, name: &[u8], meta: &std::fs::Metadata, path: &Path, ino: u64) -> Node {
    let mtime = UNIX_EPOCH + Duration::from_secs(meta.mtime().max(0) as u64);
    let target = if meta.file_type().is_symlink() {
        std::fs::read_link(path)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec()
    } else {
        Vec::new()
    };
    Node {
        parent,
        name: name.to_vec(),
        attr: FileAttr {
            ino: INodeNo(ino),
            size: meta.len(),
            blocks: meta.blocks(),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: kind(meta),
            perm: (meta.mode() & 0o7777) as u16,
            nlink: 1,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: 0,
            blksize: 1 << 20,
            flags: 0,
        },
        target,
        children: Vec::new(),
    }
}

impl Ceiling {
    fn get(&self, ino: INodeNo) -> Option<&Node> {
        self.nodes.get((u64::from(ino) as usize).checked_sub(1)?)
    }

    /// (name, ino) pairs of a directory listing, `.` and `..` first.
    fn listing(&self, ino: INodeNo) -> Option<Vec<(&[u8], u64)>> {
        let node = self.get(ino)?;
        let parent = if node.parent == 0 { 1 } else { node.parent };
        let mut out: Vec<(&[u8], u64)> = vec![(b".", ino.into()), (b"..", parent)];
        out.extend(node.children.iter().map(|(n, i)| (n.as_slice(), *i)));
        Some(out)
    }
}

impl Filesystem for Ceiling {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_ASYNC_READ,
            InitFlags::FUSE_MAX_PAGES,
        ] {
            let _ = config.add_capabilities(flag);
        }
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.get(parent).and_then(|p| {
            p.children
                .binary_search_by(|(n, _)| n.as_slice().cmp(name.as_bytes()))
                .ok()
                .map(|i| p.children[i].1)
        });
        match found.and_then(|ino| self.get(INodeNo(ino))) {
            Some(node) => reply.entry(&TTL, &node.attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.get(ino) {
            Some(node) => reply.attr(&TTL, &node.attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.get(ino) {
            Some(node) => reply.data(&node.target),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(Errno::ENOSYS);
    }

    fn flush(&self, _: &Request, _: INodeNo, _: FileHandle, _: LockOwner, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(node) = self.get(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let len = (size as u64).min(node.attr.size.saturating_sub(offset)) as usize;
        reply.data(&FILL[..len.min(FILL.len())]);
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(
            FileHandle(0),
            fuser::FopenFlags::FOPEN_CACHE_DIR | fuser::FopenFlags::FOPEN_KEEP_CACHE,
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(listing) = self.listing(ino) else {
            return reply.error(Errno::ENOENT);
        };
        for (i, (name, child)) in listing.into_iter().enumerate().skip(offset as usize) {
            let kind = self
                .get(INodeNo(child))
                .map_or(FileType::Directory, |n| n.attr.kind);
            if reply.add(INodeNo(child), i as u64 + 1, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(listing) = self.listing(ino) else {
            return reply.error(Errno::ENOENT);
        };
        for (i, (name, child)) in listing.into_iter().enumerate().skip(offset as usize) {
            let Some(node) = self.get(INodeNo(child)) else {
                continue;
            };
            let name = OsStr::from_bytes(name);
            if reply.add(
                INodeNo(child),
                i as u64 + 1,
                name,
                &TTL,
                &node.attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }
}

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [source, mountpoint] = &args[..] else {
        eprintln!("usage: fuse_ceiling SOURCE_DIR MOUNTPOINT");
        std::process::exit(2);
    };
    let fs = Ceiling {
        nodes: scan(source),
    };
    let names = fs.nodes.iter().filter(|n| !n.name.is_empty()).count();
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("fuse-ceiling".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    let threads = std::env::var("CEILING_THREADS")
        .ok()
        .and_then(|t| t.parse().ok());
    config.n_threads =
        Some(threads.unwrap_or(std::thread::available_parallelism().map_or(2, |n| n.get())));
    config.clone_fd = true;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).unwrap();
    }
    let session = fuser::Session::new(fs, mountpoint, &config).unwrap();
    let background = session.spawn().unwrap();
    // The kernel read-ahead synvault's mount sets on itself (its default, 16 MiB).
    synvault::mount::tune_readahead(
        mountpoint,
        synvault::mount::MountOptions::default().readahead_kib,
    );
    eprintln!(
        "fuse_ceiling: {names} entries mounted at {}",
        mountpoint.display()
    );
    while !stop.load(Ordering::Relaxed) && !background.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !background.guard.is_finished() {
        let _ = background.umount_and_join();
    }
}

//! The fuser `Filesystem`: each callback asks the [`View`] and replies exactly once.
//!
//! Kernel settings chosen for throughput, all safe because a point never changes:
//! - long entry and attribute TTLs inside points (1 s for the vault-level directories, which
//!   gain new points);
//! - `readdirplus`, so listing a directory also answers the `stat` of every entry;
//! - no `open`/`flush`/`release` round trips for files: `open` answers ENOSYS, which makes the
//!   kernel skip opens and keep the page cache of files between opens;
//! - no xattr round trips for a point without xattrs: `getxattr` and `listxattr` answer
//!   ENOSYS, after which the kernel answers EOPNOTSUPP itself for the rest of the mount
//!   (`ls -l` asks two per file). Otherwise the view answers from the entry it holds;
//! - directory listings of points cached in the kernel (`FOPEN_CACHE_DIR`);
//! - 1 MiB reads (`max_pages`), the largest read-ahead the kernel allows, and many
//!   background requests in flight.
//!
//! `forget` passes the kernel's lookup counts back to the view, which drops the nodes the
//! kernel no longer holds. Write-side calls are not implemented: the mount is read-only in
//! the kernel (`MountOption::RO`), whose VFS answers EROFS before they reach FUSE, and fuser's
//! defaults (ENOSYS) cover the rest.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use super::errno::errno;
use crate::catalog::EntryKind;
use crate::reassembly::buffers::BufferPool;
use crate::reassembly::view::{Attr, DirEntry, DirSink, NodeId, View, ViewError};

/// How long the kernel may keep what never changes.
const STABLE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long it may keep the vault-level directories, which gain points.
const VOLATILE_TTL: Duration = Duration::from_secs(1);
const BLKSIZE: u32 = 1 << 20;
/// Spare read buffers kept for reuse: eight of the largest read (1 MiB), one per thread and a
/// few more for bursts.
const SPARE_READ_BYTES: usize = 8 << 20;

/// The file system the kernel talks to.
pub(crate) struct SynvaultFs {
    view: Arc<View<'static>>,
    /// Set in `init` when the kernel can skip opens.
    no_open: bool,
    /// Set in `init` when nothing in the mount has xattrs.
    no_xattrs: bool,
    /// Read buffers, reused: a fresh 1 MiB buffer per request costs page faults.
    buffers: BufferPool,
}

impl SynvaultFs {
    pub(crate) fn new(view: Arc<View<'static>>) -> SynvaultFs {
        SynvaultFs {
            view,
            no_open: false,
            no_xattrs: false,
            buffers: BufferPool::new(SPARE_READ_BYTES),
        }
    }

    /// The errno for `err`, reporting the errors the kernel cannot pass on (catalog ones).
    fn fail(&self, err: &ViewError) -> fuser::Errno {
        self.view.report(err);
        errno(err)
    }
}

/// A `readdir` reply: names and kinds; the kernel takes no lookups from it.
struct Names(ReplyDirectory);

impl DirSink for Names {
    const COUNTS_LOOKUPS: bool = false;

    fn add(&mut self, entry: DirEntry) -> bool {
        let (ino, kind) = (INodeNo(entry.attr.ino.0), file_type(entry.attr.kind));
        let full = self
            .0
            .add(ino, entry.next_offset, kind, OsStr::from_bytes(&entry.name));
        !full
    }
}

/// A `readdirplus` reply: each entry but `.` and `..` is a lookup the kernel will forget.
struct NamesAndAttrs(ReplyDirectoryPlus);

impl DirSink for NamesAndAttrs {
    const COUNTS_LOOKUPS: bool = true;

    fn add(&mut self, entry: DirEntry) -> bool {
        let attr = &entry.attr;
        let full = self.0.add(
            INodeNo(attr.ino.0),
            entry.next_offset,
            OsStr::from_bytes(&entry.name),
            &ttl(attr),
            &to_file_attr(attr),
            Generation(0),
        );
        !full
    }
}

fn ttl(attr: &Attr) -> Duration {
    if attr.stable {
        STABLE_TTL
    } else {
        VOLATILE_TTL
    }
}

fn time(ns: i64) -> SystemTime {
    let magnitude = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

fn file_type(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::File => FileType::RegularFile,
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::CharDev => FileType::CharDevice,
        EntryKind::BlockDev => FileType::BlockDevice,
        EntryKind::Socket => FileType::Socket,
    }
}

/// `st_rdev` in the kernel's 32-bit "new" device encoding that FUSE carries.
fn kernel_rdev(rdev: u64) -> u32 {
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

fn to_file_attr(attr: &Attr) -> FileAttr {
    let mtime = time(attr.mtime_ns);
    FileAttr {
        ino: INodeNo(attr.ino.0),
        size: attr.size,
        blocks: attr.blocks,
        atime: mtime,
        mtime,
        ctime: time(attr.ctime_ns),
        crtime: mtime,
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: kernel_rdev(attr.rdev),
        blksize: BLKSIZE,
        flags: 0,
    }
}

fn node(ino: INodeNo) -> NodeId {
    NodeId(ino.into())
}

/// Replies with `data` to an xattr request of `size` bytes (0 asks for the size).
fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(errno(&ViewError::BufferTooSmall { needed: data.len() }));
    } else {
        reply.data(data);
    }
}

impl Filesystem for SynvaultFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_MAX_PAGES;
        for flag in wanted.iter() {
            // A kernel without one of these still mounts; it just makes more round trips.
            let _ = config.add_capabilities(flag);
        }
        self.no_xattrs = self.view.xattrs_absent();
        self.no_open = config
            .capabilities()
            .contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.view.lookup(node(parent), name.as_bytes()) {
            Ok(attr) => reply.entry(&ttl(&attr), &to_file_attr(&attr), Generation(0)),
            Err(err) => reply.error(self.fail(&err)),
        }
    }

    /// Also serves `batch_forget`: fuser's default calls this once per node (and fuser 0.18
    /// does not export the batch's entry type, so it cannot be overridden).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.view.forget(node(ino), nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.view.attr(node(ino)) {
            Ok(attr) => reply.attr(&ttl(&attr), &to_file_attr(&attr)),
            Err(err) => reply.error(self.fail(&err)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.view.read_link(node(ino)) {
            Ok(target) => reply.data(&target),
            Err(err) => reply.error(self.fail(&err)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.no_open {
            // ENOSYS with FUSE_NO_OPEN_SUPPORT: the kernel stops sending opens (and releases)
            // and keeps file pages cached across opens.
            reply.error(fuser::Errno::ENOSYS);
            return;
        }
        match self.view.attr(node(ino)) {
            Ok(_) => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
            ),
            Err(err) => reply.error(self.fail(&err)),
        }
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
        // The view overwrites every byte it reports, so the stale bytes of a reused buffer
        // are never sent.
        let mut buf = self.buffers.take_sized(size as usize);
        match self.view.read_into(node(ino), offset, &mut buf) {
            Ok(n) => reply.data(&buf[..n]),
            Err(err) => reply.error(self.fail(&err)),
        }
        self.buffers.give(buf);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // ENOSYS: the kernel stops sending flushes; nothing is ever dirty here.
        reply.error(fuser::Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.view.attr(node(ino)) {
            Ok(attr) if attr.kind != EntryKind::Dir => {
                reply.error(errno(&ViewError::NotADirectory { ino: attr.ino }))
            }
            Ok(attr) if attr.stable => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(err) => reply.error(self.fail(&err)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let mut names = Names(reply);
        match self.view.list(node(ino), offset, &mut names) {
            Ok(()) => names.0.ok(),
            Err(err) => names.0.error(self.fail(&err)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let mut entries = NamesAndAttrs(reply);
        match self.view.list(node(ino), offset, &mut entries) {
            Ok(()) => entries.0.ok(),
            Err(err) => entries.0.error(self.fail(&err)),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let totals = self.view.totals();
        reply.statfs(
            totals.bytes.div_ceil(4096),
            0,
            0,
            totals.nodes,
            0,
            4096,
            255,
            4096,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if self.no_xattrs {
            // ENOSYS: the kernel stops asking; nothing here has xattrs.
            reply.error(fuser::Errno::ENOSYS);
            return;
        }
        match self.view.xattr(node(ino), name.as_bytes()) {
            Ok(value) => reply_xattr(reply, size, &value),
            Err(err) => reply.error(self.fail(&err)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if self.no_xattrs {
            reply.error(fuser::Errno::ENOSYS);
            return;
        }
        match self.view.xattr_names(node(ino)) {
            Ok(names) => {
                let mut list = Vec::new();
                for name in names {
                    list.extend_from_slice(&name);
                    list.push(0);
                }
                reply_xattr(reply, size, &list);
            }
            Err(err) => reply.error(self.fail(&err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_use_the_kernel_encoding() {
        let dev = rustix::fs::makedev(1, 3);
        assert_eq!(kernel_rdev(dev), 0x103);
        let big = rustix::fs::makedev(259, 70000);
        let k = kernel_rdev(big);
        assert_eq!((k >> 8) & 0xfff, 259);
        assert_eq!((k & 0xff) | ((k >> 12) & !0xff), 70000);
    }

    #[test]
    fn times_before_the_epoch() {
        assert_eq!(
            time(-1_500_000_000),
            UNIX_EPOCH - Duration::from_millis(1500)
        );
        assert_eq!(time(2_000_000_001), UNIX_EPOCH + Duration::new(2, 1));
    }
}

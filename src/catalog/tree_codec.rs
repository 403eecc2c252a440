//! The stored form of a directory listing: entries in a compact binary encoding, compressed
//! with zstd, one blob per tree. Directory metadata compresses several-fold (names, owners and
//! times repeat), which keeps the catalog smaller than a row per entry and lets a directory be
//! read with one lookup.
//!
//! ```text
//! blob  = TREE_CODEC_V1 u8 | zstd(body)
//! body  = count varint | entry*
//! entry = name_len varint | name | kind u8 | flags u8 (1 content, 2 subtree, 4 target, 8 xattrs)
//!         | mode | uid | gid varint | mtime_ns | ctime_ns zigzag varint
//!         | size | inode | nlink | rdev varint
//!         | [content 32] | [subtree 32] | [target_len varint | target]
//!         | [xattr_count varint | (name_len varint | name | value_len varint | value)*]
//! ```
//!
//! Decoding is where names from the store are first trusted, so it refuses a tree with a name
//! that is not one plain path component (empty, `.`, `..`, or holding `/` or NUL): such a name
//! would let restore write outside its target. Whether a tree hashes to its id needs the vault
//! key and is checked by `Vault::tree_entries`.

use super::model::{ContentId, Entry, EntryKind, TreeId};

/// Version byte of the encoding written by this build.
pub const TREE_CODEC_V1: u8 = 1;
const ZSTD_LEVEL: i32 = 3;
/// A damaged size field must not make us allocate without bound.
const MAX_BODY_BYTES: u64 = 1 << 30;

const KINDS: [EntryKind; 7] = [
    EntryKind::File,
    EntryKind::Dir,
    EntryKind::Symlink,
    EntryKind::Fifo,
    EntryKind::CharDev,
    EntryKind::BlockDev,
    EntryKind::Socket,
];

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_signed(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encodes and compresses a directory's entries.
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut body = Vec::with_capacity(entries.len() * 96);
    put_varint(&mut body, entries.len() as u64);
    for e in entries {
        put_bytes(&mut body, &e.name);
        body.push(KINDS.iter().position(|k| *k == e.kind).unwrap_or(0) as u8);
        let flags = u8::from(e.content.is_some())
            | u8::from(e.subtree.is_some()) << 1
            | u8::from(e.target.is_some()) << 2
            | u8::from(!e.xattrs.is_empty()) << 3;
        body.push(flags);
        for v in [u64::from(e.mode), u64::from(e.uid), u64::from(e.gid)] {
            put_varint(&mut body, v);
        }
        put_signed(&mut body, e.mtime_ns);
        put_signed(&mut body, e.ctime_ns);
        for v in [e.size, e.inode, e.nlink, e.rdev] {
            put_varint(&mut body, v);
        }
        if let Some(c) = e.content {
            body.extend_from_slice(&c.0);
        }
        if let Some(t) = e.subtree {
            body.extend_from_slice(&t.0);
        }
        if let Some(target) = &e.target {
            put_bytes(&mut body, target);
        }
        if !e.xattrs.is_empty() {
            put_varint(&mut body, e.xattrs.len() as u64);
            for (name, value) in &e.xattrs {
                put_bytes(&mut body, name);
                put_bytes(&mut body, value);
            }
        }
    }
    let mut out = vec![TREE_CODEC_V1];
    match zstd::bulk::compress(&body, ZSTD_LEVEL) {
        Ok(z) => out.extend_from_slice(&z),
        Err(_) => return Vec::new(), // cannot happen for in-memory input; decode rejects it
    }
    out
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first()?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn signed(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.varint()?).ok()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = usize::try_from(self.varint()?).ok()?;
        Some(self.take(n)?.to_vec())
    }

    fn id(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn entry(&mut self) -> Option<Entry> {
        let name = self.bytes()?;
        let kind = *KINDS.get(usize::from(self.byte()?))?;
        let flags = self.byte()?;
        let (mode, uid, gid) = (self.u32()?, self.u32()?, self.u32()?);
        let (mtime_ns, ctime_ns) = (self.signed()?, self.signed()?);
        let (size, inode, nlink, rdev) = (
            self.varint()?,
            self.varint()?,
            self.varint()?,
            self.varint()?,
        );
        let content = if flags & 1 != 0 {
            Some(ContentId(self.id()?))
        } else {
            None
        };
        let subtree = if flags & 2 != 0 {
            Some(TreeId(self.id()?))
        } else {
            None
        };
        let target = if flags & 4 != 0 {
            Some(self.bytes()?)
        } else {
            None
        };
        let mut xattrs = Vec::new();
        if flags & 8 != 0 {
            for _ in 0..self.varint()? {
                xattrs.push((self.bytes()?, self.bytes()?));
            }
        }
        Some(Entry {
            name,
            kind,
            mode,
            uid,
            gid,
            mtime_ns,
            ctime_ns,
            size,
            inode,
            nlink,
            content,
            subtree,
            target,
            rdev,
            xattrs,
        })
    }
}

/// Why a stored tree cannot be trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("its encoding is damaged")]
    Damaged,
    #[error("entry name {name:?} is not a plain file name")]
    BadName { name: String },
    #[error("its entries do not hash to its id")]
    HashMismatch,
    #[error("it contains itself")]
    Cycle,
    #[error("it is nested more than {max} directories deep")]
    TooDeep { max: usize },
}

/// The first 16 hex digits of a tree id, as messages name trees.
pub fn short_hex(tree: &TreeId) -> String {
    hex::encode(&tree.0[..8])
}

/// True if `name` is one plain path component: not empty, not `.` or `..`, no `/`, no NUL.
pub fn is_plain_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// Decodes a stored tree, refusing a damaged blob and names that are not plain (see
/// [`is_plain_name`]).
pub fn decode(blob: &[u8]) -> Result<Vec<Entry>, TreeError> {
    let entries = decode_entries(blob).ok_or(TreeError::Damaged)?;
    match entries.iter().find(|e| !is_plain_name(&e.name)) {
        Some(bad) => Err(TreeError::BadName {
            name: String::from_utf8_lossy(&bad.name).into_owned(),
        }),
        None => Ok(entries),
    }
}

fn decode_entries(blob: &[u8]) -> Option<Vec<Entry>> {
    let (&version, z) = blob.split_first()?;
    if version != TREE_CODEC_V1 {
        return None;
    }
    // bulk::compress records the body's size in the frame; decoding with the thread's reused
    // context avoids making a zstd context per directory.
    let len = zstd::zstd_safe::get_frame_content_size(z)
        .ok()??
        .min(MAX_BODY_BYTES);
    let body = crate::store::block::decompress(z, usize::try_from(len).ok()?)?;
    let mut r = Reader { buf: &body };
    let count = r.varint()?;
    let mut entries = Vec::with_capacity(usize::try_from(count).ok()?.min(1 << 20));
    for _ in 0..count {
        entries.push(r.entry()?);
    }
    r.buf.is_empty().then_some(entries)
}

/// The Merkle id of a directory: keyed blake3 of its canonical encoding (ingest computes it,
/// readers check a tree against it; the key keeps ids from revealing content).
pub fn tree_id(key: &crate::crypto::Key, entries: &[Entry]) -> TreeId {
    // The bytes hashed are laid out in one buffer and hashed at once: blake3 is many times
    // faster over one long input than over a dozen small updates per entry, and the id is
    // the same (readers check every tree they load, so this is on the path of `find`).
    let mut bytes = Vec::with_capacity(7 + entries.len() * 160);
    bytes.extend_from_slice(b"tree v1");
    for e in entries {
        bytes.extend_from_slice(&(e.name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&e.name);
        bytes.extend_from_slice(e.kind.as_str().as_bytes());
        for n in [
            u64::from(e.mode),
            u64::from(e.uid),
            u64::from(e.gid),
            e.mtime_ns as u64,
            e.ctime_ns as u64,
            e.size,
            e.inode,
            e.nlink,
            e.rdev,
        ] {
            bytes.extend_from_slice(&n.to_le_bytes());
        }
        bytes.extend_from_slice(&e.content.map(|c| c.0).unwrap_or_default());
        bytes.extend_from_slice(&e.subtree.map(|t| t.0).unwrap_or_default());
        let target = e.target.as_deref().unwrap_or_default();
        bytes.extend_from_slice(&(target.len() as u32).to_le_bytes());
        bytes.extend_from_slice(target);
        let xattrs = super::encode_xattrs(&e.xattrs).unwrap_or_default();
        bytes.extend_from_slice(&(xattrs.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&xattrs);
    }
    TreeId(*blake3::keyed_hash(&key.0, &bytes).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u8) -> Entry {
        Entry {
            name: vec![b'a', i | 0x80, 0xff, b'\n'],
            kind: KINDS[usize::from(i) % KINDS.len()],
            mode: 0o4755,
            uid: 12345,
            gid: u32::MAX,
            mtime_ns: -1_234_567_890_123,
            ctime_ns: 1_795_947_303_123_456_789,
            size: u64::MAX,
            inode: 42,
            nlink: 3,
            content: (i % 2 == 0).then_some(ContentId([i; 32])),
            subtree: (i % 3 == 0).then_some(TreeId([i; 32])),
            target: (i % 4 == 0).then(|| b"../x y".to_vec()),
            rdev: 259,
            xattrs: if i % 5 == 0 {
                vec![
                    (b"user.a".to_vec(), vec![0, 1, 2]),
                    (b"user.b".to_vec(), vec![]),
                ]
            } else {
                vec![]
            },
        }
    }

    /// Tree ids are stored in every vault: the hash of a tree must never change.
    #[test]
    fn a_tree_id_is_what_vaults_already_hold() {
        let key = crate::crypto::Key([7; 32]);
        let entries: Vec<Entry> = (0..50).map(entry).collect();
        assert_eq!(
            hex::encode(tree_id(&key, &entries).0),
            "65787ce86a89427bd9bbc0e1ad8b0f98ca7a1ccf98fc3470ac48e0898243a64b"
        );
        assert_eq!(
            hex::encode(tree_id(&key, &[]).0),
            "65d5aafa01a321df81b210b59186a64c7c071b2ee65077d60668e3b522c25320"
        );
    }

    #[test]
    fn round_trip_and_damage() {
        let entries: Vec<Entry> = (0..50).map(entry).collect();
        let blob = encode(&entries);
        assert_eq!(decode(&blob).unwrap(), entries);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
        assert_eq!(decode(&blob[..blob.len() - 3]), Err(TreeError::Damaged));
        assert_eq!(decode(&[2, 0]), Err(TreeError::Damaged));
    }

    #[test]
    fn names_that_are_not_one_plain_component_are_refused() {
        let bad: [&[u8]; 8] = [b"", b".", b"..", b"../x", b"/abs", b"a/b", b"a\0b", b"/"];
        for name in bad {
            let mut e = entry(0);
            e.name = name.to_vec();
            let blob = encode(&[entry(1), e]);
            assert_eq!(
                decode(&blob),
                Err(TreeError::BadName {
                    name: String::from_utf8_lossy(name).into_owned()
                }),
                "{name:?}"
            );
        }
        for good in [&b"..."[..], b".x", b"x..", b"a\\b", b"\xff\n", b" "] {
            assert!(is_plain_name(good), "{good:?}");
        }
    }
}

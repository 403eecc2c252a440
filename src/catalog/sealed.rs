//! The catalog's records as they are sealed into the store, and put back from it.
//!
//! Every backup writes, in metadata packs (`store::meta_pack`), what its transaction adds
//! that packs cannot tell: its new trees and file versions as the catalog stores them, its
//! point, the seed job it prepared with every shipped pack's footer, and the data packs it
//! wrote. `catalog rebuild` reads every metadata pack back into an empty catalog.
//!
//! ```text
//! body   = record*
//! record = tag u8 | len u32 LE | payload
//!   1 tree       id [32] | entry_count u32 | entries blob (as `trees.entries`)
//!   2 content    id [32] | size u64 | block list (as `contents.block_list`)
//!   3 point      JSON (every column of `points`)
//!   4 seed job   JSON (name, source, disks, created, point, incomplete)
//!   5 seed pack  job_len u16 | job | pack [32] | disk u32 | size u64 | footer entries (48 each)
//!   6 data packs n × pack [32]: the stored packs the commit wrote
//!   7 seed repair job_len u16 | job | n × pack [32]: lost packs a repair re-made
//!   8 event      JSON: a change to points after their commit (forget, protect, policy)
//!   9 parts      n × pack [32]: the metadata parts the backup sealed while it ran
//! ```
//!
//! A large backup does not hold its body in memory: while it runs it seals its trees and file
//! versions into metadata packs of bounded size ("parts", records 1 and 2 only), and its last
//! metadata pack, which holds the point, names them (record 9). A rebuild reads parts like any
//! metadata pack; settling a commit cut off by a crash reads the parts its last pack names.

use std::os::unix::ffi::OsStringExt;

use serde::{Deserialize, Serialize};

use super::{
    decode_xattrs, encode_xattrs, BackupCommit, ContentId, PackState, PointKind, PointState,
    PointStats, RecoveryPoint, RecoveryPointId, RootMeta, TreeId,
};
use crate::store::{BlockId, PackEntry, PackId};

/// One directory listing as the catalog stores it: encoded once, written to the catalog and
/// sealed into the store as the same bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeRow {
    pub id: TreeId,
    pub entry_count: u32,
    /// [`super::tree_codec::encode`] of the entries.
    pub blob: Vec<u8>,
}

impl TreeRow {
    /// The row of a listing whose id is `id`.
    pub fn new(id: TreeId, entries: &[super::Entry]) -> TreeRow {
        TreeRow {
            id,
            entry_count: entries.len() as u32,
            blob: super::tree_codec::encode(entries),
        }
    }
}

/// A seed job as sealed: what `seed_jobs` says of it when it is recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSeedJob {
    pub name: String,
    pub source: String,
    pub disk_count: u32,
    pub created_ns: i64,
    /// The point the job carries; none for a prepare that ran out of room.
    pub point: Option<String>,
    /// The prepare ran out of room: nothing to import.
    pub incomplete: bool,
}

/// One pack a seed job shipped, with its footer, so a rebuilt catalog knows its blocks while
/// the pack is still on its disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedSeedPack {
    pub job: String,
    pub pack: PackId,
    pub disk: u32,
    pub size: u64,
    pub entries: Vec<PackEntry>,
}

/// One sealed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Tree(TreeRow),
    Content {
        id: ContentId,
        size: u64,
        list: Vec<u8>,
    },
    Point(Box<RecoveryPoint>),
    SeedJob(SealedSeedJob),
    SeedPack(SealedSeedPack),
    DataPacks(Vec<PackId>),
    /// `seed repair` re-made blocks of these lost packs of a job (into the data packs of the
    /// same metadata pack): those now wholly re-made are forgotten, as the repair did.
    SeedRepair {
        job: String,
        lost: Vec<PackId>,
    },
    Event(Event),
    /// The metadata parts sealed before this pack, which hold the rest of its commit.
    Parts(Vec<PackId>),
}

/// A change made after a point's commit, sealed when it is made. A rebuild applies events in
/// time order; the latest of each kind per point or source wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// Points forgotten.
    Forget { at_ns: i64, points: Vec<String> },
    /// A point protected until a time (ns; `i64::MAX` forever), or no longer (`None`).
    Protect {
        at_ns: i64,
        point: String,
        until_ns: Option<i64>,
    },
    /// The retention policy of a source ('' the default) set (JSON), or removed (`None`).
    Policy {
        at_ns: i64,
        source: String,
        policy: Option<String>,
    },
    /// A point's tags set to these.
    Tags {
        at_ns: i64,
        point: String,
        tags: Vec<String>,
    },
}

impl Event {
    /// When the change was made.
    pub fn at_ns(&self) -> i64 {
        match self {
            Event::Forget { at_ns, .. }
            | Event::Protect { at_ns, .. }
            | Event::Policy { at_ns, .. }
            | Event::Tags { at_ns, .. } => *at_ns,
        }
    }
}

/// A body that does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed metadata record: {0}")]
pub struct Malformed(pub &'static str);

const TAG_TREE: u8 = 1;
const TAG_CONTENT: u8 = 2;
const TAG_POINT: u8 = 3;
const TAG_SEED_JOB: u8 = 4;
const TAG_SEED_PACK: u8 = 5;
const TAG_DATA_PACKS: u8 = 6;
const TAG_SEED_REPAIR: u8 = 7;
const TAG_EVENT: u8 = 8;
const TAG_PARTS: u8 = 9;
const ENTRY_LEN: usize = 48;

/// Appends records to a body.
#[derive(Debug, Default)]
pub struct BodyWriter {
    bytes: Vec<u8>,
}

impl BodyWriter {
    fn record(&mut self, tag: u8, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.bytes.push(tag);
        self.bytes.extend_from_slice(&(len as u32).to_le_bytes());
        for part in parts {
            self.bytes.extend_from_slice(part);
        }
    }

    pub fn tree(&mut self, tree: &TreeRow) {
        self.record(
            TAG_TREE,
            &[&tree.id.0, &tree.entry_count.to_le_bytes(), &tree.blob],
        );
    }

    pub fn content(&mut self, id: &ContentId, size: u64, list: &[u8]) {
        self.record(TAG_CONTENT, &[&id.0, &size.to_le_bytes(), list]);
    }

    pub fn point(&mut self, point: &RecoveryPoint) {
        let json = serde_json::to_vec(&PointJson::from(point)).unwrap_or_default();
        self.record(TAG_POINT, &[&json]);
    }

    pub fn seed_job(&mut self, job: &SealedSeedJob) {
        let json = serde_json::to_vec(job).unwrap_or_default();
        self.record(TAG_SEED_JOB, &[&json]);
    }

    pub fn seed_pack(&mut self, pack: &SealedSeedPack) {
        let mut entries = Vec::with_capacity(pack.entries.len() * ENTRY_LEN);
        for e in &pack.entries {
            entries.extend_from_slice(&e.id.0);
            entries.extend_from_slice(&e.offset.to_le_bytes());
            entries.extend_from_slice(&e.stored_len.to_le_bytes());
            entries.extend_from_slice(&e.raw_len.to_le_bytes());
        }
        self.record(
            TAG_SEED_PACK,
            &[
                &(pack.job.len() as u16).to_le_bytes(),
                pack.job.as_bytes(),
                &pack.pack.0,
                &pack.disk.to_le_bytes(),
                &pack.size.to_le_bytes(),
                &entries,
            ],
        );
    }

    pub fn data_packs(&mut self, packs: &[PackId]) {
        let ids: Vec<u8> = packs.iter().flat_map(|p| p.0).collect();
        self.record(TAG_DATA_PACKS, &[&ids]);
    }

    pub fn seed_repair(&mut self, job: &str, lost: &[PackId]) {
        let ids: Vec<u8> = lost.iter().flat_map(|p| p.0).collect();
        self.record(
            TAG_SEED_REPAIR,
            &[&(job.len() as u16).to_le_bytes(), job.as_bytes(), &ids],
        );
    }

    pub fn event(&mut self, event: &Event) {
        let json = serde_json::to_vec(event).unwrap_or_default();
        self.record(TAG_EVENT, &[&json]);
    }

    pub fn parts(&mut self, parts: &[PackId]) {
        let ids: Vec<u8> = parts.iter().flat_map(|p| p.0).collect();
        self.record(TAG_PARTS, &[&ids]);
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The body so far, leaving the writer empty.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    /// The body.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// The body sealed last for one backup: everything its transaction adds that packs cannot
/// tell and that its parts (`commit.parts`) do not hold. `body` holds the trees and file
/// versions written since the last part.
pub fn commit_body(commit: &BackupCommit, point: &RecoveryPoint, mut body: BodyWriter) -> Vec<u8> {
    let stored: Vec<PackId> = commit
        .packs
        .iter()
        .filter(|p| p.state == PackState::Stored)
        .map(|p| p.id)
        .collect();
    body.data_packs(&stored);
    for tree in &commit.trees {
        body.tree(tree);
    }
    for (id, content) in &commit.contents {
        body.content(id, content.size, &content.row_blocks(id));
    }
    if !commit.parts.is_empty() {
        let parts: Vec<PackId> = commit.parts.iter().map(|p| p.0).collect();
        body.parts(&parts);
    }
    if let Some(seed) = &commit.seed {
        body.seed_job(&SealedSeedJob {
            name: seed.name.clone(),
            source: seed.source.clone(),
            disk_count: seed.disk_count,
            created_ns: seed.created_ns,
            point: Some(point.id.0.clone()),
            incomplete: false,
        });
        for (pack, disk) in &seed.packs {
            let Some(written) = commit.packs.iter().find(|p| p.id == *pack) else {
                continue;
            };
            body.seed_pack(&SealedSeedPack {
                job: seed.name.clone(),
                pack: *pack,
                disk: *disk,
                size: written.size,
                entries: written.entries.clone(),
            });
        }
    }
    // The point last: a reader of the body has seen everything it names.
    body.point(point);
    body.finish()
}

/// Parses a body.
pub fn decode(mut body: &[u8]) -> Result<Vec<Record>, Malformed> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let tag = body[0];
        let len = take_u32(body.get(1..5).ok_or(Malformed("truncated record"))?) as usize;
        let payload = body.get(5..5 + len).ok_or(Malformed("truncated record"))?;
        body = &body[5 + len..];
        out.push(decode_record(tag, payload)?);
    }
    Ok(out)
}

fn take_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn take_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn id32(b: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    a.copy_from_slice(&b[..32]);
    a
}

fn decode_record(tag: u8, p: &[u8]) -> Result<Record, Malformed> {
    let short = Malformed("short record");
    Ok(match tag {
        TAG_TREE => {
            if p.len() < 36 {
                return Err(short);
            }
            Record::Tree(TreeRow {
                id: TreeId(id32(p)),
                entry_count: take_u32(&p[32..]),
                blob: p[36..].to_vec(),
            })
        }
        TAG_CONTENT => {
            if p.len() < 40 {
                return Err(short);
            }
            Record::Content {
                id: ContentId(id32(p)),
                size: take_u64(&p[32..]),
                list: p[40..].to_vec(),
            }
        }
        TAG_POINT => {
            let json: PointJson =
                serde_json::from_slice(p).map_err(|_| Malformed("bad point record"))?;
            Record::Point(Box::new(json.try_into()?))
        }
        TAG_SEED_JOB => Record::SeedJob(
            serde_json::from_slice(p).map_err(|_| Malformed("bad seed job record"))?,
        ),
        TAG_SEED_PACK => {
            let job_len = p.get(..2).ok_or(short)?;
            let job_len = u16::from_le_bytes([job_len[0], job_len[1]]) as usize;
            let rest = p.get(2 + job_len..).ok_or(short)?;
            if rest.len() < 44 || (rest.len() - 44) % ENTRY_LEN != 0 {
                return Err(short);
            }
            let job = String::from_utf8(p[2..2 + job_len].to_vec())
                .map_err(|_| Malformed("bad seed job name"))?;
            Record::SeedPack(SealedSeedPack {
                job,
                pack: PackId(id32(rest)),
                disk: take_u32(&rest[32..]),
                size: take_u64(&rest[36..]),
                entries: rest[44..]
                    .chunks_exact(ENTRY_LEN)
                    .map(|e| PackEntry {
                        id: BlockId(id32(e)),
                        offset: take_u64(&e[32..]),
                        stored_len: take_u32(&e[40..]),
                        raw_len: take_u32(&e[44..]),
                    })
                    .collect(),
            })
        }
        TAG_DATA_PACKS => {
            if p.len() % 32 != 0 {
                return Err(short);
            }
            Record::DataPacks(p.chunks_exact(32).map(|c| PackId(id32(c))).collect())
        }
        TAG_SEED_REPAIR => {
            let job_len = p.get(..2).ok_or(short)?;
            let job_len = u16::from_le_bytes([job_len[0], job_len[1]]) as usize;
            let ids = p.get(2 + job_len..).ok_or(short)?;
            if ids.len() % 32 != 0 {
                return Err(short);
            }
            Record::SeedRepair {
                job: String::from_utf8(p[2..2 + job_len].to_vec())
                    .map_err(|_| Malformed("bad seed job name"))?,
                lost: ids.chunks_exact(32).map(|c| PackId(id32(c))).collect(),
            }
        }
        TAG_EVENT => {
            Record::Event(serde_json::from_slice(p).map_err(|_| Malformed("bad event record"))?)
        }
        TAG_PARTS => {
            if p.len() % 32 != 0 {
                return Err(short);
            }
            Record::Parts(p.chunks_exact(32).map(|c| PackId(id32(c))).collect())
        }
        _ => return Err(Malformed("unknown record type")),
    })
}

/// A point as JSON: every column of `points`, binary ones in hex.
#[derive(Serialize, Deserialize)]
struct PointJson {
    id: String,
    parent: Option<String>,
    root_tree: String,
    source: String,
    host: String,
    tags: Vec<String>,
    kind: String,
    state: String,
    started_ns: i64,
    finished_ns: i64,
    files: u64,
    dirs: u64,
    bytes: u64,
    files_changed: u64,
    bytes_read: u64,
    bytes_new: u64,
    bytes_stored: u64,
    errors: Vec<String>,
    root_mode: u32,
    root_uid: u32,
    root_gid: u32,
    root_mtime_ns: i64,
    root_xattrs: Option<String>,
    awaiting_job: Option<String>,
    #[serde(default)]
    retain_until_ns: Option<i64>,
    /// Each source's absolute path, raw bytes in hex (paths need not be UTF-8). Absent in
    /// records sealed before sources were kept: read from `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sources: Option<Vec<String>>,
    /// Where the point's root was, raw bytes in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root_path: Option<String>,
}

impl From<&RecoveryPoint> for PointJson {
    fn from(p: &RecoveryPoint) -> PointJson {
        PointJson {
            id: p.id.0.clone(),
            parent: p.parent.as_ref().map(|id| id.0.clone()),
            root_tree: hex::encode(p.root_tree.0),
            source: p.source.clone(),
            host: p.host.clone(),
            tags: p.tags.clone(),
            kind: p.kind.as_str().into(),
            state: p.state.as_str().into(),
            started_ns: p.started_ns,
            finished_ns: p.finished_ns,
            files: p.stats.files,
            dirs: p.stats.dirs,
            bytes: p.stats.bytes,
            files_changed: p.stats.files_changed,
            bytes_read: p.stats.bytes_read,
            bytes_new: p.stats.bytes_new,
            bytes_stored: p.stats.bytes_stored,
            errors: p.errors.clone(),
            root_mode: p.root.mode,
            root_uid: p.root.uid,
            root_gid: p.root.gid,
            root_mtime_ns: p.root.mtime_ns,
            root_xattrs: encode_xattrs(&p.root.xattrs).map(hex::encode),
            awaiting_job: p.awaiting_job.clone(),
            retain_until_ns: p.retain_until_ns,
            sources: Some(
                p.sources
                    .iter()
                    .map(|s| hex::encode(std::os::unix::ffi::OsStrExt::as_bytes(s.as_os_str())))
                    .collect(),
            ),
            root_path: p
                .root_path
                .as_ref()
                .map(|r| hex::encode(std::os::unix::ffi::OsStrExt::as_bytes(r.as_os_str()))),
        }
    }
}

impl TryFrom<PointJson> for RecoveryPoint {
    type Error = Malformed;

    fn try_from(j: PointJson) -> Result<RecoveryPoint, Malformed> {
        let mut root_tree = [0u8; 32];
        hex::decode_to_slice(&j.root_tree, &mut root_tree)
            .map_err(|_| Malformed("bad root tree"))?;
        let xattrs = match j.root_xattrs {
            None => Vec::new(),
            Some(h) => hex::decode(h)
                .ok()
                .and_then(|b| decode_xattrs(&b))
                .ok_or(Malformed("bad root xattrs"))?,
        };
        let sources = match &j.sources {
            Some(list) => list
                .iter()
                .map(|h| {
                    hex::decode(h)
                        .map(|b| std::path::PathBuf::from(std::ffi::OsString::from_vec(b)))
                        .map_err(|_| Malformed("bad source path"))
                })
                .collect::<Result<_, _>>()?,
            None => super::decode_sources(None, &j.source),
        };
        Ok(RecoveryPoint {
            id: RecoveryPointId(j.id),
            parent: j.parent.map(RecoveryPointId),
            root_tree: TreeId(root_tree),
            source: j.source,
            sources,
            root_path: match &j.root_path {
                Some(h) => Some(std::path::PathBuf::from(std::ffi::OsString::from_vec(
                    hex::decode(h).map_err(|_| Malformed("bad root path"))?,
                ))),
                None => None,
            },
            host: j.host,
            tags: j.tags,
            kind: PointKind::parse(&j.kind).ok_or(Malformed("unknown point kind"))?,
            state: PointState::parse(&j.state).ok_or(Malformed("unknown point state"))?,
            started_ns: j.started_ns,
            finished_ns: j.finished_ns,
            stats: PointStats {
                files: j.files,
                dirs: j.dirs,
                bytes: j.bytes,
                files_changed: j.files_changed,
                bytes_read: j.bytes_read,
                bytes_new: j.bytes_new,
                bytes_stored: j.bytes_stored,
            },
            errors: j.errors,
            root: RootMeta {
                mode: j.root_mode,
                uid: j.root_uid,
                gid: j.root_gid,
                mtime_ns: j.root_mtime_ns,
                xattrs,
            },
            awaiting_job: j.awaiting_job,
            retain_until_ns: j.retain_until_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_reads_back_as_written() {
        let point = RecoveryPoint {
            id: RecoveryPointId("0123456789abcdef".into()),
            parent: Some(RecoveryPointId("fedcba9876543210".into())),
            root_tree: TreeId([4; 32]),
            source: "/data".into(),
            sources: vec![
                "/data".into(),
                std::ffi::OsString::from_vec(b"/x/\xff".to_vec()).into(),
            ],
            root_path: Some("/".into()),
            host: "h".into(),
            tags: vec!["a".into(), "b".into()],
            kind: PointKind::Incremental,
            state: PointState::Partial,
            started_ns: 5,
            finished_ns: 9,
            stats: PointStats {
                files: 1,
                dirs: 2,
                bytes: 3,
                files_changed: 4,
                bytes_read: 5,
                bytes_new: 6,
                bytes_stored: 7,
            },
            errors: vec!["x: gone".into()],
            root: RootMeta {
                mode: 0o40755,
                uid: 1,
                gid: 2,
                mtime_ns: 3,
                xattrs: vec![(b"user.k".to_vec(), b"v".to_vec())],
            },
            awaiting_job: Some("job".into()),
            retain_until_ns: Some(77),
        };
        let records = vec![
            Record::DataPacks(vec![PackId([1; 32]), PackId([2; 32])]),
            Record::Tree(TreeRow {
                id: TreeId([3; 32]),
                entry_count: 2,
                blob: vec![1, 2, 3],
            }),
            Record::Content {
                id: ContentId([5; 32]),
                size: 77,
                list: vec![],
            },
            Record::SeedJob(SealedSeedJob {
                name: "job".into(),
                source: "/data".into(),
                disk_count: 2,
                created_ns: 11,
                point: Some(point.id.0.clone()),
                incomplete: false,
            }),
            Record::SeedPack(SealedSeedPack {
                job: "job".into(),
                pack: PackId([6; 32]),
                disk: 2,
                size: 1000,
                entries: vec![PackEntry {
                    id: BlockId([7; 32]),
                    offset: 12,
                    stored_len: 40,
                    raw_len: 30,
                }],
            }),
            Record::SeedRepair {
                job: "job".into(),
                lost: vec![PackId([8; 32])],
            },
            Record::Event(Event::Forget {
                at_ns: 3,
                points: vec!["ab".into()],
            }),
            Record::Event(Event::Protect {
                at_ns: 4,
                point: "cd".into(),
                until_ns: Some(i64::MAX),
            }),
            Record::Event(Event::Policy {
                at_ns: 5,
                source: String::new(),
                policy: Some("{}".into()),
            }),
            Record::Parts(vec![PackId([10; 32])]),
            Record::Point(Box::new(point)),
        ];
        let mut body = BodyWriter::default();
        for r in &records {
            match r {
                Record::Tree(t) => body.tree(t),
                Record::Content { id, size, list } => body.content(id, *size, list),
                Record::Point(p) => body.point(p),
                Record::SeedJob(j) => body.seed_job(j),
                Record::SeedPack(p) => body.seed_pack(p),
                Record::DataPacks(p) => body.data_packs(p),
                Record::SeedRepair { job, lost } => body.seed_repair(job, lost),
                Record::Event(e) => body.event(e),
                Record::Parts(p) => body.parts(p),
            }
        }
        let bytes = body.finish();
        assert_eq!(decode(&bytes).unwrap(), records);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[10, 0, 0, 0, 0]).is_err());
    }
}

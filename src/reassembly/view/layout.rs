//! The vault-wide layout: `latest`, `points/<UTC time>/`, `sources/<source>/<UTC time>/` and
//! `versions/<source>/...`, re-read from the catalog when listed, so new points appear without
//! remounting.
//!
//! The layout is a table: the root lists [`top_level`], and every directory outside a point is
//! a [`Synthetic`] that says how to list itself; looking a name up is finding it in that
//! listing. A new vault-level directory is one more row and one more `Synthetic`, and the
//! view's lookup, listing and attributes need no new case.

use std::collections::HashSet;
use std::sync::Arc;

use super::node::Key;
use super::versions::VersionsDir;
use super::*;

/// The directory name of a source under `sources/`: one name per source and one source per
/// name, so scripts can go from either to the other ([`source_from_dir_name`]).
///
/// - `/` followed by a path (what a backup records): the path without that `/`
///   (`/home/alice` -> `home%2Falice`).
/// - Any other source is written whole: `/` itself is `%2F`, a source starting `//` starts
///   `%2F%2F`, and one that does not start with `/` gets `.%2F` in front (`./` spelled as a
///   name, which the first form never starts with).
///
/// In each, `%`, `/`, control characters (bytes below 0x20 and 0x7F) and bytes that are not
/// UTF-8 are written `%XX` (upper-case hex), and a `.` that starts the escaped path is
/// `%2E`, so no name is `.`, `..` or hidden. Nothing else is escaped: spaces stay spaces.
pub fn source_dir_name(source: &[u8]) -> String {
    match source.strip_prefix(b"/") {
        Some(path) if !path.is_empty() && !path.starts_with(b"/") => escape(path),
        Some(_) => escape(source),
        None => format!("{RELATIVE}{}", escape(source)),
    }
}

/// The source a `sources/` directory name stands for: the inverse of [`source_dir_name`].
/// None if no source has this name (a malformed escape, lower-case hex, a byte that should
/// have been escaped).
pub fn source_from_dir_name(name: &[u8]) -> Option<Vec<u8>> {
    let source = if let Some(rest) = name.strip_prefix(RELATIVE.as_bytes()) {
        unescape(rest)?
    } else if name.starts_with(b"%2F") {
        unescape(name)?
    } else {
        [b"/".as_slice(), &unescape(name)?].concat()
    };
    (source_dir_name(&source).as_bytes() == name).then_some(source)
}

/// What starts the name of a source that is not an absolute path.
const RELATIVE: &str = ".%2F";

fn escape(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    let hex = |out: &mut String, b: u8| out.push_str(&format!("%{b:02X}"));
    for chunk in path.utf8_chunks() {
        for c in chunk.valid().chars() {
            let leading_dot = c == '.' && out.is_empty();
            if c == '%' || c == '/' || c.is_ascii_control() || leading_dot {
                hex(&mut out, c as u8);
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            hex(&mut out, b);
        }
    }
    out
}

/// Undoes `%XX` escapes; None if a `%` is not followed by two hex digits.
fn unescape(name: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len());
    let mut rest = name;
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let digits = std::str::from_utf8(tail.get(..2)?).ok()?;
            out.push(u8::from_str_radix(digits, 16).ok()?);
            rest = &tail[2..];
        } else {
            out.push(b);
            rest = tail;
        }
    }
    Some(out)
}

/// Names points by their start second; later points of a taken second get `-<short id>`.
/// `points` must be oldest first.
pub fn point_names(points: &[RecoveryPoint]) -> Vec<String> {
    let mut taken = HashSet::new();
    points
        .iter()
        .map(|p| {
            let base = crate::time::format_utc(p.started_ns);
            if taken.insert(base.clone()) {
                base
            } else {
                format!("{base}-{}", p.id.short())
            }
        })
        .collect()
}

/// Whether the vault layout shows a point.
pub(super) fn is_shown(point: &RecoveryPoint) -> bool {
    matches!(point.state, PointState::Complete | PointState::Partial)
}

/// A directory the vault layout makes up: how to list it. Lookups find the name in the
/// listing, re-read from the catalog when it is not there.
pub(super) trait Synthetic: std::fmt::Debug + Send + Sync {
    /// Its entries, in listing order.
    fn list(&self, view: &View<'_>, ino: NodeId) -> Result<Vec<(Vec<u8>, Child)>>;

    /// False if no entry can have `name`: a lookup of it need not re-read the catalog.
    fn may_hold(&self, _name: &[u8]) -> bool {
        true
    }
}

/// Makes the node of an entry of a synthetic directory, given its id.
pub(super) type MakeWhat = Box<dyn Fn(NodeId) -> What + Send + Sync>;

/// An entry of a synthetic directory.
pub(super) enum Child {
    /// A node that lives as long as the view (the vault-level directories, point roots).
    Permanent(NodeId),
    /// A node made when handed out and counted like the entries of a point, so the kernel's
    /// `forget` drops it: directories and versions under `versions/` are as many as paths.
    Counted { key: Key, make: MakeWhat },
}

/// The root of the vault layout, in listing order: each name and what it is. `latest` is
/// listed only while a point is shown.
fn top_level() -> Vec<(&'static [u8], What)> {
    vec![
        (b"latest", What::Latest),
        (b"points", What::Synthetic(Arc::new(PointsDir))),
        (b"sources", What::Synthetic(Arc::new(SourcesDir))),
        (b"versions", What::Synthetic(Arc::new(VersionsDir))),
    ]
}

/// Numbers the vault layout's root ([`ROOT`]) and the directories of [`top_level`], for good;
/// returns the root's entries.
pub(super) fn insert_top_level(nodes: &NodeTable) -> Vec<(&'static [u8], NodeId)> {
    nodes.insert_permanent(|_| Node::new(ROOT, What::Synthetic(Arc::new(RootDir))));
    top_level()
        .into_iter()
        .map(|(name, what)| (name, nodes.insert_permanent(|_| Node::new(ROOT, what))))
        .collect()
}

#[derive(Debug)]
struct RootDir;

impl Synthetic for RootDir {
    fn list(&self, view: &View<'_>, _ino: NodeId) -> Result<Vec<(Vec<u8>, Child)>> {
        let any_shown = !lock(&view.vault).shown.is_empty();
        let mut out = Vec::new();
        for &(name, ino) in &view.top {
            if any_shown || !matches!(view.node(ino)?.what, What::Latest) {
                out.push((name.to_vec(), Child::Permanent(ino)));
            }
        }
        Ok(out)
    }
}

/// `points/`: every point shown, by time.
#[derive(Debug)]
struct PointsDir;

impl Synthetic for PointsDir {
    fn list(&self, view: &View<'_>, ino: NodeId) -> Result<Vec<(Vec<u8>, Child)>> {
        let mut state = lock(&view.vault);
        let shown = state.shown.clone();
        Ok(shown
            .iter()
            .map(|s| {
                let root = *state
                    .point_roots
                    .entry(s.point.id.0.clone())
                    .or_insert_with(|| view.new_point_root(ino, s));
                (s.name.clone().into_bytes(), Child::Permanent(root))
            })
            .collect())
    }
}

/// `sources/`: one directory per source.
#[derive(Debug)]
struct SourcesDir;

impl Synthetic for SourcesDir {
    fn list(&self, view: &View<'_>, ino: NodeId) -> Result<Vec<(Vec<u8>, Child)>> {
        let mut state = lock(&view.vault);
        let sources = shown_sources(&state.shown);
        Ok(sources
            .into_iter()
            .map(|source| {
                let dir = *state.source_dirs.entry(source.clone()).or_insert_with(|| {
                    let what = What::Synthetic(Arc::new(SourceDir {
                        source: source.clone(),
                    }));
                    view.nodes.insert_permanent(|_| Node::new(ino, what))
                });
                (
                    source_dir_name(source.as_bytes()).into_bytes(),
                    Child::Permanent(dir),
                )
            })
            .collect())
    }

    fn may_hold(&self, name: &[u8]) -> bool {
        source_from_dir_name(name).is_some()
    }
}

/// The sources of the points shown, sorted, each once.
pub(super) fn shown_sources(shown: &[Arc<Shown>]) -> Vec<String> {
    let mut sources: Vec<String> = shown.iter().map(|s| s.point.source.clone()).collect();
    sources.sort_unstable();
    sources.dedup();
    sources
}

/// `sources/<source>/`: the points of one source, by time.
#[derive(Debug)]
struct SourceDir {
    source: String,
}

impl Synthetic for SourceDir {
    fn list(&self, view: &View<'_>, ino: NodeId) -> Result<Vec<(Vec<u8>, Child)>> {
        let mut state = lock(&view.vault);
        let shown = state.shown.clone();
        Ok(shown
            .iter()
            .filter(|s| s.point.source == self.source)
            .map(|s| {
                let key = (self.source.clone(), s.point.id.0.clone());
                let root = *state
                    .source_point_roots
                    .entry(key)
                    .or_insert_with(|| view.new_point_root(ino, s));
                (s.name.clone().into_bytes(), Child::Permanent(root))
            })
            .collect())
    }
}

impl<'v> View<'v> {
    /// Re-reads which points the vault layout shows.
    pub(super) fn refresh(&self) -> Result<()> {
        if !matches!(self.layout, Layout::Vault) {
            return Ok(());
        }
        let points: Vec<RecoveryPoint> = self
            .blocks
            .vault()
            .read_catalog()?
            .points()?
            .into_iter()
            .filter(is_shown)
            .collect();
        let names = point_names(&points);
        let shown = points
            .into_iter()
            .zip(names)
            .map(|(point, name)| Arc::new(Shown { point, name }))
            .collect();
        lock(&self.vault).shown = shown;
        Ok(())
    }

    pub(super) fn latest_target(&self) -> Vec<u8> {
        lock(&self.vault)
            .shown
            .last()
            .map(|s| format!("points/{}", s.name).into_bytes())
            .unwrap_or_default()
    }

    /// The node `name` names in synthetic directory `ino`, counted as a lookup; the points
    /// are re-read from the catalog if the name is not there yet.
    pub(super) fn synthetic_lookup(
        &self,
        ino: NodeId,
        dir: &dyn Synthetic,
        name: &[u8],
    ) -> Result<Option<(NodeId, Arc<Node>)>> {
        if !dir.may_hold(name) {
            return Ok(None);
        }
        for refresh in [false, true] {
            let listing = self.synthetic_listing(ino, dir, refresh)?;
            if let Some((_, child)) = listing.iter().find(|(n, _)| n == name) {
                return self.child_node(ino, child, true).map(Some);
            }
        }
        Ok(None)
    }

    /// The entries of synthetic directory `ino`, the points re-read first if `refresh`.
    pub(super) fn synthetic_listing(
        &self,
        ino: NodeId,
        dir: &dyn Synthetic,
        refresh: bool,
    ) -> Result<Vec<(Vec<u8>, Child)>> {
        if refresh || lock(&self.vault).shown.is_empty() {
            self.refresh()?;
        }
        dir.list(self, ino)
    }

    /// The node of an entry of synthetic directory `parent`; with `lookup`, a counted one is
    /// counted as handed to the kernel.
    pub(super) fn child_node(
        &self,
        parent: NodeId,
        child: &Child,
        lookup: bool,
    ) -> Result<(NodeId, Arc<Node>)> {
        match child {
            Child::Permanent(ino) => Ok((*ino, self.node(*ino)?)),
            Child::Counted { key, make } => {
                Ok(self
                    .nodes
                    .find_or_insert(key.clone(), lookup, |ino| Node::new(parent, make(ino))))
            }
        }
    }

    /// A point's root under `parent`: permanent, like the vault-level directories, since
    /// there are only as many as points shown.
    pub(super) fn new_point_root(&self, parent: NodeId, shown: &Arc<Shown>) -> NodeId {
        self.nodes.insert_permanent(|ino| {
            Node::new(
                parent,
                What::Entry {
                    listing: Arc::new(vec![root_entry(&shown.point)]),
                    point: shown.clone(),
                    scope: ino,
                    index: 0,
                },
            )
        })
    }
}

//! The vault-wide layout: `latest`, `points/<UTC time>/`, `sources/<source>/<UTC time>/`,
//! re-read from the catalog when listed, so new points appear without remounting.

use std::collections::HashSet;
use std::sync::Arc;

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

    pub(super) fn synthetic_lookup(
        &self,
        ino: NodeId,
        node: &Node,
        name: &[u8],
    ) -> Result<Option<NodeId>> {
        if matches!(node.what, What::Sources) && source_from_dir_name(name).is_none() {
            // No source has this name: no need to re-read the catalog to be sure.
            return Ok(None);
        }
        let find = |listing: Vec<(Vec<u8>, NodeId)>| {
            listing.into_iter().find(|(n, _)| n == name).map(|(_, i)| i)
        };
        if let Some(found) = find(self.synthetic_listing(ino, node, false)?) {
            return Ok(Some(found));
        }
        Ok(find(self.synthetic_listing(ino, node, true)?))
    }

    /// The entries of a vault-level directory, numbering point roots on first sight.
    pub(super) fn synthetic_listing(
        &self,
        ino: NodeId,
        node: &Node,
        refresh: bool,
    ) -> Result<Vec<(Vec<u8>, NodeId)>> {
        if refresh || lock(&self.vault).shown.is_empty() {
            self.refresh()?;
        }
        let mut state = lock(&self.vault);
        let shown = state.shown.clone();
        Ok(match &node.what {
            What::Root => {
                let mut out = Vec::new();
                if !shown.is_empty() {
                    out.push((b"latest".to_vec(), LATEST));
                }
                out.push((b"points".to_vec(), POINTS));
                out.push((b"sources".to_vec(), SOURCES));
                out
            }
            What::Points => shown
                .iter()
                .map(|s| {
                    let root = match state.point_roots.get(&s.point.id.0) {
                        Some(root) => *root,
                        None => {
                            let root = self.new_point_root(POINTS, s);
                            state.point_roots.insert(s.point.id.0.clone(), root);
                            root
                        }
                    };
                    (s.name.clone().into_bytes(), root)
                })
                .collect(),
            What::Sources => {
                let mut sources: Vec<&str> =
                    shown.iter().map(|s| s.point.source.as_str()).collect();
                sources.sort_unstable();
                sources.dedup();
                sources
                    .into_iter()
                    .map(|source| {
                        let dir = match state.source_dirs.get(source) {
                            Some(dir) => *dir,
                            None => {
                                let dir = self.nodes.insert_permanent(|_| {
                                    Node::new(
                                        SOURCES,
                                        What::Source {
                                            source: source.to_string(),
                                        },
                                    )
                                });
                                state.source_dirs.insert(source.to_string(), dir);
                                dir
                            }
                        };
                        (source_dir_name(source.as_bytes()).into_bytes(), dir)
                    })
                    .collect()
            }
            What::Source { source } => shown
                .iter()
                .filter(|s| &s.point.source == source)
                .map(|s| {
                    let key = (source.clone(), s.point.id.0.clone());
                    let root = match state.source_point_roots.get(&key) {
                        Some(root) => *root,
                        None => {
                            let root = self.new_point_root(ino, s);
                            state.source_point_roots.insert(key, root);
                            root
                        }
                    };
                    (s.name.clone().into_bytes(), root)
                })
                .collect(),
            What::Latest | What::Entry { .. } => {
                return Err(ViewError::NotADirectory { ino });
            }
        })
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

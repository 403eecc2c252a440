//! The vault-wide layout: `latest`, `points/<UTC time>/`, `sources/<source>/<UTC time>/`,
//! re-read from the catalog when listed, so new points appear without remounting.

use std::collections::HashSet;
use std::sync::Arc;

use super::*;

/// The directory name of a source under `sources/`.
pub fn source_dir_name(source: &str) -> String {
    let trimmed = source.trim_start_matches('/');
    if trimmed.is_empty() {
        return "%2F".into();
    }
    trimmed.replace('%', "%25").replace('/', "%2F")
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
                        (source_dir_name(source).into_bytes(), dir)
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

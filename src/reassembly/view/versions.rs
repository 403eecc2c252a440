//! `versions/`: the history of every path of a source, one entry per distinct version.
//!
//! ```text
//! versions/<source>/                       the source's root, as its newest point has it
//! versions/<source>/<dir>/.../             its directories, as the newest point has them
//! versions/<source>/<dir>/.../<name>/      for a path that is not a directory there: one
//!     2026-11-20T02:00:00Z                 entry per version, named by the point it first
//!     2026-11-24T02:00:00Z-3f2a9c1e        appears in as `points/` names that point
//! ```
//!
//! The directories mirror the newest point of the source, not the union of all its points:
//! listing one costs one tree however long the history, and a path that is a file in one
//! point and a directory in another needs no rule for which one to show. What the newest point
//! no longer holds is in `points/` and in `synvault log`. A source is the points `sources/`
//! groups under one name (hosts are not told apart).
//!
//! A version is the entry of the point it first appears in, shown as that point shows it:
//! the same metadata, the same bytes through the same reads; one that was a directory or a
//! symlink is one. Versions are found with [`crate::versions::versions`] over the listing
//! cache, so a file's versions cost the distinct trees on its path, loaded once.

use std::sync::Arc;

use super::layout::{shown_sources, Child, MakeWhat, Synthetic};
use super::node::{Key, What};
use super::*;
use crate::versions::{versions, TrackedPath, TreeLookup};

/// `versions/`: one directory per source.
#[derive(Debug)]
pub(super) struct VersionsDir;

impl Synthetic for VersionsDir {
    fn list(&self, view: &View<'_>, ino: NodeId) -> Result<Vec<(Vec<u8>, Child)>> {
        let sources = shown_sources(&lock(&view.vault).shown);
        Ok(sources
            .into_iter()
            .map(|source| {
                let name = source_dir_name(source.as_bytes()).into_bytes();
                let child = Child::Counted {
                    key: Key::Named {
                        parent: ino,
                        name: name.clone(),
                    },
                    make: Box::new(move |_| {
                        What::Synthetic(Arc::new(MirrorDir {
                            source: source.clone(),
                            path: Vec::new(),
                        }))
                    }),
                };
                (name, child)
            })
            .collect())
    }

    fn may_hold(&self, name: &[u8]) -> bool {
        source_from_dir_name(name).is_some()
    }
}

/// `versions/<source>/<path>/`: a directory of the source as its newest point has it.
#[derive(Debug)]
struct MirrorDir {
    source: String,
    /// Below the point's root, `/`-separated; empty for the root.
    path: Vec<u8>,
}

impl Synthetic for MirrorDir {
    fn list(&self, view: &View<'_>, ino: NodeId) -> Result<Vec<(Vec<u8>, Child)>> {
        let newest = lock(&view.vault)
            .shown
            .iter()
            .rev()
            .find(|s| s.point.source == self.source)
            .cloned();
        let Some(newest) = newest else {
            return Ok(Vec::new());
        };
        let here = versions(
            view,
            [&newest.point],
            &TrackedPath::InPoint(self.path.clone()),
        )?;
        let Some(tree) = here
            .first()
            .filter(|v| v.entry.kind == EntryKind::Dir)
            .and_then(|v| v.entry.subtree)
        else {
            return Ok(Vec::new());
        };
        Ok(view
            .listing(&tree)?
            .iter()
            .map(|entry| (entry.name.clone(), self.child(ino, entry)))
            .collect())
    }
}

impl MirrorDir {
    /// A directory of the newest point mirrors on; anything else lists its versions. The key
    /// says which, so a name that changes kind is a new node.
    fn child(&self, ino: NodeId, entry: &Entry) -> Child {
        let is_dir = entry.kind == EntryKind::Dir;
        let path = match self.path.is_empty() {
            true => entry.name.clone(),
            false => [self.path.as_slice(), b"/", &entry.name].concat(),
        };
        let source = self.source.clone();
        let make: MakeWhat = match is_dir {
            true => Box::new(move |_| {
                What::Synthetic(Arc::new(MirrorDir {
                    source: source.clone(),
                    path: path.clone(),
                }))
            }),
            false => Box::new(move |_| {
                What::Synthetic(Arc::new(PathVersions {
                    source: source.clone(),
                    path: path.clone(),
                }))
            }),
        };
        let kind = if is_dir { b'd' } else { b'v' };
        Child::Counted {
            key: Key::Named {
                parent: ino,
                name: [&[kind], entry.name.as_slice()].concat(),
            },
            make,
        }
    }
}

/// `versions/<source>/<path>/`, a path that is not a directory in the newest point: each of
/// its versions, newest first, named by the point it first appears in.
#[derive(Debug)]
struct PathVersions {
    source: String,
    path: Vec<u8>,
}

impl Synthetic for PathVersions {
    fn list(&self, view: &View<'_>, ino: NodeId) -> Result<Vec<(Vec<u8>, Child)>> {
        let shown: Vec<Arc<Shown>> = lock(&view.vault)
            .shown
            .iter()
            .filter(|s| s.point.source == self.source)
            .cloned()
            .collect();
        let found = versions(
            view,
            shown.iter().map(|s| &s.point),
            &TrackedPath::InPoint(self.path.clone()),
        )?;
        Ok(found
            .into_iter()
            .filter_map(|version| {
                let first = shown.get(version.first)?.clone();
                let name = first.name.clone().into_bytes();
                // A point's entry at a path never changes: the first point names the version.
                let key = Key::Named {
                    parent: ino,
                    name: first.point.id.0.clone().into_bytes(),
                };
                let listing = Arc::new(vec![version.entry]);
                let make: MakeWhat = Box::new(move |scope| What::Entry {
                    point: first.clone(),
                    // Its own scope: a version that is a directory keeps its hardlinks apart
                    // from another version's.
                    scope,
                    listing: listing.clone(),
                    index: 0,
                });
                Some((name, Child::Counted { key, make }))
            })
            .collect())
    }
}

/// Versions look names up through the view's listing cache.
impl TreeLookup for View<'_> {
    type Error = ViewError;

    fn child(&self, tree: &TreeId, name: &[u8]) -> Result<Option<Entry>> {
        let listing = self.listing(tree)?;
        Ok(listing
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .and_then(|index| listing.get(index).cloned()))
    }
}

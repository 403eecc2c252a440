//! The one tree walker: every entry below a tree, depth first in listing order, with its path
//! as bytes. `ls -r`, `cat`'s look-ups, `dump`, seed repair and the bench walk points through
//! it; `find`, `diff` and `versions` compare trees with their own memo (see `diff.rs`).
//!
//! Trees come through [`Vault::tree_entries`], so each is checked against its id before it is
//! trusted, and the walk refuses a tree that contains itself and a depth no real file system
//! reaches ([`TreePath`]) instead of overflowing the stack.

use crate::catalog::tree_path::TreePath;
use crate::catalog::{CatalogError, Entry, EntryKind, TreeId};
use crate::error::Error;
use crate::vault::Vault;

/// What a walk hands each entry to, with its path as bytes (`/name`, `/name/child`, … below
/// the walk's prefix; names need not be UTF-8).
pub type PathVisitor<'f, E> = dyn FnMut(&[u8], &Entry) -> std::result::Result<(), E> + 'f;

impl Vault {
    /// Visits every entry below `tree` (with `recursive` false, only its own entries), depth
    /// first in listing order. `prefix` is the path of `tree` itself, and is as it was when the
    /// walk returns.
    pub fn walk_tree<E: From<Error>>(
        &self,
        tree: TreeId,
        prefix: &mut Vec<u8>,
        recursive: bool,
        visit: &mut PathVisitor<'_, E>,
    ) -> std::result::Result<(), E> {
        self.walk_entered(tree, prefix, recursive, &mut TreePath::new(), visit)
    }

    /// Walks `tree` with `trees`, the trees from the walk's root down to it.
    fn walk_entered<E: From<Error>>(
        &self,
        tree: TreeId,
        prefix: &mut Vec<u8>,
        recursive: bool,
        trees: &mut TreePath,
        visit: &mut PathVisitor<'_, E>,
    ) -> std::result::Result<(), E> {
        trees
            .enter(tree)
            .map_err(|source| Error::from(CatalogError::BadTree { tree, source }))?;
        let parent_len = prefix.len();
        for entry in self.tree_entries(&tree).map_err(Error::from)? {
            prefix.truncate(parent_len);
            prefix.push(b'/');
            prefix.extend_from_slice(&entry.name);
            visit(prefix, &entry)?;
            if let Some(sub) = entry
                .subtree
                .filter(|_| recursive && entry.kind == EntryKind::Dir)
            {
                self.walk_entered(sub, prefix, recursive, trees, visit)?;
            }
        }
        prefix.truncate(parent_len);
        trees.leave();
        Ok(())
    }
}

//! The trees from a walk's root down to where it is, so that every walk over trees (restore,
//! `ls -r`, verify) stops with an error at a tree that contains itself, and at a depth no real
//! file system reaches, instead of recursing until the stack overflows.
//!
//! A tree whose entries hash to its id cannot contain itself (that would need a fixed point of
//! the keyed hash), so a cycle means the hash check was skipped or the catalog was edited; the
//! guard is the second line of defence and costs one comparison per level.

use super::model::TreeId;
use super::tree_codec::TreeError;

/// Deepest nesting a walk accepts: a path of at most `PATH_MAX` (4096) bytes has at most 2048
/// components (`a/` per level), and ingest reads sources by path.
pub const MAX_TREE_DEPTH: usize = 2048;

/// The trees on the path from a walk's root to the directory being listed.
#[derive(Clone, Debug, Default)]
pub struct TreePath {
    trees: Vec<TreeId>,
}

impl TreePath {
    /// An empty path, for a walk about to enter its root.
    pub fn new() -> TreePath {
        TreePath::default()
    }

    /// Steps into `tree`; refuses a tree already on the path and a path too deep.
    pub fn enter(&mut self, tree: TreeId) -> Result<(), TreeError> {
        if self.trees.contains(&tree) {
            return Err(TreeError::Cycle);
        }
        if self.trees.len() >= MAX_TREE_DEPTH {
            return Err(TreeError::TooDeep {
                max: MAX_TREE_DEPTH,
            });
        }
        self.trees.push(tree);
        Ok(())
    }

    /// Steps back out of the tree last entered.
    pub fn leave(&mut self) {
        self.trees.pop();
    }

    /// How many trees are on the path.
    #[cfg(test)]
    fn depth(&self) -> usize {
        self.trees.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_on_the_path_is_a_cycle_and_depth_is_bounded() {
        let mut path = TreePath::new();
        path.enter(TreeId([1; 32])).unwrap();
        path.enter(TreeId([2; 32])).unwrap();
        assert_eq!(path.enter(TreeId([1; 32])), Err(TreeError::Cycle));
        path.leave();
        // A sibling may share a subtree with an earlier one: only ancestors count.
        path.enter(TreeId([2; 32])).unwrap();
        assert_eq!(path.depth(), 2);

        let mut deep = TreePath::new();
        for i in 0..MAX_TREE_DEPTH {
            let mut id = [0; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            deep.enter(TreeId(id)).unwrap();
        }
        assert_eq!(
            deep.enter(TreeId([0xff; 32])),
            Err(TreeError::TooDeep {
                max: MAX_TREE_DEPTH
            })
        );
    }
}

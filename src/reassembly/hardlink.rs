//! Hardlinked files of a point: entries of kind file with `nlink > 1` and the same source
//! inode are names of one file. Restore and dump meet a point's names in listing order; the
//! first name of each file met gets its data, and every later name becomes a link to it.

use std::collections::hash_map::Entry as Slot;
use std::collections::HashMap;

use crate::catalog::{Entry, EntryKind};

/// The first name met of each hardlinked file, keyed by its source inode. Only files with
/// other names are remembered, so memory grows with hardlinked files, not with the point.
#[derive(Debug)]
pub struct FirstNames<T> {
    by_inode: HashMap<u64, T>,
}

impl<T> Default for FirstNames<T> {
    fn default() -> Self {
        FirstNames {
            by_inode: HashMap::new(),
        }
    }
}

impl<T> FirstNames<T> {
    /// For `entry`, met under a name that `name` makes: the first name of the same file if one
    /// was met before (this name is then a link to it). Otherwise `None`, and the name is
    /// remembered when the file has others.
    pub fn link_target(&mut self, entry: &Entry, name: impl FnOnce() -> T) -> Option<&T> {
        if entry.kind != EntryKind::File || entry.nlink < 2 {
            return None;
        }
        match self.by_inode.entry(entry.inode) {
            Slot::Occupied(first) => Some(first.into_mut()),
            Slot::Vacant(slot) => {
                slot.insert(name());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(inode: u64, nlink: u64) -> Entry {
        Entry {
            name: b"f".to_vec(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            size: 0,
            inode,
            nlink,
            content: None,
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn later_names_of_a_hardlinked_file_link_to_the_first() {
        let mut names = FirstNames::default();
        assert_eq!(names.link_target(&file(7, 2), || "a"), None);
        assert_eq!(names.link_target(&file(8, 1), || "b"), None);
        assert_eq!(
            names.link_target(&file(8, 1), || "c"),
            None,
            "one name only"
        );
        assert_eq!(names.link_target(&file(7, 2), || "d"), Some(&"a"));
        let mut dir = file(7, 2);
        dir.kind = EntryKind::Dir;
        assert_eq!(names.link_target(&dir, || "e"), None, "only files link");
    }
}

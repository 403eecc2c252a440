//! What the user leaves out of a backup's walk: paths matching the exclude patterns (see
//! [`crate::filter`]), regular files larger than [`WalkOptions::exclude_larger_than`], and the
//! contents of a directory that holds one of the [`ExcludeMarker`]s (a valid `CACHEDIR.TAG`
//! with `--exclude-caches`, a file named by `--exclude-if-present`), of which only the marker
//! itself is kept, as restic does. A marker's header is read the way the backup reads files:
//! never through a symlink, never waiting on a FIFO.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::walk::WalkOptions;
use crate::error::{Error, Result};

/// A file whose presence leaves out the rest of its directory: restic's
/// `--exclude-if-present NAME[:HEADER]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExcludeMarker {
    name: Vec<u8>,
    /// If set, the marker counts only if the file starts with these bytes.
    header: Option<Vec<u8>>,
}

/// The first line of a valid `CACHEDIR.TAG` (<https://bford.info/cachedir/>).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

impl ExcludeMarker {
    /// Parses `NAME` or `NAME:HEADER`; the name is a file name (no `/`, no wildcard).
    pub fn parse(spec: &str) -> Result<ExcludeMarker> {
        let (name, header) = match spec.split_once(':') {
            Some((name, header)) => (name, Some(header.as_bytes().to_vec())),
            None => (spec, None),
        };
        if name.is_empty() || name.contains('/') || matches!(name, "." | "..") {
            return Err(Error::InvalidArgument(format!(
                "--exclude-if-present {spec:?}: give a file name, optionally with :HEADER"
            )));
        }
        Ok(ExcludeMarker {
            name: name.as_bytes().to_vec(),
            header,
        })
    }

    /// A `CACHEDIR.TAG` that starts with the signature of the Cache Directory Tagging spec.
    pub fn cachedir_tag() -> ExcludeMarker {
        ExcludeMarker {
            name: b"CACHEDIR.TAG".to_vec(),
            header: Some(CACHEDIR_SIGNATURE.to_vec()),
        }
    }

    /// Does directory `dir`, whose sorted names are `names`, hold this marker?
    fn marks(&self, dir: &Path, names: &[Vec<u8>]) -> bool {
        if names.binary_search(&self.name).is_err() {
            return false;
        }
        let Some(header) = &self.header else {
            return true;
        };
        // Opened as the reads open files: never through a symlink, never blocking on a FIFO.
        let path = dir.join(OsStr::from_bytes(&self.name));
        let mut start = vec![0; header.len()];
        super::file::open_regular(&path)
            .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut start))
            .is_ok_and(|()| &start == header)
    }
}

/// The names of directory `dir` (sorted) that the walk visits: all, unless the directory holds
/// markers; then only those markers.
pub(super) fn kept_names(
    dir: &Path,
    mut names: Vec<Vec<u8>>,
    markers: &[ExcludeMarker],
) -> Vec<Vec<u8>> {
    let found: Vec<&ExcludeMarker> = markers.iter().filter(|m| m.marks(dir, &names)).collect();
    if !found.is_empty() {
        names.retain(|name| found.iter().all(|m| &m.name == name));
    }
    names
}

/// True if an exclude pattern leaves out `path`.
pub(super) fn excluded(path: &Path, options: &WalkOptions<'_>) -> bool {
    options.exclude.matches(path.as_os_str().as_bytes(), b"")
}

/// True if `meta` is a regular file above the size limit.
pub(super) fn too_large(meta: &std::fs::Metadata, options: &WalkOptions<'_>) -> bool {
    options
        .exclude_larger_than
        .is_some_and(|max| meta.is_file() && meta.len() > max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_marked_directory_keeps_only_its_markers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("CACHEDIR.TAG"),
            b"Signature: 8a477f597d28d172789f06886806bc55\n",
        )
        .unwrap();
        let all = names(&["CACHEDIR.TAG", "blob", "sub"]);
        let cachedir = [ExcludeMarker::cachedir_tag()];
        assert_eq!(
            kept_names(dir.path(), all.clone(), &cachedir),
            names(&["CACHEDIR.TAG"])
        );
        // A marker named but absent, or with another header, marks nothing.
        let absent = [ExcludeMarker::parse(".nobackup").unwrap()];
        assert_eq!(kept_names(dir.path(), all.clone(), &absent), all);
        let other_header = [ExcludeMarker::parse("CACHEDIR.TAG:Signature: 0").unwrap()];
        assert_eq!(kept_names(dir.path(), all.clone(), &other_header), all);
        // Two markers found: each leaves out the other, as restic's rejecters do.
        std::fs::write(dir.path().join(".nobackup"), b"").unwrap();
        let both = [
            cachedir[0].clone(),
            ExcludeMarker::parse(".nobackup").unwrap(),
        ];
        let listed = names(&[".nobackup", "CACHEDIR.TAG", "blob"]);
        assert!(kept_names(dir.path(), listed, &both).is_empty());
    }

    #[test]
    fn a_fifo_named_as_a_marker_is_not_read_and_marks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("CACHEDIR.TAG"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let all = names(&["CACHEDIR.TAG", "blob"]);
        let kept = kept_names(dir.path(), all.clone(), &[ExcludeMarker::cachedir_tag()]);
        assert_eq!(kept, all);
    }

    #[test]
    fn marker_specs_are_file_names() {
        for bad in ["", "a/b", "..", ":header"] {
            assert!(ExcludeMarker::parse(bad).is_err(), "{bad:?}");
        }
        let with_header = ExcludeMarker::parse("tag:a:b").unwrap();
        assert_eq!(with_header.header.as_deref(), Some(&b"a:b"[..]));
    }
}

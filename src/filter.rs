//! Include/exclude patterns, as restic users know them.
//!
//! A pattern without a `/` matches a name at any depth (`*.tmp`, `node_modules`); a pattern
//! with a `/` matches the whole path from the root it is applied to (`/home/*/cache`,
//! `docs/**/*.pdf`). `*` does not cross `/`; `**` does.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A compiled set of patterns.
#[derive(Clone, Debug)]
pub struct PathFilter {
    by_name: GlobSet,
    by_path: GlobSet,
    empty: bool,
}

impl PathFilter {
    /// Compiles patterns; an invalid one is a usage error naming it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<PathFilter> {
        let mut by_name = GlobSetBuilder::new();
        let mut by_path = GlobSetBuilder::new();
        for pattern in patterns {
            let pattern = pattern.as_ref().trim_end_matches('/');
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| {
                    Error::InvalidArgument(format!("bad pattern {pattern:?}: {}", e.kind()))
                })?;
            if pattern.contains('/') {
                by_path.add(glob);
            } else {
                by_name.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::InvalidArgument(format!("bad pattern: {e}")))
        };
        Ok(PathFilter {
            by_name: build(by_name)?,
            by_path: build(by_path)?,
            empty: patterns.is_empty(),
        })
    }

    /// True if no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Does `path` (bytes, `/`-separated, as applied) match? `name` is its last component.
    pub fn matches(&self, path: &[u8], name: &[u8]) -> bool {
        if self.empty {
            return false;
        }
        let name = String::from_utf8_lossy(name);
        if self.by_name.is_match(name.as_ref()) {
            return true;
        }
        let path = String::from_utf8_lossy(path);
        self.by_path.is_match(path.as_ref()) || self.by_path.is_match(path.trim_start_matches('/'))
    }
}

/// Reads patterns from a file: one per line, blank lines and `#` comments skipped.
pub fn read_pattern_file(path: &std::path::Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(Error::io("cannot read exclude file", path))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_anywhere_paths_match_whole() {
        let f = PathFilter::new(&["*.tmp", "/src/*/cache", "docs/**/*.pdf"]).unwrap();
        assert!(f.matches(b"/a/b/x.tmp", b"x.tmp"));
        assert!(!f.matches(b"/a/b/x.tmpl", b"x.tmpl"));
        assert!(f.matches(b"/src/app/cache", b"cache"));
        assert!(!f.matches(b"/src/a/b/cache", b"cache"));
        assert!(f.matches(b"/docs/a/b/c.pdf", b"c.pdf"));
        assert!(PathFilter::new(&["a[".to_string()]).is_err());
        assert!(!PathFilter::new::<&str>(&[]).unwrap().matches(b"/x", b"x"));
    }
}

//! Include/exclude patterns, by restic's documented rules.
//!
//! A pattern is tested against the whole path (for a backup: the absolute path of the file on
//! disk) and must match whole components:
//! - `foo` matches `/dir/foo` and everything below it (`/dir1/foo/dir2/file`), not `/dir/foobar`;
//! - a pattern that does not start with `/` may match from any component (`Documents/*.txt`
//!   matches `/home/alice/Documents/notes.txt`); a leading `/` anchors it at the root (`/bin`
//!   matches `/bin/bash`, not `/usr/bin/bash`); a trailing `/` is ignored;
//! - `*`, `?` and `[...]` never match `/`; `**` matches any number of components
//!   (`foo/**/bar` matches `/foo/bar/file` and `/tmp/foo/x/y/bar`);
//! - `!pattern` cancels the match of the patterns before it (a later pattern may match again);
//!   a directory left out is not walked, so nothing below it comes back.
//!
//! Patterns read from a file skip blank lines and `#` comments and expand `$VAR` and `${VAR}`
//! from the environment (`$$` is a `$`), as restic's exclude files do.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A compiled set of patterns: one or more lists, each folded in order with its own negations;
/// a path matches the set if it matches any list.
#[derive(Clone, Debug, Default)]
pub struct PathFilter {
    lists: Vec<PatternList>,
}

/// Patterns that fold together: `!pattern` cancels the matches of the patterns before it.
#[derive(Clone, Debug)]
struct PatternList {
    /// Every pattern's globs (see [`globs_of`]).
    set: GlobSet,
    /// For each glob of `set`: the index of its pattern.
    pattern_of: Vec<usize>,
    /// For each pattern: is it a `!` pattern?
    negated: Vec<bool>,
}

impl PathFilter {
    /// Compiles patterns; an invalid one is a usage error naming it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<PathFilter> {
        PathFilter::compile(patterns, false)
    }

    /// Compiles patterns that ignore case (restic's `--iexclude`).
    pub fn ignoring_case<S: AsRef<str>>(patterns: &[S]) -> Result<PathFilter> {
        PathFilter::compile(patterns, true)
    }

    /// A filter that matches what either matches; each keeps its own negations.
    pub fn or(mut self, other: PathFilter) -> PathFilter {
        self.lists.extend(other.lists);
        self
    }

    fn compile<S: AsRef<str>>(patterns: &[S], ignore_case: bool) -> Result<PathFilter> {
        if patterns.is_empty() {
            return Ok(PathFilter::default());
        }
        let mut set = GlobSetBuilder::new();
        let mut pattern_of = Vec::new();
        let mut negated = Vec::new();
        for (index, pattern) in patterns.iter().enumerate() {
            let pattern = pattern.as_ref();
            let (negate, body) = match pattern.strip_prefix('!') {
                Some(body) => (true, body),
                None => (false, pattern),
            };
            for glob in globs_of(body).ok_or_else(|| bad_pattern(pattern, "it is empty"))? {
                let glob = GlobBuilder::new(&glob)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .case_insensitive(ignore_case)
                    .build()
                    .map_err(|e| bad_pattern(pattern, &e.kind().to_string()))?;
                set.add(glob);
                pattern_of.push(index);
            }
            negated.push(negate);
        }
        let set = set
            .build()
            .map_err(|e| Error::InvalidArgument(format!("bad pattern: {e}")))?;
        Ok(PathFilter {
            lists: vec![PatternList {
                set,
                pattern_of,
                negated,
            }],
        })
    }

    /// True if no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Does `path` (bytes, `/`-separated) match? Only the path counts; `_name`, its last
    /// component, is what restore's walk has at hand and is implied by `path`.
    pub fn matches(&self, path: &[u8], _name: &[u8]) -> bool {
        if self.lists.is_empty() {
            return false;
        }
        let relative = path.strip_prefix(b"/").unwrap_or(path);
        let candidate = Candidate::new(Path::new(OsStr::from_bytes(relative)));
        self.lists.iter().any(|list| list.matches(&candidate))
    }
}

impl PatternList {
    fn matches(&self, candidate: &Candidate<'_>) -> bool {
        if !self.negated.contains(&true) {
            return self.set.is_match_candidate(candidate);
        }
        let mut hit = vec![false; self.negated.len()];
        for glob in self.set.matches_candidate(candidate) {
            hit[self.pattern_of[glob]] = true;
        }
        hit.iter()
            .zip(&self.negated)
            .fold(false, |matched, (&hit, &negated)| match negated {
                true => matched && !hit,
                false => matched || hit,
            })
    }
}

/// The globs (over paths without their leading `/`) that together match what `pattern`
/// matches: any run of whole components, from the first one if the pattern is anchored.
/// `None` for a pattern without components.
fn globs_of(pattern: &str) -> Option<[String; 2]> {
    let anchored = pattern.starts_with('/');
    let mut parts: Vec<&str> = pattern
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    // `x/**` matches what `x` matches: everything at and below `x`.
    while parts.len() > 1 && parts.last() == Some(&"**") {
        parts.pop();
    }
    if parts.is_empty() {
        return None;
    }
    let body = parts.join("/");
    Some(match anchored {
        true => [body.clone(), format!("{body}/**")],
        false => [format!("**/{body}"), format!("**/{body}/**")],
    })
}

fn bad_pattern(pattern: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("bad pattern {pattern:?}: {why}"))
}

/// Reads patterns from a file: one per line, trimmed, blank lines and `#` comments skipped,
/// environment variables expanded (see the module doc).
pub fn read_pattern_file(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(Error::io("cannot read exclude file", path))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| expand_env(l, |name| std::env::var(name).ok()))
        .collect())
}

/// Replaces `$NAME` and `${NAME}` with `lookup(NAME)` (nothing if unset) and `$$` with `$`.
fn expand_env(line: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, next) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => ("", after),
            }
        } else if let Some(next) = after.strip_prefix('$') {
            out.push('$');
            rest = next;
            continue;
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(&lookup(name).unwrap_or_default());
        }
        rest = next;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &[&str], path: &str) -> bool {
        PathFilter::new(patterns)
            .unwrap()
            .matches(path.as_bytes(), b"")
    }

    /// The examples of restic's manual ("Excluding Files").
    #[test]
    fn restics_documented_examples() {
        // Whole components, at any depth.
        assert!(excluded(&["foo"], "/dir1/foo/dir2/file"));
        assert!(excluded(&["foo"], "/dir/foo"));
        assert!(!excluded(&["foo"], "/dir/foobar"));
        assert!(!excluded(&["foo"], "/dir/barfoo"));
        // A leading `/` anchors at the root; a trailing `/` is ignored.
        assert!(excluded(&["/bin"], "/bin/bash"));
        assert!(!excluded(&["/bin"], "/usr/bin/restic"));
        assert!(excluded(&["/bin/"], "/bin"));
        // `*` stays within a component; `**` spans any number of them.
        assert!(excluded(&["b*ash"], "/bin/bash"));
        assert!(!excluded(&["b*ash"], "/bin/ash"));
        for path in ["/dir1/foo/dir2/bar/file", "/foo/bar/file", "/tmp/foo/bar"] {
            assert!(excluded(&["foo/**/bar"], path), "{path}");
        }
        assert!(excluded(&["*.go"], "/home/user/work/main.go"));
        // `Documents/*.txt` excludes the text files in any `Documents`, not deeper ones.
        assert!(excluded(&["Documents/*.txt"], "/home/a/Documents/x.txt"));
        assert!(!excluded(&["Documents/*.txt"], "/home/a/Documents/x.pdf"));
        assert!(!excluded(&["Documents/*.txt"], "/home/a/Documentsx/x.txt"));
        // Spaces are literal.
        assert!(excluded(&["foo bar star.txt"], "/x/foo bar star.txt"));
    }

    #[test]
    fn negation_cancels_earlier_matches_only() {
        // restic's manual: exclude the home directory but a selection of it.
        let home = ["/home/alice/*", "!/home/alice/Documents", "*~"];
        assert!(excluded(&home, "/home/alice/Music"));
        assert!(!excluded(&home, "/home/alice/Documents"));
        assert!(!excluded(&home, "/home/alice/Documents/report.odt"));
        assert!(excluded(&home, "/home/alice/Documents/report.odt~"));
        // A negation before any match cancels nothing.
        assert!(excluded(&["!keep", "*.tmp"], "/keep/a.tmp"));
        // A directory named by a negation brings back what is below it.
        assert!(!excluded(&["*.tmp", "!important"], "/a/important/x.tmp"));
    }

    #[test]
    fn case_is_ignored_only_where_asked() {
        let both = PathFilter::new(&["*.tmp"])
            .unwrap()
            .or(PathFilter::ignoring_case(&["cache"]).unwrap());
        assert!(both.matches(b"/a/CaChE/x", b""));
        assert!(!both.matches(b"/a/x.TMP", b""));
        assert!(both.matches(b"/a/x.tmp", b""));
    }

    #[test]
    fn bad_and_empty_patterns_are_refused() {
        for bad in ["a[", "", "!", "/", "[z-a]"] {
            let err = PathFilter::new(&[bad]).unwrap_err().to_string();
            assert!(err.contains("bad pattern"), "{bad}: {err}");
        }
        let none = PathFilter::new::<&str>(&[]).unwrap();
        assert!(none.is_empty() && !none.matches(b"/x", b"x"));
    }

    #[test]
    fn exclude_files_expand_the_environment() {
        let env = |name: &str| (name == "HOME").then(|| "/home/bob".to_string());
        assert_eq!(expand_env("$HOME/foo", env), "/home/bob/foo");
        assert_eq!(expand_env("${HOME}x", env), "/home/bobx");
        assert_eq!(expand_env("a$$b", env), "a$b");
        assert_eq!(expand_env("$UNSET/x", env), "/x");
        assert_eq!(expand_env("cost$", env), "cost$");
    }
}

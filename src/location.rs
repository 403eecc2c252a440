//! Where a vault lives, as people write it: a local directory, `s3://bucket/prefix` or
//! `azure://container/prefix`. A URL of a scheme synvault does not know is an error, never a
//! local directory named `s3:`.
//!
//! A vault in object storage keeps its catalog on this machine, in a state directory per vault
//! (`$XDG_STATE_HOME/synvault/<vault id>`, or `--catalog DIR`); everything in the bucket is
//! enough to rebuild it (`catalog rebuild`).

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// A vault's place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory on this machine.
    Local(PathBuf),
    /// A prefix of a bucket or container.
    Remote(Remote),
}

/// Which object service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteKind {
    /// Amazon S3 or any S3-compatible service.
    S3,
    /// Azure Blob Storage.
    Azure,
}

/// A prefix of a bucket (S3) or container (Azure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub kind: RemoteKind,
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the whole bucket.
    pub prefix: String,
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            RemoteKind::S3 => "s3",
            RemoteKind::Azure => "azure",
        };
        write!(f, "{scheme}://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(dir) => write!(f, "{}", dir.display()),
            Location::Remote(remote) => remote.fmt(f),
        }
    }
}

/// How to reach object storage, beyond what each service's environment variables say.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// The service's URL, for S3-compatible services and emulators (`--endpoint`).
    pub endpoint: Option<String>,
    /// Where this machine keeps the vault's catalog (`--catalog`); default: the state
    /// directory of the vault.
    pub catalog_dir: Option<PathBuf>,
    /// A failed request (throttling, 5xx, a dropped connection) is retried with back-off
    /// until this long after its first try.
    pub retry_timeout: Duration,
    /// One request's limit.
    pub request_timeout: Duration,
    /// Requests in flight at once: packs a backup uploads (each a single request of up to
    /// 32 MiB), and packs a restore fetches ahead.
    pub uploads: usize,
    /// Where packs read from the bucket are kept (`--cache-dir`); default: `pack-cache` in
    /// the catalog's directory.
    pub cache_dir: Option<PathBuf>,
    /// At most this many bytes of packs are kept there; 0: no cache.
    pub cache_bytes: u64,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            endpoint: None,
            catalog_dir: None,
            retry_timeout: Duration::from_secs(180),
            request_timeout: Duration::from_secs(300),
            uploads: 4,
            cache_dir: None,
            cache_bytes: 2 << 30,
        }
    }
}

impl Location {
    /// Reads a vault location: `scheme://…` is a URL (of a known scheme, or an error),
    /// anything else a local path.
    pub fn parse(text: &OsStr) -> Result<Location> {
        let Some(utf8) = text.to_str() else {
            return Ok(Location::Local(PathBuf::from(text)));
        };
        let Some((scheme, rest)) = utf8.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(text)));
        };
        let looks_like_scheme = !scheme.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !looks_like_scheme {
            return Ok(Location::Local(PathBuf::from(text)));
        }
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "s3" => RemoteKind::S3,
            "azure" | "az" => RemoteKind::Azure,
            "file" => return Ok(Location::Local(PathBuf::from(rest))),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{utf8}: synvault does not know the scheme {scheme}:// (a vault is a directory, s3://bucket/prefix or azure://container/prefix)"
                )))
            }
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{utf8}: no bucket named (write {scheme}://bucket/prefix)"
            )));
        }
        Ok(Location::Remote(Remote {
            kind,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        }))
    }
}

/// The directory where this machine keeps the catalog of the vault `vault_id`:
/// `$XDG_STATE_HOME/synvault/<id>`, else `~/.local/state/synvault/<id>`.
pub fn state_dir(vault_id: &str) -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/state"),
            None => {
                return Err(Error::InvalidArgument(
                    "no place for the catalog of a vault in object storage: set --catalog DIR, XDG_STATE_HOME or HOME".into(),
                ))
            }
        },
    };
    Ok(base.join("synvault").join(vault_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Location> {
        Location::parse(OsStr::new(text))
    }

    #[test]
    fn paths_stay_paths_and_urls_name_their_bucket_and_prefix() {
        for path in ["/srv/vault", "vault", "./a:b", "c:/x", "dir/s3://x"] {
            assert_eq!(parse(path).unwrap(), Location::Local(PathBuf::from(path)));
        }
        assert_eq!(
            parse("s3://bucket/some/prefix/").unwrap(),
            Location::Remote(Remote {
                kind: RemoteKind::S3,
                bucket: "bucket".into(),
                prefix: "some/prefix".into(),
            })
        );
        let azure = parse("azure://container").unwrap();
        assert_eq!(azure.to_string(), "azure://container");
        assert_eq!(
            parse("file:///srv/v").unwrap(),
            Location::Local("/srv/v".into())
        );
    }

    #[test]
    fn an_unknown_scheme_or_a_missing_bucket_is_an_error() {
        for bad in ["gs://bucket/x", "sftp://host/x", "s3://", "s3:///x"] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
        }
    }
}

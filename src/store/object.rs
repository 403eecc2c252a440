//! Vaults in object storage — S3 (and S3-compatible services) and Azure Blob — through the
//! `object_store` crate: the packs, the small vault files and the lock object, all under one
//! prefix of one bucket or container.
//!
//! `object_store` (Apache Arrow) was chosen over `opendal` because it is one small trait over
//! both services with what a vault needs built in: atomic single-request puts (a killed upload
//! never leaves a partial object), ranged reads, conditional creates and replaces (the lock),
//! and retries with exponential back-off on throttling and 5xx; request signing and the HTTP
//! client are its, not ours. It is async: synchronous callers block on one process-wide tokio
//! runtime, so every reader and writer thread has its own request in flight.
//!
//! Layout under the prefix: `config.json`, `keys/<id>.key`, `lock`,
//! `packs/<first two hex>/<hex>.pack` — the same names as in a vault directory.

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};

use super::files::VaultFiles;
use super::{Backend, PackId, Result, StoreError};
use crate::location::{Remote, RemoteKind, RemoteOptions};

/// Packs, small files and the lock object of a vault in a bucket.
#[derive(Clone)]
pub struct ObjectBackend {
    store: Arc<dyn ObjectStore>,
    /// The prefix every name lives under (empty for a whole bucket).
    prefix: String,
    /// `s3://bucket/prefix`, for messages.
    url: String,
    /// Packs a backup puts at once.
    uploads: usize,
}

impl std::fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBackend")
            .field("url", &self.url)
            .finish()
    }
}

/// The runtime every object request runs on.
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_name("object-store")
        .enable_all()
        .build()
        .map_err(|e| StoreError::Remote {
            what: "start the I/O runtime for",
            object: "object storage".into(),
            why: e.to_string(),
        })?;
    // Another thread may have won the race: either runtime is as good.
    let _ = RUNTIME.set(built);
    RUNTIME.get().ok_or(StoreError::Remote {
        what: "start the I/O runtime for",
        object: "object storage".into(),
        why: "no runtime".into(),
    })
}

/// The version of a small file as read, to replace it only if nobody else did since.
#[derive(Clone, Debug)]
pub struct Version(UpdateVersion);

impl ObjectBackend {
    /// Connects to the bucket or container of `remote`. Credentials, region and endpoint come
    /// from each service's usual environment (`AWS_*`, `AZURE_STORAGE_*`) and `options`.
    /// Nothing is requested yet: a bad credential shows at the first read.
    pub fn connect(remote: &Remote, options: &RemoteOptions) -> Result<ObjectBackend> {
        // TLS runs on ring, the crypto the rest of synvault uses. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = remote.to_string();
        let fail = |e: object_store::Error| StoreError::Remote {
            what: "connect to",
            object: url.clone(),
            why: one_line(&e),
        };
        let retry = retry_config(options.retry_timeout);
        let endpoint = options.endpoint.clone();
        let plain_http = endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        let client = object_store::ClientOptions::new()
            .with_allow_http(plain_http)
            .with_connect_timeout(Duration::from_secs(10))
            .with_timeout(options.request_timeout);
        let store: Arc<dyn ObjectStore> = match remote.kind {
            RemoteKind::S3 => {
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&remote.bucket)
                    .with_retry(retry)
                    .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch);
                if let Some(endpoint) = &endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if std::env::var_os("AWS_REGION").is_none()
                    && std::env::var_os("AWS_DEFAULT_REGION").is_none()
                {
                    builder = builder.with_region("us-east-1");
                }
                Arc::new(builder.with_client_options(client).build().map_err(fail)?)
            }
            RemoteKind::Azure => {
                let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(&remote.bucket)
                    .with_retry(retry);
                if let Some(endpoint) = &endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                Arc::new(builder.with_client_options(client).build().map_err(fail)?)
            }
        };
        Ok(ObjectBackend {
            store,
            prefix: remote.prefix.clone(),
            url,
            uploads: options.uploads.max(1),
        })
    }

    /// The object of vault name `name`.
    fn object(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn pack_name(id: &PackId) -> String {
        let hex = id.to_hex();
        format!("packs/{}/{hex}.pack", &hex[..2])
    }

    /// An error about `name` for people: what failed, where, and the service's answer.
    fn error(&self, what: &'static str, name: &str, e: &object_store::Error) -> StoreError {
        StoreError::Remote {
            what,
            object: self.describe(name),
            why: one_line(e),
        }
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> Result<F::Output> {
        Ok(runtime()?.block_on(future))
    }

    /// Stores `name` only if no object has that name; false if one has.
    pub fn create_new(&self, name: &str, bytes: &[u8]) -> Result<bool> {
        let options = PutOptions::from(PutMode::Create);
        let payload = PutPayload::from(bytes.to_vec());
        match self.block_on(self.store.put_opts(&self.object(name), payload, options))? {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.error("create", name, &e)),
        }
    }

    /// The bytes of `name` with their version, or `None` if there is no such object.
    pub fn read_versioned(&self, name: &str) -> Result<Option<(Vec<u8>, Version)>> {
        let object = self.object(name);
        let read = self.block_on(async {
            let got = self.store.get(&object).await?;
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            Ok::<_, object_store::Error>((got.bytes().await?.to_vec(), Version(version)))
        })?;
        match read {
            Ok(found) => Ok(Some(found)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("read", name, &e)),
        }
    }

    /// Replaces `name` only if it is still at `version`; false if someone changed or removed
    /// it since.
    pub fn replace_if(&self, name: &str, bytes: &[u8], version: &Version) -> Result<bool> {
        let options = PutOptions::from(PutMode::Update(version.0.clone()));
        let payload = PutPayload::from(bytes.to_vec());
        match self.block_on(self.store.put_opts(&self.object(name), payload, options))? {
            Ok(_) => Ok(true),
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::NotFound { .. })
            | Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error("replace", name, &e)),
        }
    }

    fn get_range(&self, name: &str, range: Range<u64>) -> Result<Option<bytes::Bytes>> {
        match self.block_on(self.store.get_range(&self.object(name), range))? {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("read", name, &e)),
        }
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let payload = PutPayload::from(bytes.to_vec());
        self.block_on(self.store.put(&self.object(name), payload))?
            .map(|_| ())
            .map_err(|e| self.error("write", name, &e))
    }

    fn remove_object(&self, name: &str) -> Result<()> {
        match self.block_on(self.store.delete(&self.object(name)))? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", name, &e)),
        }
    }

    /// Every object below folder `dir` (all levels), as (name relative to `dir`, size).
    fn list_below(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let folder = self.object(dir);
        let listed = self.block_on(self.store.list(Some(&folder)).try_collect::<Vec<_>>())?;
        let objects = listed.map_err(|e| self.error("list", dir, &e))?;
        let base = format!("{}/", folder.as_ref());
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.as_ref().strip_prefix(&base)?.to_string();
                Some((name, meta.size))
            })
            .collect())
    }
}

/// Service error codes people act on, and what to tell them.
const KNOWN_CODES: [(&str, &str); 6] = [
    ("NoSuchBucket", "the bucket does not exist"),
    ("ContainerNotFound", "the container does not exist"),
    ("InvalidAccessKeyId", "the service refuses the access key"),
    (
        "SignatureDoesNotMatch",
        "the service refuses the secret key",
    ),
    (
        "AuthenticationFailed",
        "the service refuses the account key",
    ),
    (
        "AuthorizationFailure",
        "the service refuses the credentials",
    ),
];

/// An `object_store` error on one line: what the service said, without the request dump
/// and the XML body that follow it.
fn one_line(e: &object_store::Error) -> String {
    let text = e.to_string();
    if let Some((_, says)) = KNOWN_CODES.iter().find(|(code, _)| text.contains(code)) {
        return (*says).to_string();
    }
    let first = text.lines().next().unwrap_or_default();
    let first = first.split(": <?xml").next().unwrap_or(first);
    // The retry settings say nothing to people ("max_retries: 18446744073709551615, …").
    let first = match first.split_once(", max_retries: ") {
        Some((before, after)) => match after.split_once(" - ") {
            Some((_, cause)) => format!("{before} - {cause}"),
            None => before.to_string(),
        },
        None => first.to_string(),
    };
    first.chars().take(300).collect()
}

impl Backend for ObjectBackend {
    fn put(&self, id: &PackId, bytes: &[u8]) -> Result<()> {
        ObjectBackend::put(self, &Self::pack_name(id), bytes)
    }

    fn read_into(&self, id: &PackId, offset: u64, buf: &mut [u8]) -> Result<()> {
        let name = Self::pack_name(id);
        let range = offset..offset + buf.len() as u64;
        let short = || StoreError::ShortPack {
            pack: *id,
            offset,
            len: buf.len(),
        };
        let bytes = match self.get_range(&name, range) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(StoreError::MissingPack { pack: *id }),
            // A range past the end is refused by the service: tell it apart from a failure.
            Err(e) => {
                return match self.size(id)? {
                    Some(size) if size < offset + buf.len() as u64 => Err(short()),
                    _ => Err(e),
                }
            }
        };
        if bytes.len() != buf.len() {
            return Err(short());
        }
        buf.copy_from_slice(&bytes);
        Ok(())
    }

    fn read_all(&self, id: &PackId) -> Result<Vec<u8>> {
        let name = Self::pack_name(id);
        match self.read_versioned(&name)? {
            Some((bytes, _)) => Ok(bytes),
            None => Err(StoreError::MissingPack { pack: *id }),
        }
    }

    fn size(&self, id: &PackId) -> Result<Option<u64>> {
        let name = Self::pack_name(id);
        match self.block_on(self.store.head(&self.object(&name)))? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("look up", &name, &e)),
        }
    }

    fn list(&self) -> Result<Vec<(PackId, u64)>> {
        Ok(self
            .list_below("packs")?
            .into_iter()
            .filter_map(|(name, size)| {
                let file = name.rsplit('/').next()?;
                let id = PackId::from_hex(file.strip_suffix(".pack")?)?;
                Some((id, size))
            })
            .collect())
    }

    fn delete(&self, id: &PackId) -> Result<()> {
        self.remove_object(&Self::pack_name(id))
    }

    fn uploads_in_flight(&self) -> usize {
        self.uploads
    }
}

impl VaultFiles for ObjectBackend {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.read_versioned(name)?.map(|(bytes, _)| bytes))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.put(name, bytes)
    }

    fn remove(&self, name: &str) -> Result<()> {
        self.remove_object(name)
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .list_below(dir)?
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| !name.contains('/'))
            .collect();
        names.sort();
        Ok(names)
    }

    fn is_empty(&self) -> Result<bool> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let first = self.block_on(async {
            let mut listing = self.store.list(prefix.as_ref());
            listing.try_next().await
        })?;
        match first {
            Ok(found) => Ok(found.is_none()),
            Err(e) => Err(self.error("list", "", &e)),
        }
    }

    fn describe(&self, name: &str) -> String {
        if name.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{name}", self.url.trim_end_matches('/'))
        }
    }
}

/// Retries with back-off until `timeout` has passed since the first try. Only the time ends
/// them: a count would end them early, since back-off is random from 100 ms up (ten retries
/// once gave up within 2 s, while a 30 s timeout was asked).
fn retry_config(timeout: Duration) -> RetryConfig {
    RetryConfig {
        max_retries: usize::MAX,
        retry_timeout: timeout,
        ..RetryConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_retry_timeout_ends_the_retries() {
        let timeout = Duration::from_secs(180);
        let config = retry_config(timeout);
        // Each retry waits at least the first back-off: the count must outlast the timeout.
        let shortest = config.backoff.init_backoff;
        let count_outlasts = u32::try_from(config.max_retries).map_or(true, |n| {
            shortest.checked_mul(n).is_none_or(|d| d >= timeout)
        });
        assert!(count_outlasts, "{config:?}");
        assert_eq!(config.retry_timeout, timeout);
    }

    fn error(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: text.into(),
        }
    }

    #[test]
    fn service_errors_read_as_one_line_people_can_act_on() {
        let missing = error("Error performing list request: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code></Error>");
        assert_eq!(one_line(&missing), "the bucket does not exist");
        let refused = error("Error performing GET http://h/x - Server returned non-2xx status code: 500: <?xml version=\"1.0\"?>\n<Error/>");
        let line = one_line(&refused);
        assert!(!line.contains('\n') && !line.contains("<?xml"), "{line}");
        assert!(line.contains("500"), "{line}");
        let retried = error("Error performing GET http://h/x in 2s, after 9 retries, max_retries: 18446744073709551615, retry_timeout: 2s  - HTTP error: error sending request");
        assert_eq!(
            one_line(&retried),
            "Generic S3 error: Error performing GET http://h/x in 2s, after 9 retries - HTTP error: error sending request"
        );
    }
}

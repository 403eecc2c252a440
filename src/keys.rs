//! Key files: the vault's one master key wrapped under each passphrase, one file per
//! passphrase in `keys/<id>.key` beside the packs (see `store::files`), and their management (list, add, remove, change).
//!
//! Every key file wraps the same master key, so adding or removing a passphrase never touches
//! a pack or the catalog. Invariants kept here:
//! - a vault keeps at least one key file: the last one is never removed, nor the one that
//!   opened the vault (that would lock its user out mid-command);
//! - a new key file is durable (temp file, fsync, rename, fsync the directory) before any
//!   other is removed, so a crash during a passphrase change leaves the old or the new
//!   passphrase (or both) working, never neither.
//!
//! Changes take a [`WriterLock`] as proof that the caller holds the vault's writer lock, so
//! two key changes never race.
//!
//! ```text
//! { "kdf": "argon2id", "params": {..}, "salt": hex, "wrapped": hex(AES-GCM(master)),
//!   "created": "2026-..Z", "host": "..", "user": ".." }     // the last three optional
//! ```

use serde::{Deserialize, Serialize};

use crate::crypto::{self, KdfParams, Key, RingCipher};
use crate::error::{Error, Result};
use crate::lock::WriterLock;
use crate::store::files::VaultFiles;
use crate::vault::Vault;

/// Associated data of the sealed master key: binds the ciphertext to its purpose.
const KEY_FILE_AAD: &[u8] = b"synvault key file v1";
const KEY_FILE_EXTENSION: &str = "key";

/// The name of a key file (16 hex digits), as `key list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    fn random() -> KeyId {
        KeyId(hex::encode(crypto::random_array::<8>()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    kdf: String,
    params: KdfParams,
    salt: String,
    wrapped: String,
    /// When, where and by whom it was made; key files of older builds have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
}

/// One key file of a vault, as `key list` shows it (never its secret).
#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    pub id: KeyId,
    /// UTC time it was made, if recorded.
    pub created: Option<String>,
    /// The machine it was made on, if recorded.
    pub host: Option<String>,
    /// The user who made it, if recorded.
    pub user: Option<String>,
    /// True for the key file whose passphrase opened this vault.
    pub current: bool,
}

/// Wraps `master` under `passphrase` into a new key file among `files`.
pub(crate) fn write_new(
    files: &dyn VaultFiles,
    master: &Key,
    passphrase: &[u8],
    params: KdfParams,
) -> Result<KeyId> {
    if passphrase.is_empty() {
        return Err(Error::InvalidArgument(
            "the passphrase is empty: a vault needs one to protect its key".into(),
        ));
    }
    let file = wrap(master, passphrase, params)?;
    let id = KeyId::random();
    let json = serde_json::to_vec_pretty(&file).unwrap_or_default();
    files.write(&key_name(&id), &json)?;
    Ok(id)
}

/// Finds the key file `passphrase` opens and returns its id and the master key, or fails with
/// [`Error::WrongPassphrase`].
pub(crate) fn open_master(files: &dyn VaultFiles, passphrase: &[u8]) -> Result<(KeyId, Key)> {
    for (id, file) in read_all(files)? {
        if let Some(key) = unwrap(&file, passphrase) {
            return Ok((id, key));
        }
    }
    Err(Error::WrongPassphrase)
}

/// Every key file of the vault, oldest first; the one that opened it is marked `current`.
pub fn list(vault: &Vault) -> Result<Vec<KeyInfo>> {
    let mut keys: Vec<KeyInfo> = read_all(vault.files())?
        .into_iter()
        .map(|(id, file)| KeyInfo {
            current: id == *vault.key_id(),
            id,
            created: file.created,
            host: file.host,
            user: file.user,
        })
        .collect();
    // Files without a time are older than any with one; ids break ties.
    keys.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    Ok(keys)
}

/// Adds a key file wrapping the vault's master key under `passphrase`; returns its id.
pub fn add(
    vault: &Vault,
    _writer: &WriterLock,
    passphrase: &[u8],
    params: KdfParams,
) -> Result<KeyId> {
    write_new(vault.files(), vault.master_key(), passphrase, params)
}

/// Removes the key file whose id is or starts with `query`; returns its id. Refuses the last
/// key file ([`Error::LastKey`]) and the one that opened this vault ([`Error::KeyInUse`]).
pub fn remove(vault: &Vault, _writer: &WriterLock, query: &str) -> Result<KeyId> {
    let ids: Vec<KeyId> = read_all(vault.files())?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let id = resolve(&ids, query)?;
    if ids.len() == 1 {
        return Err(Error::LastKey { id: id.0 });
    }
    if id == *vault.key_id() {
        return Err(Error::KeyInUse { id: id.0 });
    }
    delete(vault.files(), &id)?;
    Ok(id)
}

/// Replaces the passphrase that opened this vault: a new key file under `passphrase`, durable
/// first, then the old one removed. Returns the new id. The vault value still names the old
/// id as its own: open the vault again to work on with the new one.
pub fn change_passphrase(
    vault: &Vault,
    writer: &WriterLock,
    passphrase: &[u8],
    params: KdfParams,
) -> Result<KeyId> {
    let new = add(vault, writer, passphrase, params)?;
    delete(vault.files(), vault.key_id())?;
    Ok(new)
}

/// The one id `query` names: the whole id or a prefix of exactly one.
fn resolve(ids: &[KeyId], query: &str) -> Result<KeyId> {
    if let Some(exact) = ids.iter().find(|id| id.0 == query) {
        return Ok(exact.clone());
    }
    let matches: Vec<&KeyId> = ids
        .iter()
        .filter(|id| !query.is_empty() && id.0.starts_with(query))
        .collect();
    match matches[..] {
        [one] => Ok(one.clone()),
        [] => Err(Error::NoSuchKey {
            query: query.to_string(),
        }),
        _ => Err(Error::AmbiguousKey {
            query: query.to_string(),
        }),
    }
}

/// Removes a key file durably.
fn delete(files: &dyn VaultFiles, id: &KeyId) -> Result<()> {
    Ok(files.remove(&key_name(id))?)
}

const KEYS_DIR: &str = "keys";

fn key_name(id: &KeyId) -> String {
    format!("{KEYS_DIR}/{}.{KEY_FILE_EXTENSION}", id.0)
}

/// Every `<id>.key` that parses as a key file, by id. A file that does not parse (a
/// temporary, something copied in) is no key and is skipped, as opening skips it.
fn read_all(files: &dyn VaultFiles) -> Result<Vec<(KeyId, KeyFile)>> {
    let mut found = Vec::new();
    for name in files.list(KEYS_DIR)? {
        let Some(stem) = name.strip_suffix(&format!(".{KEY_FILE_EXTENSION}")) else {
            continue;
        };
        if stem.starts_with('.') {
            continue;
        }
        let Some(bytes) = files.read(&format!("{KEYS_DIR}/{name}"))? else {
            continue;
        };
        if let Ok(file) = serde_json::from_slice::<KeyFile>(&bytes) {
            found.push((KeyId(stem.to_string()), file));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

fn wrap(master: &Key, passphrase: &[u8], params: KdfParams) -> Result<KeyFile> {
    let salt: [u8; 16] = crypto::random_array();
    let kek = crypto::stretch_passphrase(passphrase, &salt, params)
        .map_err(|e| Error::InvalidArgument(format!("key derivation parameters: {e}")))?;
    let wrapped = crypto::seal_message(&RingCipher, &kek, KEY_FILE_AAD, master.as_bytes());
    Ok(KeyFile {
        kdf: "argon2id".into(),
        params,
        salt: hex::encode(salt),
        wrapped: hex::encode(wrapped),
        created: Some(crate::time::format_utc(crate::time::now_ns())),
        host: Some(host_name()),
        user: user_name(),
    })
}

fn unwrap(file: &KeyFile, passphrase: &[u8]) -> Option<Key> {
    let salt = hex::decode(&file.salt).ok()?;
    let wrapped = hex::decode(&file.wrapped).ok()?;
    let kek = crypto::stretch_passphrase(passphrase, &salt, file.params).ok()?;
    let raw = crypto::open_message(&RingCipher, &kek, KEY_FILE_AAD, &wrapped).ok()?;
    Some(Key::from_bytes(raw.try_into().ok()?))
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The login name from the environment, else the numeric uid: recorded for people to tell
/// key files apart, never trusted.
fn user_name() -> Option<String> {
    ["USER", "LOGNAME"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .or_else(|| Some(format!("uid {}", rustix::process::getuid().as_raw())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::TEST_OPTIONS;
    use std::fs;

    const FAST: KdfParams = TEST_OPTIONS.kdf;

    fn vault(dir: &tempfile::TempDir) -> Vault {
        Vault::create(&dir.path().join("v"), b"first", TEST_OPTIONS).unwrap()
    }

    #[test]
    fn an_added_key_opens_the_same_vault() {
        let dir = tempfile::tempdir().unwrap();
        let first = vault(&dir);
        let (lock, _) = first.lock_writer("key add").unwrap();
        let added = add(&first, &lock, b"second", FAST).unwrap();
        drop(lock);
        let second = Vault::open(first.root(), b"second").unwrap();
        assert_eq!(second.key_id(), &added);
        assert_eq!(second.config().vault_id, first.config().vault_id);
        assert_eq!(second.codec().keys().id.0, first.codec().keys().id.0);
        let listed = list(&second).unwrap();
        assert_eq!(listed.len(), 2);
        let current: Vec<_> = listed.iter().filter(|k| k.current).map(|k| &k.id).collect();
        assert_eq!(current, [&added]);
        assert!(listed
            .iter()
            .all(|k| k.created.is_some() && k.host.is_some()));
    }

    #[test]
    fn the_last_key_and_the_key_in_use_stay() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(&dir);
        let (lock, _) = v.lock_writer("key remove").unwrap();
        let own = v.key_id().clone();
        assert!(matches!(
            remove(&v, &lock, own.as_str()),
            Err(Error::LastKey { .. })
        ));
        let other = add(&v, &lock, b"second", FAST).unwrap();
        assert!(matches!(
            remove(&v, &lock, &own.0[..4]),
            Err(Error::KeyInUse { .. })
        ));
        assert_eq!(remove(&v, &lock, &other.0[..3]).unwrap(), other);
        assert!(matches!(
            Vault::open(v.root(), b"second"),
            Err(Error::WrongPassphrase)
        ));
        assert!(matches!(
            remove(&v, &lock, "zz"),
            Err(Error::NoSuchKey { .. })
        ));
        assert!(matches!(
            remove(&v, &lock, ""),
            Err(Error::NoSuchKey { .. })
        ));
    }

    #[test]
    fn a_prefix_names_one_key_or_is_ambiguous() {
        let ids = [
            KeyId("ab12".into()),
            KeyId("ab34".into()),
            KeyId("ab".into()),
        ];
        assert_eq!(resolve(&ids, "ab1").unwrap(), ids[0]);
        assert_eq!(
            resolve(&ids, "ab").unwrap(),
            ids[2],
            "a whole id is never ambiguous"
        );
        assert!(matches!(
            resolve(&ids[..2], "ab"),
            Err(Error::AmbiguousKey { .. })
        ));
    }

    #[test]
    fn a_changed_passphrase_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(&dir);
        let (lock, _) = v.lock_writer("key passwd").unwrap();
        let new = change_passphrase(&v, &lock, b"new", FAST).unwrap();
        assert!(matches!(
            Vault::open(v.root(), b"first"),
            Err(Error::WrongPassphrase)
        ));
        let reopened = Vault::open(v.root(), b"new").unwrap();
        assert_eq!(reopened.key_id(), &new);
        assert_eq!(list(&reopened).unwrap().len(), 1);
        assert!(matches!(
            add(&v, &lock, b"", FAST),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn a_key_file_of_an_older_build_still_opens_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(&dir);
        let path = v.root().join(key_name(v.key_id()));
        let mut json: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        for field in ["created", "host", "user"] {
            json.as_object_mut().unwrap().remove(field);
        }
        fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        fs::write(v.root().join("keys/.x.key.1.tmp"), b"{").unwrap();
        let reopened = Vault::open(v.root(), b"first").unwrap();
        let listed = list(&reopened).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].current && listed[0].created.is_none());
    }
}

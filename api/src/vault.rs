//! The key that secrets set at run time are encrypted with, kept in a file
//! outside the data dir: a copy of the data dir alone reveals no value.
//!
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`): a random 24-byte
//! nonce per value is safe to draw at random, and the record's scope and
//! name are the associated data, so a ciphertext moved to another name or
//! repository in the store no longer opens.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "the secrets key file {path} is missing, and the store holds {count} secret(s) encrypted with it (key id {key_id}): restore the file, or point [server] secrets_key at it; a new key cannot open them"
    )]
    Missing {
        path: PathBuf,
        count: usize,
        key_id: String,
    },
    #[error(
        "the secrets key file {path} (key id {found}) is not the key the store's secrets were encrypted with (key id {expected}){hint}"
    )]
    WrongKey {
        path: PathBuf,
        found: String,
        expected: String,
        hint: String,
    },
    #[error(
        "the secrets key file {path} is not a key: {reason} (it holds 64 hex digits written by slipway)"
    )]
    Malformed { path: PathBuf, reason: String },
    #[error("the secrets key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "a secret stored as {what} does not open with this key: it was changed or moved in the store"
    )]
    Open { what: String },
}

/// A sealed value as stored: hex nonce and hex ciphertext (tag included).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// The secrets key, loaded.
pub struct Vault {
    path: PathBuf,
    cipher: XChaCha20Poly1305,
    key_id: String,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A short fingerprint of a key, stored with each value: it tells which
/// key a store needs without revealing anything about the key.
fn key_id(key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"slipway secrets key id\0");
    h.update(key);
    hex::encode(&h.finalize()[..8])
}

impl Vault {
    /// Loads the key at `path`, or creates it (mode 0600) when it does not
    /// exist and `stored_key_ids` (the key ids the store's secrets carry)
    /// is empty. A store whose secrets need another key is refused here,
    /// at start, rather than at the first run that needs a value.
    pub fn open(path: &Path, stored_key_ids: &[String]) -> Result<Vault, VaultError> {
        let key = match std::fs::read_to_string(path) {
            Ok(text) => parse_key(path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(expected) = stored_key_ids.first() {
                    return Err(VaultError::Missing {
                        path: path.into(),
                        count: stored_key_ids.len(),
                        key_id: expected.clone(),
                    });
                }
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                match write_key_file(path, &key, false) {
                    Ok(()) => key.to_vec(),
                    // Another process created it first: use theirs.
                    Err(VaultError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        let text =
                            std::fs::read_to_string(path).map_err(|source| VaultError::Io {
                                path: path.into(),
                                source,
                            })?;
                        parse_key(path, &text)?
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(source) => {
                return Err(VaultError::Io {
                    path: path.into(),
                    source,
                });
            }
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    path = %path.display(),
                    "the secrets key file can be read by other users: chmod 600 it"
                );
            }
        }
        let vault = Vault::from_key(path, &key)?;
        if let Some(expected) = stored_key_ids.iter().find(|id| **id != vault.key_id) {
            let next = rotation_file(path);
            let hint = match std::fs::read_to_string(&next)
                .ok()
                .and_then(|t| parse_key(&next, &t).ok())
            {
                Some(k) if key_id(&k) == *expected => format!(
                    "; {} holds the right key: a key rotation stopped half way, move it to {}",
                    next.display(),
                    path.display()
                ),
                _ => String::new(),
            };
            return Err(VaultError::WrongKey {
                path: path.into(),
                found: vault.key_id.clone(),
                expected: expected.clone(),
                hint,
            });
        }
        Ok(vault)
    }

    fn from_key(path: &Path, key: &[u8]) -> Result<Vault, VaultError> {
        let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| VaultError::Malformed {
            path: path.into(),
            reason: "not 32 bytes".into(),
        })?;
        Ok(Vault {
            path: path.into(),
            cipher,
            key_id: key_id(key),
        })
    }

    /// A new random key for rotation, written to `<path>.new` (never over
    /// the current key, which still opens the store until the re-encrypted
    /// values are written).
    pub fn rotation(&self) -> Result<Vault, VaultError> {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let next = rotation_file(&self.path);
        write_key_file(&next, &key, true)?;
        let mut vault = Vault::from_key(&next, &key)?;
        vault.path = self.path.clone();
        Ok(vault)
    }

    /// Puts the rotated key in place of the old one, once the store holds
    /// only values sealed with it.
    pub fn commit_rotation(&self) -> Result<(), VaultError> {
        std::fs::rename(rotation_file(&self.path), &self.path).map_err(|source| VaultError::Io {
            path: self.path.clone(),
            source,
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `what` names the record (scope and name): it is bound to the value.
    pub fn seal(&self, what: &str, value: &str) -> Sealed {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption with a valid key and nonce cannot fail for in-memory
        // buffers; an empty ciphertext would only fail to open later.
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: what.as_bytes(),
                },
            )
            .unwrap_or_default();
        Sealed {
            key_id: self.key_id.clone(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        }
    }

    pub fn open_value(&self, what: &str, sealed: &Sealed) -> Result<String, VaultError> {
        let fail = || VaultError::Open { what: what.into() };
        let nonce = hex::decode(&sealed.nonce).map_err(|_| fail())?;
        if nonce.len() != 24 || sealed.key_id != self.key_id {
            return Err(fail());
        }
        let ciphertext = hex::decode(&sealed.ciphertext).map_err(|_| fail())?;
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: what.as_bytes(),
                },
            )
            .map_err(|_| fail())?;
        String::from_utf8(plain).map_err(|_| fail())
    }
}

fn rotation_file(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

fn parse_key(path: &Path, text: &str) -> Result<Vec<u8>, VaultError> {
    let key = hex::decode(text.trim()).map_err(|e| VaultError::Malformed {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if key.len() != 32 {
        return Err(VaultError::Malformed {
            path: path.into(),
            reason: format!("{} bytes, not 32", key.len()),
        });
    }
    Ok(key)
}

/// Writes a key readable by its owner only. `replace`: over an older file
/// of that name (a stale `.new` from a rotation that stopped).
fn write_key_file(path: &Path, key: &[u8], replace: bool) -> Result<(), VaultError> {
    let io = |source| VaultError::Io {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(format!("{}\n", hex::encode(key)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)
}

/// What a key rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub secrets: usize,
    pub old_key_id: String,
    pub new_key_id: String,
}

/// Re-encrypts every stored secret with a new key and puts the new key in
/// place of the one at `path`. The server must be stopped (it holds the
/// store). A crash half way leaves the store and `<path>.new` agreeing,
/// and the next start says so.
pub fn rotate(store: &crate::store::Store, path: &Path) -> Result<Rotated, RotateError> {
    use crate::store::SecretRecord;
    let records = store.secrets()?;
    let ids: Vec<String> = records.iter().map(|r| r.sealed.key_id.clone()).collect();
    let old = Vault::open(path, &ids)?;
    let new = old.rotation()?;
    let mut rewritten = Vec::with_capacity(records.len());
    for mut r in records {
        let binding = SecretRecord::binding(&r.scope, &r.name);
        let value = old.open_value(&binding, &r.sealed)?;
        r.sealed = new.seal(&binding, &value);
        rewritten.push(r);
    }
    store.replace_secrets(&rewritten)?;
    new.commit_rotation()?;
    Ok(Rotated {
        secrets: rewritten.len(),
        old_key_id: old.key_id,
        new_key_id: new.key_id,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// `$XDG_CONFIG_HOME/slipway/secrets.key`, else `~/.config/slipway/secrets.key`:
/// outside the default data dir (`~/.local/share/slipway`), so backing up
/// or copying the data dir does not copy the key with it.
pub fn default_key_path() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME") {
        return PathBuf::from(xdg).join("slipway/secrets.key");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".config/slipway/secrets.key"),
        None => PathBuf::from(".slipway-secrets.key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "slipway-vault-{}-{}",
            std::process::id(),
            crate::ids::new_run_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_key_is_created_once_and_opens_what_it_sealed_only_under_the_same_name() {
        let dir = temp();
        let path = dir.join("k/secrets.key");
        let vault = Vault::open(&path, &[]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = vault.seal("repo acme/web TOKEN", "hunter2-value");
        assert!(!sealed.ciphertext.contains(&hex::encode("hunter2-value")));
        let again = Vault::open(&path, &[vault.key_id().to_string()]).unwrap();
        assert_eq!(
            again.open_value("repo acme/web TOKEN", &sealed).unwrap(),
            "hunter2-value"
        );
        assert!(again.open_value("repo acme/api TOKEN", &sealed).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_missing_or_other_key_is_refused_naming_the_file() {
        let dir = temp();
        let path = dir.join("secrets.key");
        let e = Vault::open(&path, &["abc".into()]).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("missing"),
            "{e}"
        );
        assert!(
            !path.exists(),
            "no new key over secrets that need the old one"
        );
        Vault::open(&path, &[]).unwrap();
        let e = Vault::open(&path, &["abc".into()]).unwrap_err().to_string();
        assert!(e.contains("is not the key"), "{e}");
        std::fs::write(&path, "zz").unwrap();
        let e = Vault::open(&path, &[]).unwrap_err().to_string();
        assert!(e.contains("is not a key"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_rotation_that_stopped_half_way_says_where_the_right_key_is() {
        let dir = temp();
        let path = dir.join("secrets.key");
        let old = Vault::open(&path, &[]).unwrap();
        let new = old.rotation().unwrap();
        // The store was rewritten with the new key, the rename never happened.
        let e = Vault::open(&path, &[new.key_id().into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("secrets.key.new holds the right key"), "{e}");
        new.commit_rotation().unwrap();
        Vault::open(&path, &[new.key_id().into()]).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}

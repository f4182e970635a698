//! Envelope encryption for the secrets Credence stores on other people's behalf.
//!
//! Each secret is encrypted with its own random data key (DEK) using
//! XChaCha20-Poly1305, and the DEK is wrapped with a key-encryption key (KEK)
//! from the key file. Both layers use the caller's *context* (e.g. the row's
//! id) as associated data, so a ciphertext copied to another row no longer
//! opens. The KEK version travels with every [`Sealed`] value, which is what
//! makes rotation possible without downtime: [`rotate_key_file`] appends a
//! new version, a running [`Vault`] notices the replaced key file before its
//! next seal (one `stat` per seal) and seals under the new version from then
//! on, [`Vault::rewrap`] moves old values to the new KEK without touching
//! their payload, and [`retire_key_file`] drops a version nothing uses any more.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::rngs::OsRng;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretBox, SecretString};
use zeroize::Zeroizing;

mod error;
mod keyfile;
mod sealed;
#[cfg(test)]
mod tests;

pub use error::VaultError;
pub use keyfile::{retire_key_file, rotate_key_file};
pub use sealed::Sealed;
/// Re-exported so callers build secrets with the same `secrecy` version.
pub use secrecy;

const KEK_LEN: usize = 32;
const DEK_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// KEKs by version. Never empty: every constructor refuses an empty set.
type KeyRing = BTreeMap<u32, Zeroizing<[u8; KEK_LEN]>>;

/// Seals and opens secrets with the keys of one key file.
///
/// `Send + Sync`, meant to be shared in an `Arc`. Its `Debug` lists key
/// versions only.
pub struct Vault {
    /// Where to look for versions we do not know yet; `None` for `from_keys`.
    key_file: Option<PathBuf>,
    /// The identity of the key file the keys were last read from; when the
    /// file on disk is another one (rotation renames a new file over it), the
    /// keys are re-read before sealing.
    loaded_from: Mutex<Option<FileStamp>>,
    keys: RwLock<KeyRing>,
}

/// What tells one version of the key file from the next without reading it:
/// rotation and retirement rename a new file over the old, so the inode
/// changes even when the modification time does not (coarse clocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    modified_ns: i128,
    len: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            device: meta.dev(),
            inode: meta.ino(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            len: meta.len(),
        })
    }
}

impl Vault {
    /// Loads the key file at `path`, creating it (mode 0600, parent
    /// directories 0700) with a fresh version-1 key if it does not exist.
    pub fn open_or_create(path: &Path) -> Result<Vault, VaultError> {
        let keys = keyfile::load_or_create(path)?;
        Ok(Vault {
            key_file: Some(path.to_owned()),
            loaded_from: Mutex::new(FileStamp::of(path)),
            keys: RwLock::new(keys),
        })
    }

    /// A vault over keys obtained elsewhere, with no key file to reload.
    /// The caller's copies in `keys` are zeroized.
    ///
    /// # Panics
    ///
    /// If `keys` is empty, holds version 0 or holds a version twice: these are
    /// programming errors, not runtime conditions.
    pub fn from_keys(mut keys: Vec<(u32, [u8; KEK_LEN])>) -> Vault {
        assert!(!keys.is_empty(), "vault needs at least one key");
        let mut ring = KeyRing::new();
        for (version, key) in &mut keys {
            assert!(*version > 0, "key versions start at 1, got 0");
            let duplicate = ring.insert(*version, Zeroizing::new(*key)).is_some();
            assert!(!duplicate, "key version {version} given twice");
            zeroize::Zeroize::zeroize(key);
        }
        Vault {
            key_file: None,
            loaded_from: Mutex::new(None),
            keys: RwLock::new(ring),
        }
    }

    /// The version new values are sealed under: the highest one in the key
    /// file. Follows the file like [`Vault::seal`] does, so that a caller
    /// comparing stored values with it (a renewal pass) does not work towards
    /// a version a rotation has already replaced.
    pub fn current_version(&self) -> u32 {
        self.follow_key_file();
        *self
            .read_keys()
            .keys()
            .next_back()
            .expect("keyring is never empty")
    }

    /// Re-reads the key file, e.g. on SIGHUP or right after a rotation, so
    /// that new values are sealed under the newest key. The file is the
    /// source of truth: its keys replace the ones in memory. A no-op for
    /// vaults made by [`Vault::from_keys`].
    pub fn reload(&self) -> Result<(), VaultError> {
        if let Some(path) = &self.key_file {
            // Stamp first: a change between the stamp and the read is then
            // seen again at the next check instead of being missed.
            let stamp = FileStamp::of(path);
            let fresh = keyfile::read(path)?;
            *self.write_keys() = fresh;
            *self
                .loaded_from
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = stamp;
        }
        Ok(())
    }

    /// Re-reads the key file if it is no longer the one the keys came from,
    /// so that a process running while `credence keys rotate` adds a version
    /// seals under it from the next value on. One `stat` when nothing changed.
    /// A file that cannot be read right now keeps the keys in memory (sealing
    /// under an older version is still correct) and is tried again next time.
    fn follow_key_file(&self) {
        let Some(path) = &self.key_file else { return };
        let on_disk = FileStamp::of(path);
        let changed = {
            let loaded = self
                .loaded_from
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            on_disk.is_some() && *loaded != on_disk
        };
        if changed {
            let _ = self.reload();
        }
    }

    /// Encrypts `plaintext` for the record identified by `context`, under the
    /// newest key version in the key file.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Sealed, VaultError> {
        self.follow_key_file();
        let (version, kek) = {
            let keys = self.read_keys();
            let (version, key) = keys.last_key_value().expect("keyring is never empty");
            (*version, cipher(key))
        };
        let dek = fresh_key();
        let payload = encrypt(&cipher(&dek), plaintext, context)?;
        let key_part = encrypt(&kek, &dek[..], context)?;
        Ok(Sealed::assemble(
            version,
            &key_part,
            &URL_SAFE_NO_PAD.encode(payload),
        ))
    }

    /// Decrypts a value sealed for the record identified by `context`.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<SecretBox<Vec<u8>>, VaultError> {
        let mut plaintext = self.open_zeroizing(sealed, context)?;
        // Moving the Vec out keeps its heap buffer, which SecretBox zeroizes.
        Ok(SecretBox::new(Box::new(std::mem::take(&mut *plaintext))))
    }

    /// Re-wraps the data key of `sealed` under the current KEK. `Ok(None)` if
    /// it already is; otherwise the payload part of the result is
    /// byte-identical to the input's, only the key part changes.
    pub fn rewrap(&self, sealed: &Sealed, context: &str) -> Result<Option<Sealed>, VaultError> {
        self.follow_key_file();
        let parts = sealed::Parts::split(sealed.as_str())?;
        let (key_part, payload) = (parts.key_part()?, parts.payload()?);
        // Resolve the old key first: it may be newer than anything we know,
        // and reloading for it also refreshes what "current" means.
        let old_kek = self.cipher_for(parts.version)?;
        let (current, new_kek) = {
            let keys = self.read_keys();
            let (version, key) = keys.last_key_value().expect("keyring is never empty");
            (*version, cipher(key))
        };
        if parts.version == current {
            return Ok(None);
        }
        let dek = unwrap_dek(&old_kek, &key_part, context)?;
        // Check the payload too, so a rotation job reports a corrupt row now
        // instead of carrying it forward under a fresh key.
        drop(Zeroizing::new(decrypt(&cipher(&dek), &payload, context)?));
        let key_part = encrypt(&new_kek, &dek[..], context)?;
        Ok(Some(Sealed::assemble(
            current,
            &key_part,
            parts.payload_b64,
        )))
    }

    /// Opens a value sealed for `old_context` and seals it afresh (new data
    /// key, current KEK) for `new_context`: how values bound by an older
    /// scheme of associated data are moved to the current one.
    pub fn reseal(
        &self,
        sealed: &Sealed,
        old_context: &str,
        new_context: &str,
    ) -> Result<Sealed, VaultError> {
        let plaintext = self.open_zeroizing(sealed, old_context)?;
        self.seal(&plaintext, new_context)
    }

    /// [`Vault::seal`] for text secrets.
    pub fn seal_str(&self, plaintext: &SecretString, context: &str) -> Result<Sealed, VaultError> {
        self.seal(plaintext.expose_secret().as_bytes(), context)
    }

    /// [`Vault::open`] for text secrets; a non-UTF-8 plaintext is `Malformed`.
    pub fn open_string(&self, sealed: &Sealed, context: &str) -> Result<SecretString, VaultError> {
        let bytes = self.open_zeroizing(sealed, context)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| VaultError::Malformed("opened secret is not valid UTF-8"))?;
        // Copy into an exact-size box: `String::into_boxed_str` could
        // reallocate and free the old buffer without zeroizing it.
        Ok(SecretString::from(Box::<str>::from(text)))
    }

    fn open_zeroizing(
        &self,
        sealed: &Sealed,
        context: &str,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let parts = sealed::Parts::split(sealed.as_str())?;
        let (key_part, payload) = (parts.key_part()?, parts.payload()?);
        let kek = self.cipher_for(parts.version)?;
        let dek = unwrap_dek(&kek, &key_part, context)?;
        Ok(Zeroizing::new(decrypt(&cipher(&dek), &payload, context)?))
    }

    /// The cipher for KEK `version`, re-reading the key file once if the
    /// version is newer than any we hold: `credence keys rotate` may have
    /// added it while this process runs.
    fn cipher_for(&self, version: u32) -> Result<XChaCha20Poly1305, VaultError> {
        {
            let keys = self.read_keys();
            if let Some(key) = keys.get(&version) {
                return Ok(cipher(key));
            }
            // Rotation only ever adds higher versions, so a lower unknown one
            // cannot appear by reloading; don't hit the disk for it.
            let newest = *keys.keys().next_back().expect("keyring is never empty");
            if self.key_file.is_none() || version < newest {
                return Err(VaultError::UnknownKeyVersion(version));
            }
        }
        let path = self.key_file.as_deref().expect("checked above");
        let mut keys = self.write_keys();
        // Another thread may have reloaded while we waited for the lock.
        if !keys.contains_key(&version) {
            *keys = keyfile::read(path)?;
        }
        keys.get(&version)
            .map(|key| cipher(key))
            .ok_or(VaultError::UnknownKeyVersion(version))
    }

    // Writers only ever swap in a fully built keyring, so a panic elsewhere
    // cannot leave it half-updated: a poisoned lock is safe to use.
    fn read_keys(&self) -> RwLockReadGuard<'_, KeyRing> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_keys(&self) -> RwLockWriteGuard<'_, KeyRing> {
        self.keys.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.read_keys();
        f.debug_struct("Vault")
            .field("versions", &keys.keys().collect::<Vec<_>>())
            .field("current", &keys.keys().next_back().copied().unwrap_or(0))
            .finish()
    }
}

/// A cipher over `key`; the cipher zeroizes its copy of the key on drop.
fn cipher(key: &[u8; KEK_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

/// A fresh random 32-byte key, used for both KEKs and DEKs.
fn fresh_key() -> Zeroizing<[u8; KEK_LEN]> {
    let mut key = Zeroizing::new([0; 32]);
    OsRng.fill_bytes(&mut key[..]);
    key
}

/// `nonce || ciphertext`, with a random 24-byte nonce: large enough that
/// random nonces never collide in practice, so no counter state is needed.
fn encrypt(
    cipher: &XChaCha20Poly1305,
    plaintext: &[u8],
    context: &str,
) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: context.as_bytes(),
            },
        )
        .map_err(|_| VaultError::Encrypt(plaintext.len()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Inverse of [`encrypt`]; callers have checked `data` is longer than a nonce.
fn decrypt(cipher: &XChaCha20Poly1305, data: &[u8], context: &str) -> Result<Vec<u8>, VaultError> {
    let (nonce, ciphertext) = data.split_at(NONCE_LEN);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: context.as_bytes(),
            },
        )
        .map_err(|_| VaultError::Decrypt)
}

fn unwrap_dek(
    kek: &XChaCha20Poly1305,
    key_part: &[u8],
    context: &str,
) -> Result<Zeroizing<[u8; DEK_LEN]>, VaultError> {
    let unwrapped = Zeroizing::new(decrypt(kek, key_part, context)?);
    let mut dek = Zeroizing::new([0; DEK_LEN]);
    if unwrapped.len() != DEK_LEN {
        // Unreachable for values we sealed: the key part's length is checked.
        return Err(VaultError::Malformed(
            "wrapped data key has the wrong length",
        ));
    }
    dek.copy_from_slice(&unwrapped);
    Ok(dek)
}

/// A key version: a positive `u32` in plain decimal digits, with no sign or
/// leading zero, so that each version has exactly one spelling.
fn parse_version(text: &str) -> Option<u32> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    canonical.then(|| text.parse().ok()).flatten()
}

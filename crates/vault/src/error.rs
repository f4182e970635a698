//! The one error type of the vault.
//!
//! Messages name files, line numbers and key versions, but never key material,
//! plaintext or the sealed text itself: a "sealed" column might hold a secret
//! that was stored unsealed by mistake, so echoing it could leak it into logs.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while loading keys, sealing or opening.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The key file (or its directory) could not be read or written.
    #[error("key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A line of the key file is not `<version> <base64 key>`.
    #[error("key file {}, line {line}: {reason}", path.display())]
    KeyFile {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    /// The key file exists but holds no key. Generating a fresh one here would
    /// silently make every stored secret unreadable, so we refuse instead.
    #[error(
        "key file {} holds no keys; restore it from a backup (a new key cannot open existing secrets)",
        path.display()
    )]
    EmptyKeyFile { path: PathBuf },

    /// Another rotation holds the lock file, or a crashed one left it behind.
    #[error(
        "key file {} is being rotated ({} exists); if no rotation is running, a previous one was interrupted: remove that file and retry",
        path.display(),
        lock.display()
    )]
    RotationInProgress { path: PathBuf, lock: PathBuf },

    /// The highest version is already `u32::MAX`.
    #[error("key file {} already holds version {}, the highest possible", path.display(), u32::MAX)]
    VersionsExhausted { path: PathBuf },

    /// `retire_key_file` was asked for a version the key file does not hold.
    #[error("key file {} holds no key version {version}", path.display())]
    NoSuchVersion { path: PathBuf, version: u32 },

    /// `retire_key_file` was asked for the newest version, which seals new values.
    #[error(
        "key version {version} is the newest in {}, which seals new values; rotate first, then retire it",
        path.display()
    )]
    RetireCurrent { path: PathBuf, version: u32 },

    /// The sealed text is not a `cv1.k<version>.<key>.<payload>` value.
    #[error("malformed sealed value: {0}")]
    Malformed(&'static str),

    /// The sealed value names a key version the key file does not hold.
    #[error("sealed value uses key version {0}, which is not in the key file")]
    UnknownKeyVersion(u32),

    /// Authentication failed while unwrapping the data key or decrypting.
    #[error("decryption failed: the ciphertext was altered or belongs to another record")]
    Decrypt,

    /// Only possible for plaintexts far beyond anything a database row holds.
    #[error("encryption failed: a plaintext of {0} bytes is too large")]
    Encrypt(usize),
}

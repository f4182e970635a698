//! The stored form of a sealed secret: `cv1.k<version>.<key part>.<payload>`.
//!
//! The key part is `nonce || wrapped data key`, the payload `nonce ||
//! ciphertext`, both base64url without padding. Keeping the KEK version in
//! clear text lets a rotation job find rows to rewrap without decrypting.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::{parse_version, VaultError, DEK_LEN, NONCE_LEN, TAG_LEN};

/// Format tag; bump it if the layout or algorithms ever change.
const PREFIX: &str = "cv1";

/// Decoded length of the key part: nonce, wrapped data key and its tag.
pub(crate) const KEY_PART_LEN: usize = NONCE_LEN + DEK_LEN + TAG_LEN;

/// A sealed secret, as stored in the database.
///
/// It is not secret itself, but its `Debug` shows only the key version and
/// length: nobody needs ciphertext in their logs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sealed(String);

impl Sealed {
    /// Wraps a value read back from storage. It is checked only when opened.
    pub fn from_stored(stored: String) -> Sealed {
        Sealed(stored)
    }

    /// The text to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text to store, by value.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The version of the key-encryption key this value is wrapped under.
    pub fn key_version(&self) -> Result<u32, VaultError> {
        Ok(Parts::split(&self.0)?.version)
    }

    pub(crate) fn assemble(version: u32, key_part: &[u8], payload_b64: &str) -> Sealed {
        Sealed(format!(
            "{PREFIX}.k{version}.{}.{payload_b64}",
            URL_SAFE_NO_PAD.encode(key_part)
        ))
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Parts::split(&self.0) {
            Ok(parts) => write!(f, "Sealed(k{}, {} bytes)", parts.version, self.0.len()),
            Err(_) => write!(f, "Sealed(malformed, {} bytes)", self.0.len()),
        }
    }
}

/// A sealed value split into its fields, still base64-encoded.
pub(crate) struct Parts<'a> {
    pub(crate) version: u32,
    key_part_b64: &'a str,
    pub(crate) payload_b64: &'a str,
}

impl<'a> Parts<'a> {
    pub(crate) fn split(text: &'a str) -> Result<Parts<'a>, VaultError> {
        let mut fields = text.split('.');
        let (Some(prefix), Some(version), Some(key_part_b64), Some(payload_b64), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(VaultError::Malformed(
                "expected four dot-separated fields `cv1.k<version>.<key>.<payload>`",
            ));
        };
        if prefix != PREFIX {
            return Err(VaultError::Malformed(
                "unknown format, expected prefix `cv1`",
            ));
        }
        let version =
            version
                .strip_prefix('k')
                .and_then(parse_version)
                .ok_or(VaultError::Malformed(
                    "key version field is not `k` followed by a positive integer",
                ))?;
        Ok(Parts {
            version,
            key_part_b64,
            payload_b64,
        })
    }

    /// `nonce || wrapped data key`, length-checked.
    pub(crate) fn key_part(&self) -> Result<Vec<u8>, VaultError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(self.key_part_b64)
            .map_err(|_| VaultError::Malformed("key part is not base64url"))?;
        if bytes.len() != KEY_PART_LEN {
            return Err(VaultError::Malformed("key part has the wrong length"));
        }
        Ok(bytes)
    }

    /// `nonce || ciphertext`, length-checked.
    pub(crate) fn payload(&self) -> Result<Vec<u8>, VaultError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(self.payload_b64)
            .map_err(|_| VaultError::Malformed("payload is not base64url"))?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::Malformed("payload is too short"));
        }
        Ok(bytes)
    }
}

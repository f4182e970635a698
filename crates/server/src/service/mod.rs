//! Services: the operations of Credence, each applying the rules and touching the
//! store (and the vault) in one transaction. Handlers and CLI commands call these
//! and only map their results.
//!
//! **Invariant:** a service never sees HTTP types; its errors say what rule was
//! broken, and the HTTP layer picks the status.

pub mod audit;
pub mod audit_log;
pub mod auth;
pub mod clock;
pub mod connection_reads;
pub mod connection_writes;
pub mod connections;
pub mod credentials;
pub mod features;
pub mod identity;
pub mod invitations;
pub mod oauth;
pub mod password_hashing;
pub mod requests;
pub mod secret_json;
pub mod secrets;
pub mod sign_in_limits;
pub mod upstream;

use credence_catalog::Catalog;
use credence_domain::ValidationError;
use credence_store::Store;
use credence_vault::Vault;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What services need: the store, the vault, the app catalog, the base of links
/// an HTTP client for calls to apps and the OAuth clients. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub vault: Arc<Vault>,
    pub catalog: Arc<Catalog>,
    /// Without a trailing slash.
    pub public_url: Arc<str>,
    pub http: reqwest::Client,
    /// The OAuth 2.0 clients by app key, from configuration.
    pub oauth_clients: Arc<BTreeMap<String, crate::config::OAuthClient>>,
    /// When an OAuth access token counts as expiring (tests set it).
    pub clock: clock::Clock,
}

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input broke a rule; nothing was changed.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ValidationError>),
    /// The thing named does not exist, or the caller may not know it does.
    #[error("{0}")]
    NotFound(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The change conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// A fault underneath (database, vault, IO): the cause is logged, not shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ValidationError> for Error {
    fn from(error: ValidationError) -> Self {
        Error::Invalid(vec![error])
    }
}

impl From<credence_store::Error> for Error {
    fn from(error: credence_store::Error) -> Self {
        match error {
            credence_store::Error::NotFound(what) => Error::NotFound(format!("{what} not found")),
            credence_store::Error::Conflict(message) => Error::Conflict(message),
            other => Error::Internal(other.into()),
        }
    }
}

impl From<credence_vault::VaultError> for Error {
    fn from(error: credence_vault::VaultError) -> Self {
        Error::Internal(error.into())
    }
}

/// A random token of 256 bits, URL-safe, for links and cookies.
pub fn random_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// How a token is stored: SHA-256, hex. Tokens are random and long, so a fast
/// hash is enough; it keeps a stolen database from yielding usable tokens.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

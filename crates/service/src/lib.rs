//! Credence's use cases: the operations of Credence, each applying the rules and
//! touching the store (and the vault) in one transaction. The HTTP layer, the
//! CLI and the tests call these and only map their results.
//!
//! **Invariant:** a service never sees HTTP types (this crate depends on neither
//! axum nor clap); its errors say what rule was
//! broken, and the HTTP layer picks the status.

// In layers: each module uses only modules listed above it, so none imports
// another in a circle (`layers_point_down` below checks it). rustfmt sorts
// the declarations between two comments: a module that must come after its
// neighbour gets a comment of its own.
//
// Time, as the services read it.
pub mod clock;
// Audited changes as webhook messages (queued by `audit::record`).
pub mod webhook_events;
// Hashing, and the audit log.
pub mod audit;
pub mod audit_log;
pub mod password_hashing;
// Identity: people, organizations, teams, sessions, sign-in limits.
pub mod auth;
pub mod features;
pub mod identity;
pub mod invitations;
pub mod sign_in_limits;
// Two-factor sign-in (uses the audit log and the sign-in's tokens).
pub mod two_factor;
// Sealed values, the catalog's view of an app, who may see what.
pub mod access;
pub mod apps;
pub mod secrets;
// A connection created; a credential's audit entries and notices.
pub mod connections;
pub mod notices;
// A connection ended.
pub mod endings;
// Talking to the provider about a connection.
pub mod consent;
pub mod refresh;
// Testing a connection.
pub mod checks;
// The use cases.
pub mod credentials;
pub mod reminders;
pub mod requests;
pub mod team_connections;
pub mod tracking;
// Closing a project: its credentials revoked here and at the providers.
pub mod teardown;
// The provider sent the browser back: dispatch to the owner of the flow.
pub mod callback;
// Webhook endpoints: managed by their owners, their deliveries' log and replay.
pub mod webhooks;
// The usage log's reads.
pub mod usage;

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
    pub oauth_clients: Arc<BTreeMap<String, credence_provider::OAuthClient>>,
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

#[cfg(test)]
mod layers {
    //! The module order of this file is the layering: a module may use only
    //! the modules declared before it. Read from the sources, comments left
    //! out (a doc link is not a dependency).

    use std::collections::BTreeSet;

    fn modules() -> Vec<String> {
        include_str!("lib.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("pub mod "))
            .filter_map(|rest| rest.strip_suffix(';'))
            .map(str::to_string)
            .collect()
    }

    /// The sibling modules `source` names through `super::`.
    fn used(source: &str, modules: &[String]) -> BTreeSet<String> {
        let code: String = source
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut used = BTreeSet::new();
        for (at, _) in code.match_indices("super::") {
            let rest = &code[at + "super::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(0)]
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap_or_default())
                    .collect(),
                None => vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or_default()],
            };
            for name in names {
                if modules.iter().any(|m| m == name) {
                    used.insert(name.to_string());
                }
            }
        }
        used
    }

    #[test]
    fn layers_point_down() {
        let modules = modules();
        assert!(modules.len() > 20, "found only {modules:?}");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut upward = Vec::new();
        for (index, module) in modules.iter().enumerate() {
            let path = dir.join(format!("{module}.rs"));
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            for name in used(&source, &modules) {
                let position = modules.iter().position(|m| *m == name).unwrap_or(0);
                if position >= index {
                    upward.push(format!("{module} uses {name}, declared after it"));
                }
            }
        }
        assert!(upward.is_empty(), "modules that reach up: {upward:#?}");
    }

    #[test]
    fn the_check_sees_a_use_that_reaches_up() {
        let modules = vec!["low".to_string(), "high".to_string()];
        let found = used(
            "use super::{high::X, Context};\n// super::low in a comment\nfn f() { super::high::g() }",
            &modules,
        );
        assert_eq!(found, BTreeSet::from(["high".to_string()]));
    }
}

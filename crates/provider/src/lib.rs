//! Credence's client of the apps it connects to, and the only code that sends a
//! credential to a host: the HTTP client that refuses private addresses
//! ([`destination`]), the calls to an app's own API with a connection's
//! credential ([`call`]), and the OAuth 2.0 endpoints — consent URL with PKCE,
//! code exchange, refresh, revocation ([`oauth`]).
//!
//! It knows apps (from the catalog), clients and tokens; it knows nothing of
//! requests, credentials, people or the store. What it answers is either the
//! values to seal or a reason fit to show, which never holds a secret.

pub mod call;
pub mod destination;
pub mod oauth;
pub mod secret_json;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;

pub use secret_json::SecretJson;

/// A connection's values, by field name: what a recipient entered, or an OAuth
/// connection's tokens (`access_token`, `refresh_token`, `expires_at`, …).
/// Secret: its `Debug` shows only the field names.
#[derive(Default)]
pub struct FieldValues(pub BTreeMap<String, SecretString>);

impl std::fmt::Debug for FieldValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl FieldValues {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.expose_secret())
    }

    /// The connection's own OAuth client, when it brought one.
    pub fn own_client(&self) -> Option<OAuthClient> {
        Some(OAuthClient {
            client_id: self.get(oauth::OWN_CLIENT_ID)?.to_string(),
            client_secret: SecretString::from(self.get(oauth::OWN_CLIENT_SECRET)?.to_string()),
        })
    }

    /// Keeps a connection's own client among the values sealed with its tokens.
    pub fn keep_own_client(&mut self, own: &OAuthClient) {
        self.0.insert(
            oauth::OWN_CLIENT_ID.into(),
            SecretString::from(own.client_id.clone()),
        );
        self.0.insert(
            oauth::OWN_CLIENT_SECRET.into(),
            SecretString::from(own.client_secret.expose_secret().to_string()),
        );
    }

    /// When the access token expires, if the provider said.
    pub fn expires_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.get("expires_at")
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&chrono::Utc))
    }

    /// The values as a JSON object of strings, zeroized on drop (to be sealed).
    pub fn to_secret_json(&self) -> SecretJson {
        self.0
            .iter()
            .map(|(name, value)| {
                (
                    name.clone(),
                    serde_json::Value::String(value.expose_secret().to_string()),
                )
            })
            .collect()
    }
}

/// Credence's registration with one OAuth provider (from configuration), or a
/// connection's own. The secret's `Debug` is redacted, so a logged
/// configuration never shows it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    pub client_id: String,
    #[serde(deserialize_with = "secret_string")]
    pub client_secret: SecretString,
}

fn secret_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

/// The environment variable names of an app's OAuth client: the app key
/// uppercased, `-` as `_`.
pub fn oauth_client_variables(app_key: &str) -> (String, String) {
    let stem = format!(
        "CREDENCE_OAUTH_{}",
        app_key.to_ascii_uppercase().replace('-', "_")
    );
    (format!("{stem}_CLIENT_ID"), format!("{stem}_CLIENT_SECRET"))
}

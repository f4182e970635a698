//! The OAuth scene: an agency whose Credence knows the real OAuth 2.0 test
//! provider (`tests/oidc`, see `oidc.rs`) as the app `local-oauth`, with a
//! request for it asked of the teammate, and the steps of a consent.

use super::{register_secret, Agency};
use super::{OidcOptions, OidcProvider};
use chrono::{DateTime, Utc};
use credence_domain::CredentialState;
use credence_store::Backend;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};

pub const APP: &str = "local-oauth";

/// An operator app whose OAuth endpoints are the test provider's.
pub fn oauth_app(provider: &OidcProvider) -> String {
    format!(
        r#"key = "{APP}"
label = "Local OAuth"
allow_private_hosts = true

[[versions]]
version = 1
base_url = "{issuer}"

[versions.auth]
kind = "oauth2"
authorize_url = "{authorize}"
token_url = "{token}"
revocation_url = "{revocation}"
base_scopes = ["openid", "offline_access"]
extra_authorize_params = {{ prompt = "consent" }}

[[versions.modules]]
key = "searchContacts"
label = "Search contacts"
kind = "search"
access = "read"
scopes = ["contacts.read"]
# /me is the provider's userinfo endpoint: a real API that takes the access
# token, for the broker's tests.
operations = ["GET /v1/contacts", "GET /me"]

[[versions.modules]]
key = "createContact"
label = "Create a contact"
kind = "action"
access = "write"
scopes = ["contacts.write"]
operations = ["POST /v1/contacts", "POST /me"]
"#,
        issuer = provider.issuer,
        authorize = provider.authorization_endpoint,
        token = provider.token_endpoint,
        revocation = provider.revocation_endpoint,
    )
}

/// An agency whose Credence knows the provider's client, the provider, and a
/// request for the OAuth app asked of the teammate (Tom).
pub struct World {
    pub agency: Agency,
    pub provider: OidcProvider,
    pub request: String,
    pub credential: String,
}

pub async fn world(backend: Backend, with_client: bool) -> World {
    world_with(backend, with_client, OidcOptions::default()).await
}

pub async fn world_with(backend: Backend, with_client: bool, options: OidcOptions) -> World {
    // The provider must know the redirect URI before Credence starts, so the
    // port is chosen first (and kept bound until Credence listens on it).
    let port = crate::support::app::reserve_port();
    let provider = OidcProvider::start_with(
        &[format!("http://127.0.0.1:{port}/oauth/callback")],
        options,
    )
    .await;
    register_secret(&provider.client_secret);
    let client = credence::config::OAuthClient {
        client_id: provider.client_id.clone(),
        client_secret: SecretString::from(provider.client_secret.clone()),
    };
    let agency = Agency::start_with(backend, &[(APP, oauth_app(&provider))], |config| {
        config.listen = ([127, 0, 0, 1], port).into();
        // The tests drive refreshes themselves; a background one would race them.
        config.oauth_refresh_every = None;
        if with_client {
            config.oauth_clients.insert(APP.into(), client);
        }
    })
    .await;
    let (request, credentials, _) = agency.create_request(agency.teammate.id, &[APP]).await;
    World {
        agency,
        provider,
        request,
        credential: credentials[0].clone(),
    }
}

impl World {
    pub async fn authorize(&self) -> (StatusCode, Value) {
        self.agency
            .post(
                &format!(
                    "/api/v2/credential-requests/credentials/{}/authorize",
                    self.credential
                ),
                &self.agency.teammate_token,
                // An OAuth app needs no fields: no body at all is fine.
                None,
            )
            .await
    }

    pub async fn stored(&self) -> credence_store::RequestedCredential {
        self.agency.app.stored_credential(&self.credential).await
    }

    pub async fn state(&self) -> String {
        let (status, body) = self
            .agency
            .app
            .get_json(
                &format!(
                    "/api/v2/credential-requests/requests/{}/detail",
                    self.request
                ),
                &self.agency.requester_token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["requestDetail"]["credentials"][0]["state"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl World {
    /// `action` (authorize or reauthorize) through the consent page and the
    /// callback in the recipient's browser; the credential is then authorized.
    pub async fn consent_through(&self, tom: &reqwest::Client, action: &str) {
        let (status, body) = self
            .agency
            .post(
                &format!(
                    "/api/v2/credential-requests/credentials/{}/{action}",
                    self.credential
                ),
                &self.agency.teammate_token,
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{action}: {body}");
        let outcome = self
            .provider
            .consent(body["redirectUri"].as_str().unwrap(), "tom", true)
            .await;
        register_secret(outcome.code.as_deref().unwrap());
        let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{action}");
        assert_eq!(
            self.stored().await.state,
            CredentialState::Authorized,
            "{action}"
        );
    }

    pub async fn connection(&self) -> credence_store::Connection {
        let id = self.stored().await.connection_id.expect("a connection");
        self.connection_by_id(id).await
    }

    pub async fn connection_by_id(&self, id: i64) -> credence_store::Connection {
        self.agency.app.stored_connection(id).await.unwrap()
    }

    /// The connection's sealed tokens, opened with the app's vault; every
    /// token is registered for the suite's tripwire.
    pub async fn tokens(&self, connection: &credence_store::Connection) -> Value {
        self.agency.app.connection_values(connection).await
    }

    pub fn ctx(&self) -> &credence::service::Context {
        &self.agency.app.context
    }

    /// The services' context with its clock standing still at `at`.
    pub fn ctx_at(&self, at: DateTime<Utc>) -> credence::service::Context {
        context_at(self.ctx(), at)
    }

    /// The moment connection `id`'s access token expires, by its stored
    /// expiry: a refresh at that time finds it expiring.
    pub async fn token_expiry(&self, id: i64) -> DateTime<Utc> {
        self.connection_by_id(id)
            .await
            .token_expires_at
            .expect("the access token has an expiry")
    }
}

/// `ctx` with its clock standing still at `at`: a refresh through it judges
/// whether a token is expiring as of `at`, and dates the tokens it gets from
/// `at`, so a test need not wait for a token to expire (nor hurry before a
/// fresh one counts as expiring again).
pub fn context_at(
    ctx: &credence::service::Context,
    at: DateTime<Utc>,
) -> credence::service::Context {
    credence::service::Context {
        clock: credence::service::clock::Clock::from_fn(move || at),
        ..ctx.clone()
    }
}

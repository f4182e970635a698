//! OAuth 2.0 apps end to end against a real authorization server
//! (`OidcProvider`): the recipient asks to authorize, follows the consent page,
//! and the provider's redirect back to `/oauth/callback` finishes the job —
//! only once, only in the browser of the person who started it.

use crate::fixtures::Agency;
use crate::helpers::{assert_error, assert_no_secret, captured_logs, register_secret, Person};
use crate::oidc::OidcProvider;
use crate::on_both_backends;
use credence_domain::{CredentialId, CredentialState};
use credence_store::Backend;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

const APP: &str = "local-oauth";

/// An operator app whose OAuth endpoints are the test provider's.
fn oauth_app(provider: &OidcProvider) -> String {
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
operations = ["GET /v1/contacts"]

[[versions.modules]]
key = "createContact"
label = "Create a contact"
kind = "action"
access = "write"
scopes = ["contacts.write"]
operations = ["POST /v1/contacts"]
"#,
        issuer = provider.issuer,
        authorize = provider.authorization_endpoint,
        token = provider.token_endpoint,
        revocation = provider.revocation_endpoint,
    )
}

/// An agency whose Credence knows the provider's client, the provider, and a
/// request for the OAuth app asked of the teammate (Tom).
struct World {
    agency: Agency,
    provider: OidcProvider,
    request: String,
    credential: String,
}

async fn world(backend: Backend, with_client: bool) -> World {
    // The provider must know the redirect URI before Credence starts, so the
    // port is chosen first.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let provider = OidcProvider::start(&[format!("http://127.0.0.1:{port}/oauth/callback")]).await;
    register_secret(&provider.client_secret);
    let client = credence::config::OAuthClient {
        client_id: provider.client_id.clone(),
        client_secret: SecretString::from(provider.client_secret.clone()),
    };
    let agency = Agency::start_with(backend, &[(APP, oauth_app(&provider))], |config| {
        config.listen = ([127, 0, 0, 1], port).into();
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

/// A browser signed in as `person`: keeps cookies, follows no redirect.
async fn browser(world: &World, person: &Person) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let app = &world.agency.app;
    let page = client.get(app.url("/sign-in")).send().await.unwrap();
    let html = page.text().await.unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("a csrf_token field") + marker.len();
    let csrf = html[start..].split('"').next().unwrap().to_string();
    let response = client
        .post(app.url("/sign-in"))
        .form(&[
            ("email", person.email.as_str()),
            ("password", person.password.as_str()),
            ("csrf_token", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_redirection(),
        "sign-in: {}",
        response.status()
    );
    client
}

impl World {
    async fn authorize(&self) -> (StatusCode, Value) {
        self.agency
            .post(
                &format!(
                    "/api/v2/credential-requests/credentials/{}/authorize",
                    self.credential
                ),
                &self.agency.teammate_token,
                Some(json!({})),
            )
            .await
    }

    async fn stored(&self) -> credence_store::RequestedCredential {
        let id = CredentialId::parse("id", &self.credential).unwrap();
        self.agency
            .app
            .store
            .db()
            .await
            .unwrap()
            .get_credential(id)
            .await
            .unwrap()
            .unwrap()
    }

    async fn state(&self) -> String {
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

fn scope_set(text: &str) -> BTreeSet<String> {
    text.split(' ').map(str::to_string).collect()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The whole journey: the consent URL asks for exactly the credential's
/// scopes with state and an S256 challenge; the callback stores the tokens
/// sealed, the credential is authorized and the requester told; the same
/// callback a second time is refused and changes nothing.
async fn consent_authorizes_and_the_tokens_are_sealed(backend: Backend) {
    let world = world(backend, true).await;
    let tom = browser(&world, &world.agency.teammate).await;
    let (status, body) = world.authorize().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let redirect_uri = body["redirectUri"].as_str().unwrap().to_string();
    let url = Url::parse(&redirect_uri).unwrap();
    assert!(redirect_uri.starts_with(&world.provider.authorization_endpoint));
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], world.provider.client_id);
    assert_eq!(query["response_type"], "code");
    assert_eq!(
        query["redirect_uri"],
        world.agency.app.url("/oauth/callback")
    );
    assert_eq!(
        scope_set(&query["scope"]),
        scope_set("openid offline_access contacts.read contacts.write")
    );
    assert!(query["state"].len() >= 22, "state: {}", query["state"]);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert_eq!(query["prompt"], "consent");
    assert_eq!(world.state().await, "pending");

    let outcome = world.provider.consent(&redirect_uri, "tom", true).await;
    let code = outcome.code.clone().expect("a code");
    register_secret(&code);
    let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), format!("/received/{}", world.request));
    assert_eq!(world.state().await, "authorized");

    let credential = world.stored().await;
    assert_eq!(credential.state, CredentialState::Authorized);
    let connection = world
        .agency
        .app
        .store
        .db()
        .await
        .unwrap()
        .get_connection(credential.connection_id.expect("a connection"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connection.auth_kind, "oauth2");
    let granted: Vec<String> = serde_json::from_str(&connection.scopes).unwrap();
    assert_eq!(
        granted.into_iter().collect::<BTreeSet<_>>(),
        scope_set("openid offline_access contacts.read contacts.write")
    );
    let plain = credence::service::secrets::open(
        &world.agency.app.store,
        &world.agency.app.vault(),
        connection.secret_id.as_deref().unwrap(),
        "connection",
    )
    .await
    .unwrap();
    let tokens: Value = serde_json::from_str(plain.expose_secret()).unwrap();
    let access = tokens["access_token"].as_str().expect("an access token");
    register_secret(access);
    if let Some(refresh) = tokens["refresh_token"].as_str() {
        register_secret(refresh);
    }
    assert!(tokens["expires_at"].is_string(), "{tokens:?}");
    let introspection = world.provider.introspect(access).await;
    assert_eq!(introspection["active"], true, "{introspection}");

    let events = world.agency.audit_events().await;
    assert!(
        events.contains(&"credential.authorized".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"connection.created".to_string()),
        "{events:?}"
    );
    let outbox = world.agency.outbox().await;
    assert!(
        outbox
            .iter()
            .any(|(kind, to, _)| kind == "credential.authorized"
                && to == &world.agency.requester.email),
        "{outbox:?}"
    );

    // The same callback again: refused, nothing changes.
    let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("used already"));
    let again = world.stored().await;
    assert_eq!(again.connection_id, credential.connection_id);
    assert_eq!(again.state, CredentialState::Authorized);

    assert_no_secret("the logs", &captured_logs());
    world.agency.app.stop().await;
}

/// The recipient cancels on the consent page: the credential is invalid with
/// the provider's reason, and no connection exists.
async fn denied_consent_leaves_the_credential_invalid_with_the_reason(backend: Backend) {
    let world = world(backend, true).await;
    let tom = browser(&world, &world.agency.teammate).await;
    let (status, body) = world.authorize().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome = world
        .provider
        .consent(body["redirectUri"].as_str().unwrap(), "tom", false)
        .await;
    assert_eq!(outcome.error.as_deref(), Some("access_denied"));
    let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), format!("/received/{}", world.request));
    let credential = world.stored().await;
    assert_eq!(credential.state, CredentialState::Invalid);
    assert!(credential.connection_id.is_none());
    let reason = credential.invalid_reason.unwrap_or_default();
    assert!(reason.contains("access_denied"), "{reason}");
    assert!(world
        .agency
        .audit_events()
        .await
        .contains(&"credential.invalidated".to_string()));
    world.agency.app.stop().await;
}

/// A forged state, a callback opened by another signed-in person and one opened
/// without a session are all refused and change nothing; the right browser
/// can still finish afterwards.
async fn forged_foreign_and_anonymous_callbacks_are_refused(backend: Backend) {
    let world = world(backend, true).await;
    let tom = browser(&world, &world.agency.teammate).await;
    let rita = browser(&world, &world.agency.requester).await;
    let (status, body) = world.authorize().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome = world
        .provider
        .consent(body["redirectUri"].as_str().unwrap(), "tom", true)
        .await;
    register_secret(outcome.code.as_deref().unwrap());

    let forged = tom
        .get(
            world
                .agency
                .app
                .url("/oauth/callback?code=abc&state=forged-state"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
    assert!(forged
        .text()
        .await
        .unwrap()
        .contains("not one Credence started"));

    let foreign = rita.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert!(foreign.text().await.unwrap().contains("someone else"));

    let anonymous = world
        .agency
        .app
        .client
        .get(outcome.redirect.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::BAD_REQUEST);
    assert_eq!(world.state().await, "pending");

    let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(world.state().await, "authorized");
    world.agency.app.stop().await;
}

/// The token endpoint fails (an outage): the credential is invalid with a
/// readable reason, the browser still lands on the request page, no 5xx.
async fn a_failing_token_endpoint_leaves_the_credential_invalid(backend: Backend) {
    let world = world(backend, true).await;
    let tom = browser(&world, &world.agency.teammate).await;
    let (status, body) = world.authorize().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome = world
        .provider
        .consent(body["redirectUri"].as_str().unwrap(), "tom", true)
        .await;
    register_secret(outcome.code.as_deref().unwrap());
    world.provider.set_outage(Some(503)).await;
    let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
    world.provider.set_outage(None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let credential = world.stored().await;
    assert_eq!(credential.state, CredentialState::Invalid);
    assert!(credential.connection_id.is_none());
    let reason = credential.invalid_reason.unwrap_or_default();
    assert!(reason.contains("HTTP 503"), "{reason}");
    world.agency.app.stop().await;
}

/// Reauthorizing goes through the consent page again; the new connection
/// replaces the old one, whose secret is gone.
async fn reauthorize_replaces_the_connection(backend: Backend) {
    let world = world(backend, true).await;
    let tom = browser(&world, &world.agency.teammate).await;
    let mut connections = Vec::new();
    for action in ["authorize", "reauthorize"] {
        if action == "reauthorize" {
            // Checking an OAuth connection comes with refresh (a later slice):
            // the requester's ask is put in place directly.
            world
                .agency
                .app
                .store
                .db()
                .await
                .unwrap()
                .transition_credential(
                    CredentialId::parse("id", &world.credential).unwrap(),
                    credence_domain::CredentialAction::RequestReauthorization,
                    &credence_store::CredentialChange::default(),
                )
                .await
                .unwrap();
        }
        let (status, body) = world
            .agency
            .post(
                &format!(
                    "/api/v2/credential-requests/credentials/{}/{action}",
                    world.credential
                ),
                &world.agency.teammate_token,
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{action}: {body}");
        let outcome = world
            .provider
            .consent(body["redirectUri"].as_str().unwrap(), "tom", true)
            .await;
        register_secret(outcome.code.as_deref().unwrap());
        let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{action}");
        let credential = world.stored().await;
        assert_eq!(credential.state, CredentialState::Authorized, "{action}");
        connections.push(credential.connection_id.unwrap());
    }
    assert_ne!(connections[0], connections[1]);
    let mut db = world.agency.app.store.db().await.unwrap();
    assert!(db.get_connection(connections[0]).await.unwrap().is_none());
    assert!(db.get_connection(connections[1]).await.unwrap().is_some());
    drop(db);
    assert!(world
        .agency
        .audit_events()
        .await
        .contains(&"credential.reauthorized".to_string()));
    world.agency.app.stop().await;
}

/// Without a configured client, authorize says which variables to set.
async fn an_oauth_app_without_a_client_names_the_variables(backend: Backend) {
    let world = world(backend, false).await;
    let (status, body) = world.authorize().await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("CREDENCE_OAUTH_LOCAL_OAUTH_CLIENT_ID")
            && detail.contains("CREDENCE_OAUTH_LOCAL_OAUTH_CLIENT_SECRET"),
        "{body}"
    );
    assert_eq!(world.state().await, "pending");
    world.agency.app.stop().await;
}

on_both_backends!(
    consent_authorizes_and_the_tokens_are_sealed,
    denied_consent_leaves_the_credential_invalid_with_the_reason,
    forged_foreign_and_anonymous_callbacks_are_refused,
    an_oauth_app_without_a_client_names_the_variables,
    a_failing_token_endpoint_leaves_the_credential_invalid,
    reauthorize_replaces_the_connection,
);

//! The OAuth 2.0 test provider (`support/oidc.rs`) itself behaves as Credence's
//! OAuth client will need; these tests use no database. What they show about
//! oidc-provider 9 (configured by tests/oidc/provider.mjs):
//! * the token response has `access_token`, `token_type: Bearer`,
//!   `expires_in`, `scope` (what was granted: unknown scopes are dropped
//!   silently), `refresh_token`, and `id_token` when `openid` was asked;
//! * the authorization response carries `iss` (RFC 9207) beside `code` and
//!   `state`; an authorization request with no scope at all is `access_denied`;
//! * `offline_access` is dropped unless `prompt=consent` is sent too (a
//!   refresh token comes anyway, as configured here);
//! * with `Rotation::Keep` a refresh response has no `refresh_token`;
//! * revoking either token of a grant revokes them all;
//! * client authentication failure is 401 `invalid_client`; a bad, used,
//!   revoked or forgotten code or refresh token is 400 `invalid_grant`.

use crate::support::{wait_until, OidcOptions, OidcProvider, Rotation};
use base64::Engine;
use reqwest::{StatusCode, Url};
use serde_json::Value;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// The provider behaves as Credence's OAuth client will need.

struct Pkce {
    verifier: String,
    challenge: String,
}

impl Pkce {
    fn new() -> Pkce {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let verifier = b64.encode(bytes);
        let challenge = b64.encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";
const SCOPE: &str = "contacts.read mail.read";

fn redirects() -> Vec<String> {
    vec![REDIRECT.to_string()]
}

/// Login and consent, then the code exchanged: the token response.
async fn authorize(provider: &OidcProvider, scope: &str) -> Value {
    let pkce = Pkce::new();
    let url = provider.authorize_url(REDIRECT, scope, "state-1", &pkce.challenge);
    let outcome = provider.consent(&url, "alice", true).await;
    assert_eq!(outcome.error, None, "{outcome:?}");
    assert_eq!(outcome.state.as_deref(), Some("state-1"));
    assert_eq!(outcome.iss.as_deref(), Some(provider.issuer.as_str()));
    assert!(
        outcome.redirect.as_str().starts_with(REDIRECT),
        "{outcome:?}"
    );
    let code = outcome.code.expect("a code");
    let (status, tokens) = provider
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}\n{}", provider.output());
    tokens
}

async fn refresh(provider: &OidcProvider, refresh_token: &str) -> (StatusCode, Value) {
    provider
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
}

fn text(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {value}"))
        .to_string()
}

#[tokio::test]
async fn code_flow_with_pkce_issues_access_and_refresh_tokens() {
    let provider = OidcProvider::start(&redirects()).await;
    let tokens = authorize(&provider, SCOPE).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(
        tokens["expires_in"],
        OidcOptions::default().access_token_ttl
    );
    assert_eq!(tokens["scope"], SCOPE);
    let access = text(&tokens, "access_token");
    let refresh_token = text(&tokens, "refresh_token");

    let info = provider.introspect(&access).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], provider.client_id.as_str());
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["scope"], SCOPE);
    assert_eq!(info["token_type"], "Bearer");
    let info = provider.introspect(&refresh_token).await;
    assert_eq!(info["active"], true, "{info}");

    // client_secret_post is accepted as well.
    let response = provider
        .http
        .post(&provider.introspection_endpoint)
        .form(&[
            ("token", access.as_str()),
            ("client_id", &provider.client_id),
            ("client_secret", &provider.client_secret),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["active"], true, "{body}");

    // With `openid`, `offline_access` survives only with prompt=consent, and
    // a refresh token comes either way.
    let pkce = Pkce::new();
    let url = format!(
        "{}&prompt=consent",
        provider.authorize_url(
            REDIRECT,
            "openid offline_access contacts.read",
            "s",
            &pkce.challenge
        )
    );
    let outcome = provider.consent(&url, "bob", true).await;
    let (status, tokens) = provider
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &outcome.code.expect("a code")),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "openid offline_access contacts.read");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    assert!(tokens["id_token"].is_string(), "{tokens}");
}

#[tokio::test]
async fn access_tokens_expire_and_refresh_keeps_the_refresh_token() {
    let provider = OidcProvider::start_with(
        &redirects(),
        OidcOptions {
            access_token_ttl: 2,
            ..OidcOptions::default()
        },
    )
    .await;
    let tokens = authorize(&provider, SCOPE).await;
    assert_eq!(tokens["expires_in"], 2);
    let access = text(&tokens, "access_token");
    let refresh_token = text(&tokens, "refresh_token");
    assert_eq!(provider.introspect(&access).await["active"], true);

    // Expired by the provider's own clock: it says so once two seconds pass.
    wait_until("the provider reports the access token expired", || async {
        provider.introspect(&access).await["active"] == false
    })
    .await;

    let (status, refreshed) = refresh(&provider, &refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let new_access = text(&refreshed, "access_token");
    assert_ne!(new_access, access);
    assert_eq!(refreshed["scope"], SCOPE);
    assert_eq!(refreshed["expires_in"], 2);
    // Rotation::Keep: no refresh_token in the response; the old one stays good.
    assert!(refreshed.get("refresh_token").is_none(), "{refreshed}");
    let info = provider.introspect(&new_access).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["scope"], SCOPE);
    let (status, again) = refresh(&provider, &refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{again}");
}

#[tokio::test]
async fn a_revoked_refresh_token_is_invalid_grant() {
    let provider = OidcProvider::start(&redirects()).await;
    let tokens = authorize(&provider, SCOPE).await;
    let access = text(&tokens, "access_token");
    let refresh_token = text(&tokens, "refresh_token");

    provider.revoke(&refresh_token).await;
    let (status, body) = refresh(&provider, &refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // Revoking the refresh token revokes the grant: its access tokens too.
    assert_eq!(provider.introspect(&refresh_token).await["active"], false);
    assert_eq!(provider.introspect(&access).await["active"], false);
    // Revoking again, or an unknown token, is still 200 (RFC 7009 §2.2).
    provider.revoke(&refresh_token).await;
    provider.revoke("no-such-token").await;

    // oidc-provider also drops every token of the grant when an *access*
    // token is revoked: the refresh token goes with it.
    let tokens = authorize(&provider, SCOPE).await;
    provider.revoke(&text(&tokens, "access_token")).await;
    let (status, body) = refresh(&provider, &text(&tokens, "refresh_token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

#[tokio::test]
async fn denied_consent_redirects_with_access_denied() {
    let provider = OidcProvider::start(&redirects()).await;
    let pkce = Pkce::new();
    let url = provider.authorize_url(REDIRECT, SCOPE, "state-d", &pkce.challenge);
    let outcome = provider.consent(&url, "alice", false).await;
    assert_eq!(
        outcome.error.as_deref(),
        Some("access_denied"),
        "{outcome:?}"
    );
    assert_eq!(outcome.state.as_deref(), Some("state-d"));
    assert_eq!(outcome.code, None);
    assert!(
        outcome.redirect.as_str().starts_with(REDIRECT),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn pkce_is_required() {
    let provider = OidcProvider::start(&redirects()).await;
    // A code exchanged without its verifier, or with another one.
    for verifier in [None, Some(Pkce::new().verifier)] {
        let pkce = Pkce::new();
        let url = provider.authorize_url(REDIRECT, SCOPE, "s", &pkce.challenge);
        let code = provider
            .consent(&url, "alice", true)
            .await
            .code
            .expect("a code");
        let mut params = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ];
        if let Some(verifier) = &verifier {
            params.push(("code_verifier", verifier));
        }
        let (status, body) = provider.token(&params).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }
    // An authorization request without a challenge is refused at once.
    let mut url = Url::parse(&provider.authorize_url(REDIRECT, SCOPE, "s", "x")).unwrap();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(kept);
    let outcome = provider.consent(url.as_str(), "alice", true).await;
    assert_eq!(
        outcome.error.as_deref(),
        Some("invalid_request"),
        "{outcome:?}"
    );
    assert_eq!(outcome.code, None);
}

#[tokio::test]
async fn rotation_issues_new_refresh_tokens_and_punishes_reuse() {
    let provider = OidcProvider::start_with(
        &redirects(),
        OidcOptions {
            rotation: Rotation::Rotate,
            ..OidcOptions::default()
        },
    )
    .await;
    let tokens = authorize(&provider, SCOPE).await;
    let first = text(&tokens, "refresh_token");
    let (status, refreshed) = refresh(&provider, &first).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let second = text(&refreshed, "refresh_token");
    assert_ne!(first, second);
    // Reusing the consumed one fails and takes the whole grant with it.
    let (status, body) = refresh(&provider, &first).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let (_, body) = refresh(&provider, &second).await;
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

#[tokio::test]
async fn a_restarted_provider_forgets_its_grants() {
    let mut provider = OidcProvider::start(&redirects()).await;
    let tokens = authorize(&provider, SCOPE).await;
    let refresh_token = text(&tokens, "refresh_token");
    let issuer = provider.issuer.clone();

    provider.stop();
    let down = provider
        .http
        .post(&provider.token_endpoint)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ])
        .send()
        .await;
    assert!(down.is_err(), "a stopped provider refuses connections");

    provider.restart().await;
    assert_eq!(provider.issuer, issuer, "same port, same issuer");
    let (status, body) = refresh(&provider, &refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    // A new authorization works as before.
    authorize(&provider, SCOPE).await;
}

#[tokio::test]
async fn an_outage_answers_5xx_and_keeps_the_grants() {
    let provider = OidcProvider::start(&redirects()).await;
    let tokens = authorize(&provider, SCOPE).await;
    let refresh_token = text(&tokens, "refresh_token");
    assert_eq!(provider.token_requests("authorization_code").await, 1);

    provider.set_outage(Some(503)).await;
    let (status, body) = refresh(&provider, &refresh_token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    provider.set_outage(Some(502)).await;
    let (status, _) = refresh(&provider, &refresh_token).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);

    provider.set_outage(None).await;
    let (status, body) = refresh(&provider, &refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Requests during the outage never reached the token endpoint.
    assert_eq!(provider.token_requests("refresh_token").await, 1);
}

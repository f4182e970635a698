//! The OAuth 2.0 endpoints of an app (RFC 6749 authorization-code grant, RFC
//! 7636 PKCE S256, RFC 7009 revocation): the consent URL, the code exchange,
//! the refresh grant and revocation. Each answers the values to seal or a
//! reason fit to show; a reason never holds a code, a token or a client
//! secret, even when the provider echoes one.
//!
//! Which client, which connection and what happens next are the caller's
//! business (`credence-service`).

use crate::destination::check_destination;
use crate::{FieldValues, OAuthClient, SecretJson};
use chrono::{DateTime, Utc};
use credence_catalog::{App, ClientAuth, OAuth2, RevocationStyle};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::collections::BTreeMap;

/// Where a connection's own client is kept among its sealed values.
pub const OWN_CLIENT_ID: &str = "oauth_client_id";
pub const OWN_CLIENT_SECRET: &str = "oauth_client_secret";

/// Parses a catalog endpoint and refuses private and loopback hosts unless the
/// operator's app allows them.
pub async fn endpoint(app: &App, what: &str, url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| format!("the {what} URL of {} is not valid", app.label))?;
    check_destination(app, &parsed).await?;
    Ok(parsed)
}

/// What a consent URL carries besides the app's own parameters.
pub struct Consent<'a> {
    pub client: &'a OAuthClient,
    pub redirect_uri: &'a str,
    pub scopes: &'a [String],
    /// Single use; the caller keeps only its hash.
    pub state: &'a str,
    /// The PKCE verifier, when the app uses PKCE; the URL carries its S256 challenge.
    pub verifier: Option<&'a str>,
}

/// The provider's consent URL for `consent`; its authorize and token endpoints
/// are checked first (an app whose token endpoint is private fails here, before
/// anyone consents).
pub async fn authorize_url(
    app: &App,
    oauth: &OAuth2,
    consent: Consent<'_>,
) -> Result<String, String> {
    let mut url = endpoint(app, "authorize", &oauth.authorize_url).await?;
    endpoint(app, "token", &oauth.token_url).await?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &consent.client.client_id)
            .append_pair("redirect_uri", consent.redirect_uri)
            .append_pair("scope", &consent.scopes.join(&oauth.scope_separator))
            .append_pair("state", consent.state);
        if let Some(verifier) = consent.verifier {
            query
                .append_pair("code_challenge", &challenge(verifier))
                .append_pair("code_challenge_method", "S256");
        }
        for (name, value) in &oauth.extra_authorize_params {
            query.append_pair(name, value);
        }
    }
    Ok(url.into())
}

/// The reason shown when the provider sent the browser back with `error`
/// instead of a code. Whoever sent the browser back wrote these (the consenting
/// person can edit the URL), so none of `secrets` (the code, the verifier, the
/// client secret) is kept.
pub fn refusal(app: &App, error: &str, description: Option<&str>, secrets: &[&str]) -> String {
    let error = provider_text(error, secrets, PROVIDER_ERROR_MAX);
    let description = description
        .map(|d| provider_text(d, secrets, PROVIDER_DESCRIPTION_MAX))
        .filter(|d| !d.is_empty());
    match description {
        Some(description) => format!(
            "{} did not grant access: {error} ({description})",
            app.label
        ),
        None => format!("{} did not grant access: {error}", app.label),
    }
}

/// Exchanges `code` at the token endpoint. `Ok` holds the values to seal
/// (`access_token`, `refresh_token`, `expires_at`, `token_type` and the app's
/// `token_fields`) and the granted scopes; `Err` a reason fit to show, which
/// never holds the code or a token.
#[allow(clippy::too_many_arguments)]
pub async fn exchange(
    http: &reqwest::Client,
    app: &App,
    oauth: &OAuth2,
    client: &OAuthClient,
    redirect_uri: &str,
    code: &SecretString,
    verifier: Option<&SecretString>,
    requested: &[String],
    now: DateTime<Utc>,
) -> Result<(FieldValues, Vec<String>), String> {
    let url = endpoint(app, "token", &oauth.token_url).await?;
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", code.expose_secret()),
        ("redirect_uri", redirect_uri),
    ];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier.expose_secret()));
    }
    let body = match token_request(http, app, oauth, client, url, form, &[]).await {
        Ok(body) => body,
        Err(
            TokenError::Refused(reason)
            | TokenError::Unavailable(reason)
            | TokenError::Destination(reason),
        ) => return Err(reason),
    };
    let values = token_values(app, oauth, &body, now)?;
    // The provider may grant less than asked (RFC 6749 §5.1); without `scope`
    // it granted what was asked.
    let granted = match body.get("scope").and_then(Value::as_str) {
        Some(scope) => {
            let separator: &[char] = if oauth.scope_separator == "," {
                &[',', ' ']
            } else {
                &[' ']
            };
            scope
                .split(separator)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        }
        None => requested.to_vec(),
    };
    Ok((FieldValues(values), granted))
}

/// Presents `refresh_token` at the token endpoint: the new values (without the
/// ones the answer does not repeat; the caller keeps those), or why not. A
/// reason holds none of `held` (the connection's other tokens).
pub async fn refresh(
    http: &reqwest::Client,
    app: &App,
    oauth: &OAuth2,
    client: &OAuthClient,
    refresh_token: &SecretString,
    held: &[&str],
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, SecretString>, TokenError> {
    let url = endpoint(app, "token", &oauth.token_url)
        .await
        .map_err(TokenError::Destination)?;
    let form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose_secret()),
    ];
    let body = token_request(http, app, oauth, client, url, form, held).await?;
    token_values(app, oauth, &body, now).map_err(TokenError::Unavailable)
}

/// Revokes a grant at the provider (RFC 7009 with the refresh token, else the
/// access token; or the app's bearer style). Answers the HTTP status, or
/// `Err` when it could not be asked (no revocation endpoint, no token, no
/// client, or the provider unreachable).
pub async fn revoke(
    http: &reqwest::Client,
    app: &App,
    oauth: &OAuth2,
    client: Option<&OAuthClient>,
    tokens: &FieldValues,
) -> Result<u16, ()> {
    match revoke_reporting(http, app, oauth, client, tokens).await {
        Revocation::Revoked { status } | Revocation::Refused { status, .. } => Ok(status),
        Revocation::NotAsked { .. } => Err(()),
    }
}

/// What a revocation at the provider came to. The reasons are fit to show:
/// none holds a token or the client's secret, even when the provider echoes
/// one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The provider answered 2xx: the grant is gone there.
    Revoked { status: u16 },
    /// The provider answered, but not 2xx; `reason` is its `error` (and
    /// `error_description`) when it sent one, else the status.
    Refused { status: u16, reason: String },
    /// The provider was not asked or did not answer (no token, no client,
    /// a refused destination, unreachable).
    NotAsked { reason: String },
}

/// The longest reason kept from a revocation endpoint's answer.
const REVOCATION_REASON_MAX: usize = 200;

/// [`revoke`], answering what happened and why.
pub async fn revoke_reporting(
    http: &reqwest::Client,
    app: &App,
    oauth: &OAuth2,
    client: Option<&OAuthClient>,
    tokens: &FieldValues,
) -> Revocation {
    let not_asked = |reason: String| Revocation::NotAsked { reason };
    let Some(revocation_url) = oauth.revocation_url.as_deref() else {
        return not_asked(format!("{} has no revocation endpoint", app.label));
    };
    let url = match endpoint(app, "revocation", revocation_url).await {
        Ok(url) => url,
        Err(refusal) => return not_asked(refusal),
    };
    let mut secrets: Vec<&str> = ["refresh_token", "access_token"]
        .iter()
        .filter_map(|name| tokens.get(name))
        .collect();
    let request = match oauth.revocation_style {
        RevocationStyle::Rfc7009 => {
            // Revoking the refresh token ends the whole grant (RFC 7009 §2.1).
            let (token, hint) = match (tokens.get("refresh_token"), tokens.get("access_token")) {
                (Some(refresh), _) => (refresh, "refresh_token"),
                (None, Some(access)) => (access, "access_token"),
                (None, None) => return not_asked("the connection holds no token to revoke".into()),
            };
            let Some(client) = client else {
                return not_asked(format!("no OAuth client is configured for {}", app.label));
            };
            secrets.push(client.client_secret.expose_secret());
            let mut form = vec![("token", token), ("token_type_hint", hint)];
            let mut request = http.post(url);
            match oauth.client_auth {
                ClientAuth::Basic => match basic_credentials(client) {
                    Ok(value) => request = request.header(reqwest::header::AUTHORIZATION, value),
                    Err(_) => {
                        return not_asked(format!(
                            "the OAuth client of {} cannot be sent as Basic credentials",
                            app.label
                        ))
                    }
                },
                ClientAuth::Post => {
                    form.push(("client_id", &client.client_id));
                    form.push(("client_secret", client.client_secret.expose_secret()));
                }
            }
            request.form(&form)
        }
        RevocationStyle::Bearer => {
            let Some(access) = tokens.get("access_token") else {
                return not_asked("the connection holds no access token to revoke".into());
            };
            let Ok(mut value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {access}"))
            else {
                return not_asked("the access token cannot be sent in a header".into());
            };
            value.set_sensitive(true);
            http.post(url).header(reqwest::header::AUTHORIZATION, value)
        }
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) if error.is_timeout() => {
            return not_asked(format!("{} did not answer in time", app.label))
        }
        Err(_) => return not_asked(format!("could not reach {}", app.label)),
    };
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Revocation::Revoked { status };
    }
    let body: Option<Value> = response.json().await.ok();
    let text = |name: &str, max: usize| {
        body.as_ref()
            .and_then(|b| b.get(name))
            .and_then(Value::as_str)
            .map(|t| provider_text(t, &secrets, max))
            .filter(|t| !t.is_empty())
    };
    let reason = match (
        text("error", PROVIDER_ERROR_MAX),
        text("error_description", REVOCATION_REASON_MAX),
    ) {
        (Some(error), Some(description)) => {
            format!("{} answered {status}: {error} ({description})", app.label)
        }
        (Some(error), None) => format!("{} answered {status}: {error}", app.label),
        _ => format!("{} answered {status}", app.label),
    };
    Revocation::Refused { status, reason }
}

/// The S256 code challenge of a verifier (RFC 7636 §4.2).
fn challenge(verifier: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `application/x-www-form-urlencoded` of one value (RFC 6749 §2.3.1 asks for
/// it in the Basic credentials).
fn form_encode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .map(|s| s[1..].to_string())
        .unwrap_or_default()
}

/// Why the token endpoint gave no tokens; the reasons are fit to show and
/// never hold a code or a token.
pub enum TokenError {
    /// A definitive refusal: the grant or the client is not (or no longer) good.
    Refused(String),
    /// An outage, a 5xx, a timeout or an answer not understood: try again later.
    Unavailable(String),
    /// The token endpoint may not be called (not a valid URL, or a private
    /// address): nothing was asked, and nothing about the grant is known.
    Destination(String),
}

/// The most of a provider's `error` code kept in a reason.
const PROVIDER_ERROR_MAX: usize = 64;
/// The most of a provider's `error_description` kept in a reason.
const PROVIDER_DESCRIPTION_MAX: usize = 200;

/// A provider's `error` or `error_description`, fit to store and show to the
/// requester: control characters dropped, every one of `secrets` (as sent,
/// or form-encoded) replaced by `[redacted]` — a careless provider may echo
/// the code or the token it refuses, and the callback's text is the
/// consenting person's to write — and then at most `max` characters, cut
/// only once no secret is left to cut in half.
fn provider_text(text: &str, secrets: &[&str], max: usize) -> String {
    let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        for form in [secret.to_string(), form_encode(secret)] {
            text = text.replace(&form, "[redacted]");
        }
    }
    text.chars().take(max).collect()
}

/// Posts `form` to the token endpoint `url`, the client authenticated per the
/// app's `client_auth`; answers the JSON object of a successful response.
/// A refusal's reason holds none of the form's secrets, the client's, or
/// `also_secret` (the connection's other tokens).
async fn token_request(
    http: &reqwest::Client,
    app: &App,
    oauth: &OAuth2,
    client: &OAuthClient,
    url: reqwest::Url,
    mut form: Vec<(&str, &str)>,
    also_secret: &[&str],
) -> Result<SecretJson, TokenError> {
    let mut secrets: Vec<&str> = form
        .iter()
        .filter(|(name, _)| {
            matches!(
                *name,
                "code" | "code_verifier" | "refresh_token" | "client_secret"
            )
        })
        .map(|(_, value)| *value)
        .collect();
    secrets.push(client.client_secret.expose_secret());
    secrets.extend_from_slice(also_secret);
    let host = url.host_str().unwrap_or_default().to_string();
    let mut request = http
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json");
    match oauth.client_auth {
        ClientAuth::Basic => {
            request = request.header(
                reqwest::header::AUTHORIZATION,
                basic_credentials(client).map_err(TokenError::Refused)?,
            );
        }
        ClientAuth::Post => {
            form.push(("client_id", &client.client_id));
            form.push(("client_secret", client.client_secret.expose_secret()));
        }
    }
    let response = match request.form(&form).send().await {
        Ok(response) => response,
        Err(error) if error.is_timeout() => {
            return Err(TokenError::Unavailable(format!(
                "{host} did not answer in time"
            )))
        }
        Err(_) => return Err(TokenError::Unavailable(format!("could not reach {host}"))),
    };
    let status = response.status();
    let body: Option<Value> = response.json().await.ok();
    if !status.is_success() {
        let error = body
            .as_ref()
            .and_then(|b| b["error"].as_str())
            .map(|e| provider_text(e, &secrets, PROVIDER_ERROR_MAX));
        let description = body
            .as_ref()
            .and_then(|b| b["error_description"].as_str())
            .map(|e| provider_text(e, &secrets, PROVIDER_DESCRIPTION_MAX))
            .filter(|e| !e.is_empty());
        // RFC 6749 §5.2: these say the grant or the client is no good, and
        // asking again will not change that. Anything else may pass.
        let definitive = match error.as_deref() {
            Some("invalid_grant") => true,
            Some("invalid_client" | "unauthorized_client") => {
                matches!(status.as_u16(), 400 | 401)
            }
            _ => false,
        };
        // An outage is not a refusal, and is not worded as one.
        let what = if definitive {
            "refused the authorization"
        } else {
            "could not answer the token request"
        };
        let reason = match (error, description) {
            (Some(error), Some(description)) => format!(
                "{} {what} (HTTP {}): {error} ({description})",
                app.label,
                status.as_u16()
            ),
            (Some(error), None) => {
                format!("{} {what} (HTTP {}): {error}", app.label, status.as_u16())
            }
            _ => format!("{} {what} (HTTP {})", app.label, status.as_u16()),
        };
        if let Some(body) = body {
            crate::secret_json::wipe(body);
        }
        return Err(if definitive {
            TokenError::Refused(reason)
        } else {
            TokenError::Unavailable(reason)
        });
    }
    match body {
        // The tokens in it are zeroized when the caller drops it.
        Some(Value::Object(body)) => Ok(SecretJson::from(body)),
        other => {
            if let Some(other) = other {
                crate::secret_json::wipe(other);
            }
            Err(TokenError::Unavailable(format!(
                "{} answered the token request with no JSON object",
                app.label
            )))
        }
    }
}

/// The `Authorization: Basic` value of the client (RFC 6749 §2.3.1), marked
/// sensitive so it never shows in a debug print.
fn basic_credentials(client: &OAuthClient) -> Result<reqwest::header::HeaderValue, String> {
    use base64::Engine;
    let credentials = format!(
        "{}:{}",
        form_encode(&client.client_id),
        form_encode(client.client_secret.expose_secret())
    );
    let mut value = reqwest::header::HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    ))
    .map_err(|_| "the OAuth client id or secret is not valid in a header".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

/// The values to seal from a token response: `access_token`, `refresh_token`,
/// `token_type`, `expires_at` (from `expires_in`) and the app's `token_fields`.
fn token_values(
    app: &App,
    oauth: &OAuth2,
    body: &serde_json::Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, SecretString>, String> {
    let Some(access_token) = body.get("access_token").and_then(Value::as_str) else {
        return Err(format!(
            "{} answered the token request without an access token",
            app.label
        ));
    };
    let mut values = BTreeMap::new();
    values.insert(
        "access_token".to_string(),
        SecretString::from(access_token.to_string()),
    );
    if let Some(refresh) = body.get("refresh_token").and_then(Value::as_str) {
        values.insert(
            "refresh_token".into(),
            SecretString::from(refresh.to_string()),
        );
    }
    if let Some(kind) = body.get("token_type").and_then(Value::as_str) {
        values.insert("token_type".into(), SecretString::from(kind.to_string()));
    }
    let expires_in = match body.get("expires_in") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    if let Some(seconds) = expires_in.filter(|s| *s > 0 && *s < 10 * 365 * 24 * 3600) {
        let at = now + chrono::Duration::seconds(seconds);
        values.insert("expires_at".into(), SecretString::from(at.to_rfc3339()));
    }
    for field in &oauth.token_fields {
        match body.get(field) {
            Some(Value::String(value)) => {
                values.insert(field.clone(), SecretString::from(value.clone()));
            }
            Some(Value::Number(value)) => {
                values.insert(field.clone(), SecretString::from(value.to_string()));
            }
            _ => {}
        }
    }
    Ok(values)
}

//! Credence as an OAuth 2.0 client (RFC 6749 authorization-code flow, RFC 7636
//! PKCE S256) for catalog apps with `auth.kind = "oauth2"`.
//!
//! [`start`] stores a flow (`oauth_flows`: the state only as a hash, the PKCE
//! verifier sealed and bound to the row, ten minutes to live) and answers the
//! provider's consent URL. [`callback`] finds the flow by the state's hash,
//! checks that the browser belongs to the flow's recipient, spends the flow
//! once, exchanges the code at the token endpoint and stores the tokens as the
//! connection's sealed secret, or marks the credential `invalid` with the reason.
//!
//! [`refresh`] renews an expiring access token (SPEC §5) in one transaction
//! that holds the connection's row, so one refresh per connection runs at a
//! time across instances; a definitive refusal makes the connection and its
//! credentials `invalid`, an outage only delays the next attempt (backoff in
//! `connections.refresh_after`). [`revoke_at_provider`] revokes a destroyed
//! connection's grant (RFC 7009 or bearer) after the destroying transaction
//! committed, and audits the outcome.
//!
//! Client ids and secrets come from configuration (`Config::oauth_clients`),
//! never from the catalog. No code or token ever reaches a message or a log.

use super::credentials::{self, Success};
use super::upstream::{self, FieldValues};
use super::{random_token, token_hash, Context, Error, Result};
use crate::config::{oauth_client_variables, OAuthClient};
use credence_catalog::{App, AppVersion, AuthKind, ClientAuth, OAuth2, RevocationStyle};
use credence_domain::{CredentialAction, CredentialId, RequestId};
use credence_store::{NewOAuthFlow, RequestedCredential, User};
use credence_vault::Sealed;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::collections::BTreeMap;

/// Where the provider sends the browser back, under the public URL.
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// How long a consent page may stay open before its flow is refused.
pub const FLOW_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);

/// The vault context of a flow's PKCE verifier: bound to its row.
fn verifier_context(flow: &str) -> String {
    format!("oauth_flow:{flow}:pkce_verifier")
}

fn redirect_uri(ctx: &Context) -> String {
    format!("{}{CALLBACK_PATH}", ctx.public_url)
}

/// The configured client of `app`, or a conflict naming what to set.
fn client_of<'a>(ctx: &'a Context, app: &App) -> Result<&'a OAuthClient> {
    ctx.oauth_clients.get(&app.key).ok_or_else(|| {
        let (id, secret) = oauth_client_variables(&app.key);
        Error::Conflict(format!(
            "{} connects with OAuth 2.0, but no OAuth client is configured for {}: \
             the operator sets {id} and {secret} (or [oauth.{}] in the config file)",
            app.label, app.key, app.key
        ))
    })
}

fn oauth2_of(version: &AppVersion) -> Result<&OAuth2> {
    version.auth.oauth2().ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "version {} is not an OAuth app",
            version.version
        ))
    })
}

/// Parses a catalog endpoint and refuses private and loopback hosts unless the
/// operator's app allows them.
async fn endpoint(app: &App, what: &str, url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| format!("the {what} URL of {} is not valid", app.label))?;
    upstream::check_destination(app, &parsed).await?;
    Ok(parsed)
}

/// The scopes stored as a JSON array.
fn scope_list(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Starts a flow for `credential` (already checked: the caller is its
/// recipient and the state machine allows the action) and answers the
/// provider's authorize URL.
pub(super) async fn start(
    ctx: &Context,
    caller: &User,
    credential: &RequestedCredential,
    app: &App,
    version: &AppVersion,
    reauthorize: bool,
) -> Result<String> {
    let oauth = oauth2_of(version)?;
    let client = client_of(ctx, app)?;
    let invalid = |message: String| Error::Conflict(message);
    let mut url = endpoint(app, "authorize", &oauth.authorize_url)
        .await
        .map_err(invalid)?;
    endpoint(app, "token", &oauth.token_url)
        .await
        .map_err(invalid)?;

    let state = random_token();
    let flow = uuid::Uuid::new_v4().to_string();
    let verifier = oauth.pkce.then(random_token);
    let verifier_sealed = match &verifier {
        Some(verifier) => Some(
            ctx.vault
                .seal_str(
                    &SecretString::from(verifier.clone()),
                    &verifier_context(&flow),
                )?
                .as_str()
                .to_string(),
        ),
        None => None,
    };
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", &redirect_uri(ctx))
            .append_pair(
                "scope",
                &scope_list(&credential.scopes).join(&oauth.scope_separator),
            )
            .append_pair("state", &state);
        if let Some(verifier) = &verifier {
            query
                .append_pair("code_challenge", &challenge(verifier))
                .append_pair("code_challenge_method", "S256");
        }
        for (name, value) in &oauth.extra_authorize_params {
            query.append_pair(name, value);
        }
    }
    let mut tx = ctx.store.begin().await?;
    tx.insert_oauth_flow(&NewOAuthFlow {
        id: flow,
        state_hash: token_hash(&state),
        credential_id: credential.id,
        user_id: caller.id,
        reauthorize,
        verifier_sealed,
        expires_at: credence_store::now() + FLOW_LIFETIME,
    })
    .await?;
    tx.commit().await?;
    Ok(url.into())
}

/// The S256 code challenge of a verifier (RFC 7636 §4.2).
fn challenge(verifier: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// What the provider put on the callback URL. `Debug` hides the code.
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<SecretString>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| "…"))
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// The provider sent the browser back. `Ok` names the request whose page the
/// browser goes to next (the credential is then `authorized`, or `invalid` with
/// the reason). An unknown state is `NotFound`; one of another person
/// `Forbidden`; a spent or expired one `Conflict` — and then nothing changes.
pub async fn callback(ctx: &Context, caller: &User, params: CallbackParams) -> Result<RequestId> {
    let unknown = || {
        Error::NotFound(
            "this sign-in step is not one Credence started; start again from the request page"
                .into(),
        )
    };
    let state = params
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .ok_or_else(unknown)?;
    let flow = ctx
        .store
        .db()
        .await?
        .find_oauth_flow(&token_hash(state))
        .await?
        .ok_or_else(unknown)?;
    if flow.user_id != caller.id.0 {
        return Err(Error::Forbidden(
            "this sign-in step was started by someone else; sign in as the person the request was sent to".into(),
        ));
    }
    if flow.used_at.is_some() {
        return Err(Error::Conflict(
            "this sign-in step was used already; start again from the request page".into(),
        ));
    }
    if flow.expires_at <= chrono::Utc::now() {
        return Err(Error::Conflict(
            "this sign-in step expired; start again from the request page".into(),
        ));
    }
    let id = CredentialId::parse("credential", &flow.credential_id)
        .map_err(|_| Error::Internal(anyhow::anyhow!("flow {} names a bad credential", flow.id)))?;
    let (credential, request, _) =
        credentials::visible(&mut ctx.store.db().await?, caller, id).await?;
    let verifier = match &flow.verifier_sealed {
        Some(sealed) => Some(ctx.vault.open_string(
            &Sealed::from_stored(sealed.clone()),
            &verifier_context(&flow.id),
        )?),
        None => None,
    };
    // Spent before the exchange: a replayed callback finds it spent even while
    // the first one is still talking to the provider.
    if !ctx.store.db().await?.spend_oauth_flow(&flow.id).await? {
        return Err(Error::Conflict(
            "this sign-in step was used already; start again from the request page".into(),
        ));
    }
    let reauthorize = flow.reauthorize != 0;
    let action = if reauthorize {
        CredentialAction::Reauthorize
    } else {
        CredentialAction::Authorize
    };
    if let Err(error) = credential.state.apply(action) {
        return Err(Error::Conflict(error.to_string()));
    }
    let (app, version) = credentials::app_of(ctx, &credential)?;
    let oauth = oauth2_of(version)?;

    if let Some(error) = &params.error {
        let error: String = error.chars().take(64).collect();
        let reason = match params.error_description.as_deref() {
            Some(description) if !description.is_empty() => format!(
                "{} did not grant access: {error} ({})",
                app.label,
                description.chars().take(200).collect::<String>()
            ),
            _ => format!("{} did not grant access: {error}", app.label),
        };
        credentials::record_failure(ctx, caller, &credential, &request, &reason).await?;
        return Ok(request.id);
    }
    let Some(code) = &params.code else {
        let reason = format!("{} sent neither a code nor an error", app.label);
        credentials::record_failure(ctx, caller, &credential, &request, &reason).await?;
        return Ok(request.id);
    };
    let client = client_of(ctx, app)?;
    let requested = scope_list(&credential.scopes);
    match exchange(ctx, app, oauth, client, code, verifier.as_ref(), &requested).await {
        Err(reason) => {
            credentials::record_failure(ctx, caller, &credential, &request, &reason).await?;
        }
        Ok((values, granted)) => {
            let scopes =
                serde_json::to_string(&granted).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
            credentials::record_success(
                ctx,
                caller,
                &credential,
                &request,
                Success {
                    app,
                    version,
                    reauthorize,
                    values: &values,
                    scopes: &scopes,
                },
            )
            .await?;
        }
    }
    Ok(request.id)
}

/// `application/x-www-form-urlencoded` of one value (RFC 6749 §2.3.1 asks for
/// it in the Basic credentials).
fn form_encode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .map(|s| s[1..].to_string())
        .unwrap_or_default()
}

/// Exchanges `code` at the token endpoint. `Ok` holds the values to seal
/// (`access_token`, `refresh_token`, `expires_at`, `token_type` and the app's
/// `token_fields`) and the granted scopes; `Err` a reason fit to show, which
/// never holds the code or a token.
async fn exchange(
    ctx: &Context,
    app: &App,
    oauth: &OAuth2,
    client: &OAuthClient,
    code: &SecretString,
    verifier: Option<&SecretString>,
    requested: &[String],
) -> Result<(FieldValues, Vec<String>), String> {
    let url = endpoint(app, "token", &oauth.token_url).await?;
    let redirect = redirect_uri(ctx);
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", code.expose_secret()),
        ("redirect_uri", &redirect),
    ];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier.expose_secret()));
    }
    let body = match token_request(ctx, app, oauth, client, url, form).await {
        Ok(body) => body,
        Err(TokenError::Refused(reason) | TokenError::Unavailable(reason)) => return Err(reason),
    };
    let values = token_values(app, oauth, &body)?;
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

/// Why the token endpoint gave no tokens; the reasons are fit to show and
/// never hold a code or a token.
enum TokenError {
    /// A definitive refusal: the grant or the client is not (or no longer) good.
    Refused(String),
    /// An outage, a 5xx, a timeout or an answer not understood: try again later.
    Unavailable(String),
}

/// Posts `form` to the token endpoint `url`, the client authenticated per the
/// app's `client_auth`; answers the JSON object of a successful response.
async fn token_request(
    ctx: &Context,
    app: &App,
    oauth: &OAuth2,
    client: &OAuthClient,
    url: reqwest::Url,
    mut form: Vec<(&str, &str)>,
) -> Result<serde_json::Map<String, Value>, TokenError> {
    let host = url.host_str().unwrap_or_default().to_string();
    let mut request = ctx
        .http
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
            .map(|e| e.chars().take(64).collect::<String>());
        let description = body
            .as_ref()
            .and_then(|b| b["error_description"].as_str())
            .map(|e| e.chars().take(200).collect::<String>());
        // RFC 6749 §5.2: these say the grant or the client is no good, and
        // asking again will not change that. Anything else may pass.
        let definitive = match error.as_deref() {
            Some("invalid_grant") => true,
            Some("invalid_client" | "unauthorized_client") => {
                matches!(status.as_u16(), 400 | 401)
            }
            _ => false,
        };
        let reason = match (error, description) {
            (Some(error), Some(description)) => format!(
                "{} refused the authorization (HTTP {}): {error} ({description})",
                app.label,
                status.as_u16()
            ),
            (Some(error), None) => format!(
                "{} refused the authorization (HTTP {}): {error}",
                app.label,
                status.as_u16()
            ),
            _ => format!(
                "{} refused the authorization (HTTP {})",
                app.label,
                status.as_u16()
            ),
        };
        return Err(if definitive {
            TokenError::Refused(reason)
        } else {
            TokenError::Unavailable(reason)
        });
    }
    match body {
        Some(Value::Object(body)) => Ok(body),
        _ => Err(TokenError::Unavailable(format!(
            "{} answered the token request with no JSON object",
            app.label
        ))),
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
        let at = credence_store::now() + chrono::Duration::seconds(seconds);
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

/// How long before its expiry an access token counts as expiring (at most;
/// see [`refresh_with`]). The background refresher looks this far ahead.
pub const EXPIRY_MARGIN: chrono::Duration = chrono::Duration::minutes(2);

/// A connection not refreshed for this long is refreshed anyway.
pub const IDLE_AFTER: chrono::Duration = chrono::Duration::days(7);

/// The first wait after a provider outage; it doubles with each outage in a
/// row, up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: chrono::Duration = chrono::Duration::seconds(30);
pub const BACKOFF_MAX: chrono::Duration = chrono::Duration::hours(1);

/// The wait after `failures` outages in a row (the one just seen included).
fn backoff(failures: i64) -> chrono::Duration {
    let exponent = failures.clamp(1, 12) - 1;
    std::cmp::min(BACKOFF_FIRST * (1 << exponent), BACKOFF_MAX)
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The stored access token is not expiring (another instance may just
    /// have refreshed it): the provider was not asked.
    StillValid,
    /// The provider issued a new access token; it is sealed and stored.
    Refreshed,
    /// The provider refused for good (or the connection was invalid already):
    /// the connection and its credentials are `invalid`, both sides told.
    Refused { reason: String },
}

/// A connection's sealed tokens, opened for one use. `Debug` shows no value.
pub struct Tokens(pub BTreeMap<String, SecretString>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Tokens {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.expose_secret())
    }

    fn expires_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.get("expires_at")
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&chrono::Utc))
    }
}

fn secret_context(secret: &str) -> String {
    format!("secret:{secret}:{}", super::connections::SECRET_PURPOSE)
}

/// Opens a connection's sealed tokens inside the caller's transaction (so a
/// refresh reads what the lock protects). `None` when it holds no secret.
pub async fn open_tokens(
    db: &mut credence_store::Db,
    ctx: &Context,
    connection: &credence_store::Connection,
) -> Result<Option<Tokens>> {
    let Some(secret) = &connection.secret_id else {
        return Ok(None);
    };
    let Some(stored) = db.get_secret(secret).await? else {
        return Ok(None);
    };
    let plain = ctx
        .vault
        .open_string(&Sealed::from_stored(stored.sealed), &secret_context(secret))?;
    let map: BTreeMap<String, String> =
        serde_json::from_str(plain.expose_secret()).map_err(|_| {
            Error::Internal(anyhow::anyhow!(
                "connection {} holds unreadable values",
                connection.id
            ))
        })?;
    Ok(Some(Tokens(
        map.into_iter()
            .map(|(k, v)| (k, SecretString::from(v)))
            .collect(),
    )))
}

/// Refreshes the access token of OAuth connection `id` if it is expiring
/// (SPEC §5). See [`refresh_with`].
pub async fn refresh(ctx: &Context, id: i64) -> Result<RefreshOutcome> {
    refresh_with(ctx, id, false).await
}

/// Refreshes the access token of OAuth connection `id`; with `force`, even a
/// token that is not expiring (to test the grant).
///
/// Everything happens in one transaction that holds the connection's row
/// (`Db::lock_connection`), so across all instances one refresh per
/// connection runs at a time, and the second reads what the first stored —
/// with rotating refresh tokens, presenting a consumed one would make the
/// provider revoke the whole grant. A provider outage changes nothing but the
/// backoff and answers a conflict the caller may retry after.
pub async fn refresh_with(ctx: &Context, id: i64, force: bool) -> Result<RefreshOutcome> {
    let not_found = || Error::NotFound(format!("connection {id} not found"));
    let mut tx = ctx.store.begin().await?;
    let connection = tx.lock_connection(id).await?.ok_or_else(not_found)?;
    if connection.auth_kind != AuthKind::Oauth2.as_str() {
        return Err(Error::Conflict(format!(
            "connection {id} does not use OAuth 2.0; there is no token to refresh"
        )));
    }
    if connection.state == "invalid" {
        return Ok(RefreshOutcome::Refused {
            reason: format!("connection {id} is invalid; it needs a new authorization"),
        });
    }
    let app = ctx.catalog.get(&connection.app_key).ok_or_else(|| {
        Error::Conflict(format!(
            "the app {} is no longer in the catalog",
            connection.app_key
        ))
    })?;
    let version = app.version(connection.app_version as u32).ok_or_else(|| {
        Error::Conflict(format!(
            "version {} of {} is no longer in the catalog",
            connection.app_version, app.key
        ))
    })?;
    let oauth = oauth2_of(version)?;
    let Some(tokens) = open_tokens(&mut tx, ctx, &connection).await? else {
        return Err(Error::Conflict(format!("connection {id} holds no tokens")));
    };
    let now = credence_store::now();
    // The margin is at most half the token's lifetime, so a short-lived token
    // just refreshed by another instance does not count as expiring again.
    let issued = connection.refreshed_at.unwrap_or(connection.created_at);
    let expiring = tokens
        .expires_at()
        .is_some_and(|at| at <= now + std::cmp::min(EXPIRY_MARGIN, (at - issued) / 2));
    // Providers expire refresh tokens nobody used for a while.
    let idle = issued <= now - IDLE_AFTER;
    if !expiring && !idle && !force {
        return Ok(RefreshOutcome::StillValid);
    }
    let Some(refresh_token) = tokens.get("refresh_token").map(str::to_string) else {
        if expiring {
            let reason = format!(
                "{} gave no refresh token and the access token expired",
                app.label
            );
            invalidate(ctx, &mut tx, &connection, &reason).await?;
            tx.commit().await?;
            return Ok(RefreshOutcome::Refused { reason });
        }
        // Nothing to refresh with, and nothing expiring: the token stands.
        return Ok(RefreshOutcome::StillValid);
    };
    let client = client_of(ctx, app)?;
    let url = endpoint(app, "token", &oauth.token_url)
        .await
        .map_err(Error::Conflict)?;
    let form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
    ];
    let outcome = match token_request(ctx, app, oauth, client, url, form).await {
        Ok(body) => token_values(app, oauth, &body).map_err(TokenError::Unavailable),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(mut values) => {
            // RFC 6749 §6: without a new refresh token the old one stays good.
            if !values.contains_key("refresh_token") {
                values.insert("refresh_token".into(), SecretString::from(refresh_token));
            }
            // Fields the response does not repeat (e.g. an id token field)
            // stay as they were.
            for (name, value) in tokens.0 {
                if name != "expires_at" {
                    values.entry(name).or_insert(value);
                }
            }
            let new = Tokens(values);
            let plain: serde_json::Map<String, Value> = new
                .0
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_string())))
                .collect();
            let plain = SecretString::from(Value::Object(plain).to_string());
            let secret = connection.secret_id.as_deref().unwrap_or_default();
            let sealed = ctx.vault.seal_str(&plain, &secret_context(secret))?;
            tx.replace_secret(secret, sealed.as_str()).await?;
            tx.record_refresh(id, new.expires_at()).await?;
            tx.commit().await?;
            Ok(RefreshOutcome::Refreshed)
        }
        Err(TokenError::Refused(reason)) => {
            invalidate(ctx, &mut tx, &connection, &reason).await?;
            tx.commit().await?;
            Ok(RefreshOutcome::Refused { reason })
        }
        Err(TokenError::Unavailable(reason)) => {
            let after = credence_store::now() + backoff(connection.refresh_failures + 1);
            tx.record_refresh_outage(id, after).await?;
            tx.commit().await?;
            Err(Error::Conflict(format!(
                "could not refresh connection {id}: {reason}; Credence tries again after {}",
                after.to_rfc3339()
            )))
        }
    }
}

/// A definitive refusal (inside the refresh's transaction): the connection is
/// `invalid`, and so is every authorized credential using it, audited, with
/// both the requester and the recipient told.
async fn invalidate(
    ctx: &Context,
    tx: &mut credence_store::Db,
    connection: &credence_store::Connection,
    reason: &str,
) -> Result<()> {
    tx.set_connection_state(connection.id, "invalid").await?;
    let actor = super::audit::Actor::system();
    for credential in tx.credentials_using_connection(connection.id).await? {
        if credential
            .state
            .apply(CredentialAction::Invalidate)
            .is_err()
        {
            continue;
        }
        let Some(request) = tx.get_request(credential.request_id).await? else {
            continue;
        };
        let invalid = tx
            .transition_credential(
                credential.id,
                CredentialAction::Invalidate,
                &credence_store::CredentialChange {
                    invalid_reason: Some(reason.to_string()),
                    ..Default::default()
                },
            )
            .await?;
        credentials::connection_invalid(ctx, tx, &actor, &request, &invalid, connection.id, reason)
            .await?;
    }
    Ok(())
}

/// Revokes `tokens` at the provider of `app_key` (RFC 7009, or the app's
/// bearer style), after the connection holding them was destroyed and that
/// transaction committed: a failure here must never keep a local secret
/// alive. The outcome goes to the audit log as
/// `connection.revoked_at_provider` (`ok`, `status`), never a token. Apps
/// without a `revocation_url` are left alone. Never fails the caller.
pub async fn revoke_at_provider(
    ctx: &Context,
    app_key: &str,
    tokens: Tokens,
    connection: &credence_store::Connection,
) {
    let Some(app) = ctx.catalog.get(app_key) else {
        return;
    };
    let Some(version) = app.version(connection.app_version as u32) else {
        return;
    };
    let Some(oauth) = version.auth.oauth2() else {
        return;
    };
    let Some(revocation_url) = &oauth.revocation_url else {
        return;
    };
    let status = revoke_request(ctx, app, oauth, revocation_url, &tokens).await;
    let (ok, code) = match status {
        Ok(code) => ((200..300).contains(&code), Some(code)),
        Err(()) => (false, None),
    };
    if !ok {
        tracing::warn!(
            connection = connection.id,
            app = app_key,
            status = code,
            "could not revoke a connection's token at the provider"
        );
    }
    let recorded = async {
        let mut db = ctx.store.db().await?;
        super::audit::record(
            &mut db,
            &super::audit::Actor::system(),
            super::audit::Event {
                organization: credence_domain::OrganizationId(connection.organization_id),
                team: Some(credence_domain::TeamId(connection.team_id)),
                name: "connection.revoked_at_provider",
                target_kind: "connection",
                target_id: connection.id.to_string(),
                details: serde_json::json!({ "app": app_key, "ok": ok, "status": code }),
            },
        )
        .await
    };
    if let Err(error) = recorded.await {
        tracing::warn!(connection = connection.id, error = %error, "could not audit a revocation at the provider");
    }
}

/// Posts the revocation; answers the HTTP status, or `Err` when the provider
/// could not be reached.
async fn revoke_request(
    ctx: &Context,
    app: &App,
    oauth: &OAuth2,
    revocation_url: &str,
    tokens: &Tokens,
) -> Result<u16, ()> {
    let url = endpoint(app, "revocation", revocation_url)
        .await
        .map_err(|_| ())?;
    let request = match oauth.revocation_style {
        RevocationStyle::Rfc7009 => {
            // Revoking the refresh token ends the whole grant (RFC 7009 §2.1).
            let (token, hint) = match (tokens.get("refresh_token"), tokens.get("access_token")) {
                (Some(refresh), _) => (refresh, "refresh_token"),
                (None, Some(access)) => (access, "access_token"),
                (None, None) => return Err(()),
            };
            let client = client_of(ctx, app).map_err(|_| ())?;
            let mut form = vec![("token", token), ("token_type_hint", hint)];
            let mut request = ctx.http.post(url);
            match oauth.client_auth {
                ClientAuth::Basic => {
                    request = request.header(
                        reqwest::header::AUTHORIZATION,
                        basic_credentials(client).map_err(|_| ())?,
                    );
                }
                ClientAuth::Post => {
                    form.push(("client_id", &client.client_id));
                    form.push(("client_secret", client.client_secret.expose_secret()));
                }
            }
            request.form(&form)
        }
        RevocationStyle::Bearer => {
            let access = tokens.get("access_token").ok_or(())?;
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {access}"))
                .map_err(|_| ())?;
            value.set_sensitive(true);
            ctx.http
                .post(url)
                .header(reqwest::header::AUTHORIZATION, value)
        }
    };
    request
        .send()
        .await
        .map(|response| response.status().as_u16())
        .map_err(|_| ())
}

/// A destroyed connection's tokens, held until its transaction commits.
pub struct ToRevoke {
    connection: credence_store::Connection,
    tokens: Tokens,
}

/// Opens the tokens of OAuth connection `connection` (inside the transaction
/// that is about to destroy it) when its app can revoke them at the provider.
/// Never fails: a secret that does not open must not keep the connection alive.
pub async fn tokens_to_revoke(
    db: &mut credence_store::Db,
    ctx: &Context,
    connection: i64,
) -> Option<ToRevoke> {
    let found = db.get_connection(connection).await.ok()??;
    if found.auth_kind != AuthKind::Oauth2.as_str() {
        return None;
    }
    let revocable = ctx
        .catalog
        .get(&found.app_key)
        .and_then(|app| app.version(found.app_version as u32))
        .and_then(|version| version.auth.oauth2())
        .is_some_and(|oauth| oauth.revocation_url.is_some());
    if !revocable {
        return None;
    }
    match open_tokens(db, ctx, &found).await {
        Ok(Some(tokens)) => Some(ToRevoke {
            connection: found,
            tokens,
        }),
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(connection, error = %error, "could not open a connection's tokens to revoke them");
            None
        }
    }
}

/// Revokes, after the commit, what [`tokens_to_revoke`] kept.
pub async fn revoke_all_at_provider(ctx: &Context, all: Vec<ToRevoke>) {
    for ToRevoke { connection, tokens } in all {
        let app_key = connection.app_key.clone();
        revoke_at_provider(ctx, &app_key, tokens, &connection).await;
    }
}

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
//! Client ids and secrets come from configuration (`Config::oauth_clients`),
//! never from the catalog. No code or token ever reaches a message or a log.

use super::credentials::{self, Success};
use super::upstream::{self, FieldValues};
use super::{random_token, token_hash, Context, Error, Result};
use crate::config::{oauth_client_variables, OAuthClient};
use credence_catalog::{App, AppVersion, ClientAuth, OAuth2};
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
    let host = url.host_str().unwrap_or_default().to_string();
    let redirect = redirect_uri(ctx);
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", code.expose_secret()),
        ("redirect_uri", &redirect),
    ];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier.expose_secret()));
    }
    let mut request = ctx
        .http
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json");
    match oauth.client_auth {
        ClientAuth::Basic => {
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
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        ClientAuth::Post => {
            form.push(("client_id", &client.client_id));
            form.push(("client_secret", client.client_secret.expose_secret()));
        }
    }
    let response = match request.form(&form).send().await {
        Ok(response) => response,
        Err(error) if error.is_timeout() => return Err(format!("{host} did not answer in time")),
        Err(_) => return Err(format!("could not reach {host}")),
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
        return Err(match (error, description) {
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
        });
    }
    let Some(Value::Object(body)) = body else {
        return Err(format!(
            "{} answered the token request with no JSON object",
            app.label
        ));
    };
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

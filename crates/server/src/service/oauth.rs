//! Credence as an OAuth 2.0 client (RFC 6749 authorization-code flow, RFC 7636
//! PKCE S256) for catalog apps with `auth.kind = "oauth2"`.
//!
//! [`start`] stores a flow (`oauth_flows`: the state only as a hash, the PKCE
//! verifier and any own client sealed and bound to the row, ten minutes to
//! live) for one of four purposes ([`FlowFor`]): authorizing or reauthorizing
//! a requested credential, adding a team's own connection, or renewing one in
//! place; and answers the provider's consent URL. [`callback`] finds the flow
//! by the state's hash, checks that the browser belongs to the flow's person,
//! spends the flow once, exchanges the code at the token endpoint and seals
//! the tokens as the connection's secret — or records why not.
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
//! never from the catalog; a connection may bring its own client ("advanced
//! settings"), whose secret is sealed with its tokens ([`OWN_CLIENT_ID`],
//! [`OWN_CLIENT_SECRET`]). No code or token ever reaches a message or a log.

use super::credentials::{self, Success};
use super::secret_json::{self, SecretJson};
use super::upstream::{self, FieldValues};
use super::{random_token, token_hash, Context, Error, Result};
use crate::config::{oauth_client_variables, OAuthClient};
use credence_catalog::{App, AppVersion, AuthKind, ClientAuth, OAuth2, RevocationStyle};
use credence_domain::{CredentialAction, CredentialId, RequestId, TeamId};
use credence_store::{Connection, NewOAuthFlow, RequestedCredential, User};
use credence_vault::Sealed;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::collections::BTreeMap;

/// Where the provider sends the browser back, under the public URL.
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// How long a consent page may stay open before its flow is refused.
pub const FLOW_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);

/// The vault context of a flow's PKCE verifier: bound to its row.
pub(super) fn verifier_context(flow: &str) -> String {
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
             the operator sets {id} and {secret} (or [oauth.{}] in the config file), \
             or a connection brings its own (clientId and clientSecret)",
            app.label, app.key, app.key
        ))
    })
}

/// The client a connection or flow uses: its own when it has one ("advanced
/// settings" of SPEC §5), else the one configured for its app.
fn client_for(ctx: &Context, app: &App, own: Option<OAuthClient>) -> Result<OAuthClient> {
    match own {
        Some(own) => Ok(own),
        None => client_of(ctx, app).cloned(),
    }
}

/// Where a connection's own client is kept among its sealed values.
pub const OWN_CLIENT_ID: &str = "oauth_client_id";
pub const OWN_CLIENT_SECRET: &str = "oauth_client_secret";

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

/// What a flow is for, with what its callback needs.
pub(super) enum FlowFor<'a> {
    /// A requested credential, authorized or reauthorized by its recipient.
    Credential {
        credential: &'a RequestedCredential,
        reauthorize: bool,
    },
    /// A new connection of a team ("Add connection"), maybe with its own client.
    NewConnection {
        team: TeamId,
        target: ConnectTarget,
        client: Option<OAuthClient>,
    },
    /// An existing connection renewed in place (its id stays).
    Connection { connection: &'a Connection },
}

/// The connection a `connect` flow creates, kept (as JSON) in the flow.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct ConnectTarget {
    pub name: String,
    pub app_key: String,
    pub app_version: i64,
    /// JSON array of module keys.
    pub modules: String,
    /// JSON array of the scopes asked for.
    pub scopes: String,
}

/// The vault context of a flow's own client: bound to its row.
pub(super) fn flow_client_context(flow: &str) -> String {
    format!("oauth_flow:{flow}:client")
}

/// Starts a flow (the caller has checked who may) and answers the provider's
/// authorize URL: the scopes asked for, a 256-bit single-use state kept only as
/// a hash, PKCE S256 with the verifier sealed to the flow's row.
pub(super) async fn start(
    ctx: &Context,
    caller: &User,
    app: &App,
    version: &AppVersion,
    purpose: FlowFor<'_>,
) -> Result<String> {
    let oauth = oauth2_of(version)?;
    let flow = uuid::Uuid::new_v4().to_string();
    let mut new = NewOAuthFlow {
        id: flow.clone(),
        user_id: caller.id.0,
        expires_at: credence_store::now() + FLOW_LIFETIME,
        ..Default::default()
    };
    let (scopes, client) = match &purpose {
        FlowFor::Credential {
            credential,
            reauthorize,
        } => {
            new.purpose = if *reauthorize {
                "reauthorize"
            } else {
                "authorize"
            };
            new.credential_id = Some(credential.id);
            (scope_list(&credential.scopes), client_of(ctx, app)?.clone())
        }
        FlowFor::NewConnection {
            team,
            target,
            client,
        } => {
            new.purpose = "connect";
            new.team_id = Some(*team);
            new.target = Some(
                serde_json::to_string(target).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?,
            );
            if let Some(own) = client {
                let plain = serde_json::json!({
                    "client_id": own.client_id,
                    "client_secret": own.client_secret.expose_secret(),
                });
                let sealed = ctx.vault.seal_str(
                    &SecretString::from(plain.to_string()),
                    &flow_client_context(&flow),
                )?;
                new.client_sealed = Some(sealed.as_str().to_string());
            }
            (
                scope_list(&target.scopes),
                client_for(ctx, app, client.clone())?,
            )
        }
        FlowFor::Connection { connection } => {
            new.purpose = "reconnect";
            new.connection_id = Some(connection.id);
            let tokens = open_tokens(&mut ctx.store.db().await?, ctx, connection).await?;
            let own = tokens.as_ref().and_then(Tokens::own_client);
            (scope_list(&connection.scopes), client_for(ctx, app, own)?)
        }
    };
    let invalid = |message: String| Error::Conflict(message);
    let mut url = endpoint(app, "authorize", &oauth.authorize_url)
        .await
        .map_err(invalid)?;
    endpoint(app, "token", &oauth.token_url)
        .await
        .map_err(invalid)?;

    let state = random_token();
    let verifier = oauth.pkce.then(random_token);
    if let Some(verifier) = &verifier {
        new.verifier_sealed = Some(
            ctx.vault
                .seal_str(
                    &SecretString::from(verifier.clone()),
                    &verifier_context(&flow),
                )?
                .as_str()
                .to_string(),
        );
    }
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", &redirect_uri(ctx))
            .append_pair("scope", &scopes.join(&oauth.scope_separator))
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
    new.state_hash = token_hash(&state);
    let mut tx = ctx.store.begin().await?;
    tx.insert_oauth_flow(&new).await?;
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

/// Where the browser goes after a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// A requested credential's page: it is `authorized`, or `invalid` with the reason.
    Request(RequestId),
    /// A team's own connection: created or renewed (`failure` is `None`), or
    /// left as it was with the reason (`id` is `None` when none was created).
    Connection {
        id: Option<i64>,
        name: String,
        failure: Option<String>,
    },
}

/// The provider sent the browser back. An unknown state is `NotFound`; one of
/// another person `Forbidden`; a spent or expired one `Conflict` — and then
/// nothing changes. Otherwise the flow is spent and its purpose carried out.
pub async fn callback(ctx: &Context, caller: &User, params: CallbackParams) -> Result<Finished> {
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
            "this sign-in step was started by someone else; sign in as the person who started it"
                .into(),
        ));
    }
    if flow.used_at.is_some() {
        return Err(Error::Conflict(
            "this sign-in step was used already; start again".into(),
        ));
    }
    if flow.expires_at <= chrono::Utc::now() {
        return Err(Error::Conflict(
            "this sign-in step expired; start again".into(),
        ));
    }
    let verifier = match &flow.verifier_sealed {
        Some(sealed) => Some(ctx.vault.open_string(
            &Sealed::from_stored(sealed.clone()),
            &verifier_context(&flow.id),
        )?),
        None => None,
    };
    let own_client = match &flow.client_sealed {
        Some(sealed) => {
            let plain = ctx.vault.open_string(
                &Sealed::from_stored(sealed.clone()),
                &flow_client_context(&flow.id),
            )?;
            let parsed: BTreeMap<String, String> = serde_json::from_str(plain.expose_secret())
                .map_err(|_| {
                    Error::Internal(anyhow::anyhow!(
                        "flow {} holds an unreadable client",
                        flow.id
                    ))
                })?;
            Some(OAuthClient {
                client_id: parsed.get("client_id").cloned().unwrap_or_default(),
                client_secret: SecretString::from(
                    parsed.get("client_secret").cloned().unwrap_or_default(),
                ),
            })
        }
        None => None,
    };
    let answer = Answer {
        params,
        verifier,
        own_client,
    };
    match flow.purpose.as_str() {
        "authorize" | "reauthorize" => {
            let id = flow
                .credential_id
                .as_deref()
                .and_then(|id| CredentialId::parse("credential", id).ok())
                .ok_or_else(|| {
                    Error::Internal(anyhow::anyhow!("flow {} names no credential", flow.id))
                })?;
            let (credential, request, _) =
                credentials::visible(&mut ctx.store.db().await?, caller, id).await?;
            spend(ctx, &flow.id).await?;
            finish_credential(
                ctx,
                caller,
                &credential,
                &request,
                flow.purpose == "reauthorize",
                answer,
            )
            .await?;
            Ok(Finished::Request(request.id))
        }
        "connect" => {
            let target: ConnectTarget = flow
                .target
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .ok_or_else(|| {
                    Error::Internal(anyhow::anyhow!("flow {} names no connection", flow.id))
                })?;
            let team = TeamId(flow.team_id.ok_or_else(|| {
                Error::Internal(anyhow::anyhow!("flow {} names no team", flow.id))
            })?);
            spend(ctx, &flow.id).await?;
            finish_new_connection(ctx, caller, team, target, answer).await
        }
        "reconnect" => {
            let id = flow.connection_id.ok_or_else(|| {
                Error::Internal(anyhow::anyhow!("flow {} names no connection", flow.id))
            })?;
            spend(ctx, &flow.id).await?;
            finish_reconnect(ctx, caller, id, answer).await
        }
        other => Err(Error::Internal(anyhow::anyhow!(
            "flow {} has an unknown purpose {other:?}",
            flow.id
        ))),
    }
}

/// Spends a flow before the exchange: a replayed callback finds it spent even
/// while the first one is still talking to the provider.
async fn spend(ctx: &Context, flow: &str) -> Result<()> {
    if ctx.store.db().await?.spend_oauth_flow(flow).await? {
        Ok(())
    } else {
        Err(Error::Conflict(
            "this sign-in step was used already; start again".into(),
        ))
    }
}

/// What came back with the browser, and what the flow kept for the exchange.
struct Answer {
    params: CallbackParams,
    verifier: Option<SecretString>,
    own_client: Option<OAuthClient>,
}

impl Answer {
    /// The tokens and granted scopes, or the reason there are none (the
    /// provider's refusal, or the token endpoint's), fit to show.
    async fn exchange(
        &self,
        ctx: &Context,
        app: &App,
        oauth: &OAuth2,
        client: &OAuthClient,
        requested: &[String],
    ) -> Result<(FieldValues, Vec<String>), String> {
        if let Some(error) = &self.params.error {
            // Whoever sent the browser back wrote these (the consenting
            // person can edit the URL): nothing of the flow's secrets is kept.
            let secrets = [
                self.params.code.as_ref().map(|c| c.expose_secret()),
                self.verifier.as_ref().map(|v| v.expose_secret()),
                Some(client.client_secret.expose_secret()),
            ];
            let secrets: Vec<&str> = secrets.into_iter().flatten().collect();
            let error = provider_text(error, &secrets, PROVIDER_ERROR_MAX);
            let description = self
                .params
                .error_description
                .as_deref()
                .map(|d| provider_text(d, &secrets, PROVIDER_DESCRIPTION_MAX))
                .filter(|d| !d.is_empty());
            return Err(match description {
                Some(description) => format!(
                    "{} did not grant access: {error} ({description})",
                    app.label
                ),
                None => format!("{} did not grant access: {error}", app.label),
            });
        }
        let Some(code) = &self.params.code else {
            return Err(format!("{} sent neither a code nor an error", app.label));
        };
        exchange(
            ctx,
            app,
            oauth,
            client,
            code,
            self.verifier.as_ref(),
            requested,
        )
        .await
    }
}

/// A requested credential's flow came back: `authorized` with the sealed
/// tokens, or `invalid` with the reason.
async fn finish_credential(
    ctx: &Context,
    caller: &User,
    credential: &RequestedCredential,
    request: &credence_store::CredentialRequest,
    reauthorize: bool,
    answer: Answer,
) -> Result<()> {
    let action = if reauthorize {
        CredentialAction::Reauthorize
    } else {
        CredentialAction::Authorize
    };
    if let Err(error) = credential.state.apply(action) {
        return Err(Error::Conflict(error.to_string()));
    }
    let (app, version) = credentials::app_of(ctx, credential)?;
    let oauth = oauth2_of(version)?;
    let client = client_of(ctx, app)?;
    let requested = scope_list(&credential.scopes);
    match answer.exchange(ctx, app, oauth, client, &requested).await {
        Err(reason) => {
            credentials::record_failure(ctx, caller, credential, request, &reason).await?;
        }
        Ok((values, granted)) => {
            let scopes =
                serde_json::to_string(&granted).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
            credentials::record_success(
                ctx,
                caller,
                credential,
                request,
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
    Ok(())
}

/// A team's new connection came back from consent: it is created with the
/// sealed tokens (and its own client, if it brought one), audited; or nothing
/// is created and the reason shown.
async fn finish_new_connection(
    ctx: &Context,
    caller: &User,
    team: TeamId,
    target: ConnectTarget,
    answer: Answer,
) -> Result<Finished> {
    let (organization, _) =
        super::connection_writes::require_writer(&mut ctx.store.db().await?, caller, team).await?;
    let failed = |reason: String| Finished::Connection {
        id: None,
        name: target.name.clone(),
        failure: Some(reason),
    };
    let Some((app, version)) = ctx
        .catalog
        .get(&target.app_key)
        .and_then(|app| Some((app, app.version(target.app_version as u32)?)))
    else {
        return Ok(failed(format!(
            "the app {} is no longer in the catalog",
            target.app_key
        )));
    };
    let oauth = oauth2_of(version)?;
    let client = client_for(ctx, app, answer.own_client.clone())?;
    let requested = scope_list(&target.scopes);
    let (mut values, granted) = match answer.exchange(ctx, app, oauth, &client, &requested).await {
        Ok(done) => done,
        Err(reason) => return Ok(failed(reason)),
    };
    if let Some(own) = &answer.own_client {
        keep_own_client(&mut values, own);
    }
    let scopes =
        serde_json::to_string(&granted).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
    let mut tx = ctx.store.begin().await?;
    let id = super::connections::create(
        &mut tx,
        &ctx.vault,
        super::connections::ConnectionSpec {
            organization,
            team,
            provided_by: caller.id,
            name: &target.name,
            app_key: &app.key,
            app_version: target.app_version,
            auth_kind: AuthKind::Oauth2.as_str(),
            modules: &target.modules,
            scopes: &scopes,
            oauth_client_id: answer.own_client.as_ref().map(|c| c.client_id.as_str()),
        },
        &values,
    )
    .await?;
    super::connection_writes::audit_created(
        &mut tx,
        caller,
        organization,
        team,
        id,
        &app.key,
        &target.name,
    )
    .await?;
    tx.commit().await?;
    Ok(Finished::Connection {
        id: Some(id),
        name: target.name,
        failure: None,
    })
}

/// A connection renewed in place came back from consent: its tokens are
/// replaced (its own client kept), its scopes are what was granted, and it is
/// valid again; on a refusal it stays as it was.
///
/// The old grant is not revoked at the provider: providers such as Google keep
/// one grant per user and client, so revoking the old token would revoke the
/// new one with it.
async fn finish_reconnect(
    ctx: &Context,
    caller: &User,
    id: i64,
    answer: Answer,
) -> Result<Finished> {
    let connection =
        super::connection_writes::manageable(&mut ctx.store.db().await?, caller, id).await?;
    let failed = |reason: String| Finished::Connection {
        id: Some(id),
        name: connection.name.clone(),
        failure: Some(reason),
    };
    let Some((app, version)) = ctx
        .catalog
        .get(&connection.app_key)
        .and_then(|app| Some((app, app.version(connection.app_version as u32)?)))
    else {
        return Ok(failed(format!(
            "the app {} is no longer in the catalog",
            connection.app_key
        )));
    };
    let oauth = oauth2_of(version)?;
    let old = open_tokens(&mut ctx.store.db().await?, ctx, &connection).await?;
    let own = old.as_ref().and_then(Tokens::own_client);
    let client = client_for(ctx, app, own.clone())?;
    let requested = scope_list(&connection.scopes);
    let (mut values, granted) = match answer.exchange(ctx, app, oauth, &client, &requested).await {
        Ok(done) => done,
        Err(reason) => return Ok(failed(reason)),
    };
    if let Some(own) = &own {
        keep_own_client(&mut values, own);
    }
    let new = Tokens(values.0);
    let scopes =
        serde_json::to_string(&granted).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
    let mut tx = ctx.store.begin().await?;
    let Some(locked) = tx.lock_connection(id).await? else {
        return Err(Error::NotFound(format!("connection {id} not found")));
    };
    let Some(secret) = &locked.secret_id else {
        return Err(Error::Conflict(format!("connection {id} holds no secret")));
    };
    tx.replace_secret(secret, seal_tokens(ctx, &new, &locked, secret)?.as_str())
        .await?;
    tx.record_reauthorization(id, &scopes, new.expires_at())
        .await?;
    super::audit::record(
        &mut tx,
        &super::audit::Actor::user(caller),
        super::audit::Event {
            organization: credence_domain::OrganizationId(connection.organization_id),
            team: Some(TeamId(connection.team_id)),
            name: "connection.reauthorized",
            target_kind: "connection",
            target_id: id.to_string(),
            details: serde_json::json!({ "app": connection.app_key, "scopes": granted }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Finished::Connection {
        id: Some(id),
        name: connection.name,
        failure: None,
    })
}

/// Keeps a connection's own client among the values sealed with its tokens.
fn keep_own_client(values: &mut FieldValues, own: &OAuthClient) {
    values.0.insert(
        OWN_CLIENT_ID.into(),
        SecretString::from(own.client_id.clone()),
    );
    values.0.insert(
        OWN_CLIENT_SECRET.into(),
        SecretString::from(own.client_secret.expose_secret().to_string()),
    );
}

/// Seals tokens as the secret `secret` of `connection`.
fn seal_tokens(
    ctx: &Context,
    tokens: &Tokens,
    connection: &Connection,
    secret: &str,
) -> Result<credence_vault::Sealed> {
    // The JSON copies of the tokens are zeroized, as is the text sealed.
    let plain: SecretJson = tokens
        .0
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_string())))
        .collect();
    Ok(ctx
        .vault
        .seal(&plain.to_json_bytes(), &secret_context(connection, secret))?)
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
    let body = match token_request(ctx, app, oauth, client, url, form, &[]).await {
        Ok(body) => body,
        Err(TokenError::Refused(reason) | TokenError::Unavailable(reason)) => return Err(reason),
    };
    let values = token_values(app, oauth, &body, ctx.clock.now())?;
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
    ctx: &Context,
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
            secret_json::wipe(body);
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
                secret_json::wipe(other);
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
/// `token_type`, `expires_at` (`now` plus `expires_in`) and the app's `token_fields`.
fn token_values(
    app: &App,
    oauth: &OAuth2,
    body: &serde_json::Map<String, Value>,
    now: chrono::DateTime<chrono::Utc>,
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

    /// The connection's own OAuth client, when it brought one.
    fn own_client(&self) -> Option<OAuthClient> {
        Some(OAuthClient {
            client_id: self.get(OWN_CLIENT_ID)?.to_string(),
            client_secret: SecretString::from(self.get(OWN_CLIENT_SECRET)?.to_string()),
        })
    }

    fn expires_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.get("expires_at")
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&chrono::Utc))
    }
}

/// A connection's tokens are sealed in the connection's name (see `secrets`).
fn secret_context(connection: &Connection, secret: &str) -> String {
    super::secrets::connection_context(connection.id, connection.team_id, secret)
}

/// Opens a connection's sealed tokens inside the caller's transaction (so a
/// refresh reads what the lock protects). `None` when it holds no secret.
pub async fn open_tokens(
    db: &mut credence_store::Db,
    ctx: &Context,
    connection: &credence_store::Connection,
) -> Result<Option<Tokens>> {
    Ok(
        super::secrets::read_connection_values(db, &ctx.vault, connection)
            .await?
            .map(Tokens),
    )
}

/// Refreshes the access token of OAuth connection `id` if it is expiring
/// (SPEC §5). See [`refresh_with`].
pub async fn refresh(ctx: &Context, id: i64) -> Result<RefreshOutcome> {
    refresh_with(ctx, id, false).await
}

/// How long a refresh may hold a connection's lease: longer than the HTTP
/// client's timeout, so a lease outlives only an instance that died.
pub const REFRESH_LEASE: chrono::Duration = chrono::Duration::seconds(60);

/// Refreshes the access token of OAuth connection `id`; with `force`, even a
/// token that is not expiring (to test the grant).
///
/// One refresh per connection runs at a time across all instances: each
/// first claims the connection's refresh lease (a guarded `UPDATE` of
/// `connections.refresh_lease_until`), waiting while another holds it, and
/// then reads what the previous one stored — with rotating refresh tokens,
/// presenting a consumed one would make the provider revoke the whole grant.
/// No database lock is held while the provider answers (on SQLite that would
/// stop every writer); the outcome is written in a short transaction that
/// holds the row and checks that the tokens are still the ones read (a
/// reauthorization in between wins). A provider outage changes nothing but
/// the backoff and answers a conflict the caller may retry after.
pub async fn refresh_with(ctx: &Context, id: i64, force: bool) -> Result<RefreshOutcome> {
    // In a task of its own, which the caller waits for: once the provider has
    // answered (and may have rotated the refresh token), the outcome must be
    // written even if the request that asked is answered 408 or dropped.
    let ctx = ctx.clone();
    tokio::spawn(async move { refresh_holding_lease(&ctx, id, force).await })
        .await
        .map_err(|error| Error::Internal(anyhow::anyhow!("a refresh stopped: {error}")))?
}

/// [`refresh_with`] in the caller's task.
async fn refresh_holding_lease(ctx: &Context, id: i64, force: bool) -> Result<RefreshOutcome> {
    let lease_until = claim_lease(ctx, id).await?;
    let outcome = refresh_leased(ctx, id, force).await;
    // Only this refresh's own lease: if it ran out meanwhile, another refresh
    // may hold the connection now, and freeing its lease would let a third in.
    let released = async {
        ctx.store
            .db()
            .await?
            .release_refresh_lease(id, lease_until)
            .await
    };
    match released.await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                connection = id,
                "a refresh outlived its lease; another holds it now"
            )
        }
        // The lease runs out by itself.
        Err(error) => {
            tracing::warn!(connection = id, error = %error, "could not release a refresh lease")
        }
    }
    outcome
}

/// Claims the refresh lease of connection `id`, waiting (up to one lease)
/// while another refresh holds it; answers the lease's end, its token for
/// the release.
async fn claim_lease(ctx: &Context, id: i64) -> Result<chrono::DateTime<chrono::Utc>> {
    let give_up = tokio::time::Instant::now()
        + (REFRESH_LEASE + chrono::Duration::seconds(5))
            .to_std()
            .unwrap_or_default();
    loop {
        let now = credence_store::now();
        let until = now + REFRESH_LEASE;
        if ctx
            .store
            .db()
            .await?
            .claim_refresh_lease(id, now, until)
            .await?
        {
            return Ok(until);
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(Error::Conflict(format!(
                "connection {id} is being refreshed elsewhere; try again"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The refresh itself, under the lease.
async fn refresh_leased(ctx: &Context, id: i64, force: bool) -> Result<RefreshOutcome> {
    let not_found = || Error::NotFound(format!("connection {id} not found"));
    let mut db = ctx.store.db().await?;
    let connection = db.get_connection(id).await?.ok_or_else(not_found)?;
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
    let (app, version) = super::connections::app_of(ctx, &connection)?;
    let oauth = oauth2_of(version)?;
    let secret = connection
        .secret_id
        .clone()
        .ok_or_else(|| Error::Conflict(format!("connection {id} holds no tokens")))?;
    let read = db
        .get_secret(&secret)
        .await?
        .ok_or_else(|| Error::Conflict(format!("connection {id} holds no tokens")))?;
    drop(db);
    let tokens = tokens_from(ctx, &connection, &secret, &read.sealed)?;
    let now = ctx.clock.now();
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
    // The copy put into the form is a SecretString: zeroized when dropped.
    let Some(refresh_token) = tokens
        .get("refresh_token")
        .map(|token| SecretString::from(token.to_string()))
    else {
        if expiring {
            let reason = format!(
                "{} gave no refresh token and the access token expired",
                app.label
            );
            return write_refusal(ctx, &connection, &secret, &read.sealed, reason).await;
        }
        // Nothing to refresh with, and nothing expiring: the token stands.
        return Ok(RefreshOutcome::StillValid);
    };
    let client = client_for(ctx, app, tokens.own_client())?;
    let url = endpoint(app, "token", &oauth.token_url)
        .await
        .map_err(Error::Conflict)?;
    let form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose_secret()),
    ];
    // The connection's tokens (not its expiry or token type) must not come
    // back in a refusal's reason either.
    let held: Vec<&str> = tokens
        .0
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "expires_at" | "token_type"))
        .map(|(_, value)| value.expose_secret())
        .collect();
    let outcome = match token_request(ctx, app, oauth, &client, url, form, &held).await {
        Ok(body) => {
            token_values(app, oauth, &body, ctx.clock.now()).map_err(TokenError::Unavailable)
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok(mut values) => {
            // RFC 6749 §6: without a new refresh token the old one stays good.
            if !values.contains_key("refresh_token") {
                values.insert("refresh_token".into(), refresh_token);
            }
            // Fields the response does not repeat (e.g. an id token field, the
            // connection's own client) stay as they were.
            for (name, value) in tokens.0 {
                if name != "expires_at" {
                    values.entry(name).or_insert(value);
                }
            }
            let new = Tokens(values);
            let mut tx = ctx.store.begin().await?;
            if !unchanged(&mut tx, id, &secret, &read.sealed).await? {
                return Ok(RefreshOutcome::StillValid);
            }
            tx.replace_secret(
                &secret,
                seal_tokens(ctx, &new, &connection, &secret)?.as_str(),
            )
            .await?;
            tx.record_refresh(id, new.expires_at()).await?;
            tx.commit().await?;
            Ok(RefreshOutcome::Refreshed)
        }
        Err(TokenError::Refused(reason)) => {
            write_refusal(ctx, &connection, &secret, &read.sealed, reason).await
        }
        Err(TokenError::Unavailable(reason)) => {
            let after = credence_store::now() + backoff(connection.refresh_failures + 1);
            let mut tx = ctx.store.begin().await?;
            tx.record_refresh_outage(id, after).await?;
            tx.commit().await?;
            Err(Error::Conflict(format!(
                "could not refresh connection {id}: {reason}; Credence tries again after {}",
                after.to_rfc3339()
            )))
        }
    }
}

/// Opens tokens read as `sealed` from secret `secret` of `connection`.
fn tokens_from(
    ctx: &Context,
    connection: &Connection,
    secret: &str,
    sealed: &str,
) -> Result<Tokens> {
    super::secrets::open_connection_values(&ctx.vault, connection, secret, sealed).map(Tokens)
}

/// Inside `tx`: holds connection `id` and answers whether its secret is still
/// what the refresh read (`sealed`). When not — a reauthorization stored new
/// tokens, or the connection is gone — the refresh's outcome is stale.
async fn unchanged(
    tx: &mut credence_store::Db,
    id: i64,
    secret: &str,
    sealed: &str,
) -> Result<bool> {
    if tx.lock_connection(id).await?.is_none() {
        return Ok(false);
    }
    Ok(tx
        .get_secret(secret)
        .await?
        .is_some_and(|stored| stored.sealed == sealed))
}

/// Writes a definitive refusal, unless the tokens changed meanwhile.
async fn write_refusal(
    ctx: &Context,
    connection: &Connection,
    secret: &str,
    sealed: &str,
    reason: String,
) -> Result<RefreshOutcome> {
    let mut tx = ctx.store.begin().await?;
    // The credentials before the connection: the order of every other writer
    // (delete-remote, reauthorization and request deletion hold a credential,
    // then destroy its connection), so that none waits on another in a circle.
    let using = tx.lock_credentials_using_connection(connection.id).await?;
    if !unchanged(&mut tx, connection.id, secret, sealed).await? {
        return Ok(RefreshOutcome::StillValid);
    }
    invalidate(ctx, &mut tx, connection, using, &reason).await?;
    tx.commit().await?;
    Ok(RefreshOutcome::Refused { reason })
}

/// A definitive refusal (inside the caller's transaction): the connection is
/// `invalid`, and so is every authorized credential using it (`using`, held by
/// the caller), audited, with both the requester and the recipient told.
async fn invalidate(
    ctx: &Context,
    tx: &mut credence_store::Db,
    connection: &credence_store::Connection,
    using: Vec<RequestedCredential>,
    reason: &str,
) -> Result<()> {
    tx.set_connection_state(connection.id, "invalid").await?;
    let actor = super::audit::Actor::system();
    for credential in using {
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
            let client = client_for(ctx, app, tokens.own_client()).map_err(|_| ())?;
            let mut form = vec![("token", token), ("token_type_hint", hint)];
            let mut request = ctx.http.post(url);
            match oauth.client_auth {
                ClientAuth::Basic => {
                    request = request.header(
                        reqwest::header::AUTHORIZATION,
                        basic_credentials(&client).map_err(|_| ())?,
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

/// Revokes, after the commit, what [`tokens_to_revoke`] kept. The calls run
/// in a task of their own, which the caller waits for: a request answered
/// 408 (or a client gone) meanwhile must not cut a revocation short.
pub async fn revoke_all_at_provider(ctx: &Context, all: Vec<ToRevoke>) {
    let ctx = ctx.clone();
    let revoking = tokio::spawn(async move {
        for ToRevoke { connection, tokens } in all {
            let app_key = connection.app_key.clone();
            revoke_at_provider(&ctx, &app_key, tokens, &connection).await;
        }
    });
    if let Err(error) = revoking.await {
        tracing::error!(error = %error, "revocation at the provider stopped");
    }
}

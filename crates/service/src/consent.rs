//! Sending a browser to an app's consent page (RFC 6749 authorization-code
//! flow, RFC 7636 PKCE S256) and exchanging what it brings back.
//!
//! [`start`] stores a flow (`oauth_flows`: the state only as a hash, the PKCE
//! verifier and any own client sealed and bound to the row, ten minutes to
//! live) for one of four purposes ([`FlowFor`]): authorizing or reauthorizing
//! a requested credential, adding a team's own connection, or renewing one in
//! place; and answers the provider's consent URL. When the browser comes back,
//! `callback` hands the owner of the flow's purpose a [`Consented`], whose
//! [`Consented::exchange`] trades the code for tokens.
//!
//! Client ids and secrets come from configuration, never from the catalog; a
//! connection may bring its own client ("advanced settings"), whose secret is
//! sealed with its tokens. No code or token ever reaches a message or a log.

use super::{apps, random_token, secrets, token_hash, Context, Error, Result};
use credence_catalog::{App, AppVersion, OAuth2};
use credence_domain::{RequestId, TeamId};
use credence_provider::{self as provider, FieldValues, OAuthClient};
use credence_store::{Connection, NewOAuthFlow, RequestedCredential, User};
use secrecy::{ExposeSecret, SecretString};

/// Where the provider sends the browser back, under the public URL.
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// How long a consent page may stay open before its flow is refused.
pub const FLOW_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);

/// The callback URL the provider sends the browser back to.
pub fn redirect_uri(ctx: &Context) -> String {
    format!("{}{CALLBACK_PATH}", ctx.public_url)
}

/// What a flow is for, with what its callback needs.
pub enum FlowFor<'a> {
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
pub struct ConnectTarget {
    pub name: String,
    pub app_key: String,
    pub app_version: i64,
    /// JSON array of module keys.
    pub modules: String,
    /// JSON array of the scopes asked for.
    pub scopes: String,
}

/// Starts a flow (the caller has checked who may) and answers the provider's
/// authorize URL: the scopes asked for, a 256-bit single-use state kept only as
/// a hash, PKCE S256 with the verifier sealed to the flow's row.
pub async fn start(
    ctx: &Context,
    caller: &User,
    app: &App,
    version: &AppVersion,
    purpose: FlowFor<'_>,
) -> Result<String> {
    let oauth = apps::oauth2_of(version)?;
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
            (
                apps::scope_list(&credential.scopes),
                apps::client_of(ctx, app)?.clone(),
            )
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
                    &secrets::flow_client_context(&flow),
                )?;
                new.client_sealed = Some(sealed.as_str().to_string());
            }
            (
                apps::scope_list(&target.scopes),
                apps::client_for(ctx, app, client.clone())?,
            )
        }
        FlowFor::Connection { connection } => {
            new.purpose = "reconnect";
            new.connection_id = Some(connection.id);
            let tokens =
                secrets::read_connection_values(&mut ctx.store.db().await?, &ctx.vault, connection)
                    .await?;
            let own = tokens.as_ref().and_then(FieldValues::own_client);
            (
                apps::scope_list(&connection.scopes),
                apps::client_for(ctx, app, own)?,
            )
        }
    };
    let state = random_token();
    let verifier = oauth.pkce.then(random_token);
    if let Some(verifier) = &verifier {
        new.verifier_sealed = Some(
            ctx.vault
                .seal_str(
                    &SecretString::from(verifier.clone()),
                    &secrets::verifier_context(&flow),
                )?
                .as_str()
                .to_string(),
        );
    }
    let url = provider::oauth::authorize_url(
        app,
        oauth,
        provider::oauth::Consent {
            client: &client,
            redirect_uri: &redirect_uri(ctx),
            scopes: &scopes,
            state: &state,
            verifier: verifier.as_deref(),
        },
    )
    .await
    .map_err(Error::Conflict)?;
    new.state_hash = token_hash(&state);
    let mut tx = ctx.store.begin().await?;
    tx.insert_oauth_flow(&new).await?;
    tx.commit().await?;
    Ok(url)
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

/// What came back with the browser, and what the flow kept for the exchange.
pub struct Consented {
    pub params: CallbackParams,
    pub verifier: Option<SecretString>,
    /// The client a new connection brought, kept (sealed) in its flow.
    pub own_client: Option<OAuthClient>,
}

impl Consented {
    /// The tokens and granted scopes, or the reason there are none (the
    /// provider's refusal, or the token endpoint's), fit to show.
    pub async fn exchange(
        &self,
        ctx: &Context,
        app: &App,
        oauth: &OAuth2,
        client: &OAuthClient,
        requested: &[String],
    ) -> Result<(FieldValues, Vec<String>), String> {
        if let Some(error) = &self.params.error {
            let secrets = [
                self.params.code.as_ref().map(|c| c.expose_secret()),
                self.verifier.as_ref().map(|v| v.expose_secret()),
                Some(client.client_secret.expose_secret()),
            ];
            let secrets: Vec<&str> = secrets.into_iter().flatten().collect();
            return Err(provider::oauth::refusal(
                app,
                error,
                self.params.error_description.as_deref(),
                &secrets,
            ));
        }
        let Some(code) = &self.params.code else {
            return Err(format!("{} sent neither a code nor an error", app.label));
        };
        provider::oauth::exchange(
            &ctx.http,
            app,
            oauth,
            client,
            &redirect_uri(ctx),
            code,
            self.verifier.as_ref(),
            requested,
            ctx.clock.now(),
        )
        .await
    }
}

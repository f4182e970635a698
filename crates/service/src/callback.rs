//! The provider sent the browser back (`/oauth/callback`): the flow is found
//! by its state, checked against the browser's person, spent once, and handed
//! to the owner of its purpose — a requested credential
//! ([`credentials::finish_consent`]) or a team's connection, new or renewed
//! ([`team_connections::finish_new`], [`team_connections::finish_renewal`]).

use super::consent::{ConnectTarget, Consented};
use super::{access, credentials, secrets, team_connections, token_hash, Context, Error, Result};
use credence_domain::{CredentialId, TeamId};
use credence_provider::OAuthClient;
use credence_store::User;
use credence_vault::Sealed;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;

pub use super::consent::{CallbackParams, Finished};

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
            &secrets::verifier_context(&flow.id),
        )?),
        None => None,
    };
    let own_client = match &flow.client_sealed {
        Some(sealed) => {
            let plain = ctx.vault.open_string(
                &Sealed::from_stored(sealed.clone()),
                &secrets::flow_client_context(&flow.id),
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
    let consented = Consented {
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
                access::credential(&mut ctx.store.db().await?, caller, id).await?;
            spend(ctx, &flow.id).await?;
            credentials::finish_consent(
                ctx,
                caller,
                &credential,
                &request,
                flow.purpose == "reauthorize",
                consented,
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
            team_connections::finish_new(ctx, caller, team, target, consented).await
        }
        "reconnect" => {
            let id = flow.connection_id.ok_or_else(|| {
                Error::Internal(anyhow::anyhow!("flow {} names no connection", flow.id))
            })?;
            spend(ctx, &flow.id).await?;
            team_connections::finish_renewal(ctx, caller, id, consented).await
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

//! The actions on one requested credential (SPEC §4.1): the recipient
//! authorizes, declines, revokes and reauthorizes; the requester deletes the
//! remote connection and asks for reauthorization. Every action is checked by
//! the domain's state machine, guarded in SQL, audited and notified, in one
//! transaction.

use super::access::{self, Viewer};
use super::audit::{self, Actor, Event};
use super::checks::{self, Verdict};
use super::connections::{self, ConnectionSpec};
use super::consent::{self, Consented, FlowFor};
use super::endings::{self, Ending};
use super::notices::{event, requester_email, tell};
use super::{apps, Context, Error, Result};
use credence_catalog::{App, AppVersion, AuthKind};
use credence_domain::{CredentialAction, CredentialId, DeclineReason, ValidationError};
use credence_provider::{call, FieldValues, SecretJson};
use credence_store::{CredentialChange, CredentialRequest, RequestedCredential, User};
use serde_json::json;

/// What an authorize call led to.
#[derive(Debug)]
pub enum Authorization {
    /// The entered values were verified and sealed: the credential is authorized.
    Authorized(Box<RequestedCredential>),
    /// An OAuth 2.0 app: the recipient's browser goes to this consent page, and
    /// the provider sends it back to `/oauth/callback` (see [`super::callback`]).
    Redirect(String),
}

/// The recipient authorizes (or reauthorizes) with the app's fields. The values
/// are verified through the app's verify operation first; a refusal leaves the
/// credential `invalid` with the reason and answers `Err(Invalid)` naming it.
/// An OAuth 2.0 app answers with the provider's consent page instead.
pub async fn authorize(
    ctx: &Context,
    caller: &User,
    id: CredentialId,
    data: Option<SecretJson>,
    reauthorize: bool,
) -> Result<Authorization> {
    let action = if reauthorize {
        CredentialAction::Reauthorize
    } else {
        CredentialAction::Authorize
    };
    let (credential, request, viewer) =
        access::credential(&mut ctx.store.db().await?, caller, id).await?;
    access::require_recipient(
        viewer,
        if reauthorize {
            "reauthorize"
        } else {
            "authorize"
        },
    )?;
    if request
        .expires_at
        .is_some_and(|at| at <= chrono::Utc::now())
    {
        return Err(Error::Conflict(format!(
            "request {} expired; ask the requester for a new one",
            request.id
        )));
    }
    credential
        .state
        .apply(action)
        .map_err(|e| Error::Conflict(e.to_string()))?;
    let (app, version) = apps::of_credential(ctx, &credential)?;
    if version.auth.kind() == AuthKind::Oauth2 {
        let purpose = FlowFor::Credential {
            credential: &credential,
            reauthorize,
        };
        let url = consent::start(ctx, caller, app, version, purpose).await?;
        return Ok(Authorization::Redirect(url));
    }
    let values = apps::parse_values(version, data, "data.")?;
    let verified = call::verify(&ctx.http, app, version, &values).await;
    match verified {
        Err(reason) => {
            record_failure(ctx, caller, &credential, &request, &reason).await?;
            Err(Error::Invalid(vec![ValidationError::new(
                "data",
                format!("the credentials were not accepted: {reason}"),
            )]))
        }
        Ok(()) => {
            let authorized = record_success(
                ctx,
                caller,
                &credential,
                &request,
                Success {
                    app,
                    version,
                    reauthorize,
                    values: &values,
                    scopes: &credential.scopes,
                },
            )
            .await?;
            Ok(Authorization::Authorized(Box::new(authorized)))
        }
    }
}

/// A requested credential's flow came back: `authorized` with the sealed
/// tokens, or `invalid` with the reason.
pub async fn finish_consent(
    ctx: &Context,
    caller: &User,
    credential: &RequestedCredential,
    request: &credence_store::CredentialRequest,
    reauthorize: bool,
    consented: Consented,
) -> Result<()> {
    let action = if reauthorize {
        CredentialAction::Reauthorize
    } else {
        CredentialAction::Authorize
    };
    if let Err(error) = credential.state.apply(action) {
        return Err(Error::Conflict(error.to_string()));
    }
    let (app, version) = apps::of_credential(ctx, credential)?;
    let oauth = apps::oauth2_of(version)?;
    let client = apps::client_of(ctx, app)?;
    let requested = apps::scope_list(&credential.scopes);
    match consented
        .exchange(ctx, app, oauth, client, &requested)
        .await
    {
        Err(reason) => {
            record_failure(ctx, caller, credential, request, &reason).await?;
        }
        Ok((values, granted)) => {
            let scopes =
                serde_json::to_string(&granted).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
            record_success(
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

/// Moves the credential to `invalid` with `reason`, audited, in one
/// transaction. A refusal after a decline or revoke leaves the recipient's
/// decision as it was (nothing is written); the recipient is only told why.
async fn record_failure(
    ctx: &Context,
    caller: &User,
    credential: &RequestedCredential,
    request: &CredentialRequest,
    reason: &str,
) -> Result<()> {
    if credential
        .state
        .apply(CredentialAction::AuthorizationFailed)
        .is_err()
    {
        return Ok(());
    }
    let mut tx = ctx.store.begin().await?;
    let failed = tx
        .transition_credential(
            credential.id,
            CredentialAction::AuthorizationFailed,
            &CredentialChange {
                invalid_reason: Some(reason.to_string()),
                ..Default::default()
            },
        )
        .await?;
    event(
        &mut tx,
        &Actor::user(caller),
        request,
        &failed,
        "credential.invalidated",
        json!({ "reason": reason }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What a successful authorization stores.
struct Success<'a> {
    pub app: &'a App,
    pub version: &'a AppVersion,
    pub reauthorize: bool,
    /// Sealed as the connection's secret.
    pub values: &'a FieldValues,
    /// The connection's scopes (JSON array): what was granted.
    pub scopes: &'a str,
}

/// In one transaction: seals the values into a new connection, moves the
/// credential to `authorized` (guarded), destroys the connection it replaces,
/// writes the audit entries and tells the requester (and, on reauthorization,
/// the recipient).
async fn record_success(
    ctx: &Context,
    caller: &User,
    credential: &RequestedCredential,
    request: &CredentialRequest,
    success: Success<'_>,
) -> Result<RequestedCredential> {
    let Success {
        app,
        version,
        reauthorize,
        values,
        scopes,
    } = success;
    let id = credential.id;
    let action = if reauthorize {
        CredentialAction::Reauthorize
    } else {
        CredentialAction::Authorize
    };
    let actor = Actor::user(caller);
    let mut tx = ctx.store.begin().await?;
    // The connection replaced is the one the credential holds now, under the
    // lock, not the one read before the (slow) verify or consent: another
    // authorization may have replaced that one meanwhile, and its connection
    // would be left named by nothing.
    let replaced = tx
        .lock_credential(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("credential {id} not found")))?
        .connection_id;
    let spec = ConnectionSpec {
        organization: request.organization_id,
        team: request.team_id,
        provided_by: caller.id,
        name: &credential.connection_name,
        app_key: &app.key,
        app_version: credential.app_version,
        auth_kind: version.auth.kind().as_str(),
        modules: &credential.modules,
        scopes,
        oauth_client_id: None,
    };
    let connection = connections::create(&mut tx, &ctx.vault, spec, values).await?;
    let authorized = tx
        .transition_credential(
            id,
            action,
            &CredentialChange {
                connection_id: Some(Some(connection)),
                ..Default::default()
            },
        )
        .await?;
    if let Some(old) = replaced {
        connections::destroy(&mut tx, old).await?;
    }
    let name = if reauthorize {
        "credential.reauthorized"
    } else {
        "credential.authorized"
    };
    event(
        &mut tx,
        &actor,
        request,
        &authorized,
        name,
        json!({ "connectionId": connection }),
    )
    .await?;
    audit::record(&mut tx, &actor, Event {
        organization: request.organization_id,
        team: Some(request.team_id),
        name: "connection.created",
        target_kind: "connection",
        target_id: connection.to_string(),
        details: json!({ "app": app.key, "name": credential.connection_name, "credentialId": id }),
    })
    .await?;
    let requester = requester_email(&mut tx, request).await?;
    tell(
        ctx,
        &mut tx,
        name,
        &requester,
        request,
        &authorized,
        json!({}),
    )
    .await?;
    if reauthorize {
        tell(
            ctx,
            &mut tx,
            name,
            &request.recipient_email,
            request,
            &authorized,
            json!({}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(authorized)
}

/// The recipient declines, with an optional reason (the UI asks for one); an
/// authorized credential's connection is destroyed.
pub async fn decline(
    ctx: &Context,
    caller: &User,
    id: CredentialId,
    reason: Option<&str>,
) -> Result<RequestedCredential> {
    let reason = DeclineReason::parse_optional("reason", reason)?;
    let mut tx = ctx.store.begin().await?;
    let (credential, request, viewer) = access::credential_for_update(&mut tx, caller, id).await?;
    access::require_recipient(viewer, "decline")?;
    let requester = requester_email(&mut tx, &request).await?;
    let ending = Ending {
        action: CredentialAction::Decline,
        decline_reason: reason.given().map(str::to_string),
        event: "credential.declined",
        details: json!({ "reason": reason.shown(), "connectionId": credential.connection_id }),
        tell: &requester,
    };
    endings::end_for_credential(ctx, tx, caller, &request, &credential, ending).await
}

/// The recipient revokes: the connection stops working at once and its secret
/// is destroyed; the request's other apps are untouched.
pub async fn revoke(ctx: &Context, caller: &User, id: CredentialId) -> Result<RequestedCredential> {
    let mut tx = ctx.store.begin().await?;
    let (credential, request, viewer) = access::credential_for_update(&mut tx, caller, id).await?;
    access::require_recipient(viewer, "revoke")?;
    let requester = requester_email(&mut tx, &request).await?;
    let ending = Ending {
        action: CredentialAction::Revoke,
        decline_reason: None,
        event: "credential.revoked",
        details: json!({ "connectionId": credential.connection_id }),
        tell: &requester,
    };
    endings::end_for_credential(ctx, tx, caller, &request, &credential, ending).await
}

/// The requester destroys the real connection; the credential is pending again.
pub async fn delete_remote(
    ctx: &Context,
    caller: &User,
    id: CredentialId,
) -> Result<RequestedCredential> {
    let mut tx = ctx.store.begin().await?;
    let (credential, request, viewer) = access::credential_for_update(&mut tx, caller, id).await?;
    if viewer == Viewer::Recipient {
        return Err(Error::Forbidden("only the requesting team may delete the remote connection; as the recipient, revoke it".into()));
    }
    access::require_sender(&mut tx, caller, &request).await?;
    let ending = Ending {
        action: CredentialAction::DeleteRemote,
        decline_reason: None,
        event: "credential.delete_remote",
        details: json!({ "connectionId": credential.connection_id }),
        tell: &request.recipient_email,
    };
    endings::end_for_credential(ctx, tx, caller, &request, &credential, ending).await
}

/// The requester asks the recipient to reauthorize. Credence tests the
/// connection first: if it still works, nothing is sent and the answer is a
/// conflict saying so.
pub async fn request_reauthorization(
    ctx: &Context,
    caller: &User,
    id: CredentialId,
) -> Result<RequestedCredential> {
    let (credential, request, viewer) =
        access::credential(&mut ctx.store.db().await?, caller, id).await?;
    if viewer == Viewer::Recipient {
        return Err(Error::Forbidden(
            "only the requesting team may ask for reauthorization".into(),
        ));
    }
    access::require_sender(&mut ctx.store.db().await?, caller, &request).await?;
    credential
        .state
        .apply(CredentialAction::RequestReauthorization)
        .map_err(|e| Error::Conflict(e.to_string()))?;
    let (_, version) = apps::of_credential(ctx, &credential)?;
    let connection = match credential.connection_id {
        Some(connection) => ctx.store.db().await?.get_connection(connection).await?,
        None => None,
    };
    let failure = match &connection {
        Some(connection) => match checks::try_connection(ctx, connection).await? {
            Verdict::Works => None,
            Verdict::Fails(reason) => Some(reason),
        },
        None => Some("there is no connection".to_string()),
    };
    // An OAuth refusal has already made the credential `invalid` (and told
    // both sides), so it is read again before asking for reauthorization.
    let credential = if failure.is_some() && version.auth.kind() == AuthKind::Oauth2 {
        ctx.store
            .db()
            .await?
            .get_credential(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("credential {id} not found")))?
    } else {
        credential
    };
    if failure.is_none() && credential.state == credence_domain::CredentialState::Authorized {
        return Err(Error::Conflict(
            "connection is valid; nothing was sent".into(),
        ));
    }
    let mut tx = ctx.store.begin().await?;
    // What was tested must still be what the credential holds: a
    // reauthorization that committed meanwhile replaced the connection, and
    // the new one is not in question.
    let held = tx
        .lock_credential(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("credential {id} not found")))?;
    if held.connection_id != credential.connection_id {
        return Err(Error::Conflict(format!(
            "credential {id} was reauthorized meanwhile; its new connection was not tested"
        )));
    }
    let asked = tx
        .transition_credential(
            id,
            CredentialAction::RequestReauthorization,
            &CredentialChange {
                connection_id: None,
                ..Default::default()
            },
        )
        .await?;
    if let Some(connection) = credential.connection_id {
        tx.set_connection_state(connection, "invalid").await?;
    }
    let reason = failure.unwrap_or_else(|| "the connection was marked invalid".into());
    event(
        &mut tx,
        &Actor::user(caller),
        &request,
        &asked,
        "credential.reauthorization_requested",
        json!({ "reason": reason }),
    )
    .await?;
    tell(
        ctx,
        &mut tx,
        "credential.reauthorization_requested",
        &request.recipient_email.clone(),
        &request,
        &asked,
        json!({ "reason": reason }),
    )
    .await?;
    tx.commit().await?;
    Ok(asked)
}

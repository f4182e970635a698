//! The actions on one requested credential (SPEC §4.1): the recipient
//! authorizes, declines, revokes and reauthorizes; the requester deletes the
//! remote connection and asks for reauthorization. Every action is checked by
//! the domain's state machine, guarded in SQL, audited and notified, in one
//! transaction.

use super::audit::{self, Actor, Event};
use super::connections::{self, ConnectionSpec};
use super::requests::{self, Viewer};
use super::secret_json::SecretJson;
use super::upstream::{self, FieldValues};
use super::{Context, Error, Result};
use credence_catalog::{App, AppVersion, AuthKind};
use credence_domain::{CredentialAction, CredentialId, DeclineReason, ValidationError};
use credence_store::{CredentialChange, CredentialRequest, Db, RequestedCredential, User};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Longest value accepted for one field.
pub const FIELD_VALUE_MAX: usize = 4096;

/// The credential and its request, if the caller may see them.
pub async fn visible(
    db: &mut Db,
    caller: &User,
    id: CredentialId,
) -> Result<(RequestedCredential, CredentialRequest, Viewer)> {
    let credential = db.get_credential(id).await?;
    visible_as(db, caller, id, credential).await
}

/// Like [`visible`], inside a transaction that holds the credential until it
/// ends (`Db::lock_credential`): an action that destroys the credential's
/// connection destroys the one it names at commit, never one a concurrent
/// reauthorization has just replaced (that one would be left named by
/// nothing, its recipient unable to revoke it).
async fn visible_for_update(
    tx: &mut Db,
    caller: &User,
    id: CredentialId,
) -> Result<(RequestedCredential, CredentialRequest, Viewer)> {
    let credential = tx.lock_credential(id).await?;
    visible_as(tx, caller, id, credential).await
}

async fn visible_as(
    db: &mut Db,
    caller: &User,
    id: CredentialId,
    credential: Option<RequestedCredential>,
) -> Result<(RequestedCredential, CredentialRequest, Viewer)> {
    let not_found = || Error::NotFound(format!("credential {id} not found"));
    let credential = credential.ok_or_else(not_found)?;
    let (request, viewer) = requests::visible(db, caller, credential.request_id)
        .await
        .map_err(|error| match error {
            Error::NotFound(_) => not_found(),
            other => other,
        })?;
    Ok((credential, request, viewer))
}

fn require_recipient(viewer: Viewer, action: &str) -> Result<()> {
    match viewer {
        Viewer::Recipient => Ok(()),
        Viewer::Sender => Err(Error::Forbidden(format!(
            "only the recipient may {action} this credential"
        ))),
    }
}

pub(super) fn app_of<'a>(
    ctx: &'a Context,
    credential: &RequestedCredential,
) -> Result<(&'a App, &'a AppVersion)> {
    let app = ctx.catalog.get(&credential.app_key).ok_or_else(|| {
        Error::Conflict(format!(
            "the app {} is no longer in the catalog",
            credential.app_key
        ))
    })?;
    let version = app.version(credential.app_version as u32).ok_or_else(|| {
        Error::Conflict(format!(
            "version {} of {} is no longer in the catalog",
            credential.app_version, app.key
        ))
    })?;
    Ok((app, version))
}

/// Checks the entered values against the app's fields: every field given,
/// nothing else, each at most 4096 characters. The values come out as
/// `SecretString`s; `data`, with the copies serde_json made, is zeroized here.
pub(super) fn parse_values(
    version: &AppVersion,
    data: Option<SecretJson>,
    prefix: &str,
) -> Result<FieldValues> {
    let Some(data) = data else {
        return Err(ValidationError::new(
            "data",
            "data is required: an object with the app's fields",
        )
        .into());
    };
    let mut problems = Vec::new();
    let mut values = BTreeMap::new();
    for field in version.auth.fields() {
        match data.get(&field.name) {
            Some(Value::String(value)) if !value.trim().is_empty() => {
                let length = value.chars().count();
                if length > FIELD_VALUE_MAX {
                    problems.push(ValidationError::new(
                        format!("{prefix}{}", field.name),
                        format!(
                            "{} is {length} characters; the limit is {FIELD_VALUE_MAX}",
                            field.name
                        ),
                    ));
                } else {
                    values.insert(
                        field.name.clone(),
                        SecretString::from(value.trim().to_string()),
                    );
                }
            }
            Some(Value::String(_)) | None | Some(Value::Null) => {
                problems.push(ValidationError::new(
                    format!("{prefix}{}", field.name),
                    format!("{} ({}) is required", field.name, field.label),
                ))
            }
            Some(_) => problems.push(ValidationError::new(
                format!("{prefix}{}", field.name),
                format!("{} must be text", field.name),
            )),
        }
    }
    for name in data.keys() {
        if version.auth.field(name).is_none() {
            let known: Vec<&str> = version
                .auth
                .fields()
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            problems.push(ValidationError::new(
                format!("{prefix}{}", name.chars().take(64).collect::<String>()),
                format!(
                    "this app has no field {:?}; its fields are {}",
                    name.chars().take(64).collect::<String>(),
                    known.join(", ")
                ),
            ));
        }
    }
    if problems.is_empty() {
        Ok(FieldValues(values))
    } else {
        Err(Error::Invalid(problems))
    }
}

fn details(credential: &RequestedCredential, extra: Value) -> Value {
    let mut details = json!({ "requestId": credential.request_id, "app": credential.app_key });
    if let (Value::Object(base), Value::Object(extra)) = (&mut details, extra) {
        base.extend(extra);
    }
    details
}

async fn event(
    db: &mut Db,
    actor: &Actor,
    request: &CredentialRequest,
    credential: &RequestedCredential,
    name: &str,
    extra: Value,
) -> Result<()> {
    audit::record(
        db,
        actor,
        Event {
            organization: request.organization_id,
            team: Some(request.team_id),
            name,
            target_kind: "credential",
            target_id: credential.id.to_string(),
            details: details(credential, extra),
        },
    )
    .await
}

/// Queues a notification about `credential` to `email`.
async fn tell(
    ctx: &Context,
    db: &mut Db,
    kind: &str,
    email: &str,
    request: &CredentialRequest,
    credential: &RequestedCredential,
    extra: Value,
) -> Result<()> {
    let mut payload = json!({
        "requestId": request.id,
        "requestName": request.name,
        "credentialId": credential.id,
        "app": credential.app_key,
        "state": credential.state,
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut payload, extra) {
        base.extend(extra);
    }
    audit::notify(db, &ctx.vault, kind, email, payload).await
}

async fn requester_email(db: &mut Db, request: &CredentialRequest) -> Result<String> {
    Ok(db
        .get_user(request.requester_id)
        .await?
        .map(|u| u.email)
        .unwrap_or_default())
}

/// A connection stopped working (a definitive refusal at refresh): audits
/// `credential.invalidated` for the credential, already moved to `invalid`,
/// and tells both sides (`connection.invalid`), inside the caller's transaction.
pub(super) async fn connection_invalid(
    ctx: &Context,
    db: &mut Db,
    actor: &Actor,
    request: &CredentialRequest,
    credential: &RequestedCredential,
    connection: i64,
    reason: &str,
) -> Result<()> {
    event(
        db,
        actor,
        request,
        credential,
        "credential.invalidated",
        json!({ "reason": reason, "connectionId": connection }),
    )
    .await?;
    let requester = requester_email(db, request).await?;
    for to in [requester.as_str(), request.recipient_email.as_str()] {
        tell(
            ctx,
            db,
            "connection.invalid",
            to,
            request,
            credential,
            json!({ "reason": reason }),
        )
        .await?;
    }
    Ok(())
}

/// The team deleted a connection a recipient provided (inside the caller's
/// transaction, before the connection goes): each credential using it that
/// can be is moved back to `pending` as by delete-remote, audited, and the
/// recipient told. Answers the credentials moved.
pub(super) async fn connection_deleted(
    ctx: &Context,
    db: &mut Db,
    actor: &Actor,
    connection: i64,
) -> Result<Vec<CredentialId>> {
    let mut moved = Vec::new();
    // Held: a reauthorization that replaced the connection meanwhile keeps
    // its new one (the lock drops a credential that no longer names it).
    for credential in db.lock_credentials_using_connection(connection).await? {
        if credential
            .state
            .apply(CredentialAction::DeleteRemote)
            .is_err()
        {
            continue;
        }
        let Some(request) = db.get_request(credential.request_id).await? else {
            continue;
        };
        let changed = db
            .transition_credential(
                credential.id,
                CredentialAction::DeleteRemote,
                &CredentialChange {
                    connection_id: Some(None),
                    ..Default::default()
                },
            )
            .await?;
        let details = json!({ "connectionId": connection, "connectionDeleted": true });
        event(
            db,
            actor,
            &request,
            &changed,
            "credential.delete_remote",
            details.clone(),
        )
        .await?;
        tell(
            ctx,
            db,
            "credential.delete_remote",
            &request.recipient_email,
            &request,
            &changed,
            details,
        )
        .await?;
        moved.push(changed.id);
    }
    Ok(moved)
}

/// What an authorize call led to.
#[derive(Debug)]
pub enum Authorization {
    /// The entered values were verified and sealed: the credential is authorized.
    Authorized(Box<RequestedCredential>),
    /// An OAuth 2.0 app: the recipient's browser goes to this consent page, and
    /// the provider sends it back to `/oauth/callback` (see [`super::oauth`]).
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
    let (credential, request, viewer) = visible(&mut ctx.store.db().await?, caller, id).await?;
    require_recipient(
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
    let (app, version) = app_of(ctx, &credential)?;
    if version.auth.kind() == AuthKind::Oauth2 {
        let purpose = super::oauth::FlowFor::Credential {
            credential: &credential,
            reauthorize,
        };
        let url = super::oauth::start(ctx, caller, app, version, purpose).await?;
        return Ok(Authorization::Redirect(url));
    }
    let values = parse_values(version, data, "data.")?;
    let verified = upstream::verify(&ctx.http, app, version, &values).await;
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

/// Moves the credential to `invalid` with `reason`, audited, in one
/// transaction. A refusal after a decline or revoke leaves the recipient's
/// decision as it was (nothing is written); the recipient is only told why.
pub(super) async fn record_failure(
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
pub(super) struct Success<'a> {
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
pub(super) async fn record_success(
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

/// An action that ends a credential's connection (decline, revoke,
/// delete-remote): its audit event (also the notification's kind), what the
/// entry records, and whom to tell.
struct Ending<'a> {
    action: CredentialAction,
    decline_reason: Option<String>,
    event: &'a str,
    details: Value,
    tell: &'a str,
}

/// Applies an [`Ending`] in `tx`: the guarded transition, the connection and its
/// secret destroyed, the audit entry and the notification, committed together.
/// Tokens are revoked at the provider only after the commit, so that a failure
/// there never keeps the secret alive.
async fn end_connection(
    ctx: &Context,
    mut tx: Db,
    caller: &User,
    request: &CredentialRequest,
    credential: &RequestedCredential,
    ending: Ending<'_>,
) -> Result<RequestedCredential> {
    let change = CredentialChange {
        decline_reason: ending.decline_reason,
        connection_id: Some(None),
        ..Default::default()
    };
    let changed = tx
        .transition_credential(credential.id, ending.action, &change)
        .await?;
    let mut to_revoke = Vec::new();
    if let Some(connection) = credential.connection_id {
        to_revoke.extend(super::oauth::tokens_to_revoke(&mut tx, ctx, connection).await);
        connections::destroy(&mut tx, connection).await?;
    }
    event(
        &mut tx,
        &Actor::user(caller),
        request,
        &changed,
        ending.event,
        ending.details.clone(),
    )
    .await?;
    tell(
        ctx,
        &mut tx,
        ending.event,
        ending.tell,
        request,
        &changed,
        ending.details,
    )
    .await?;
    tx.commit().await?;
    super::oauth::revoke_all_at_provider(ctx, to_revoke).await;
    Ok(changed)
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
    let (credential, request, viewer) = visible_for_update(&mut tx, caller, id).await?;
    require_recipient(viewer, "decline")?;
    let requester = requester_email(&mut tx, &request).await?;
    let ending = Ending {
        action: CredentialAction::Decline,
        decline_reason: reason.given().map(str::to_string),
        event: "credential.declined",
        details: json!({ "reason": reason.shown(), "connectionId": credential.connection_id }),
        tell: &requester,
    };
    end_connection(ctx, tx, caller, &request, &credential, ending).await
}

/// The recipient revokes: the connection stops working at once and its secret
/// is destroyed; the request's other apps are untouched.
pub async fn revoke(ctx: &Context, caller: &User, id: CredentialId) -> Result<RequestedCredential> {
    let mut tx = ctx.store.begin().await?;
    let (credential, request, viewer) = visible_for_update(&mut tx, caller, id).await?;
    require_recipient(viewer, "revoke")?;
    let requester = requester_email(&mut tx, &request).await?;
    let ending = Ending {
        action: CredentialAction::Revoke,
        decline_reason: None,
        event: "credential.revoked",
        details: json!({ "connectionId": credential.connection_id }),
        tell: &requester,
    };
    end_connection(ctx, tx, caller, &request, &credential, ending).await
}

/// The requester destroys the real connection; the credential is pending again.
pub async fn delete_remote(
    ctx: &Context,
    caller: &User,
    id: CredentialId,
) -> Result<RequestedCredential> {
    let mut tx = ctx.store.begin().await?;
    let (credential, request, viewer) = visible_for_update(&mut tx, caller, id).await?;
    if viewer == Viewer::Recipient {
        return Err(Error::Forbidden("only the requesting team may delete the remote connection; as the recipient, revoke it".into()));
    }
    requests::require_sender_rights(&mut tx, caller, &request).await?;
    let ending = Ending {
        action: CredentialAction::DeleteRemote,
        decline_reason: None,
        event: "credential.delete_remote",
        details: json!({ "connectionId": credential.connection_id }),
        tell: &request.recipient_email,
    };
    end_connection(ctx, tx, caller, &request, &credential, ending).await
}

/// Opens a connection's stored field values (only to call the app).
async fn connection_values(ctx: &Context, connection: i64) -> Result<Option<FieldValues>> {
    let mut db = ctx.store.db().await?;
    let Some(found) = db.get_connection(connection).await? else {
        return Ok(None);
    };
    Ok(
        super::secrets::read_connection_values(&mut db, &ctx.vault, &found)
            .await?
            .map(FieldValues),
    )
}

/// The requester asks the recipient to reauthorize. Credence tests the
/// connection first: if it still works, nothing is sent and the answer is a
/// conflict saying so.
pub async fn request_reauthorization(
    ctx: &Context,
    caller: &User,
    id: CredentialId,
) -> Result<RequestedCredential> {
    let (credential, request, viewer) = visible(&mut ctx.store.db().await?, caller, id).await?;
    if viewer == Viewer::Recipient {
        return Err(Error::Forbidden(
            "only the requesting team may ask for reauthorization".into(),
        ));
    }
    requests::require_sender_rights(&mut ctx.store.db().await?, caller, &request).await?;
    credential
        .state
        .apply(CredentialAction::RequestReauthorization)
        .map_err(|e| Error::Conflict(e.to_string()))?;
    let (app, version) = app_of(ctx, &credential)?;
    // An OAuth connection is tested by refreshing its token. A refusal has
    // already made the credential `invalid` (and told both sides), so it is
    // read again before asking for reauthorization.
    let (credential, oauth_failure) = match credential.connection_id {
        Some(connection) if version.auth.kind() == AuthKind::Oauth2 => {
            match super::oauth::refresh_with(ctx, connection, true).await? {
                super::oauth::RefreshOutcome::Refused { reason } => {
                    let again = ctx
                        .store
                        .db()
                        .await?
                        .get_credential(id)
                        .await?
                        .ok_or_else(|| Error::NotFound(format!("credential {id} not found")))?;
                    (again, Some(reason))
                }
                _ => (credential, None),
            }
        }
        _ => (credential, None),
    };
    let failure = match credential.connection_id {
        _ if oauth_failure.is_some() => oauth_failure,
        Some(connection) if version.auth.kind() != AuthKind::Oauth2 => {
            match connection_values(ctx, connection).await? {
                Some(values) => upstream::verify(&ctx.http, app, version, &values)
                    .await
                    .err(),
                None => Some("the connection has no stored credentials".to_string()),
            }
        }
        Some(_) => None,
        None => Some("there is no connection".to_string()),
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

//! What a credential's change leaves behind besides itself: the audit entry
//! and the notifications to the requester and the recipient, written in the
//! change's transaction (the outbox is sealed; see `audit`).

use super::audit::{self, Actor, Event};
use super::{Context, Result};
use credence_store::{CredentialRequest, Db, RequestedCredential};
use serde_json::{json, Value};

/// What a credential's audit entry records: its request and app, and `extra`.
fn details(credential: &RequestedCredential, extra: Value) -> Value {
    let mut details = json!({ "requestId": credential.request_id, "app": credential.app_key });
    if let (Value::Object(base), Value::Object(extra)) = (&mut details, extra) {
        base.extend(extra);
    }
    details
}

/// Audits `name` about `credential` (inside the caller's transaction).
pub async fn event(
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
pub async fn tell(
    ctx: &Context,
    db: &mut Db,
    kind: &str,
    email: &str,
    request: &CredentialRequest,
    credential: &RequestedCredential,
    extra: Value,
) -> Result<()> {
    // Who asked and whom, so that the email can say it (`credence-jobs`).
    let requester = db.get_user(request.requester_id).await?;
    let app_label = ctx
        .catalog
        .get(&credential.app_key)
        .map(|app| app.label.clone())
        .unwrap_or_default();
    let mut payload = json!({
        "requestId": request.id,
        "requestName": request.name,
        "credentialId": credential.id,
        "app": credential.app_key,
        "appLabel": app_label,
        "state": credential.state,
        "requesterName": requester.as_ref().map(|u| u.name.as_str()),
        "requesterEmail": requester.as_ref().map(|u| u.email.as_str()),
        "recipientEmail": request.recipient_email,
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut payload, extra) {
        base.extend(extra);
    }
    audit::notify(
        db,
        &ctx.vault,
        Some(request.organization_id),
        kind,
        email,
        payload,
    )
    .await
}

/// Whom to tell on the requesting side: the person who sent the request.
pub async fn requester_email(db: &mut Db, request: &CredentialRequest) -> Result<String> {
    Ok(db
        .get_user(request.requester_id)
        .await?
        .map(|u| u.email)
        .unwrap_or_default())
}

/// A connection stopped working (a definitive refusal at refresh): audits
/// `credential.invalidated` for the credential, already moved to `invalid`,
/// and tells both sides (`connection.invalid`), inside the caller's transaction.
pub async fn connection_invalid(
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

//! Every audited change as a webhook message (SPEC §10): `audit::record`
//! hands each entry here, in the change's transaction, and one delivery row
//! is queued per enabled endpoint of the organization (or of the entry's
//! team) that chose the event. A change that rolls back queues nothing; the
//! job runner (`credence-jobs`, `webhooks.rs`) signs and sends them.
//!
//! The body follows the Standard Webhooks shape: `{"type", "timestamp",
//! "data"}`, the data being the audit entry (organization, team, actor,
//! target, details), which never holds a secret.

use super::Result;
use credence_domain::{OrganizationId, TeamId, UserId};
use credence_store::Db;
use serde_json::{json, Value};

/// The events an endpoint may choose (SPEC §4.5), besides `*` for all of
/// them. An event written by `audit::record` that is not listed here still
/// reaches the endpoints that chose `*`.
pub const EVENTS: &[&str] = &[
    "credential_request.created",
    "credential_request.deleted",
    "credential.authorized",
    "credential.declined",
    "credential.revoked",
    "credential.reauthorization_requested",
    "credential.reauthorized",
    "credential.delete_remote",
    "credential.invalidated",
    "connection.created",
    "connection.renamed",
    "connection.verified",
    "connection.reauthorized",
    "connection.revoked_at_provider",
    "connection.deleted",
    "feature.requested",
    "feature.granted",
    "member.invited",
    "member.joined_as_guest",
    "api_token.created",
    "api_token.deleted",
    "webhook.created",
    "webhook.updated",
    "webhook.secret_rotated",
    "webhook.deleted",
    "webhook.disabled",
    "two_factor.enabled",
    "two_factor.disabled",
    "two_factor.recovery_code_used",
    "two_factor.recovery_codes_regenerated",
    "two_factor.enforcement_changed",
];

/// One audited change, as the message tells it.
pub struct Entry<'a> {
    pub organization: OrganizationId,
    pub team: Option<TeamId>,
    pub event: &'a str,
    pub actor: Option<UserId>,
    pub actor_label: &'a str,
    pub target_kind: &'a str,
    pub target_id: &'a str,
    pub details: &'a Value,
}

/// The `webhook-id` of a new message: unique, the same for every attempt
/// and replay of it, so a receiver can drop what it already handled.
pub fn new_message_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// The JSON body of the message for `entry`.
pub fn body(entry: &Entry<'_>, at: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "type": entry.event,
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": {
            "organizationId": entry.organization.0,
            "teamId": entry.team.map(|team| team.0),
            "actor": { "userId": entry.actor.map(|user| user.0), "label": entry.actor_label },
            "target": { "kind": entry.target_kind, "id": entry.target_id },
            "details": entry.details,
        },
    })
}

/// Queues the message for `entry` to every enabled endpoint that wants it
/// (inside the caller's transaction); answers how many.
pub async fn enqueue(db: &mut Db, entry: &Entry<'_>) -> Result<usize> {
    let endpoints = db
        .webhook_endpoints_for_event(entry.organization, entry.team.map(|team| team.0))
        .await?;
    let wanted: Vec<_> = endpoints
        .into_iter()
        .filter(|endpoint| endpoint.wants(entry.event))
        .collect();
    if wanted.is_empty() {
        return Ok(0);
    }
    let message_id = new_message_id();
    let payload = body(entry, credence_store::now()).to_string();
    for endpoint in &wanted {
        db.insert_webhook_delivery(endpoint.id, &message_id, entry.event, &payload, None)
            .await?;
    }
    Ok(wanted.len())
}

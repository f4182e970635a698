//! Writing audit entries and notifications, always inside the caller's
//! transaction (SPEC §4.5, §10): if either cannot be written, the change does
//! not happen. Each entry is also queued for the webhook endpoints that want
//! it (`webhook_events`), in the same transaction.
//!
//! Notification payloads may carry links that act as keys (a request link, an
//! invitation), so the outbox keeps them sealed by the vault.

use super::Result;
use credence_domain::{OrganizationId, TeamId, UserId};
use credence_store::{Db, NewAuditEntry, OutboxMessage, User};
use credence_vault::{Sealed, Vault};
use serde_json::Value;

/// Who did something, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: Option<UserId>,
    pub label: String,
}

impl Actor {
    pub fn user(user: &User) -> Actor {
        Actor {
            user: Some(user.id),
            label: format!("{} <{}>", user.name, user.email),
        }
    }

    pub fn operator() -> Actor {
        Actor {
            user: None,
            label: "operator".into(),
        }
    }

    pub fn system() -> Actor {
        Actor {
            user: None,
            label: "credence".into(),
        }
    }
}

/// What changed, for the audit log.
pub struct Event<'a> {
    pub organization: OrganizationId,
    pub team: Option<TeamId>,
    pub name: &'a str,
    pub target_kind: &'a str,
    pub target_id: String,
    pub details: Value,
}

pub async fn record(db: &mut Db, actor: &Actor, event: Event<'_>) -> Result<()> {
    let details = event.details.to_string();
    db.insert_audit(&NewAuditEntry {
        organization: event.organization,
        team: event.team,
        actor: actor.user,
        actor_label: &actor.label,
        event: event.name,
        target_kind: event.target_kind,
        target_id: &event.target_id,
        details: &details,
    })
    .await?;
    // The same change, told to the webhook endpoints that want it.
    super::webhook_events::enqueue(
        db,
        &super::webhook_events::Entry {
            organization: event.organization,
            team: event.team,
            event: event.name,
            actor: actor.user,
            actor_label: &actor.label,
            target_kind: event.target_kind,
            target_id: &event.target_id,
            details: &event.details,
        },
    )
    .await?;
    Ok(())
}

/// The vault context of the payload of outbox row `id`: bound to its row, so
/// a payload copied into another row (even one for the same recipient) does
/// not open.
pub fn outbox_context(id: &str, kind: &str, recipient_email: &str) -> String {
    format!("outbox:{id}:{kind}:{}", recipient_email.to_lowercase())
}

/// The context payloads were sealed with before migration 0008 (scheme 1).
pub(super) fn legacy_outbox_context(kind: &str, recipient_email: &str) -> String {
    format!("outbox:{kind}:{}", recipient_email.to_lowercase())
}

/// Queues a notification for `recipient_email`; the payload is sealed to the
/// outbox row. `organization` is the one it belongs to (the request's, the
/// team's, the endpoint's): the web's local mailbox shows it to that
/// organization's owners and admins only.
pub async fn notify(
    db: &mut Db,
    vault: &Vault,
    organization: Option<OrganizationId>,
    kind: &str,
    recipient_email: &str,
    payload: Value,
) -> Result<()> {
    let plain = payload.to_string();
    db.insert_outbox(
        organization,
        kind,
        recipient_email,
        |id| -> Result<String> {
            let context = outbox_context(&id.to_string(), kind, recipient_email);
            Ok(vault.seal(plain.as_bytes(), &context)?.into_string())
        },
    )
    .await?;
    Ok(())
}

/// Opens the payload of an outbox message (for the worker that delivers it).
pub fn open_outbox(vault: &Vault, message: &OutboxMessage) -> Result<Value> {
    let context = outbox_context(
        &message.id.to_string(),
        &message.kind,
        &message.recipient_email,
    );
    let plain = vault.open(&Sealed::from_stored(message.payload.clone()), &context)?;
    serde_json::from_slice(secrecy::ExposeSecret::expose_secret(&plain)).map_err(|_| {
        super::Error::Internal(anyhow::anyhow!(
            "outbox message {} holds an unreadable payload",
            message.id
        ))
    })
}

//! Writing audit entries and notifications, always inside the caller's
//! transaction (SPEC §4.5, §10): if either cannot be written, the change does
//! not happen.
//!
//! Notification payloads may carry links that act as keys (a request link, an
//! invitation), so the outbox keeps them sealed by the vault.

use super::Result;
use credence_domain::{OrganizationId, TeamId, UserId};
use credence_store::{Db, NewAuditEntry, User};
use credence_vault::Vault;
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
    Ok(())
}

/// The vault context of an outbox payload.
pub fn outbox_context(kind: &str, recipient_email: &str) -> String {
    format!("outbox:{kind}:{}", recipient_email.to_lowercase())
}

/// Queues a notification for `recipient_email`; the payload is sealed.
pub async fn notify(
    db: &mut Db,
    vault: &Vault,
    kind: &str,
    recipient_email: &str,
    payload: Value,
) -> Result<()> {
    let sealed = vault.seal(
        payload.to_string().as_bytes(),
        &outbox_context(kind, recipient_email),
    )?;
    db.insert_outbox(kind, recipient_email, sealed.as_str())
        .await?;
    Ok(())
}

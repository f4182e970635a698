//! Webhook endpoints (SPEC §10): a team's or a whole organization's URL that
//! receives the audit events it chose, signed per Standard Webhooks with a
//! `whsec_` secret. Managed by the organization's owners and admins, and for
//! a team's endpoint also by the team's admins; anyone else gets a 404 (an
//! outsider) or a 403 (a member without the right).
//!
//! The secret is shown once, when it is made (creation, rotation), and kept
//! only sealed in `secrets` (purpose [`SIGNING_PURPOSE`], bound to its row).
//! After a rotation the previous secret signs too for [`ROTATION_OVERLAP`],
//! so a receiver can switch without losing a message. The URL is checked
//! here (https, public) and again by the runner at every delivery
//! (`credence_provider::destination::check_webhook_url` and the checked client).

use super::audit::{self, Actor, Event};
use super::{secrets, Error, Result};
use chrono::{DateTime, Utc};
use credence_domain::{OrgRole, OrganizationId, TeamId, TeamRole, ValidationError};
use credence_store::{Db, NewWebhookEndpoint, Store, User, WebhookDelivery, WebhookEndpoint};
use credence_vault::Vault;
use secrecy::SecretString;
use serde_json::json;

/// The purpose of a signing secret's `secrets` row.
pub const SIGNING_PURPOSE: &str = "webhook_signing";
/// How long the secret before a rotation keeps signing.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);
/// The longest URL accepted.
pub const URL_LIMIT: usize = 2048;
/// The most event names one endpoint may list.
pub const EVENTS_LIMIT: usize = 64;
/// The most endpoints one team, or one organization, may have.
pub const ENDPOINTS_LIMIT: usize = 20;

/// Whose endpoint it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Organization(OrganizationId),
    Team(TeamId),
}

/// What a caller asks for, before parsing.
#[derive(Debug, Clone)]
pub struct EndpointInput {
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
}

/// A change to an endpoint; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// Parses a webhook URL and checks where it points (the lookup happens
/// here, before any transaction).
pub async fn parse_url(raw: &str, allow_private_hosts: bool) -> Result<reqwest::Url> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(ValidationError::new("url", "url is required").into());
    }
    if raw.chars().count() > URL_LIMIT {
        return Err(ValidationError::new(
            "url",
            format!(
                "url is {} characters; the limit is {URL_LIMIT}",
                raw.chars().count()
            ),
        )
        .into());
    }
    let url = reqwest::Url::parse(raw).map_err(|error| {
        ValidationError::new(
            "url",
            format!("url {raw:?} is not an absolute URL ({error})"),
        )
    })?;
    if url.fragment().is_some() {
        return Err(ValidationError::new("url", "url must not have a #fragment").into());
    }
    credence_provider::destination::check_webhook_url(&url, allow_private_hosts, true)
        .await
        .map_err(|message| ValidationError::new("url", message))?;
    Ok(url)
}

/// Parses the events an endpoint chose: known names (`webhook_events::EVENTS`)
/// or `*`, at least one; answers them as stored (sorted, space-separated).
pub fn parse_events(events: &[String]) -> Result<String> {
    if events.is_empty() {
        return Err(ValidationError::new(
            "events",
            "events is empty; name at least one event, or \"*\" for all of them",
        )
        .into());
    }
    if events.len() > EVENTS_LIMIT {
        return Err(ValidationError::new(
            "events",
            format!(
                "events lists {} names; the limit is {EVENTS_LIMIT}",
                events.len()
            ),
        )
        .into());
    }
    let mut names = std::collections::BTreeSet::new();
    for event in events {
        let event = event.trim();
        if event != "*" && !super::webhook_events::EVENTS.contains(&event) {
            return Err(ValidationError::new(
                "events",
                format!(
                    "event {:?} is not one Credence sends; use \"*\" or one of {}",
                    event.chars().take(100).collect::<String>(),
                    super::webhook_events::EVENTS.join(", ")
                ),
            )
            .into());
        }
        names.insert(event.to_string());
    }
    if names.contains("*") {
        return Ok("*".into());
    }
    Ok(names.into_iter().collect::<Vec<_>>().join(" "))
}

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> SecretString {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// The organization and team (if any) of `owner`; a 404 for a team that
/// does not exist.
async fn resolve_owner(db: &mut Db, owner: Owner) -> Result<(OrganizationId, Option<TeamId>)> {
    match owner {
        Owner::Organization(organization) => {
            if db.get_organization(organization).await?.is_none() {
                return Err(Error::NotFound(format!(
                    "organization {organization} not found"
                )));
            }
            Ok((organization, None))
        }
        Owner::Team(team) => {
            let found = db
                .get_team(team)
                .await?
                .ok_or_else(|| Error::NotFound(format!("team {team} not found")))?;
            Ok((found.organization_id, Some(team)))
        }
    }
}

/// Whether `caller` manages the endpoints of `organization` (and `team`):
/// an owner or admin of the organization, or an admin of the team. A 404
/// for someone outside the organization or a guest, a 403 for other members.
async fn check_manager(
    db: &mut Db,
    caller: &User,
    organization: OrganizationId,
    team: Option<TeamId>,
) -> Result<()> {
    let what = match team {
        Some(team) => format!("team {team}"),
        None => format!("organization {organization}"),
    };
    match db.organization_role(organization, caller.id).await? {
        None | Some(OrgRole::Guest) => Err(Error::NotFound(format!("{what} not found"))),
        Some(role) if role.manages_organization() => Ok(()),
        Some(_) => {
            if let Some(team) = team {
                if db.team_role(team, caller.id).await? == Some(TeamRole::Admin) {
                    return Ok(());
                }
            }
            Err(Error::Forbidden(format!(
                "only the organization's owners and admins{} manage the webhooks of {what}",
                if team.is_some() {
                    " and the team's admins"
                } else {
                    ""
                }
            )))
        }
    }
}

/// Endpoint `id`, if `caller` manages it; a 404 otherwise (it says nothing).
async fn managed(db: &mut Db, caller: &User, id: i64) -> Result<WebhookEndpoint> {
    let not_found = || Error::NotFound(format!("webhook endpoint {id} not found"));
    let endpoint = db.get_webhook_endpoint(id).await?.ok_or_else(not_found)?;
    let team = endpoint.team_id.map(TeamId);
    match check_manager(db, caller, endpoint.organization_id, team).await {
        Ok(()) => Ok(endpoint),
        Err(Error::Forbidden(_) | Error::NotFound(_)) => Err(not_found()),
        Err(other) => Err(other),
    }
}

fn audit_event(endpoint: &WebhookEndpoint, name: &'static str) -> Event<'static> {
    Event {
        organization: endpoint.organization_id,
        team: endpoint.team_id.map(TeamId),
        name,
        target_kind: "webhook",
        target_id: endpoint.id.to_string(),
        // The host only: a URL's path or query may carry the receiver's own token.
        details: json!({
            "host": reqwest::Url::parse(&endpoint.url).ok().and_then(|url| url.host_str().map(str::to_string)),
            "events": endpoint.event_names(),
            "enabled": endpoint.enabled,
        }),
    }
}

/// Creates an endpoint of `owner`; answers it and its secret, shown once.
pub async fn create(
    store: &Store,
    vault: &Vault,
    caller: &User,
    owner: Owner,
    input: EndpointInput,
    allow_private_hosts: bool,
) -> Result<(WebhookEndpoint, SecretString)> {
    {
        let mut db = store.db().await?;
        let (organization, team) = resolve_owner(&mut db, owner).await?;
        check_manager(&mut db, caller, organization, team).await?;
    }
    let events = parse_events(&input.events)?;
    let url = parse_url(&input.url, allow_private_hosts).await?;
    let secret = new_secret();
    let mut tx = store.begin().await?;
    let (organization, team) = resolve_owner(&mut tx, owner).await?;
    check_manager(&mut tx, caller, organization, team).await?;
    let existing = tx
        .list_webhook_endpoints(organization, team.map(|team| team.0))
        .await?;
    if existing.len() >= ENDPOINTS_LIMIT {
        return Err(Error::Conflict(format!(
            "there are already {} webhook endpoints here; the limit is {ENDPOINTS_LIMIT}: delete one first",
            existing.len()
        )));
    }
    let secret_id = secrets::put_unowned_in(&mut tx, vault, SIGNING_PURPOSE, &secret).await?;
    let endpoint = tx
        .insert_webhook_endpoint(&NewWebhookEndpoint {
            organization,
            team: team.map(|team| team.0),
            url: url.as_str(),
            events: &events,
            enabled: input.enabled,
            secret_id: &secret_id,
            created_by: Some(caller.id.0),
        })
        .await?;
    audit::record(
        &mut tx,
        &Actor::user(caller),
        audit_event(&endpoint, "webhook.created"),
    )
    .await?;
    tx.commit().await?;
    Ok((endpoint, secret))
}

/// The endpoints of `owner`, if `caller` manages them.
pub async fn list(store: &Store, caller: &User, owner: Owner) -> Result<Vec<WebhookEndpoint>> {
    let mut db = store.db().await?;
    let (organization, team) = resolve_owner(&mut db, owner).await?;
    check_manager(&mut db, caller, organization, team).await?;
    Ok(db
        .list_webhook_endpoints(organization, team.map(|team| team.0))
        .await?)
}

/// Endpoint `id`, if `caller` manages it.
pub async fn get(store: &Store, caller: &User, id: i64) -> Result<WebhookEndpoint> {
    managed(&mut store.db().await?, caller, id).await
}

/// Changes endpoint `id`'s URL, events or whether it is enabled
/// (re-enabling a disabled one forgets its failures).
pub async fn update(
    store: &Store,
    caller: &User,
    id: i64,
    change: EndpointChange,
    allow_private_hosts: bool,
) -> Result<WebhookEndpoint> {
    let before = get(store, caller, id).await?;
    let events = match &change.events {
        Some(events) => parse_events(events)?,
        None => before.events.clone(),
    };
    let url = match &change.url {
        Some(raw) => parse_url(raw, allow_private_hosts).await?.to_string(),
        None => before.url.clone(),
    };
    let enabled = change.enabled.unwrap_or(before.enabled);
    let mut tx = store.begin().await?;
    managed(&mut tx, caller, id).await?;
    let endpoint = tx
        .update_webhook_endpoint(id, &url, &events, enabled)
        .await?;
    audit::record(
        &mut tx,
        &Actor::user(caller),
        audit_event(&endpoint, "webhook.updated"),
    )
    .await?;
    tx.commit().await?;
    Ok(endpoint)
}

/// Deletes endpoint `id`, its deliveries and its secrets.
pub async fn delete(store: &Store, caller: &User, id: i64) -> Result<()> {
    let mut tx = store.begin().await?;
    managed(&mut tx, caller, id).await?;
    let endpoint = tx
        .delete_webhook_endpoint(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("webhook endpoint {id} not found")))?;
    tx.delete_secret(&endpoint.secret_id).await?;
    if let Some(previous) = &endpoint.previous_secret_id {
        tx.delete_secret(previous).await?;
    }
    audit::record(
        &mut tx,
        &Actor::user(caller),
        audit_event(&endpoint, "webhook.deleted"),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Gives endpoint `id` a new secret, shown once; the current one keeps
/// signing for [`ROTATION_OVERLAP`] (the one before it is destroyed).
pub async fn rotate_secret(
    store: &Store,
    vault: &Vault,
    caller: &User,
    id: i64,
    now: DateTime<Utc>,
) -> Result<(WebhookEndpoint, SecretString)> {
    let secret = new_secret();
    let mut tx = store.begin().await?;
    managed(&mut tx, caller, id).await?;
    let secret_id = secrets::put_unowned_in(&mut tx, vault, SIGNING_PURPOSE, &secret).await?;
    let (endpoint, oldest) = tx
        .rotate_webhook_secret(id, &secret_id, now + ROTATION_OVERLAP)
        .await?;
    if let Some(oldest) = oldest {
        tx.delete_secret(&oldest).await?;
    }
    audit::record(
        &mut tx,
        &Actor::user(caller),
        audit_event(&endpoint, "webhook.secret_rotated"),
    )
    .await?;
    tx.commit().await?;
    Ok((endpoint, secret))
}

/// The delivery log of endpoint `id`, newest first.
pub async fn deliveries(
    store: &Store,
    caller: &User,
    id: i64,
    limit: i64,
) -> Result<Vec<WebhookDelivery>> {
    let mut db = store.db().await?;
    managed(&mut db, caller, id).await?;
    Ok(db.list_webhook_deliveries(id, limit).await?)
}

/// Delivery `delivery` of endpoint `id`.
pub async fn delivery(
    store: &Store,
    caller: &User,
    id: i64,
    delivery: i64,
) -> Result<WebhookDelivery> {
    let mut db = store.db().await?;
    managed(&mut db, caller, id).await?;
    db.get_webhook_delivery(delivery)
        .await?
        .filter(|found| found.endpoint_id == id)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "delivery {delivery} of webhook endpoint {id} not found"
            ))
        })
}

/// The attempts of delivery `delivery` of endpoint `id`, oldest first
/// (migration 0017; deliveries attempted before it have none).
pub async fn attempts(
    store: &Store,
    caller: &User,
    id: i64,
    delivery_id: i64,
) -> Result<Vec<credence_store::WebhookAttemptRow>> {
    let found = delivery(store, caller, id, delivery_id).await?;
    Ok(store.db().await?.list_webhook_attempts(found.id).await?)
}

/// Sends delivery `delivery` of endpoint `id` again, as a new delivery of
/// the same message (same `webhook-id` and body), due at once.
pub async fn replay(
    store: &Store,
    caller: &User,
    id: i64,
    delivery_id: i64,
) -> Result<WebhookDelivery> {
    let original = delivery(store, caller, id, delivery_id).await?;
    let mut tx = store.begin().await?;
    managed(&mut tx, caller, id).await?;
    let replayed = tx
        .insert_webhook_delivery(
            id,
            &original.message_id,
            &original.event,
            &original.payload,
            Some(original.id),
        )
        .await?;
    tx.commit().await?;
    Ok(replayed)
}

/// The secrets that sign a delivery to `endpoint` at `now`: the current
/// one, and the one before a rotation while the overlap lasts.
pub async fn signing_secrets(
    store: &Store,
    vault: &Vault,
    endpoint: &WebhookEndpoint,
    now: DateTime<Utc>,
) -> Result<Vec<SecretString>> {
    let mut db = store.db().await?;
    let mut found =
        vec![secrets::open_unowned_in(&mut db, vault, &endpoint.secret_id, SIGNING_PURPOSE).await?];
    if let (Some(previous), Some(until)) =
        (&endpoint.previous_secret_id, endpoint.previous_secret_until)
    {
        if until > now {
            found.push(secrets::open_unowned_in(&mut db, vault, previous, SIGNING_PURPOSE).await?);
        }
    }
    Ok(found)
}

/// Disables `endpoint`, failing since `since`, and tells its owners (the
/// organization's owners and whoever created it) by email, in one
/// transaction; answers false when it was disabled already.
pub async fn disable_failing(
    store: &Store,
    vault: &Vault,
    endpoint: &WebhookEndpoint,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let reason = format!(
        "every delivery failed since {}",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let mut tx = store.begin().await?;
    if !tx
        .disable_webhook_endpoint(endpoint.id, now, &reason)
        .await?
    {
        return Ok(false);
    }
    let mut disabled = endpoint.clone();
    disabled.enabled = false;
    audit::record(
        &mut tx,
        &Actor::system(),
        audit_event(&disabled, "webhook.disabled"),
    )
    .await?;
    let organization = tx.get_organization(endpoint.organization_id).await?;
    let mut emails = std::collections::BTreeSet::new();
    for owner in tx
        .list_organization_owners(endpoint.organization_id)
        .await?
    {
        emails.insert(owner.email.to_lowercase());
    }
    if let Some(creator) = endpoint.created_by {
        if let Some(user) = tx.get_user(credence_domain::UserId(creator)).await? {
            emails.insert(user.email.to_lowercase());
        }
    }
    let team_name = match endpoint.team_id {
        Some(team) => tx.get_team(TeamId(team)).await?.map(|team| team.name),
        None => None,
    };
    for email in emails {
        audit::notify(
            &mut tx,
            vault,
            Some(endpoint.organization_id),
            "webhook.disabled",
            &email,
            json!({
                "webhookId": endpoint.id,
                "webhookHost": reqwest::Url::parse(&endpoint.url).ok().and_then(|url| url.host_str().map(str::to_string)),
                "failingSince": since,
                "reason": reason,
                "organizationName": organization.as_ref().map(|o| o.name.as_str()),
                "teamName": team_name,
            }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

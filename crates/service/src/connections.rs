//! Connections: Credence's sealed access to one account of one app. Created when
//! a recipient authorizes a credential or a team adds its own; destroyed
//! (secret and all) when it is revoked, declined, deleted (remotely or with its
//! request, or by its team).

use super::secrets::{self, CONNECTION_PURPOSE};
use super::Result;
use credence_domain::{OrganizationId, TeamId, UserId};
use credence_provider::FieldValues;
use credence_store::{Db, NewConnection};
use credence_vault::Vault;

/// What a new connection needs besides its secret.
pub struct ConnectionSpec<'a> {
    pub organization: OrganizationId,
    pub team: TeamId,
    pub provided_by: UserId,
    pub name: &'a str,
    pub app_key: &'a str,
    pub app_version: i64,
    pub auth_kind: &'a str,
    pub modules: &'a str,
    pub scopes: &'a str,
    /// The connection's own OAuth client id (its secret is among `values`).
    pub oauth_client_id: Option<&'a str>,
}

/// Seals `values` and stores a connection for them (inside the caller's
/// transaction); returns its id.
pub async fn create(
    db: &mut Db,
    vault: &Vault,
    spec: ConnectionSpec<'_>,
    values: &FieldValues,
) -> Result<i64> {
    // The secret is sealed in the name of its connection (its id and team), so
    // the connection row comes first and points at its secret once it exists.
    let id = db
        .insert_connection(&NewConnection {
            organization_id: spec.organization,
            team_id: spec.team,
            provided_by: Some(spec.provided_by),
            name: spec.name.to_string(),
            app_key: spec.app_key.to_string(),
            app_version: spec.app_version,
            auth_kind: spec.auth_kind.to_string(),
            modules: spec.modules.to_string(),
            scopes: spec.scopes.to_string(),
            secret_id: None,
            oauth_client_id: spec.oauth_client_id.map(str::to_string),
        })
        .await?;
    let secret_id = uuid::Uuid::new_v4().to_string();
    let sealed = secrets::seal_connection_values(vault, id, spec.team.0, &secret_id, values)?;
    db.insert_secret(&secret_id, CONNECTION_PURPOSE, sealed.as_str())
        .await?;
    db.set_connection_secret(id, &secret_id).await?;
    // When an OAuth access token expires is not secret: kept in the clear so
    // the background refresher finds due connections without opening any.
    if let Some(at) = values.expires_at() {
        db.set_token_expires_at(id, Some(at)).await?;
    }
    Ok(id)
}

/// Destroys a connection: its secret first, then the row. Works at once: the
/// broker reads the secret at every call. The secret goes even when another
/// connection points at it too: that pointer was moved there (the secret is
/// bound to its own connection and never opens through another), and a kept
/// secret nobody can open would hold its key version in use for good.
pub async fn destroy(db: &mut Db, connection: i64) -> Result<()> {
    // The row is held before its secret goes: a refresh holds the row and
    // then writes the secret, so taking them the other way round could
    // deadlock with it (the lock order is credential, connection, secret).
    if let Some(found) = db.lock_connection(connection).await? {
        if let Some(secret) = &found.secret_id {
            db.delete_secret(secret).await?;
        }
        db.delete_connection(connection).await?;
    }
    Ok(())
}

/// How far back a deletion's confirmation looks for who used a connection.
pub const CONSUMERS_SEEN_FOR: chrono::Duration = chrono::Duration::days(90);

/// The consumers seen using any of `connections` in the last
/// [`CONSUMERS_SEEN_FOR`], as a clause for a confirmation message
/// (`"; used in the last 90 days by: a, b"`), or empty when none.
pub async fn recent_consumers(db: &mut Db, connections: &[i64]) -> Result<String> {
    let consumers = recent_consumer_names(db, connections).await?;
    if consumers.is_empty() {
        return Ok(String::new());
    }
    Ok(format!(
        "; used in the last {} days by: {}",
        CONSUMERS_SEEN_FOR.num_days(),
        consumers.join(", ")
    ))
}

/// The consumers seen using any of `connections` in the last
/// [`CONSUMERS_SEEN_FOR`], sorted, each once (a confirmation page lists them).
pub async fn recent_consumer_names(db: &mut Db, connections: &[i64]) -> Result<Vec<String>> {
    let since = credence_store::now() - CONSUMERS_SEEN_FOR;
    let mut consumers = std::collections::BTreeSet::new();
    for connection in connections {
        consumers.extend(db.consumers_of_connection(*connection, since).await?);
    }
    Ok(consumers.into_iter().collect())
}

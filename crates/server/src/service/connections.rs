//! Connections: Credence's sealed access to one account of one app. Created when
//! a recipient authorizes a credential or a team adds its own; destroyed
//! (secret and all) when it is revoked, declined, deleted (remotely or with its
//! request, or by its team).

use super::secret_json::SecretJson;
use super::upstream::FieldValues;
use super::Result;
use credence_domain::{OrganizationId, TeamId, UserId};
use credence_store::{Db, NewConnection};
use credence_vault::Vault;
use secrecy::ExposeSecret;

/// The purpose of a connection's secret in the vault.
pub const SECRET_PURPOSE: &str = "connection";

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
    // The JSON copies of the values are zeroized, as is the text sealed.
    let plain: SecretJson = values
        .0
        .iter()
        .map(|(name, value)| {
            (
                name.clone(),
                serde_json::Value::String(value.expose_secret().to_string()),
            )
        })
        .collect();
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
    let sealed = vault.seal(
        &plain.to_json_bytes(),
        &super::secrets::connection_context(id, spec.team.0, &secret_id),
    )?;
    db.insert_secret(&secret_id, SECRET_PURPOSE, sealed.as_str())
        .await?;
    db.set_connection_secret(id, &secret_id).await?;
    // When an OAuth access token expires is not secret: kept in the clear so
    // the background refresher finds due connections without opening any.
    if let Some(at) = values
        .0
        .get("expires_at")
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at.expose_secret()).ok())
    {
        db.set_token_expires_at(id, Some(at.with_timezone(&chrono::Utc)))
            .await?;
    }
    Ok(id)
}

/// The catalog app and version a connection was made for, or a conflict
/// saying it is gone from the catalog.
pub fn app_of<'a>(
    ctx: &'a super::Context,
    connection: &credence_store::Connection,
) -> Result<(&'a credence_catalog::App, &'a credence_catalog::AppVersion)> {
    let app = ctx.catalog.get(&connection.app_key).ok_or_else(|| {
        super::Error::Conflict(format!(
            "the app {} is no longer in the catalog",
            connection.app_key
        ))
    })?;
    let version = app.version(connection.app_version as u32).ok_or_else(|| {
        super::Error::Conflict(format!(
            "version {} of {} is no longer in the catalog",
            connection.app_version, app.key
        ))
    })?;
    Ok((app, version))
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

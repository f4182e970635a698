//! Connections: which team holds access to which app account, with which
//! modules and scopes, and the id of its sealed secret (never the secret).

use crate::{now, Db, Result};
use chrono::{DateTime, Utc};
use credence_domain::{OrganizationId, TeamId, UserId};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Connection {
    pub id: i64,
    pub organization_id: i64,
    pub team_id: i64,
    pub provided_by: Option<i64>,
    pub name: String,
    pub app_key: String,
    pub app_version: i64,
    pub auth_kind: String,
    /// JSON array of module keys.
    pub modules: String,
    /// JSON array of scopes.
    pub scopes: String,
    pub secret_id: Option<String>,
    /// `valid` or `invalid`.
    pub state: String,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the OAuth access token expires (not secret; copied from the sealed tokens).
    pub token_expires_at: Option<DateTime<Utc>>,
    /// The last successful OAuth refresh.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// After a provider outage: not before this time again.
    pub refresh_after: Option<DateTime<Utc>>,
    /// Outages in a row since the last success (the backoff's exponent).
    pub refresh_failures: i64,
    /// The connection's own OAuth client id; `None`: the configured client.
    pub oauth_client_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewConnection {
    pub organization_id: OrganizationId,
    pub team_id: TeamId,
    pub provided_by: Option<UserId>,
    pub name: String,
    pub app_key: String,
    pub app_version: i64,
    pub auth_kind: String,
    pub modules: String,
    pub scopes: String,
    pub secret_id: Option<String>,
    pub oauth_client_id: Option<String>,
}

const CONNECTION_COLUMNS: &str =
    "id, organization_id, team_id, provided_by, name, app_key, app_version, auth_kind, \
    modules, scopes, secret_id, state, verified_at, created_at, updated_at, token_expires_at, \
    refreshed_at, refresh_after, refresh_failures, oauth_client_id";

impl Db {
    pub async fn insert_connection(&mut self, new: &NewConnection) -> Result<i64> {
        let at = now();
        let sql = "INSERT INTO connections (organization_id, team_id, provided_by, name, app_key, app_version, auth_kind, \
                   modules, scopes, secret_id, oauth_client_id, state, verified_at, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'valid', $12, $12, $12) RETURNING id";
        Ok(on_conn!(self, c => sqlx::query_scalar::<_, i64>(sql)
            .bind(new.organization_id.0).bind(new.team_id.0).bind(new.provided_by.map(|u| u.0)).bind(&new.name)
            .bind(&new.app_key).bind(new.app_version).bind(&new.auth_kind).bind(&new.modules).bind(&new.scopes)
            .bind(&new.secret_id).bind(&new.oauth_client_id).bind(at)
            .fetch_one(c).await)?)
    }

    pub async fn get_connection(&mut self, id: i64) -> Result<Option<Connection>> {
        let sql = format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1");
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, Connection>(&sql).bind(id).fetch_optional(c).await)?,
        )
    }

    /// Points a new connection at its secret: the secret is sealed in the
    /// connection's name, so it can be written only once the connection has an id.
    pub async fn set_connection_secret(&mut self, id: i64, secret_id: &str) -> Result<()> {
        let sql = "UPDATE connections SET secret_id = $1 WHERE id = $2";
        let done = on_conn!(self, c => sqlx::query(sql).bind(secret_id).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(crate::Error::NotFound(format!("connection {id}")));
        }
        Ok(())
    }

    pub async fn delete_connection(&mut self, id: i64) -> Result<bool> {
        let sql = "DELETE FROM connections WHERE id = $1";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(id).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    pub async fn list_connections(&mut self, team: TeamId) -> Result<Vec<Connection>> {
        let sql =
            format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE team_id = $1 ORDER BY id");
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, Connection>(&sql).bind(team.0).fetch_all(c).await)?,
        )
    }

    /// Renames a connection; false when there is none.
    pub async fn rename_connection(&mut self, id: i64, name: &str) -> Result<bool> {
        let sql = "UPDATE connections SET name = $1, updated_at = $2 WHERE id = $3";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(name).bind(now()).bind(id).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// A new authorization replaced the connection's tokens (sealed by the
    /// caller in its secret): the granted scopes, the expiry, valid again and
    /// the backoff reset.
    pub async fn record_reauthorization(
        &mut self,
        id: i64,
        scopes: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let at = now();
        let sql = "UPDATE connections SET scopes = $1, token_expires_at = $2, refreshed_at = $3, \
                   refresh_after = NULL, refresh_failures = 0, state = 'valid', verified_at = $3, \
                   updated_at = $3 WHERE id = $4";
        on_conn!(self, c => sqlx::query(sql).bind(scopes).bind(expires_at).bind(at).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Marks a connection valid or invalid.
    pub async fn set_connection_state(&mut self, id: i64, state: &str) -> Result<()> {
        let sql = "UPDATE connections SET state = $1, updated_at = $2 WHERE id = $3";
        on_conn!(self, c => sqlx::query(sql).bind(state).bind(now()).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Reads a connection and holds it until the transaction ends, so that
    /// writes of its tokens do not interleave. PostgreSQL locks the row
    /// (`FOR UPDATE`); SQLite's `BEGIN IMMEDIATE` transaction already excludes
    /// every other writer, so a plain read suffices there.
    pub async fn lock_connection(&mut self, id: i64) -> Result<Option<Connection>> {
        let sql = match self.backend() {
            crate::Backend::Postgres => {
                format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1 FOR UPDATE")
            }
            crate::Backend::Sqlite => {
                format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1")
            }
        };
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, Connection>(&sql).bind(id).fetch_optional(c).await)?,
        )
    }

    /// Records when the access token expires (at creation).
    pub async fn set_token_expires_at(&mut self, id: i64, at: Option<DateTime<Utc>>) -> Result<()> {
        let sql = "UPDATE connections SET token_expires_at = $1 WHERE id = $2";
        on_conn!(self, c => sqlx::query(sql).bind(at).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Claims the refresh lease of connection `id` until `until`, if nobody
    /// holds it at `at`; false when another refresh holds it (or there is no
    /// such connection). `until` is the lease's token: a later holder can only
    /// claim after it, so its `until` is later still, and
    /// [`Db::release_refresh_lease`] frees only the lease that is still `until`.
    pub async fn claim_refresh_lease(
        &mut self,
        id: i64,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let sql = "UPDATE connections SET refresh_lease_until = $1 WHERE id = $2 \
                   AND (refresh_lease_until IS NULL OR refresh_lease_until < $3)";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(until).bind(id).bind(at)
            .execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Releases the refresh lease of connection `id` claimed until `until`;
    /// false (and nothing changes) when it is no longer that lease: it ran out
    /// and another refresh holds the connection now.
    pub async fn release_refresh_lease(&mut self, id: i64, until: DateTime<Utc>) -> Result<bool> {
        let sql = "UPDATE connections SET refresh_lease_until = NULL \
                   WHERE id = $1 AND refresh_lease_until = $2";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(id).bind(until).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// A refresh succeeded: the new expiry, valid, and the backoff reset.
    pub async fn record_refresh(
        &mut self,
        id: i64,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let at = now();
        let sql = "UPDATE connections SET token_expires_at = $1, refreshed_at = $2, refresh_after = NULL, \
                   refresh_failures = 0, state = 'valid', verified_at = $2, updated_at = $2 WHERE id = $3";
        on_conn!(self, c => sqlx::query(sql).bind(expires_at).bind(at).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// A refresh failed for a passing reason: not again before `after`.
    pub async fn record_refresh_outage(&mut self, id: i64, after: DateTime<Utc>) -> Result<()> {
        let sql =
            "UPDATE connections SET refresh_after = $1, refresh_failures = refresh_failures + 1, \
                   updated_at = $2 WHERE id = $3";
        on_conn!(self, c => sqlx::query(sql).bind(after).bind(now()).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Valid OAuth connections due for a refresh: the access token expires
    /// before `expiring_before`, or nothing was refreshed since `idle_before`;
    /// and no backoff holds them back at `at`.
    pub async fn connections_due_for_refresh(
        &mut self,
        at: DateTime<Utc>,
        expiring_before: DateTime<Utc>,
        idle_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<i64>> {
        let sql = "SELECT id FROM connections WHERE auth_kind = 'oauth2' AND state = 'valid' \
                   AND secret_id IS NOT NULL AND (refresh_after IS NULL OR refresh_after <= $1) \
                   AND ((token_expires_at IS NOT NULL AND token_expires_at <= $2) \
                        OR COALESCE(refreshed_at, created_at) <= $3) \
                   ORDER BY id LIMIT $4";
        Ok(on_conn!(self, c => sqlx::query_scalar::<_, i64>(sql)
            .bind(at).bind(expiring_before).bind(idle_before).bind(limit)
            .fetch_all(c).await)?)
    }
}

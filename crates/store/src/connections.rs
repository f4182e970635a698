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
}

const CONNECTION_COLUMNS: &str =
    "id, organization_id, team_id, provided_by, name, app_key, app_version, auth_kind, \
    modules, scopes, secret_id, state, verified_at, created_at, updated_at";

impl Db {
    pub async fn insert_connection(&mut self, new: &NewConnection) -> Result<i64> {
        let at = now();
        let sql = "INSERT INTO connections (organization_id, team_id, provided_by, name, app_key, app_version, auth_kind, \
                   modules, scopes, secret_id, state, verified_at, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'valid', $11, $11, $11) RETURNING id";
        Ok(on_conn!(self, c => sqlx::query_scalar::<_, i64>(sql)
            .bind(new.organization_id.0).bind(new.team_id.0).bind(new.provided_by.map(|u| u.0)).bind(&new.name)
            .bind(&new.app_key).bind(new.app_version).bind(&new.auth_kind).bind(&new.modules).bind(&new.scopes)
            .bind(&new.secret_id).bind(at)
            .fetch_one(c).await)?)
    }

    pub async fn get_connection(&mut self, id: i64) -> Result<Option<Connection>> {
        let sql = format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1");
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, Connection>(&sql).bind(id).fetch_optional(c).await)?,
        )
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

    /// Marks a connection valid or invalid.
    pub async fn set_connection_state(&mut self, id: i64, state: &str) -> Result<()> {
        let sql = "UPDATE connections SET state = $1, updated_at = $2 WHERE id = $3";
        on_conn!(self, c => sqlx::query(sql).bind(state).bind(now()).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}

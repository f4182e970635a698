//! OAuth 2.0 authorization-code flows in progress (`oauth_flows`): found by the
//! hash of their state, spent once by a guarded update, swept when expired.

use crate::{now, Db, Result};
use chrono::{DateTime, Utc};
use credence_domain::{CredentialId, TeamId};

/// One flow, as stored: the state only as its hash, the PKCE verifier and a
/// custom client sealed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OAuthFlow {
    pub id: String,
    pub state_hash: String,
    pub user_id: i64,
    /// `authorize`, `reauthorize` (a requested credential), `connect` (a new
    /// connection of a team) or `reconnect` (a connection renewed in place).
    pub purpose: String,
    pub credential_id: Option<String>,
    pub connection_id: Option<i64>,
    pub team_id: Option<i64>,
    /// For `connect`: the connection to create, as JSON.
    pub target: Option<String>,
    pub verifier_sealed: Option<String>,
    pub client_sealed: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

/// What a new flow needs.
#[derive(Debug, Clone, Default)]
pub struct NewOAuthFlow {
    pub id: String,
    pub state_hash: String,
    /// The person whose browser must come back.
    pub user_id: i64,
    pub purpose: &'static str,
    pub credential_id: Option<CredentialId>,
    pub connection_id: Option<i64>,
    pub team_id: Option<TeamId>,
    pub target: Option<String>,
    pub verifier_sealed: Option<String>,
    pub client_sealed: Option<String>,
    pub expires_at: DateTime<Utc>,
}

const FLOW_COLUMNS: &str =
    "id, state_hash, user_id, purpose, credential_id, connection_id, team_id, \
    target, verifier_sealed, client_sealed, created_at, expires_at, used_at";

impl Db {
    pub async fn insert_oauth_flow(&mut self, new: &NewOAuthFlow) -> Result<()> {
        let sql = "INSERT INTO oauth_flows (id, state_hash, user_id, purpose, credential_id, connection_id, \
                   team_id, target, verifier_sealed, client_sealed, created_at, expires_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
        on_conn!(self, c => sqlx::query(sql)
            .bind(&new.id).bind(&new.state_hash).bind(new.user_id).bind(new.purpose)
            .bind(new.credential_id.map(|c| c.to_string())).bind(new.connection_id)
            .bind(new.team_id.map(|t| t.0)).bind(&new.target).bind(&new.verifier_sealed)
            .bind(&new.client_sealed).bind(now()).bind(new.expires_at)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn find_oauth_flow(&mut self, state_hash: &str) -> Result<Option<OAuthFlow>> {
        let sql = format!("SELECT {FLOW_COLUMNS} FROM oauth_flows WHERE state_hash = $1");
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, OAuthFlow>(&sql).bind(state_hash).fetch_optional(c).await)?,
        )
    }

    /// Spends a flow; false when it was spent already (a replayed callback).
    /// The sealed verifier and client go with it.
    pub async fn spend_oauth_flow(&mut self, id: &str) -> Result<bool> {
        let sql =
            "UPDATE oauth_flows SET used_at = $1, verifier_sealed = NULL, client_sealed = NULL \
                   WHERE id = $2 AND used_at IS NULL";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(now()).bind(id).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Deletes flows that expired before `before` (spent or not); answers how
    /// many. A spent flow is kept until then so a replay still reads "used".
    pub async fn sweep_oauth_flows(&mut self, before: DateTime<Utc>) -> Result<u64> {
        let sql = "DELETE FROM oauth_flows WHERE expires_at < $1";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(before).execute(c).await.map(|r| r.rows_affected()))?,
        )
    }
}

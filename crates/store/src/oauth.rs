//! OAuth 2.0 authorization-code flows in progress (`oauth_flows`): found by the
//! hash of their state, spent once by a guarded update.

use crate::{now, Db, Result};
use chrono::{DateTime, Utc};
use credence_domain::{CredentialId, UserId};

/// One flow, as stored: the state only as its hash, the PKCE verifier sealed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OAuthFlow {
    pub id: String,
    pub state_hash: String,
    pub credential_id: String,
    pub user_id: i64,
    /// 1 when the flow reauthorizes the credential.
    pub reauthorize: i64,
    pub verifier_sealed: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

/// What a new flow needs.
#[derive(Debug, Clone)]
pub struct NewOAuthFlow {
    pub id: String,
    pub state_hash: String,
    pub credential_id: CredentialId,
    pub user_id: UserId,
    pub reauthorize: bool,
    pub verifier_sealed: Option<String>,
    pub expires_at: DateTime<Utc>,
}

const FLOW_COLUMNS: &str = "id, state_hash, credential_id, user_id, reauthorize, verifier_sealed, \
    created_at, expires_at, used_at";

impl Db {
    pub async fn insert_oauth_flow(&mut self, new: &NewOAuthFlow) -> Result<()> {
        let sql = "INSERT INTO oauth_flows (id, state_hash, credential_id, user_id, reauthorize, \
                   verifier_sealed, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        on_conn!(self, c => sqlx::query(sql)
            .bind(&new.id).bind(&new.state_hash).bind(new.credential_id.to_string()).bind(new.user_id.0)
            .bind(i64::from(new.reauthorize)).bind(&new.verifier_sealed).bind(now()).bind(new.expires_at)
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
    pub async fn spend_oauth_flow(&mut self, id: &str) -> Result<bool> {
        let sql = "UPDATE oauth_flows SET used_at = $1, verifier_sealed = NULL WHERE id = $2 AND used_at IS NULL";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(now()).bind(id).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }
}

//! Feature requests (a user asks for credential requests; the operator decides)
//! and the owners to notify when a feature is granted.

use crate::{now, Db, Result, User};
use chrono::{DateTime, Utc};
use credence_domain::{Feature, OrganizationId, UserId};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FeatureRequest {
    pub id: i64,
    pub user_id: i64,
    pub feature: String,
    pub requested_at: DateTime<Utc>,
    pub status: String,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
}

const FEATURE_REQUEST_COLUMNS: &str =
    "id, user_id, feature, requested_at, status, decided_at, decided_by";

impl Db {
    /// Records that `user` asks for `feature`; an open request is returned as is.
    pub async fn request_feature(
        &mut self,
        user: UserId,
        feature: Feature,
    ) -> Result<(FeatureRequest, bool)> {
        if let Some(open) = self.open_feature_request(user, feature).await? {
            return Ok((open, false));
        }
        let sql = format!(
            "INSERT INTO feature_requests (user_id, feature, requested_at, status) VALUES ($1, $2, $3, 'pending') \
             RETURNING {FEATURE_REQUEST_COLUMNS}"
        );
        let created = on_conn!(self, c => sqlx::query_as::<_, FeatureRequest>(&sql)
            .bind(user.0).bind(feature.as_str()).bind(now()).fetch_one(c).await)?;
        Ok((created, true))
    }

    pub async fn open_feature_request(
        &mut self,
        user: UserId,
        feature: Feature,
    ) -> Result<Option<FeatureRequest>> {
        let sql = format!(
            "SELECT {FEATURE_REQUEST_COLUMNS} FROM feature_requests WHERE user_id = $1 AND feature = $2 AND status = 'pending'"
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, FeatureRequest>(&sql).bind(user.0).bind(feature.as_str()).fetch_optional(c).await)?,
        )
    }

    /// The newest request of `user` for `feature`, whatever its status.
    pub async fn latest_feature_request(
        &mut self,
        user: UserId,
        feature: Feature,
    ) -> Result<Option<FeatureRequest>> {
        let sql = format!(
            "SELECT {FEATURE_REQUEST_COLUMNS} FROM feature_requests WHERE user_id = $1 AND feature = $2 ORDER BY id DESC LIMIT 1"
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, FeatureRequest>(&sql).bind(user.0).bind(feature.as_str()).fetch_optional(c).await)?,
        )
    }

    /// Open requests for `feature`, oldest first.
    pub async fn list_open_feature_requests(
        &mut self,
        feature: Feature,
    ) -> Result<Vec<FeatureRequest>> {
        let sql = format!(
            "SELECT {FEATURE_REQUEST_COLUMNS} FROM feature_requests WHERE feature = $1 AND status = 'pending' ORDER BY id"
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, FeatureRequest>(&sql).bind(feature.as_str()).fetch_all(c).await)?,
        )
    }

    /// Closes `user`'s open request for `feature` as `status` (granted or refused).
    pub async fn decide_feature_request(
        &mut self,
        user: UserId,
        feature: Feature,
        status: &str,
        decided_by: &str,
    ) -> Result<u64> {
        let sql = "UPDATE feature_requests SET status = $1, decided_at = $2, decided_by = $3 \
                   WHERE user_id = $4 AND feature = $5 AND status = 'pending'";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(status).bind(now()).bind(decided_by).bind(user.0).bind(feature.as_str())
            .execute(c).await.map(|r| r.rows_affected()))?,
        )
    }

    /// The owners of `organization`.
    pub async fn list_organization_owners(
        &mut self,
        organization: OrganizationId,
    ) -> Result<Vec<User>> {
        let sql =
            "SELECT u.id, u.email, u.name, u.password_hash, u.language, u.timezone, u.created_at \
                   FROM organization_members m JOIN users u ON u.id = m.user_id \
                   WHERE m.organization_id = $1 AND m.role = 'owner' ORDER BY u.id";
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, User>(sql).bind(organization.0).fetch_all(c).await)?,
        )
    }
}

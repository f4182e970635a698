//! Webhook endpoints and their deliveries (migration 0015). Deliveries are
//! written by `Db::insert_webhook_delivery` in the transaction of the audited
//! change they tell of, and claimed like the outbox (`outbox.rs`): one
//! statement takes due rows under a lease (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, the guarded `UPDATE` alone on SQLite), and only the lease's
//! holder records the outcome of an attempt.
//!
//! An endpoint row holds the ids of its sealed signing secrets in `secrets`,
//! never a secret itself.

use crate::{Backend, Db, Error, Result};
use chrono::{DateTime, Utc};
use credence_domain::OrganizationId;

/// A webhook endpoint of a team (`team_id`) or of a whole organization.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookEndpoint {
    pub id: i64,
    #[sqlx(try_from = "i64")]
    pub organization_id: OrganizationId,
    pub team_id: Option<i64>,
    pub url: String,
    /// Event names separated by spaces, or `*`.
    pub events: String,
    pub enabled: bool,
    /// The `secrets` row of the current signing secret (sealed).
    pub secret_id: String,
    /// The `secrets` row of the secret before the last rotation, which signs
    /// too until `previous_secret_until`.
    pub previous_secret_id: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub failing_since: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

impl WebhookEndpoint {
    /// The event names it chose (`*` for every one).
    pub fn event_names(&self) -> Vec<&str> {
        self.events.split_whitespace().collect()
    }

    /// Whether it receives `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.event_names()
            .iter()
            .any(|name| *name == "*" || *name == event)
    }
}

/// What a new endpoint is made of.
#[derive(Debug, Clone)]
pub struct NewWebhookEndpoint<'a> {
    pub organization: OrganizationId,
    pub team: Option<i64>,
    pub url: &'a str,
    pub events: &'a str,
    pub enabled: bool,
    pub secret_id: &'a str,
    pub created_by: Option<i64>,
}

/// One message to one endpoint, with its delivery bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookDelivery {
    pub id: i64,
    pub endpoint_id: i64,
    pub message_id: String,
    pub event: String,
    /// The JSON body sent (the audit entry; no secret).
    pub payload: String,
    pub created_at: DateTime<Utc>,
    pub replay_of: Option<i64>,
    /// Claims so far, this one included.
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_latency_ms: Option<i64>,
    /// The start of the endpoint's answer, at most 1 KiB.
    pub last_response: Option<String>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
}

/// The outcome of one attempt, as the delivery log keeps it.
#[derive(Debug, Clone)]
pub struct WebhookAttempt<'a> {
    pub at: DateTime<Utc>,
    pub status: Option<i32>,
    pub latency_ms: i64,
    pub response: Option<&'a str>,
    pub error: Option<&'a str>,
}

const ENDPOINT_COLUMNS: &str = "id, organization_id, team_id, url, events, enabled, secret_id, \
     previous_secret_id, previous_secret_until, created_by, created_at, updated_at, failing_since, \
     disabled_at, disabled_reason";

const DELIVERY_COLUMNS: &str =
    "id, endpoint_id, message_id, event, payload, created_at, replay_of, \
     attempts, next_attempt_at, lease_until, last_attempt_at, last_status, last_latency_ms, \
     last_response, last_error, delivered_at, failed_at";

/// Claimable at `$1`: neither delivered nor given up, due, under no live
/// lease, and for an endpoint that is enabled.
const CLAIMABLE: &str = "delivered_at IS NULL AND failed_at IS NULL \
     AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
     AND (lease_until IS NULL OR lease_until <= $1) \
     AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE enabled)";

impl Db {
    pub async fn insert_webhook_endpoint(
        &mut self,
        new: &NewWebhookEndpoint<'_>,
    ) -> Result<WebhookEndpoint> {
        let at = crate::now();
        let sql = format!(
            "INSERT INTO webhook_endpoints (organization_id, team_id, url, events, enabled, secret_id, \
             created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             RETURNING {ENDPOINT_COLUMNS}"
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, WebhookEndpoint>(&sql)
            .bind(new.organization.0).bind(new.team).bind(new.url).bind(new.events)
            .bind(new.enabled).bind(new.secret_id).bind(new.created_by).bind(at)
            .fetch_one(c).await)?,
        )
    }

    pub async fn get_webhook_endpoint(&mut self, id: i64) -> Result<Option<WebhookEndpoint>> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, WebhookEndpoint>(&sql).bind(id).fetch_optional(c).await)?,
        )
    }

    /// The endpoints of `organization`: of the whole organization when
    /// `team` is `None`, else of that team.
    pub async fn list_webhook_endpoints(
        &mut self,
        organization: OrganizationId,
        team: Option<i64>,
    ) -> Result<Vec<WebhookEndpoint>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE organization_id = $1 \
             AND ((CAST($2 AS BIGINT) IS NULL AND team_id IS NULL) OR team_id = $2) ORDER BY id"
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, WebhookEndpoint>(&sql)
            .bind(organization.0).bind(team).fetch_all(c).await)?,
        )
    }

    /// The enabled endpoints an event of `organization` (and `team`) goes
    /// to: the organization's own, and the team's.
    pub async fn webhook_endpoints_for_event(
        &mut self,
        organization: OrganizationId,
        team: Option<i64>,
    ) -> Result<Vec<WebhookEndpoint>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE organization_id = $1 AND enabled \
             AND (team_id IS NULL OR team_id = $2) ORDER BY id"
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, WebhookEndpoint>(&sql)
            .bind(organization.0).bind(team).fetch_all(c).await)?,
        )
    }

    /// Changes what an endpoint is set to; re-enabling it forgets its failures.
    pub async fn update_webhook_endpoint(
        &mut self,
        id: i64,
        url: &str,
        events: &str,
        enabled: bool,
    ) -> Result<WebhookEndpoint> {
        let sql = format!(
            "UPDATE webhook_endpoints SET url = $1, events = $2, enabled = $3, updated_at = $4, \
             failing_since = CASE WHEN $3 AND NOT enabled THEN NULL ELSE failing_since END, \
             disabled_at = CASE WHEN $3 THEN NULL ELSE disabled_at END, \
             disabled_reason = CASE WHEN $3 THEN NULL ELSE disabled_reason END \
             WHERE id = $5 RETURNING {ENDPOINT_COLUMNS}"
        );
        on_conn!(self, c => sqlx::query_as::<_, WebhookEndpoint>(&sql)
            .bind(url).bind(events).bind(enabled).bind(crate::now()).bind(id)
            .fetch_optional(c).await)?
        .ok_or_else(|| Error::NotFound(format!("webhook endpoint {id}")))
    }

    /// A new signing secret; the current one signs too until `until`. The
    /// one before it (if any) is answered, for the caller to delete.
    pub async fn rotate_webhook_secret(
        &mut self,
        id: i64,
        new_secret_id: &str,
        until: DateTime<Utc>,
    ) -> Result<(WebhookEndpoint, Option<String>)> {
        let before = self
            .get_webhook_endpoint(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("webhook endpoint {id}")))?;
        let sql = format!(
            "UPDATE webhook_endpoints SET previous_secret_id = secret_id, previous_secret_until = $1, \
             secret_id = $2, updated_at = $3 WHERE id = $4 AND secret_id = $5 RETURNING {ENDPOINT_COLUMNS}"
        );
        let after = on_conn!(self, c => sqlx::query_as::<_, WebhookEndpoint>(&sql)
            .bind(until).bind(new_secret_id).bind(crate::now()).bind(id).bind(&before.secret_id)
            .fetch_optional(c).await)?
        .ok_or_else(|| {
            Error::Conflict(format!(
                "the secret of webhook endpoint {id} changed meanwhile; rotate it again"
            ))
        })?;
        Ok((after, before.previous_secret_id))
    }

    /// Deletes an endpoint and its deliveries; answers it (for its secrets).
    pub async fn delete_webhook_endpoint(&mut self, id: i64) -> Result<Option<WebhookEndpoint>> {
        let Some(endpoint) = self.get_webhook_endpoint(id).await? else {
            return Ok(None);
        };
        on_conn!(self, c => sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1")
            .bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        on_conn!(self, c => sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(Some(endpoint))
    }

    /// Records that endpoint `id` answered: it is failing no more.
    pub async fn webhook_endpoint_succeeded(&mut self, id: i64) -> Result<()> {
        on_conn!(self, c => sqlx::query(
            "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
            .bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records that endpoint `id` failed at `at`; answers since when it has
    /// been failing without a success between.
    pub async fn webhook_endpoint_failed(
        &mut self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let sql = "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) \
                   WHERE id = $2 RETURNING failing_since";
        Ok(
            on_conn!(self, c => sqlx::query_scalar::<_, Option<DateTime<Utc>>>(sql)
            .bind(at).bind(id).fetch_optional(c).await)?
            .flatten(),
        )
    }

    /// Disables endpoint `id` for `reason`, if it is still enabled; answers
    /// whether this call disabled it (so only one caller tells its owners).
    pub async fn disable_webhook_endpoint(
        &mut self,
        id: i64,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool> {
        let sql =
            "UPDATE webhook_endpoints SET enabled = $1, disabled_at = $2, disabled_reason = $3, \
                   updated_at = $2 WHERE id = $4 AND enabled";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(false).bind(at).bind(reason).bind(id)
            .execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Queues `payload` (event `event`, `webhook-id` `message_id`) for
    /// endpoint `endpoint`, due at once.
    pub async fn insert_webhook_delivery(
        &mut self,
        endpoint: i64,
        message_id: &str,
        event: &str,
        payload: &str,
        replay_of: Option<i64>,
    ) -> Result<WebhookDelivery> {
        let sql = format!(
            "INSERT INTO webhook_deliveries (endpoint_id, message_id, event, payload, created_at, replay_of) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {DELIVERY_COLUMNS}"
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, WebhookDelivery>(&sql)
            .bind(endpoint).bind(message_id).bind(event).bind(payload).bind(crate::now()).bind(replay_of)
            .fetch_one(c).await)?,
        )
    }

    pub async fn get_webhook_delivery(&mut self, id: i64) -> Result<Option<WebhookDelivery>> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1");
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, WebhookDelivery>(&sql).bind(id).fetch_optional(c).await)?,
        )
    }

    /// The deliveries of `endpoint`, newest first, at most `limit`.
    pub async fn list_webhook_deliveries(
        &mut self,
        endpoint: i64,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1 \
             ORDER BY id DESC LIMIT {}",
            limit.max(0)
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, WebhookDelivery>(&sql).bind(endpoint).fetch_all(c).await)?,
        )
    }

    /// Claims up to `limit` due deliveries, oldest first, under a lease until
    /// `until` named `token`, counting an attempt for each.
    pub async fn claim_webhook_deliveries(
        &mut self,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
        token: &str,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // As in `claim_outbox`, the guard is repeated outside the subquery.
        let sql = format!(
            "UPDATE webhook_deliveries SET lease_until = $2, lease_token = $3, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE {CLAIMABLE} ORDER BY id LIMIT $4{lock}) \
             AND {CLAIMABLE} RETURNING {DELIVERY_COLUMNS}"
        );
        let mut claimed = on_conn!(self, c => sqlx::query_as::<_, WebhookDelivery>(&sql)
            .bind(at).bind(until).bind(token).bind(limit)
            .fetch_all(c).await)?;
        claimed.sort_by_key(|delivery| delivery.id);
        Ok(claimed)
    }

    /// The holder of lease `token` on delivery `id` records an attempt:
    /// delivered when `delivered`, else due again at `retry_at`, or given up
    /// when that is `None`. False (nothing changes) when the lease is gone.
    pub async fn record_webhook_attempt(
        &mut self,
        id: i64,
        token: &str,
        attempt: &WebhookAttempt<'_>,
        delivered: bool,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let delivered_at = delivered.then_some(attempt.at);
        let failed_at = (!delivered && retry_at.is_none()).then_some(attempt.at);
        let sql = "UPDATE webhook_deliveries SET lease_until = NULL, lease_token = NULL, \
                   last_attempt_at = $1, last_status = $2, last_latency_ms = $3, last_response = $4, \
                   last_error = $5, delivered_at = $6, failed_at = $7, next_attempt_at = $8 \
                   WHERE id = $9 AND lease_token = $10 AND delivered_at IS NULL";
        Ok(on_conn!(self, c => sqlx::query(sql)
            .bind(attempt.at).bind(attempt.status).bind(attempt.latency_ms).bind(attempt.response)
            .bind(attempt.error).bind(delivered_at).bind(failed_at).bind(retry_at).bind(id).bind(token)
            .execute(c).await.map(|r| r.rows_affected()))?
            == 1)
    }
}

/// One attempt of a delivery, as the history keeps it (migration 0017).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookAttemptRow {
    pub id: i64,
    pub delivery_id: i64,
    pub attempted_at: DateTime<Utc>,
    /// The endpoint's HTTP status, when it answered.
    pub status: Option<i32>,
    /// Why it did not count as delivered (no URL, no secret: see the runner).
    pub error: Option<String>,
    pub latency_ms: i64,
}

impl Db {
    /// Adds `attempt` to the history of delivery `delivery` (nothing when the
    /// delivery went meanwhile, with its endpoint).
    pub async fn insert_webhook_attempt(
        &mut self,
        delivery: i64,
        attempt: &WebhookAttempt<'_>,
    ) -> Result<()> {
        let sql = "INSERT INTO webhook_delivery_attempts (delivery_id, attempted_at, status, error, latency_ms) \
                   SELECT id, $2, $3, $4, $5 FROM webhook_deliveries WHERE id = $1";
        on_conn!(self, c => sqlx::query(sql)
            .bind(delivery).bind(attempt.at).bind(attempt.status).bind(attempt.error).bind(attempt.latency_ms)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The attempts of delivery `delivery`, oldest first.
    pub async fn list_webhook_attempts(&mut self, delivery: i64) -> Result<Vec<WebhookAttemptRow>> {
        let sql = "SELECT id, delivery_id, attempted_at, status, error, latency_ms \
                   FROM webhook_delivery_attempts WHERE delivery_id = $1 ORDER BY id";
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, WebhookAttemptRow>(sql).bind(delivery).fetch_all(c).await)?,
        )
    }
}

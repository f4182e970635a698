//! The outbox as a queue of jobs (migration 0013): claiming due messages under
//! a lease, marking them sent or failed by the lease's holder only, the
//! dead letters, and the local mailbox. Messages are written by
//! `Db::insert_outbox` in the transaction of the change they tell of.
//!
//! A claim is one statement: on PostgreSQL the candidate rows are locked
//! with `FOR UPDATE SKIP LOCKED`, so concurrent claimers take disjoint rows
//! without waiting for each other; on SQLite the single writer makes the
//! guarded `UPDATE` atomic. Either way a row is claimed only while it is
//! unsent, not dead-lettered, due, and under no live lease.

use crate::{Backend, Bind, Db, Result};
use chrono::{DateTime, Utc};
use credence_domain::OrganizationId;

/// One message of the outbox with its delivery bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxJob {
    pub id: i64,
    pub kind: String,
    pub recipient_email: String,
    /// Sealed (see `service::audit::open_outbox`).
    pub payload: String,
    pub created_at: DateTime<Utc>,
    /// Claims so far, this one included.
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub sent_via: Option<String>,
}

impl OutboxJob {
    /// As the older readers take it (`service::audit::open_outbox`).
    pub fn message(&self) -> crate::OutboxMessage {
        crate::OutboxMessage {
            id: self.id,
            kind: self.kind.clone(),
            recipient_email: self.recipient_email.clone(),
            payload: self.payload.clone(),
            created_at: self.created_at,
        }
    }
}

/// One delivery to the local mailbox, with the message it delivered.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MailboxEntry {
    pub id: i64,
    pub outbox_id: i64,
    pub delivered_at: DateTime<Utc>,
    pub kind: String,
    pub recipient_email: String,
    pub payload: String,
    pub created_at: DateTime<Utc>,
    /// Whose mail it is (migration 0018); `None` for rows written before.
    pub organization_id: Option<i64>,
}

impl MailboxEntry {
    pub fn message(&self) -> crate::OutboxMessage {
        crate::OutboxMessage {
            id: self.outbox_id,
            kind: self.kind.clone(),
            recipient_email: self.recipient_email.clone(),
            payload: self.payload.clone(),
            created_at: self.created_at,
        }
    }
}

/// Which messages [`Db::list_outbox_jobs`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxSelection {
    /// Not sent yet: waiting, retrying or dead-lettered.
    Unsent,
    /// Dead-lettered only.
    DeadLettered,
    /// Everything, sent ones included.
    All,
}

const JOB_COLUMNS: &str =
    "id, kind, recipient_email, payload, created_at, attempts, next_attempt_at, \
     lease_until, last_error, dead_lettered_at, sent_at, sent_via";

/// Claimable at `$1`: unsent, alive, due and under no live lease.
const CLAIMABLE: &str = "sent_at IS NULL AND dead_lettered_at IS NULL \
     AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
     AND (lease_until IS NULL OR lease_until <= $1)";

impl Db {
    /// Claims up to `limit` due messages, oldest first, under a lease until
    /// `until` named `token`, counting an attempt for each.
    pub async fn claim_outbox(
        &mut self,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
        token: &str,
        limit: i64,
    ) -> Result<Vec<OutboxJob>> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // The guard is repeated outside the subquery: on PostgreSQL a row
        // another claimer changed meanwhile is re-checked, not taken twice.
        let sql = format!(
            "UPDATE outbox SET lease_until = $2, lease_token = $3, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox WHERE {CLAIMABLE} ORDER BY id LIMIT $4{lock}) \
             AND {CLAIMABLE} RETURNING {JOB_COLUMNS}"
        );
        let mut jobs = on_conn!(self, c => sqlx::query_as::<_, OutboxJob>(&sql)
            .bind(at).bind(until).bind(token).bind(limit)
            .fetch_all(c).await)?;
        jobs.sort_by_key(|job| job.id);
        Ok(jobs)
    }

    /// The holder of the lease `token` on message `id` delivered it via
    /// `via`; false (nothing changes) when the lease is no longer theirs.
    pub async fn mark_outbox_sent(
        &mut self,
        id: i64,
        token: &str,
        at: DateTime<Utc>,
        via: &str,
    ) -> Result<bool> {
        let sql = "UPDATE outbox SET sent_at = $1, sent_via = $2, lease_until = NULL, lease_token = NULL, \
                   last_error = NULL WHERE id = $3 AND lease_token = $4 AND sent_at IS NULL";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(at).bind(via).bind(id).bind(token)
            .execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// The holder of the lease `token` on message `id` failed to deliver it:
    /// the lease goes, `error` is kept, and the message is due again at
    /// `retry_at`, or dead-lettered when that is `None`.
    pub async fn mark_outbox_failed(
        &mut self,
        id: i64,
        token: &str,
        at: DateTime<Utc>,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let dead = retry_at.is_none().then_some(at);
        let sql = "UPDATE outbox SET lease_until = NULL, lease_token = NULL, last_error = $1, \
                   next_attempt_at = $2, dead_lettered_at = $3 \
                   WHERE id = $4 AND lease_token = $5 AND sent_at IS NULL";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(error).bind(retry_at).bind(dead).bind(id).bind(token)
            .execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// The holder of the lease `token` gives message `id` back untried: the
    /// lease goes and its attempt is not counted.
    pub async fn release_outbox(&mut self, id: i64, token: &str) -> Result<bool> {
        let sql =
            "UPDATE outbox SET lease_until = NULL, lease_token = NULL, attempts = attempts - 1 \
                   WHERE id = $1 AND lease_token = $2 AND sent_at IS NULL";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(id).bind(token).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Makes an unsent message due at once with a fresh count of attempts
    /// (an operator's retry, dead-lettered or not); false when there is no
    /// unsent message `id`. A live lease is left alone: its holder finishes.
    pub async fn retry_outbox(&mut self, id: i64) -> Result<bool> {
        let sql =
            "UPDATE outbox SET dead_lettered_at = NULL, next_attempt_at = NULL, attempts = 0 \
                   WHERE id = $1 AND sent_at IS NULL";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(id).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    pub async fn get_outbox_job(&mut self, id: i64) -> Result<Option<OutboxJob>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM outbox WHERE id = $1");
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, OutboxJob>(&sql).bind(id).fetch_optional(c).await)?,
        )
    }

    /// Messages of `selection`, oldest first, at most `limit`.
    pub async fn list_outbox_jobs(
        &mut self,
        selection: OutboxSelection,
        limit: i64,
    ) -> Result<Vec<OutboxJob>> {
        let filter = match selection {
            OutboxSelection::Unsent => "WHERE sent_at IS NULL",
            OutboxSelection::DeadLettered => {
                "WHERE dead_lettered_at IS NOT NULL AND sent_at IS NULL"
            }
            OutboxSelection::All => "",
        };
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM outbox {filter} ORDER BY id LIMIT {}",
            limit.max(0)
        );
        Ok(on_conn!(self, c => sqlx::query_as::<_, OutboxJob>(&sql).fetch_all(c).await)?)
    }

    /// Records a delivery of message `outbox_id` to the local mailbox, copied
    /// to `cc` (listed for each of them too).
    pub async fn insert_mailbox(
        &mut self,
        outbox_id: i64,
        at: DateTime<Utc>,
        cc: &[String],
    ) -> Result<i64> {
        let copied: Vec<String> = cc
            .iter()
            .map(|address| address.trim().to_lowercase())
            .filter(|address| !address.is_empty())
            .collect();
        let copied = (!copied.is_empty()).then(|| copied.join("\n"));
        let sql = "INSERT INTO mailbox (outbox_id, delivered_at, copied_to) VALUES ($1, $2, $3) RETURNING id";
        Ok(
            on_conn!(self, c => sqlx::query_scalar::<_, i64>(sql).bind(outbox_id).bind(at).bind(&copied).fetch_one(c).await)?,
        )
    }

    const MAILBOX_SELECT: &'static str =
        "SELECT m.id, m.outbox_id, m.delivered_at, o.kind, o.recipient_email, o.payload, o.created_at, \
         o.organization_id FROM mailbox m JOIN outbox o ON o.id = m.outbox_id";

    /// The local mailbox, newest first (all of it when `recipient` is `None`;
    /// else what was sent or copied to `recipient`).
    pub async fn list_mailbox(
        &mut self,
        recipient: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MailboxEntry>> {
        let sql = format!(
            "{} WHERE (CAST($1 AS TEXT) IS NULL OR LOWER(o.recipient_email) = LOWER($1) \
             OR (m.copied_to IS NOT NULL AND ('\n' || m.copied_to || '\n') \
                 LIKE ('%\n' || REPLACE(REPLACE(REPLACE(LOWER($1), '!', '!!'), '%', '!%'), '_', '!_') || '\n%') ESCAPE '!')) \
             ORDER BY m.id DESC LIMIT {}",
            Self::MAILBOX_SELECT,
            limit.max(0)
        );
        Ok(on_conn!(self, c => sqlx::query_as::<_, MailboxEntry>(&sql)
            .bind(recipient).fetch_all(c).await)?)
    }

    /// The local mailbox of `organizations` only, newest first: what the web
    /// shows an organization's owners and admins. Mail of no organization
    /// (written before migration 0018) is in nobody's.
    pub async fn list_mailbox_of(
        &mut self,
        organizations: &[OrganizationId],
        limit: i64,
    ) -> Result<Vec<MailboxEntry>> {
        if organizations.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = (1..=organizations.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "{} WHERE o.organization_id IN ({placeholders}) ORDER BY m.id DESC LIMIT {}",
            Self::MAILBOX_SELECT,
            limit.max(0)
        );
        let binds: Vec<Bind> = organizations.iter().map(|o| Bind::Int(o.0)).collect();
        Ok(
            on_conn!(self, c => bind_all!(sqlx::query_as::<_, MailboxEntry>(&sql), &binds).fetch_all(c).await)?,
        )
    }

    pub async fn get_mailbox(&mut self, id: i64) -> Result<Option<MailboxEntry>> {
        let sql = format!("{} WHERE m.id = $1", Self::MAILBOX_SELECT);
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, MailboxEntry>(&sql).bind(id).fetch_optional(c).await)?,
        )
    }
}

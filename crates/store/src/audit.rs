//! The audit log and the notification outbox: both are written inside the
//! transaction of the change they describe, so that neither can exist without
//! the change nor the change without them.

use crate::{now, Bind, Db, Error, Result};
use chrono::{DateTime, Utc};
use credence_domain::{OrganizationId, TeamId, UserId};

/// One audit entry to write. `details` is a JSON object as text, and never holds
/// a secret (the caller's duty; tests scan for it).
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    pub organization: OrganizationId,
    pub team: Option<TeamId>,
    pub actor: Option<UserId>,
    /// Who acted, as people read it: a name and email, a token's name, "operator".
    pub actor_label: &'a str,
    pub event: &'a str,
    pub target_kind: &'a str,
    pub target_id: &'a str,
    pub details: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub organization_id: i64,
    pub team_id: Option<i64>,
    pub actor_user_id: Option<i64>,
    pub actor_label: String,
    pub event: String,
    pub target_kind: String,
    pub target_id: String,
    pub details: String,
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub organization: Option<OrganizationId>,
    /// Only entries of these teams (a team admin's view); `None` = no team limit.
    pub teams: Option<Vec<TeamId>>,
    pub date_from: Option<DateTime<Utc>>,
    pub date_to: Option<DateTime<Utc>>,
    pub events: Vec<String>,
    pub actor: Option<UserId>,
    pub target_id: Option<String>,
    pub offset: i64,
    pub limit: i64,
    pub oldest_first: bool,
}

impl AuditFilter {
    /// The WHERE clause and its binds, numbered from `$1`.
    fn where_clause(&self) -> (String, Vec<Bind>) {
        let mut clauses = Vec::new();
        let mut binds = Vec::new();
        let mut push = |clause: &str, bind: Bind, binds: &mut Vec<Bind>| {
            binds.push(bind);
            clauses.push(clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(organization) = self.organization {
            push("organization_id = ?", Bind::Int(organization.0), &mut binds);
        }
        if let Some(from) = self.date_from {
            push("occurred_at >= ?", Bind::Time(from), &mut binds);
        }
        if let Some(to) = self.date_to {
            push("occurred_at <= ?", Bind::Time(to), &mut binds);
        }
        if let Some(actor) = self.actor {
            push("actor_user_id = ?", Bind::Int(actor.0), &mut binds);
        }
        if let Some(target) = &self.target_id {
            push("target_id = ?", Bind::Text(target.clone()), &mut binds);
        }
        let mut clauses_sql = clauses;
        if !self.events.is_empty() {
            let mut marks = Vec::new();
            for event in &self.events {
                binds.push(Bind::Text(event.clone()));
                marks.push(format!("${}", binds.len()));
            }
            clauses_sql.push(format!("event IN ({})", marks.join(", ")));
        }
        if let Some(teams) = &self.teams {
            if teams.is_empty() {
                clauses_sql.push("1 = 0".into());
            } else {
                let mut marks = Vec::new();
                for team in teams {
                    binds.push(Bind::Int(team.0));
                    marks.push(format!("${}", binds.len()));
                }
                clauses_sql.push(format!("team_id IN ({})", marks.join(", ")));
            }
        }
        let sql = if clauses_sql.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses_sql.join(" AND "))
        };
        (sql, binds)
    }
}

/// The message of the trigger that keeps entries younger than 12 months
/// (migrations `0002_credential_requests.sql`, both dialects).
const KEPT_A_YEAR: &str = "audit entries younger than 12 months are kept";

const AUDIT_COLUMNS: &str =
    "id, occurred_at, organization_id, team_id, actor_user_id, actor_label, event, target_kind, target_id, details";

impl Db {
    pub async fn insert_audit(&mut self, entry: &NewAuditEntry<'_>) -> Result<()> {
        let sql = "INSERT INTO audit_log (occurred_at, organization_id, team_id, actor_user_id, actor_label, event, \
                   target_kind, target_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        on_conn!(self, c => sqlx::query(sql)
            .bind(now())
            .bind(entry.organization.0)
            .bind(entry.team.map(|t| t.0))
            .bind(entry.actor.map(|u| u.0))
            .bind(entry.actor_label)
            .bind(entry.event)
            .bind(entry.target_kind)
            .bind(entry.target_id)
            .bind(entry.details)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Entries matching `filter`, newest first unless asked otherwise, and the
    /// total count of matches.
    pub async fn list_audit(&mut self, filter: &AuditFilter) -> Result<(Vec<AuditEntry>, i64)> {
        let (where_sql, binds) = filter.where_clause();
        let order = if filter.oldest_first { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log {where_sql} ORDER BY occurred_at {order}, id {order} LIMIT {} OFFSET {}",
            filter.limit.max(0),
            filter.offset.max(0)
        );
        let entries = on_conn!(self, c => bind_all!(sqlx::query_as::<_, AuditEntry>(&sql), &binds).fetch_all(c).await)?;
        let count_sql = format!("SELECT COUNT(*) FROM audit_log {where_sql}");
        let total = on_conn!(self, c => bind_all!(sqlx::query_scalar::<_, i64>(&count_sql), &binds).fetch_one(c).await)?;
        Ok((entries, total))
    }

    pub async fn get_audit_entry(&mut self, id: i64) -> Result<Option<AuditEntry>> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id = $1");
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, AuditEntry>(&sql).bind(id).fetch_optional(c).await)?,
        )
    }

    /// The distinct events, actors and teams present under `filter` (for the
    /// filter pickers), each sorted.
    pub async fn audit_filter_values(&mut self, filter: &AuditFilter) -> Result<AuditFilterValues> {
        let (where_sql, binds) = filter.where_clause();
        let events_sql = format!("SELECT DISTINCT event FROM audit_log {where_sql} ORDER BY event");
        let events = on_conn!(self, c => bind_all!(sqlx::query_scalar::<_, String>(&events_sql), &binds).fetch_all(c).await)?;
        let actors_sql = format!(
            "SELECT DISTINCT actor_user_id, actor_label FROM audit_log {where_sql} {} actor_user_id IS NOT NULL ORDER BY actor_label",
            if where_sql.is_empty() { "WHERE" } else { "AND" }
        );
        let actors = on_conn!(self, c => bind_all!(sqlx::query_as::<_, (i64, String)>(&actors_sql), &binds).fetch_all(c).await)?;
        let teams_sql = format!(
            "SELECT DISTINCT team_id FROM audit_log {where_sql} {} team_id IS NOT NULL ORDER BY team_id",
            if where_sql.is_empty() { "WHERE" } else { "AND" }
        );
        let teams = on_conn!(self, c => bind_all!(sqlx::query_scalar::<_, i64>(&teams_sql), &binds).fetch_all(c).await)?;
        Ok(AuditFilterValues {
            events,
            actors,
            teams,
        })
    }

    /// Deletes entries older than `before`; the database itself refuses to delete
    /// anything younger than 12 months, and that refusal (which deletes nothing)
    /// comes back as a `Conflict` saying so.
    pub async fn purge_audit_before(&mut self, before: DateTime<Utc>) -> Result<u64> {
        let sql = "DELETE FROM audit_log WHERE occurred_at < $1";
        on_conn!(self, c => sqlx::query(sql).bind(before).execute(c).await.map(|r| r.rows_affected()))
            .map_err(|error| match &error {
                sqlx::Error::Database(db) if db.message().contains(KEPT_A_YEAR) => Error::Conflict(format!(
                    "the database keeps audit entries younger than 12 months and refused the purge before {}; nothing was deleted",
                    before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )),
                _ => error.into(),
            })
    }

    /// One page of the entries matching `filter` in its order (`limit` of them,
    /// `offset` ignored), starting after the entry at `after` (its time and id).
    /// Paging by the last entry seen, not by an offset, keeps a long export
    /// steady while new entries arrive.
    pub async fn list_audit_after(
        &mut self,
        filter: &AuditFilter,
        after: Option<(DateTime<Utc>, i64)>,
    ) -> Result<Vec<AuditEntry>> {
        let (mut where_sql, mut binds) = filter.where_clause();
        let (order, beyond) = if filter.oldest_first {
            ("ASC", ">")
        } else {
            ("DESC", "<")
        };
        if let Some((occurred_at, id)) = after {
            binds.push(Bind::Time(occurred_at));
            let time = binds.len();
            binds.push(Bind::Int(id));
            let id = binds.len();
            let keyset = format!(
                "(occurred_at {beyond} ${time} OR (occurred_at = ${time} AND id {beyond} ${id}))"
            );
            where_sql = if where_sql.is_empty() {
                format!("WHERE {keyset}")
            } else {
                format!("{where_sql} AND {keyset}")
            };
        }
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log {where_sql} ORDER BY occurred_at {order}, id {order} LIMIT {}",
            filter.limit.max(0)
        );
        Ok(
            on_conn!(self, c => bind_all!(sqlx::query_as::<_, AuditEntry>(&sql), &binds).fetch_all(c).await)?,
        )
    }

    /// Queues a notification; delivered later by the outbox worker. Its
    /// payload is bound to its row: `seal` gets the new row's id and answers
    /// the sealed payload, which is stored in the same transaction.
    /// `organization` is whose mail it is: the web's mailbox shows it to that
    /// organization's owners and admins only (migration 0018).
    pub async fn insert_outbox<E: From<Error>>(
        &mut self,
        organization: Option<OrganizationId>,
        kind: &str,
        recipient_email: &str,
        seal: impl FnOnce(i64) -> std::result::Result<String, E>,
    ) -> std::result::Result<i64, E> {
        // The id exists only once the row does: insert with an empty payload
        // (never visible outside the caller's transaction), then fill it in.
        let sql = "INSERT INTO outbox (kind, recipient_email, payload, aad_scheme, created_at, organization_id) \
                   VALUES ($1, $2, '', $3, $4, $5) RETURNING id";
        let id =
            on_conn!(self, c => sqlx::query_scalar::<_, i64>(sql).bind(kind).bind(recipient_email)
            .bind(crate::AAD_OWNER_BOUND).bind(now()).bind(organization.map(|o| o.0)).fetch_one(c).await)
            .map_err(Error::from)?;
        let payload = seal(id)?;
        let sql = "UPDATE outbox SET payload = $1 WHERE id = $2";
        on_conn!(self, c => sqlx::query(sql).bind(&payload).bind(id)
            .execute(c).await.map(|r| r.rows_affected()))
        .map_err(Error::from)?;
        Ok(id)
    }

    /// Undelivered notifications, oldest first.
    pub async fn list_unsent_outbox(&mut self) -> Result<Vec<OutboxMessage>> {
        let sql = "SELECT id, kind, recipient_email, payload, created_at FROM outbox WHERE sent_at IS NULL ORDER BY id";
        Ok(on_conn!(self, c => sqlx::query_as::<_, OutboxMessage>(sql).fetch_all(c).await)?)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilterValues {
    pub events: Vec<String>,
    /// (user id, label) of each actor.
    pub actors: Vec<(i64, String)>,
    pub teams: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxMessage {
    pub id: i64,
    pub kind: String,
    pub recipient_email: String,
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_set_of_teams_selects_no_entry_rather_than_every_one() {
        let filter = AuditFilter {
            organization: Some(OrganizationId(1)),
            teams: Some(Vec::new()),
            ..Default::default()
        };
        let (sql, binds) = filter.where_clause();
        assert_eq!(sql, "WHERE organization_id = $1 AND 1 = 0");
        assert_eq!(binds.len(), 1);
    }
}

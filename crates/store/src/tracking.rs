//! Intake tracking and reminders (SPEC §9, migration 0014): a request's
//! client, project and owner; the teams' reminder policies; the reminder
//! scan's reads and its guarded claims; the per-project rollups.
//!
//! The scan reads only indexed, due rows (`next_nudge_at`, `sla_due_at`
//! under partial indexes). Every instance scans: a nudge is claimed by one
//! guarded `UPDATE` that matches only the schedule the scanner read
//! (`next_nudge_at` and `nudge_count` unchanged), so when two instances claim
//! the same nudge one changes a row and the other none. On PostgreSQL the
//! loser waits for the winner's row lock and re-checks the guard against the
//! committed row; SQLite's `BEGIN IMMEDIATE` runs the two one after the other.

use crate::{now, Bind, Db, RequestFilter, Result};
use chrono::{DateTime, Utc};
use credence_domain::{RequestId, TeamId, UserId};

/// A team's reminder policy as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReminderPolicyRow {
    pub team_id: i64,
    pub first_after_hours: i64,
    pub every_hours: i64,
    pub max_count: i64,
    pub sla_hours: i64,
    pub email: bool,
    pub sponsor_cc: Option<String>,
    /// The sealed Slack incoming-webhook URL (`secrets`), if any.
    pub slack_secret_id: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<i64>,
}

/// Something the scan found due: a request and the time it was due at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub request: RequestId,
    pub at: DateTime<Utc>,
}

/// One line of the rollups per project.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProjectRollup {
    pub team_id: i64,
    pub project: Option<String>,
    pub total: i64,
    pub authorized: i64,
    pub pending: i64,
    pub breaches: i64,
}

#[derive(sqlx::FromRow)]
struct DueRow {
    id: String,
    due_at: DateTime<Utc>,
}

impl Db {
    pub async fn get_reminder_policy(&mut self, team: TeamId) -> Result<Option<ReminderPolicyRow>> {
        let sql = "SELECT team_id, first_after_hours, every_hours, max_count, sla_hours, email, sponsor_cc, \
                   slack_secret_id, updated_at, updated_by FROM reminder_policies WHERE team_id = $1";
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, ReminderPolicyRow>(sql).bind(team.0).fetch_optional(c).await)?,
        )
    }

    /// Stores a team's policy, replacing the one it had.
    pub async fn put_reminder_policy(&mut self, policy: &ReminderPolicyRow) -> Result<()> {
        let sql = "INSERT INTO reminder_policies (team_id, first_after_hours, every_hours, max_count, sla_hours, \
                   email, sponsor_cc, slack_secret_id, updated_at, updated_by) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                   ON CONFLICT (team_id) DO UPDATE SET first_after_hours = excluded.first_after_hours, \
                   every_hours = excluded.every_hours, max_count = excluded.max_count, \
                   sla_hours = excluded.sla_hours, email = excluded.email, sponsor_cc = excluded.sponsor_cc, \
                   slack_secret_id = excluded.slack_secret_id, updated_at = excluded.updated_at, \
                   updated_by = excluded.updated_by";
        on_conn!(self, c => sqlx::query(sql)
            .bind(policy.team_id).bind(policy.first_after_hours).bind(policy.every_hours)
            .bind(policy.max_count).bind(policy.sla_hours).bind(policy.email).bind(&policy.sponsor_cc)
            .bind(&policy.slack_secret_id).bind(policy.updated_at).bind(policy.updated_by)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Sets a request's tracking fields (`None` clears client and project;
    /// the owner is always someone).
    pub async fn update_tracking(
        &mut self,
        id: RequestId,
        client: Option<&str>,
        project: Option<&str>,
        owner: UserId,
    ) -> Result<()> {
        let sql = "UPDATE credential_requests SET client = $1, project = $2, owner_id = $3, updated_at = $4 WHERE id = $5";
        on_conn!(self, c => sqlx::query(sql).bind(client).bind(project).bind(owner.0).bind(now())
            .bind(id.to_string()).execute(c).await.map(|r| r.rows_affected()))?;
        self.requests_changed();
        Ok(())
    }

    /// The ids of `team`'s requests still awaiting their recipient (after a
    /// policy change, their schedules are computed again).
    pub async fn active_requests_of_team(&mut self, team: TeamId) -> Result<Vec<RequestId>> {
        let sql = "SELECT id FROM credential_requests WHERE team_id = $1 AND status IN ('pending', 'incomplete') ORDER BY id";
        let ids = on_conn!(self, c => sqlx::query_scalar::<_, String>(sql).bind(team.0).fetch_all(c).await)?;
        ids.iter()
            .map(|id| {
                id.parse()
                    .map_err(|_| crate::Error::Corrupt(format!("request id {id:?}")))
            })
            .collect()
    }

    /// Sets a request's schedule anew; the SLA deadline only while it was not
    /// looked at yet.
    pub async fn reschedule_request(
        &mut self,
        id: RequestId,
        next_nudge_at: Option<DateTime<Utc>>,
        sla_due_at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE credential_requests SET next_nudge_at = $1, \
                   sla_due_at = CASE WHEN sla_checked_at IS NULL THEN $2 ELSE sla_due_at END WHERE id = $3";
        on_conn!(self, c => sqlx::query(sql).bind(next_nudge_at).bind(sla_due_at).bind(id.to_string())
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Up to `limit` requests whose reminder is due at `at`, earliest first
    /// (index `credential_requests_nudge_due`).
    pub async fn requests_due_for_nudge(
        &mut self,
        at: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Due>> {
        let sql = "SELECT id, next_nudge_at AS due_at FROM credential_requests \
                   WHERE next_nudge_at IS NOT NULL AND next_nudge_at <= $1 ORDER BY next_nudge_at LIMIT $2";
        let rows = on_conn!(self, c => sqlx::query_as::<_, DueRow>(sql).bind(at).bind(limit).fetch_all(c).await)?;
        due(rows)
    }

    /// Up to `limit` requests whose SLA deadline passed at `at` and was not
    /// looked at yet (index `credential_requests_sla_due`).
    pub async fn requests_due_for_sla(
        &mut self,
        at: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Due>> {
        let sql = "SELECT id, sla_due_at AS due_at FROM credential_requests \
                   WHERE sla_checked_at IS NULL AND sla_due_at IS NOT NULL AND sla_due_at <= $1 \
                   ORDER BY sla_due_at LIMIT $2";
        let rows = on_conn!(self, c => sqlx::query_as::<_, DueRow>(sql).bind(at).bind(limit).fetch_all(c).await)?;
        due(rows)
    }

    /// Claims the nudge of request `id` that was due at `seen_next` after
    /// `seen_count` nudges: counts it, notes `at` as the last nudge and
    /// `next` as the next. False (nothing changes) when another claimer took
    /// it first, or the schedule changed meanwhile.
    pub async fn claim_nudge(
        &mut self,
        id: RequestId,
        seen_next: DateTime<Utc>,
        seen_count: i64,
        at: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let sql = "UPDATE credential_requests SET nudge_count = nudge_count + 1, last_nudge_at = $1, next_nudge_at = $2 \
                   WHERE id = $3 AND next_nudge_at = $4 AND nudge_count = $5";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(at).bind(next).bind(id.to_string())
            .bind(seen_next).bind(seen_count).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Ends the reminders of request `id` (nothing pending, or the maximum
    /// reached), if its schedule is still the one seen.
    pub async fn stop_nudges(&mut self, id: RequestId, seen_next: DateTime<Utc>) -> Result<bool> {
        let sql = "UPDATE credential_requests SET next_nudge_at = NULL WHERE id = $1 AND next_nudge_at = $2";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(id.to_string()).bind(seen_next)
            .execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Claims the look at request `id`'s SLA deadline (once ever): notes `at`,
    /// and as the time the owner was told when `breached`. False when another
    /// claimer looked first.
    pub async fn claim_sla_check(
        &mut self,
        id: RequestId,
        at: DateTime<Utc>,
        breached: bool,
    ) -> Result<bool> {
        let sql = "UPDATE credential_requests SET sla_checked_at = $1, \
                   sla_notified_at = CASE WHEN $2 THEN $1 ELSE NULL END \
                   WHERE id = $3 AND sla_checked_at IS NULL";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(at).bind(breached).bind(id.to_string())
            .execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// The rollups per team and project of the requests `filter` selects
    /// (its scope and narrowing filters; paging and sorting are ignored);
    /// breaches counted at `at`.
    pub async fn project_rollups(
        &mut self,
        filter: &RequestFilter,
        at: DateTime<Utc>,
    ) -> Result<Vec<ProjectRollup>> {
        let mut binds = Vec::new();
        let where_sql = filter.where_clause(&mut binds);
        binds.push(Bind::Time(at));
        let at_mark = binds.len();
        let sql = format!(
            "SELECT team_id, project, COUNT(*) AS total, \
             SUM(CASE WHEN status = 'authorized' THEN 1 ELSE 0 END) AS authorized, \
             SUM(CASE WHEN status IN ('pending', 'incomplete') THEN 1 ELSE 0 END) AS pending, \
             SUM(CASE WHEN status <> 'authorized' AND sla_due_at IS NOT NULL AND sla_due_at <= ${at_mark} THEN 1 ELSE 0 END) AS breaches \
             FROM credential_requests {where_sql} GROUP BY team_id, project"
        );
        let mut rows = on_conn!(self, c => bind_all!(sqlx::query_as::<_, ProjectRollup>(&sql), &binds).fetch_all(c).await)?;
        // The same order on both databases (they sort NULL differently).
        rows.sort_by(|a, b| (a.team_id, &a.project).cmp(&(b.team_id, &b.project)));
        Ok(rows)
    }
}

/// When a request was created and its status now (the tracker's chart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedStatus {
    pub created_at: DateTime<Utc>,
    pub status: credence_domain::RequestStatus,
}

#[derive(sqlx::FromRow)]
struct CreatedStatusRow {
    created_at: DateTime<Utc>,
    status: String,
}

impl Db {
    /// The creation time and status of every request of `filter`'s scope
    /// created since `since` (two narrow columns, through the index on the
    /// team and creation time).
    pub async fn request_statuses_since(
        &mut self,
        filter: &RequestFilter,
        since: DateTime<Utc>,
    ) -> Result<Vec<CreatedStatus>> {
        let mut binds = Vec::new();
        let where_sql = filter.where_clause(&mut binds);
        binds.push(Bind::Time(since));
        let sql = format!(
            "SELECT created_at, status FROM credential_requests {where_sql} AND created_at >= ${}",
            binds.len()
        );
        let rows = on_conn!(self, c => bind_all!(sqlx::query_as::<_, CreatedStatusRow>(&sql), &binds).fetch_all(c).await)?;
        rows.into_iter()
            .map(|row| {
                Ok(CreatedStatus {
                    created_at: row.created_at,
                    status: credence_domain::RequestStatus::parse("status", &row.status).map_err(
                        |_| crate::Error::Corrupt(format!("request status {:?}", row.status)),
                    )?,
                })
            })
            .collect()
    }
}

impl Db {
    /// The ids of `team`'s requests in project `project` (exactly that
    /// label), oldest first (index `credential_requests_project`): what a
    /// project's teardown goes through.
    pub async fn requests_of_project(
        &mut self,
        team: TeamId,
        project: &str,
    ) -> Result<Vec<RequestId>> {
        let sql = "SELECT id FROM credential_requests WHERE team_id = $1 AND project = $2 ORDER BY created_at, id";
        let ids = on_conn!(self, c => sqlx::query_scalar::<_, String>(sql).bind(team.0).bind(project).fetch_all(c).await)?;
        ids.iter()
            .map(|id| {
                id.parse()
                    .map_err(|_| crate::Error::Corrupt(format!("request id {id:?}")))
            })
            .collect()
    }
}

fn due(rows: Vec<DueRow>) -> Result<Vec<Due>> {
    rows.into_iter()
        .map(|row| {
            Ok(Due {
                request: row
                    .id
                    .parse()
                    .map_err(|_| crate::Error::Corrupt(format!("request id {:?}", row.id)))?,
                at: row.due_at,
            })
        })
        .collect()
}

//! The broker's usage log: what was done with a connection, call by call.
//! Written in batches by the broker's writer; read by the connection's team and
//! by the recipient of the credential behind it. Rows are never updated.

use crate::{Db, Result};
use chrono::{DateTime, Utc};

/// One proxied call to record. Never holds a raw path, a query or a body.
#[derive(Debug, Clone)]
pub struct NewUsage {
    pub occurred_at: DateTime<Utc>,
    pub organization_id: i64,
    pub team_id: i64,
    pub connection_id: i64,
    /// The requested credential the connection was authorized for, if any.
    pub credential_id: Option<String>,
    /// The caller's `X-Credence-Consumer` label.
    pub consumer: Option<String>,
    pub actor_user_id: Option<i64>,
    /// Who called, as people read it: the user's email, and the token's name.
    pub actor_label: String,
    pub method: String,
    /// The matched operation's path pattern; `None` when no operation matched.
    pub path_template: Option<String>,
    /// What the caller was answered.
    pub status: i64,
    /// What the app answered; `None` when the call was not forwarded.
    pub upstream_status: Option<i64>,
    pub latency_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Usage {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub organization_id: i64,
    pub team_id: i64,
    pub connection_id: i64,
    pub credential_id: Option<String>,
    pub consumer: Option<String>,
    pub actor_user_id: Option<i64>,
    pub actor_label: String,
    pub method: String,
    pub path_template: Option<String>,
    pub status: i64,
    pub upstream_status: Option<i64>,
    pub latency_ms: i64,
}

const USAGE_COLUMNS: &str = "id, occurred_at, organization_id, team_id, connection_id, \
    credential_id, consumer, actor_user_id, actor_label, method, path_template, status, \
    upstream_status, latency_ms";

/// Rows in one `INSERT` of [`Db::insert_usages`]: 13 binds a row, so 64 rows
/// stay far below either database's limit on binds (SQLite 32,766,
/// PostgreSQL 65,535) and the statement text stays short.
const USAGE_ROWS_PER_STATEMENT: usize = 64;
const USAGE_INSERT_COLUMNS: usize = 13;

/// `INSERT … VALUES (…), (…)` for `rows` usage rows, numbered binds.
fn insert_usages_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO connection_usage (occurred_at, organization_id, team_id, \
         connection_id, credential_id, consumer, actor_user_id, actor_label, method, \
         path_template, status, upstream_status, latency_ms) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        let marks: Vec<String> = (1..=USAGE_INSERT_COLUMNS)
            .map(|column| format!("${}", row * USAGE_INSERT_COLUMNS + column))
            .collect();
        sql.push('(');
        sql.push_str(&marks.join(", "));
        sql.push(')');
    }
    sql
}

impl Db {
    /// Stores `usages`, many rows to a statement: the broker's writer hands
    /// over a batch of up to a few hundred at once, and one statement per
    /// row would cost a round trip each (on SQLite a hop to its worker
    /// thread and back, which at full load was most of what the writer cost).
    pub async fn insert_usages(&mut self, usages: &[NewUsage]) -> Result<()> {
        for rows in usages.chunks(USAGE_ROWS_PER_STATEMENT) {
            let sql = insert_usages_sql(rows.len());
            on_conn!(self, c => {
                let mut query = sqlx::query(&sql);
                for usage in rows {
                    query = query
                        .bind(usage.occurred_at).bind(usage.organization_id).bind(usage.team_id)
                        .bind(usage.connection_id).bind(&usage.credential_id).bind(&usage.consumer)
                        .bind(usage.actor_user_id).bind(&usage.actor_label).bind(&usage.method)
                        .bind(&usage.path_template).bind(usage.status).bind(usage.upstream_status)
                        .bind(usage.latency_ms);
                }
                query.execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// The calls made with connection `id`, newest first, at most `limit`.
    pub async fn list_usage_of_connection(&mut self, id: i64, limit: i64) -> Result<Vec<Usage>> {
        let sql = format!(
            "SELECT {USAGE_COLUMNS} FROM connection_usage WHERE connection_id = $1 \
             ORDER BY occurred_at DESC, id DESC LIMIT $2"
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, Usage>(&sql).bind(id).bind(limit).fetch_all(c).await)?,
        )
    }

    /// The calls made with the connections of requested credential `id`
    /// (every authorization of it), newest first, at most `limit`.
    pub async fn list_usage_of_credential(&mut self, id: &str, limit: i64) -> Result<Vec<Usage>> {
        let sql = format!(
            "SELECT {USAGE_COLUMNS} FROM connection_usage WHERE credential_id = $1 \
             ORDER BY occurred_at DESC, id DESC LIMIT $2"
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, Usage>(&sql).bind(id).bind(limit).fetch_all(c).await)?,
        )
    }

    /// Who used connection `id` since `since` (the consumer label, else the
    /// caller), sorted, at most 50.
    pub async fn consumers_of_connection(
        &mut self,
        id: i64,
        since: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let sql = "SELECT DISTINCT COALESCE(consumer, actor_label) FROM connection_usage \
                   WHERE connection_id = $1 AND occurred_at >= $2 ORDER BY 1 LIMIT 50";
        Ok(
            on_conn!(self, c => sqlx::query_scalar::<_, String>(sql).bind(id).bind(since).fetch_all(c).await)?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_row_insert_numbers_every_bind_once_in_order() {
        let sql = insert_usages_sql(2);
        let values = sql.split(" VALUES ").nth(1).unwrap();
        let expected: Vec<String> = (0..2)
            .map(|row| {
                let marks: Vec<String> = (1..=13).map(|c| format!("${}", row * 13 + c)).collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        assert_eq!(values, expected.join(", "));
        const { assert!(USAGE_ROWS_PER_STATEMENT * USAGE_INSERT_COLUMNS < 32_766) };
    }
}

//! Raw SQL on the test's database, on either backend, with a connection of its
//! own that bypasses Credence: to look at what is stored, or to stand in for an
//! intruder, an older version or a clock that moved on.

use super::TestApp;
use chrono::{DateTime, Utc};
use credence_store::Backend;
use sqlx::{Connection, Postgres, Sqlite};

/// A connection to a test database, of either backend.
pub enum Sql {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// A value both backends decode (text, integers, timestamps, options of them).
pub trait Scalar:
    Send
    + Unpin
    + for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
{
}

impl<T> Scalar for T where
    T: Send
        + Unpin
        + for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
{
}

impl Sql {
    /// Connects to the database at `url` (`sqlite://…` or `postgres://…`).
    pub async fn open(url: &str) -> Sql {
        Sql::connect(Backend::of_url(url).expect("a database URL"), url).await
    }

    /// Connects to the `backend` database at `url`.
    pub async fn connect(backend: Backend, url: &str) -> Sql {
        match backend {
            Backend::Sqlite => Sql::Sqlite(sqlx::SqliteConnection::connect(url).await.unwrap()),
            Backend::Postgres => Sql::Postgres(sqlx::PgConnection::connect(url).await.unwrap()),
        }
    }

    /// Runs `sql`; answers the rows it changed, or the database's refusal.
    pub async fn try_execute(&mut self, sql: &str) -> Result<u64, sqlx::Error> {
        match self {
            Sql::Sqlite(c) => sqlx::query(sql).execute(c).await.map(|r| r.rows_affected()),
            Sql::Postgres(c) => sqlx::query(sql).execute(c).await.map(|r| r.rows_affected()),
        }
    }

    /// Runs `sql`, which must succeed.
    pub async fn execute(&mut self, sql: &str) {
        self.try_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs `sql` with its one parameter bound to `at`.
    pub async fn execute_at(&mut self, sql: &str, at: DateTime<Utc>) {
        match self {
            Sql::Sqlite(c) => sqlx::query(sql).bind(at).execute(c).await.map(drop),
            Sql::Postgres(c) => sqlx::query(sql).bind(at).execute(c).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The one column of every row of `sql`.
    pub async fn column<T: Scalar>(&mut self, sql: &str) -> Vec<T> {
        match self {
            Sql::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await,
            Sql::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The one value of `sql` (a count, say).
    pub async fn value<T: Scalar>(&mut self, sql: &str) -> T {
        match self {
            Sql::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await,
            Sql::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Closes the connection (SQLite releases its file lock at once).
    pub async fn close(self) {
        match self {
            Sql::Sqlite(c) => c.close().await.unwrap(),
            Sql::Postgres(c) => c.close().await.unwrap(),
        }
    }
}

impl TestApp {
    /// A raw connection to this app's database.
    pub async fn sql(&self) -> Sql {
        Sql::connect(self.backend, &self.database_url).await
    }

    /// Every text column of every table, concatenated: what a stolen database shows.
    pub async fn database_text(&self) -> String {
        self.sql().await.every_text().await
    }
}

impl Sql {
    /// Every text column of every table, concatenated: what a stolen database shows.
    pub async fn every_text(&mut self) -> String {
        let mut text = String::new();
        let tables = [
            "organizations",
            "users",
            "teams",
            "organization_members",
            "team_members",
            "feature_grants",
            "invitations",
            "sessions",
            "setup_links",
            "api_tokens",
            "secrets",
            "feature_requests",
            "credential_requests",
            "requested_credentials",
            "connections",
            "outbox",
            "audit_log",
            "two_factor",
            "two_factor_recovery_codes",
            "sign_in_challenges",
        ];
        match self {
            Sql::Sqlite(conn) => {
                for table in tables {
                    let rows: Vec<sqlx::sqlite::SqliteRow> =
                        sqlx::query(&format!("SELECT * FROM {table}"))
                            .fetch_all(&mut *conn)
                            .await
                            .unwrap();
                    for row in rows {
                        use sqlx::{Row, ValueRef};
                        for i in 0..row.len() {
                            if row.try_get_raw(i).map(|v| v.is_null()).unwrap_or(true) {
                                continue;
                            }
                            if let Ok(value) = row.try_get::<String, _>(i) {
                                text.push_str(&value);
                                text.push('\n');
                            }
                        }
                    }
                }
            }
            Sql::Postgres(conn) => {
                for table in tables {
                    let rows: Vec<(String,)> =
                        sqlx::query_as(&format!("SELECT t::text FROM {table} t"))
                            .fetch_all(&mut *conn)
                            .await
                            .unwrap();
                    for (row,) in rows {
                        text.push_str(&row);
                        text.push('\n');
                    }
                }
            }
        }
        text
    }
}

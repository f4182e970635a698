//! The store: every SQL statement Credence runs, for SQLite and PostgreSQL.
//!
//! One `Store` wraps a pool of either backend, chosen from the database URL's
//! scheme. Queries are written once in the SQL both dialects share (`$1`
//! placeholders, `RETURNING`, `ON CONFLICT`) and run through [`Db`], a pooled
//! connection or a transaction of either backend; where the dialects really
//! differ, the difference stays in this crate. Migrations live per dialect in
//! `migrations/sqlite` and `migrations/postgres`.
//!
//! **Invariant:** nothing outside this crate writes SQL or sees a sqlx type.

/// Runs the same query text on whichever backend `$db` holds: `$c` is bound to a
/// `&mut SqliteConnection` in one arm and a `&mut PgConnection` in the other.
macro_rules! on_conn {
    ($db:expr, $c:ident => $body:expr) => {
        match $db.conn() {
            $crate::Conn::Sqlite($c) => $body,
            $crate::Conn::Postgres($c) => $body,
        }
    };
}

/// A value bound into a query built at run time.
#[derive(Debug)]
pub(crate) enum Bind {
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
}

/// Binds `$binds` onto the query `$query` of whichever backend it is for.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                $crate::Bind::Int(v) => query.bind(*v),
                $crate::Bind::Text(v) => query.bind(v.clone()),
                $crate::Bind::Time(v) => query.bind(*v),
            };
        }
        query
    }};
}

mod audit;
mod auth;
mod broker;
mod connections;
mod error;
mod features;
mod heartbeats;
mod identity;
mod model;
mod oauth;
mod one_row;
mod outbox;
mod requests;
mod secrets;
mod seek;
mod sign_in;
mod tracking;
mod two_factor;
mod usage;
mod webhooks;

pub use audit::{AuditEntry, AuditFilter, AuditFilterValues, NewAuditEntry, OutboxMessage};
pub use broker::ConnectionForCall;
pub use connections::{Connection, NewConnection};
pub use error::Error;
pub use features::FeatureRequest;
pub use heartbeats::InstanceHeartbeat;
pub use identity::Invitation;
pub use model::*;
pub use oauth::{NewOAuthFlow, OAuthFlow};
pub use outbox::{MailboxEntry, OutboxJob, OutboxSelection};
pub use requests::{
    CredentialChange, CredentialRequest, NewCredential, NewRequest, RequestFilter, RequestScope,
    RequestedCredential, TrackingView,
};
pub use secrets::{SealedColumn, SealedRow, AAD_OWNER_BOUND};
pub use sign_in::CountedAttempt;
pub use tracking::{CreatedStatus, Due, ProjectRollup, ReminderPolicyRow};
pub use two_factor::{SignInChallenge, TwoFactor};
pub use usage::{NewUsage, Usage};
pub use webhooks::{
    NewWebhookEndpoint, WebhookAttempt, WebhookAttemptRow, WebhookDelivery, WebhookEndpoint,
};

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The current time as stored: UTC, microsecond precision (what PostgreSQL keeps),
/// so a value read back equals the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// How long a SQLite writer waits for its turn before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names, from its scheme alone.
    pub fn of_url(url: &str) -> Result<Backend> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme).unwrap_or("");
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(Error::UnsupportedUrl(scheme.to_string())),
        }
    }
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// SQLite takes one writer at a time. Its own wait for the write lock
    /// (the busy handler) sleeps in growing steps and lets a newcomer pass
    /// one that has waited long, so under concurrent writes the tail grew to
    /// 134 ms; writers of this process queue here instead, first come first
    /// served, and only another process's writer meets the busy handler.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Where list pages ended, for the next page to seek from (`seek`).
    seeks: Arc<seek::Seeks>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({:?})", self.backend())
    }
}

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`).
    ///
    /// A SQLite file that does not exist is created only when `create_if_missing`
    /// is set and its directory exists: a typo'd path must not silently start an
    /// empty database.
    pub async fn connect(url: &str, create_if_missing: bool) -> Result<Store> {
        let pool = match Backend::of_url(url)? {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?;
                let path = options.get_filename().to_path_buf();
                if !path.exists() {
                    if !create_if_missing {
                        return Err(Error::MissingDatabase(path.display().to_string()));
                    }
                    let parent = path
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(Path::new("."));
                    if !parent.is_dir() {
                        return Err(Error::MissingDatabase(parent.display().to_string()));
                    }
                }
                // WAL with `synchronous=NORMAL`: a commit is a write to the
                // log, not an fsync; the log is synced at each checkpoint. A
                // power loss may lose the last commits before it, never
                // corrupt the file (README, "Writes on SQLite"). No
                // connection checkpoints on its own (`wal_autocheckpoint=0`):
                // the commit that crosses 1,000 pages would pay for the copy
                // and its fsync on a request; [`Checkpointer`] does it in the
                // background instead.
                let options = options
                    .create_if_missing(create_if_missing)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .pragma("wal_autocheckpoint", "0");
                // No ping before each acquire: a connection to a local file
                // does not go stale, and the ping is one more hop to the
                // connection's worker thread on every checkout (the
                // broker's hot path checks out twice per call).
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await?;
                Pool::Sqlite(pool)
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?;
                Pool::Postgres(pool)
            }
        };
        Ok(Store {
            pool,
            writer: Default::default(),
            seeks: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the pending migrations of this backend's dialect.
    pub async fn migrate(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Pool::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        let mut db = self.db().await?;
        on_conn!(db, c => sqlx::query("SELECT 1").execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// A pooled connection for reads and single statements.
    pub async fn db(&self) -> Result<Db> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => self.wrap(Inner::Sqlite(pool.acquire().await?)),
            Pool::Postgres(pool) => self.wrap(Inner::Postgres(pool.acquire().await?)),
        })
    }

    /// A transaction: everything done through it happens together or not at all.
    /// On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`), so two
    /// writers queue instead of failing when one upgrades a read lock.
    pub async fn begin(&self) -> Result<Db> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => {
                // As long as the busy handler would wait: a writer that
                // never gets its turn fails as it did before the queue.
                let turn =
                    tokio::time::timeout(SQLITE_BUSY_TIMEOUT, self.writer.clone().lock_owned())
                        .await
                        .map_err(|_| Error::from(sqlx::Error::PoolTimedOut))?;
                self.wrap(Inner::SqliteTx(
                    pool.begin_with("BEGIN IMMEDIATE").await?,
                    turn,
                ))
            }
            Pool::Postgres(pool) => self.wrap(Inner::PostgresTx(pool.begin().await?)),
        })
    }

    /// The WAL checkpointer of a SQLite store (`None` on PostgreSQL, which
    /// checkpoints by itself), on a connection of its own.
    pub async fn checkpointer(&self) -> Result<Option<Checkpointer>> {
        use sqlx::ConnectOptions;
        let Pool::Sqlite(pool) = &self.pool else {
            return Ok(None);
        };
        // It never waits for a lock: what it cannot do now, it does later.
        let options = (*pool.connect_options())
            .clone()
            .busy_timeout(Duration::ZERO);
        Ok(Some(Checkpointer {
            conn: options.connect().await?,
            writer: self.writer.clone(),
            last: None,
        }))
    }

    fn wrap(&self, inner: Inner) -> Db {
        Db {
            inner,
            seeks: self.seeks.clone(),
            wrote_requests: false,
        }
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

enum Inner {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
    /// The transaction, then this process's writer turn (dropped after it).
    SqliteTx(
        Transaction<'static, Sqlite>,
        tokio::sync::OwnedMutexGuard<()>,
    ),
    PostgresTx(Transaction<'static, Postgres>),
}

/// A connection or transaction of either backend. Every query is a method on it.
/// A transaction that is dropped without [`Db::commit`] is rolled back.
pub struct Db {
    inner: Inner,
    /// Its store's page ends (`seek`), which outlive it.
    seeks: Arc<seek::Seeks>,
    /// A transaction that wrote to requests: its commit makes the ends stale.
    wrote_requests: bool,
}

pub(crate) enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl Db {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match &mut self.inner {
            Inner::Sqlite(c) => Conn::Sqlite(c),
            Inner::Postgres(c) => Conn::Postgres(c),
            Inner::SqliteTx(tx, _) => Conn::Sqlite(tx),
            Inner::PostgresTx(tx) => Conn::Postgres(tx),
        }
    }

    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(_) | Inner::SqliteTx(..) => Backend::Sqlite,
            Inner::Postgres(_) | Inner::PostgresTx(_) => Backend::Postgres,
        }
    }

    /// Commits a transaction; for a plain connection there is nothing to do.
    pub async fn commit(self) -> Result<()> {
        match self.inner {
            Inner::SqliteTx(tx, _turn) => tx.commit().await?,
            Inner::PostgresTx(tx) => tx.commit().await?,
            Inner::Sqlite(_) | Inner::Postgres(_) => {}
        }
        if self.wrote_requests {
            self.seeks.changed();
        }
        Ok(())
    }

    fn in_transaction(&self) -> bool {
        matches!(self.inner, Inner::SqliteTx(..) | Inner::PostgresTx(_))
    }

    /// Requests were written (created, deleted, or a column a list filters
    /// or sorts on changed): the page ends kept are stale once this commits
    /// — now, outside a transaction.
    pub(crate) fn requests_changed(&mut self) {
        match self.in_transaction() {
            true => self.wrote_requests = true,
            false => self.seeks.changed(),
        }
    }
}

/// What one [`Checkpointer::pass`] found and did, in WAL pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPass {
    /// Pages in the log.
    pub log: i64,
    /// Of them, copied into the database file.
    pub checkpointed: i64,
    /// Whether the log was emptied (truncated to zero bytes).
    pub truncated: bool,
}

/// Copies SQLite's write-ahead log into the database file off the request
/// path (the pool's connections never do, `wal_autocheckpoint=0`). Each pass
/// is `PASSIVE` — it copies what no reader still needs and waits for nobody;
/// when two passes in a row find the log wholly copied and unchanged (the
/// database is idle) it also empties the file (`TRUNCATE`), in this process's
/// writer turn if it is free, never waiting for one.
pub struct Checkpointer {
    conn: SqliteConnection,
    writer: Arc<tokio::sync::Mutex<()>>,
    last: Option<(i64, i64)>,
}

impl Checkpointer {
    pub async fn pass(&mut self) -> Result<CheckpointPass> {
        let (_busy, log, checkpointed): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut self.conn)
                .await?;
        let copied = log > 0 && log == checkpointed;
        let idle = copied && self.last == Some((log, checkpointed));
        self.last = Some((log, checkpointed));
        let mut truncated = false;
        if idle {
            if let Ok(_turn) = self.writer.try_lock() {
                // Busy (a reader of an older snapshot, another process's
                // writer) is not an error: the next idle pass tries again.
                truncated = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(&mut self.conn)
                    .await
                    .is_ok_and(|(busy, _, _)| busy == 0);
                if truncated {
                    self.last = None;
                }
            }
        }
        Ok(CheckpointPass {
            log,
            checkpointed,
            truncated,
        })
    }
}

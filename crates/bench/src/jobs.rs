//! The background jobs' figures (issue 10): notifications delivered per
//! second by the real job runner (`credence_jobs::Jobs`) to a local SMTP
//! sink and to a local webhook sink, and the reminder due-scan over a
//! million requests (the store's `requests_due_for_nudge` and
//! `requests_due_for_sla`, which `service::reminders::scan` calls), with the
//! plan the database chose for it.
//!
//! The SMTP sink is a minimal SMTP server on a loopback port (RFC 5321's
//! greeting, EHLO, MAIL, RCPT, DATA, RSET, NOOP and QUIT), so that what is
//! measured is Credence's rendering, lettre's conversation and the outbox
//! bookkeeping, not a mail server's storage. The webhook sink is an axum
//! server answering 204. The million requests are inserted by one SQL
//! statement (`generate_series` on PostgreSQL, a recursive CTE on SQLite),
//! not through the service, which would take hours.

use crate::measure::{self, Plan, Timings};
use crate::world::Database;
use anyhow::Context;
use credence::config::Config;
use credence::jobs::{Jobs, MailSettings, Security, Settings, SmtpSettings};
use credence::service::identity::Bootstrap;
use credence::Application;
use credence_store::{Backend, Store};
use credence_vault::Vault;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// What the jobs' figures came to on one backend.
pub struct JobsReport {
    pub backend: Backend,
    pub notifications: usize,
    /// Emails per second through SMTP (rendered, sent, marked sent).
    pub smtp_per_second: f64,
    /// Webhook messages per second (signed, POSTed, recorded).
    pub webhooks_per_second: f64,
    pub scan_requests: usize,
    /// Requests the nudge query found due (at most the batch).
    pub scan_due: usize,
    pub nudge_scan: Timings,
    pub sla_scan: Timings,
    /// The plan lines that name the index each query used.
    pub nudge_plan: Vec<String>,
    pub sla_plan: Vec<String>,
}

/// The scan's batch: the reminder runner's default (`reminders::Settings`).
const SCAN_BATCH: i64 = 200;

/// The two queries `service::reminders::scan` runs.
#[derive(Clone, Copy)]
enum Scan {
    Nudges,
    Sla,
}

/// Times `scan`'s first batch of [`SCAN_BATCH`] due at `at`.
async fn measure_scan(
    store: &Store,
    label: &str,
    plan: Plan,
    at: chrono::DateTime<chrono::Utc>,
    scan: Scan,
) -> anyhow::Result<Timings> {
    let store = store.clone();
    measure::run(label, plan, move |_| {
        let store = store.clone();
        async move {
            let mut db = store.db().await?;
            match scan {
                Scan::Nudges => db.requests_due_for_nudge(at, SCAN_BATCH).await?.len(),
                Scan::Sla => db.requests_due_for_sla(at, SCAN_BATCH).await?.len(),
            };
            Ok(())
        }
    })
    .await
}

/// Runs the jobs' figures on a fresh database of `database`'s backend.
pub async fn measure(
    database: &Database,
    notifications: usize,
    scan_requests: usize,
    samples: usize,
) -> anyhow::Result<JobsReport> {
    let config = Config {
        data_dir: database.dir().to_path_buf(),
        database_url: Some(database.url.clone()),
        key_file: Some(database.dir().join("credence.key")),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    let app = Application::build(config)
        .await
        .context("the application does not build")?;
    let bootstrap = app
        .bootstrap()
        .context("the fresh database was not bootstrapped")?
        .clone();
    let store = app.store().clone();
    let vault = app.vault();

    let sink = SmtpSink::start().await?;
    eprintln!("smtp sink on port {}", sink.port);
    write_notifications(&store, &vault, notifications).await?;
    let settings = Settings {
        every: None,
        concurrency: 8,
        mail: MailSettings {
            smtp: Some(SmtpSettings {
                host: "127.0.0.1".into(),
                port: sink.port,
                security: Security::None,
                user: None,
                password: None,
                ca_file: None,
            }),
            ..MailSettings::default()
        },
        ..Settings::default()
    };
    let jobs = Jobs::new(
        store.clone(),
        vault.clone(),
        app.public_url().into(),
        settings,
    )?;
    let started = Instant::now();
    let mut sent = 0;
    while sent < notifications {
        let pass = jobs.drain().await?;
        if pass.sent == 0 && pass.claimed == 0 {
            anyhow::bail!("the runner sent {sent} of {notifications} emails and stopped");
        }
        sent += pass.sent;
    }
    let smtp_seconds = started.elapsed().as_secs_f64();
    let received = sink.received.load(Ordering::SeqCst);
    anyhow::ensure!(
        received >= notifications,
        "the SMTP sink received {received} of {notifications} emails"
    );
    eprintln!("smtp: {notifications} emails in {smtp_seconds:.2} s");

    let webhook_sink = WebhookSink::start().await?;
    let endpoint = webhook_endpoint(&store, &vault, &bootstrap, webhook_sink.port).await?;
    {
        let mut tx = store.begin().await?;
        for i in 0..notifications {
            let payload = serde_json::json!({
                "type": "credential.authorized",
                "timestamp": credence_store::now(),
                "data": { "requestId": format!("bench-{i}") },
            })
            .to_string();
            tx.insert_webhook_delivery(
                endpoint,
                &format!("msg_bench_{i}"),
                "credential.authorized",
                &payload,
                None,
            )
            .await?;
        }
        tx.commit().await?;
    }
    let mut settings = Settings {
        every: None,
        concurrency: 8,
        ..Settings::default()
    };
    settings.webhooks.allow_private_hosts = true;
    let jobs = Jobs::new(
        store.clone(),
        vault.clone(),
        app.public_url().into(),
        settings,
    )?;
    let started = Instant::now();
    let mut delivered = 0;
    while delivered < notifications {
        let pass = jobs.drain_webhooks().await?;
        if pass.claimed == 0 {
            anyhow::bail!(
                "the runner delivered {delivered} of {notifications} webhooks and stopped"
            );
        }
        delivered += pass.delivered;
    }
    let webhook_seconds = started.elapsed().as_secs_f64();
    let received = webhook_sink.received.load(Ordering::SeqCst);
    anyhow::ensure!(
        received >= notifications,
        "the webhook sink received {received} of {notifications} messages"
    );
    eprintln!("webhooks: {notifications} messages in {webhook_seconds:.2} s");

    eprintln!("inserting {scan_requests} requests for the reminder scan");
    let started = Instant::now();
    let at = seed_scan(database, &bootstrap, scan_requests).await?;
    eprintln!("inserted in {:.1} s", started.elapsed().as_secs_f64());
    let scan_due = store
        .db()
        .await?
        .requests_due_for_nudge(at, SCAN_BATCH)
        .await?
        .len();
    let plan = Plan {
        count: samples,
        workers: 1,
        limit: Duration::from_secs(120),
    };
    let nudge_scan =
        measure_scan(&store, "reminder scan: due nudges", plan, at, Scan::Nudges).await?;
    let sla_scan =
        measure_scan(&store, "reminder scan: SLA deadlines", plan, at, Scan::Sla).await?;
    let (nudge_plan, sla_plan) = plans(database, at).await?;
    drop(app);
    Ok(JobsReport {
        backend: database.backend,
        notifications,
        smtp_per_second: notifications as f64 / smtp_seconds,
        webhooks_per_second: notifications as f64 / webhook_seconds,
        scan_requests,
        scan_due,
        nudge_scan,
        sla_scan,
        nudge_plan,
        sla_plan,
    })
}

/// Writes `count` notifications to the outbox, as changes do (sealed), in
/// transactions of 500.
async fn write_notifications(store: &Store, vault: &Vault, count: usize) -> anyhow::Result<()> {
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let mut tx = store.begin().await?;
        for i in chunk {
            let to = format!("client{i}@clients.test");
            credence::service::audit::notify(
                &mut tx,
                vault,
                None,
                "credential.authorized",
                &to,
                serde_json::json!({
                    "requestId": format!("bench-{i}"),
                    "requestName": format!("Onboarding {i}"),
                    "app": "Stripe",
                    "recipientEmail": to,
                }),
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot queue a notification: {e}"))?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// A webhook endpoint of the bootstrap team pointing at the sink.
async fn webhook_endpoint(
    store: &Store,
    vault: &Vault,
    bootstrap: &Bootstrap,
    port: u16,
) -> anyhow::Result<i64> {
    let (endpoint, _secret) = credence::service::webhooks::create(
        store,
        vault,
        &bootstrap.admin,
        credence::service::webhooks::Owner::Team(bootstrap.team.id),
        credence::service::webhooks::EndpointInput {
            url: format!("http://127.0.0.1:{port}/hook"),
            events: vec!["*".into()],
            enabled: true,
        },
        true,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot create the webhook endpoint: {e}"))?;
    Ok(endpoint.id)
}

/// Inserts `count` requests of the bootstrap team in one statement and
/// answers the scan's time. One in three has no reminder left (authorized);
/// the others' next nudge and SLA deadline are spread over 30 days around
/// it, so that about one in 700 is due: what a large, long-running intake
/// looks like.
async fn seed_scan(
    database: &Database,
    bootstrap: &Bootstrap,
    count: usize,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    use sqlx::Connection;
    // Whole seconds: SQLite keeps times as RFC 3339 text, compared as text,
    // and sqlx writes a time without fraction when it has none.
    let now = chrono::DateTime::from_timestamp(credence_store::now().timestamp(), 0)
        .context("the time now")?;
    let start = now - chrono::Duration::hours(1);
    let span = 30 * 24 * 3600_i64;
    let organization = bootstrap.organization.id.0;
    let team = bootstrap.team.id.0;
    let requester = bootstrap.admin.id.0;
    // `n` → a spread of seconds from `start`: a multiplicative hash, so that
    // neighbouring ids are far apart in time.
    match database.backend {
        Backend::Postgres => {
            let sql = format!(
                "INSERT INTO credential_requests (id, organization_id, team_id, requester_id, name, \
                 recipient_kind, recipient_name, recipient_email, link_hash, project, status, \
                 terms_accepted_at, created_at, updated_at, nudge_count, next_nudge_at, sla_due_at) \
                 SELECT lpad(to_hex(n), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(n), 12, '0'), \
                 {organization}, {team}, {requester}, 'Bench ' || n, 'external', 'Client ' || n, \
                 'client' || n || '@clients.test', 'bench-link-' || n, 'Project ' || (n % 100), \
                 CASE WHEN n % 3 = 0 THEN 'authorized' ELSE 'incomplete' END, \
                 $1, $1, $1, 0, \
                 CASE WHEN n % 3 = 0 THEN NULL ELSE $2 + make_interval(secs => (n * 7919) % {span}) END, \
                 CASE WHEN n % 3 = 0 THEN NULL ELSE $2 + make_interval(secs => (n * 104729) % {span}) END \
                 FROM generate_series(1::bigint, {count}::bigint) AS n"
            );
            let mut conn = sqlx::PgConnection::connect(&database.url).await?;
            sqlx::query(&sql)
                .bind(now - chrono::Duration::days(31))
                .bind(start)
                .execute(&mut conn)
                .await
                .context("cannot insert the scan's requests")?;
            // What autovacuum would do after such a load.
            sqlx::query("ANALYZE credential_requests")
                .execute(&mut conn)
                .await?;
            conn.close().await.ok();
        }
        Backend::Sqlite => {
            let time = |seconds: &str| {
                format!(
                    "strftime('%Y-%m-%dT%H:%M:%S', {} + {seconds}, 'unixepoch') || '+00:00'",
                    start.timestamp()
                )
            };
            let created = format!(
                "strftime('%Y-%m-%dT%H:%M:%S', {}, 'unixepoch') || '+00:00'",
                (now - chrono::Duration::days(31)).timestamp()
            );
            let sql = format!(
                "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {count}) \
                 INSERT INTO credential_requests (id, organization_id, team_id, requester_id, name, \
                 recipient_kind, recipient_name, recipient_email, link_hash, project, status, \
                 terms_accepted_at, created_at, updated_at, nudge_count, next_nudge_at, sla_due_at) \
                 SELECT printf('%08x-0000-4000-8000-%012x', n, n), \
                 {organization}, {team}, {requester}, 'Bench ' || n, 'external', 'Client ' || n, \
                 'client' || n || '@clients.test', 'bench-link-' || n, 'Project ' || (n % 100), \
                 CASE WHEN n % 3 = 0 THEN 'authorized' ELSE 'incomplete' END, \
                 {created}, {created}, {created}, 0, \
                 CASE WHEN n % 3 = 0 THEN NULL ELSE {nudge} END, \
                 CASE WHEN n % 3 = 0 THEN NULL ELSE {sla} END \
                 FROM seq",
                nudge = time(&format!("((n * 7919) % {span})")),
                sla = time(&format!("((n * 104729) % {span})")),
            );
            let mut conn = sqlx::SqliteConnection::connect(&database.url).await?;
            sqlx::query(&sql)
                .execute(&mut conn)
                .await
                .context("cannot insert the scan's requests")?;
            conn.close().await.ok();
        }
    }
    Ok(now)
}

/// The queries of `store::tracking` (`requests_due_for_nudge`,
/// `requests_due_for_sla`), written out for `EXPLAIN`.
const NUDGE_QUERY: &str = "SELECT id, next_nudge_at AS due_at FROM credential_requests \
     WHERE next_nudge_at IS NOT NULL AND next_nudge_at <= $1 ORDER BY next_nudge_at LIMIT $2";
const SLA_QUERY: &str = "SELECT id, sla_due_at AS due_at FROM credential_requests \
     WHERE sla_checked_at IS NULL AND sla_due_at IS NOT NULL AND sla_due_at <= $1 \
     ORDER BY sla_due_at LIMIT $2";

/// The plan of each scan query: the lines that say how the table is read.
async fn plans(
    database: &Database,
    at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    use sqlx::{Connection, Row};
    let mut found = Vec::new();
    for query in [NUDGE_QUERY, SLA_QUERY] {
        let lines: Vec<String> = match database.backend {
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&database.url).await?;
                let rows = sqlx::query(&format!("EXPLAIN {query}"))
                    .bind(at)
                    .bind(SCAN_BATCH)
                    .fetch_all(&mut conn)
                    .await?;
                conn.close().await.ok();
                rows.iter().map(|row| row.get::<String, _>(0)).collect()
            }
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&database.url).await?;
                let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {query}"))
                    .bind(at)
                    .bind(SCAN_BATCH)
                    .fetch_all(&mut conn)
                    .await?;
                conn.close().await.ok();
                rows.iter()
                    .map(|row| row.get::<String, _>("detail"))
                    .collect()
            }
        };
        let scans: Vec<String> = lines
            .iter()
            .filter(|line| {
                let line = line.to_ascii_lowercase();
                line.contains("scan") || line.contains("search") || line.contains("index")
            })
            .map(|line| line.trim().to_string())
            .collect();
        found.push(if scans.is_empty() { lines } else { scans });
    }
    let sla = found.pop().unwrap_or_default();
    let nudge = found.pop().unwrap_or_default();
    Ok((nudge, sla))
}

/// A minimal SMTP server that accepts and drops every message, counting them.
struct SmtpSink {
    port: u16,
    received: Arc<AtomicUsize>,
}

impl SmtpSink {
    async fn start() -> anyhow::Result<SmtpSink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(socket, counter).await;
                });
            }
        });
        Ok(SmtpSink { port, received })
    }
}

/// One SMTP session (RFC 5321 §4.1 as far as a client needs it).
async fn smtp_session(
    socket: tokio::net::TcpStream,
    received: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 bench-sink ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                write
                    .write_all(b"250-bench-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                    .await?
            }
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => write.write_all(b"250 ok\r\n").await?,
            "DATA" => {
                write.write_all(b"354 go on\r\n").await?;
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                }
                received.fetch_add(1, Ordering::SeqCst);
                write.write_all(b"250 queued\r\n").await?;
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => write.write_all(b"502 not implemented\r\n").await?,
        }
    }
}

/// An HTTP server answering every webhook with 204, counting them.
struct WebhookSink {
    port: u16,
    received: Arc<AtomicUsize>,
}

impl WebhookSink {
    async fn start() -> anyhow::Result<WebhookSink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |_body: String| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(WebhookSink { port, received })
    }
}

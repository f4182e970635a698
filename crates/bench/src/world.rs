//! The world a benchmark runs in: a throwaway database of one backend, the
//! real server on a loopback port, an organization whose teams each have a
//! requester (with the feature and an API token) and a recipient, and the
//! requests seeded straight through the store.

use anyhow::{bail, Context};
use credence::config::Config;
use credence::service::{auth, features, identity, random_token, token_hash};
use credence::Application;
use credence_domain::{CredentialId, OrganizationId, RequestId, Scopes, TeamId, UserId};
use credence_store::{Backend, NewCredential, NewRequest, Store};
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Built-in API-key apps the seeded requests ask for: (key, label).
const APPS: [(&str, &str); 3] = [
    ("stripe", "Stripe"),
    ("pipedrive", "Pipedrive"),
    ("calendly", "Calendly"),
];

/// Requests stored per transaction while seeding.
const BATCH: usize = 500;

/// A brand-new database: a SQLite file in a temporary directory, or a
/// `credence_bench_<random>` PostgreSQL database that [`Database::remove`] drops.
/// The directory also holds the server's key file and goes when this is dropped.
pub struct Database {
    pub backend: Backend,
    pub url: String,
    dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl Database {
    /// The temporary directory (the SQLite file, the key file).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub async fn create(backend: Backend, postgres_admin_url: &str) -> anyhow::Result<Database> {
        let dir = tempfile::Builder::new()
            .prefix("credence-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        match backend {
            Backend::Sqlite => Ok(Database {
                backend,
                url: format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("bench.db").display()
                ),
                dir,
                postgres: None,
            }),
            Backend::Postgres => {
                let name = format!("credence_bench_{}", uuid::Uuid::new_v4().simple());
                execute_once(postgres_admin_url, &format!("CREATE DATABASE {name}")).await?;
                Ok(Database {
                    backend,
                    url: database_url(postgres_admin_url, &name),
                    dir,
                    postgres: Some((postgres_admin_url.to_string(), name)),
                })
            }
        }
    }

    /// Drops the PostgreSQL database (even with connections left open) and
    /// removes the temporary directory.
    pub async fn remove(self) -> anyhow::Result<()> {
        if let Some((admin, name)) = &self.postgres {
            execute_once(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await?;
            eprintln!("dropped database {name}");
        }
        self.dir
            .close()
            .context("cannot remove the temporary directory")
    }

    /// What PostgreSQL's autovacuum does on its own after a bulk load (since
    /// PostgreSQL 13 inserts alone trigger it): `VACUUM ANALYZE`, the planner's
    /// statistics and the visibility map — without the map, an index-only scan
    /// (a list's `COUNT(*)`) still visits the table for every row. Credence
    /// itself never runs either, and SQLite has no automatic statistics, so
    /// SQLite is left as seeded.
    async fn analyze(&self) -> anyhow::Result<()> {
        if self.postgres.is_some() {
            execute_once(&self.url, "VACUUM ANALYZE").await?;
        }
        Ok(())
    }
}

/// Runs one statement on its own connection to a PostgreSQL database.
async fn execute_once(url: &str, sql: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.with_context(|| {
        format!(
            "PostgreSQL is not reachable at {}; start one or pass --postgres-url",
            redact(url)
        )
    })?;
    sqlx::query(sql)
        .execute(&mut conn)
        .await
        .with_context(|| format!("PostgreSQL refused {sql:?}"))?;
    conn.close().await.ok();
    Ok(())
}

/// The administration URL with its database name replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}

/// The URL without a password, for progress lines.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if url[scheme + 3..at].contains(':') => {
            let user_end = scheme + 3 + url[scheme + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// One team of the benchmark's organization.
#[derive(Clone)]
pub struct Team {
    pub id: TeamId,
    pub requester: UserId,
    pub recipient: UserId,
    recipient_name: String,
    recipient_email: String,
    /// The requester's API token (credential-requests read and write).
    pub token: String,
}

/// The running server and everything the measurements need.
pub struct World {
    pub address: String,
    pub store: Store,
    /// The services' context of the running server (the create figure
    /// calls the service in-process through it, without HTTP).
    pub context: credence::service::Context,
    /// The database's URL (a second store with other settings connects to it).
    pub database_url: String,
    pub teams: Vec<Team>,
    /// Every seeded request with the index of its team.
    pub requests: Vec<(RequestId, usize)>,
    pub seeding: Duration,
    /// How long settling after the load took (PostgreSQL's `VACUUM
    /// ANALYZE`, when it ran; SQLite's checkpoint).
    pub settling: Option<Duration>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl World {
    /// Builds the application on port 0 over `database`, creates the people,
    /// seeds `count` requests over `teams` teams, gathers PostgreSQL's
    /// statistics when `analyze` is set, and starts serving.
    pub async fn start(
        database: &Database,
        teams: usize,
        count: usize,
        analyze: bool,
    ) -> anyhow::Result<World> {
        let config = Config {
            data_dir: database.dir.path().to_path_buf(),
            database_url: Some(database.url.clone()),
            key_file: Some(database.dir.path().join("credence.key")),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        let app = Application::build(config)
            .await
            .context("the application does not build")?;
        let store = app.store().clone();
        let context = app.context();
        let vault = app.vault();

        eprintln!("creating an organization with {teams} teams of two people");
        let organization =
            identity::create_organization(&store, "Bench Agency", "enterprise", false)
                .await
                .context("cannot create the organization")?
                .id;
        let mut people = Vec::with_capacity(teams);
        for index in 0..teams {
            let team = identity::create_team(&store, organization, &format!("Team {index}"))
                .await
                .context("cannot create a team")?
                .id;
            let requester =
                add_member(&store, organization, team, &format!("requester-{index}")).await?;
            features::grant(&store, &vault, &requester.1)
                .await
                .context("cannot grant the feature")?;
            let recipient =
                add_member(&store, organization, team, &format!("recipient-{index}")).await?;
            let scopes = Scopes::parse("credential-requests:read,credential-requests:write")?;
            let (_, token) = auth::create_api_token(
                &store,
                &credence::service::audit::Actor::operator(),
                requester.0,
                auth::NewApiToken {
                    name: "bench",
                    scopes: &scopes,
                    expires_at: None,
                },
            )
            .await
            .context("cannot create an API token")?;
            people.push(Team {
                id: team,
                requester: requester.0,
                recipient: recipient.0,
                recipient_name: format!("Person recipient-{index}"),
                recipient_email: recipient.1,
                token: token.expose_secret().to_string(),
            });
        }

        let workers = match database.backend {
            Backend::Sqlite => 1, // one writer at a time anyway
            Backend::Postgres => 4,
        };
        eprintln!("seeding {count} requests in transactions of {BATCH} ({workers} writer(s))");
        let started = Instant::now();
        let requests = seed(&store, organization, &people, count, workers).await?;
        let seeding = started.elapsed();
        eprintln!("seeded in {:.1} s", seeding.as_secs_f64());
        // What the server's background does after a bulk load, done before
        // anything is measured so that it does not run during the figures:
        // autovacuum's `VACUUM ANALYZE` on PostgreSQL, and on SQLite the
        // checkpointer's copy of the write-ahead log into the file (the
        // seeding ran before the server, so its log holds the whole load,
        // gigabytes that every read would look through, and that the
        // checkpointer would otherwise be copying while the figures run).
        let settling = match database.backend {
            Backend::Postgres if analyze => {
                eprintln!("VACUUM ANALYZE (what autovacuum does after a bulk load)");
                let started = Instant::now();
                database.analyze().await?;
                Some(started.elapsed())
            }
            Backend::Postgres => None,
            Backend::Sqlite => {
                eprintln!(
                    "checkpointing the write-ahead log (what the server does in the background)"
                );
                let started = Instant::now();
                let mut checkpointer = store
                    .checkpointer()
                    .await?
                    .context("a SQLite store has a checkpointer")?;
                // A pass copies the log; the next, finding it unchanged, empties it.
                let mut truncated = false;
                for _ in 0..3 {
                    truncated = checkpointer.pass().await?.truncated;
                    if truncated {
                        break;
                    }
                }
                if !truncated {
                    bail!("the write-ahead log was not emptied after the seeding");
                }
                Some(started.elapsed())
            }
        };

        let address = format!("http://{}", app.address());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Ok(World {
            address,
            store,
            context,
            database_url: database.url.clone(),
            teams: people,
            requests,
            seeding,
            settling,
            shutdown,
            server,
        })
    }

    /// Stops the server after in-flight requests (waiting at most 10 s).
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        let mut server = self.server;
        match tokio::time::timeout(Duration::from_secs(10), &mut server).await {
            Ok(joined) => joined
                .context("the server task failed")?
                .context("the server did not stop cleanly"),
            Err(_) => {
                server.abort();
                self.store.close().await;
                bail!("the server did not stop within 10 s")
            }
        }
    }
}

/// Creates a member of `team` (without a password: no argon2 for the benchmark);
/// returns the id and the email.
async fn add_member(
    store: &Store,
    organization: OrganizationId,
    team: TeamId,
    local: &str,
) -> anyhow::Result<(UserId, String)> {
    let email = format!("{local}@bench-agency.example");
    let created = identity::create_user(
        store,
        identity::NewUser {
            email: &email,
            name: &format!("Person {local}"),
            organization,
            organization_role: "member",
            team: Some((team, "member")),
            password: None,
        },
    )
    .await
    .with_context(|| format!("cannot create the user {email}"))?;
    Ok((created.user.id, email))
}

/// Stores `count` requests, request `n` in team `n % teams`, with one or two
/// credentials each, in batched transactions spread over `workers` writers.
async fn seed(
    store: &Store,
    organization: OrganizationId,
    teams: &[Team],
    count: usize,
    workers: usize,
) -> anyhow::Result<Vec<(RequestId, usize)>> {
    let ids: Arc<Vec<(RequestId, usize)>> = Arc::new(
        (0..count)
            .map(|n| (RequestId::from(uuid::Uuid::new_v4()), n % teams.len()))
            .collect(),
    );
    let teams: Arc<Vec<Team>> = Arc::new(teams.to_vec());
    let done = Arc::new(AtomicUsize::new(0));
    let batches = count.div_ceil(BATCH);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let (store, ids, teams, done) = (store.clone(), ids.clone(), teams.clone(), done.clone());
        tasks.spawn(async move {
            for batch in (worker..batches).step_by(workers) {
                let range = batch * BATCH..((batch + 1) * BATCH).min(count);
                let mut tx = store.begin().await?;
                for n in range.clone() {
                    let (id, team) = ids[n];
                    tx.insert_request(&new_request(n, id, organization, &teams[team]))
                        .await?;
                }
                tx.commit().await?;
                let before = done.fetch_add(range.len(), Ordering::Relaxed);
                let tenth = (count / 10).max(1);
                if (before + range.len()) / tenth > before / tenth {
                    eprintln!("  seeded {}/{count}", before + range.len());
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined
            .context("a seeding task panicked")?
            .context("seeding failed")?;
    }
    Ok(Arc::try_unwrap(ids).unwrap_or_else(|shared| (*shared).clone()))
}

/// The `n`th seeded request, shaped like one the API creates.
fn new_request(n: usize, id: RequestId, organization: OrganizationId, team: &Team) -> NewRequest {
    let name = format!("Onboarding client {n}");
    let credentials = (0..1 + n % 2)
        .map(|k| {
            let (app, label) = APPS[(n + k) % APPS.len()];
            NewCredential {
                id: CredentialId::from(uuid::Uuid::new_v4()),
                app_key: app.to_string(),
                app_version: 1,
                modules: r#"["*"]"#.to_string(),
                scopes: "[]".to_string(),
                note: None,
                connection_name: format!("{name} — {label}"),
            }
        })
        .collect();
    NewRequest {
        id,
        organization_id: organization,
        team_id: team.id,
        requester_id: team.requester,
        name,
        description: Some("Access for the weekly reporting".to_string()),
        recipient_kind: "internal",
        recipient_user_id: Some(team.recipient),
        recipient_name: team.recipient_name.clone(),
        recipient_email: team.recipient_email.clone(),
        link_hash: token_hash(&random_token()),
        client: Some(format!("Client {}", n % 37)),
        project: None,
        owner_id: Some(team.requester),
        expires_at: None,
        created_at: credence_store::now(),
        // Reminders spread over the next four days, as a running
        // deployment's would be: the reminder scan finds few due at once.
        next_nudge_at: Some(
            credence_store::now() + chrono::Duration::minutes(60 * 24 + (n % 5760) as i64),
        ),
        sla_due_at: Some(credence_store::now() + chrono::Duration::hours(72)),
        credentials,
    }
}

#[cfg(test)]
mod tests {
    use super::{database_url, redact};

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn the_database_name_replaces_the_admin_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            database_url("postgres://u:p@host/postgres?sslmode=disable", "b"),
            "postgres://u:p@host/b?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://u@host:5432", "b"),
            "postgres://u@host:5432/b"
        );
    }
}

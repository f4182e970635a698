//! The test harness: a real server on port 0 against a fresh database of either
//! backend, typed helpers to set up people and tokens, and the API side of the
//! test client (calls with a token, the audit log, the outbox, the operator CLI).
//!
//! PostgreSQL comes from `CREDENCE_TEST_POSTGRES_URL` (default: the local
//! server at 127.0.0.1:5432); every app gets a new database. When it cannot be
//! reached the test fails loudly: the README's test command provisions one.

use credence::config::Config;
use credence::service::identity;
use credence::Application;
use credence_domain::{OrganizationId, Scopes, TeamId, UserId};
use credence_store::{Backend, Store};
use reqwest::StatusCode;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Runs each named `async fn(Backend)` as two tests, `…::sqlite` and `…::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(credence_store::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(credence_store::Backend::Postgres).await
                }
            }
        )*
    };
}

pub fn postgres_admin_url() -> String {
    std::env::var("CREDENCE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database URL for a brand-new, empty database of `backend`.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("test.db").display()),
        Backend::Postgres => {
            use sqlx::Connection;
            let admin = postgres_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!("PostgreSQL is not reachable at {admin}: {e}. Run the test command from the README, which provisions one.")
            });
            let name = format!("credence_test_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin
                .rsplit_once('/')
                .map(|(base, _)| base)
                .unwrap_or(&admin)
                .to_string();
            format!("{base}/{name}")
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub backend: Backend,
    pub database_url: String,
    pub store: Store,
    pub client: reqwest::Client,
    pub admin_email: String,
    pub setup_token: String,
    pub organization: OrganizationId,
    pub team: TeamId,
    pub dir: tempfile::TempDir,
    /// The services' context of the running instance (to call services directly).
    pub context: credence::service::Context,
    /// The configuration it was built with (to start a second instance).
    pub config: Config,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Starts Credence on port 0 against a fresh database.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_limits(
        backend,
        adjust,
        credence::http::web::SignInLimits::default(),
    )
    .await
}

/// Like [`spawn_app_with`], with these sign-in limits (and their clock).
pub async fn spawn_app_with_limits(
    backend: Backend,
    adjust: impl FnOnce(&mut Config),
    limits: credence::http::web::SignInLimits,
) -> TestApp {
    install_log_capture();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = fresh_database(backend, dir.path()).await;
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        database_url: Some(database_url.clone()),
        key_file: Some(dir.path().join("credence.key")),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    // The outbox runner is off unless a test turns it on (tests/api/jobs.rs):
    // the others read the undelivered notifications.
    config.jobs.every = None;
    // Nor the reminder scan: tests move a clock and drive its passes.
    config.reminders.every = None;
    adjust(&mut config);
    let kept = config.clone();
    let app = match take_reserved_port(config.listen.port()) {
        Some(listener) => Application::build_on(config, limits, listener).await,
        None => Application::build_with_limits(config, limits).await,
    }
    .expect("application builds");
    let context = app.context();
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store().clone();
    let bootstrap = app
        .bootstrap()
        .expect("a fresh database is bootstrapped")
        .clone();
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        backend,
        database_url,
        store,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(CLIENT_IDLE)
            .build()
            .unwrap(),
        admin_email: bootstrap.admin.email.clone(),
        setup_token: bootstrap.setup_token.clone(),
        organization: bootstrap.organization.id,
        team: bootstrap.team.id,
        dir,
        context,
        config: kept,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

/// Ports reserved by [`reserve_port`], each still bound, until the app that
/// listens on it starts.
static RESERVED_PORTS: std::sync::Mutex<Vec<std::net::TcpListener>> =
    std::sync::Mutex::new(Vec::new());

/// A free port kept bound for an app that will listen on it (set
/// `config.listen` to it): for a peer that must know Credence's address before
/// Credence starts (an OAuth provider's redirect URI). Released, and taken by
/// something else, the port could be gone by the time the app binds it.
pub fn reserve_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let port = listener.local_addr().unwrap().port();
    RESERVED_PORTS.lock().unwrap().push(listener);
    port
}

/// The still-bound socket of a port [`reserve_port`] handed out, as the
/// runtime's listener.
fn take_reserved_port(port: u16) -> Option<tokio::net::TcpListener> {
    if port == 0 {
        return None;
    }
    let mut reserved = RESERVED_PORTS.lock().unwrap();
    let at = reserved
        .iter()
        .position(|listener| listener.local_addr().is_ok_and(|a| a.port() == port))?;
    let listener = reserved.swap_remove(at);
    Some(tokio::net::TcpListener::from_std(listener).expect("a tokio listener"))
}

/// Every secret value the tests of this process gave Credence (API keys entered
/// for apps). Every response body the helpers read, and the logs at every stop,
/// are checked against all of them: a leak anywhere in the suite fails.
static SECRETS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Registers a value that must never come back out of Credence.
pub fn register_secret(value: &str) {
    SECRETS.lock().unwrap().push(value.to_string());
}

/// Panics when `text` (a response body, a log) contains a registered secret.
pub fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS.lock().unwrap().iter() {
        assert!(
            !text.contains(secret.as_str()),
            "a secret value leaked into {what}"
        );
    }
}

/// Set when a log line contained a registered secret.
static LEAKED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// Every log line the servers of this test process wrote, at debug level.
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // Each line is checked once, as it is written, against every secret.
        let line = String::from_utf8_lossy(bytes);
        if SECRETS
            .lock()
            .unwrap()
            .iter()
            .any(|secret| line.contains(secret.as_str()))
        {
            *LEAKED.lock().unwrap() = true;
        }
        LOGS.lock().unwrap().extend_from_slice(bytes);
        // CREDENCE_TEST_LOG=1 also shows them, for debugging a failure.
        if std::env::var_os("CREDENCE_TEST_LOG").is_some() {
            std::io::stderr().write_all(bytes)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends the logs of every server in this process to a buffer that tests scan
/// for secrets (`captured_logs`).
fn install_log_capture() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,sqlx=info,hyper=info,h2=info,rustls=info,reqwest=info",
            ))
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

/// The log lines written so far by the servers of this test process.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

/// Someone created for a test, with their password.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: UserId,
    pub email: String,
    pub password: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Creates a user in `organization` (and a team) with a known password.
    pub async fn add_person(
        &self,
        email: &str,
        organization: OrganizationId,
        org_role: &str,
        team: Option<(TeamId, &str)>,
    ) -> Person {
        let password = format!("pw-{}", uuid::Uuid::new_v4());
        let created = identity::create_user(
            &self.store,
            identity::NewUser {
                email,
                name: &format!("Person {email}"),
                organization,
                organization_role: org_role,
                team,
                password: Some(password.clone()),
            },
        )
        .await
        .expect("user created");
        Person {
            id: created.user.id,
            email: created.user.email,
            password,
        }
    }

    /// An API token for `user` with `scopes` (comma-separated).
    pub async fn token(&self, user: UserId, scopes: &str) -> String {
        // A fixture, seeded in the store: it is not an operation of the test and
        // leaves no audit entry (tests count those).
        let scopes = Scopes::parse(scopes).expect("scopes parse");
        let value = uuid::Uuid::new_v4().to_string();
        self.store
            .db()
            .await
            .unwrap()
            .insert_api_token(
                user,
                "test token",
                &credence::service::token_hash(&value),
                &scopes,
                None,
            )
            .await
            .expect("token created");
        value
    }

    /// The vault over the app's key file (the same keys the server uses).
    pub fn vault(&self) -> credence_vault::Vault {
        credence_vault::Vault::open_or_create(&self.dir.path().join("credence.key"))
            .expect("key file")
    }

    /// The bootstrap admin's id.
    pub async fn admin_id(&self) -> UserId {
        self.store
            .db()
            .await
            .unwrap()
            .find_user_by_email(&self.admin_email)
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// A request for `method path` with `Authorization: Token <token>`, for a
    /// test that reads more of the answer than its JSON (headers, raw bodies).
    pub fn with_token(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("Authorization", format!("Token {token}"))
    }

    /// A connection of the app's own store, to look at what it holds.
    pub async fn db(&self) -> credence_store::Db {
        self.store.db().await.expect("a store connection")
    }

    /// The connections of the Default team.
    pub async fn team_connections(&self) -> Vec<credence_store::Connection> {
        self.db().await.list_connections(self.team).await.unwrap()
    }

    /// The stored connection `id`, if there is one.
    pub async fn stored_connection(&self, id: i64) -> Option<credence_store::Connection> {
        self.store
            .db()
            .await
            .unwrap()
            .get_connection(id)
            .await
            .unwrap()
    }

    /// The stored requested credential `id` (as the API shows it); panics
    /// when there is none.
    pub async fn stored_credential(&self, id: &str) -> credence_store::RequestedCredential {
        let id = credence_domain::CredentialId::parse("id", id).unwrap();
        self.db()
            .await
            .get_credential(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no credential {id}"))
    }

    /// The sealed values of `connection`, opened as the server would; the
    /// OAuth tokens among them join the suite's secrets.
    pub async fn connection_values(&self, connection: &credence_store::Connection) -> Value {
        use secrecy::ExposeSecret;
        let plain =
            credence::service::secrets::open_connection(&self.store, &self.vault(), connection)
                .await
                .unwrap();
        let values: Value = serde_json::from_str(plain.expose_secret()).unwrap();
        for name in ["access_token", "refresh_token"] {
            if let Some(token) = values[name].as_str() {
                register_secret(token);
            }
        }
        values
    }

    /// Sends `method path` with `Authorization: Token <token>` and an optional
    /// JSON body; answers status and JSON, checked against the suite's secrets.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.with_token(method.clone(), path, token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        assert_no_secret(&format!("the answer to {method} {path}"), &body.to_string());
        (status, body)
    }

    /// GETs `path` with `Authorization: Token <token>`; returns status and JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    /// POSTs `body` (if any) to `path` with a token.
    pub async fn post(&self, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, token, body).await
    }

    /// DELETEs `path` with a token.
    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, token, None).await
    }

    /// The audit entries recorded, oldest first; only those of `events` when
    /// any are named.
    pub async fn audit_entries(&self, events: &[&str]) -> Vec<credence_store::AuditEntry> {
        let filter = credence_store::AuditFilter {
            events: events.iter().map(|e| e.to_string()).collect(),
            limit: 10_000,
            oldest_first: true,
            ..Default::default()
        };
        let (entries, _) = self
            .store
            .db()
            .await
            .unwrap()
            .list_audit(&filter)
            .await
            .unwrap();
        entries
    }

    /// The events of the audit log, oldest first.
    pub async fn audit_events(&self) -> Vec<String> {
        self.audit_entries(&[])
            .await
            .into_iter()
            .map(|e| e.event)
            .collect()
    }

    /// The undelivered notifications, opened: (kind, recipient email, payload).
    pub async fn outbox(&self) -> Vec<(String, String, Value)> {
        let vault = self.vault();
        let messages = self
            .store
            .db()
            .await
            .unwrap()
            .list_unsent_outbox()
            .await
            .unwrap();
        messages
            .into_iter()
            .map(|m| {
                let payload = credence::service::audit::open_outbox(&vault, &m)
                    .expect("outbox payload opens");
                (m.kind, m.recipient_email, payload)
            })
            .collect()
    }

    /// Runs the `credence` binary on the app's database and key file, with no
    /// other environment; answers (success, stdout, stderr).
    pub async fn operator(&self, args: &[&str]) -> (bool, String, String) {
        let output = self.operator_output(args).await;
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Like [`TestApp::operator`], answering the process's output as it is.
    pub async fn operator_output(&self, args: &[&str]) -> std::process::Output {
        let output = tokio::process::Command::new(credence_bin())
            .env_clear()
            .current_dir(self.dir.path())
            .env("DATABASE_URL", &self.database_url)
            .env("CREDENCE_DATA_DIR", self.dir.path())
            .env("CREDENCE_KEY_FILE", self.dir.path().join("credence.key"))
            .args(args)
            .output();
        tokio::time::timeout(std::time::Duration::from_secs(60), output)
            .await
            .expect("the command ends")
            .expect("credence runs")
    }

    /// Stops the server gracefully like [`TestApp::stop`], but keeps its
    /// directory (the key file, the SQLite file) and answers it: for another
    /// process (`credence serve`) to go on with the same database.
    pub async fn stop_keeping_files(mut self) -> tempfile::TempDir {
        self.stop_server().await;
        self.store.close().await;
        self.dir
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.stop_server().await;
    }

    async fn stop_server(&mut self) {
        assert!(
            !*LEAKED.lock().unwrap(),
            "a secret value leaked into the logs"
        );
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

/// Asserts a JSON error of our shape with `status`, returning the body.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode) -> &Value {
    assert_eq!(status, expected, "body: {body}");
    for key in ["message", "code", "detail", "suberrors"] {
        assert!(body.get(key).is_some(), "error body lacks {key}: {body}");
    }
    body
}

/// How long [`wait_until`] waits: far beyond what any condition takes on an
/// idle machine, so that only a condition that never comes fails, not a slow
/// or loaded machine.
pub const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long the suite's clients keep an idle connection to the server for
/// reuse. The server closes a kept-alive connection that sends no request
/// within `header_read_timeout` (10 s); a client that reuses one at that very
/// moment gets a reset on a request it already sent (seen once in CI, on a
/// POST after a long sign-in). Dropping idle connections well before the
/// server does takes the race away.
pub const CLIENT_IDLE: std::time::Duration = std::time::Duration::from_secs(4);

/// Polls `check` until it holds, for at most [`WAIT_LIMIT`]. Between checks
/// it pauses a few milliseconds (a check may be a query or a request; a
/// tight loop would take the CPU from what it waits for).
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never within {WAIT_LIMIT:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Path of the built `credence` binary.
pub fn credence_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_credence"))
}

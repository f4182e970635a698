//! Building and running the server: connect and migrate the store, open the
//! vault, bootstrap an empty database, bind the listener, serve until a signal.
//! Tests use the same path with port 0 (zero2prod's `Application`).

use crate::config::Config;
use anyhow::Context;
use credence_http::{self as http, web::SignInLimits, AppState};
use credence_service::identity::{self, Bootstrap};
use credence_store::Store;
use credence_vault::Vault;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    state: AppState,
    bootstrap: Option<Bootstrap>,
    background: Background,
}

/// What the serving loop and the background tasks take from the configuration.
struct Background {
    oauth_refresh_every: Option<std::time::Duration>,
    heartbeat_every: std::time::Duration,
    token_use_flush_every: std::time::Duration,
    wal_checkpoint_every: std::time::Duration,
    header_read_timeout: std::time::Duration,
    jobs: credence_jobs::Jobs,
    reminders: credence_jobs::reminders::Reminders,
    proxy_calls_per_minute: u32,
}

/// The path of every JSON API route the application serves (credence-http's
/// and the broker's), for the authorization matrix test.
pub fn api_paths() -> Vec<String> {
    http::api_paths(&credence_broker::endpoints())
}

/// [`api_paths`] and the broker's routes outside `/api/v2` (`/mcp`): every
/// path the OpenAPI document must describe (`tests/api/openapi.rs`).
pub fn documented_paths() -> Vec<String> {
    let broker = credence_broker::endpoints();
    let mut paths = http::api_paths(&broker);
    paths.extend(
        broker
            .paths()
            .iter()
            .filter(|path| !path.starts_with(http::API_PREFIX))
            .map(|path| path.to_string()),
    );
    paths
}

/// Connects to the configured database and applies migrations. The default
/// embedded database's directory is created (0700) when missing.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let (url, create) = config.database();
    if config.database_url.is_none() {
        create_private_dir(&config.data_dir)?;
    }
    let store = Store::connect(&url, create)
        .await
        .context("cannot open the database")?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    Ok(store)
}

/// Opens the key file, creating it (mode 0600) on first start.
pub fn open_vault(config: &Config) -> anyhow::Result<Vault> {
    let path = config.key_file();
    Vault::open_or_create(&path)
        .with_context(|| format!("cannot open the key file {}", path.display()))
}

/// Brings sealed values left by an older version (bound by the old scheme of
/// associated data, see migration 0008) or under an older key onto the
/// current ones before serving; values that do not open are logged, not fatal.
async fn renew_sealed_values(store: &Store, vault: &Vault) -> anyhow::Result<()> {
    let renewal = credence_service::secrets::renew_all(store, vault)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("cannot renew sealed values")?;
    for (column, done) in &renewal.columns {
        if done.rewrapped + done.rebound > 0 {
            tracing::info!(
                column = %column.label(),
                rewrapped = done.rewrapped,
                rebound = done.rebound,
                version = renewal.version,
                "sealed values renewed"
            );
        }
    }
    for problem in &renewal.problems {
        tracing::warn!(%problem, "a sealed value could not be renewed");
    }
    Ok(())
}

/// Loads the built-in app catalog and the operator's apps; an invalid file is an
/// error naming the file and the field.
pub fn open_catalog(config: &Config) -> anyhow::Result<credence_catalog::Catalog> {
    credence_catalog::Catalog::load(config.apps_dir.as_deref())
        .context("the app catalog is not valid")
}

/// The client for calls to apps (see `credence_provider::destination`).
pub fn http_client(catalog: &credence_catalog::Catalog) -> anyhow::Result<reqwest::Client> {
    credence_provider::destination::client(catalog).context("cannot build the HTTP client")
}

fn create_private_dir(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create the data directory {}", path.display()))?;
    }
    Ok(())
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with_limits(config, SignInLimits::default()).await
    }

    /// Like [`Application::build`] with custom sign-in limits (tests use tight ones).
    pub async fn build_with_limits(
        config: Config,
        limits: SignInLimits,
    ) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Self::build_on(config, limits, listener).await
    }

    /// Like [`Application::build_with_limits`], on a socket already bound (a
    /// test that had to tell its port to a peer first keeps it bound meanwhile,
    /// so nothing else can take it); `config.listen` is then not used.
    pub async fn build_on(
        config: Config,
        limits: SignInLimits,
        listener: TcpListener,
    ) -> anyhow::Result<Application> {
        let store = open_store(&config).await?;
        let vault = Arc::new(open_vault(&config)?);
        renew_sealed_values(&store, &vault).await?;
        let catalog = open_catalog(&config)?;
        let address = listener.local_addr()?;
        let bootstrap = identity::bootstrap_if_empty(&store, &config.admin_email)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let http = http_client(&catalog)?;
        let public_url: Arc<str> = config.public_url(address).into();
        let mut jobs_settings = config.jobs.clone();
        jobs_settings.slack_allow_private_hosts |= config.reminders.allow_private_hosts;
        let jobs = credence_jobs::Jobs::new(
            store.clone(),
            vault.clone(),
            public_url.clone(),
            jobs_settings,
        )?;
        match &config.jobs.mail.smtp {
            Some(smtp) => {
                tracing::info!(host = %smtp.host, port = smtp.port, security = ?smtp.security, "mail goes through SMTP")
            }
            None => tracing::info!(
                "no SMTP server configured: mail stays in the local mailbox (credence mail list)"
            ),
        }
        let mailbox = match &config.jobs.mail.smtp {
            Some(_) => None,
            None => Some(Arc::new(crate::mailbox::JobsMailbox {
                store: store.clone(),
                vault: vault.clone(),
                templates: credence_jobs::Templates::load(
                    config.jobs.mail.templates_dir.as_deref(),
                )?,
                public_url: public_url.clone(),
            })
                as Arc<dyn credence_http::web::mailbox::LocalMailbox>),
        };
        let state = AppState {
            store,
            vault,
            public_url,
            mailbox,
            oauth_clients: Arc::new(config.oauth_clients.clone()),
            settings: Arc::new(config.http_settings()),
            limits: Arc::new(limits),
            metrics: crate::telemetry::metrics_handle(),
            catalog: Arc::new(catalog),
            http,
            tokens: Default::default(),
        };
        let reminders =
            credence_jobs::reminders::Reminders::new(state.ctx(), config.reminders.clone());
        Ok(Application {
            listener,
            address,
            state,
            bootstrap,
            background: Background {
                oauth_refresh_every: config.oauth_refresh_every,
                heartbeat_every: config.heartbeat_every,
                token_use_flush_every: config.token_use_flush_every,
                wal_checkpoint_every: config.wal_checkpoint_every,
                header_read_timeout: config.header_read_timeout,
                jobs,
                reminders,
                proxy_calls_per_minute: config.proxy_calls_per_minute,
            },
        })
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The base of links, e.g. `http://127.0.0.1:8080`.
    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    /// What the first start created, if this start was the first.
    pub fn bootstrap(&self) -> Option<&Bootstrap> {
        self.bootstrap.as_ref()
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The services' context (tests call services directly through it).
    pub fn context(&self) -> credence_service::Context {
        self.state.ctx()
    }

    pub fn vault(&self) -> Arc<Vault> {
        self.state.vault.clone()
    }

    /// Serves until SIGTERM or Ctrl-C; in-flight requests finish first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes; in-flight requests finish first.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let store = self.state.store.clone();
        let sweeper = tokio::spawn(sweep_expired_sessions(
            store.clone(),
            self.state.limits.clone(),
        ));
        let refresher = self
            .background
            .oauth_refresh_every
            .map(|every| tokio::spawn(refresh_oauth_connections(self.state.ctx(), every)));
        let tokens = self.state.tokens.clone();
        let (stop_token_uses, token_uses_stopping) = tokio::sync::oneshot::channel();
        let token_uses = tokio::spawn(flush_token_uses(
            store.clone(),
            tokens.clone(),
            self.background.token_use_flush_every,
            token_uses_stopping,
        ));
        let checkpoints = match store.checkpointer().await {
            Ok(Some(checkpointer)) => Some(tokio::spawn(checkpoint_wal(
                checkpointer,
                self.background.wal_checkpoint_every,
            ))),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(error = %error, "no background WAL checkpoints: cannot open their connection");
                None
            }
        };
        let limit =
            credence_broker::limit::CallLimit::per_minute(self.background.proxy_calls_per_minute);
        let instance = uuid::Uuid::new_v4().to_string();
        let heartbeat = tokio::spawn(beat(
            store.clone(),
            self.state.vault.clone(),
            instance.clone(),
            self.background.heartbeat_every,
            limit.clone(),
        ));
        // Every instance delivers the outbox; claims keep them apart.
        let (stop_jobs, jobs_stopping) = tokio::sync::watch::channel(false);
        let jobs = self.background.jobs.settings().every.map(|every| {
            let jobs = self.background.jobs.clone();
            tokio::spawn(jobs.run(every, jobs_stopping))
        });
        // Every instance scans for due reminders; guarded claims keep them apart.
        let reminders = self.background.reminders.settings().every.map(|every| {
            let reminders = self.background.reminders.clone();
            tokio::spawn(reminders.run(every, stop_jobs.subscribe()))
        });
        let jobs_finish_within = self.background.jobs.settings().delivery_timeout;
        let header_read_timeout = self.background.header_read_timeout;
        let (usage, usage_writer) = credence_broker::usage::start(store.clone());
        let mounted = credence_broker::routes(usage, limit);
        // What `api_paths` lists must be what is served: a crate mounted here
        // and not there would be missing from the authorization matrix.
        debug_assert_eq!(http::api_paths(&mounted), api_paths());
        let app = http::router_with(self.state, mounted);
        let result = serve(self.listener, app, header_read_timeout, shutdown).await;
        // The router is gone with its last connection: the usage writer stores
        // what is left and ends.
        usage_writer.finish().await;
        // The last requests are answered: what they noted of their tokens'
        // uses is written before the store closes.
        // (Stopped between passes, not cut in one: a pass has taken the
        // uses it writes out of memory.)
        let _ = stop_token_uses.send(());
        let _ = token_uses.await;
        if let Err(error) = credence_service::auth::flush_token_uses(&store, &tokens).await {
            tracing::warn!(error = %error, "could not record the API tokens' last uses");
        }
        sweeper.abort();
        if let Some(refresher) = refresher {
            refresher.abort();
        }
        heartbeat.abort();
        // The outbox pass under way finishes, so that what it sent is marked
        // sent and not sent again by another instance after its lease.
        let _ = stop_jobs.send(true);
        if let Some(reminders) = reminders {
            // A scan's nudges are each one transaction: stopping mid-scan
            // loses none.
            reminders.abort();
        }
        if let Some(jobs) = jobs {
            let abort = jobs.abort_handle();
            if tokio::time::timeout(jobs_finish_within, jobs)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let _ = heartbeat.await;
        // Stopped: no longer sealing, so no longer holding `keys retire` back.
        let gone = match store.db().await {
            Ok(mut db) => db.delete_heartbeat(&instance).await,
            Err(error) => Err(error),
        };
        if let Err(error) = gone {
            tracing::warn!(error = %error, "could not delete this instance's heartbeat");
        }
        if let Some(checkpoints) = checkpoints {
            // Its connection closes with it; the pool's last one to close
            // checkpoints what is left.
            checkpoints.abort();
            let _ = checkpoints.await;
        }
        store.close().await;
        tracing::info!("stopped");
        result
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight
/// requests finish. What `axum::serve` does, but with hyper's HTTP/1 builder
/// given a timer, so that a client that does not send a request's header
/// block within `header_read_timeout` (or leaves a kept-alive connection idle
/// that long) is disconnected rather than holding the connection for ever.
/// The request timeout is a layer of the router (`http::router`).
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    header_read_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let (stop, stopping) = tokio::sync::watch::channel(());
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it
                    // was accepted: later ones may succeed; do not spin.
                    tracing::warn!(error = %error, "could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        // What `ConnectInfo<SocketAddr>` reads (the sign-in limits use it).
        let service = tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        );
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let connection =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(error = %error, "a connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(stopping);
    // Every connection finishes its request in flight, then closes.
    let _ = stop.send(());
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Every `every`, records in the database the newest key version this
/// instance seals under (following the key file), so that `keys retire` can
/// tell an instance with an older copy of the key file; and counts the live
/// instances, among which the broker's call limit is shared.
async fn beat(
    store: Store,
    vault: Arc<Vault>,
    instance: String,
    every: std::time::Duration,
    limit: Arc<credence_broker::limit::CallLimit>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let version = vault.current_version();
        let beaten = async {
            let mut db = store.db().await?;
            db.record_heartbeat(&instance, version, every).await?;
            let now = credence_store::now();
            let beats = db.list_heartbeats().await?;
            Ok::<_, credence_store::Error>(beats.iter().filter(|b| b.is_live_at(now)).count())
        }
        .await;
        match beaten {
            Ok(live) => limit.set_instances(live),
            Err(error) => {
                tracing::warn!(error = %error, "could not record this instance's heartbeat")
            }
        }
        give_back_free_memory();
    }
}

/// Gives the pages the allocator holds free back to the system. glibc keeps
/// freed memory in its arenas for the next allocation; after the start and a
/// burst of calls that was 2.1 MB of an idle server's 8.4 MB of its own
/// (README, "The API's figures"). Once a heartbeat; pages in use are not
/// touched.
fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointer and only releases free pages,
    // under glibc's own arena locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Every `every`, writes the API tokens' uses noted since the last pass
/// (`auth::flush_token_uses`): one batch, not a write per call. Ends, between
/// passes, when `stop` fires.
async fn flush_token_uses(
    store: Store,
    tokens: Arc<credence_service::auth::TokenCache>,
    every: std::time::Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stop => return,
        }
        if let Err(error) = credence_service::auth::flush_token_uses(&store, &tokens).await {
            tracing::warn!(error = %error, "could not record the API tokens' last uses");
        }
    }
}

/// Every `every`, a pass of SQLite's WAL checkpointer (see
/// `credence_store::Checkpointer`): the log is copied into the database here,
/// not by the commit of a request that happens to cross a size.
async fn checkpoint_wal(
    mut checkpointer: credence_store::Checkpointer,
    every: std::time::Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = checkpointer.pass().await {
            tracing::warn!(error = %error, "a WAL checkpoint failed");
        }
    }
}

/// Deletes expired sessions and OAuth flows once an hour, so the tables stay
/// bounded. Deleting twice from two instances is harmless, so no lease is needed.
async fn sweep_expired_sessions(store: Store, limits: Arc<SignInLimits>) {
    let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        // Sign-in counters whose window is over, and browsers no longer known.
        if let Err(error) = credence_service::sign_in_limits::sweep(&store, &limits).await {
            tracing::warn!(error = %error, "could not delete old sign-in counters");
        }
        let swept = match store.db().await {
            Ok(mut db) => match db.delete_expired_sessions().await {
                // A flow is kept a day past its expiry so that a late replay
                // still reads "used" or "expired" rather than "unknown".
                Ok(sessions) => db
                    .sweep_oauth_flows(credence_store::now() - chrono::Duration::days(1))
                    .await
                    .map(|flows| (sessions, flows)),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match swept {
            Ok((0, 0)) => {}
            Ok((sessions, flows)) => {
                tracing::info!(sessions, flows, "deleted expired sessions and OAuth flows")
            }
            Err(error) => tracing::warn!(error = %error, "could not delete expired sessions"),
        }
    }
}

/// Every 15 s (`Config::oauth_refresh_every`), refreshes the OAuth connections whose access token expires
/// within two minutes, or that nobody refreshed for seven days (so providers
/// do not expire idle refresh tokens), unless an outage's backoff holds them
/// back. Several instances may run this at once: `refresh::refresh_if_due` takes the
/// connection's row lock and re-reads the tokens, so a connection is refreshed
/// once. Errors name the connection, never a token.
async fn refresh_oauth_connections(ctx: credence_service::Context, every: std::time::Duration) {
    let mut every = tokio::time::interval(every);
    loop {
        every.tick().await;
        let now = credence_store::now();
        let due = match ctx.store.db().await {
            Ok(mut db) => {
                db.connections_due_for_refresh(
                    now,
                    now + credence_service::refresh::EXPIRY_MARGIN,
                    now - credence_service::refresh::IDLE_AFTER,
                    100,
                )
                .await
            }
            Err(error) => Err(error),
        };
        let due = match due {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(error = %error, "could not list the connections due for a refresh");
                continue;
            }
        };
        for connection in due {
            let outcome = credence_service::refresh::refresh_if_due(&ctx, connection).await;
            match outcome {
                Ok(credence_service::refresh::RefreshOutcome::Refused { reason }) => {
                    tracing::info!(connection, reason = %reason, "an OAuth connection was refused a refresh; it is invalid now")
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(connection, error = %error, "could not refresh an OAuth connection")
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

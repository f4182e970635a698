//! `credence-bench`: seeds a throwaway database with many credential requests,
//! runs the real server on a loopback port, and prints latency percentiles of
//! the list-sent and detail calls and the create throughput, on SQLite and
//! PostgreSQL; then the background jobs' figures (`jobs.rs`): notifications
//! per second to a local SMTP sink and a webhook sink, and the reminder
//! due-scan over a million requests with its plan.
//!
//! Speed is measured here, not asserted in tests. Every figure is printed with
//! its ratio to references measured in the same run (`GET /healthz`, which
//! touches no database, and `SELECT 1` through the store), so results from
//! different machines can be compared by their ratios. On PostgreSQL the seeded
//! database is `VACUUM ANALYZE`d first, as autovacuum would do in production
//! (`--no-analyze` measures without planner statistics). The command stops by
//! itself and removes what it created: the SQLite file, the key file and the
//! PostgreSQL database. Progress goes to stderr, results to stdout.
//!
//! ```text
//! cargo run --release -p credence-bench -- [--backend sqlite|postgres|both]
//!     [--requests 100000] [--teams 100] [--samples 500] [--postgres-url URL]
//!     [--figures all|api|jobs] [--notifications 2000] [--scan-requests 1000000]
//!     [--memory-connections 1000]
//! ```
//!
//! The memory figure (`memory.rs`) runs the release `credence` binary next to
//! this one as a child process: `cargo build --release -p credence -p
//! credence-bench`, and `ulimit -n` above twice the connections.

mod figures;
mod jobs;
mod load;
mod measure;
mod memory;
mod report;
mod statements;
mod world;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use credence_store::Backend;
use figures::{Budget, Report};
use std::time::Duration;
use world::{Database, World};

/// Which figures to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Figures {
    /// The API's and the jobs'.
    All,
    /// The credential-request API (latencies, create throughput).
    Api,
    /// The background jobs (notifications per second, the reminder scan).
    Jobs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Sqlite,
    Postgres,
    Both,
}

/// Seeds a throwaway database and measures the credential-request API.
#[derive(Debug, Parser)]
#[command(name = "credence-bench", version)]
struct Args {
    /// Which database to measure.
    #[arg(long, value_enum, default_value = "both")]
    backend: Which,
    /// Requests to seed.
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Teams to spread them over (one requester and one recipient each).
    #[arg(long, default_value_t = 100)]
    teams: usize,
    /// Latency samples per figure.
    #[arg(long, default_value_t = 500)]
    samples: usize,
    /// Requests created over HTTP for the throughput figure.
    #[arg(long, default_value_t = 1_000)]
    creates: usize,
    /// Concurrent clients for the latency figures.
    #[arg(long, default_value_t = 2)]
    read_workers: usize,
    /// Concurrent clients for the throughput figures.
    #[arg(long, default_value_t = 4)]
    create_workers: usize,
    /// Longest time, in seconds, any one figure may take.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// Which figures to measure.
    #[arg(long, value_enum, default_value = "all")]
    figures: Figures,
    /// Notifications delivered for each of the SMTP and webhook figures.
    #[arg(long, default_value_t = 2_000)]
    notifications: usize,
    /// Requests inserted for the reminder due-scan.
    #[arg(long, default_value_t = 1_000_000)]
    scan_requests: usize,
    /// Keep-alive connections for the memory figure (`credence serve` in a
    /// child process); 0 skips it.
    #[arg(long, default_value_t = 1_000)]
    memory_connections: usize,
    /// Skip PostgreSQL's VACUUM ANALYZE after seeding (no planner statistics, no visibility map).
    #[arg(long)]
    no_analyze: bool,
    /// PostgreSQL administration URL; a database is created and dropped on it.
    #[arg(
        long,
        env = "CREDENCE_TEST_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    postgres_url: String,
}

impl Args {
    fn budget(&self) -> Budget {
        Budget {
            samples: self.samples,
            read_workers: self.read_workers,
            creates: self.creates,
            create_workers: self.create_workers,
            limit: Duration::from_secs(self.max_seconds),
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.teams == 0 || self.requests < self.teams {
            bail!("give at least one team and at least one request per team");
        }
        if self.samples == 0 || self.creates == 0 {
            bail!("--samples and --creates must be at least 1");
        }
        if self.read_workers == 0 || self.create_workers == 0 {
            bail!("--read-workers and --create-workers must be at least 1");
        }
        Ok(())
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs everything on one backend; the database is removed whatever happens,
/// also on Ctrl-C or SIGTERM.
async fn run_backend(
    backend: Backend,
    args: &Args,
) -> anyhow::Result<(Report, Option<memory::Memory>)> {
    eprintln!("== {backend:?} ==");
    let database = Database::create(backend, &args.postgres_url).await?;
    eprintln!("database: {}", world::redact(&database.url));
    let measured = tokio::select! {
        measured = measure(&database, args) => measured,
        () = stop_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    let removed = database.remove().await;
    let report = measured?;
    removed?;
    Ok(report)
}

/// The jobs' figures on a database of their own, removed whatever happens.
async fn run_jobs(backend: Backend, args: &Args) -> anyhow::Result<jobs::JobsReport> {
    eprintln!("== {backend:?}: jobs ==");
    let database = Database::create(backend, &args.postgres_url).await?;
    let measured = tokio::select! {
        measured = jobs::measure(&database, args.notifications, args.scan_requests, args.samples) => measured,
        () = stop_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    let removed = database.remove().await;
    let report = measured?;
    removed?;
    Ok(report)
}

async fn measure(
    database: &Database,
    args: &Args,
) -> anyhow::Result<(Report, Option<memory::Memory>)> {
    let world = World::start(database, args.teams, args.requests, !args.no_analyze).await?;
    // Memory first, on the database as seeded and settled: after the
    // figures, the creates' notifications would still be in the outbox,
    // and a server that starts on them delivers them instead of idling.
    let memory = match args.memory_connections {
        connections if connections > 0 => {
            eprintln!("measuring: memory of credence serve with {connections} connections");
            Some(memory::measure(database, &world.teams[0].token, connections, 5).await)
        }
        _ => None,
    };
    let measured = match &memory {
        Some(Err(_)) => None,
        _ => Some(figures::measure(&world, args.budget()).await),
    };
    let stopped = world.stop().await;
    let memory = memory.transpose()?;
    let report = measured.context("the figures were not measured")??;
    stopped?;
    Ok((report, memory))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.check()?;
    statements::install()?;
    let backends: &[Backend] = match args.backend {
        Which::Sqlite => &[Backend::Sqlite],
        Which::Postgres => &[Backend::Postgres],
        Which::Both => &[Backend::Sqlite, Backend::Postgres],
    };
    let mut reports = Vec::new();
    if args.figures != Figures::Jobs {
        for &backend in backends {
            let (report, memory) = run_backend(backend, &args).await?;
            report::print_backend(&report, args.read_workers, args.create_workers);
            if let Some(memory) = &memory {
                memory::print(memory);
            }
            reports.push(report);
        }
        if let [sqlite, postgres] = reports.as_slice() {
            report::print_comparison(sqlite, postgres);
        }
    }
    if args.figures != Figures::Api {
        for &backend in backends {
            let report = run_jobs(backend, &args).await?;
            report::print_jobs(&report);
        }
    }
    Ok(())
}

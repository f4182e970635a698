//! The API server's resident memory, as the goals count it (≤ 30 MB
//! idle, ≤ 150 MB with 1,000 concurrent keep-alive connections): the real
//! `credence serve` (the release binary next to this one) in a child process
//! on the seeded database, read from `/proc/<pid>/status` before and while
//! the connections call the token check (`GET /users/me/current-authorization`,
//! answered from the token cache: what is measured is the connections, not a
//! query's rows). The in-process server of the other figures is idle meanwhile.

use crate::load::{credence_binary, free_port, load, resident_during, serve, status_kib, Stats};
use crate::world::Database;
use std::time::Duration;

/// How long the server is left without calls before "idle" is read.
pub const IDLE_FOR: Duration = Duration::from_secs(12);

/// The goals, in MB.
pub const IDLE_GOAL_MB: f64 = 30.0;
pub const LOADED_GOAL_MB: f64 = 150.0;

pub struct Memory {
    pub idle_kib: u64,
    /// Of the idle figure, the process's own memory (heap, stacks) and the
    /// pages of files it maps (its own code above all, shared with the page
    /// cache and given back under pressure).
    pub idle_anon_kib: u64,
    pub idle_file_kib: u64,
    pub peak_kib: u64,
    pub connections: usize,
    pub load: Stats,
}

/// Starts `credence serve` on `database` and measures it idle, then with
/// `connections` callers for `seconds`, each with `token`.
pub async fn measure(
    database: &Database,
    token: &str,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Memory> {
    let credence = credence_binary()?;
    let port = free_port()?;
    let config = database.dir().join("memory.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\ndatabase_url = {url:?}\nkey_file = {key:?}\nlisten = \"127.0.0.1:{port}\"\n",
            data = database.dir().display().to_string(),
            url = database.url,
            key = database.dir().join("credence.key").display().to_string(),
        ),
    )?;
    let (running, base) = serve(&credence, &config, port).await?;
    let url = format!("{base}/api/v2/users/me/current-authorization");
    // One call first, so that "idle" is a server that has answered, with its
    // token cached, as it is between bursts; then quiet for longer than a
    // heartbeat (10 s), after which the server gives its free heap back.
    load(&url, Some(token), 1, Duration::from_millis(200), None).await?;
    tokio::time::sleep(IDLE_FOR).await;
    let pid = running.0.id();
    let idle_anon_kib = status_kib(pid, "RssAnon").unwrap_or(0);
    let idle_file_kib = status_kib(pid, "RssFile").unwrap_or(0);
    let (idle_kib, peak_kib, stats) = resident_during(pid, {
        let (url, token) = (url.clone(), token.to_string());
        async move {
            load(
                &url,
                Some(&token),
                connections,
                Duration::from_secs(seconds),
                None,
            )
            .await
        }
    })
    .await?;
    drop(running);
    Ok(Memory {
        idle_kib,
        idle_anon_kib,
        idle_file_kib,
        peak_kib,
        connections,
        load: stats,
    })
}

/// Prints the figure beside its goals.
pub fn print(memory: &Memory) {
    let mb = |kib: u64| kib as f64 / 1024.0;
    let verdict = |value: f64, goal: f64| if value <= goal { "met" } else { "NOT met" };
    println!();
    println!(
        "memory       credence serve, resident: {:.1} MB idle (goal ≤ {IDLE_GOAL_MB} MB, {}), {:.1} MB at most with {} keep-alive connections calling (goal ≤ {LOADED_GOAL_MB} MB, {}; {:.0} req/s, {} errors)",
        mb(memory.idle_kib),
        verdict(mb(memory.idle_kib), IDLE_GOAL_MB),
        mb(memory.peak_kib),
        memory.connections,
        verdict(mb(memory.peak_kib), LOADED_GOAL_MB),
        memory.load.throughput(),
        memory.load.errors,
    );
    println!(
        "             idle, of which its own memory (heap, stacks) {:.1} MB and mapped files (its code above all) {:.1} MB",
        mb(memory.idle_anon_kib),
        mb(memory.idle_file_kib),
    );
}

//! What both benches use to measure a server in a child process: a load of
//! keep-alive connections, the child's resident memory while it lasts, and
//! the child itself (killed when dropped). `broker-bench` and
//! `credence-bench` each include this file (`mod load;`).

// Each binary uses a part of it.
#![allow(dead_code)]

use anyhow::{bail, Context};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn wait_for(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if client.get(url).send().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} did not answer within 60 s")
}

/// A child process killed on drop.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Stats {
    pub count: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Stats {
    pub fn throughput(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted
            .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }
}

/// `workers` keep-alive connections for `duration`; with `rate`, requests
/// are paced to that many per second in all (open loop), else as fast as
/// answers come (closed loop).
pub async fn load(
    url: &str,
    token: Option<&str>,
    workers: usize,
    duration: Duration,
    rate: Option<f64>,
) -> anyhow::Result<Stats> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .build()?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (client, url) = (client.clone(), url.to_string());
        let token = token.map(|t| format!("Token {t}"));
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            let mut sent = 0u64;
            while start.elapsed() < duration {
                if let Some(rate) = rate {
                    let due = start
                        + Duration::from_secs_f64(
                            (sent * workers as u64 + worker as u64) as f64 / rate,
                        );
                    sent += 1;
                    if due > Instant::now() {
                        tokio::time::sleep_until(due.into()).await;
                    }
                }
                let began = Instant::now();
                let mut request = client.get(&url);
                if let Some(token) = &token {
                    request = request.header("Authorization", token);
                }
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        latencies.push(began.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut stats = Stats {
        count: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors) = task.await?;
        stats.count += latencies.len();
        stats.errors += errors;
        stats.latencies.extend(latencies);
    }
    stats.elapsed = start.elapsed();
    Ok(stats)
}

pub fn resident_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// A size line of `/proc/<pid>/status` (`VmRSS`, `RssAnon`, `RssFile`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
/// The resident memory of `pid` before a load, and at most while `load`
/// runs (sampled every 50 ms), in KiB, with what the load measured.
pub async fn resident_during(
    pid: u32,
    load: impl std::future::Future<Output = anyhow::Result<Stats>> + Send + 'static,
) -> anyhow::Result<(u64, u64, Stats)> {
    let before = resident_kib(pid).unwrap_or(0);
    let many = tokio::spawn(load);
    let mut peak = before;
    while !many.is_finished() {
        peak = peak.max(resident_kib(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = many.await??;
    Ok((before, peak, stats))
}

/// The `credence` binary next to the running one (`cargo build --release -p credence`).
pub fn credence_binary() -> anyhow::Result<std::path::PathBuf> {
    let credence = std::env::current_exe()?
        .parent()
        .ok_or_else(|| anyhow::anyhow!("the bench binary has no directory"))?
        .join("credence");
    if !credence.exists() {
        bail!(
            "{} is missing: cargo build --release -p credence",
            credence.display()
        );
    }
    Ok(credence)
}

/// `credence` run with `config` and `args`, in an empty environment but for
/// logs at `warn`.
pub fn credence_command(credence: &Path, config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(credence);
    command
        .env_clear()
        .env("CREDENCE_LOG", "warn")
        .arg("--config")
        .arg(config)
        .args(args);
    command
}

/// Starts `credence serve` with `config`, which listens on `port`; answers
/// the child and its base URL once `/healthz` answers.
pub async fn serve(credence: &Path, config: &Path, port: u16) -> anyhow::Result<(Running, String)> {
    let child = credence_command(credence, config, &["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start credence serve")?;
    let running = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{base}/healthz")).await?;
    Ok((running, base))
}

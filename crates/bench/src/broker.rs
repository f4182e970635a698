//! `broker-bench`: the broker's overhead, measured against references in the
//! same run. One local upstream (an axum server answering a 1 KB JSON body),
//! one load tool (this file's), three targets: (a) the upstream directly, (b)
//! Debian's nginx as a plain reverse proxy, (c) Credence's broker with an
//! API-key connection (`credence serve`, a child process, on SQLite). Prints
//! throughput and p50/p99 at full load, the p99 each adds at half the broker's
//! throughput, the ratios broker ÷ nginx and broker ÷ direct, and the broker's
//! resident memory while 1,000 connections call it at once.
//!
//! ```text
//! cargo build --release -p credence -p credence-bench
//! ulimit -n 65536; target/release/broker-bench [--seconds 5] [--concurrency 32]
//! ```
//! nginx must be installed (`apt-get install nginx-light`); the run fails
//! loudly without it. It stops by itself and removes what it created.

mod load;

use anyhow::Context;
use clap::Parser;
use load::{
    credence_binary, credence_command, free_port, load, resident_during, serve, wait_for, Running,
};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "broker-bench")]
struct Args {
    /// Seconds each measurement lasts.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent keep-alive connections at full load.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Connections for the memory figure.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
}

const KEY: &str = "bench-api-key-not-a-secret";

/// A 1 KB JSON body.
fn body() -> String {
    let items: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"id":{i},"name":"Contact number {i:02}","ok":true}}"#))
        .collect();
    let mut text = format!(r#"{{"items":[{}]"#, items.join(","));
    while text.len() < 1023 {
        text.push(' ');
    }
    text.push('}');
    text
}

async fn upstream() -> anyhow::Result<u16> {
    use axum::http::{header, HeaderMap, StatusCode};
    let body = Arc::new(body());
    let items = move || {
        let body = body.clone();
        async move {
            (
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
        }
    };
    let me = |headers: HeaderMap| async move {
        let ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {KEY}"));
        if ok {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        }
    };
    let router = axum::Router::new()
        .route("/v1/items", axum::routing::get(items))
        .route("/v1/me", axum::routing::get(me));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(port)
}

fn nginx(dir: &std::path::Path, port: u16, upstream: u16) -> anyhow::Result<Running> {
    let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .context("nginx is not installed; install Debian's: apt-get install nginx-light")?;
    let conf = dir.join("nginx.conf");
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;\npid {dir}/nginx.pid;\nerror_log {dir}/logs/error.log warn;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
               upstream app {{ server 127.0.0.1:{upstream}; keepalive 256; }}\n\
               server {{ listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n}}\n",
            dir = dir.display()
        ),
    )?;
    let child = Command::new(binary)
        .args([
            "-p",
            &dir.display().to_string(),
            "-c",
            &conf.display().to_string(),
            "-g",
            "daemon off;",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start nginx")?;
    Ok(Running(child))
}

/// Starts `credence serve` next to this binary, with a connection to the
/// upstream; answers the process, the proxy URL and the token.
async fn broker(dir: &std::path::Path, upstream: u16) -> anyhow::Result<(Running, String, String)> {
    let credence = credence_binary()?;
    let apps = dir.join("apps");
    std::fs::create_dir_all(&apps)?;
    std::fs::write(
        apps.join("bench-api.toml"),
        format!(
            r#"key = "bench-api"
label = "Bench API"
allow_private_hosts = true

[[versions]]
version = 1
base_url = "http://127.0.0.1:{upstream}"
verify = {{ method = "GET", path = "/v1/me" }}

[versions.auth]
kind = "api_key"
fields = [{{ name = "apiKey", label = "API key", secret = true }}]
inject = {{ header = "Authorization", value = "Bearer {{apiKey}}" }}

[[versions.modules]]
key = "listItems"
label = "List items"
kind = "search"
access = "read"
operations = ["GET /v1/items"]
"#
        ),
    )?;
    let port = free_port()?;
    let config = dir.join("credence.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\nlisten = \"127.0.0.1:{port}\"\napps_dir = \"{apps}\"\nproxy_calls_per_minute = 4000000000\n",
            data = dir.join("data").display(),
            apps = apps.display()
        ),
    )?;
    let (running, base) = serve(&credence, &config, port).await?;
    let output = credence_command(
        &credence,
        &config,
        &[
            "token",
            "create",
            "--email",
            "admin@credence.local",
            "--name",
            "bench",
            "--scopes",
            "connections:use,connections:write",
        ],
    )
    .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let token = stdout
        .lines()
        .find_map(|line| {
            line.split_once("keep it safe): ")
                .map(|(_, t)| t.trim().to_string())
        })
        .with_context(|| {
            format!(
                "no token in: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v2/connections?teamId=1"))
        .header("Authorization", format!("Token {token}"))
        .json(&serde_json::json!({ "accountType": "bench-api", "accountName": "bench", "apiKey": KEY }))
        .send()
        .await?
        .json()
        .await?;
    let id = created["connection"]["id"]
        .as_i64()
        .with_context(|| format!("the connection was not created: {created}"))?;
    Ok((
        running,
        format!("{base}/api/v2/connections/{id}/proxy/v1/items"),
        token,
    ))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let upstream = upstream().await?;
    let nginx_port = free_port()?;
    let _nginx = nginx(&dir.path().join("nginx"), nginx_port, upstream)?;
    let (credence, broker_url, token) = broker(dir.path(), upstream).await?;
    let direct_url = format!("http://127.0.0.1:{upstream}/v1/items");
    let nginx_url = format!("http://127.0.0.1:{nginx_port}/v1/items");
    wait_for(&nginx_url).await?;
    let seconds = Duration::from_secs(args.seconds);
    let targets = [
        ("direct", direct_url.as_str(), None),
        ("nginx", nginx_url.as_str(), None),
        ("broker", broker_url.as_str(), Some(token.as_str())),
    ];
    eprintln!("warming up");
    for (_, url, token) in &targets {
        load(url, *token, args.concurrency, Duration::from_secs(1), None).await?;
    }
    println!(
        "full load, {} connections, {} s each:",
        args.concurrency, args.seconds
    );
    let mut full = Vec::new();
    for (name, url, token) in &targets {
        let stats = load(url, *token, args.concurrency, seconds, None).await?;
        println!(
            "  {name:7} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  errors {}",
            stats.throughput(),
            ms(stats.percentile(0.50)),
            ms(stats.percentile(0.99)),
            stats.errors
        );
        full.push(stats);
    }
    let half = full[2].throughput() / 2.0;
    println!("half the broker's throughput ({half:.0} req/s), paced:");
    let mut p99 = Vec::new();
    for (name, url, token) in &targets {
        let stats = load(url, *token, args.concurrency, seconds, Some(half)).await?;
        println!(
            "  {name:7} p50 {:>7.3} ms  p99 {:>7.3} ms  errors {}",
            ms(stats.percentile(0.50)),
            ms(stats.percentile(0.99)),
            stats.errors
        );
        p99.push(stats.percentile(0.99));
    }
    println!(
        "ratios: broker ÷ nginx throughput {:.2}, broker ÷ direct {:.2}; added p99 at half load: broker {:.3} ms, nginx {:.3} ms",
        full[2].throughput() / full[1].throughput(),
        full[2].throughput() / full[0].throughput(),
        ms(p99[2].saturating_sub(p99[0])),
        ms(p99[1].saturating_sub(p99[0])),
    );
    let (before, peak, stats) = resident_during(credence.0.id(), {
        let (url, token) = (broker_url.clone(), token.clone());
        let connections = args.connections;
        async move {
            load(
                &url,
                Some(&token),
                connections,
                Duration::from_secs(5),
                None,
            )
            .await
        }
    })
    .await?;
    println!(
        "broker memory: {:.1} MB resident idle, {:.1} MB at most with {} connections calling ({:.0} req/s, {} errors)",
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        args.connections,
        stats.throughput(),
        stats.errors
    );
    Ok(())
}

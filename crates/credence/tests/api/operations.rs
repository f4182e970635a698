//! Health, readiness, metrics and graceful shutdown.

use crate::on_both_backends;
use crate::support::{spawn_app, wait_until, WAIT_LIMIT};
use credence_store::Backend;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn health_readiness_and_metrics_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["database"],
        "ok"
    );

    let token = app.token(app.admin_id().await, "user:read").await;
    app.get_json("/api/v2/users/me", &token).await;
    app.get_json("/api/v2/teams/zzz", &token).await;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"http_requests_total{method="GET",route="/api/v2/users/me",status="200"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="/api/v2/teams/{id}",status="400""#),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"http_request_duration_seconds_bucket{method="GET",route="/api/v2/users/me",le="0.005"}"#
    ));
    app.stop().await;
}

async fn readiness_fails_when_the_database_is_gone(backend: Backend) {
    let app = spawn_app(backend).await;
    app.store.close().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the process itself is alive"
    );
}

/// A request in flight when shutdown starts still gets its answer; then the
/// server stops. The request asks `Expect: 100-continue`, so the server's
/// `100 Continue` shows when its handler is reading the body: the request is
/// in flight, not merely connected (a connection not yet accepted would be
/// closed by the shutdown). A refused connection shows that shutdown began.
async fn shutdown_lets_in_flight_requests_finish(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app
        .token(app.admin_id().await, "user:read,user:write")
        .await;
    let address = app.address.trim_start_matches("http://").to_string();
    let body = r#"{"label":"late","scope":["user:read"]}"#;
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/v2/users/me/api-tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Token {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let interim = read_head(&mut stream).await;
    assert_eq!(
        interim, "HTTP/1.1 100 Continue",
        "the handler waits for the body"
    );

    let stopping = tokio::spawn(app.stop());
    // Shutdown has begun once the listener is gone.
    wait_until("the server stops accepting connections", || async {
        tokio::net::TcpStream::connect(&address).await.is_err()
    })
    .await;
    assert!(
        !stopping.is_finished(),
        "the server waits for the request in flight"
    );
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    tokio::time::timeout(WAIT_LIMIT, stopping)
        .await
        .expect("stops after")
        .unwrap();
}

/// Reads one response head (up to its blank line) from `stream`; answers its
/// status line.
async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(WAIT_LIMIT, stream.read(&mut byte))
            .await
            .expect("the server answers")
            .unwrap();
        assert_eq!(read, 1, "the server closed the connection: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    head.lines().next().unwrap_or_default().to_string()
}

on_both_backends!(
    health_readiness_and_metrics_answer,
    readiness_fails_when_the_database_is_gone,
    shutdown_lets_in_flight_requests_finish,
);

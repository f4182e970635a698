//! Health, readiness, metrics and graceful shutdown.

use crate::on_both_backends;
use crate::support::spawn_app;
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

/// A request that is half sent when shutdown starts still gets its answer; then
/// the server stops.
async fn shutdown_lets_in_flight_requests_finish(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app
        .token(app.admin_id().await, "user:read,user:write")
        .await;
    let body = r#"{"label":"late","scope":["user:read"]}"#;
    let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /api/v2/users/me/api-tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Token {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let store = app.store.clone();
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !stopping.is_finished(),
        "the server waits for the request in flight"
    );
    stream.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    tokio::time::timeout(std::time::Duration::from_secs(10), stopping)
        .await
        .expect("stops after")
        .unwrap();
    let _ = store;
}

on_both_backends!(
    health_readiness_and_metrics_answer,
    readiness_fails_when_the_database_is_gone,
    shutdown_lets_in_flight_requests_finish,
);

//! The history of a webhook delivery (migration 0017): every attempt the job
//! runner makes is kept — when, the endpoint's status or why none counted,
//! how long it took — and read at
//! `GET /api/v2/webhooks/{id}/deliveries/{delivery}/attempts`, oldest first,
//! never with the signing secret or the endpoint's URL in it.

use crate::on_both_backends;
use crate::support::{
    assert_error, fast, register_secret, runner, Agency, ManualClock, WebhookSink,
};
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// The sink fails twice (500, then 503) and then takes the message: the
/// delivery keeps three attempts, at the times the injected clock gave them,
/// each with its status and latency, the failures with why.
async fn every_attempt_of_a_delivery_is_kept_with_its_status_and_latency(backend: Backend) {
    let clock = ManualClock::starting_now();
    let mut settings = fast(clock.clock());
    settings.every = None;
    settings.webhooks.allow_private_hosts = true;
    let agency = Agency::start_with(backend, &[], move |config| config.jobs = settings).await;
    let mut driven = fast(clock.clock());
    driven.every = None;
    driven.webhooks.allow_private_hosts = true;
    let jobs = runner(&agency.app, driven);
    let sink = WebhookSink::start().await;
    let admin = agency
        .app
        .token(agency.app.admin_id().await, "webhooks:read,webhooks:write")
        .await;
    // The sink's URL carries a token of the receiver's: the endpoint shows
    // it to its managers, the history must not.
    let url = format!("{}?token=receiver-own-token-4b9d", sink.url());
    let (status, created) = agency
        .post(
            "/api/v2/webhooks",
            &admin,
            Some(json!({ "teamId": agency.app.team, "url": url, "events": ["credential_request.created"] })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let endpoint = created["webhook"]["id"].as_i64().unwrap();
    register_secret(created["webhook"]["secret"].as_str().unwrap());
    sink.answer_next(&[500, 503]);
    agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;

    let mut times = Vec::new();
    times.push(clock.now());
    assert_eq!(jobs.run_webhooks_once().await.unwrap().retried, 1);
    clock.advance(Duration::from_secs(5));
    times.push(clock.now());
    assert_eq!(jobs.run_webhooks_once().await.unwrap().retried, 1);
    clock.advance(Duration::from_secs(5 * 60));
    times.push(clock.now());
    assert_eq!(jobs.run_webhooks_once().await.unwrap().delivered, 1);
    assert_eq!(sink.received().len(), 3);

    let (status, log) = agency
        .app
        .get_json(&format!("/api/v2/webhooks/{endpoint}/deliveries"), &admin)
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let delivery = log["deliveries"][0]["id"].as_i64().unwrap();
    let path = format!("/api/v2/webhooks/{endpoint}/deliveries/{delivery}/attempts");
    let (status, body) = agency.app.get_json(&path, &admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deliveryId"], json!(delivery));
    let attempts = body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{body}");
    let statuses: Vec<Value> = attempts.iter().map(|a| a["status"].clone()).collect();
    assert_eq!(statuses, vec![json!(500), json!(503), json!(200)]);
    assert_eq!(attempts[0]["error"], "the endpoint answered 500");
    assert_eq!(attempts[1]["error"], "the endpoint answered 503");
    assert_eq!(attempts[2]["error"], Value::Null);
    for (index, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["number"], json!(index + 1));
        let at: chrono::DateTime<chrono::Utc> =
            attempt["attemptedAt"].as_str().unwrap().parse().unwrap();
        assert_eq!(at, times[index], "attempt {index}: {attempt}");
        assert!(attempt["latencyMs"].as_i64().unwrap() >= 0, "{attempt}");
    }
    let text = body.to_string();
    assert!(!text.contains("receiver-own-token"), "{text}");
    assert!(!text.contains("whsec_"), "{text}");

    // Replaying makes a new delivery with a history of its own.
    let (status, replayed) = agency
        .post(
            &format!("/api/v2/webhooks/{endpoint}/deliveries/{delivery}/replay"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    let replay = replayed["delivery"]["id"].as_i64().unwrap();
    assert_eq!(jobs.run_webhooks_once().await.unwrap().delivered, 1);
    let (_, body) = agency
        .app
        .get_json(
            &format!("/api/v2/webhooks/{endpoint}/deliveries/{replay}/attempts"),
            &admin,
        )
        .await;
    assert_eq!(body["attempts"].as_array().unwrap().len(), 1, "{body}");
    let (_, body) = agency.app.get_json(&path, &admin).await;
    assert_eq!(body["attempts"].as_array().unwrap().len(), 3, "{body}");

    // Another endpoint's delivery id, or one that does not exist: 404.
    let (status, body) = agency
        .app
        .get_json(
            &format!("/api/v2/webhooks/{endpoint}/deliveries/987654/attempts"),
            &admin,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let outsider = agency.app.token(agency.outsider.id, "webhooks:read").await;
    let (status, body) = agency.app.get_json(&path, &outsider).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    agency.app.stop().await;
}

on_both_backends!(every_attempt_of_a_delivery_is_kept_with_its_status_and_latency,);

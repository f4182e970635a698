//! Webhooks (SPEC §10): an endpoint of a team or an organization receives the
//! audit events it chose, signed per Standard Webhooks — checked here with
//! the official library (`tests/webhooks`), not with Credence's code — from
//! the job runner, retried on a schedule the injected clock drives, logged
//! per endpoint, replayable, disabled after three days of failures; private
//! addresses are refused unless the operator allows them; the secret is
//! shown once and never again.

use crate::on_both_backends;
use crate::support::{
    assert_error, captured_logs, fast, register_secret, runner, wait_until, Agency, ManualClock,
    WebhookSink,
};
use credence_store::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const WEBHOOK_SCOPES: &str = "webhooks:read,webhooks:write";

/// An agency whose operator allows private webhook hosts (the sink is on
/// 127.0.0.1), the runner on `clock` passing by itself when `running`.
async fn agency(backend: Backend, clock: &ManualClock, running: bool) -> Agency {
    let mut settings = fast(clock.clock());
    if !running {
        settings.every = None;
    }
    settings.webhooks.allow_private_hosts = true;
    Agency::start_with(backend, &[], move |config| config.jobs = settings).await
}

/// A runner of `agency`'s deployment that the test drives, on `clock`.
fn driven(agency: &Agency, clock: &ManualClock, allow_private_hosts: bool) -> credence::jobs::Jobs {
    let mut settings = fast(clock.clock());
    settings.every = None;
    settings.webhooks.allow_private_hosts = allow_private_hosts;
    runner(&agency.app, settings)
}

async fn admin_token(agency: &Agency) -> String {
    agency
        .app
        .token(agency.app.admin_id().await, WEBHOOK_SCOPES)
        .await
}

/// Creates an endpoint with `body`; answers it and its secret (which joins
/// the suite's secrets: no later answer or log line may hold it).
async fn create_endpoint(agency: &Agency, token: &str, body: Value) -> (Value, String) {
    let (status, created) = agency.post("/api/v2/webhooks", token, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["webhook"]["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    register_secret(&secret);
    (created["webhook"].clone(), secret)
}

async fn deliveries(agency: &Agency, token: &str, endpoint: i64) -> Vec<Value> {
    let (status, body) = agency
        .app
        .get_json(&format!("/api/v2/webhooks/{endpoint}/deliveries"), token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

/// A new credential request from the requester to the teammate: the event
/// `credential_request.created` of the Default team.
async fn some_change(agency: &Agency) -> String {
    let (request, _, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    request
}

/// The secret must be nowhere but in the answer that made it: not in the
/// logs, not in a stored column in plain text.
async fn assert_secret_kept(agency: &Agency, secret: &str, endpoint: i64) {
    assert!(
        !captured_logs().contains(secret),
        "the secret is in a log line"
    );
    let mut db = agency.app.db().await;
    let stored = db.get_webhook_endpoint(endpoint).await.unwrap().unwrap();
    assert!(!format!("{stored:?}").contains(secret));
    let sealed = db.get_secret(&stored.secret_id).await.unwrap().unwrap();
    assert!(
        sealed.sealed.starts_with("cv1."),
        "not sealed: {}",
        sealed.purpose
    );
    assert!(!sealed.sealed.contains(secret.trim_start_matches("whsec_")));
}

async fn a_recipient_authorizing_delivers_a_signed_credential_authorized_event(backend: Backend) {
    let clock = ManualClock::starting_now();
    let agency = agency(backend, &clock, true).await;
    let sink = WebhookSink::start().await;
    let admin = admin_token(&agency).await;
    let (endpoint, secret) = create_endpoint(
        &agency,
        &admin,
        json!({ "teamId": agency.app.team, "url": sink.url(), "events": ["credential.authorized"] }),
    )
    .await;
    assert_eq!(endpoint["enabled"], json!(true));
    assert_eq!(endpoint["events"], json!(["credential.authorized"]));
    let id = endpoint["id"].as_i64().unwrap();

    let (request, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    agency.upstream.accept("webhook-test-key-1");
    let (status, body) = agency
        .authorize_with(&credentials[0], "authorize", "webhook-test-key-1")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    wait_until("the sink receives credential.authorized", || async {
        !sink.received_of("credential.authorized").is_empty()
    })
    .await;
    let received = sink.received();
    // Only what the endpoint chose: not the request's creation.
    assert_eq!(received.len(), 1, "{received:?}");
    let message = &received[0];
    assert_eq!(message.content_type, "application/json");
    assert!(message.id.starts_with("msg_"), "{}", message.id);

    let verified = message
        .verify_with_official_library(&secret)
        .await
        .expect("the official library verifies the signature");
    assert_eq!(verified["type"], "credential.authorized");
    assert_eq!(verified["data"]["target"]["kind"], "credential");
    assert_eq!(verified["data"]["target"]["id"], json!(credentials[0]));
    assert_eq!(verified["data"]["details"]["requestId"], json!(request));
    assert_eq!(verified["data"]["teamId"], json!(agency.app.team.0));
    assert!(
        verified["data"]["actor"]["label"]
            .as_str()
            .unwrap()
            .contains(&agency.teammate.email),
        "{verified}"
    );
    // The library refuses what is not ours: another secret, a changed body.
    let other = credence::service::webhooks::new_secret();
    assert!(message
        .verify_with_official_library(secrecy::ExposeSecret::expose_secret(&other))
        .await
        .is_err());
    let mut tampered = message.clone();
    tampered.body = tampered
        .body
        .replace("credential.authorized", "credential.revoked");
    assert!(tampered
        .verify_with_official_library(&secret)
        .await
        .is_err());

    // The delivery log.
    let log = deliveries(&agency, &admin, id).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["event"], "credential.authorized");
    assert_eq!(log[0]["state"], "delivered");
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["attempts"], 1);
    assert_eq!(log[0]["messageId"], json!(message.id));
    assert!(log[0]["latencyMs"].as_i64().is_some(), "{}", log[0]);
    assert_eq!(
        log[0]["response"],
        json!(format!("sink answered 200 to {}", message.id))
    );
    // Read back, the endpoint shows no secret.
    let (status, read) = agency
        .app
        .get_json(&format!("/api/v2/webhooks/{id}"), &admin)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(read["webhook"].get("secret").is_none(), "{read}");
    let (_, listed) = agency
        .app
        .get_json(
            &format!("/api/v2/webhooks?teamId={}", agency.app.team),
            &admin,
        )
        .await;
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains("whsec_"), "{listed}");
    assert_secret_kept(&agency, &secret, id).await;
    let events = agency.audit_events().await;
    assert!(
        events.contains(&"webhook.created".to_string()),
        "{events:?}"
    );
    agency.app.stop().await;
}

async fn a_failing_endpoint_is_retried_with_backoff_and_a_delivery_can_be_replayed(
    backend: Backend,
) {
    let clock = ManualClock::starting_now();
    let agency = agency(backend, &clock, false).await;
    let jobs = driven(&agency, &clock, true);
    let sink = WebhookSink::start().await;
    let admin = admin_token(&agency).await;
    let (endpoint, secret) = create_endpoint(
        &agency,
        &admin,
        json!({ "teamId": agency.app.team, "url": sink.url(), "events": ["credential_request.created"] }),
    )
    .await;
    let id = endpoint["id"].as_i64().unwrap();
    sink.answer_next(&[500, 500]);
    some_change(&agency).await;

    let pass = jobs.run_webhooks_once().await.unwrap();
    assert_eq!((pass.claimed, pass.retried), (1, 1), "{pass:?}");
    let log = deliveries(&agency, &admin, id).await;
    assert_eq!(log[0]["state"], "retrying", "{}", log[0]);
    assert_eq!(log[0]["status"], 500);
    assert_eq!(log[0]["attempts"], 1);
    assert!(log[0]["response"]
        .as_str()
        .unwrap()
        .starts_with("sink answered 500"));
    let next = |entry: &Value| {
        entry["nextAttemptAt"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    assert_eq!(next(&log[0]), clock.now() + chrono::Duration::seconds(5));

    // Not before its time; then the second attempt, 5 minutes before the third.
    clock.advance(Duration::from_secs(4));
    assert_eq!(jobs.run_webhooks_once().await.unwrap().claimed, 0);
    clock.advance(Duration::from_secs(1));
    let pass = jobs.run_webhooks_once().await.unwrap();
    assert_eq!((pass.claimed, pass.retried), (1, 1), "{pass:?}");
    let log = deliveries(&agency, &admin, id).await;
    assert_eq!(log[0]["attempts"], 2);
    assert_eq!(next(&log[0]), clock.now() + chrono::Duration::minutes(5));
    clock.advance(Duration::from_secs(5 * 60 - 1));
    assert_eq!(jobs.run_webhooks_once().await.unwrap().claimed, 0);
    clock.advance(Duration::from_secs(1));
    let pass = jobs.run_webhooks_once().await.unwrap();
    assert_eq!((pass.claimed, pass.delivered), (1, 1), "{pass:?}");

    let log = deliveries(&agency, &admin, id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["state"], "delivered");
    assert_eq!(
        (log[0]["attempts"].clone(), log[0]["status"].clone()),
        (json!(3), json!(200))
    );
    assert!(log[0]["nextAttemptAt"].is_null());
    let received = sink.received();
    assert_eq!(received.len(), 3);
    // Every attempt is the same message, signed afresh for its own time.
    assert!(received
        .iter()
        .all(|m| m.id == received[0].id && m.body == received[0].body));
    assert_ne!(received[0].timestamp, received[2].timestamp);
    received[0]
        .verify_with_official_library(&secret)
        .await
        .expect("the first attempt verifies");

    // Replay: a new delivery of the same message, sent at once.
    let delivery = log[0]["id"].as_i64().unwrap();
    let (status, replayed) = agency
        .post(
            &format!("/api/v2/webhooks/{id}/deliveries/{delivery}/replay"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    assert_eq!(replayed["delivery"]["replayOf"], json!(delivery));
    assert_eq!(replayed["delivery"]["state"], "pending");
    assert_eq!(jobs.run_webhooks_once().await.unwrap().delivered, 1);
    let received = sink.received();
    assert_eq!(received.len(), 4);
    assert_eq!(received[3].id, received[0].id);
    assert_eq!(received[3].body, received[0].body);
    assert_eq!(deliveries(&agency, &admin, id).await.len(), 2);
    let (status, one) = agency
        .app
        .get_json(
            &format!("/api/v2/webhooks/{id}/deliveries/{delivery}"),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        one["delivery"]["payload"]["type"],
        "credential_request.created"
    );
    assert_secret_kept(&agency, &secret, id).await;
    agency.app.stop().await;
}

async fn rotating_the_secret_signs_with_both_secrets_during_the_overlap(backend: Backend) {
    let clock = ManualClock::starting_now();
    let agency = agency(backend, &clock, false).await;
    let jobs = driven(&agency, &clock, true);
    let sink = WebhookSink::start().await;
    let admin = admin_token(&agency).await;
    let (endpoint, old_secret) = create_endpoint(
        &agency,
        &admin,
        json!({ "teamId": agency.app.team, "url": sink.url(), "events": ["credential_request.created"] }),
    )
    .await;
    let id = endpoint["id"].as_i64().unwrap();

    let (status, rotated) = agency
        .post(
            &format!("/api/v2/webhooks/{id}/rotate-secret"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["webhook"]["secret"].as_str().unwrap().to_string();
    register_secret(&new_secret);
    assert!(new_secret.starts_with("whsec_"));
    assert_ne!(new_secret, old_secret);
    assert!(
        rotated["webhook"]["previousSecretValidUntil"].is_string(),
        "{rotated}"
    );

    some_change(&agency).await;
    assert_eq!(jobs.run_webhooks_once().await.unwrap().delivered, 1);
    let message = sink.received().pop().unwrap();
    let signatures: Vec<&str> = message.signature.split(' ').collect();
    assert_eq!(signatures.len(), 2, "{}", message.signature);
    assert!(signatures.iter().all(|s| s.starts_with("v1,")));
    message
        .verify_with_official_library(&new_secret)
        .await
        .expect("the new secret verifies");
    message
        .verify_with_official_library(&old_secret)
        .await
        .expect("the old secret still verifies during the overlap");

    // After the overlap, only the new secret signs.
    clock.advance(Duration::from_secs(25 * 3600));
    some_change(&agency).await;
    assert_eq!(jobs.run_webhooks_once().await.unwrap().delivered, 1);
    let message = sink.received().pop().unwrap();
    assert_eq!(
        message.signature.split(' ').count(),
        1,
        "{}",
        message.signature
    );
    let events = agency.audit_events().await;
    assert!(
        events.contains(&"webhook.secret_rotated".to_string()),
        "{events:?}"
    );
    assert_secret_kept(&agency, &new_secret, id).await;
    assert!(!captured_logs().contains(&old_secret));
    agency.app.stop().await;
}

async fn an_endpoint_failing_for_three_days_is_disabled_and_its_owners_are_emailed(
    backend: Backend,
) {
    let clock = ManualClock::starting_now();
    let agency = agency(backend, &clock, false).await;
    let jobs = driven(&agency, &clock, true);
    let sink = WebhookSink::start().await;
    let admin = admin_token(&agency).await;
    sink.answer_next(&[503; 50]);
    // The organization's own endpoint: it hears of every team's events.
    let (endpoint, _) = create_endpoint(
        &agency,
        &admin,
        json!({ "organizationId": agency.app.organization, "url": sink.url(), "events": ["credential_request.created"] }),
    )
    .await;
    let id = endpoint["id"].as_i64().unwrap();
    assert_eq!(endpoint["teamId"], Value::Null);
    some_change(&agency).await;

    assert_eq!(jobs.run_webhooks_once().await.unwrap().retried, 1);
    clock.advance(Duration::from_secs(5));
    assert_eq!(jobs.run_webhooks_once().await.unwrap().retried, 1);
    // Failing for two days: still enabled.
    clock.advance(Duration::from_secs(2 * 24 * 3600));
    let pass = jobs.run_webhooks_once().await.unwrap();
    assert_eq!((pass.retried, pass.disabled), (1, 0), "{pass:?}");
    let (_, read) = agency
        .app
        .get_json(&format!("/api/v2/webhooks/{id}"), &admin)
        .await;
    assert_eq!(read["webhook"]["enabled"], json!(true));
    assert!(read["webhook"]["failingSince"].is_string(), "{read}");
    // Three days after the first failure: disabled, and the owners told.
    clock.advance(Duration::from_secs(24 * 3600));
    let pass = jobs.run_webhooks_once().await.unwrap();
    assert_eq!(pass.disabled, 1, "{pass:?}");
    let (_, read) = agency
        .app
        .get_json(&format!("/api/v2/webhooks/{id}"), &admin)
        .await;
    assert_eq!(read["webhook"]["enabled"], json!(false), "{read}");
    assert!(read["webhook"]["disabledAt"].is_string());
    assert!(read["webhook"]["disabledReason"]
        .as_str()
        .unwrap()
        .contains("failed since"));
    let mails: Vec<(String, String, Value)> = agency
        .outbox()
        .await
        .into_iter()
        .filter(|(kind, _, _)| kind == "webhook.disabled")
        .collect();
    let owners: Vec<&str> = mails.iter().map(|(_, to, _)| to.as_str()).collect();
    assert_eq!(owners, vec![agency.app.admin_email.as_str()], "{mails:?}");
    let email =
        credence::jobs::mail::render("webhook.disabled", &mails[0].2, &agency.app.address).unwrap();
    assert!(email.subject.contains("127.0.0.1"), "{}", email.subject);
    assert!(
        email.text.contains("enable the endpoint again"),
        "{}",
        email.text
    );
    let events = agency.audit_events().await;
    assert!(
        events.contains(&"webhook.disabled".to_string()),
        "{events:?}"
    );

    // Disabled: nothing more is queued or sent to it.
    let before = deliveries(&agency, &admin, id).await.len();
    let sent = sink.received().len();
    some_change(&agency).await;
    clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(jobs.run_webhooks_once().await.unwrap().claimed, 0);
    assert_eq!(deliveries(&agency, &admin, id).await.len(), before);
    assert_eq!(sink.received().len(), sent);

    // Enabled again, it starts afresh.
    let (status, enabled) = agency
        .app
        .send(
            Method::PATCH,
            &format!("/api/v2/webhooks/{id}"),
            &admin,
            Some(json!({ "enabled": true })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(enabled["webhook"]["enabled"], json!(true));
    assert!(enabled["webhook"]["failingSince"].is_null());
    assert!(enabled["webhook"]["disabledAt"].is_null());
    agency.app.stop().await;
}

async fn private_loopback_and_link_local_urls_are_refused_unless_the_operator_allows_them(
    backend: Backend,
) {
    // The operator has not set webhooks_allow_private_hosts.
    let agency = Agency::start(backend).await;
    let sink = WebhookSink::start().await;
    let admin = admin_token(&agency).await;
    for url in [
        format!("https://127.0.0.1:{}/hooks/in", sink.port),
        "https://10.1.2.3/hooks".to_string(),
        "https://169.254.169.254/latest/meta-data".to_string(),
        "https://[::1]/hooks".to_string(),
        format!("https://localhost:{}/hooks/in", sink.port),
        // Plain http only where private hosts are allowed.
        format!("http://127.0.0.1:{}/hooks/in", sink.port),
    ] {
        let (status, body) = agency
            .post(
                "/api/v2/webhooks",
                &admin,
                Some(json!({ "teamId": agency.app.team, "url": url, "events": ["*"] })),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
        assert_eq!(body["suberrors"][0]["field"], "url", "{body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("webhooks_allow_private_hosts"),
            "{url}: {body}"
        );
    }
    let (_, listed) = agency
        .app
        .get_json(
            &format!("/api/v2/webhooks?teamId={}", agency.app.team),
            &admin,
        )
        .await;
    assert_eq!(listed["webhooks"], json!([]));
    assert!(!agency
        .audit_events()
        .await
        .contains(&"webhook.created".to_string()));

    // At delivery too: an endpoint stored while private hosts were allowed
    // gets nothing from a runner that does not allow them — neither an IP
    // literal nor a name that resolves to one.
    let admin_user = agency
        .app
        .db()
        .await
        .get_user(agency.app.admin_id().await)
        .await
        .unwrap()
        .unwrap();
    let mut endpoints = Vec::new();
    for url in [
        format!("https://127.0.0.1:{}/hooks/in", sink.port),
        format!("https://localhost:{}/hooks/in", sink.port),
    ] {
        let (endpoint, secret) = credence::service::webhooks::create(
            &agency.app.store,
            &agency.app.vault(),
            &admin_user,
            credence::service::webhooks::Owner::Team(agency.app.team),
            credence::service::webhooks::EndpointInput {
                url,
                events: vec!["credential_request.created".into()],
                enabled: true,
            },
            true,
        )
        .await
        .unwrap();
        register_secret(secrecy::ExposeSecret::expose_secret(&secret));
        endpoints.push(endpoint.id);
    }
    some_change(&agency).await;
    let clock = ManualClock::starting_now();
    let pass = driven(&agency, &clock, false)
        .run_webhooks_once()
        .await
        .unwrap();
    assert_eq!((pass.claimed, pass.retried), (2, 2), "{pass:?}");
    assert!(sink.received().is_empty());
    for id in endpoints {
        let log = deliveries(&agency, &admin, id).await;
        let error = log[0]["error"].as_str().unwrap();
        assert!(error.contains("private"), "{error}");
        assert!(log[0]["status"].is_null());
    }
    agency.app.stop().await;
}

async fn bad_input_is_refused_with_the_field_named_and_changes_nothing(backend: Backend) {
    let clock = ManualClock::starting_now();
    let agency = agency(backend, &clock, false).await;
    let sink = WebhookSink::start().await;
    let admin = admin_token(&agency).await;
    let team = agency.app.team;
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({ "teamId": team, "url": sink.url(), "events": [] }),
            "events",
            "at least one",
        ),
        (
            json!({ "teamId": team, "url": sink.url(), "events": ["credential.authorised"] }),
            "events",
            "credential.authorised",
        ),
        (
            json!({ "teamId": team, "url": sink.url(), "events": vec!["*"; 65] }),
            "events",
            "the limit is 64",
        ),
        (
            json!({ "teamId": team, "url": "", "events": ["*"] }),
            "url",
            "required",
        ),
        (
            json!({ "teamId": team, "url": "not a url", "events": ["*"] }),
            "url",
            "not an absolute URL",
        ),
        (
            json!({ "teamId": team, "url": format!("{}?{}", sink.url(), "x".repeat(2100)), "events": ["*"] }),
            "url",
            "the limit is 2048",
        ),
        (
            json!({ "teamId": team, "url": format!("http://user:pw@127.0.0.1:{}/in", sink.port), "events": ["*"] }),
            "url",
            "user name or password",
        ),
        (
            json!({ "teamId": team, "url": "ftp://127.0.0.1/in", "events": ["*"] }),
            "url",
            "https://",
        ),
        (
            json!({ "teamId": team, "organizationId": agency.app.organization, "url": sink.url(), "events": ["*"] }),
            "teamId",
            "not both",
        ),
        (
            json!({ "url": sink.url(), "events": ["*"] }),
            "teamId",
            "required",
        ),
    ];
    for (body, field, says) in cases {
        let (status, answer) = agency
            .post("/api/v2/webhooks", &admin, Some(body.clone()))
            .await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST);
        assert_eq!(answer["suberrors"][0]["field"], field, "{body}: {answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    // Shapes serde refuses: still a JSON 400.
    for body in [
        json!({ "teamId": team, "url": sink.url(), "events": "*" }),
        json!({ "teamId": team, "url": sink.url(), "events": ["*"], "secret": "whsec_mine" }),
        json!({ "teamId": "one", "url": sink.url(), "events": ["*"] }),
    ] {
        let (status, answer) = agency.post("/api/v2/webhooks", &admin, Some(body)).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST);
    }
    // Who may: not a plain member, not a token without the scope, not outside.
    let member = agency.app.token(agency.requester.id, WEBHOOK_SCOPES).await;
    let (status, answer) = agency
        .post(
            "/api/v2/webhooks",
            &member,
            Some(json!({ "teamId": team, "url": sink.url(), "events": ["*"] })),
        )
        .await;
    assert_error(status, &answer, StatusCode::FORBIDDEN);
    let (status, answer) = agency
        .post(
            "/api/v2/webhooks",
            &agency.admin_token,
            Some(json!({ "teamId": team, "url": sink.url(), "events": ["*"] })),
        )
        .await;
    assert_error(status, &answer, StatusCode::FORBIDDEN);
    let (status, answer) = agency
        .post(
            "/api/v2/webhooks",
            &admin,
            Some(json!({ "teamId": 999_999, "url": sink.url(), "events": ["*"] })),
        )
        .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND);
    let (_, listed) = agency
        .app
        .get_json(&format!("/api/v2/webhooks?teamId={team}"), &admin)
        .await;
    assert_eq!(listed["webhooks"], json!([]), "something was created");

    // On an endpoint that exists.
    let (endpoint, _) = create_endpoint(
        &agency,
        &admin,
        json!({ "teamId": team, "url": sink.url(), "events": ["*"], "enabled": false }),
    )
    .await;
    assert_eq!(endpoint["enabled"], json!(false));
    let id = endpoint["id"].as_i64().unwrap();
    let (status, answer) = agency
        .app
        .send(
            Method::PATCH,
            &format!("/api/v2/webhooks/{id}"),
            &admin,
            Some(json!({ "events": ["nope.nothing"] })),
        )
        .await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST);
    let (_, read) = agency
        .app
        .get_json(&format!("/api/v2/webhooks/{id}"), &admin)
        .await;
    assert_eq!(
        read["webhook"]["events"],
        json!(["*"]),
        "the refused change was kept"
    );
    for (method, path) in [
        (
            Method::GET,
            format!("/api/v2/webhooks/{id}/deliveries?limit=0"),
        ),
        (
            Method::GET,
            format!("/api/v2/webhooks/{id}/deliveries?limit=lots"),
        ),
        (Method::GET, "/api/v2/webhooks".to_string()),
        (Method::GET, "/api/v2/webhooks?teamId=abc".to_string()),
    ] {
        let (status, answer) = agency.app.send(method, &path, &admin, None).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST);
    }
    for (method, path) in [
        (Method::GET, "/api/v2/webhooks/424242".to_string()),
        (Method::DELETE, "/api/v2/webhooks/424242".to_string()),
        (
            Method::POST,
            "/api/v2/webhooks/424242/rotate-secret".to_string(),
        ),
        (
            Method::GET,
            format!("/api/v2/webhooks/{id}/deliveries/424242"),
        ),
        (
            Method::POST,
            format!("/api/v2/webhooks/{id}/deliveries/424242/replay"),
        ),
    ] {
        let (status, answer) = agency.app.send(method, &path, &admin, None).await;
        assert_error(status, &answer, StatusCode::NOT_FOUND);
    }
    // Someone who does not manage it learns nothing of it.
    let (status, answer) = agency
        .app
        .get_json(&format!("/api/v2/webhooks/{id}"), &member)
        .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND);
    let (status, answer) = agency
        .delete(&format!("/api/v2/webhooks/{id}"), &admin)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = agency
        .app
        .get_json(&format!("/api/v2/webhooks/{id}"), &admin)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(agency
        .audit_events()
        .await
        .contains(&"webhook.deleted".to_string()));
    agency.app.stop().await;
}

async fn a_change_that_rolls_back_queues_no_delivery(backend: Backend) {
    let clock = ManualClock::starting_now();
    let agency = agency(backend, &clock, false).await;
    let jobs = driven(&agency, &clock, true);
    let sink = WebhookSink::start().await;
    let admin = admin_token(&agency).await;
    let (endpoint, _) = create_endpoint(
        &agency,
        &admin,
        json!({ "organizationId": agency.app.organization, "url": sink.url(), "events": ["feature.requested"] }),
    )
    .await;
    let id = endpoint["id"].as_i64().unwrap();
    let event = |name: &'static str| credence::service::audit::Event {
        organization: agency.app.organization,
        team: None,
        name,
        target_kind: "user",
        target_id: "1".into(),
        details: json!({ "note": name }),
    };
    let actor = credence::service::audit::Actor::system();
    let mut rolled_back = agency.app.store.begin().await.unwrap();
    credence::service::audit::record(&mut rolled_back, &actor, event("feature.requested"))
        .await
        .unwrap();
    drop(rolled_back);
    assert!(deliveries(&agency, &admin, id).await.is_empty());
    let mut committed = agency.app.store.begin().await.unwrap();
    credence::service::audit::record(&mut committed, &actor, event("feature.requested"))
        .await
        .unwrap();
    committed.commit().await.unwrap();
    assert_eq!(jobs.drain_webhooks().await.unwrap().delivered, 1);
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].payload()["data"]["details"]["note"],
        "feature.requested"
    );
    agency.app.stop().await;
}

async fn two_runners_deliver_each_message_once(backend: Backend) {
    let clock = ManualClock::starting_now();
    let agency = agency(backend, &clock, false).await;
    let (first, second) = (driven(&agency, &clock, true), driven(&agency, &clock, true));
    let sink = WebhookSink::start().await;
    let admin = admin_token(&agency).await;
    create_endpoint(
        &agency,
        &admin,
        json!({ "organizationId": agency.app.organization, "url": sink.url(), "events": ["feature.requested"] }),
    )
    .await;
    let count = 60;
    for i in 0..count {
        let mut tx = agency.app.store.begin().await.unwrap();
        credence::service::audit::record(
            &mut tx,
            &credence::service::audit::Actor::system(),
            credence::service::audit::Event {
                organization: agency.app.organization,
                team: None,
                name: "feature.requested",
                target_kind: "user",
                target_id: i.to_string(),
                details: json!({ "n": i }),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let (a, b) = tokio::join!(first.drain_webhooks(), second.drain_webhooks());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.delivered + b.delivered, count, "{a:?} {b:?}");
    let mut ids: Vec<String> = sink.received().into_iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), count, "a message was sent twice or not at all");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count);
    agency.app.stop().await;
}

on_both_backends!(
    a_recipient_authorizing_delivers_a_signed_credential_authorized_event,
    a_failing_endpoint_is_retried_with_backoff_and_a_delivery_can_be_replayed,
    rotating_the_secret_signs_with_both_secrets_during_the_overlap,
    an_endpoint_failing_for_three_days_is_disabled_and_its_owners_are_emailed,
    private_loopback_and_link_local_urls_are_refused_unless_the_operator_allows_them,
    bad_input_is_refused_with_the_field_named_and_changes_nothing,
    a_change_that_rolls_back_queues_no_delivery,
    two_runners_deliver_each_message_once,
);

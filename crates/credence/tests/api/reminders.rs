//! Reminders and the SLA (SPEC §9), on a clock the test moves: the friendly
//! reminder 24 h after creation, the escalation at 72 h with the owner (and
//! the team's sponsor) copied, none once nothing is pending, no more than the
//! policy's maximum, one SLA breach notice to the owner, and two instances
//! scanning one database nudging once. The team's policy over the API, with
//! its bad input refused; a reminder by email through MailDev, and to a
//! Slack incoming webhook.

use crate::on_both_backends;
use crate::support::{assert_error, fast, wait_until, Agency, Maildev, ManualClock};
use credence::jobs::reminders::{Reminders, Settings};
use credence::service::reminders::Scan;
use credence_store::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// A scan of `agency`'s database on `clock` (what every instance runs).
fn scanner(agency: &Agency, clock: &ManualClock) -> Reminders {
    Reminders::new(
        agency.app.context.clone(),
        Settings {
            every: None,
            clock: clock.clock(),
            ..Settings::default()
        },
    )
}

fn policy_path(agency: &Agency) -> String {
    format!(
        "/api/v2/credential-requests/teams/{}/reminder-policy",
        agency.app.team
    )
}

async fn put_policy(agency: &Agency, token: &str, body: Value) -> (StatusCode, Value) {
    agency
        .app
        .send(Method::PUT, &policy_path(agency), token, Some(body))
        .await
}

/// The undelivered notifications of `kind`: (recipient, payload).
async fn queued(agency: &Agency, kind: &str) -> Vec<(String, Value)> {
    agency
        .outbox()
        .await
        .into_iter()
        .filter(|(k, _, _)| k == kind)
        .map(|(_, to, payload)| (to, payload))
        .collect()
}

async fn request_json(agency: &Agency, id: &str) -> Value {
    let (status, body) = agency
        .app
        .get_json(
            &format!("/api/v2/credential-requests/requests/{id}"),
            &agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["request"].clone()
}

fn at(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a time"))
        .parse()
        .unwrap()
}

async fn a_pending_request_is_reminded_at_24_h_and_escalated_at_72_h_with_the_owner_copied(
    backend: Backend,
) {
    let agency = Agency::start(backend).await;
    let clock = ManualClock::starting_now();
    let scan = scanner(&agency, &clock);
    let (status, body) = put_policy(
        &agency,
        &agency.admin_token,
        json!({ "sponsorCc": "sponsor@agency.example" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (id, _, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let created = request_json(&agency, &id).await;
    assert_eq!(
        at(&created["nextNudgeAt"]) - at(&created["createdAt"]),
        chrono::Duration::hours(24)
    );
    assert_eq!(
        at(&created["slaDueAt"]) - at(&created["createdAt"]),
        chrono::Duration::hours(72)
    );

    clock.advance(23 * HOUR + 59 * MINUTE);
    assert_eq!(scan.scan().await.unwrap(), Scan::default(), "not yet");
    assert!(queued(&agency, "credential_request.reminder")
        .await
        .is_empty());

    clock.advance(2 * MINUTE);
    let first = scan.scan().await.unwrap();
    assert_eq!(first.reminded, 1, "{first:?}");
    let reminders = queued(&agency, "credential_request.reminder").await;
    assert_eq!(reminders.len(), 1);
    let (to, payload) = &reminders[0];
    assert_eq!(to, &agency.teammate.email);
    assert_eq!(payload["requestId"], json!(id));
    assert_eq!(payload["apps"], json!(["Acme CRM"]));
    assert!(
        payload.get("cc").is_none(),
        "the friendly one copies nobody: {payload}"
    );
    let read = request_json(&agency, &id).await;
    assert_eq!(read["nudgeCount"], json!(1));
    assert_eq!(at(&read["lastNudgeAt"]), clock.now());
    assert_eq!(
        at(&read["nextNudgeAt"]) - at(&created["nextNudgeAt"]),
        chrono::Duration::hours(48),
        "on the schedule, every 48 h"
    );
    assert_eq!(scan.scan().await.unwrap(), Scan::default(), "nudged once");

    // 72 h: the escalation, with the owner (the requester) and the sponsor
    // copied; and the SLA breach, told once to the owner.
    clock.advance(48 * HOUR);
    let second = scan.scan().await.unwrap();
    assert_eq!((second.escalated, second.breaches), (1, 1), "{second:?}");
    let escalations = queued(&agency, "credential_request.escalation").await;
    assert_eq!(escalations.len(), 1);
    let (to, payload) = &escalations[0];
    assert_eq!(to, &agency.teammate.email);
    assert_eq!(
        payload["cc"],
        json!([agency.requester.email, "sponsor@agency.example"])
    );
    assert_eq!(payload["nudgeNumber"], json!(2));
    let breaches = queued(&agency, "credential_request.sla_breach").await;
    assert_eq!(breaches.len(), 1);
    assert_eq!(breaches[0].0, agency.requester.email);
    let read = request_json(&agency, &id).await;
    assert_eq!(read["nudgeCount"], json!(2));
    assert!(read["slaNotifiedAt"].is_string(), "{read}");

    let nudges = agency
        .app
        .audit_entries(&["credential_request.nudged"])
        .await;
    assert_eq!(nudges.len(), 2);
    let details: Value = serde_json::from_str(&nudges[1].details).unwrap();
    assert_eq!(details["kind"], "escalation");
    assert_eq!(details["channels"], json!(["email"]));
    assert_eq!(
        agency
            .app
            .audit_entries(&["credential_request.sla_breached"])
            .await
            .len(),
        1
    );
    agency.app.stop().await;
}

async fn no_reminder_follows_an_authorization_and_none_once_nothing_is_pending(backend: Backend) {
    let agency = Agency::start(backend).await;
    let clock = ManualClock::starting_now();
    let scan = scanner(&agency, &clock);
    let key = "sk-reminders-auth-5e1b";
    agency.upstream.accept(key);
    let (authorized, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let (status, body) = agency
        .authorize_with(&credentials[0], "authorize", key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        request_json(&agency, &authorized).await["nextNudgeAt"],
        Value::Null
    );

    // Two apps, one authorized: the other is still pending, and only it is
    // named in the reminder.
    let (partial, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm", "beta-desk"])
        .await;
    let (status, body) = agency
        .authorize_with(&credentials[0], "authorize", key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    clock.advance(24 * HOUR + MINUTE);
    let pass = scan.scan().await.unwrap();
    assert_eq!(pass.reminded, 1, "{pass:?}");
    let reminders = queued(&agency, "credential_request.reminder").await;
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0].1["requestId"], json!(partial));
    assert_eq!(reminders[0].1["apps"], json!(["Beta Desk"]));

    // The last pending app is declined: nothing is pending, no more nudges.
    let (status, body) = agency
        .post(
            &format!(
                "/api/v2/credential-requests/credentials/{}/decline",
                credentials[1]
            ),
            &agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        request_json(&agency, &partial).await["nextNudgeAt"],
        Value::Null
    );
    clock.advance(48 * HOUR);
    let pass = scan.scan().await.unwrap();
    assert_eq!((pass.reminded, pass.escalated), (0, 0), "{pass:?}");
    assert!(queued(&agency, "credential_request.escalation")
        .await
        .is_empty());
    // The authorized request met its SLA; the other breached it (told once).
    assert_eq!((pass.met, pass.breaches), (1, 1), "{pass:?}");
    let breaches = queued(&agency, "credential_request.sla_breach").await;
    assert_eq!(breaches.len(), 1);
    assert_eq!(breaches[0].1["requestId"], json!(partial));
    agency.app.stop().await;
}

async fn reminders_stop_at_the_policys_maximum(backend: Backend) {
    let agency = Agency::start(backend).await;
    let clock = ManualClock::starting_now();
    let scan = scanner(&agency, &clock);
    let (status, body) = put_policy(
        &agency,
        &agency.admin_token,
        json!({ "firstAfterHours": 2, "everyHours": 1, "maxCount": 3, "slaHours": 500 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reminderPolicy"]["maxCount"], json!(3));
    let (id, _, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    clock.advance(2 * HOUR + MINUTE);
    let mut sent = Vec::new();
    for _ in 0..6 {
        let pass = scan.scan().await.unwrap();
        sent.push(pass.reminded + pass.escalated);
        clock.advance(HOUR);
    }
    assert_eq!(sent, [1, 1, 1, 0, 0, 0]);
    let read = request_json(&agency, &id).await;
    assert_eq!(read["nudgeCount"], json!(3));
    assert_eq!(read["nextNudgeAt"], Value::Null);
    assert_eq!(
        queued(&agency, "credential_request.reminder").await.len(),
        1
    );
    assert_eq!(
        queued(&agency, "credential_request.escalation").await.len(),
        2
    );

    // A policy of no reminders schedules none.
    let (status, body) = put_policy(&agency, &agency.admin_token, json!({ "maxCount": 0 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (quiet, _, _) = agency
        .create_request(agency.teammate.id, &["beta-desk"])
        .await;
    assert_eq!(
        request_json(&agency, &quiet).await["nextNudgeAt"],
        Value::Null
    );
    agency.app.stop().await;
}

async fn two_instances_scanning_one_database_nudge_each_request_once(backend: Backend) {
    let agency = Agency::start(backend).await;
    let clock = ManualClock::starting_now();
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(
            agency
                .create_request(agency.teammate.id, &["acme-crm"])
                .await
                .0,
        );
    }
    // A second instance: its own pool on the same database.
    let other = credence_store::Store::connect(&agency.app.database_url, false)
        .await
        .unwrap();
    let other = Reminders::new(
        credence::service::Context {
            store: other,
            ..agency.app.context.clone()
        },
        Settings {
            every: None,
            batch: 5,
            clock: clock.clock(),
            ..Settings::default()
        },
    );
    let this = Reminders::new(
        agency.app.context.clone(),
        Settings {
            every: None,
            batch: 5,
            clock: clock.clock(),
            ..Settings::default()
        },
    );
    for hours in [24, 48, 48] {
        clock.advance(hours * HOUR + MINUTE);
        let (a, b) = tokio::join!(this.scan(), other.scan());
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(
            a.reminded + a.escalated + b.reminded + b.escalated,
            ids.len(),
            "{a:?} {b:?}"
        );
    }
    let mut per_request = std::collections::BTreeMap::new();
    for (_, payload) in queued(&agency, "credential_request.reminder")
        .await
        .into_iter()
        .chain(queued(&agency, "credential_request.escalation").await)
    {
        *per_request
            .entry(payload["requestId"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(per_request.len(), ids.len());
    assert!(per_request.values().all(|n| *n == 3), "{per_request:?}");
    let breaches = queued(&agency, "credential_request.sla_breach").await;
    assert_eq!(breaches.len(), ids.len(), "one breach notice per request");
    for id in &ids {
        assert_eq!(request_json(&agency, id).await["nudgeCount"], json!(3));
    }
    agency.app.stop().await;
}

async fn the_reminder_policy_is_read_by_the_team_and_changed_by_its_admins(backend: Backend) {
    let agency = Agency::start(backend).await;
    let (status, body) = agency
        .app
        .get_json(&policy_path(&agency), &agency.requester_token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let policy = &body["reminderPolicy"];
    assert_eq!(
        (
            &policy["firstAfterHours"],
            &policy["everyHours"],
            &policy["maxCount"],
            &policy["slaHours"]
        ),
        (&json!(24), &json!(48), &json!(4), &json!(72)),
        "the defaults: {body}"
    );
    assert_eq!(policy["channels"], json!({ "email": true, "slack": false }));

    // A member may read but not change it; another team sees nothing.
    let (status, body) =
        put_policy(&agency, &agency.requester_token, json!({ "maxCount": 1 })).await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    let (status, body) = agency
        .app
        .get_json(&policy_path(&agency), &agency.outsider_token)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) =
        put_policy(&agency, &agency.outsider_token, json!({ "maxCount": 1 })).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);

    // Bad values: each named with its limit, all at once, nothing changed.
    let (status, body) = put_policy(
        &agency,
        &agency.admin_token,
        json!({
            "firstAfterHours": 0,
            "maxCount": 21,
            "slaHours": 100000,
            "sponsorCc": "not an address",
            "slackWebhookUrl": "http://127.0.0.1:9/hook",
        }),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    let problems = body["suberrors"].to_string();
    for expected in [
        "firstAfterHours is 0; it must be between 1 and 720",
        "maxCount is 21; it must be between 0 and 20",
        "slaHours is 100000; it must be between 1 and 2160",
        "sponsorCc",
        "slackWebhookUrl must start with https://",
    ] {
        assert!(problems.contains(expected), "{expected:?} in {problems}");
    }
    for (url, why) in [
        ("https://127.0.0.1/hook", "private address"),
        ("https://[::1]/hook", "private address"),
        ("https://169.254.169.254/latest", "private address"),
        ("https://localhost/hook", "private address"),
        ("hooks.slack.com/services/x", "not a URL"),
    ] {
        let (status, body) = put_policy(
            &agency,
            &agency.admin_token,
            json!({ "slackWebhookUrl": url }),
        )
        .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
        assert!(body["suberrors"].to_string().contains(why), "{url}: {body}");
        assert!(
            body["suberrors"].to_string().contains("slackWebhookUrl"),
            "{body}"
        );
    }
    let (status, body) = put_policy(
        &agency,
        &agency.admin_token,
        json!({ "slackWebhookUrl": format!("https://hooks.slack.com/{}", "x".repeat(2100)) }),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(
        body["suberrors"].to_string().contains("the limit is 2048"),
        "{body}"
    );
    let (status, body) = put_policy(&agency, &agency.admin_token, json!({ "maxCuont": 2 })).await;
    assert!(status.is_client_error(), "{status} {body}");
    let (_, body) = agency
        .app
        .get_json(&policy_path(&agency), &agency.requester_token)
        .await;
    assert_eq!(
        body["reminderPolicy"]["maxCount"],
        json!(4),
        "nothing changed"
    );
    assert_eq!(body["reminderPolicy"]["updatedAt"], Value::Null);

    // A change applies to the requests already waiting, and is audited.
    let (id, _, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let (status, body) = put_policy(
        &agency,
        &agency.admin_token,
        json!({ "firstAfterHours": 6, "slaHours": 12, "email": false }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reminderPolicy"]["channels"]["email"], json!(false));
    let read = request_json(&agency, &id).await;
    assert_eq!(
        at(&read["nextNudgeAt"]) - at(&read["createdAt"]),
        chrono::Duration::hours(6)
    );
    assert_eq!(
        at(&read["slaDueAt"]) - at(&read["createdAt"]),
        chrono::Duration::hours(12)
    );
    let entries = agency.app.audit_entries(&["reminder_policy.changed"]).await;
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0].details.contains("\"slaHours\":12"),
        "{}",
        entries[0].details
    );
    agency.app.stop().await;
}

async fn a_reminder_and_an_escalation_arrive_by_email_with_the_owner_copied(backend: Backend) {
    let maildev = Maildev::start().await;
    let smtp = maildev.smtp();
    let agency = Agency::start_with(backend, &[], move |config| {
        config.jobs = credence::jobs::Settings {
            mail: credence::jobs::MailSettings {
                from: "Credence <credence@agency.example>".into(),
                smtp: Some(smtp),
                ..Default::default()
            },
            ..fast(credence::service::clock::Clock::system())
        };
    })
    .await;
    let clock = ManualClock::starting_now();
    let scan = scanner(&agency, &clock);
    let (id, _, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    clock.advance(24 * HOUR + MINUTE);
    assert_eq!(scan.scan().await.unwrap().reminded, 1);
    let email = maildev
        .wait_for_email(&agency.teammate.email, "Reminder:")
        .await;
    assert!(
        email.subject.contains("Onboarding Acme"),
        "{}",
        email.subject
    );
    let page = format!("{}/received/{id}", agency.app.address);
    for body in [&email.text, &email.html] {
        assert!(
            body.contains(&page),
            "the recipient's page of the request: {body}"
        );
        assert!(body.contains("Acme CRM"), "{body}");
        assert!(body.contains(&agency.requester.email), "who asks: {body}");
    }
    // The link leads the recipient, once signed in, to their request.
    let tom = crate::support::signed_in(&agency.app, &agency.teammate).await;
    let response = tom.get(&page).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("Onboarding Acme"));

    clock.advance(48 * HOUR);
    assert_eq!(scan.scan().await.unwrap().escalated, 1);
    let escalation = maildev
        .wait_for_email(&agency.teammate.email, "Reminder 2:")
        .await;
    let cc: Vec<String> = escalation.raw["cc"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| a["address"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        cc,
        std::slice::from_ref(&agency.requester.email),
        "{:?}",
        escalation.raw
    );
    assert!(
        escalation.text.contains("copied on this email"),
        "{}",
        escalation.text
    );
    maildev
        .wait_for_email(&agency.requester.email, "SLA breached")
        .await;
    agency.app.wait_for_outbox_delivered().await;
    agency.app.stop().await;
}

/// A local HTTP endpoint playing Slack's incoming webhook: records the JSON
/// bodies it is posted.
async fn slack_sink() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/services/T000/B000/secret",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        format!("http://{address}/services/T000/B000/secret"),
        received,
    )
}

async fn reminders_reach_a_slack_webhook_whose_url_is_never_shown(backend: Backend) {
    let (url, received) = slack_sink().await;
    crate::support::register_secret(&url);
    let agency = Agency::start_with(backend, &[], |config| {
        config.reminders.allow_private_hosts = true;
        config.jobs = fast(credence::service::clock::Clock::system());
    })
    .await;
    let clock = ManualClock::starting_now();
    let scan = scanner(&agency, &clock);
    let (status, body) = put_policy(
        &agency,
        &agency.admin_token,
        json!({ "slackWebhookUrl": url }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["reminderPolicy"]["slackWebhookConfigured"],
        json!(true)
    );
    let (_, body) = agency
        .app
        .get_json(&policy_path(&agency), &agency.requester_token)
        .await;
    assert_eq!(body["reminderPolicy"]["channels"]["slack"], json!(true));
    let (_id, _, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    clock.advance(24 * HOUR + MINUTE);
    assert_eq!(scan.scan().await.unwrap().reminded, 1);
    wait_until("the Slack webhook got the reminder", || async {
        !received.lock().unwrap().is_empty()
    })
    .await;
    agency.app.wait_for_outbox_delivered().await;
    let posted = received.lock().unwrap().clone();
    assert_eq!(posted.len(), 1, "{posted:?}");
    let text = posted[0]["text"].as_str().unwrap();
    assert!(
        text.contains("Onboarding Acme") && text.contains("Reminder"),
        "{text}"
    );
    // The URL acts as a key: it is in no audit entry and no column in plain text.
    let audit = agency.app.audit_entries(&[]).await;
    assert!(audit.iter().all(|e| !e.details.contains(&url)));
    let everything = agency.app.database_text().await;
    assert!(
        !everything.contains(&url),
        "the webhook URL is stored sealed"
    );
    let nudged = agency
        .app
        .audit_entries(&["credential_request.nudged"])
        .await;
    assert!(nudged[0].details.contains("slack"), "{}", nudged[0].details);

    // Cleared, it is destroyed.
    let (status, body) = put_policy(
        &agency,
        &agency.admin_token,
        json!({ "slackWebhookUrl": null }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reminderPolicy"]["channels"]["slack"], json!(false));
    let mut sql = agency.app.sql().await;
    let left: i64 = sql
        .value("SELECT COUNT(*) FROM secrets WHERE purpose = 'reminder_slack_webhook'")
        .await;
    sql.close().await;
    assert_eq!(left, 0);
    agency.app.stop().await;
}

on_both_backends!(
    a_pending_request_is_reminded_at_24_h_and_escalated_at_72_h_with_the_owner_copied,
    no_reminder_follows_an_authorization_and_none_once_nothing_is_pending,
    reminders_stop_at_the_policys_maximum,
    two_instances_scanning_one_database_nudge_each_request_once,
    the_reminder_policy_is_read_by_the_team_and_changed_by_its_admins,
    a_reminder_and_an_escalation_arrive_by_email_with_the_owner_copied,
    reminders_reach_a_slack_webhook_whose_url_is_never_shown,
);

//! The Settings and Audit log pages over HTTP: an API token made in the
//! browser is shown once and works, a bad form changes nothing and says why
//! next to the field, a token is deleted from its page; the team's audit log
//! shows what happened, filters it, refuses a bad date by name, and exports
//! the same entries as JSON lines.

use crate::on_both_backends;
use crate::support::page;
use crate::support::{csrf_of, location, register_secret, signed_in, Agency};
use credence_store::Backend;
use reqwest::StatusCode;

/// The value of the readonly input `id` of a page.
fn input_value(html: &str, id: &str) -> String {
    let start = html.find(&format!("id=\"{id}\"")).expect("the input");
    let rest = &html[start..];
    let marker = "value=\"";
    let at = rest.find(marker).unwrap() + marker.len();
    rest[at..].split('"').next().unwrap().to_string()
}

async fn an_api_token_made_in_the_browser_is_shown_once_works_and_is_deleted(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let browser = signed_in(app, &agency.requester).await;
    let (status, settings) = page(&browser, &app.url("/settings")).await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    let csrf = csrf_of(&settings);
    let before = app
        .db()
        .await
        .list_api_tokens(agency.requester.id)
        .await
        .unwrap()
        .len();

    // No scope, and an expiry in the past: refused, each next to its field.
    let response = browser
        .post(app.url("/settings/tokens"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("label", "Zapier sync"),
            ("expires_at", "2001-01-01"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let html = response.text().await.unwrap();
    assert!(html.contains("Pick at least one scope"), "{html}");
    assert!(html.contains("is not in the future"), "{html}");
    assert!(
        html.contains("value=\"Zapier sync\""),
        "the label is kept: {html}"
    );
    let tokens = app
        .db()
        .await
        .list_api_tokens(agency.requester.id)
        .await
        .unwrap();
    assert_eq!(tokens.len(), before, "nothing was created");

    let response = browser
        .post(app.url("/settings/tokens"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("label", "Zapier sync"),
            ("scope", "credential-requests:read"),
            ("scope", "user:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    let value = input_value(&html, "token-value");
    register_secret(&value);
    assert_eq!(value.len(), 36, "a UUID-shaped token: {value}");
    let (status, me) = app.get_json("/api/v2/users/me", &value).await;
    assert_eq!(status, StatusCode::OK, "the new token works: {me}");
    let (status, _) = app.get_json("/api/v2/users/me/api-tokens", &value).await;
    assert_eq!(status, StatusCode::OK);

    // Shown once: the settings page lists it, without its value.
    let (_, settings) = page(&browser, &app.url("/settings")).await;
    assert!(settings.contains("Zapier sync"), "{settings}");
    assert!(!settings.contains(&value), "the value is never shown again");

    // Another user's token is not found from this browser.
    let tokens = app
        .db()
        .await
        .list_api_tokens(agency.requester.id)
        .await
        .unwrap();
    let made = tokens.iter().find(|t| t.name == "Zapier sync").unwrap();
    let teammate = signed_in(app, &agency.teammate).await;
    let (_, other) = page(&teammate, &app.url("/settings")).await;
    let response = teammate
        .post(app.url(&format!("/settings/tokens/{}/delete", made.id.0)))
        .form(&[("csrf_token", csrf_of(&other).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let response = browser
        .post(app.url(&format!("/settings/tokens/{}/delete", made.id.0)))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "/settings");
    let (_, settings) = page(&browser, &app.url("/settings")).await;
    assert!(
        settings.contains("API token Zapier sync deleted."),
        "{settings}"
    );
    let (status, _) = app.get_json("/api/v2/users/me", &value).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the deleted token no longer works"
    );
    assert!(app
        .audit_events()
        .await
        .iter()
        .any(|e| e == "api_token.deleted"));
    agency.app.stop().await;
}

async fn the_audit_log_page_filters_refuses_bad_dates_and_exports(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let admin = app
        .add_person("ada@agency.example", app.organization, "admin", None)
        .await;
    let admin = signed_in(app, &admin).await;

    let (status, log) = page(&admin, &app.url("/audit")).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    assert!(log.contains("credential_request.created"), "{log}");

    let (status, narrowed) = page(
        &admin,
        &app.url("/audit?event=credential.declined&dateFrom=&author="),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "empty fields are no filter: {narrowed}"
    );
    assert!(narrowed.contains("No entries match"), "{narrowed}");

    let (status, bad) = page(&admin, &app.url("/audit?dateFrom=2024-13-45")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        bad.contains("audit-dateFrom-error"),
        "the error is next to its field: {bad}"
    );
    assert!(bad.contains("2024-13-45"), "the value is named: {bad}");

    let response = admin
        .get(app.url("/audit/export?event=credential_request.created"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[reqwest::header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let lines = response.text().await.unwrap();
    let entries: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{lines}");
    assert_eq!(entries[0]["event"], "credential_request.created");

    // A team member who does not administer the team may not read its log.
    let requester = signed_in(app, &agency.requester).await;
    let (status, _) = page(&requester, &app.url("/audit")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    agency.app.stop().await;
}

async fn the_tracker_shows_the_views_the_projects_and_the_charts(backend: Backend) {
    let agency = Agency::start(backend).await;
    let app = &agency.app;
    let mut body = agency.body_for(agency.teammate.id, &["acme-crm"]);
    body["name"] = "Tracked onboarding".into();
    body["client"] = "Acme Corp".into();
    body["project"] = "Launch 2027".into();
    let (status, created) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.requester_token,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    agency
        .create_request(agency.teammate.id, &["beta-desk"])
        .await;

    let browser = signed_in(app, &agency.requester).await;
    let (status, tracker) = page(&browser, &app.url("/tracker")).await;
    assert_eq!(status, StatusCode::OK, "{tracker}");
    for expected in [
        "Tracked onboarding",
        "Onboarding Acme",
        "Launch 2027",
        "(no project)",
        "<svg",
        "SLA rate per project",
    ] {
        assert!(tracker.contains(expected), "{expected}: {tracker}");
    }
    let (_, active) = page(&browser, &app.url("/tracker?view=active&client=Acme+Corp")).await;
    assert!(active.contains("Tracked onboarding"), "{active}");
    assert!(
        !active.contains("Onboarding Acme"),
        "the client filter narrows: {active}"
    );
    let (_, authorized) = page(&browser, &app.url("/tracker?view=authorized-this-week")).await;
    assert!(
        authorized.contains("No request in this view."),
        "{authorized}"
    );
    let (status, _) = page(
        &browser,
        &app.url("/tracker?view=nonsense&owner=x&client=%00"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "unknown or odd filters narrow or are ignored, never a 5xx"
    );

    // Another team's member sees none of it.
    let outsider = signed_in(app, &agency.outsider).await;
    let (_, theirs) = page(&outsider, &app.url("/tracker")).await;
    assert!(!theirs.contains("Tracked onboarding"), "{theirs}");
    agency.app.stop().await;
}

on_both_backends!(
    the_tracker_shows_the_views_the_projects_and_the_charts,
    an_api_token_made_in_the_browser_is_shown_once_works_and_is_deleted,
    the_audit_log_page_filters_refuses_bad_dates_and_exports,
);

//! The read side of the Connections API: a team sees its connections with the
//! permissions they hold, never a secret; testing one asks the app.

use crate::on_both_backends;
use crate::support::assert_error;
use crate::support::{Agency, SCOPES};
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::json;

async fn a_team_sees_its_connections_and_can_test_them_but_never_read_them(backend: Backend) {
    let agency = Agency::start(backend).await;
    let key = "conn-read-key-7777";
    agency.upstream.accept(key);
    let (_, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let (status, _) = agency
        .authorize_with(&credentials[0], "authorize", key)
        .await;
    assert_eq!(status, StatusCode::OK);
    let reader = agency
        .app
        .token(
            agency.requester.id,
            &format!("{SCOPES},connections:read,connections:write"),
        )
        .await;
    let team = agency.app.team;

    let (status, body) = agency
        .app
        .get_json(&format!("/api/v2/connections?teamId={team}"), &reader)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = &body["connections"][0];
    assert_eq!(connection["accountName"], "acme-crm");
    assert_eq!(connection["accountType"], "apikey");
    assert_eq!(connection["name"], "Onboarding Acme — Acme CRM");
    assert_eq!(connection["permissions"].as_array().unwrap().len(), 2);
    let id = connection["id"].as_i64().unwrap();
    assert!(!body.to_string().contains(key));

    let (status, body) = agency
        .app
        .get_json(&format!("/api/v2/connections/{id}"), &reader)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["connection"]["state"], "valid");

    let (status, body) = agency
        .post(&format!("/api/v2/connections/{id}/test"), &reader, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["verified"], true);
    agency.upstream.reject(key);
    let (_, body) = agency
        .post(&format!("/api/v2/connections/{id}/test"), &reader, None)
        .await;
    assert_eq!(body["verified"], false);
    let (_, body) = agency
        .app
        .get_json(&format!("/api/v2/connections/{id}"), &reader)
        .await;
    assert_eq!(body["connection"]["state"], "invalid");
    assert_eq!(
        agency
            .audit_events()
            .await
            .iter()
            .filter(|e| *e == "connection.verified")
            .count(),
        2
    );

    let (_, body) = agency
        .post(
            &format!("/api/v2/connections/{id}/scoped"),
            &reader,
            Some(json!({ "scope": [] })),
        )
        .await;
    assert_eq!(body["connection"]["scoped"], true);
    let (_, body) = agency
        .post(
            &format!("/api/v2/connections/{id}/scoped"),
            &reader,
            Some(json!({ "scope": ["contacts.write"] })),
        )
        .await;
    assert_eq!(body["connection"]["scoped"], false);

    // Another team learns nothing; a token without the scope is refused.
    let outsider = agency
        .app
        .token(agency.outsider.id, "connections:read,connections:write")
        .await;
    let (status, body) = agency
        .app
        .get_json(&format!("/api/v2/connections?teamId={team}"), &outsider)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = agency
        .app
        .get_json(&format!("/api/v2/connections/{id}"), &outsider)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = agency
        .post(&format!("/api/v2/connections/{id}/test"), &outsider, None)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = agency
        .app
        .get_json(
            &format!("/api/v2/connections/{id}"),
            &agency.requester_token,
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    let (status, body) = agency.app.get_json("/api/v2/connections", &reader).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["suberrors"][0]["field"], "teamId");
    assert!(
        !crate::support::captured_logs().contains(key),
        "the key leaked into the logs"
    );
    agency.app.stop().await;
}

on_both_backends!(a_team_sees_its_connections_and_can_test_them_but_never_read_them);

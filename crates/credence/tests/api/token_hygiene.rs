//! Token hygiene (security issue items 13 and 15): managing API tokens needs
//! Make's `user:write`, is audited and tokens may expire; testing a connection
//! needs `connections:write`; invitations expire and are withdrawn with their
//! request; a setup link ends the user's other sessions.
//!
//! Time passing is simulated by moving a stored expiry into the past, not by
//! waiting.

use crate::on_both_backends;
use crate::support::Agency;
use crate::support::{
    accept_invitation_link, assert_error, browser, csrf_of, sign_in, spawn_app, wait_until, TestApp,
};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn a_narrow_token_can_neither_list_nor_create_nor_delete_the_users_other_tokens(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let admin = app.admin_id().await;
    let precious = app.token(admin, "credential-requests:write").await;
    let narrow = app.token(admin, "connections:read").await;
    let precious_id = app.db().await.list_api_tokens(admin).await.unwrap()[0].id;

    let (status, body) = app
        .send(
            reqwest::Method::GET,
            "/api/v2/users/me/api-tokens",
            &narrow,
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    assert!(
        body["detail"].as_str().unwrap().contains("user:read"),
        "{body}"
    );
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/api/v2/users/me/api-tokens",
            &narrow,
            Some(json!({ "label": "more", "scope": ["connections:read"] })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    assert!(
        body["detail"].as_str().unwrap().contains("user:write"),
        "{body}"
    );
    let (status, body) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v2/users/me/api-tokens/{precious_id}"),
            &narrow,
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    assert!(
        body["detail"].as_str().unwrap().contains("user:write"),
        "{body}"
    );
    assert_eq!(
        app.db().await.list_api_tokens(admin).await.unwrap().len(),
        2,
        "nothing was created or deleted"
    );
    let (status, body) = app.get_json("/api/v2/users/me", &precious).await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    assert!(
        body["detail"].as_str().unwrap().contains("lacks the scope"),
        "the other token is still alive (it only lacks user:read): {body}"
    );

    // A token may always delete itself: that only narrows access.
    let narrow_id = app.db().await.list_api_tokens(admin).await.unwrap()[1].id;
    let (status, body) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v2/users/me/api-tokens/{narrow_id}"),
            &narrow,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // With Make's user:write, tokens are managed.
    let manager = app.token(admin, "user:read,user:write").await;
    let (status, body) = app
        .send(
            reqwest::Method::GET,
            "/api/v2/users/me/api-tokens",
            &manager,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ... but only tokens within the manager's own scopes: one without
    // credential-requests:write cannot cut off the token that holds it.
    let (status, body) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v2/users/me/api-tokens/{precious_id}"),
            &manager,
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("credential-requests:write"),
        "{body}"
    );
    let (status, _) = app
        .get_json("/api/v2/users/me/current-authorization", &precious)
        .await;
    assert_eq!(status, StatusCode::OK, "the precious token still works");
    let manager = app
        .token(admin, "user:read,user:write,credential-requests:write")
        .await;
    let (status, body) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v2/users/me/api-tokens/{precious_id}"),
            &manager,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get_json("/api/v2/users/me", &precious).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn creating_and_deleting_an_api_token_is_audited_with_label_and_scopes_never_the_value(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let admin = app.admin_id().await;
    let manager = app.token(admin, "user:read,user:write,teams:read").await;
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/api/v2/users/me/api-tokens",
            &manager,
            Some(json!({ "label": "ci deploys", "scope": ["teams:read"] })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let value = body["apiToken"]["token"].as_str().unwrap().to_string();
    let id = body["apiToken"]["id"].as_i64().unwrap();

    let created = app.audit_entries(&["api_token.created"]).await;
    assert_eq!(
        created.len(),
        1,
        "one entry, in the admin's one organization"
    );
    let entry = &created[0];
    assert_eq!(entry.organization_id, app.organization.0);
    assert_eq!(entry.actor_user_id, Some(admin.0));
    assert_eq!(entry.target_kind, "api_token");
    assert_eq!(entry.target_id, id.to_string());
    let details: Value = serde_json::from_str(&entry.details).unwrap();
    assert_eq!(details["label"], "ci deploys");
    assert_eq!(details["scopes"], json!(["teams:read"]));
    assert!(
        !entry.details.contains(&value),
        "the value is never audited"
    );

    let (status, body) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v2/users/me/api-tokens/{id}"),
            &manager,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deleted = app.audit_entries(&["api_token.deleted"]).await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].target_id, id.to_string());
    let details: Value = serde_json::from_str(&deleted[0].details).unwrap();
    assert_eq!(details["label"], "ci deploys");
    assert_eq!(details["scopes"], json!(["teams:read"]));
    let everything = app.database_text().await;
    assert!(!everything.contains(&value), "the value is stored nowhere");
    app.stop().await;
}

async fn a_token_with_an_expiry_is_listed_with_it_and_refused_after_it_with_401_saying_it_expired(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let admin = app.admin_id().await;
    let manager = app.token(admin, "user:read,user:write").await;
    let create = |body: Value| {
        app.send(
            reqwest::Method::POST,
            "/api/v2/users/me/api-tokens",
            &manager,
            Some(body),
        )
    };

    // Bad expiries: a clear 400 naming expiresAt, and no token.
    let past = (Utc::now() - Duration::hours(1)).to_rfc3339();
    let too_far = (Utc::now() + Duration::days(400)).to_rfc3339();
    for (expiry, says) in [
        (past.as_str(), "not in the future"),
        (too_far.as_str(), "the limit is 365 days"),
        ("next tuesday", "is not an ISO 8601 date"),
    ] {
        let (status, body) =
            create(json!({ "label": "t", "scope": ["user:read"], "expiresAt": expiry })).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
        assert_eq!(body["suberrors"][0]["field"], "expiresAt", "{body}");
        assert!(
            body["suberrors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(says),
            "{body}"
        );
    }
    assert_eq!(
        app.db().await.list_api_tokens(admin).await.unwrap().len(),
        1
    );

    let expiry = (Utc::now() + Duration::days(30)).trunc_subsecs(0);
    let (status, body) = create(json!({
        "label": "a month",
        "scope": ["user:read"],
        "expiresAt": expiry.to_rfc3339(),
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let value = body["apiToken"]["token"].as_str().unwrap().to_string();
    let id = body["apiToken"]["id"].as_i64().unwrap();
    let answered: DateTime<Utc> =
        serde_json::from_value(body["apiToken"]["expiresAt"].clone()).unwrap();
    assert_eq!(answered, expiry);
    let (status, listed) = app
        .send(
            reqwest::Method::GET,
            "/api/v2/users/me/api-tokens",
            &manager,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let listed = listed["apiTokens"].as_array().unwrap();
    let shown = listed.iter().find(|t| t["id"] == id).unwrap();
    let shown: DateTime<Utc> = serde_json::from_value(shown["expiresAt"].clone()).unwrap();
    assert_eq!(shown, expiry);
    assert!(
        listed.iter().any(|t| t["expiresAt"].is_null()),
        "no expiry: null"
    );
    let (status, _) = app.get_json("/api/v2/users/me", &value).await;
    assert_eq!(status, StatusCode::OK, "works until it expires");

    // An expiring token cannot mint one that outlives it.
    let expiring_manager = {
        let (status, body) = create(json!({
            "label": "short manager",
            "scope": ["user:read", "user:write"],
            "expiresAt": (Utc::now() + Duration::days(1)).to_rfc3339(),
        }))
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["apiToken"]["token"].as_str().unwrap().to_string()
    };
    for expiry in [
        Value::Null,
        json!((Utc::now() + Duration::days(2)).to_rfc3339()),
    ] {
        let (status, body) = app
            .send(
                reqwest::Method::POST,
                "/api/v2/users/me/api-tokens",
                &expiring_manager,
                Some(json!({ "label": "longer", "scope": ["user:read"], "expiresAt": expiry })),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
        assert_eq!(body["suberrors"][0]["field"], "expiresAt", "{body}");
        assert!(
            body["suberrors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("outlive"),
            "{body}"
        );
    }

    // The month passed — written behind the server's back, so its token
    // cache (`auth::TOKEN_CACHE_TTL`) may believe the old expiry a few
    // seconds more, as it would a change made by another instance.
    app.sql()
        .await
        .execute_at(
            &format!("UPDATE api_tokens SET expires_at = $1 WHERE id = {id}"),
            Utc::now() - Duration::seconds(1),
        )
        .await;
    wait_until("the expired token is refused", || async {
        app.get_json("/api/v2/users/me", &value).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    let (status, body) = app.get_json("/api/v2/users/me", &value).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    app.stop().await;
}

async fn testing_a_connection_needs_connections_write_because_it_changes_its_state(
    backend: Backend,
) {
    let agency = Agency::start(backend).await;
    let key = "hygiene-test-key-4242";
    agency.upstream.accept(key);
    let (_, credentials, _) = agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let (status, body) = agency
        .authorize_with(&credentials[0], "authorize", key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let team = agency.app.team;
    let reader = agency
        .app
        .token(agency.requester.id, "connections:read")
        .await;
    let (_, body) = agency
        .app
        .get_json(&format!("/api/v2/connections?teamId={team}"), &reader)
        .await;
    let id = body["connections"][0]["id"].as_i64().unwrap();

    // The key is revoked at the app: a test would mark the connection invalid.
    agency.upstream.reject(key);
    let (status, body) = agency
        .post(&format!("/api/v2/connections/{id}/test"), &reader, None)
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("connections:write"),
        "{body}"
    );
    let (_, body) = agency
        .app
        .get_json(&format!("/api/v2/connections/{id}"), &reader)
        .await;
    assert_eq!(
        body["connection"]["state"], "valid",
        "a read-only token changed nothing"
    );
    assert!(!agency
        .audit_events()
        .await
        .contains(&"connection.verified".to_string()));

    let writer = agency
        .app
        .token(agency.requester.id, "connections:read,connections:write")
        .await;
    let (status, body) = agency
        .post(&format!("/api/v2/connections/{id}/test"), &writer, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["verified"], false);
    agency.app.stop().await;
}

/// The owner invites an outsider through a request; returns (request id, invitation link).
async fn invite_outsider(agency: &Agency, email: &str) -> (String, String) {
    let (status, created) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.admin_token,
            Some(json!({
                "name": "Client onboarding",
                "teamId": agency.app.team,
                "credentials": [{ "appName": "acme-crm", "appModules": ["*"] }],
                "provider": { "newUser": { "name": "Cleo Client", "email": email } },
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let request = created["request"]["id"].as_str().unwrap().to_string();
    let link = agency.invitation_link(email).await;
    (request, link)
}

/// Invitations made before they carried an expiry (`expires_at` NULL after
/// the upgrade) lapse fourteen days after they were made, like new ones.
async fn an_invitation_made_before_expiries_lapses_fourteen_days_after_it_was_made(
    backend: Backend,
) {
    let agency = Agency::start(backend).await;
    let (_, old) = invite_outsider(&agency, "olga@client.example").await;
    let (_, recent) = invite_outsider(&agency, "rita@client.example").await;
    agency.app.sql().await.execute_at("UPDATE invitations SET expires_at = NULL, created_at = $1 WHERE email = 'olga@client.example'",
        Utc::now() - Duration::days(15),
    )
    .await;
    agency.app.sql().await.execute_at("UPDATE invitations SET expires_at = NULL, created_at = $1 WHERE email = 'rita@client.example'",
        Utc::now() - Duration::days(13),
    )
    .await;
    let response = reqwest::get(&old).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "made 15 days ago");
    let response = reqwest::get(&recent).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "made 13 days ago");
    agency.app.stop().await;
}

async fn an_invitation_expires_after_fourteen_days(backend: Backend) {
    let agency = Agency::start(backend).await;
    let (_, link) = invite_outsider(&agency, "cleo@client.example").await;
    let (_, link_later) = invite_outsider(&agency, "carl@client.example").await;
    let response = reqwest::get(&link).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "fresh, it opens");

    // Fourteen days and a second pass for Cleo's invitation.
    agency
        .app
        .sql()
        .await
        .execute_at(
            "UPDATE invitations SET expires_at = $1 WHERE email = 'cleo@client.example'",
            Utc::now() - Duration::seconds(1),
        )
        .await;
    let (page, post) = accept_invitation_link(&link).await;
    assert_eq!(page, StatusCode::NOT_FOUND);
    assert!(post.is_client_error(), "{post}");
    let mut db = agency.app.db().await;
    assert!(
        db.find_user_by_email("cleo@client.example")
            .await
            .unwrap()
            .is_none(),
        "no account was made from an expired invitation"
    );

    // The invitation is made to last fourteen days, no more.
    let expires_at: Vec<DateTime<Utc>> = agency
        .app
        .sql()
        .await
        .column("SELECT expires_at FROM invitations WHERE email = 'carl@client.example'")
        .await;
    let lasts = expires_at[0] - Utc::now();
    assert!(
        lasts > Duration::days(14) - Duration::minutes(5) && lasts <= Duration::days(14),
        "expires in {lasts}"
    );
    let (page, post) = accept_invitation_link(&link_later).await;
    assert_eq!(
        (page, post),
        (StatusCode::OK, StatusCode::SEE_OTHER),
        "a live one is accepted"
    );
    agency.app.stop().await;
}

async fn deleting_a_request_withdraws_its_invitation(backend: Backend) {
    let agency = Agency::start(backend).await;
    let (request, link) = invite_outsider(&agency, "cleo@client.example").await;
    let (_, kept_link) = invite_outsider(&agency, "carl@client.example").await;
    let (status, body) = agency
        .delete(
            &format!("/api/v2/credential-requests/requests/{request}?confirmed=true"),
            &agency.admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (page, post) = accept_invitation_link(&link).await;
    assert_eq!(page, StatusCode::NOT_FOUND);
    assert!(post.is_client_error(), "{post}");
    let mut db = agency.app.db().await;
    assert!(
        db.find_user_by_email("cleo@client.example")
            .await
            .unwrap()
            .is_none(),
        "no account was made from the deleted request's invitation"
    );
    drop(db);
    let response = reqwest::get(&kept_link).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "another request's invitation stays"
    );
    agency.app.stop().await;
}

async fn is_signed_in(app: &TestApp, client: &reqwest::Client) -> bool {
    client.get(app.url("/")).send().await.unwrap().status() == StatusCode::OK
}

async fn completing_a_setup_link_ends_the_users_other_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let person = app
        .add_person(
            "ann@example.com",
            app.organization,
            "member",
            Some((app.team, "member")),
        )
        .await;

    // Ann is signed in on a laptop someone else now has.
    let stolen = browser();
    let response = sign_in(&app, &stolen, &person.email, &person.password).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(is_signed_in(&app, &stolen).await);

    // She resets her password with a setup link from the operator.
    let (_, token) = credence::service::identity::new_setup_link(&app.store, &person.email)
        .await
        .unwrap();
    let own = browser();
    let link = app.url(&format!("/setup/{token}"));
    let html = own.get(&link).send().await.unwrap().text().await.unwrap();
    let password = "a brand new long password";
    let response = own
        .post(&link)
        .form(&[
            ("password", password),
            ("password_again", password),
            ("csrf_token", csrf_of(&html).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(is_signed_in(&app, &own).await, "the new session works");
    assert!(
        !is_signed_in(&app, &stolen).await,
        "the session from before the reset ended"
    );
    app.stop().await;
}

async fn the_operator_makes_an_expiring_token_and_a_past_expiry_is_refused_naming_expires(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let admin = app.admin_id().await;
    let create = |expires: String| {
        let email = app.admin_email.clone();
        let app = &app;
        async move {
            let args = [
                "token",
                "create",
                "--email",
                &email,
                "--name",
                "ci",
                "--scopes",
                "user:read",
                "--expires",
                &expires,
            ];
            app.operator(&args).await
        }
    };
    let (succeeded, stdout, stderr) = create("2020-01-31".into()).await;
    assert!(!succeeded, "{stdout}");
    assert!(
        stderr.contains("--expires") && stderr.contains("not in the future"),
        "{stderr}"
    );
    assert!(app
        .db()
        .await
        .list_api_tokens(admin)
        .await
        .unwrap()
        .is_empty());

    let day = (Utc::now() + Duration::days(10)).date_naive();
    let (succeeded, stdout, stderr) = create(day.to_string()).await;
    assert!(succeeded, "{stderr}");
    assert!(
        stdout.contains(&format!("expires {day}T23:59:59.999999+00:00")),
        "{stdout}"
    );
    let value = stdout
        .split("token (shown once, keep it safe): ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let (status, _) = app.get_json("/api/v2/users/me", &value).await;
    assert_eq!(status, StatusCode::OK);
    let tokens = app.db().await.list_api_tokens(admin).await.unwrap();
    assert_eq!(
        tokens[0].expires_at.map(|at| at.date_naive()),
        Some(day),
        "the end of that day"
    );
    let created = app.audit_entries(&["api_token.created"]).await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].actor_label, "operator");
    app.stop().await;
}

on_both_backends!(
    a_narrow_token_can_neither_list_nor_create_nor_delete_the_users_other_tokens,
    creating_and_deleting_an_api_token_is_audited_with_label_and_scopes_never_the_value,
    a_token_with_an_expiry_is_listed_with_it_and_refused_after_it_with_401_saying_it_expired,
    testing_a_connection_needs_connections_write_because_it_changes_its_state,
    an_invitation_expires_after_fourteen_days,
    an_invitation_made_before_expiries_lapses_fourteen_days_after_it_was_made,
    deleting_a_request_withdraws_its_invitation,
    completing_a_setup_link_ends_the_users_other_sessions,
    the_operator_makes_an_expiring_token_and_a_past_expiry_is_refused_naming_expires,
);

//! A team's own connections (SPEC §5 "Add connection" and "Manage") through
//! the Make-compatible API: API-key connections verified before they are
//! sealed, OAuth connections through the real provider's consent (with the
//! team's own OAuth client if it brings one), renewed in place with
//! `/oauth/reauth/{id}` (a page's form, or a script's GET), renamed, and deleted with revocation at the provider.

use crate::on_both_backends;
use crate::support::Agency;
use crate::support::{
    assert_error, assert_no_secret, browser, captured_logs, csrf_of, field_of, location,
    register_secret, signed_in,
};
use crate::support::{oauth_app, world, APP};
use crate::support::{OidcOptions, OidcProvider};
use credence_domain::{CredentialId, CredentialState};
use credence_store::Backend;
use reqwest::{Method, StatusCode, Url};
use secrecy::SecretString;
use serde_json::{json, Value};

const WRITE: &str = "connections:read,connections:write";

async fn connection_count(agency: &Agency) -> usize {
    agency.app.team_connections().await.len()
}

/// API-key connections, Make's flat body and ours with `data`: the key is
/// verified with the app first; a refused key stores nothing.
async fn an_api_key_connection_is_verified_before_it_is_sealed(backend: Backend) {
    let agency = Agency::start(backend).await;
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let team = agency.app.team;
    let key = "own-key-1f4a9c";
    agency.upstream.accept(key);
    register_secret("own-key-refused-77");

    let path = format!("/api/v2/connections?teamId={team}");
    let (status, body) = agency
        .app
        .send(
            Method::POST,
            &path,
            &token,
            Some(json!({ "accountType": "acme-crm", "apiKey": "own-key-refused-77" })),
        )
        .await;
    let body = assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["suberrors"][0]["field"], "data", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("not accepted"),
        "{body}"
    );
    assert_eq!(connection_count(&agency).await, 0);

    let (status, body) = agency
        .app
        .send(
            Method::POST,
            &path,
            &token,
            Some(json!({ "accountType": "acme-crm", "apiKey": key })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let connection = &body["connection"];
    assert_eq!(connection["name"], "My Acme CRM connection");
    assert_eq!(connection["accountName"], "acme-crm");
    assert_eq!(connection["accountType"], "apikey");
    assert_eq!(connection["state"], "valid");
    assert_eq!(connection["teamId"], team.0);
    assert_eq!(connection["providedBy"], agency.requester.id.0);
    assert_eq!(connection["permissions"].as_array().unwrap().len(), 2);
    let id = connection["id"].as_i64().unwrap();
    let stored = agency.app.stored_connection(id).await.unwrap();
    assert_eq!(agency.app.connection_values(&stored).await["apiKey"], key);

    let (status, body) = agency.app.send(Method::POST, &format!("{path}&cols[]=id&cols[]=name"), &token,
        Some(json!({ "accountName": "Acme (billing)", "accountType": "acme-crm", "modules": ["searchContacts"],
                     "data": { "apiKey": key } }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["connection"],
        json!({ "id": body["connection"]["id"], "name": "Acme (billing)" })
    );
    let second = agency
        .app
        .stored_connection(body["connection"]["id"].as_i64().unwrap())
        .await
        .unwrap();
    assert_eq!(second.modules, r#"["searchContacts"]"#);
    assert_eq!(connection_count(&agency).await, 2);
    assert_eq!(
        agency
            .audit_events()
            .await
            .iter()
            .filter(|e| *e == "connection.created")
            .count(),
        2
    );
    let database = agency.app.database_text().await;
    assert!(!database.contains(key), "the key is stored in plain text");
    agency.app.stop().await;
}

/// Every malformed add is a 4xx naming the field, and stores nothing.
async fn bad_input_to_add_a_connection_names_the_field(backend: Backend) {
    let agency = Agency::start(backend).await;
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let team = agency.app.team;
    let path = format!("/api/v2/connections?teamId={team}");
    let long = "x".repeat(256);
    let cases: Vec<(String, Value, &str)> = vec![
        (
            "/api/v2/connections".into(),
            json!({ "accountType": "acme-crm", "apiKey": "k" }),
            "teamId",
        ),
        (
            "/api/v2/connections?teamId=abc".into(),
            json!({ "accountType": "acme-crm" }),
            "teamId",
        ),
        (path.clone(), json!({}), "accountType"),
        (path.clone(), json!({ "accountType": 7 }), "accountType"),
        (
            path.clone(),
            json!({ "accountType": "no-such-app" }),
            "accountType",
        ),
        (
            path.clone(),
            json!({ "accountType": "acme-crm", "accountName": "", "apiKey": "k" }),
            "accountName",
        ),
        (
            path.clone(),
            json!({ "accountType": "acme-crm", "accountName": long, "apiKey": "k" }),
            "accountName",
        ),
        (path.clone(), json!({ "accountType": "acme-crm" }), "apiKey"),
        (
            path.clone(),
            json!({ "accountType": "acme-crm", "apiKey": "k", "colour": "red" }),
            "colour",
        ),
        (
            path.clone(),
            json!({ "accountType": "acme-crm", "data": { "apiKey": "k" }, "colour": "red" }),
            "colour",
        ),
        (
            path.clone(),
            json!({ "accountType": "acme-crm", "data": { "apiKey": 5 } }),
            "data.apiKey",
        ),
        (
            path.clone(),
            json!({ "accountType": "acme-crm", "data": 5 }),
            "data",
        ),
        (
            path.clone(),
            json!({ "accountType": "acme-crm", "apiKey": "k", "scopes": ["a"] }),
            "scopes",
        ),
        (
            path.clone(),
            json!({ "accountType": "acme-crm", "apiKey": "k", "clientId": "c", "clientSecret": "s" }),
            "clientId",
        ),
        (
            path.clone(),
            json!({ "accountType": "acme-crm", "apiKey": "k", "modules": ["nope"] }),
            "modules",
        ),
        (
            path.clone(),
            json!({ "accountType": "acme-crm", "apiKey": "k", "modules": "all" }),
            "modules",
        ),
        (
            path.clone(),
            json!({ "accountType": "acme-crm", "apiKey": "k", "appVersion": 9 }),
            "appVersion",
        ),
    ];
    for (path, body, field) in cases {
        let (status, answer) = agency
            .app
            .send(Method::POST, &path, &token, Some(body.clone()))
            .await;
        let answer = assert_error(status, &answer, StatusCode::BAD_REQUEST);
        assert_eq!(answer["suberrors"][0]["field"], field, "{body} → {answer}");
    }
    // Not JSON, and a JSON array: 400 (or 415), never a 5xx.
    let response = agency
        .app
        .with_token(reqwest::Method::POST, &path, &token)
        .header("Content-Type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, answer) = agency
        .app
        .send(Method::POST, &path, &token, Some(json!([1])))
        .await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST);

    // Someone outside the team does not learn it exists; a token without
    // connections:write may not add.
    let outsider = agency.app.token(agency.outsider.id, WRITE).await;
    let body = json!({ "accountType": "acme-crm", "apiKey": "k" });
    let (status, answer) = agency
        .app
        .send(Method::POST, &path, &outsider, Some(body.clone()))
        .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND);
    let reader = agency
        .app
        .token(agency.requester.id, "connections:read")
        .await;
    let (status, answer) = agency
        .app
        .send(Method::POST, &path, &reader, Some(body))
        .await;
    assert_error(status, &answer, StatusCode::FORBIDDEN);
    assert_eq!(connection_count(&agency).await, 0);
    agency.app.stop().await;
}

/// Rename, then delete: only with `confirmed=true`, and then the secret goes
/// with the row at once.
async fn rename_and_delete_a_connection(backend: Backend) {
    let agency = Agency::start(backend).await;
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let key = "own-key-rename-31";
    agency.upstream.accept(key);
    let (status, body) = agency
        .app
        .send(
            Method::POST,
            &format!("/api/v2/connections?teamId={}", agency.app.team),
            &token,
            Some(json!({ "accountType": "acme-crm", "apiKey": key })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["connection"]["id"].as_i64().unwrap();
    let path = format!("/api/v2/connections/{id}");

    for (body, field) in [
        (json!({}), "name"),
        (json!({ "name": "" }), "name"),
        (json!({ "name": "a\nb" }), "name"),
    ] {
        let (status, answer) = agency
            .app
            .send(Method::PATCH, &path, &token, Some(body))
            .await;
        let answer = assert_error(status, &answer, StatusCode::BAD_REQUEST);
        assert_eq!(answer["suberrors"][0]["field"], field, "{answer}");
    }
    let (status, answer) = agency
        .app
        .send(
            Method::PATCH,
            &path,
            &token,
            Some(json!({ "name": "x", "other": 1 })),
        )
        .await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST);
    let outsider = agency.app.token(agency.outsider.id, WRITE).await;
    let (status, answer) = agency
        .app
        .send(
            Method::PATCH,
            &path,
            &outsider,
            Some(json!({ "name": "Mine" })),
        )
        .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND);
    let (status, body) = agency
        .app
        .send(
            Method::PATCH,
            &path,
            &token,
            Some(json!({ "name": "Acme — main account" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["connection"]["name"], "Acme — main account");
    assert_eq!(body["connection"]["id"], id);

    let (status, answer) = agency.app.send(Method::DELETE, &path, &token, None).await;
    let answer = assert_error(status, &answer, StatusCode::CONFLICT);
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("confirmed=true"),
        "{answer}"
    );
    let (status, answer) = agency
        .app
        .send(
            Method::DELETE,
            &format!("{path}?confirmed=yes"),
            &token,
            None,
        )
        .await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST);
    let (status, answer) = agency
        .app
        .send(
            Method::DELETE,
            &format!("{path}?confirmed=true"),
            &outsider,
            None,
        )
        .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND);
    let stored = agency.app.stored_connection(id).await.expect("still there");

    let (status, body) = agency
        .app
        .send(
            Method::DELETE,
            &format!("{path}?confirmed=true"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "connection": id }));
    assert!(agency.app.stored_connection(id).await.is_none());
    let secret = agency
        .app
        .db()
        .await
        .get_secret(stored.secret_id.as_deref().unwrap())
        .await
        .unwrap();
    assert!(secret.is_none(), "the secret outlived its connection");
    let (status, answer) = agency.app.send(Method::GET, &path, &token, None).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND);
    let events = agency.audit_events().await;
    for event in [
        "connection.created",
        "connection.renamed",
        "connection.deleted",
    ] {
        assert!(events.contains(&event.to_string()), "{event} in {events:?}");
    }
    agency.app.stop().await;
}

/// The scopes of a consent URL.
fn scopes_of(url: &str) -> Vec<String> {
    let url = Url::parse(url).unwrap();
    let scope = url
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .unwrap()
        .1
        .to_string();
    let mut scopes: Vec<String> = scope.split(' ').map(str::to_string).collect();
    scopes.sort();
    scopes
}

fn query_value(url: &str, key: &str) -> String {
    let url = Url::parse(url).unwrap();
    let value = url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.to_string());
    value.unwrap_or_default()
}

/// Add an OAuth connection through consent, renew it in place with
/// `/oauth/reauth/{id}` (same id, new tokens), and delete it: the grant is
/// revoked at the provider.
async fn an_oauth_connection_is_added_through_consent_and_renewed_in_place(backend: Backend) {
    let world = world(backend, true).await;
    let agency = &world.agency;
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let rita = signed_in(&world.agency.app, &agency.requester).await;

    let (status, body) = agency
        .app
        .send(
            Method::POST,
            &format!("/api/v2/connections?teamId={}", agency.app.team),
            &token,
            Some(
                json!({ "accountType": APP, "modules": ["searchContacts"], "scopes": ["profile"] }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let consent_url = body["redirectUri"].as_str().unwrap().to_string();
    assert_eq!(
        scopes_of(&consent_url),
        ["contacts.read", "offline_access", "openid", "profile"]
    );
    assert_eq!(query_value(&consent_url, "code_challenge_method"), "S256");
    assert_eq!(
        connection_count(agency).await,
        0,
        "nothing exists before consent"
    );

    let outcome = world.provider.consent(&consent_url, "rita", true).await;
    register_secret(outcome.code.as_deref().unwrap());
    let response = rita.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let connected = response.text().await.unwrap();
    assert!(connected.contains("Connected"), "{connected}");
    // Drawn in the shell, for the signed-in requester: the sidebar, the way back.
    assert!(
        connected.contains(r#"<nav aria-label="Main">"#),
        "{connected}"
    );
    assert!(connected.contains("Signed in as"), "{connected}");
    assert!(connected.contains(r#"href="/connections""#), "{connected}");
    // The same callback again changes nothing.
    let response = rita.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("used already"));

    let (status, body) = agency
        .app
        .send(
            Method::GET,
            &format!("/api/v2/connections?teamId={}", agency.app.team),
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = &body["connections"][0];
    assert_eq!(listed["name"], "My Local OAuth connection");
    assert_eq!(listed["accountType"], "oauth");
    assert_eq!(listed["state"], "valid");
    assert_eq!(listed["modules"], json!(["searchContacts"]));
    assert_eq!(listed["oauthClientId"], Value::Null);
    let id = listed["id"].as_i64().unwrap();
    let first = agency
        .app
        .connection_values(&agency.app.stored_connection(id).await.unwrap())
        .await;
    let first_access = first["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        world.provider.introspect(&first_access).await["active"],
        true
    );

    // Renew in place, from the browser (a session): the page's form …
    let page = rita
        .get(agency.app.url(&format!("/oauth/reauth/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(
        page.contains(&format!("action=\"/oauth/reauth/{id}\"")),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let response = rita
        .post(agency.app.url(&format!("/oauth/reauth/{id}")))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let consent_url = location(&response);
    assert!(
        consent_url.starts_with(&world.provider.authorization_endpoint),
        "{consent_url}"
    );
    assert_eq!(
        scopes_of(&consent_url),
        ["contacts.read", "offline_access", "openid", "profile"]
    );
    let outcome = world.provider.consent(&consent_url, "rita", true).await;
    register_secret(outcome.code.as_deref().unwrap());
    let response = rita.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let renewed = agency
        .app
        .stored_connection(id)
        .await
        .expect("the same connection");
    assert_eq!(renewed.state, "valid");
    let second = agency.app.connection_values(&renewed).await;
    assert_ne!(second["access_token"], first["access_token"]);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(connection_count(agency).await, 1);
    // … and from a script (an API token): a 302 to the provider.
    let response = agency
        .app
        .with_token(reqwest::Method::GET, &format!("/oauth/reauth/{id}"), &token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert!(location(&response).starts_with(&world.provider.authorization_endpoint));
    // Only the person who added it renews it (anyone else would swap in
    // their own account).
    let tom = agency.app.token(agency.teammate.id, WRITE).await;
    let response = agency
        .app
        .with_token(reqwest::Method::GET, &format!("/oauth/reauth/{id}"), &tom)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let reader = agency
        .app
        .token(agency.requester.id, "connections:read")
        .await;
    let response = agency
        .app
        .with_token(
            reqwest::Method::GET,
            &format!("/oauth/reauth/{id}"),
            &reader,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Someone who is not signed in is sent to sign in first.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = anonymous
        .get(agency.app.url(&format!("/oauth/reauth/{id}")))
        .send()
        .await
        .unwrap();
    assert!(
        location(&response).starts_with("/sign-in?next="),
        "{}",
        location(&response)
    );

    let (status, body) = agency
        .app
        .send(
            Method::DELETE,
            &format!("/api/v2/connections/{id}?confirmed=true"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refresh = second["refresh_token"].as_str().unwrap();
    assert_eq!(world.provider.introspect(refresh).await["active"], false);
    let events = agency.audit_events().await;
    for event in [
        "connection.created",
        "connection.reauthorized",
        "connection.deleted",
        "connection.revoked_at_provider",
    ] {
        assert!(events.contains(&event.to_string()), "{event} in {events:?}");
    }
    // Flows are swept only once expired (those of the deleted connection went
    // with it).
    let mut db = agency.app.db().await;
    assert_eq!(
        db.sweep_oauth_flows(credence_store::now()).await.unwrap(),
        0
    );
    let later = credence_store::now() + chrono::Duration::days(1);
    assert_eq!(db.sweep_oauth_flows(later).await.unwrap(), 1);
    drop(db);
    assert_no_secret("the logs", &captured_logs());
    world.agency.app.stop().await;
}

/// A connection with its own OAuth client ("advanced settings") uses it for
/// consent, the code exchange, refresh and revocation — here the configured
/// client is one the provider does not know, so any use of it would fail.
async fn a_connection_brings_its_own_oauth_client(backend: Backend) {
    // Kept bound until Credence listens on it: the provider must know it first.
    let port = crate::support::reserve_port();
    let provider = OidcProvider::start_with(
        &[format!("http://127.0.0.1:{port}/oauth/callback")],
        OidcOptions::default(),
    )
    .await;
    register_secret(&provider.client_secret);
    let agency = Agency::start_with(backend, &[(APP, oauth_app(&provider))], |config| {
        config.listen = ([127, 0, 0, 1], port).into();
        config.oauth_refresh_every = None;
        config.oauth_clients.insert(
            APP.into(),
            credence::config::OAuthClient {
                client_id: "configured-but-unknown".into(),
                client_secret: SecretString::from("configured-secret".to_string()),
            },
        );
    })
    .await;
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let path = format!("/api/v2/connections?teamId={}", agency.app.team);

    let (status, body) = agency
        .app
        .send(
            Method::POST,
            &path,
            &token,
            Some(json!({ "accountType": APP })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        query_value(body["redirectUri"].as_str().unwrap(), "client_id"),
        "configured-but-unknown"
    );
    let (status, answer) = agency
        .app
        .send(
            Method::POST,
            &path,
            &token,
            Some(json!({ "accountType": APP, "clientId": provider.client_id })),
        )
        .await;
    let answer = assert_error(status, &answer, StatusCode::BAD_REQUEST);
    assert_eq!(answer["suberrors"][0]["field"], "clientSecret");

    let (status, body) = agency
        .app
        .send(
            Method::POST,
            &path,
            &token,
            Some(json!({
                "accountType": APP, "accountName": "Own client",
                "clientId": provider.client_id, "clientSecret": provider.client_secret,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let consent_url = body["redirectUri"].as_str().unwrap();
    assert_eq!(query_value(consent_url, "client_id"), provider.client_id);
    let outcome = provider.consent(consent_url, "rita", true).await;
    register_secret(outcome.code.as_deref().unwrap());
    let rita = browser();
    sign_in(&agency, &rita, "/").await;
    let response = rita.get(outcome.redirect.clone()).send().await.unwrap();
    let status = response.status();
    let page = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{page}");

    let connections = agency.app.team_connections().await;
    let connection = connections
        .iter()
        .find(|c| c.name == "Own client")
        .expect("created");
    let id = connection.id;
    let (status, body) = agency
        .app
        .send(
            Method::GET,
            &format!("/api/v2/connections/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["connection"]["oauthClientId"], provider.client_id);
    let values = agency.app.connection_values(connection).await;
    assert_eq!(
        values["oauth_client_secret"],
        provider.client_secret.as_str()
    );

    // Testing refreshes the token: only the connection's own client can.
    let (status, body) = agency
        .app
        .send(
            Method::POST,
            &format!("/api/v2/connections/{id}/test"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["verified"], true);
    assert_eq!(provider.token_requests("refresh_token").await, 1);
    let refreshed = agency
        .app
        .connection_values(&agency.app.stored_connection(id).await.unwrap())
        .await;

    let (status, _) = agency
        .app
        .send(
            Method::DELETE,
            &format!("/api/v2/connections/{id}?confirmed=true"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let refresh = refreshed["refresh_token"].as_str().unwrap();
    assert_eq!(provider.introspect(refresh).await["active"], false);
    assert_no_secret("the logs", &captured_logs());
    agency.app.stop().await;
}

/// Signs `browser` in as the requester (Rita), from the sign-in page for
/// `next`; answers where sign-in sends it.
async fn sign_in(agency: &Agency, browser: &reqwest::Client, next: &str) -> String {
    let page = browser
        .get(agency.app.url(&format!(
            "/sign-in?{}",
            serde_urlencoded::to_string([("next", next)]).unwrap()
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (csrf, next) = (field_of(&page, "csrf_token"), field_of(&page, "next"));
    let response = browser
        .post(agency.app.url("/sign-in"))
        .form(&[
            ("email", agency.requester.email.as_str()),
            ("password", agency.requester.password.as_str()),
            ("csrf_token", csrf.as_str()),
            ("next", next.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_redirection(),
        "sign-in: {}",
        response.status()
    );
    location(&response)
}

/// The provider sends back a browser that is not signed in (consent in a
/// fresh window): it signs in and comes back to finish, nothing lost.
async fn a_callback_without_a_session_passes_through_sign_in(backend: Backend) {
    let world = world(backend, true).await;
    let agency = &world.agency;
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let (status, body) = agency
        .app
        .send(
            Method::POST,
            &format!("/api/v2/connections?teamId={}", agency.app.team),
            &token,
            Some(json!({ "accountType": APP, "accountName": "From a fresh window" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let outcome = world
        .provider
        .consent(body["redirectUri"].as_str().unwrap(), "rita", true)
        .await;
    register_secret(outcome.code.as_deref().unwrap());

    let fresh = browser();
    let response = fresh.get(outcome.redirect.clone()).send().await.unwrap();
    assert!(response.status().is_redirection());
    let to = location(&response);
    assert!(to.starts_with("/sign-in?next="), "{to}");
    let next: Vec<(String, String)> =
        serde_urlencoded::from_str(to.split_once('?').unwrap().1).unwrap();
    let back = sign_in(agency, &fresh, &next[0].1).await;
    assert!(back.starts_with("/oauth/callback?"), "{back}");
    let response = fresh.get(agency.app.url(&back)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let names: Vec<String> = agency
        .app
        .team_connections()
        .await
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["From a fresh window"]);
    world.agency.app.stop().await;
}

/// A connection a recipient provided is renewed only by them (the team is
/// pointed at request-reauthorize); deleting it sends the credential back to
/// pending, tells the recipient and revokes the grant at the provider.
async fn a_connection_a_recipient_provided(backend: Backend) {
    let world = world(backend, true).await;
    let agency = &world.agency;
    let tom = signed_in(&world.agency.app, &agency.teammate).await;
    world.consent_through(&tom, "authorize").await;
    let connection = world.connection().await;
    let tokens = world.tokens(&connection).await;
    let token = agency.app.token(agency.requester.id, WRITE).await;

    let response = agency
        .app
        .with_token(
            reqwest::Method::GET,
            &format!("/oauth/reauth/{}", connection.id),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("request-reauthorize"),
        "{answer}"
    );

    let (status, answer) = agency
        .app
        .send(
            Method::DELETE,
            &format!("/api/v2/connections/{}", connection.id),
            &token,
            None,
        )
        .await;
    let answer = assert_error(status, &answer, StatusCode::CONFLICT);
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("back to pending"),
        "{answer}"
    );
    let (status, body) = agency
        .app
        .send(
            Method::DELETE,
            &format!("/api/v2/connections/{}?confirmed=true", connection.id),
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let credential = world.stored().await;
    assert_eq!(credential.state, CredentialState::Pending);
    assert_eq!(credential.connection_id, None);
    assert!(agency.app.stored_connection(connection.id).await.is_none());
    let told = agency
        .outbox()
        .await
        .into_iter()
        .any(|(kind, to, payload)| {
            kind == "credential.delete_remote"
                && to == agency.teammate.email
                && payload["credentialId"]
                    == json!(CredentialId::parse("id", &world.credential).unwrap())
        });
    assert!(told, "the recipient is told");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(world.provider.introspect(refresh).await["active"], false);
    world.agency.app.stop().await;
}

on_both_backends!(
    an_api_key_connection_is_verified_before_it_is_sealed,
    bad_input_to_add_a_connection_names_the_field,
    rename_and_delete_a_connection,
    an_oauth_connection_is_added_through_consent_and_renewed_in_place,
    a_connection_brings_its_own_oauth_client,
    a_callback_without_a_session_passes_through_sign_in,
    a_connection_a_recipient_provided,
);

//! OAuth 2.0 apps end to end against a real authorization server
//! (`OidcProvider`): the recipient asks to authorize, follows the consent page,
//! and the provider's redirect back to `/oauth/callback` finishes the job —
//! only once, only in the browser of the person who started it.

use crate::on_both_backends;
use crate::support::Agency;
use crate::support::{
    assert_error, assert_no_secret, captured_logs, context_at, csrf_of, location, oauth_app,
    register_secret, signed_in, wait_until, world, world_with, World, APP,
};
use crate::support::{OidcOptions, OidcProvider, Rotation};
use credence_domain::{CredentialId, CredentialState};
use credence_store::Backend;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

fn scope_set(text: &str) -> BTreeSet<String> {
    text.split(' ').map(str::to_string).collect()
}

/// The whole journey: the consent URL asks for exactly the credential's
/// scopes with state and an S256 challenge; the callback stores the tokens
/// sealed, the credential is authorized and the requester told; the same
/// callback a second time is refused and changes nothing.
async fn consent_authorizes_and_the_tokens_are_sealed(backend: Backend) {
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    let (status, body) = world.authorize().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let redirect_uri = body["redirectUri"].as_str().unwrap().to_string();
    let url = Url::parse(&redirect_uri).unwrap();
    assert!(redirect_uri.starts_with(&world.provider.authorization_endpoint));
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], world.provider.client_id);
    assert_eq!(query["response_type"], "code");
    assert_eq!(
        query["redirect_uri"],
        world.agency.app.url("/oauth/callback")
    );
    assert_eq!(
        scope_set(&query["scope"]),
        scope_set("openid offline_access contacts.read contacts.write")
    );
    assert!(query["state"].len() >= 22, "state: {}", query["state"]);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert_eq!(query["prompt"], "consent");
    assert_eq!(world.state().await, "pending");

    let outcome = world.provider.consent(&redirect_uri, "tom", true).await;
    let code = outcome.code.clone().expect("a code");
    register_secret(&code);
    let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), format!("/received/{}", world.request));
    assert_eq!(world.state().await, "authorized");

    let credential = world.stored().await;
    assert_eq!(credential.state, CredentialState::Authorized);
    let connection = world
        .agency
        .app
        .db()
        .await
        .get_connection(credential.connection_id.expect("a connection"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connection.auth_kind, "oauth2");
    let granted: Vec<String> = serde_json::from_str(&connection.scopes).unwrap();
    assert_eq!(
        granted.into_iter().collect::<BTreeSet<_>>(),
        scope_set("openid offline_access contacts.read contacts.write")
    );
    let plain = credence::service::secrets::open_connection(
        &world.agency.app.store,
        &world.agency.app.vault(),
        &connection,
    )
    .await
    .unwrap();
    let tokens: Value = serde_json::from_str(plain.expose_secret()).unwrap();
    let access = tokens["access_token"].as_str().expect("an access token");
    register_secret(access);
    if let Some(refresh) = tokens["refresh_token"].as_str() {
        register_secret(refresh);
    }
    assert!(tokens["expires_at"].is_string(), "{tokens:?}");
    let introspection = world.provider.introspect(access).await;
    assert_eq!(introspection["active"], true, "{introspection}");

    let events = world.agency.audit_events().await;
    assert!(
        events.contains(&"credential.authorized".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"connection.created".to_string()),
        "{events:?}"
    );
    let outbox = world.agency.outbox().await;
    assert!(
        outbox
            .iter()
            .any(|(kind, to, _)| kind == "credential.authorized"
                && to == &world.agency.requester.email),
        "{outbox:?}"
    );

    // The same callback again: refused, nothing changes.
    let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("used already"));
    let again = world.stored().await;
    assert_eq!(again.connection_id, credential.connection_id);
    assert_eq!(again.state, CredentialState::Authorized);

    assert_no_secret("the logs", &captured_logs());
    world.agency.app.stop().await;
}

/// The recipient cancels on the consent page: the credential is invalid with
/// the provider's reason, and no connection exists.
async fn denied_consent_leaves_the_credential_invalid_with_the_reason(backend: Backend) {
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    let (status, body) = world.authorize().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome = world
        .provider
        .consent(body["redirectUri"].as_str().unwrap(), "tom", false)
        .await;
    assert_eq!(outcome.error.as_deref(), Some("access_denied"));
    let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), format!("/received/{}", world.request));
    let credential = world.stored().await;
    assert_eq!(credential.state, CredentialState::Invalid);
    assert!(credential.connection_id.is_none());
    let reason = credential.invalid_reason.unwrap_or_default();
    assert!(reason.contains("access_denied"), "{reason}");
    assert!(world
        .agency
        .audit_events()
        .await
        .contains(&"credential.invalidated".to_string()));
    world.agency.app.stop().await;
}

/// A forged state, a callback opened by another signed-in person and one opened
/// without a session (sent to sign in) are all refused and change nothing; the right browser
/// can still finish afterwards.
async fn forged_foreign_and_anonymous_callbacks_are_refused(backend: Backend) {
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    let rita = signed_in(&world.agency.app, &world.agency.requester).await;
    let (status, body) = world.authorize().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome = world
        .provider
        .consent(body["redirectUri"].as_str().unwrap(), "tom", true)
        .await;
    register_secret(outcome.code.as_deref().unwrap());

    let forged = tom
        .get(
            world
                .agency
                .app
                .url("/oauth/callback?code=abc&state=forged-state"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
    assert!(forged
        .text()
        .await
        .unwrap()
        .contains("not one Credence started"));

    let foreign = rita.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert!(foreign.text().await.unwrap().contains("someone else"));

    // Without a session the browser is sent to sign in (and back), and
    // nothing changes until it is.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(outcome.redirect.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert!(location(&anonymous).starts_with("/sign-in?next=%2Foauth%2Fcallback%3F"));
    assert_eq!(world.state().await, "pending");

    let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(world.state().await, "authorized");
    world.agency.app.stop().await;
}

/// The token endpoint fails (an outage): the credential is invalid with a
/// readable reason, the browser still lands on the request page, no 5xx.
async fn a_failing_token_endpoint_leaves_the_credential_invalid(backend: Backend) {
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    let (status, body) = world.authorize().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome = world
        .provider
        .consent(body["redirectUri"].as_str().unwrap(), "tom", true)
        .await;
    register_secret(outcome.code.as_deref().unwrap());
    world.provider.set_outage(Some(503)).await;
    let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
    world.provider.set_outage(None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let credential = world.stored().await;
    assert_eq!(credential.state, CredentialState::Invalid);
    assert!(credential.connection_id.is_none());
    let reason = credential.invalid_reason.unwrap_or_default();
    assert!(reason.contains("HTTP 503"), "{reason}");
    world.agency.app.stop().await;
}

/// Reauthorizing goes through the consent page again; the new connection
/// replaces the old one, whose secret is gone.
async fn reauthorize_replaces_the_connection(backend: Backend) {
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    let mut connections = Vec::new();
    for action in ["authorize", "reauthorize"] {
        if action == "reauthorize" {
            // Asking through the API would find the connection working (a
            // refresh succeeds): the requester's ask is put in place directly.
            world
                .agency
                .app
                .db()
                .await
                .transition_credential(
                    CredentialId::parse("id", &world.credential).unwrap(),
                    credence_domain::CredentialAction::RequestReauthorization,
                    &credence_store::CredentialChange::default(),
                )
                .await
                .unwrap();
        }
        // Through the consent page; the credential is then authorized.
        world.consent_through(&tom, action).await;
        connections.push(world.stored().await.connection_id.unwrap());
    }
    assert_ne!(connections[0], connections[1]);
    let mut db = world.agency.app.db().await;
    assert!(db.get_connection(connections[0]).await.unwrap().is_none());
    assert!(db.get_connection(connections[1]).await.unwrap().is_some());
    drop(db);
    assert!(world
        .agency
        .audit_events()
        .await
        .contains(&"credential.reauthorized".to_string()));
    world.agency.app.stop().await;
}

/// Without a configured client, authorize says which variables to set.
async fn an_oauth_app_without_a_client_names_the_variables(backend: Backend) {
    let world = world(backend, false).await;
    let (status, body) = world.authorize().await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("CREDENCE_OAUTH_LOCAL_OAUTH_CLIENT_ID")
            && detail.contains("CREDENCE_OAUTH_LOCAL_OAUTH_CLIENT_SECRET"),
        "{body}"
    );
    assert_eq!(world.state().await, "pending");
    world.agency.app.stop().await;
}

/// Authorize → test → the access token expires → refresh (the old refresh
/// token is kept with `Rotation::Keep`, and works again) → the grant is
/// revoked at the provider → the next refresh is refused: the credential is
/// invalid and both sides are told → request reauthorization → reauthorize.
async fn refresh_keeps_the_grant_alive_until_the_provider_revokes_it(backend: Backend) {
    use credence::service::refresh::{self, RefreshOutcome};
    let world = world_with(
        backend,
        true,
        OidcOptions {
            rotation: Rotation::Keep,
            ..OidcOptions::default()
        },
    )
    .await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    world.consent_through(&tom, "authorize").await;
    let connection = world.connection().await;
    let id = connection.id;
    assert!(connection.token_expires_at.is_some());
    let first = world.tokens(&connection).await;
    let reader = world
        .agency
        .app
        .token(
            world.agency.requester.id,
            &format!(
                "{},connections:read,connections:write",
                crate::support::SCOPES
            ),
        )
        .await;

    // Testing refreshes: the provider issued a token.
    let refreshes = world.provider.token_requests("refresh_token").await;
    let (status, body) = world
        .agency
        .post(&format!("/api/v2/connections/{id}/test"), &reader, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["verified"], true);
    assert_eq!(
        world.provider.token_requests("refresh_token").await,
        refreshes + 1
    );

    // The access token expires (the refresh's clock stands at its expiry,
    // rather than the test waiting for it); the refresh stores a new one,
    // keeping the refresh token the provider did not repeat.
    let at_expiry = world.ctx_at(world.token_expiry(id).await);
    let outcome = refresh::refresh_if_due(&at_expiry, id).await.unwrap();
    assert_eq!(outcome, RefreshOutcome::Refreshed);
    let connection = world.connection_by_id(id).await;
    let second = world.tokens(&connection).await;
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(second["refresh_token"], first["refresh_token"]);
    let introspection = world
        .provider
        .introspect(second["access_token"].as_str().unwrap())
        .await;
    assert_eq!(introspection["active"], true, "{introspection}");
    assert!(connection.refreshed_at.is_some());
    assert!(connection.refresh_after.is_none());
    // Just issued, as of the same clock: not expiring, so nothing is asked of
    // the provider (however long the checks above took).
    let refreshes = world.provider.token_requests("refresh_token").await;
    assert_eq!(
        refresh::refresh_if_due(&at_expiry, id).await.unwrap(),
        RefreshOutcome::StillValid
    );
    assert_eq!(
        world.provider.token_requests("refresh_token").await,
        refreshes
    );
    // The kept refresh token works again.
    assert_eq!(
        refresh::refresh_now(world.ctx(), id).await.unwrap(),
        RefreshOutcome::Refreshed
    );

    // The connection works: asking for reauthorization sends nothing.
    let path = format!(
        "/api/v2/credential-requests/credentials/{}/request-reauthorize",
        world.credential
    );
    let (status, body) = world
        .agency
        .post(&path, &world.agency.requester_token, None)
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was sent"),
        "{body}"
    );

    // The grant is revoked at the provider: the next refresh is refused.
    let third = world.tokens(&world.connection_by_id(id).await).await;
    world
        .provider
        .revoke(third["refresh_token"].as_str().unwrap())
        .await;
    let outcome = refresh::refresh_now(world.ctx(), id).await.unwrap();
    let RefreshOutcome::Refused { reason } = outcome else {
        panic!("refused expected, got {outcome:?}");
    };
    assert!(reason.contains("invalid_grant"), "{reason}");
    let credential = world.stored().await;
    assert_eq!(credential.state, CredentialState::Invalid);
    assert!(credential
        .invalid_reason
        .unwrap_or_default()
        .contains("invalid_grant"));
    assert_eq!(world.connection_by_id(id).await.state, "invalid");
    assert!(world
        .agency
        .audit_events()
        .await
        .contains(&"credential.invalidated".to_string()));
    let outbox = world.agency.outbox().await;
    for email in [&world.agency.requester.email, &world.agency.teammate.email] {
        assert!(
            outbox
                .iter()
                .any(|(kind, to, _)| kind == "connection.invalid" && to == email),
            "{email}: {outbox:?}"
        );
    }

    // The requester asks again; the recipient is told and reauthorizes.
    let (status, body) = world
        .agency
        .post(&path, &world.agency.requester_token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(world.state().await, "reauthorizing");
    assert!(world.agency.outbox().await.iter().any(|(kind, to, _)| kind
        == "credential.reauthorization_requested"
        && to == &world.agency.teammate.email));
    world.consent_through(&tom, "reauthorize").await;
    assert_eq!(world.state().await, "authorized");
    let fresh = world.connection().await;
    assert_ne!(fresh.id, id);
    world.tokens(&fresh).await;

    assert_no_secret("the logs", &captured_logs());
    world.agency.app.stop().await;
}

/// A provider outage: the refresh fails with a reason, nothing is
/// invalidated, and the next attempt waits; a success resets the wait.
async fn a_provider_outage_backs_off_and_invalidates_nothing(backend: Backend) {
    use credence::service::refresh::{self, RefreshOutcome};
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    world.consent_through(&tom, "authorize").await;
    let id = world.connection().await.id;
    world.tokens(&world.connection_by_id(id).await).await;
    // Every refresh here runs as of the access token's expiry: it is due.
    let at_expiry = world.ctx_at(world.token_expiry(id).await);

    world.provider.set_outage(Some(503)).await;
    let error = refresh::refresh_if_due(&at_expiry, id).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("503"), "{message}");
    let connection = world.connection_by_id(id).await;
    assert_eq!(connection.state, "valid");
    assert_eq!(connection.refresh_failures, 1);
    let after = connection.refresh_after.expect("a next attempt time");
    let wait = after - credence_store::now();
    assert!(
        wait > chrono::Duration::seconds(20) && wait <= chrono::Duration::seconds(30),
        "{wait}"
    );
    assert_eq!(world.stored().await.state, CredentialState::Authorized);
    // The background refresher would not pick it before then.
    let now = credence_store::now();
    let due = world
        .agency
        .app
        .db()
        .await
        .connections_due_for_refresh(
            now,
            now + refresh::EXPIRY_MARGIN,
            now - refresh::IDLE_AFTER,
            100,
        )
        .await
        .unwrap();
    assert!(!due.contains(&id), "{due:?}");
    // A second outage doubles the wait.
    refresh::refresh_if_due(&at_expiry, id).await.unwrap_err();
    let connection = world.connection_by_id(id).await;
    assert_eq!(connection.refresh_failures, 2);
    assert!(
        connection.refresh_after.unwrap() - credence_store::now() > chrono::Duration::seconds(50)
    );

    world.provider.set_outage(None).await;
    assert_eq!(
        refresh::refresh_if_due(&at_expiry, id).await.unwrap(),
        RefreshOutcome::Refreshed
    );
    let connection = world.connection_by_id(id).await;
    assert!(connection.refresh_after.is_none());
    assert_eq!(connection.refresh_failures, 0);
    world.tokens(&connection).await;
    assert_no_secret("the logs", &captured_logs());
    world.agency.app.stop().await;
}

/// Two instances on one database refresh the same connection at once, with
/// rotating refresh tokens: the row lock lets one ask the provider; the other
/// finds the fresh token. Presenting the consumed refresh token would have
/// revoked the grant; a later refresh still works.
async fn two_instances_refresh_a_connection_once(backend: Backend) {
    use credence::service::refresh::{self, RefreshOutcome};
    let world = world_with(
        backend,
        true,
        OidcOptions {
            rotation: Rotation::Rotate,
            ..OidcOptions::default()
        },
    )
    .await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    world.consent_through(&tom, "authorize").await;
    let id = world.connection().await.id;
    world.tokens(&world.connection_by_id(id).await).await;

    let mut config = world.agency.app.config.clone();
    config.listen = ([127, 0, 0, 1], 0).into();
    let second = credence::Application::build(config)
        .await
        .expect("a second instance builds");
    let other = second.context();

    // Both instances refresh as of the access token's expiry (their clocks
    // stand there): both find it expiring, and whichever comes second finds
    // the token the first stored fresh as of that time.
    let expiry = world.token_expiry(id).await;
    let (ours, theirs) = (world.ctx_at(expiry), context_at(&other, expiry));
    let before = world.provider.token_requests("refresh_token").await;
    let (a, b) = tokio::join!(
        refresh::refresh_if_due(&ours, id),
        refresh::refresh_if_due(&theirs, id)
    );
    let mut outcomes = vec![a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        vec![RefreshOutcome::Refreshed, RefreshOutcome::StillValid]
    );
    assert_eq!(
        world.provider.token_requests("refresh_token").await,
        before + 1
    );
    let tokens = world.tokens(&world.connection_by_id(id).await).await;
    let introspection = world
        .provider
        .introspect(tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(introspection["active"], true, "{introspection}");
    assert_eq!(
        refresh::refresh_now(&other, id).await.unwrap(),
        RefreshOutcome::Refreshed
    );
    world.tokens(&world.connection_by_id(id).await).await;
    assert_eq!(world.stored().await.state, CredentialState::Authorized);
    drop(second);
    assert_no_secret("the logs", &captured_logs());
    world.agency.app.stop().await;
}

/// The recipient revokes: the secret is gone, the grant is revoked at the
/// provider (RFC 7009) and the audit log says so, without a token.
async fn revoking_the_credential_revokes_the_grant_at_the_provider(backend: Backend) {
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    world.consent_through(&tom, "authorize").await;
    let connection = world.connection().await;
    let tokens = world.tokens(&connection).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(world.provider.introspect(&access).await["active"], true);

    let (status, body) = world
        .agency
        .post(
            &format!(
                "/api/v2/credential-requests/credentials/{}/revoke",
                world.credential
            ),
            &world.agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(world.stored().await.state, CredentialState::Revoked);
    let mut db = world.agency.app.db().await;
    assert!(db.get_connection(connection.id).await.unwrap().is_none());
    assert!(db
        .get_secret(connection.secret_id.as_deref().unwrap())
        .await
        .unwrap()
        .is_none());
    drop(db);
    assert_eq!(world.provider.introspect(&access).await["active"], false);
    assert_eq!(world.provider.introspect(&refresh).await["active"], false);

    let entries = world.agency.app.audit_entries(&[]).await;
    let entry = entries
        .iter()
        .find(|e| e.event == "connection.revoked_at_provider")
        .expect("the revocation is audited");
    assert_eq!(entry.target_id, connection.id.to_string());
    let details: Value = serde_json::from_str(&entry.details).unwrap();
    assert_eq!(details["ok"], true, "{details}");
    assert_eq!(details["status"], 200, "{details}");
    assert_no_secret("the logs", &captured_logs());
    world.agency.app.stop().await;
}

/// The background refresher (here every second) renews an expiring access
/// token by itself.
async fn the_background_refresher_renews_expiring_tokens(backend: Backend) {
    // Kept bound until Credence listens on it: the provider must know it first.
    let port = crate::support::reserve_port();
    let provider = OidcProvider::start_with(
        &[format!("http://127.0.0.1:{port}/oauth/callback")],
        OidcOptions {
            access_token_ttl: 3,
            ..OidcOptions::default()
        },
    )
    .await;
    register_secret(&provider.client_secret);
    let client = credence::config::OAuthClient {
        client_id: provider.client_id.clone(),
        client_secret: SecretString::from(provider.client_secret.clone()),
    };
    let agency = Agency::start_with(backend, &[(APP, oauth_app(&provider))], |config| {
        config.listen = ([127, 0, 0, 1], port).into();
        config.oauth_clients.insert(APP.into(), client);
        config.oauth_refresh_every = Some(std::time::Duration::from_secs(1));
    })
    .await;
    let (request, credentials, _) = agency.create_request(agency.teammate.id, &[APP]).await;
    let world = World {
        agency,
        provider,
        request,
        credential: credentials[0].clone(),
    };
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    world.consent_through(&tom, "authorize").await;
    let id = world.connection().await.id;
    // The tokens the consent stored, unless the refresher was quicker than
    // this read: a refresh writes the tokens and `refreshed_at` in one
    // transaction, so the row read after the tokens tells which they are.
    let first = world.tokens(&world.connection_by_id(id).await).await;
    let consented = world.connection_by_id(id).await.refreshed_at.is_none();
    // Due 1.5 s after the consent, refreshed at the next tick (every second).
    wait_until(
        "the background refresher refreshes the connection",
        || async { world.connection_by_id(id).await.refreshed_at.is_some() },
    )
    .await;
    assert!(world.provider.token_requests("refresh_token").await >= 1);
    let renewed = world.tokens(&world.connection_by_id(id).await).await;
    if consented {
        assert_ne!(renewed["access_token"], first["access_token"]);
    }
    assert_no_secret("the logs", &captured_logs());
    world.agency.app.stop().await;
}

/// The recipient's page has a form for the consent page; posting it (with
/// the page's CSRF token) sends the recipient's browser to the provider
/// (anyone else gets nothing), and the callback brings it back authorized.
async fn the_recipients_page_sends_the_browser_to_consent(backend: Backend) {
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    let page = tom
        .get(
            world
                .agency
                .app
                .url(&format!("/received/{}", world.request)),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let action = format!("/oauth/authorize/{}", world.credential);
    assert!(page.contains(&format!("action=\"{action}\"")), "{page}");
    assert!(page.contains("Authorize with Local OAuth"), "{page}");
    let csrf = csrf_of(&page);
    let post = |client: &reqwest::Client, path: &str, csrf: &str| {
        client
            .post(world.agency.app.url(path))
            .form(&[("csrf_token", csrf.to_string())])
            .send()
    };

    // Another signed-in person, a forged form and a bad id get nothing.
    let rita = signed_in(&world.agency.app, &world.agency.requester).await;
    assert_eq!(
        post(&rita, &action, &csrf).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&tom, &action, "forged").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let response = post(&tom, "/oauth/authorize/not-an-id", &csrf)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(world.state().await, "pending");

    let response = post(&tom, &action, &csrf).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let consent = location(&response);
    assert!(
        consent.starts_with(&world.provider.authorization_endpoint),
        "{consent}"
    );
    let outcome = world.provider.consent(&consent, "tom", true).await;
    register_secret(outcome.code.as_deref().unwrap());
    let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(world.state().await, "authorized");
    // Authorized: the route refuses.
    let response = post(&tom, &action, &csrf).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    world.agency.app.stop().await;
}

/// While the provider is slow to answer a refresh, Credence keeps writing:
/// no database lock is held during the call (on SQLite one would stop every
/// writer). A second refresh meanwhile waits for the lease and then finds
/// the fresh token instead of asking again.
async fn a_slow_provider_holds_no_database_lock(backend: Backend) {
    use credence::service::refresh::{self, RefreshOutcome};
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    world.consent_through(&tom, "authorize").await;
    let id = world.connection().await.id;
    // The provider holds every token request until the test lets it go.
    world.provider.hold_token_requests(true).await;
    let before = world.provider.token_requests("refresh_token").await;
    // Both refreshes read one clock standing still: the token the first one
    // stores is fresh for the second however late it gets the lease.
    let standing = world.ctx_at(credence_store::now());
    let ctx = standing.clone();
    let slow = tokio::spawn(async move { refresh::refresh_now(&ctx, id).await });
    world.provider.token_request_held().await;
    // A write that needs the database, while the refresh waits on the provider:
    // were a database lock held during the call, it would wait for ever.
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        world
            .agency
            .create_request(world.agency.teammate.id, &["acme-crm"]),
    )
    .await
    .expect("the write waited for the provider: a database lock was held during the refresh");
    assert!(
        !slow.is_finished(),
        "the refresh ended while its provider call was held"
    );
    // A second refresh meanwhile waits for the lease, then finds the new token.
    let ctx = standing.clone();
    let second = tokio::spawn(async move { refresh::refresh_if_due(&ctx, id).await });
    world.provider.hold_token_requests(false).await;
    assert_eq!(slow.await.unwrap().unwrap(), RefreshOutcome::Refreshed);
    assert_eq!(second.await.unwrap().unwrap(), RefreshOutcome::StillValid);
    assert_eq!(
        world.provider.token_requests("refresh_token").await,
        before + 1
    );
    world.tokens(&world.connection().await).await;
    world.agency.app.stop().await;
}

on_both_backends!(
    a_slow_provider_holds_no_database_lock,
    the_recipients_page_sends_the_browser_to_consent,
    consent_authorizes_and_the_tokens_are_sealed,
    denied_consent_leaves_the_credential_invalid_with_the_reason,
    forged_foreign_and_anonymous_callbacks_are_refused,
    an_oauth_app_without_a_client_names_the_variables,
    a_failing_token_endpoint_leaves_the_credential_invalid,
    reauthorize_replaces_the_connection,
    refresh_keeps_the_grant_alive_until_the_provider_revokes_it,
    a_provider_outage_backs_off_and_invalidates_nothing,
    two_instances_refresh_a_connection_once,
    revoking_the_credential_revokes_the_grant_at_the_provider,
    the_background_refresher_renews_expiring_tokens,
);

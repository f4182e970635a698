//! Races and leaks around a connection's life, pinned with real peers:
//!
//! * an action that destroys a credential's connection (delete-remote, request
//!   deletion, a second authorization) must destroy the connection the
//!   credential holds when it commits, not one read earlier — otherwise a
//!   reauthorization committing in between leaves a connection (and its
//!   secret) that no credential names and the recipient can never revoke.
//!   The window is widened by an app whose verify endpoint holds its answer
//!   until the test lets it go;
//! * a refresh releases only the refresh lease it holds, never one another
//!   refresh took after its own ran out;
//! * an OAuth provider's `error`/`error_description` (from the token endpoint,
//!   or the callback query that the consenting person controls) is stored and
//!   shown only without the connection's secrets, and capped.

use crate::on_both_backends;
use crate::support::Agency;
use crate::support::{
    api_key_app, assert_no_secret, captured_logs, credential_path, register_secret, signed_in,
    Held, Upstream,
};
use crate::support::{world, World};
use axum::http::StatusCode;
use credence_domain::CredentialState;
use credence_store::Backend;
use serde_json::Value;

/// The key of the held app.
const HELD_APP: &str = "held-crm";

/// An agency with the held app; Tom (the teammate) is the recipient.
async fn held_agency(backend: Backend) -> (Agency, Upstream) {
    let upstream = Upstream::start().await;
    let app_file = api_key_app(HELD_APP, "Held CRM", &upstream);
    let agency = Agency::start_with(backend, &[(HELD_APP, app_file)], |_| {}).await;
    (agency, upstream)
}

/// A new request for the held app whose credential Tom authorized with one
/// key, which then stopped working: the requester asked for reauthorization,
/// so the credential is `reauthorizing` and still holds its first
/// connection. Answers (request id, credential id, connection id).
async fn reauthorizing(
    agency: &Agency,
    upstream: &Upstream,
    round: usize,
) -> (String, String, i64) {
    let (request, credentials, _) = agency.create_request(agency.teammate.id, &[HELD_APP]).await;
    let credential = credentials[0].clone();
    let first = format!("first-key-{round}-{}", uuid::Uuid::new_v4().simple());
    upstream.accept(&first);
    let (status, body) = agency
        .authorize_with(&credential, "authorize", &first)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    upstream.reject(&first);
    let (status, body) = agency
        .post(
            &credential_path(&credential, "request-reauthorize"),
            &agency.requester_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "reauthorizing", "{body}");
    let stored = agency.app.stored_credential(&credential).await;
    (
        request,
        credential,
        stored.connection_id.expect("a connection"),
    )
}

/// The connections Tom provided that no credential names any more: the
/// recipient could never revoke them.
async fn orphaned_connections(agency: &Agency) -> Vec<i64> {
    let mut db = agency.app.db().await;
    let mut orphans = Vec::new();
    for connection in db.list_connections(agency.app.team).await.unwrap() {
        if connection.provided_by == Some(agency.teammate.id.0)
            && db
                .credentials_using_connection(connection.id)
                .await
                .unwrap()
                .is_empty()
        {
            orphans.push(connection.id);
        }
    }
    orphans
}

/// A connection and its sealed secret are both gone from the store.
async fn assert_destroyed(agency: &Agency, connection: i64, secret: Option<String>) {
    let mut db = agency.app.db().await;
    assert!(
        db.get_connection(connection).await.unwrap().is_none(),
        "connection {connection} is still stored"
    );
    if let Some(secret) = secret {
        assert!(
            db.get_secret(&secret).await.unwrap().is_none(),
            "the secret of connection {connection} is still stored"
        );
    }
}

/// Neither side of a race may answer with a server error: each either wins
/// or is told (409/404) the credential moved on.
fn assert_no_server_error(what: &str, status: StatusCode, body: &Value) {
    assert!(
        !status.is_server_error(),
        "{what} answered {status}: {body}"
    );
}

/// How many rounds each race runs: enough for the interleaving that orphans
/// a connection to come up many times before the fix.
const ROUNDS: usize = 24;

/// The requester deletes the remote connection while Tom's reauthorization
/// is finishing (its verify answer released at the same moment). Whichever
/// commits last, the connection the credential holds at that point is the
/// one destroyed: no round leaves a connection of Tom's behind.
async fn delete_remote_racing_a_reauthorization_orphans_no_connection(backend: Backend) {
    let (agency, upstream) = held_agency(backend).await;
    for round in 0..ROUNDS {
        let (_, credential, _) = reauthorizing(&agency, &upstream, round).await;
        let second = format!("second-key-{round}-{}", uuid::Uuid::new_v4().simple());
        upstream.accept(&second);
        let Held { arrived, release } = upstream.hold(&second);
        let ((authorized, authorize_body), (deleted, delete_body)) = tokio::join!(
            agency.authorize_with(&credential, "reauthorize", &second),
            async {
                arrived.await.expect("the verify call arrives");
                let _ = release.send(());
                agency
                    .post(
                        &credential_path(&credential, "delete-remote"),
                        &agency.requester_token,
                        None,
                    )
                    .await
            }
        );
        assert_no_server_error("reauthorize", authorized, &authorize_body);
        assert_no_server_error("delete-remote", deleted, &delete_body);
        let orphans = orphaned_connections(&agency).await;
        assert!(
            orphans.is_empty(),
            "round {round}: reauthorize {authorized}, delete-remote {deleted}: \
             connections {orphans:?} are named by no credential"
        );
    }
    agency.app.stop().await;
}

/// The requester deletes the whole request (confirmed) while Tom's
/// reauthorization is finishing: every connection the request's credentials
/// hold when the deletion commits goes with it.
async fn request_deletion_racing_a_reauthorization_orphans_no_connection(backend: Backend) {
    let (agency, upstream) = held_agency(backend).await;
    for round in 0..ROUNDS {
        let (request, credential, _) = reauthorizing(&agency, &upstream, round).await;
        let second = format!("second-key-{round}-{}", uuid::Uuid::new_v4().simple());
        upstream.accept(&second);
        let Held { arrived, release } = upstream.hold(&second);
        let ((authorized, authorize_body), (deleted, delete_body)) = tokio::join!(
            agency.authorize_with(&credential, "reauthorize", &second),
            async {
                arrived.await.expect("the verify call arrives");
                let _ = release.send(());
                agency
                    .delete(
                        &format!("/api/v2/credential-requests/requests/{request}?confirmed=true"),
                        &agency.requester_token,
                    )
                    .await
            }
        );
        assert_no_server_error("reauthorize", authorized, &authorize_body);
        assert_eq!(deleted, StatusCode::OK, "round {round}: {delete_body}");
        let orphans = orphaned_connections(&agency).await;
        assert!(
            orphans.is_empty(),
            "round {round}: reauthorize {authorized}: connections {orphans:?} outlived their request"
        );
    }
    agency.app.stop().await;
}

/// A reauthorization whose verify call is held keeps the connection id it
/// read before the call. Meanwhile another reauthorization replaces that
/// connection, and the requester asks again. When the held one finishes it
/// must destroy the connection the credential holds *then* (the second one),
/// not the first one again — which would leave the second named by nothing.
async fn a_held_reauthorization_destroys_the_connection_held_when_it_commits(backend: Backend) {
    let (agency, upstream) = held_agency(backend).await;
    let (_, credential, first_connection) = reauthorizing(&agency, &upstream, 0).await;
    let held_key = format!("held-key-{}", uuid::Uuid::new_v4().simple());
    let quick_key = format!("quick-key-{}", uuid::Uuid::new_v4().simple());
    upstream.accept(&held_key);
    upstream.accept(&quick_key);
    let Held { arrived, release } = upstream.hold(&held_key);
    let ((status, body), second_connection) = tokio::join!(
        agency.authorize_with(&credential, "reauthorize", &held_key),
        async {
            arrived.await.expect("the verify call arrives");
            let (status, body) = agency
                .authorize_with(&credential, "reauthorize", &quick_key)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let second = agency
                .app
                .stored_credential(&credential)
                .await
                .connection_id
                .expect("the second connection");
            let secret = agency
                .app
                .db()
                .await
                .get_connection(second)
                .await
                .unwrap()
                .unwrap()
                .secret_id;
            upstream.reject(&quick_key);
            let (status, body) = agency
                .post(
                    &credential_path(&credential, "request-reauthorize"),
                    &agency.requester_token,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let _ = release.send(());
            (second, secret)
        }
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let (second_connection, second_secret) = second_connection;
    let stored = agency.app.stored_credential(&credential).await;
    assert_eq!(stored.state, CredentialState::Authorized);
    let third = stored.connection_id.expect("the third connection");
    assert!(third != first_connection && third != second_connection);
    assert_destroyed(&agency, first_connection, None).await;
    assert_destroyed(&agency, second_connection, second_secret).await;
    assert_eq!(orphaned_connections(&agency).await, Vec::<i64>::new());
    agency.app.stop().await;
}

/// The requester asks for reauthorization of a credential whose key stopped
/// working; while Credence tests that key (the verify call held), Tom revokes
/// and authorizes again with a new key. The failed test was of a connection
/// the credential no longer holds: asking Tom to reauthorize the new one would
/// be wrong, so the request is refused (409) and the credential stays
/// authorized on its new connection.
async fn a_reauthorization_request_tested_on_a_replaced_connection_is_refused(backend: Backend) {
    let (agency, upstream) = held_agency(backend).await;
    let (_, credentials, _) = agency.create_request(agency.teammate.id, &[HELD_APP]).await;
    let credential = credentials[0].clone();
    let first = format!("first-key-{}", uuid::Uuid::new_v4().simple());
    let second = format!("second-key-{}", uuid::Uuid::new_v4().simple());
    upstream.accept(&first);
    upstream.accept(&second);
    let (status, body) = agency
        .authorize_with(&credential, "authorize", &first)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    upstream.reject(&first);
    let Held { arrived, release } = upstream.hold(&first);
    let ask = credential_path(&credential, "request-reauthorize");
    let ((status, body), replaced) =
        tokio::join!(agency.post(&ask, &agency.requester_token, None), async {
            arrived.await.expect("the verify call arrives");
            let (status, body) = agency
                .post(
                    &credential_path(&credential, "revoke"),
                    &agency.teammate_token,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let (status, body) = agency
                .authorize_with(&credential, "authorize", &second)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let replaced = agency
                .app
                .stored_credential(&credential)
                .await
                .connection_id;
            let _ = release.send(());
            replaced
        });
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let stored = agency.app.stored_credential(&credential).await;
    assert_eq!(stored.state, CredentialState::Authorized);
    assert_eq!(stored.connection_id, replaced);
    let mut db = agency.app.db().await;
    let connection = db
        .get_connection(replaced.expect("the new connection"))
        .await
        .unwrap()
        .expect("the new connection is stored");
    assert_ne!(connection.state, "invalid");
    drop(db);
    agency.app.stop().await;
}

/// An OAuth credential authorized through consent; answers its connection id.
async fn authorized_oauth(backend: Backend) -> (World, i64) {
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    world.consent_through(&tom, "authorize").await;
    let connection = world.connection().await;
    world.tokens(&connection).await;
    (world, connection.id)
}

/// A refresh holds the connection's lease while the provider thinks. Its
/// lease runs out, and another instance takes the lease over (claiming as of
/// a time past the first lease). When the first refresh ends, it must leave
/// the second one's lease alone: only the second may release it.
async fn a_refresh_releases_only_its_own_refresh_lease(backend: Backend) {
    use credence::service::refresh::{self, REFRESH_LEASE};
    let (world, id) = authorized_oauth(backend).await;
    let ctx = &world.agency.app.context;
    let store = &world.agency.app.store;
    world.provider.hold_token_requests(true).await;
    let (first, second_until) = tokio::join!(refresh::refresh_now(ctx, id), async {
        world.provider.token_request_held().await;
        // Seen from another instance, the first lease has run out.
        let later = credence_store::now() + REFRESH_LEASE + chrono::Duration::seconds(1);
        let until = later + REFRESH_LEASE;
        assert!(
            store
                .db()
                .await
                .unwrap()
                .claim_refresh_lease(id, later, until)
                .await
                .unwrap(),
            "the second instance takes over the expired lease"
        );
        world.provider.hold_token_requests(false).await;
        until
    });
    assert_eq!(first.unwrap(), refresh::RefreshOutcome::Refreshed);
    let now = credence_store::now();
    assert!(
        !store
            .db()
            .await
            .unwrap()
            .claim_refresh_lease(id, now, now + REFRESH_LEASE)
            .await
            .unwrap(),
        "the first refresh released the lease the second instance holds"
    );
    // The second one's release frees it, and a refresh runs again at once.
    assert!(store
        .db()
        .await
        .unwrap()
        .release_refresh_lease(id, second_until)
        .await
        .unwrap());
    assert_eq!(
        refresh::refresh_now(ctx, id).await.unwrap(),
        refresh::RefreshOutcome::Refreshed
    );
    world.agency.app.stop().await;
}

/// Every reason text Credence stored or sent about the credential: its
/// `invalid_reason`, the audit entries' details and the notifications.
async fn stored_reasons(world: &World) -> Vec<String> {
    let mut texts = vec![world.stored().await.invalid_reason.unwrap_or_default()];
    let entries = world.agency.app.audit_entries(&[]).await;
    texts.extend(entries.into_iter().map(|e| e.details));
    texts.extend(
        world
            .agency
            .outbox()
            .await
            .into_iter()
            .map(|(_, _, payload)| payload.to_string()),
    );
    texts
}

/// Longest reason a provider's error may make: the app's label and the
/// wording around the capped `error` and `error_description`.
const REASON_MAX: usize = 400;

/// None of `secrets` is in any reason Credence kept, nor in the answer the
/// requester reads, and the credential's reason is capped.
async fn assert_reasons_clean(world: &World, secrets: &[&str]) {
    let reason = world.stored().await.invalid_reason.unwrap_or_default();
    assert!(
        !reason.is_empty(),
        "the credential is invalid with a reason"
    );
    assert!(
        reason.chars().count() <= REASON_MAX,
        "the reason is {} characters: {reason}",
        reason.chars().count()
    );
    for text in stored_reasons(world).await {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "a secret of the connection is in a stored reason: {text}"
            );
        }
    }
    // `get_json` fails on any registered secret in the answer.
    let (status, body) = world
        .agency
        .app
        .get_json(
            &format!(
                "/api/v2/credential-requests/credentials/{}",
                world.credential
            ),
            &world.agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credential"]["state"], "invalid", "{body}");
    assert_no_secret("the logs", &captured_logs());
}

/// The token endpoint refuses a refresh with an `error_description` that
/// repeats the refresh token and the client secret (and goes on for pages):
/// the reason shown to the requester names the refusal, without either.
async fn a_refresh_refusal_that_echoes_the_tokens_is_stored_without_them(backend: Backend) {
    use credence::service::refresh::{self, RefreshOutcome};
    let (world, id) = authorized_oauth(backend).await;
    let connection = world.connection().await;
    let tokens = world.tokens(&connection).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    world
        .provider
        .echo_secrets_in_token_errors(Some(5000))
        .await;
    let outcome = refresh::refresh_now(&world.agency.app.context, id)
        .await
        .unwrap();
    let RefreshOutcome::Refused { reason } = outcome else {
        panic!("the refresh is refused: {outcome:?}");
    };
    assert!(reason.contains("invalid_grant"), "{reason}");
    assert!(!reason.contains(&refresh), "{reason}");
    assert!(!reason.contains(&world.provider.client_secret), "{reason}");
    assert_reasons_clean(&world, &[&refresh, &world.provider.client_secret]).await;
    world.agency.app.stop().await;
}

/// The token endpoint refuses the code exchange, repeating the code, the
/// PKCE verifier and the client secret: the credential is invalid with a
/// reason that holds none of them.
async fn a_code_exchange_refusal_that_echoes_the_code_is_stored_without_it(backend: Backend) {
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    let (status, body) = world
        .agency
        .post(
            &credential_path(&world.credential, "authorize"),
            &world.agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome = world
        .provider
        .consent(body["redirectUri"].as_str().unwrap(), "tom", true)
        .await;
    let code = outcome.code.clone().expect("a code");
    register_secret(&code);
    world
        .provider
        .echo_secrets_in_token_errors(Some(5000))
        .await;
    let response = tom.get(outcome.redirect.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let reason = world.stored().await.invalid_reason.unwrap_or_default();
    assert!(reason.contains("invalid_grant"), "{reason}");
    assert_reasons_clean(&world, &[&code, &world.provider.client_secret]).await;
    world.agency.app.stop().await;
}

/// The browser comes back to the callback with `error` and an
/// `error_description` of the consenting person's making: pages of text
/// with the client's secret in it. The reason stored is capped and holds no
/// secret of the flow.
async fn a_callback_error_description_is_stored_capped_and_without_secrets(backend: Backend) {
    let world = world(backend, true).await;
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    let (status, body) = world
        .agency
        .post(
            &credential_path(&world.credential, "authorize"),
            &world.agency.teammate_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let consent = reqwest::Url::parse(body["redirectUri"].as_str().unwrap()).unwrap();
    let state = consent
        .query_pairs()
        .find(|(name, _)| name == "state")
        .map(|(_, value)| value.into_owned())
        .expect("a state");
    let description = format!(
        "{} was refused {}",
        world.provider.client_secret,
        "y".repeat(5000)
    );
    let mut callback = reqwest::Url::parse(&world.agency.app.url("/oauth/callback")).unwrap();
    callback
        .query_pairs_mut()
        .append_pair("state", &state)
        .append_pair("error", "access_denied")
        .append_pair("error_description", &description);
    let response = tom.get(callback).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let reason = world.stored().await.invalid_reason.unwrap_or_default();
    assert!(reason.contains("access_denied"), "{reason}");
    assert_reasons_clean(&world, &[&world.provider.client_secret]).await;
    world.agency.app.stop().await;
}

on_both_backends!(
    delete_remote_racing_a_reauthorization_orphans_no_connection,
    request_deletion_racing_a_reauthorization_orphans_no_connection,
    a_held_reauthorization_destroys_the_connection_held_when_it_commits,
    a_reauthorization_request_tested_on_a_replaced_connection_is_refused,
    a_refresh_releases_only_its_own_refresh_lease,
    a_refresh_refusal_that_echoes_the_tokens_is_stored_without_them,
    a_code_exchange_refusal_that_echoes_the_code_is_stored_without_it,
    a_callback_error_description_is_stored_capped_and_without_secrets,
);

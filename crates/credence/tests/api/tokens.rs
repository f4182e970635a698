//! API tokens: accepted as `Token` or `Bearer`; missing or unknown → 401; lacking
//! a scope → 403; stored only as a hash; a deletion here stops the token at
//! once, one elsewhere once this instance's cache entry lapses.

use crate::on_both_backends;
use crate::support::{assert_error, spawn_app, spawn_app_with, wait_until};
use chrono::{DateTime, Utc};
use credence_store::Backend;
use reqwest::StatusCode;

async fn tokens_work_as_token_or_bearer_and_are_stored_hashed(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token(app.admin_id().await, "user:read").await;
    assert_eq!(
        token.len(),
        36,
        "Make clients send UUID-shaped tokens as `Token`"
    );
    for scheme in ["Token", "Bearer", "token", "bearer"] {
        let response = app
            .client
            .get(app.url("/api/v2/users/me"))
            .header("Authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "scheme {scheme}");
    }
    // The database holds a hash, never the value.
    let tokens = app.db().await.find_api_token(&token).await.unwrap();
    assert!(
        tokens.is_none(),
        "a token must not be findable by its plain value"
    );
    let dump = app.database_text().await;
    assert!(
        !dump.contains(&token),
        "the token value is stored in plain text"
    );
    app.stop().await;
}

async fn missing_unknown_and_malformed_credentials_are_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .get(app.url("/api/v2/users/me"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.json().await.unwrap();
    assert_error(status, &body, StatusCode::UNAUTHORIZED);

    for header in [
        "Token 7d1d5b0e-1111-4222-8333-944444444444",
        "Bearer nope",
        "Basic YWRtaW46YWRtaW4=",
        "Token",
        "Token    ",
        "\u{1}",
    ] {
        let request = app.client.get(app.url("/api/v2/organizations"));
        let response = match reqwest::header::HeaderValue::from_str(header) {
            Ok(value) => request.header("Authorization", value).send().await.unwrap(),
            Err(_) => request
                .header(
                    "Authorization",
                    reqwest::header::HeaderValue::from_bytes(b"Token \xff\xfe").unwrap(),
                )
                .send()
                .await
                .unwrap(),
        };
        let status = response.status();
        let body = response.json().await.unwrap();
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
    }
    app.stop().await;
}

async fn a_token_without_the_scope_is_refused_with_403(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token(app.admin_id().await, "connections:read").await;
    for path in [
        "/api/v2/users/me",
        "/api/v2/organizations",
        "/api/v2/teams?organizationId=1",
        "/api/v2/users?teamId=1",
    ] {
        let (status, body) = app.get_json(path, &token).await;
        assert_error(status, &body, StatusCode::FORBIDDEN);
        assert!(
            body["detail"].as_str().unwrap().contains("lacks the scope"),
            "{path}: {body}"
        );
    }
    app.stop().await;
}

async fn deleting_a_token_stops_it_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_id().await;
    let token = app.token(admin, "user:read").await;
    let (status, _) = app.get_json("/api/v2/users/me", &token).await;
    assert_eq!(status, StatusCode::OK, "the token is now cached as valid");
    let listed = app.db().await.list_api_tokens(admin).await.unwrap();
    assert_eq!(listed.len(), 1);
    let (status, _) = app
        .delete(
            &format!("/api/v2/users/me/api-tokens/{}", listed[0].id),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.get_json("/api/v2/users/me", &token).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// Deleted in the database behind this instance's back — as another
/// instance does — a token keeps working here only until its cache entry
/// lapses (`auth::TOKEN_CACHE_TTL`), then is refused.
async fn a_token_deleted_elsewhere_stops_once_its_cache_entry_lapses(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_id().await;
    let token = app.token(admin, "user:read").await;
    let (status, _) = app.get_json("/api/v2/users/me", &token).await;
    assert_eq!(status, StatusCode::OK);
    let mut db = app.db().await;
    let listed = db.list_api_tokens(admin).await.unwrap();
    db.delete_api_token(admin, listed[0].id).await.unwrap();
    drop(db);
    let (status, _) = app.get_json("/api/v2/users/me", &token).await;
    assert_eq!(status, StatusCode::OK, "still believed from the cache");
    wait_until("the deleted token is refused", || async {
        app.get_json("/api/v2/users/me", &token).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    app.stop().await;
}

/// The last use of a token.
async fn last_used(
    store: &credence_store::Store,
    user: credence_domain::UserId,
) -> Option<DateTime<Utc>> {
    let listed = store
        .db()
        .await
        .unwrap()
        .list_api_tokens(user)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    listed[0].last_used_at
}

/// A call notes its token's use in memory only: with the flush an hour away,
/// the row is unchanged after calls; the stopping server writes it.
async fn a_tokens_use_is_written_by_a_flush_not_by_the_call(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.token_use_flush_every = std::time::Duration::from_secs(3600);
    })
    .await;
    let admin = app.admin_id().await;
    let token = app.token(admin, "user:read").await;
    let before = credence_store::now();
    for _ in 0..3 {
        let (status, _) = app.get_json("/api/v2/users/me", &token).await;
        assert_eq!(status, StatusCode::OK);
    }
    let after = credence_store::now();
    assert_eq!(
        last_used(&app.store, admin).await,
        None,
        "a call wrote its token's use"
    );
    let url = app.database_url.clone();
    let _data = app.stop_keeping_files().await;
    let store = credence_store::Store::connect(&url, false).await.unwrap();
    let at = last_used(&store, admin)
        .await
        .expect("the stopping server writes the uses it noted");
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
    store.close().await;
}

/// Written every `token_use_flush_every`: the latest use of a token shows
/// after the next flush, and a later use moves it on.
async fn token_uses_are_written_in_periodic_batches(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.token_use_flush_every = std::time::Duration::from_millis(100);
    })
    .await;
    let admin = app.admin_id().await;
    let token = app.token(admin, "user:read").await;
    let mut previous = None;
    for round in 0..2 {
        let before = credence_store::now();
        let (status, _) = app.get_json("/api/v2/users/me", &token).await;
        assert_eq!(status, StatusCode::OK);
        wait_until(&format!("use {round} is written"), || async {
            last_used(&app.store, admin)
                .await
                .is_some_and(|at| at >= before)
        })
        .await;
        let at = last_used(&app.store, admin).await;
        assert!(at > previous, "round {round}: {at:?} after {previous:?}");
        previous = at;
    }
    app.stop().await;
}

on_both_backends!(
    a_tokens_use_is_written_by_a_flush_not_by_the_call,
    token_uses_are_written_in_periodic_batches,
    tokens_work_as_token_or_bearer_and_are_stored_hashed,
    missing_unknown_and_malformed_credentials_are_401,
    a_token_without_the_scope_is_refused_with_403,
    deleting_a_token_stops_it_at_once,
    a_token_deleted_elsewhere_stops_once_its_cache_entry_lapses,
);

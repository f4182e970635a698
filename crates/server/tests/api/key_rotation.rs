//! Key rotation and owner binding of sealed values (SPEC §7), through the real
//! server, the real `credence` binary and both databases: `keys rotate` moves
//! every sealed column of every table to the new key version, a running server
//! seals under it at once, `keys retire` waits until nothing uses a version,
//! and a sealed value moved to another owner record (a connection of another
//! team, another outbox row) does not open. Values sealed before the owner
//! binding are re-sealed when an instance starts.

use crate::fixtures::Agency;
use crate::helpers::{credence_bin, register_secret, TestApp};
use crate::on_both_backends;
use credence::service::{audit, secrets};
use credence_store::Backend;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

const OAUTH_APP: &str = "rotation-oauth";
const WRITE: &str = "connections:read,connections:write";

/// An OAuth app whose endpoints nobody answers: starting a consent flow only
/// stores the flow (PKCE verifier and own client sealed), which is all we need.
fn oauth_app() -> String {
    format!(
        r#"key = "{OAUTH_APP}"
label = "Rotation OAuth"
allow_private_hosts = true

[[versions]]
version = 1
base_url = "http://127.0.0.1:9"

[versions.auth]
kind = "oauth2"
authorize_url = "http://127.0.0.1:9/authorize"
token_url = "http://127.0.0.1:9/token"

[[versions.modules]]
key = "searchContacts"
label = "Search contacts"
kind = "search"
access = "read"
scopes = ["contacts.read"]
operations = ["GET /v1/contacts"]
"#
    )
}

async fn start(backend: Backend) -> Agency {
    Agency::start_with(backend, &[(OAUTH_APP, oauth_app())], |config| {
        config.oauth_refresh_every = None;
    })
    .await
}

/// Runs the `credence` binary against the app's database and key file.
async fn operator(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let mut command = std::process::Command::new(credence_bin());
    command
        .env_clear()
        .env("DATABASE_URL", &app.database_url)
        .env("CREDENCE_DATA_DIR", app.dir.path())
        .env("CREDENCE_KEY_FILE", app.dir.path().join("credence.key"))
        .current_dir(app.dir.path())
        .args(args);
    let out = tokio::task::spawn_blocking(move || command.output().expect("credence runs"))
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every text of `sql` (one column), read with a connection of its own.
async fn texts(app: &TestApp, sql: &str) -> Vec<Option<String>> {
    use sqlx::Connection;
    match app.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
                .await
                .unwrap();
            sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database_url)
                .await
                .unwrap();
            sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
        }
    }
}

async fn execute(app: &TestApp, sql: &str) {
    use sqlx::Connection;
    match app.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
                .await
                .unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database_url)
                .await
                .unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
}

/// Every sealed column of the schema (grep the migrations for `sealed`).
const SEALED_COLUMNS: [(&str, &str); 4] = [
    ("secrets", "sealed"),
    ("outbox", "payload"),
    ("oauth_flows", "verifier_sealed"),
    ("oauth_flows", "client_sealed"),
];

/// The key version of every sealed value, per `table.column`.
async fn key_versions(app: &TestApp) -> Vec<(String, Vec<u32>)> {
    let mut all = Vec::new();
    for (table, column) in SEALED_COLUMNS {
        let values = texts(
            app,
            &format!("SELECT {column} FROM {table} WHERE {column} IS NOT NULL"),
        )
        .await;
        let versions = values
            .into_iter()
            .flatten()
            .map(|sealed| {
                let field = sealed.split('.').nth(1).unwrap_or_default().to_string();
                field
                    .strip_prefix('k')
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| {
                        panic!("{table}.{column} holds a value without a key version")
                    })
            })
            .collect();
        all.push((format!("{table}.{column}"), versions));
    }
    all
}

async fn assert_all_on(app: &TestApp, version: u32) {
    for (column, versions) in key_versions(app).await {
        assert!(!versions.is_empty(), "{column} holds no value to check");
        assert!(
            versions.iter().all(|v| *v == version),
            "{column} is not all on key version {version}: {versions:?}"
        );
    }
}

/// An API-key connection of `team`, added by the person with `token`; its id.
async fn api_key_connection(agency: &Agency, team: i64, token: &str, key: &str) -> i64 {
    agency.upstream.accept(key);
    let (status, body) = agency
        .post(
            &format!("/api/v2/connections?teamId={team}"),
            token,
            Some(json!({ "accountType": "acme-crm", "apiKey": key })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["connection"]["id"].as_i64().unwrap()
}

/// Something sealed in every table: a connection's secret, a notification
/// (a request to the teammate), an OAuth flow with a verifier and an own client.
async fn seal_everywhere(agency: &Agency) -> (i64, String) {
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let connection = api_key_connection(agency, agency.app.team.0, &token, "rotate-key-1a2b").await;
    agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    register_secret("rotation-own-client-secret-9f8e");
    let (status, body) = agency
        .post(
            &format!("/api/v2/connections?teamId={}", agency.app.team),
            &token,
            Some(json!({ "accountType": OAUTH_APP, "clientId": "own-client",
                         "clientSecret": "rotation-own-client-secret-9f8e" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    (connection, token)
}

async fn connection_verifies(agency: &Agency, id: i64, token: &str) -> bool {
    let (status, body) = agency
        .post(&format!("/api/v2/connections/{id}/test"), token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["verified"] == true
}

/// Issue: `keys rotate` re-wrapped the `secrets` table only; outbox payloads
/// and OAuth flow rows stayed on the old key.
async fn keys_rotate_moves_every_sealed_column_of_every_table_to_the_new_version(backend: Backend) {
    let agency = start(backend).await;
    let (connection, token) = seal_everywhere(&agency).await;
    assert_all_on(&agency.app, 1).await;

    let (ok, stdout, stderr) = operator(&agency.app, &["keys", "rotate"]).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("key version 2 added"), "{stdout}");
    for (table, column) in SEALED_COLUMNS {
        assert!(
            stdout.contains(&format!("{table}.{column}: re-wrapped ")),
            "no line for {table}.{column}: {stdout}"
        );
    }
    assert_all_on(&agency.app, 2).await;

    // Everything still opens: the connection's secret, in the running server
    // and in a fresh vault; the notification; the flow is left to expire.
    assert!(connection_verifies(&agency, connection, &token).await);
    let told = agency.outbox().await;
    assert!(
        told.iter().any(|(_, to, _)| *to == agency.teammate.email),
        "{told:?}"
    );
    agency.app.stop().await;
}

/// Issue: a running server kept sealing with its in-memory old key until it
/// happened to open a value sealed under the new one.
async fn a_running_server_seals_under_the_rotated_version_without_opening_a_newer_value_first(
    backend: Backend,
) {
    let agency = start(backend).await;
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let first =
        api_key_connection(&agency, agency.app.team.0, &token, "before-rotation-5c6d").await;
    let (ok, stdout, stderr) = operator(&agency.app, &["keys", "rotate"]).await;
    assert!(ok, "{stdout}{stderr}");

    // Nothing has been opened since: the next values are sealed under 2.
    let second =
        api_key_connection(&agency, agency.app.team.0, &token, "after-rotation-7e8f").await;
    agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let versions = key_versions(&agency.app).await;
    assert_eq!(
        versions[0],
        ("secrets.sealed".to_string(), vec![2, 2]),
        "{versions:?}"
    );
    assert_eq!(versions[1].0, "outbox.payload");
    assert!(
        !versions[1].1.is_empty() && versions[1].1.iter().all(|v| *v == 2),
        "{versions:?}"
    );
    assert!(connection_verifies(&agency, first, &token).await);
    assert!(connection_verifies(&agency, second, &token).await);
    agency.app.stop().await;
}

/// Issue: there was no way to drop an old key version, and nothing said
/// whether a version was still in use.
async fn keys_retire_refuses_while_a_value_uses_the_version_and_removes_it_after_rotation(
    backend: Backend,
) {
    let agency = start(backend).await;
    let (connection, token) = seal_everywhere(&agency).await;
    let key_file = agency.app.dir.path().join("credence.key");

    let (ok, _, stderr) = operator(&agency.app, &["keys", "retire", "--version", "1"]).await;
    assert!(!ok);
    assert!(stderr.contains("key version 1 is the newest"), "{stderr}");

    // A version added without re-wrapping: version 1 is still used everywhere.
    assert_eq!(credence_vault::rotate_key_file(&key_file).unwrap(), 2);
    let (ok, _, stderr) = operator(&agency.app, &["keys", "retire", "--version", "1"]).await;
    assert!(!ok);
    for used in [
        "secrets.sealed: 1",
        "outbox.payload: ",
        "oauth_flows.verifier_sealed: 1",
        "oauth_flows.client_sealed: 1",
    ] {
        assert!(stderr.contains(used), "{used} not named: {stderr}");
    }
    let (ok, _, stderr) = operator(&agency.app, &["keys", "retire", "--version", "9"]).await;
    assert!(!ok);
    assert!(stderr.contains("no key version 9"), "{stderr}");
    assert_eq!(key_lines(&key_file), vec![1, 2], "nothing was removed");

    let (ok, stdout, stderr) = operator(&agency.app, &["keys", "rotate"]).await;
    assert!(ok, "{stdout}{stderr}");
    assert_all_on(&agency.app, 3).await;
    for version in ["1", "2"] {
        let (ok, stdout, stderr) =
            operator(&agency.app, &["keys", "retire", "--version", version]).await;
        assert!(ok, "{stdout}{stderr}");
        assert!(
            stdout.contains(&format!("key version {version} removed")),
            "{stdout}"
        );
    }
    assert_eq!(key_lines(&key_file), vec![3]);
    let (ok, _, stderr) = operator(&agency.app, &["keys", "retire", "--version", "3"]).await;
    assert!(!ok, "the newest version is never retired");
    assert!(stderr.contains("newest"), "{stderr}");

    // The running server follows: it opens and seals with version 3 alone.
    assert!(connection_verifies(&agency, connection, &token).await);
    api_key_connection(&agency, agency.app.team.0, &token, "after-retire-3a4b").await;
    assert_all_on(&agency.app, 3).await;
    agency.app.stop().await;
}

/// The versions in a key file, in order.
fn key_lines(path: &std::path::Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// Issue: a secret was bound to `secrets.id`, not to its owner: pointing
/// another team's connection at it let that team use it.
async fn a_secret_moved_to_another_teams_connection_does_not_open_and_the_api_answers_an_error(
    backend: Backend,
) {
    let agency = start(backend).await;
    let ours = agency.app.token(agency.requester.id, WRITE).await;
    let theirs = agency.app.token(agency.outsider.id, WRITE).await;
    let our_connection =
        api_key_connection(&agency, agency.app.team.0, &ours, "our-key-0a1b2c").await;
    let their_connection =
        api_key_connection(&agency, agency.other_team.0, &theirs, "their-key-3d4e5f").await;
    let stored = |id: i64| {
        let store = agency.app.store.clone();
        async move {
            store
                .db()
                .await
                .unwrap()
                .get_connection(id)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let ours_row = stored(our_connection).await;
    execute(
        &agency.app,
        &format!(
            "UPDATE connections SET secret_id = '{}' WHERE id = {their_connection}",
            ours_row.secret_id.as_deref().unwrap()
        ),
    )
    .await;
    let moved = stored(their_connection).await;
    assert!(
        secrets::open_connection(&agency.app.store, &agency.app.vault(), &moved)
            .await
            .is_err(),
        "the other team's connection opened our secret"
    );
    let (status, body) = agency
        .post(
            &format!("/api/v2/connections/{their_connection}/test"),
            &theirs,
            None,
        )
        .await;
    assert!(
        status.is_server_error() || status.is_client_error(),
        "testing with a moved secret answered {status}: {body}"
    );
    assert_ne!(body["verified"], true, "{body}");
    // Ours is untouched; a rotation re-wraps it in its owner's name, names the
    // connection that points at a secret it does not own, and does not claim
    // success while their former secret (now nobody's) stays on version 1.
    assert!(connection_verifies(&agency, our_connection, &ours).await);
    let (ok, stdout, stderr) = operator(&agency.app, &["keys", "rotate"]).await;
    assert!(!ok, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("through connection {their_connection}")),
        "{stderr}"
    );
    assert!(
        stdout.contains("secrets.sealed: re-wrapped 1,")
            && stdout.contains("left on an old version: 1"),
        "{stdout}"
    );
    let our_secret = agency
        .app
        .store
        .db()
        .await
        .unwrap()
        .get_secret(ours_row.secret_id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(our_secret.sealed.starts_with("cv1.k2."));
    // Deleting theirs does not destroy ours.
    let (status, body) = agency
        .delete(
            &format!("/api/v2/connections/{their_connection}?confirmed=true"),
            &theirs,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    assert!(connection_verifies(&agency, our_connection, &ours).await);
    agency.app.stop().await;
}

/// Issue: the outbox AAD named the kind and recipient only, so a payload
/// copied onto another row for the same recipient still opened.
async fn an_outbox_payload_copied_to_another_row_does_not_open(backend: Backend) {
    let agency = start(backend).await;
    agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    agency
        .create_request(agency.teammate.id, &["beta-desk"])
        .await;
    let messages = agency
        .app
        .store
        .db()
        .await
        .unwrap()
        .list_unsent_outbox()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.recipient_email == agency.teammate.email)
        .collect::<Vec<_>>();
    let [first, second] = &messages[..] else {
        panic!("expected two notifications: {messages:?}")
    };
    assert_eq!(
        (&first.kind, &first.recipient_email),
        (&second.kind, &second.recipient_email)
    );
    let vault = agency.app.vault();
    audit::open_outbox(&vault, second).expect("the second payload opens in its own row");
    execute(
        &agency.app,
        &format!(
            "UPDATE outbox SET payload = (SELECT payload FROM outbox WHERE id = {}) WHERE id = {}",
            first.id, second.id
        ),
    )
    .await;
    let copied = agency
        .app
        .store
        .db()
        .await
        .unwrap()
        .list_unsent_outbox()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == second.id)
        .unwrap();
    assert_eq!(copied.payload, first.payload);
    assert!(
        audit::open_outbox(&vault, &copied).is_err(),
        "a payload copied to another row opened"
    );
    agency.app.stop().await;
}

/// Values sealed before the owner binding (scheme 1: a secret bound to its
/// row id, a payload to its kind and recipient) keep working: the next start
/// re-seals them under the owner binding.
async fn values_sealed_before_the_owner_binding_are_resealed_at_start_and_keep_opening(
    backend: Backend,
) {
    let agency = start(backend).await;
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let id = api_key_connection(&agency, agency.app.team.0, &token, "legacy-key-6b7c8d").await;
    agency
        .create_request(agency.teammate.id, &["acme-crm"])
        .await;
    let vault = agency.app.vault();
    let connection = agency
        .app
        .store
        .db()
        .await
        .unwrap()
        .get_connection(id)
        .await
        .unwrap()
        .unwrap();
    let secret = connection.secret_id.clone().unwrap();
    let plain = secrets::open_connection(&agency.app.store, &vault, &connection)
        .await
        .unwrap();
    // What an older Credence wrote.
    let legacy = vault
        .seal_str(&plain, &format!("secret:{secret}:connection"))
        .unwrap();
    execute(
        &agency.app,
        &format!(
            "UPDATE secrets SET sealed = '{}', aad_scheme = 1 WHERE id = '{secret}'",
            legacy.as_str()
        ),
    )
    .await;
    let message = agency
        .app
        .store
        .db()
        .await
        .unwrap()
        .list_unsent_outbox()
        .await
        .unwrap()
        .remove(0);
    let payload: Value = audit::open_outbox(&vault, &message).unwrap();
    let legacy_payload = vault
        .seal(
            payload.to_string().as_bytes(),
            &format!(
                "outbox:{}:{}",
                message.kind,
                message.recipient_email.to_lowercase()
            ),
        )
        .unwrap();
    execute(
        &agency.app,
        &format!(
            "UPDATE outbox SET payload = '{}', aad_scheme = 1 WHERE id = {}",
            legacy_payload.as_str(),
            message.id
        ),
    )
    .await;
    assert!(
        secrets::open_connection(&agency.app.store, &vault, &connection)
            .await
            .is_err(),
        "the legacy binding is not accepted by the current code"
    );

    // A second instance starts on the same database and key file.
    let again = credence::Application::build(agency.app.config.clone())
        .await
        .expect("a second instance starts");
    drop(again);
    let schemes = texts(
        &agency.app,
        "SELECT CAST(aad_scheme AS TEXT) FROM secrets UNION ALL SELECT CAST(aad_scheme AS TEXT) FROM outbox",
    )
    .await;
    assert!(
        schemes.iter().all(|s| s.as_deref() == Some("2")),
        "{schemes:?}"
    );
    let opened = secrets::open_connection(&agency.app.store, &vault, &connection)
        .await
        .unwrap();
    assert_eq!(opened.expose_secret(), plain.expose_secret());
    assert!(connection_verifies(&agency, id, &token).await);
    assert_eq!(agency.outbox().await[0].2, payload);
    agency.app.stop().await;
}

on_both_backends!(
    keys_rotate_moves_every_sealed_column_of_every_table_to_the_new_version,
    a_running_server_seals_under_the_rotated_version_without_opening_a_newer_value_first,
    keys_retire_refuses_while_a_value_uses_the_version_and_removes_it_after_rotation,
    a_secret_moved_to_another_teams_connection_does_not_open_and_the_api_answers_an_error,
    an_outbox_payload_copied_to_another_row_does_not_open,
    values_sealed_before_the_owner_binding_are_resealed_at_start_and_keep_opening,
);

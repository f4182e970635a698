//! Key rotation and owner binding of sealed values (SPEC §7), through the real
//! server, the real `credence` binary and both databases: `keys rotate` moves
//! every sealed column of every table to the new key version, a running server
//! seals under it at once (each renewal pass towards the newest version),
//! `keys retire` waits until nothing uses a version and no running instance has
//! an older copy of the key file,
//! and a sealed value moved to another owner record (a connection of another
//! team, another outbox row) does not open. Values sealed before the owner
//! binding are re-sealed when an instance starts. Two rotations while clients
//! keep creating, reading and authorizing requests and calling the broker
//! fail none of their calls.

use crate::on_both_backends;
use crate::support::Agency;
use crate::support::{
    register_secret, signed_in, wait_until, world_with, OidcOptions, Rotation, TestApp,
};
use credence::service::{audit, secrets};
use credence_domain::{CredentialId, CredentialState};
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
        // `keys retire` waits for the running server's next heartbeat.
        config.heartbeat_every = std::time::Duration::from_millis(100);
    })
    .await
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
        let values = app
            .sql()
            .await
            .column::<Option<String>>(&format!(
                "SELECT {column} FROM {table} WHERE {column} IS NOT NULL"
            ))
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

    let (ok, stdout, stderr) = agency.app.operator(&["keys", "rotate"]).await;
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
    let (ok, stdout, stderr) = agency.app.operator(&["keys", "rotate"]).await;
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

    let (ok, _, stderr) = agency
        .app
        .operator(&["keys", "retire", "--version", "1"])
        .await;
    assert!(!ok);
    assert!(stderr.contains("key version 1 is the newest"), "{stderr}");

    // A version added without re-wrapping: version 1 is still used everywhere.
    assert_eq!(credence_vault::rotate_key_file(&key_file).unwrap(), 2);
    the_server_reports_the_newest_key(&agency.app).await;
    let (ok, _, stderr) = agency
        .app
        .operator(&["keys", "retire", "--version", "1"])
        .await;
    assert!(!ok);
    for used in [
        "secrets.sealed: 1",
        "outbox.payload: ",
        "oauth_flows.verifier_sealed: 1",
        "oauth_flows.client_sealed: 1",
    ] {
        assert!(stderr.contains(used), "{used} not named: {stderr}");
    }
    let (ok, _, stderr) = agency
        .app
        .operator(&["keys", "retire", "--version", "9"])
        .await;
    assert!(!ok);
    assert!(stderr.contains("no key version 9"), "{stderr}");
    assert_eq!(key_lines(&key_file), vec![1, 2], "nothing was removed");

    let (ok, stdout, stderr) = agency.app.operator(&["keys", "rotate"]).await;
    assert!(ok, "{stdout}{stderr}");
    assert_all_on(&agency.app, 3).await;
    the_server_reports_the_newest_key(&agency.app).await;
    for version in ["1", "2"] {
        let (ok, stdout, stderr) = agency
            .app
            .operator(&["keys", "retire", "--version", version])
            .await;
        assert!(ok, "{stdout}{stderr}");
        assert!(
            stdout.contains(&format!("key version {version} removed")),
            "{stdout}"
        );
    }
    assert_eq!(key_lines(&key_file), vec![3]);
    let (ok, _, stderr) = agency
        .app
        .operator(&["keys", "retire", "--version", "3"])
        .await;
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
    let our_secret = ours_row.secret_id.clone().unwrap();
    let their_former_secret = stored(their_connection).await.secret_id.unwrap();
    agency
        .app
        .sql()
        .await
        .execute(&format!(
            "UPDATE connections SET secret_id = '{our_secret}' WHERE id = {their_connection}"
        ))
        .await;
    let moved = stored(their_connection).await;
    assert!(
        secrets::open_connection(&agency.app.store, &agency.app.vault(), &moved)
            .await
            .is_err(),
        "the other team's connection opened our secret"
    );
    // A value that does not open is the server's problem, not the caller's:
    // an opaque 500 whose body names nothing of ours (no key, no secret or
    // connection id, no team) and nothing of the failure.
    let (status, body) = agency
        .post(
            &format!("/api/v2/connections/{their_connection}/test"),
            &theirs,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(
        body,
        json!({
            "message": "Internal error",
            "code": "internal",
            "detail": "something went wrong on our side; it has been logged",
            "suberrors": [],
        })
    );
    // Ours is untouched; a rotation re-wraps it in its owner's name, names the
    // connection that points at a secret it does not own and their former
    // secret (now nobody's, so it cannot be opened), and does not claim
    // success while that one stays on version 1.
    assert!(connection_verifies(&agency, our_connection, &ours).await);
    let (ok, stdout, stderr) = agency.app.operator(&["keys", "rotate"]).await;
    assert!(!ok, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("through connection {their_connection}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "secrets.sealed row {their_former_secret}: no connection points at it"
        )),
        "{stderr}"
    );
    assert!(
        stdout.contains("secrets.sealed: re-wrapped 1,")
            && stdout.contains("left on an old version: 1"),
        "{stdout}"
    );
    let sealed = agency
        .app
        .db()
        .await
        .get_secret(&our_secret)
        .await
        .unwrap()
        .unwrap()
        .sealed;
    assert!(sealed.starts_with("cv1.k2."));

    // Issue: deleting the connection a secret belongs to kept the secret while
    // the moved pointer pointed at it: a secret nobody can open, failing every
    // later rotation and holding its key version in use for good. Deleting a
    // connection destroys its secret, whoever else points at it.
    let (status, body) = agency
        .delete(
            &format!("/api/v2/connections/{our_connection}?confirmed=true"),
            &ours,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let db_secret = agency.app.db().await.get_secret(&our_secret).await.unwrap();
    assert!(
        db_secret.is_none(),
        "the deleted connection's secret is kept"
    );
    assert_eq!(stored(their_connection).await.secret_id, None);
    let (ok, stdout, stderr) = agency.app.operator(&["keys", "rotate"]).await;
    assert!(
        !ok,
        "their former secret is still nobody's: {stdout}{stderr}"
    );
    assert!(!stderr.contains("through connection"), "{stderr}");
    assert!(stdout.contains("left on an old version: 1"), "{stdout}");
    the_server_reports_the_newest_key(&agency.app).await;
    // Version 2 is free again; version 1 stays held by their former secret,
    // which the operator has to look into.
    let (ok, stdout, stderr) = agency
        .app
        .operator(&["keys", "retire", "--version", "2"])
        .await;
    assert!(ok, "{stdout}{stderr}");
    let (ok, _, stderr) = agency
        .app
        .operator(&["keys", "retire", "--version", "1"])
        .await;
    assert!(!ok);
    assert!(stderr.contains("secrets.sealed: 1"), "{stderr}");
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
        .db()
        .await
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
    agency
        .app
        .sql()
        .await
        .execute(&format!(
            "UPDATE outbox SET payload = (SELECT payload FROM outbox WHERE id = {}) WHERE id = {}",
            first.id, second.id
        ))
        .await;
    let copied = agency
        .app
        .db()
        .await
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
        .db()
        .await
        .get_connection(id)
        .await
        .unwrap()
        .unwrap();
    // What an older Credence wrote.
    let (_, plain, _) = seal_as_an_older_credence(&agency.app, &vault, &connection).await;
    let message = agency
        .app
        .db()
        .await
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
    agency
        .app
        .sql()
        .await
        .execute(&format!(
            "UPDATE outbox SET payload = '{}', aad_scheme = 1 WHERE id = {}",
            legacy_payload.as_str(),
            message.id
        ))
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
    let schemes = agency.app.sql().await.column::<Option<String>>("SELECT CAST(aad_scheme AS TEXT) FROM secrets UNION ALL SELECT CAST(aad_scheme AS TEXT) FROM outbox",
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

/// The stored row of connection `id`.
async fn connection_row(app: &TestApp, id: i64) -> credence_store::Connection {
    app.stored_connection(id).await.unwrap()
}

/// The sealed text of secret `id`.
async fn sealed_secret(app: &TestApp, id: &str) -> String {
    app.db().await.get_secret(id).await.unwrap().unwrap().sealed
}

/// Drives `renewer` from its next page to the end.
async fn renew_to_the_end(
    mut renewer: secrets::ColumnRenewer<'_>,
) -> (secrets::ColumnRenewal, Vec<String>) {
    while let Some(page) = renewer.next_page().await.unwrap() {
        renewer.renew_page(page).await.unwrap();
    }
    renewer.finish()
}

/// Issue: `renew_all` read the current version once, from memory: a vault
/// that had not looked at the key file since a rotation (as when the rotation
/// comes during the pass) rewrote the values already on the new version for
/// ten passes, left the old ones where they were and then warned of a stale
/// instance that does not exist.
async fn a_renewal_by_a_vault_loaded_before_a_rotation_moves_every_value_to_the_new_version_without_a_false_warning(
    backend: Backend,
) {
    let agency = start(backend).await;
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let before = api_key_connection(&agency, agency.app.team.0, &token, "before-5e6f7a").await;
    let loaded_before = agency.app.vault();
    let key_file = agency.app.dir.path().join("credence.key");
    assert_eq!(credence_vault::rotate_key_file(&key_file).unwrap(), 2);
    // The running server seals under 2 at once.
    let after = api_key_connection(&agency, agency.app.team.0, &token, "after-8b9c0d").await;

    let renewal = secrets::renew_all(&agency.app.store, &loaded_before)
        .await
        .unwrap();
    assert_eq!(renewal.problems, Vec::<String>::new());
    assert_eq!(renewal.version, 2);
    let (column, done) = renewal.columns[0];
    assert_eq!(column, credence_store::SealedColumn::Secrets);
    assert_eq!((done.rewrapped, done.left), (1, 0), "{done:?}");
    assert_eq!(key_versions(&agency.app).await[0].1, vec![2, 2]);
    assert!(connection_verifies(&agency, before, &token).await);
    assert!(connection_verifies(&agency, after, &token).await);
    agency.app.stop().await;
}

/// Issue: a pass went on towards the version it started with: after a
/// rotation during the pass, the values it had already moved were counted as
/// left on an old version (and the rotation failed), or rewritten pass after
/// pass. Each pass now works towards the newest version.
async fn a_rotation_during_a_renewal_pass_only_adds_a_pass_and_ends_with_every_value_on_the_newest_version(
    backend: Backend,
) {
    let agency = start(backend).await;
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let mut ids = Vec::new();
    for key in ["during-1a1a1a", "during-2b2b2b", "during-3c3c3c"] {
        ids.push(api_key_connection(&agency, agency.app.team.0, &token, key).await);
    }
    let key_file = agency.app.dir.path().join("credence.key");
    assert_eq!(credence_vault::rotate_key_file(&key_file).unwrap(), 2);
    let vault = agency.app.vault();
    let mut renewer = secrets::ColumnRenewer::start(
        &agency.app.store,
        &vault,
        credence_store::SealedColumn::Secrets,
        1,
    )
    .await
    .unwrap();
    assert_eq!(renewer.version(), 2);
    let page = renewer
        .next_page()
        .await
        .unwrap()
        .expect("a secret to renew");
    renewer.renew_page(page).await.unwrap();
    assert_eq!(credence_vault::rotate_key_file(&key_file).unwrap(), 3);

    let (done, problems) = renew_to_the_end(renewer).await;
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(done.left, 0, "{done:?}");
    // The first one twice (to 2, then to 3), the others once, straight to 3.
    assert_eq!(done.rewrapped, 4, "{done:?}");
    assert_eq!(key_versions(&agency.app).await[0].1, vec![3, 3, 3]);
    for id in ids {
        assert!(connection_verifies(&agency, id, &token).await);
    }
    agency.app.stop().await;
}

/// A value rewritten between being read by a renewal pass and being written
/// back (here by an instance with a stale copy of the key file, sealing under
/// the old version) is not overwritten with the text read: the guarded write
/// loses, the value is counted as changed meanwhile and read again by a
/// further pass, which moves the new value to the new version.
async fn a_value_rewritten_between_read_and_renewal_is_read_again_and_keeps_its_new_value(
    backend: Backend,
) {
    let agency = start(backend).await;
    let token = agency.app.token(agency.requester.id, WRITE).await;
    let id = api_key_connection(&agency, agency.app.team.0, &token, "first-value-4d5e6f").await;
    let key_file = agency.app.dir.path().join("credence.key");
    let stale_file = agency.app.dir.path().join("stale-copy.key");
    std::fs::copy(&key_file, &stale_file).unwrap();
    let stale = credence_vault::Vault::open_or_create(&stale_file).unwrap();
    assert_eq!(credence_vault::rotate_key_file(&key_file).unwrap(), 2);
    let vault = agency.app.vault();
    let connection = connection_row(&agency.app, id).await;
    let secret = connection.secret_id.clone().unwrap();

    let mut renewer = secrets::ColumnRenewer::start(
        &agency.app.store,
        &vault,
        credence_store::SealedColumn::Secrets,
        1,
    )
    .await
    .unwrap();
    let page = renewer
        .next_page()
        .await
        .unwrap()
        .expect("the secret to renew");
    assert_eq!(page[0].row_id, secret);

    // Meanwhile the account's key is replaced, sealed under version 1.
    let old_plain = secrets::open_connection(&agency.app.store, &vault, &connection)
        .await
        .unwrap();
    let new_plain = old_plain
        .expose_secret()
        .replace("first-value-4d5e6f", "second-value-7a8b9c");
    assert_ne!(new_plain, old_plain.expose_secret());
    agency.upstream.accept("second-value-7a8b9c");
    let rewritten = stale
        .seal(
            new_plain.as_bytes(),
            &secrets::connection_context(id, connection.team_id, &secret),
        )
        .unwrap();
    assert!(rewritten.as_str().starts_with("cv1.k1."));
    agency
        .app
        .db()
        .await
        .replace_secret(&secret, rewritten.as_str())
        .await
        .unwrap();

    renewer.renew_page(page).await.unwrap();
    let (done, problems) = renew_to_the_end(renewer).await;
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(
        (done.changed_meanwhile, done.rewrapped, done.left),
        (1, 1, 0),
        "{done:?}"
    );
    assert!(sealed_secret(&agency.app, &secret)
        .await
        .starts_with("cv1.k2."));
    let opened = secrets::open_connection(&agency.app.store, &vault, &connection)
        .await
        .unwrap();
    assert_eq!(opened.expose_secret(), new_plain);
    assert!(connection_verifies(&agency, id, &token).await);
    agency.app.stop().await;
}

/// Issue: the re-seal of a secret sealed before the owner binding trusted
/// whichever connection pointed at it first; with a pointer moved before the
/// upgrade, that could be another team's connection, which then owned it.
/// A legacy secret several connections point at is re-sealed for none, and
/// the report names it and the connections (never its value).
async fn a_legacy_secret_two_connections_point_at_is_resealed_for_neither_and_reported(
    backend: Backend,
) {
    let agency = start(backend).await;
    let ours = agency.app.token(agency.requester.id, WRITE).await;
    let theirs = agency.app.token(agency.outsider.id, WRITE).await;
    let our_connection =
        api_key_connection(&agency, agency.app.team.0, &ours, "legacy-ours-1c2d3e").await;
    let their_connection = api_key_connection(
        &agency,
        agency.other_team.0,
        &theirs,
        "legacy-theirs-4f5a6b",
    )
    .await;
    let vault = agency.app.vault();
    let connection = connection_row(&agency.app, our_connection).await;
    // What an older Credence wrote, with their pointer moved to our secret.
    let (secret, _, legacy) = seal_as_an_older_credence(&agency.app, &vault, &connection).await;
    agency
        .app
        .sql()
        .await
        .execute(&format!(
            "UPDATE connections SET secret_id = '{secret}' WHERE id = {their_connection}"
        ))
        .await;

    let renewal = secrets::renew_all(&agency.app.store, &vault).await.unwrap();
    assert_eq!(sealed_secret(&agency.app, &secret).await, legacy);
    let schemes = agency
        .app
        .sql()
        .await
        .column::<Option<String>>(&format!(
            "SELECT CAST(aad_scheme AS TEXT) FROM secrets WHERE id = '{secret}'"
        ))
        .await;
    assert_eq!(schemes, vec![Some("1".to_string())]);
    let (low, high) = (
        our_connection.min(their_connection),
        our_connection.max(their_connection),
    );
    let named = format!("secrets.sealed row {secret}: connections {low}, {high} all point at it");
    assert!(
        renewal.problems.iter().any(|line| line.contains(&named)),
        "{:?}",
        renewal.problems
    );
    for line in &renewal.problems {
        assert!(!line.contains("legacy-ours-1c2d3e"), "{line}");
    }
    assert!(renewal.columns[0].1.left >= 1, "{:?}", renewal.columns[0]);
    let moved = connection_row(&agency.app, their_connection).await;
    assert!(secrets::open_connection(&agency.app.store, &vault, &moved)
        .await
        .is_err());

    // Once the operator points theirs elsewhere, the next renewal (a start)
    // re-seals it for ours alone.
    agency
        .app
        .sql()
        .await
        .execute(&format!(
            "UPDATE connections SET secret_id = NULL WHERE id = {their_connection}"
        ))
        .await;
    let again = credence::Application::build(agency.app.config.clone())
        .await
        .expect("a second instance starts");
    drop(again);
    assert!(connection_verifies(&agency, our_connection, &ours).await);
    assert!(secrets::open_connection(&agency.app.store, &vault, &moved)
        .await
        .is_err());
    agency.app.stop().await;
}

/// The heartbeats in the database: (key version, instance id).
async fn heartbeats(app: &TestApp) -> Vec<(i64, String)> {
    let beats = app.db().await.list_heartbeats().await.unwrap();
    beats.into_iter().map(|b| (b.key_version, b.id)).collect()
}

/// Waits until the running server's heartbeat reports the newest version of
/// its key file. `keys retire` waits only two heartbeats for a live instance
/// that is behind; the test does not bet that the server's next one comes in
/// time after a rotation.
async fn the_server_reports_the_newest_key(app: &TestApp) {
    let key_file = app.dir.path().join("credence.key");
    let newest = i64::from(*key_lines(&key_file).iter().max().unwrap());
    wait_until(
        &format!("the server reports key version {newest}"),
        || async {
            heartbeats(app)
                .await
                .iter()
                .any(|(version, _)| *version == newest)
        },
    )
    .await;
}

/// Issue: `keys retire` counted the values in the database only, so an
/// instance on another machine with a stale copy of the key file went on
/// sealing under the retired version, and nobody could open what it wrote.
/// Every running instance now records the newest version it has; retire
/// refuses while a live one reports an older one, and goes ahead once it stops.
async fn keys_retire_refuses_while_a_running_instance_has_an_older_copy_of_the_key_file(
    backend: Backend,
) {
    let agency = start(backend).await;
    seal_everywhere(&agency).await;
    let key_file = agency.app.dir.path().join("credence.key");
    let stale_file = agency.app.dir.path().join("other-machine.key");
    std::fs::copy(&key_file, &stale_file).unwrap();
    let mut config = agency.app.config.clone();
    config.key_file = Some(stale_file);
    // Live while it beat within three intervals: a second between beats
    // keeps it live through any stall a loaded machine has (`keys retire`
    // then waits two intervals for it before refusing).
    config.heartbeat_every = std::time::Duration::from_secs(1);
    let other = credence::Application::build(config)
        .await
        .expect("a second instance starts");
    let (stop_other, stopped) = tokio::sync::oneshot::channel::<()>();
    let other = tokio::spawn(other.run_until(async {
        let _ = stopped.await;
    }));
    wait_until("both instances beat", || async {
        heartbeats(&agency.app).await.len() == 2
    })
    .await;

    let (ok, stdout, stderr) = agency.app.operator(&["keys", "rotate"]).await;
    assert!(ok, "{stdout}{stderr}");
    the_server_reports_the_newest_key(&agency.app).await;
    let (ok, stdout, stderr) = agency
        .app
        .operator(&["keys", "retire", "--version", "1"])
        .await;
    assert!(!ok, "{stdout}");
    let behind = heartbeats(&agency.app).await;
    assert_eq!(behind.len(), 2, "{behind:?}");
    assert_eq!(behind[0].0, 1, "{behind:?}");
    assert_eq!(
        behind[1].0, 2,
        "the server reading the rotated file: {behind:?}"
    );
    assert!(
        stderr.contains(&format!(
            "instance {} seals under key version 1",
            behind[0].1
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("give it the key file with version 2"),
        "{stderr}"
    );
    assert_eq!(key_lines(&key_file), vec![1, 2], "nothing was removed");

    stop_other.send(()).unwrap();
    other.await.unwrap().unwrap();
    assert_eq!(heartbeats(&agency.app).await.len(), 1);
    let (ok, stdout, stderr) = agency
        .app
        .operator(&["keys", "retire", "--version", "1"])
        .await;
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(key_lines(&key_file), vec![2]);
    agency.app.stop().await;
}

/// Seals `connection`'s secret again as Credence did before the owner binding
/// (bound to the secret's row only, `aad_scheme = 1`); answers the secret's id
/// and plain text, and the value written.
async fn seal_as_an_older_credence(
    app: &TestApp,
    vault: &credence_vault::Vault,
    connection: &credence_store::Connection,
) -> (String, secrecy::SecretString, String) {
    let secret = connection.secret_id.clone().unwrap();
    let plain = secrets::open_connection(&app.store, vault, connection)
        .await
        .unwrap();
    let legacy = vault
        .seal_str(&plain, &format!("secret:{secret}:connection"))
        .unwrap();
    app.sql()
        .await
        .execute(&format!(
            "UPDATE secrets SET sealed = '{}', aad_scheme = 1 WHERE id = '{secret}'",
            legacy.as_str()
        ))
        .await;
    (secret, plain, legacy.as_str().to_string())
}

/// What the load of [`keys_rotate_under_load_fails_no_request`] did, and
/// every call answered otherwise than expected.
#[derive(Default)]
struct Load {
    calls: std::sync::atomic::AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
}

impl Load {
    /// Counts a call answered `status`, a failure unless it is `expected`.
    fn answered(&self, what: &str, status: StatusCode, expected: StatusCode, body: &str) -> bool {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if status != expected {
            self.failures
                .lock()
                .unwrap()
                .push(format!("{what}: {status} (expected {expected}) {body}"));
        }
        status == expected
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One client of the API until `stop`: Rita asks Tom for the API-key app,
/// reads the request, Tom reads and authorizes it with a new key, and Rita's
/// team calls the app through the broker with it.
async fn ask_and_authorize_until(
    agency: &Agency,
    use_token: &str,
    worker: usize,
    load: &Load,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut round = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        round += 1;
        let (status, body) = agency
            .post(
                "/api/v2/credential-requests/requests/v2",
                &agency.requester_token,
                Some(agency.body_for(agency.teammate.id, &["acme-crm"])),
            )
            .await;
        if !load.answered("create", status, StatusCode::CREATED, &body.to_string()) {
            continue;
        }
        let request = body["request"]["id"].as_str().unwrap().to_string();
        let credential = body["request"]["credentials"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let detail = format!("/api/v2/credential-requests/requests/{request}/detail");
        for token in [&agency.requester_token, &agency.teammate_token] {
            let (status, body) = agency.app.get_json(&detail, token).await;
            load.answered("read", status, StatusCode::OK, &body.to_string());
        }
        let key = format!("load-{worker}-{round}-{}", uuid::Uuid::new_v4().simple());
        agency.upstream.accept(&key);
        let (status, body) = agency.authorize_with(&credential, "authorize", &key).await;
        if !load.answered("authorize", status, StatusCode::OK, &body.to_string()) {
            continue;
        }
        let id = CredentialId::parse("id", &credential).unwrap();
        let Some(connection) = agency
            .app
            .db()
            .await
            .get_credential(id)
            .await
            .unwrap()
            .and_then(|c| c.connection_id)
        else {
            load.failures.lock().unwrap().push(format!(
                "credential {credential} is authorized without a connection"
            ));
            continue;
        };
        proxy_call(agency, connection, use_token, load).await;
    }
}

/// `GET /v1/contacts` through the broker on `connection`, 200 expected.
async fn proxy_call(agency: &Agency, connection: i64, use_token: &str, load: &Load) {
    let response = agency
        .app
        .client
        .get(agency.app.url(&format!(
            "/api/v2/connections/{connection}/proxy/v1/contacts"
        )))
        .header("Authorization", format!("Token {use_token}"))
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            crate::support::assert_no_secret("a proxied answer", &body);
            load.answered("proxy", status, StatusCode::OK, &body);
        }
        Err(error) => {
            load.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            load.failures
                .lock()
                .unwrap()
                .push(format!("proxy: {error}"));
        }
    }
}

/// Issue 14: `credence keys rotate`, twice, while clients keep creating,
/// reading and authorizing requests and calling connections through the
/// broker: no call fails, and afterwards every sealed value is on the newest
/// version and still opens.
async fn keys_rotate_under_load_fails_no_request(backend: Backend) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let agency = Agency::start_with(backend, &[(OAUTH_APP, oauth_app())], |config| {
        config.oauth_refresh_every = None;
        // The broker's clients call as fast as they can: on a fast machine
        // the per-connection limit would answer 429.
        config.proxy_calls_per_minute = 1_000_000;
    })
    .await;
    let (first, token) = seal_everywhere(&agency).await;
    let mut existing = vec![first];
    for i in 0..10 {
        let key = format!("existing-{i}-{}", uuid::Uuid::new_v4().simple());
        existing.push(api_key_connection(&agency, agency.app.team.0, &token, &key).await);
    }
    assert_all_on(&agency.app, 1).await;
    let use_token = agency
        .app
        .token(agency.requester.id, "connections:use")
        .await;
    let load = Load::default();
    let stop = AtomicBool::new(false);
    let broker = |offset: usize| {
        let (existing, load, stop, use_token) = (&existing, &load, &stop, &use_token);
        let agency = &agency;
        async move {
            let mut at = offset;
            while !stop.load(Ordering::SeqCst) {
                proxy_call(agency, existing[at % existing.len()], use_token, load).await;
                at += 1;
            }
        }
    };
    let rotations = async {
        // Both rotations start while every client is busy, and end before
        // the clients stop.
        wait_until("the clients are busy", || async { load.calls() >= 20 }).await;
        let mut during = Vec::new();
        for version in [2, 3] {
            let before = load.calls();
            let (ok, stdout, stderr) = agency.app.operator(&["keys", "rotate"]).await;
            during.push(load.calls() - before);
            assert!(ok, "rotation to {version}: {stdout}{stderr}");
            assert!(
                stdout.contains(&format!("key version {version} added")),
                "{stdout}"
            );
            let after = load.calls();
            wait_until("the clients go on after the rotation", || async {
                load.calls() >= after + 20
            })
            .await;
        }
        stop.store(true, Ordering::SeqCst);
        during
    };
    let ((), (), (), (), (), during) = tokio::join!(
        ask_and_authorize_until(&agency, &use_token, 0, &load, &stop),
        ask_and_authorize_until(&agency, &use_token, 1, &load, &stop),
        ask_and_authorize_until(&agency, &use_token, 2, &load, &stop),
        broker(0),
        broker(5),
        rotations,
    );
    let failures = load.failures.lock().unwrap().clone();
    assert_eq!(failures, Vec::<String>::new(), "of {} calls", load.calls());
    assert!(
        during.iter().all(|calls| *calls > 0),
        "calls answered during each rotation: {during:?}"
    );

    // Everything is on version 3 and opens: every connection's secret (and
    // works through the broker), every notification.
    assert_all_on(&agency.app, 3).await;
    let vault = agency.app.vault();
    let connections = agency.app.team_connections().await;
    assert!(connections.len() > existing.len(), "{}", connections.len());
    for connection in &connections {
        secrets::open_connection(&agency.app.store, &vault, connection)
            .await
            .unwrap_or_else(|e| panic!("connection {} does not open: {e}", connection.id));
        if connection.app_key == "acme-crm" {
            let before = load.failures.lock().unwrap().len();
            proxy_call(&agency, connection.id, &use_token, &load).await;
            let failures = load.failures.lock().unwrap();
            assert_eq!(failures.len(), before, "{:?}", &failures[before..]);
        }
    }
    assert!(!agency.outbox().await.is_empty());
    agency.app.stop().await;
}

/// A refresh under way while `keys rotate` re-wraps the connection's tokens
/// keeps what the provider answered: the re-wrapped value holds the same
/// tokens as the one the refresh read, so it is no reason to throw the
/// answer away — with rotating refresh tokens, the one left stored would be
/// consumed, and presenting it would revoke the grant.
async fn a_refresh_under_way_while_keys_rotate_rewraps_the_tokens_keeps_the_new_ones(
    backend: Backend,
) {
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
    let before = world.tokens(&world.connection_by_id(id).await).await;

    world.provider.hold_token_requests(true).await;
    let ctx = world.ctx().clone();
    let refreshing = tokio::spawn(async move { refresh::refresh_now(&ctx, id).await });
    world.provider.token_request_held().await;
    let (ok, stdout, stderr) = world.agency.app.operator(&["keys", "rotate"]).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("secrets.sealed: re-wrapped 1,"),
        "the tokens were re-wrapped while the refresh waited: {stdout}"
    );
    world.provider.hold_token_requests(false).await;
    assert_eq!(
        refreshing.await.unwrap().unwrap(),
        RefreshOutcome::Refreshed
    );

    let after = world.tokens(&world.connection_by_id(id).await).await;
    assert_ne!(
        after["refresh_token"], before["refresh_token"],
        "the rotated refresh token is kept"
    );
    assert_ne!(after["access_token"], before["access_token"]);
    assert!(key_versions(&world.agency.app).await[0]
        .1
        .iter()
        .all(|v| *v == 2));
    // The kept refresh token is the live one: the next refresh works.
    assert_eq!(
        refresh::refresh_now(world.ctx(), id).await.unwrap(),
        RefreshOutcome::Refreshed
    );
    assert_eq!(world.stored().await.state, CredentialState::Authorized);
    world.agency.app.stop().await;
}

on_both_backends!(
    keys_rotate_moves_every_sealed_column_of_every_table_to_the_new_version,
    a_running_server_seals_under_the_rotated_version_without_opening_a_newer_value_first,
    keys_retire_refuses_while_a_value_uses_the_version_and_removes_it_after_rotation,
    a_secret_moved_to_another_teams_connection_does_not_open_and_the_api_answers_an_error,
    an_outbox_payload_copied_to_another_row_does_not_open,
    values_sealed_before_the_owner_binding_are_resealed_at_start_and_keep_opening,
    a_renewal_by_a_vault_loaded_before_a_rotation_moves_every_value_to_the_new_version_without_a_false_warning,
    a_rotation_during_a_renewal_pass_only_adds_a_pass_and_ends_with_every_value_on_the_newest_version,
    a_value_rewritten_between_read_and_renewal_is_read_again_and_keeps_its_new_value,
    a_legacy_secret_two_connections_point_at_is_resealed_for_neither_and_reported,
    keys_retire_refuses_while_a_running_instance_has_an_older_copy_of_the_key_file,
    keys_rotate_under_load_fails_no_request,
    a_refresh_under_way_while_keys_rotate_rewraps_the_tokens_keeps_the_new_ones,
);

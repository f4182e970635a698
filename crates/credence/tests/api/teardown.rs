//! Project teardown (SPEC §9): closing a project revokes every credential of
//! its requests — at the real OAuth provider (the tokens are inactive there and
//! the refresh token is refused), an API key's secret destroyed here — marks
//! each `revoked` with the time and the note "project <name> closed", audits
//! each, reports per credential what happened and changes nothing the second
//! time. A provider that is down is reported and keeps no secret alive. Bad
//! names and other teams are refused with nothing changed; the operator's
//! `credence projects teardown` does the same from the shell.

use crate::on_both_backends;
use crate::support::{assert_error, assert_no_secret, captured_logs, register_secret, signed_in};
use crate::support::{world, World, APP};
use credence_domain::{CredentialId, CredentialState};
use credence_store::{Backend, Connection};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const PROJECT: &str = "Website relaunch";

/// The scene: the OAuth world's request (authorized for real through the
/// provider's consent page) and two API-key requests, all in [`PROJECT`] —
/// one authorized, one still pending — and one authorized request of another
/// project, which a teardown must leave alone.
struct Scene {
    world: World,
    oauth_connection: Connection,
    access: String,
    refresh: String,
    /// The authorized API-key credential and its connection.
    key_credential: String,
    key_connection: Connection,
    /// The pending API-key credential.
    pending_credential: String,
    /// The credential of the other project, authorized.
    other_credential: String,
}

fn teardown_path(project: &str, team: impl std::fmt::Display) -> String {
    format!(
        "/api/v2/credential-requests/projects/{}/teardown?teamId={team}",
        urlencoding(project)
    )
}

/// Percent-encodes a path segment (spaces and the like).
fn urlencoding(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Creates a request for `app` asked of the teammate in `project`, and
/// answers its credential's id.
async fn request_in(world: &World, app: &str, project: &str) -> String {
    let agency = &world.agency;
    let mut body = agency.body_for(agency.teammate.id, &[app]);
    body["project"] = json!(project);
    let (status, created) = agency
        .post(
            "/api/v2/credential-requests/requests/v2",
            &agency.requester_token,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["request"]["credentials"][0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The teammate authorizes `credential` with a fresh API key the upstream
/// accepts; answers its connection.
async fn authorize_key(world: &World, credential: &str, key: &str) -> Connection {
    register_secret(key);
    world.agency.upstream.accept(key);
    let (status, body) = world
        .agency
        .authorize_with(credential, "authorize", key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = stored(world, credential)
        .await
        .connection_id
        .expect("a connection");
    world.connection_by_id(id).await
}

async fn stored(world: &World, credential: &str) -> credence_store::RequestedCredential {
    world
        .agency
        .app
        .db()
        .await
        .get_credential(CredentialId::parse("id", credential).unwrap())
        .await
        .unwrap()
        .unwrap()
}

async fn scene(backend: Backend) -> Scene {
    let world = world(backend, true).await;
    // The world's request joins the project.
    let (status, body) = world
        .agency
        .app
        .send(
            Method::PATCH,
            &format!("/api/v2/credential-requests/requests/{}", world.request),
            &world.agency.requester_token,
            Some(json!({ "project": PROJECT })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tom = signed_in(&world.agency.app, &world.agency.teammate).await;
    world.consent_through(&tom, "authorize").await;
    let oauth_connection = world.connection().await;
    let tokens = world.tokens(&oauth_connection).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(world.provider.introspect(&refresh).await["active"], true);

    let key_credential = request_in(&world, "acme-crm", PROJECT).await;
    let key_connection = authorize_key(&world, &key_credential, "acme-teardown-key-7f3a").await;
    let pending_credential = request_in(&world, "beta-desk", PROJECT).await;
    let other_credential = request_in(&world, "acme-crm", "Another project").await;
    authorize_key(&world, &other_credential, "acme-other-key-91b2").await;
    Scene {
        world,
        oauth_connection,
        access,
        refresh,
        key_credential,
        key_connection,
        pending_credential,
        other_credential,
    }
}

impl Scene {
    async fn teardown(&self, project: &str, token: &str) -> (StatusCode, Value) {
        self.world
            .agency
            .post(
                &teardown_path(project, self.world.agency.app.team),
                token,
                None,
            )
            .await
    }

    /// The report's line for `credential`.
    fn line<'a>(report: &'a Value, credential: &str) -> &'a Value {
        report["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .find(|line| line["credentialId"] == credential)
            .unwrap_or_else(|| panic!("no line for {credential}: {report}"))
    }

    /// The grant is dead at the provider: both tokens inactive, the refresh
    /// token refused.
    async fn assert_revoked_at_provider(&self) {
        let provider = &self.world.provider;
        assert_eq!(provider.introspect(&self.refresh).await["active"], false);
        assert_eq!(provider.introspect(&self.access).await["active"], false);
        let (status, body) = provider
            .token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", self.refresh.as_str()),
            ])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }

    /// Connection `connection` and its sealed secret are gone from the store.
    async fn assert_destroyed(&self, connection: &Connection) {
        let mut db = self.world.agency.app.db().await;
        assert!(db.get_connection(connection.id).await.unwrap().is_none());
        assert!(db
            .get_secret(connection.secret_id.as_deref().unwrap())
            .await
            .unwrap()
            .is_none());
    }

    /// `credential` is revoked with the time and the teardown's note.
    async fn assert_closed(&self, credential: &str) {
        let stored = stored(&self.world, credential).await;
        assert_eq!(stored.state, CredentialState::Revoked, "{credential}");
        assert!(stored.connection_id.is_none());
        assert!(
            stored.revoked_at.is_some(),
            "{credential} has no revocation time"
        );
        assert_eq!(
            stored.revoked_note.as_deref(),
            Some("project Website relaunch closed")
        );
    }
}

/// The requester closes the project: the OAuth grant is revoked at the real
/// provider, the API key's secret destroyed, the pending credential revoked
/// too (so nobody nudges the client any more); each is audited and reported,
/// the other project untouched; a second teardown changes nothing and says so.
async fn closing_a_project_revokes_every_credential_at_the_provider(backend: Backend) {
    let scene = scene(backend).await;
    let agency = &scene.world.agency;
    let (status, body) = scene.teardown(PROJECT, &agency.requester_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["teardown"];
    assert_eq!(report["project"], PROJECT, "{report}");
    assert_eq!(report["teamId"], json!(agency.app.team), "{report}");
    assert_eq!(report["requests"], 3, "{report}");
    assert_eq!(report["changed"], true, "{report}");
    assert_eq!(report["note"], "project Website relaunch closed");
    assert_eq!(
        report["credentials"].as_array().unwrap().len(),
        3,
        "{report}"
    );

    let oauth = Scene::line(report, &scene.world.credential);
    assert_eq!(oauth["atProvider"], "revoked_at_provider", "{oauth}");
    assert_eq!(oauth["providerStatus"], 200, "{oauth}");
    assert_eq!(oauth["previousState"], "authorized");
    assert_eq!(oauth["state"], "revoked");
    assert_eq!(oauth["appName"], APP);
    assert_eq!(oauth["connectionId"], json!(scene.oauth_connection.id));
    let key = Scene::line(report, &scene.key_credential);
    assert_eq!(key["atProvider"], "no_revocation_endpoint", "{key}");
    assert_eq!(key["reason"], Value::Null, "{key}");
    let pending = Scene::line(report, &scene.pending_credential);
    assert_eq!(pending["atProvider"], "nothing_granted", "{pending}");
    assert_eq!(pending["previousState"], "pending");
    assert_eq!(pending["connectionId"], Value::Null);

    scene.assert_revoked_at_provider().await;
    scene.assert_destroyed(&scene.oauth_connection).await;
    scene.assert_destroyed(&scene.key_connection).await;
    for credential in [
        &scene.world.credential,
        &scene.key_credential,
        &scene.pending_credential,
    ] {
        scene.assert_closed(credential).await;
    }
    let other = stored(&scene.world, &scene.other_credential).await;
    assert_eq!(
        other.state,
        CredentialState::Authorized,
        "another project's credential"
    );
    assert!(other.connection_id.is_some());

    // Each is audited, by the requester, with the note; the grant's
    // revocation at the provider too.
    let entries = agency.app.audit_entries(&["credential.revoked"]).await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    for entry in &entries {
        assert_no_secret("the audit entry", &entry.details);
        let details: Value = serde_json::from_str(&entry.details).unwrap();
        assert_eq!(details["teardown"], true, "{details}");
        assert_eq!(details["note"], "project Website relaunch closed");
        assert_eq!(
            entry.actor_user_id,
            Some(agency.requester.id.0),
            "{entry:?}"
        );
    }
    let at_provider = agency
        .app
        .audit_entries(&["connection.revoked_at_provider"])
        .await;
    assert_eq!(at_provider.len(), 1, "{at_provider:?}");
    assert_eq!(
        at_provider[0].target_id,
        scene.oauth_connection.id.to_string()
    );

    // The request's detail shows the credentials revoked.
    let (status, detail) = agency
        .app
        .get_json(
            &format!(
                "/api/v2/credential-requests/requests/{}/detail",
                scene.world.request
            ),
            &agency.requester_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(
        detail["requestDetail"]["credentials"][0]["state"],
        "revoked"
    );

    // Again: nothing left, nothing changed.
    let (status, again) = scene.teardown(PROJECT, &agency.requester_token).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let again = &again["teardown"];
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["credentials"], json!([]), "{again}");
    assert_eq!(again["alreadyEnded"], 3, "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .starts_with("nothing left to revoke"),
        "{again}"
    );
    assert_eq!(
        agency
            .app
            .audit_entries(&["credential.revoked"])
            .await
            .len(),
        3
    );
    assert_eq!(
        stored(&scene.world, &scene.other_credential).await.state,
        CredentialState::Authorized
    );
    assert_no_secret("the logs", &captured_logs());
    scene.world.agency.app.stop().await;
}

/// The provider is down at teardown: its credential is reported as not
/// revoked there, with the reason, and its secret is destroyed anyway; the
/// other credentials close as usual.
async fn a_provider_down_at_teardown_is_reported_and_the_secret_destroyed_anyway(backend: Backend) {
    let mut scene = scene(backend).await;
    scene.world.provider.stop();
    let agency = &scene.world.agency;
    let (status, body) = scene.teardown(PROJECT, &agency.admin_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["teardown"];
    let oauth = Scene::line(report, &scene.world.credential);
    assert_eq!(oauth["atProvider"], "provider_unreachable", "{oauth}");
    assert_eq!(oauth["providerStatus"], Value::Null, "{oauth}");
    assert_eq!(oauth["reason"], "could not reach Local OAuth", "{oauth}");
    assert_eq!(
        Scene::line(report, &scene.key_credential)["atProvider"],
        "no_revocation_endpoint"
    );
    scene.assert_destroyed(&scene.oauth_connection).await;
    scene.assert_destroyed(&scene.key_connection).await;
    scene.assert_closed(&scene.world.credential).await;
    let at_provider = agency
        .app
        .audit_entries(&["connection.revoked_at_provider"])
        .await;
    assert_eq!(at_provider.len(), 1);
    let details: Value = serde_json::from_str(&at_provider[0].details).unwrap();
    assert_eq!(details["ok"], false, "{details}");
    assert_no_secret("the logs", &captured_logs());
    scene.world.agency.app.stop().await;
}

/// Bad project names and team ids are refused naming the field and the
/// limit; another team's member and a token without the write scope are
/// refused; none of it changes anything.
async fn bad_names_and_other_teams_are_refused_and_change_nothing(backend: Backend) {
    let scene = scene(backend).await;
    let agency = &scene.world.agency;
    let team = agency.app.team;
    let long = "p".repeat(101);
    for (path, field, says) in [
        (teardown_path(&long, team), "project", "100"),
        (teardown_path("a\u{1b}[31m", team), "project", "project"),
        (teardown_path("   ", team), "project", "project"),
        (
            format!(
                "/api/v2/credential-requests/projects/{}/teardown",
                urlencoding(PROJECT)
            ),
            "teamId",
            "required",
        ),
        (teardown_path(PROJECT, "three"), "teamId", "integer"),
    ] {
        let (status, body) = agency.post(&path, &agency.requester_token, None).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
        let suberror = &body["suberrors"][0];
        assert_eq!(suberror["field"], field, "{path}: {body}");
        assert!(
            suberror["message"].as_str().unwrap().contains(says),
            "{path}: {body}"
        );
    }
    // A member of another team of the organization does not see this team.
    let (status, body) = scene.teardown(PROJECT, &agency.outsider_token).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    // Nor does anyone see a team that does not exist.
    let (status, body) = agency
        .post(&teardown_path(PROJECT, 987_654), &agency.admin_token, None)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    // A read-only token may not close anything.
    let reader = agency
        .app
        .token(agency.requester.id, "credential-requests:read")
        .await;
    let (status, body) = scene.teardown(PROJECT, &reader).await;
    assert_error(status, &body, StatusCode::FORBIDDEN);

    for credential in [&scene.world.credential, &scene.key_credential] {
        assert_eq!(
            stored(&scene.world, credential).await.state,
            CredentialState::Authorized
        );
    }
    assert_eq!(
        stored(&scene.world, &scene.pending_credential).await.state,
        CredentialState::Pending
    );
    assert_eq!(
        scene.world.provider.introspect(&scene.refresh).await["active"],
        true
    );
    assert!(agency
        .app
        .audit_entries(&["credential.revoked"])
        .await
        .is_empty());
    scene.world.agency.app.stop().await;
}

/// The operator closes the project from the shell, with the app's OAuth
/// client from the environment: the grant is revoked at the provider, one
/// line per credential says so, and running it again says nothing is left.
async fn the_operator_closes_a_project_from_the_command_line(backend: Backend) {
    let scene = scene(backend).await;
    let app = &scene.world.agency.app;
    let team = app.team.to_string();
    let apps_dir = app.config.apps_dir.clone().expect("the agency's apps");
    let run = |args: Vec<String>| {
        let command = tokio::process::Command::new(crate::support::credence_bin())
            .env_clear()
            .current_dir(app.dir.path())
            .env("DATABASE_URL", &app.database_url)
            .env("CREDENCE_DATA_DIR", app.dir.path())
            .env("CREDENCE_KEY_FILE", app.dir.path().join("credence.key"))
            .env("CREDENCE_APPS_DIR", &apps_dir)
            .env(
                "CREDENCE_OAUTH_LOCAL_OAUTH_CLIENT_ID",
                &scene.world.provider.client_id,
            )
            .env(
                "CREDENCE_OAUTH_LOCAL_OAUTH_CLIENT_SECRET",
                &scene.world.provider.client_secret,
            )
            .args(args)
            .output();
        async move {
            let output = tokio::time::timeout(std::time::Duration::from_secs(60), command)
                .await
                .expect("the command ends")
                .expect("credence runs");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };
    let args = |extra: &[&str]| {
        let mut args: Vec<String> = ["projects", "teardown", PROJECT, "--team", team.as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    // A bad name is refused, naming the field.
    let (ok, _, stderr) = run(vec![
        "projects".into(),
        "teardown".into(),
        "p".repeat(101),
        "--team".into(),
        team.clone(),
    ])
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("project") && stderr.contains("100"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = run(args(&[])).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert_no_secret("the command's output", &format!("{stdout}{stderr}"));
    let line_of = |credential: &str| {
        stdout
            .lines()
            .find(|line| line.contains(credential))
            .unwrap_or_else(|| panic!("no line for {credential}:\n{stdout}"))
            .to_string()
    };
    assert!(line_of(&scene.world.credential).ends_with("at the provider: revoked_at_provider"));
    assert!(line_of(&scene.key_credential).contains("no_revocation_endpoint"));
    assert!(line_of(&scene.pending_credential).contains("nothing_granted"));
    assert!(
        stdout.contains("project \"Website relaunch\" of team")
            && stdout.contains("3 credentials revoked"),
        "{stdout}"
    );
    scene.assert_revoked_at_provider().await;
    scene.assert_destroyed(&scene.oauth_connection).await;
    scene.assert_closed(&scene.world.credential).await;
    let entries = app.audit_entries(&["credential.revoked"]).await;
    assert_eq!(entries.len(), 3);
    assert!(
        entries.iter().all(|e| e.actor_label == "operator"),
        "{entries:?}"
    );

    // Again, in the form `credence project teardown --team T --project P`.
    let (ok, stdout, stderr) = run([
        "project",
        "teardown",
        "--team",
        team.as_str(),
        "--project",
        PROJECT,
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect())
    .await;
    assert!(ok, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(report["changed"], false, "{report}");
    assert_eq!(report["alreadyEnded"], 3, "{report}");
    scene.world.agency.app.stop().await;
}

on_both_backends!(
    closing_a_project_revokes_every_credential_at_the_provider,
    a_provider_down_at_teardown_is_reported_and_the_secret_destroyed_anyway,
    bad_names_and_other_teams_are_refused_and_change_nothing,
    the_operator_closes_a_project_from_the_command_line,
);

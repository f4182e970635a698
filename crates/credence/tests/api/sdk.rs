//! Make compatibility, proven with Make's own client: the official TypeScript
//! SDK (`@makehq/sdk`, unpatched, pinned in `tests/sdk/package.json`) runs
//! against a real Credence and calls every credential-request method it offers,
//! the connection reads, and the account calls a client makes first
//! (`tests/sdk/compat.mjs`). Each call must end exactly as expected, and what
//! the SDK says changed must have changed in the store.
//!
//! Needs `node` and `npm ci --prefix tests/sdk`; `scripts/test` installs both.
//! Never skipped: without them the test fails and says so.

use crate::on_both_backends;
use crate::support::Agency;
use credence_domain::{CredentialId, RequestId};
use credence_store::Backend;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// Whether Credence serves Make's `/connections` API yet. While it does not,
/// the SDK's connection reads must get the router's 404 "no such API endpoint";
/// once it does, this test fails and asks for this switch to be turned on, which
/// checks the answers instead.
const CONNECTIONS_API: bool = true;

/// The SDK's audit-log entry points (properties of `Make` named like "audit").
/// The pinned SDK has none, so there is no audit-log call to run; a later SDK
/// that has some makes this test fail until compat.mjs exercises them.
const SDK_AUDIT_LOG_CALLS: &[&str] = &[];

/// Every method of the SDK's `credentialRequests`, all exercised by compat.mjs.
const CREDENTIAL_REQUEST_METHODS: &[&str] = &[
    "create",
    "createAction",
    "createByCredentials",
    "declineCredential",
    "delete",
    "deleteCredential",
    "extendConnection",
    "get",
    "getDetail",
    "list",
    "listAppModulesWithCredentials",
];

/// The SDK's connection methods, all exercised by compat.mjs (`update`, Make's
/// set-data, has no counterpart and must get 404).
const CONNECTION_READ_METHODS: &[&str] =
    &["get", "list", "listEditableParameters", "scoped", "verify"];
const CONNECTION_WRITE_METHODS: &[&str] = &["create", "delete", "rename", "update"];

/// The API key the SDK adds its own connection with (the local app accepts it).
const OWN_CONNECTION_KEY: &str = "sdk-own-connection-key-5d1e";

/// How long the whole SDK run may take.
const SDK_RUN_LIMIT: Duration = Duration::from_secs(60);

fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The SDK version pinned in tests/sdk/package.json.
fn pinned_sdk_version(root: &std::path::Path) -> String {
    let text = std::fs::read_to_string(root.join("tests/sdk/package.json"))
        .expect("tests/sdk/package.json");
    let package: Value = serde_json::from_str(&text).expect("package.json is JSON");
    let version = package["dependencies"]["@makehq/sdk"]
        .as_str()
        .expect("@makehq/sdk is a dependency")
        .to_string();
    assert!(
        version.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "@makehq/sdk must be pinned to an exact version, not {version:?}"
    );
    version
}

/// Fails (never skips) when node or the installed SDK is missing.
async fn require_node_and_sdk(root: &std::path::Path, version: &str) {
    let node = tokio::process::Command::new("node")
        .arg("--version")
        .output()
        .await;
    match node {
        Ok(output) if output.status.success() => {}
        _ => panic!(
            "`node` is not installed, and this test runs the Make SDK with it: run scripts/test, \
             which installs Node.js and the SDK (npm ci --prefix tests/sdk)"
        ),
    }
    let installed = root.join("tests/sdk/node_modules/@makehq/sdk/package.json");
    let text = std::fs::read_to_string(&installed).unwrap_or_else(|_| {
        panic!(
            "the Make SDK is not installed in tests/sdk/node_modules: run scripts/test \
             (or npm ci --prefix tests/sdk)"
        )
    });
    let package: Value = serde_json::from_str(&text).expect("the SDK's package.json is JSON");
    assert_eq!(
        package["version"].as_str(),
        Some(version),
        "tests/sdk/node_modules holds another SDK version than package.json pins: run scripts/test \
         (or npm ci --prefix tests/sdk)"
    );
}

/// The JSON lines of one run, by call name.
struct Run {
    lines: BTreeMap<String, Value>,
    stdout: String,
}

impl Run {
    fn line(&self, call: &str) -> &Value {
        self.lines.get(call).unwrap_or_else(|| {
            panic!(
                "compat.mjs printed no line for {call}; output:\n{}",
                self.stdout
            )
        })
    }

    /// The result of a call that had to succeed.
    fn ok(&self, call: &str) -> &Value {
        let line = self.line(call);
        assert_eq!(line["ok"], true, "{call} failed: {line}");
        &line["result"]
    }

    /// The error message of a call that had to fail with `status`.
    fn failed(&self, call: &str, status: u16) -> &str {
        let line = self.line(call);
        assert_eq!(
            line["ok"], false,
            "{call} succeeded, expected HTTP {status}: {line}"
        );
        assert_eq!(
            line["name"], "MakeError",
            "{call} did not fail with a MakeError: {line}"
        );
        assert_eq!(line["status"], status, "{call}: {line}");
        line["message"].as_str().unwrap_or_default()
    }
}

async fn run_sdk(root: &std::path::Path, env: &[(&str, String)]) -> Run {
    let mut command = tokio::process::Command::new("node");
    command
        .arg("tests/sdk/compat.mjs")
        .current_dir(root)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(SDK_RUN_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("the SDK run took longer than {SDK_RUN_LIMIT:?}"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    // CREDENCE_SDK_OUTPUT=<file> keeps the SDK's answers, for reading them.
    if let Some(path) = std::env::var_os("CREDENCE_SDK_OUTPUT") {
        let _ = std::fs::write(path, &stdout);
    }
    let mut lines = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("compat.mjs printed a line that is not JSON ({e}): {line}"));
        let call = value["call"]
            .as_str()
            .expect("every line names its call")
            .to_string();
        assert!(
            lines.insert(call.clone(), value).is_none(),
            "compat.mjs printed {call} twice"
        );
    }
    let unexpected: Vec<&Value> = lines.values().filter(|l| l["unexpected"] == true).collect();
    assert!(
        output.status.success() && unexpected.is_empty(),
        "the SDK run ended with {}; calls that did not end as expected:\n{}\nstderr:\n{stderr}",
        output.status,
        unexpected
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    Run { lines, stdout }
}

fn names(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn ids(list: &Value) -> Vec<Value> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|item| item["id"].clone())
        .collect()
}

fn credential_id(raw: &Value) -> CredentialId {
    CredentialId::parse("credentialId", raw.as_str().unwrap()).unwrap()
}

fn request_id(raw: &Value) -> RequestId {
    RequestId::parse("requestId", raw.as_str().unwrap()).unwrap()
}

async fn the_make_sdk_works_against_credence(backend: Backend) {
    let root = repository_root();
    let version = pinned_sdk_version(&root);
    require_node_and_sdk(&root, &version).await;

    let agency = Agency::start(backend).await;
    agency.upstream.accept(OWN_CONNECTION_KEY);
    let app = &agency.app;
    let requester_token = app
        .token(
            agency.requester.id,
            "credential-requests:read,credential-requests:write,connections:read,connections:write,user:read,organizations:read,teams:read",
        )
        .await;

    // Tom authorized both apps of one request (two live connections), and one
    // app of another; a third request is still pending.
    let (connected_request, connected_credentials, connections) = authorized_request(
        &agency,
        &["acme-crm", "beta-desk"],
        &["acme-live-key-0001", "beta-live-key-0002"],
    )
    .await;
    let (acme_connection, beta_connection) = (connections[0], connections[1]);
    let connected_credential = connected_credentials[0].clone();
    let (doomed_request, _, doomed_connections) =
        authorized_request(&agency, &["acme-crm"], &["acme-live-key-0003"]).await;
    let (disposable_request, _, _) = agency
        .create_request(agency.teammate.id, &["beta-desk"])
        .await;
    let requests_before = count_requests(&agency).await;

    // Over plain HTTP first, what the SDK's MakeError does not keep: the
    // fields that refusals name. None of these creates or changes anything.
    for (path, body) in [
        (
            "/api/v2/credential-requests/actions/create",
            json!({ "teamId": app.team, "credentials": [{ "appName": "acme-crm", "appModules": ["*"] }] }),
        ),
        (
            "/api/v2/credential-requests/actions/create-by-credentials",
            json!({ "teamId": app.team, "keys": [{ "type": "keychain:acme-crm" }] }),
        ),
    ] {
        let (status, body) = agency.post(path, &requester_token, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["suberrors"][0]["field"], "provider", "{path}: {body}");
    }
    // create-by-credentials names the caller's own fields, not the credentials
    // it builds from them.
    let provider = json!({ "providerMakeUserId": agency.teammate.id });
    for (body, field) in [
        (
            json!({ "teamId": app.team, "connections": [{ "type": "account:acme-crm" }], "keys": [{ "type": "keychain:no-such-app" }], "provider": provider }),
            "keys[0].type",
        ),
        (
            json!({ "teamId": app.team, "connections": [{ "type": "acme-crm", "prefill": { "hard": { "apiKey": "x" } } }], "provider": provider }),
            "connections[0].prefill",
        ),
        (
            json!({ "teamId": app.team, "connections": [{ "type": "acme-crm", "scope": ["admin"] }], "provider": provider }),
            "connections[0].scope",
        ),
    ] {
        let (status, answer) = agency
            .post(
                "/api/v2/credential-requests/actions/create-by-credentials",
                &requester_token,
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["suberrors"][0]["field"], field, "{answer}");
    }

    let extend =
        |connection: i64| json!({ "connectionId": connection, "scopes": ["contacts.write"] });
    let extend_path = "/api/v2/credential-requests/actions/extend";
    for token in [&requester_token, &agency.admin_token] {
        let (status, body) = agency
            .post(extend_path, token, Some(extend(acme_connection)))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["suberrors"][0]["field"], "connectionId", "{body}");
    }
    // Someone of another team does not learn that the connection exists.
    let (status, body) = agency
        .post(
            extend_path,
            &agency.outsider_token,
            Some(extend(acme_connection)),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = agency
        .post(
            extend_path,
            &requester_token,
            Some(json!({ "connectionId": "x", "scopes": [] })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let fields: BTreeSet<&str> = body["suberrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, BTreeSet::from(["connectionId", "scopes"]), "{body}");

    let run = run_sdk(
        &root,
        &[
            ("CREDENCE_URL", app.address.clone()),
            ("REQUESTER_TOKEN", requester_token.clone()),
            ("RECIPIENT_TOKEN", agency.teammate_token.clone()),
            ("ORGANIZATION_ID", app.organization.to_string()),
            ("TEAM_ID", app.team.to_string()),
            ("REQUESTER_ID", agency.requester.id.to_string()),
            ("RECIPIENT_ID", agency.teammate.id.to_string()),
            ("RECIPIENT_EMAIL", agency.teammate.email.clone()),
            ("APP", "acme-crm".into()),
            ("OTHER_APP", "beta-desk".into()),
            ("CONNECTION_ID", acme_connection.to_string()),
            ("OWN_CONNECTION_KEY", OWN_CONNECTION_KEY.into()),
            ("CONNECTED_CREDENTIAL_ID", connected_credential.clone()),
            ("DOOMED_REQUEST_ID", doomed_request.clone()),
            ("DISPOSABLE_REQUEST_ID", disposable_request.clone()),
            (
                "CONNECTIONS_API",
                if CONNECTIONS_API { "enabled" } else { "absent" }.into(),
            ),
        ],
    )
    .await;

    // The SDK is the pinned one, and this test covers all it offers.
    let surface = run.line("sdk.surface");
    assert_eq!(surface["version"], version.as_str(), "{surface}");
    assert_eq!(
        names(&surface["credentialRequests"]),
        set(CREDENTIAL_REQUEST_METHODS),
        "the SDK's credentialRequests methods changed: cover the new ones in tests/sdk/compat.mjs and here"
    );
    let mut connection_methods = set(CONNECTION_READ_METHODS);
    connection_methods.extend(set(CONNECTION_WRITE_METHODS));
    assert_eq!(
        names(&surface["connections"]),
        connection_methods,
        "the SDK's connections methods changed: cover the new reads in tests/sdk/compat.mjs and here"
    );
    assert_eq!(
        names(&surface["auditLogKeys"]),
        set(SDK_AUDIT_LOG_CALLS),
        "the SDK now offers audit-log calls: exercise them in tests/sdk/compat.mjs and here"
    );

    let mut db = app.db().await;

    // Account calls.
    let me = run.ok("users.me");
    assert_eq!(me["id"], json!(agency.requester.id), "{me}");
    assert_eq!(me["email"], agency.requester.email.as_str(), "{me}");
    assert!(ids(run.ok("organizations.list")).contains(&json!(app.organization)));
    assert!(ids(run.ok("teams.list")).contains(&json!(app.team)));
    assert_eq!(run.ok("teams.get")["id"], json!(app.team));

    // The catalog.
    for call in [
        "credentialRequests.listAppModulesWithCredentials",
        "credentialRequests.listAppModulesWithCredentials:version",
    ] {
        let modules = run.ok(call).as_array().unwrap().clone();
        let module_names: BTreeSet<&str> = modules
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            module_names,
            BTreeSet::from(["searchContacts", "createContact"]),
            "{call}"
        );
        for module in &modules {
            assert!(
                module["type"].as_str().unwrap().starts_with("keychain:"),
                "{module}"
            );
            assert_eq!(module["hook"], false, "{module}");
            assert!(
                module.get("scope").is_none(),
                "an API-key app has no scopes: {module}"
            );
        }
    }
    run.failed(
        "credentialRequests.listAppModulesWithCredentials:unknown",
        404,
    );

    // create (the deprecated endpoint): the request, as Make answers it, and in the store.
    let created = run.ok("credentialRequests.create");
    let created_id = request_id(&created["id"]);
    assert_eq!(created["name"], "SDK onboarding", "{created}");
    assert_eq!(created["teamId"], json!(app.team), "{created}");
    assert_eq!(created["userId"], json!(agency.requester.id), "{created}");
    assert_eq!(created["status"], "pending", "{created}");
    assert_eq!(
        created["makeProviderId"],
        agency.teammate.id.to_string(),
        "{created}"
    );
    assert_eq!(
        created["appNames"],
        json!(["acme-crm", "beta-desk"]),
        "{created}"
    );
    let stored = db
        .get_request(created_id)
        .await
        .unwrap()
        .expect("created request stored");
    assert_eq!(stored.recipient_user_id, Some(agency.teammate.id));
    assert_eq!(stored.requester_id, agency.requester.id);
    let stored_credentials = db.list_credentials(created_id).await.unwrap();
    assert_eq!(
        stored_credentials
            .iter()
            .map(|c| c.app_key.as_str())
            .collect::<Vec<_>>(),
        ["acme-crm", "beta-desk"]
    );
    assert_eq!(
        stored_credentials[0].note.as_deref(),
        Some("The CRM account")
    );
    let message = run.failed("credentialRequests.create:invalid", 400);
    assert!(message.contains("name is empty"), "{message}");
    assert!(message.contains("no-such-app"), "{message}");

    // Lists, get, detail.
    assert!(ids(run.ok("credentialRequests.list")).contains(&created["id"]));
    let listed = run.ok("credentialRequests.list:options");
    assert_eq!(ids(listed), vec![created["id"].clone()], "{listed}");
    for item in listed.as_array().unwrap() {
        let keys: BTreeSet<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["id", "name", "status"]), "{item}");
    }
    let by_provider = ids(run.ok("credentialRequests.list:deprecated-form"));
    assert!(by_provider.contains(&created["id"]), "{by_provider:?}");
    assert!(
        by_provider.contains(&json!(connected_request)),
        "{by_provider:?}"
    );
    assert!(
        by_provider.contains(&json!(doomed_request)),
        "{by_provider:?}"
    );
    let got = run.ok("credentialRequests.get");
    assert_eq!(got["id"], created["id"]);
    assert_eq!(got["organizationId"], json!(app.organization));
    assert_eq!(got["makeProvider"]["id"], json!(agency.teammate.id));
    let got = run.ok("credentialRequests.get:cols");
    assert_eq!(
        got,
        &json!({ "id": created["id"], "name": "SDK onboarding", "teamId": app.team })
    );
    run.failed("credentialRequests.get:unknown", 404);
    let detail = run.ok("credentialRequests.getDetail");
    assert_eq!(detail["user"]["id"], json!(agency.requester.id), "{detail}");
    assert_eq!(
        detail["makeProvider"]["id"],
        json!(agency.teammate.id),
        "{detail}"
    );
    let credentials = detail["credentials"].as_array().unwrap();
    assert_eq!(credentials.len(), 2, "{detail}");
    for credential in credentials {
        assert_eq!(credential["state"], "pending", "{credential}");
        assert_eq!(credential["appModules"], json!(["*"]), "{credential}");
    }
    assert_eq!(
        run.ok("credentialRequests.getDetail:recipient")["id"],
        created["id"]
    );

    // declineCredential: the recipient declines, with and without a reason.
    let declined = run.ok("credentialRequests.declineCredential");
    assert_eq!(declined["state"], "declined", "{declined}");
    assert_eq!(declined["declineReason"], Value::Null, "{declined}");
    let stored = db
        .get_credential(credential_id(&declined["id"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state.as_str(), "declined");
    assert_eq!(stored.app_key, "acme-crm");
    assert_eq!(stored.decline_reason, None);
    let declined = run.ok("credentialRequests.declineCredential:reason");
    assert_eq!(declined["state"], "declined", "{declined}");
    let stored = db
        .get_credential(credential_id(&declined["id"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state.as_str(), "declined");
    assert_eq!(stored.app_key, "beta-desk");
    assert_eq!(
        stored.decline_reason.as_deref(),
        Some("We do not use Beta Desk")
    );
    let message = run.failed("credentialRequests.declineCredential:requester", 403);
    assert!(message.contains("only the recipient"), "{message}");

    // createAction: Make's answer {request, publicUri}, with Credence's provider.
    let action = run.ok("credentialRequests.createAction");
    assert!(
        action["publicUri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/requests/", app.address)),
        "{action}"
    );
    let action_id = request_id(&action["request"]["id"]);
    assert_eq!(action["request"]["name"], "SDK action", "{action}");
    let stored = db
        .get_request(action_id)
        .await
        .unwrap()
        .expect("action request stored");
    assert_eq!(stored.recipient_user_id, Some(agency.teammate.id));
    assert_eq!(
        stored.description.as_deref(),
        Some("Created with createAction")
    );
    let stored_credentials = db.list_credentials(action_id).await.unwrap();
    assert_eq!(stored_credentials.len(), 1);
    assert_eq!(stored_credentials[0].app_key, "acme-crm");
    assert_eq!(stored_credentials[0].modules, r#"["searchContacts"]"#);
    assert_eq!(stored_credentials[0].connection_name, "CRM (read)");
    assert_eq!(stored_credentials[0].note.as_deref(), Some("Read contacts"));
    let message = run.failed("credentialRequests.createAction:no-provider", 400);
    assert!(
        message.contains("one known recipient")
            && message.contains("providerMakeUserId")
            && message.contains("newUser"),
        "{message}"
    );

    // createByCredentials: {request, credentials, publicUri}; types name apps,
    // all modules.
    let by_types = run.ok("credentialRequests.createByCredentials");
    assert!(
        by_types["publicUri"]
            .as_str()
            .unwrap()
            .contains("/requests/"),
        "{by_types}"
    );
    assert_eq!(
        by_types["request"]["name"], "Access to Acme CRM, Beta Desk",
        "{by_types}"
    );
    let typed: Vec<(&str, &Value, &str)> = by_types["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["appName"].as_str().unwrap(),
                &c["appModules"],
                c["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        typed,
        [
            ("acme-crm", &json!(["*"]), "pending"),
            ("beta-desk", &json!(["*"]), "pending")
        ],
        "{by_types}"
    );
    let stored = db
        .get_request(request_id(&by_types["request"]["id"]))
        .await
        .unwrap()
        .expect("create-by-credentials request stored");
    assert_eq!(stored.recipient_kind, "internal");
    assert_eq!(stored.recipient_user_id, Some(agency.teammate.id));
    let stored_credentials = db.list_credentials(stored.id).await.unwrap();
    assert_eq!(stored_credentials[0].connection_name, "CRM by type");
    assert_eq!(stored_credentials[1].note.as_deref(), Some("The desk key"));
    // A plain team member may not ask someone outside the organization (SPEC §3).
    let message = run.failed("credentialRequests.createByCredentials:external", 403);
    assert!(message.contains("outside the organization"), "{message}");
    let message = run.failed("credentialRequests.createByCredentials:no-provider", 400);
    assert!(message.contains("one known recipient"), "{message}");
    // Only the three creations that had to succeed created anything (and the
    // two deletions below took two away).
    assert_eq!(count_requests(&agency).await, requests_before + 3 - 2);

    // extendConnection: no OAuth yet, so a visible connection gets a clear 400
    // on connectionId; an unknown one a 404.
    let message = run.failed("credentialRequests.extendConnection", 400);
    assert!(
        message.contains(&format!("connection {acme_connection}"))
            && message.contains("no OAuth scopes to extend"),
        "{message}"
    );
    let message = run.failed("credentialRequests.extendConnection:unknown", 404);
    assert!(
        message.contains("connection 987654321 not found"),
        "{message}"
    );

    // Connection reads.
    let read_calls = [
        "connections.list",
        "connections.get",
        "connections.verify",
        "connections.scoped",
    ];
    if CONNECTIONS_API {
        let listed = run.ok("connections.list");
        assert!(ids(listed).contains(&json!(acme_connection)), "{listed}");
        assert!(ids(listed).contains(&json!(beta_connection)), "{listed}");
        let got = run.ok("connections.get");
        assert_eq!(got["id"], json!(acme_connection), "{got}");
        assert_eq!(run.ok("connections.verify"), &json!(true));
        assert_eq!(run.ok("connections.scoped"), &json!(true));
    } else {
        for call in read_calls {
            let line = run.line(call);
            assert!(
                line["ok"] == false
                    && line["status"] == 404
                    && line["message"].as_str().unwrap_or_default().contains("no such API endpoint"),
                "Credence now answers {call}: set CONNECTIONS_API to true in crates/credence/tests/api/sdk.rs \
                 so that this test checks the answers. Got: {line}"
            );
        }
    }
    let message = run.failed("connections.listEditableParameters", 404);
    assert!(message.contains("no such API endpoint"), "{message}");

    // Connection writes: the own connection was added (verified, sealed),
    // renamed and deleted, secret and all; a refused key added nothing.
    let own = run.ok("connections.create");
    assert_eq!(own["name"], "SDK own", "{own}");
    assert_eq!(own["accountName"], "acme-crm", "{own}");
    let own_id = own["id"].as_i64().unwrap();
    let message = run.failed("connections.create:refused-key", 400);
    assert!(message.contains("not accepted"), "{message}");
    assert_eq!(run.ok("connections.rename")["name"], "SDK own (renamed)");
    run.failed("connections.update", 404);
    assert_eq!(run.ok("connections.delete"), &Value::Null);
    run.failed("connections.get:deleted", 404);
    assert!(db.get_connection(own_id).await.unwrap().is_none());
    let events: Vec<String> = {
        let filter = credence_store::AuditFilter {
            limit: 10_000,
            ..Default::default()
        };
        db.list_audit(&filter)
            .await
            .unwrap()
            .0
            .into_iter()
            .filter(|e| e.target_id == own_id.to_string())
            .map(|e| e.event)
            .collect()
    };
    for event in [
        "connection.created",
        "connection.renamed",
        "connection.deleted",
    ] {
        assert!(events.contains(&event.to_string()), "{event} in {events:?}");
    }

    // deleteCredential: the connection is gone, the credential pending again.
    let reset = run.ok("credentialRequests.deleteCredential");
    assert_eq!(reset["id"], connected_credential.as_str(), "{reset}");
    assert_eq!(reset["state"], "pending", "{reset}");
    assert_eq!(reset["remoteId"], Value::Null, "{reset}");
    let stored = db
        .get_credential(credential_id(&json!(connected_credential)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state.as_str(), "pending");
    assert_eq!(stored.connection_id, None);
    assert!(db.get_connection(acme_connection).await.unwrap().is_none());
    run.failed("credentialRequests.deleteCredential:again", 409);
    // The request's other app keeps its connection.
    let others = db
        .list_credentials(RequestId::parse("id", &connected_request).unwrap())
        .await
        .unwrap();
    assert_eq!(others[1].state.as_str(), "authorized");
    assert_eq!(others[1].connection_id, Some(beta_connection));
    assert!(db.get_connection(beta_connection).await.unwrap().is_some());

    // delete (always confirmed by the SDK): the requests, and the live
    // connection of one, are gone.
    assert_eq!(run.ok("credentialRequests.delete"), &Value::Null);
    assert_eq!(
        run.ok("credentialRequests.delete:live-connection"),
        &Value::Null
    );
    for gone in [&disposable_request, &doomed_request] {
        let id = RequestId::parse("id", gone).unwrap();
        assert!(db.get_request(id).await.unwrap().is_none(), "{gone}");
        assert!(db.list_credentials(id).await.unwrap().is_empty(), "{gone}");
    }
    assert!(db.get_request(created_id).await.unwrap().is_some());
    assert!(db
        .get_connection(doomed_connections[0])
        .await
        .unwrap()
        .is_none());
    run.failed("credentialRequests.get:deleted", 404);

    // Every line was checked above: no call went unexamined.
    let mut expected: BTreeSet<String> = set(&[
        "sdk.surface",
        "users.me",
        "organizations.list",
        "teams.list",
        "teams.get",
        "credentialRequests.listAppModulesWithCredentials",
        "credentialRequests.listAppModulesWithCredentials:version",
        "credentialRequests.listAppModulesWithCredentials:unknown",
        "credentialRequests.create",
        "credentialRequests.create:invalid",
        "credentialRequests.list",
        "credentialRequests.list:options",
        "credentialRequests.list:deprecated-form",
        "credentialRequests.get",
        "credentialRequests.get:cols",
        "credentialRequests.get:unknown",
        "credentialRequests.getDetail",
        "credentialRequests.getDetail:recipient",
        "credentialRequests.declineCredential",
        "credentialRequests.declineCredential:reason",
        "credentialRequests.declineCredential:requester",
        "credentialRequests.createAction",
        "credentialRequests.createAction:no-provider",
        "credentialRequests.createByCredentials",
        "credentialRequests.createByCredentials:external",
        "credentialRequests.createByCredentials:no-provider",
        "credentialRequests.extendConnection",
        "credentialRequests.extendConnection:unknown",
        "connections.listEditableParameters",
        "connections.create",
        "connections.create:refused-key",
        "connections.rename",
        "connections.update",
        "connections.delete",
        "connections.get:deleted",
        "credentialRequests.deleteCredential",
        "credentialRequests.deleteCredential:again",
        "credentialRequests.delete",
        "credentialRequests.delete:live-connection",
        "credentialRequests.get:deleted",
    ]);
    expected.extend(set(&read_calls));
    assert_eq!(
        run.lines.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "compat.mjs made other calls than this test checks"
    );

    // The audit trail saw what the SDK did.
    let events = agency.audit_events().await;
    let count = |name: &str| events.iter().filter(|e| e.as_str() == name).count();
    assert_eq!(count("credential_request.created"), 6, "{events:?}");
    assert_eq!(count("credential.declined"), 2, "{events:?}");
    assert_eq!(count("credential.delete_remote"), 1, "{events:?}");
    assert_eq!(count("credential_request.deleted"), 2, "{events:?}");
    assert_eq!(count("member.invited"), 0, "{events:?}");

    drop(db);
    agency.app.stop().await;
}

/// A request of the requester to Tom for `apps`, which Tom authorized with
/// `keys` (the app accepts them): (request id, credential ids, connection ids).
async fn authorized_request(
    agency: &Agency,
    apps: &[&str],
    keys: &[&str],
) -> (String, Vec<String>, Vec<i64>) {
    let (request, credentials, _) = agency.create_request(agency.teammate.id, apps).await;
    let mut connections = Vec::new();
    for (credential, key) in credentials.iter().zip(keys) {
        agency.upstream.accept(key);
        let (status, body) = agency
            .post(
                &format!("/api/v2/credential-requests/credentials/{credential}/authorize"),
                &agency.teammate_token,
                Some(json!({ "data": { "apiKey": key } })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let connection = body["credential"]["remoteId"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("an authorized credential names its connection: {body}"));
        connections.push(connection);
    }
    (request, credentials, connections)
}

async fn count_requests(agency: &Agency) -> usize {
    let filter = credence_store::RequestFilter {
        limit: 10_000,
        ..credence_store::RequestFilter::within(credence_store::RequestScope::Sent {
            teams: vec![agency.app.team],
            recipient: None,
        })
    };
    let (_, total) = agency.app.db().await.list_requests(&filter).await.unwrap();
    total as usize
}

on_both_backends!(the_make_sdk_works_against_credence);

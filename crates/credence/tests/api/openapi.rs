//! The OpenAPI document (issue 14, SPEC §11): `GET /api/v2/openapi.json`
//! describes every route the server serves, and only those; every operation
//! has a summary, its answers and (when it needs a token) both security
//! schemes with its scope; the docs page lists every operation. Then
//! schemathesis (PyPI, pinned in `tests/schemathesis/requirements.txt`, in a
//! venv `scripts/test` makes) fuzzes the live server from the document, with
//! a token holding every scope over seeded data: no 5xx, no answer whose
//! status, content type or body the document does not describe.

use crate::on_both_backends;
use crate::support::{api_key_app, spawn_app_with, TestApp, Upstream};
use credence::service::features;
use credence_store::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The methods an OpenAPI path item may describe that a route may serve.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

const EVERY_SCOPE: &str = "credential-requests:read,credential-requests:write,connections:read,\
    connections:write,connections:use,organization:read,organizations:read,teams:read,user:read,\
    user:write,webhooks:read,webhooks:write";

/// The key the seeded connections use (the upstream accepts it).
const KEY: &str = "ledger-openapi-key-8d2f";

/// A route's path as OpenAPI writes it: `{*path}` is `{path}`.
fn as_documented(route: &str) -> String {
    route.replace("{*", "{")
}

/// A concrete path for a route, to probe it.
fn probe_path(route: &str) -> String {
    route
        .split('/')
        .map(|segment| {
            if segment.starts_with("{*") {
                "x"
            } else if segment.starts_with('{') {
                "1"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The methods the live server serves on `route`, from the `Allow` header of
/// a 405 to a method no route uses; `*` when it takes every method.
async fn served_methods(app: &TestApp, route: &str) -> BTreeSet<String> {
    let response = app
        .client
        .request(
            Method::from_bytes(b"PROPFIND").unwrap(),
            app.url(&probe_path(route)),
        )
        .send()
        .await
        .unwrap();
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return BTreeSet::from(["*".to_string()]);
    }
    let allow = response
        .headers()
        .get("allow")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("the 405 for {route} has no Allow header"))
        .to_string();
    allow
        .split(',')
        .map(|method| method.trim().to_string())
        .filter(|method| !method.is_empty() && method != "HEAD")
        .collect()
}

async fn document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/api/v2/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "the document's content type"
    );
    response.json().await.unwrap()
}

/// The methods `document` describes on `path`, upper case.
fn described_methods(document: &Value, path: &str) -> BTreeSet<String> {
    document["paths"][path]
        .as_object()
        .map(|item| {
            item.keys()
                .map(|method| method.to_uppercase())
                .filter(|method| METHODS.contains(&method.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

async fn every_route_is_described_and_every_description_is_served(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let document = document(&app).await;
    assert!(
        document["openapi"]
            .as_str()
            .unwrap_or("")
            .starts_with("3.1"),
        "not OpenAPI 3.1: {}",
        document["openapi"]
    );
    let routes = credence::startup::documented_paths();
    assert!(routes.len() > 40, "only {} routes listed", routes.len());
    assert!(routes.iter().any(|route| route == "/mcp"), "{routes:?}");
    let mut undescribed = Vec::new();
    let mut unserved = Vec::new();
    for route in &routes {
        let path = as_documented(route);
        let described = described_methods(&document, &path);
        let served = served_methods(&app, route).await;
        if served.contains("*") {
            // Served with `any` (the broker): every method described must be
            // answered by the route (here 401, no token), and one at least is.
            if described.is_empty() {
                undescribed.push(format!("* {route}"));
            }
            for method in &described {
                let answer = app
                    .client
                    .request(
                        Method::from_bytes(method.as_bytes()).unwrap(),
                        app.url(&probe_path(route)),
                    )
                    .send()
                    .await
                    .unwrap();
                if answer.status() == StatusCode::METHOD_NOT_ALLOWED {
                    unserved.push(format!("{method} {path}"));
                }
            }
            continue;
        }
        for method in served.difference(&described) {
            undescribed.push(format!("{method} {route}"));
        }
        for method in described.difference(&served) {
            unserved.push(format!("{method} {path}"));
        }
    }
    let served_paths: BTreeSet<String> = routes.iter().map(|r| as_documented(r)).collect();
    for path in document["paths"].as_object().unwrap().keys() {
        if !served_paths.contains(path) {
            unserved.push(format!("(any method) {path}"));
        }
    }
    assert!(
        undescribed.is_empty(),
        "routes served without a description in the OpenAPI document (add a #[utoipa::path] next to the handler and list it in api/doc.rs's Api, or the broker's lib.rs): {undescribed:#?}"
    );
    assert!(
        unserved.is_empty(),
        "the OpenAPI document describes what is not served: {unserved:#?}"
    );

    // Every operation: a summary, answers with descriptions, the error
    // envelope, and (when it needs a token) both schemes with the same scopes.
    let mut incomplete = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let name = format!("{} {path}", method.to_uppercase());
            if operation["summary"].as_str().unwrap_or("").is_empty() {
                incomplete.push(format!("{name}: no summary"));
            }
            let responses = operation["responses"].as_object().unwrap();
            if !responses.contains_key("500") || !responses.contains_key("400") {
                incomplete.push(format!("{name}: the shared error answers are missing"));
            }
            if let Some(security) = operation["security"].as_array() {
                let token = security.iter().find_map(|r| r.get("token"));
                let bearer = security.iter().find_map(|r| r.get("bearer"));
                if token.is_none() || token != bearer {
                    incomplete.push(format!("{name}: Token and Bearer differ: {security:?}"));
                }
                if !responses.contains_key("401") {
                    incomplete.push(format!("{name}: needs a token but documents no 401"));
                }
            }
        }
    }
    assert!(incomplete.is_empty(), "{incomplete:#?}");
    for scheme in ["token", "bearer"] {
        assert!(
            document["components"]["securitySchemes"][scheme].is_object(),
            "no security scheme {scheme}"
        );
    }
    let error = &document["components"]["schemas"]["Error"]["properties"];
    for field in ["message", "code", "detail", "suberrors"] {
        assert!(
            error[field].is_object(),
            "the Error schema lacks {field}: {error}"
        );
    }
    // What a token needs is what the handler checks: `user:read` for /users/me.
    assert_eq!(
        document["paths"]["/api/v2/users/me"]["get"]["security"][0]["token"],
        json!(["user:read"])
    );

    // The page: every operation, server-rendered, under the CSP.
    let page = app
        .client
        .get(app.url("/api/v2/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "inline script or style"
    );
    for path in document["paths"].as_object().unwrap().keys() {
        let escaped = path.replace('&', "&amp;");
        assert!(html.contains(&escaped), "the docs page lacks {path}");
    }
    app.stop().await;
}

/// The schemathesis program of the venv `scripts/test` makes.
fn schemathesis() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let program = root.join("tests/schemathesis/.venv/bin/schemathesis");
    assert!(
        program.exists(),
        "{} is missing: run scripts/test (or python3 -m venv tests/schemathesis/.venv && tests/schemathesis/.venv/bin/pip install -r tests/schemathesis/requirements.txt)",
        program.display()
    );
    program
}

/// A world for the fuzzer to reach past 401 and 404: an app served by a
/// local upstream, a request authorized by a member (so a credential and its
/// connection exist), a team's own connection, a webhook; the owner's token
/// with every scope.
async fn seeded(backend: Backend) -> (TestApp, Upstream, String) {
    let upstream = Upstream::start().await;
    upstream.accept(KEY);
    crate::support::register_secret(KEY);
    let apps = tempfile::tempdir().unwrap();
    std::fs::write(
        apps.path().join("ledger.toml"),
        api_key_app("ledger", "Ledger", &upstream),
    )
    .unwrap();
    let apps_dir = apps.keep();
    let app = spawn_app_with(backend, |config| {
        config.apps_dir = Some(apps_dir);
        config.jobs.webhooks.allow_private_hosts = true;
    })
    .await;
    let owner = app
        .add_person(
            "owen@agency.example",
            app.organization,
            "owner",
            Some((app.team, "admin")),
        )
        .await;
    let recipient = app
        .add_person(
            "rita@agency.example",
            app.organization,
            "member",
            Some((app.team, "member")),
        )
        .await;
    for person in [&owner, &recipient] {
        features::grant(&app.store, &app.vault(), &person.email)
            .await
            .unwrap();
    }
    let token = app.token(owner.id, EVERY_SCOPE).await;
    let recipient_token = app.token(recipient.id, EVERY_SCOPE).await;
    let (status, created) = app
        .post(
            "/api/v2/credential-requests/requests/v2",
            &token,
            Some(json!({
                "name": "Ledger access",
                "teamId": app.team,
                "credentials": [{ "appName": "ledger", "appModules": ["*"] }],
                "provider": { "providerMakeUserId": recipient.id },
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let credential = created["request"]["credentials"][0]["id"].as_str().unwrap();
    let (status, body) = app
        .post(
            &format!("/api/v2/credential-requests/credentials/{credential}/authorize"),
            &recipient_token,
            Some(json!({ "data": { "apiKey": KEY } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            &format!("/api/v2/connections?teamId={}", app.team),
            &token,
            Some(json!({ "accountName": "Own ledger", "accountType": "ledger", "apiKey": KEY })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post(
            "/api/v2/webhooks",
            &token,
            Some(json!({ "teamId": app.team, "url": "http://127.0.0.1:9/hook", "events": ["*"] })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    crate::support::register_secret(body["webhook"]["secret"].as_str().unwrap_or_default());
    (app, upstream, token)
}

/// Runs schemathesis against `app` with `token`: `max_examples` cases per
/// operation, seed `seed`; panics with its output unless it found nothing.
pub async fn run_schemathesis(app: &TestApp, token: &str, max_examples: u32, seed: u64) -> String {
    let report = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(schemathesis())
        .arg("run")
        .arg(app.url("/api/v2/openapi.json"))
        .args(["--url", &app.address])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--seed", &seed.to_string()])
        .args(["--max-examples", &max_examples.to_string()])
        .args(["--workers", "2"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--header", &format!("Authorization: Token {token}")])
        // The proxy passes the app's answers back as they are (an app's 5xx
        // is the app's); its own refusals are checked by broker.rs. A token
        // may delete itself: fuzzing DELETE /users/me/api-tokens/{id} would
        // soon delete the fuzzer's own (tokens.rs checks that route).
        .args(["--exclude-path-regex", "/proxy/|/api-tokens/\\{"])
        .args(["--suppress-health-check", "all"])
        .args(["--request-timeout", "20"])
        .args(["--output-truncate", "false"])
        .current_dir(report.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .await
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}):\n{stdout}\n{stderr}",
        output.status.code()
    );
    // Past the token: a run whose calls were all refused 401/403 (a token
    // deleted, a header lost) proves nothing.
    assert!(
        !stdout.contains("Authentication failed"),
        "schemathesis's calls did not get past authentication:\n{stdout}"
    );
    crate::support::assert_no_secret("schemathesis output", &stdout);
    stdout
}

async fn schemathesis_finds_no_server_error_and_no_schema_violation(backend: Backend) {
    let (app, _upstream, token) = seeded(backend).await;
    let output = run_schemathesis(&app, &token, 25, 20261201).await;
    assert!(output.contains("passed"), "{output}");
    app.stop().await;
}

on_both_backends!(
    every_route_is_described_and_every_description_is_served,
    schemathesis_finds_no_server_error_and_no_schema_violation,
);

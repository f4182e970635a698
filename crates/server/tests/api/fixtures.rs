//! Fixtures for credential-request tests: a real local HTTP API playing the
//! third-party app (it accepts the API keys it is told to accept), operator app
//! files pointing at it, and typed helpers for the request API.

use crate::helpers::{spawn_app_with, Person, TestApp};
use axum::http::{HeaderMap, StatusCode};
use credence_store::Backend;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The app's API: `GET /v1/me` answers 200 for an accepted key, 401 otherwise.
#[derive(Clone)]
pub struct Upstream {
    pub port: u16,
    accepted: Arc<Mutex<HashSet<String>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let accepted: Arc<Mutex<HashSet<String>>> = Arc::default();
        let keys = accepted.clone();
        let check = move |headers: HeaderMap| {
            let keys = keys.clone();
            async move {
                let given = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let key = given.strip_prefix("Bearer ").unwrap_or("");
                if keys.lock().unwrap().contains(key) {
                    (
                        StatusCode::OK,
                        axum::Json(json!({ "id": 1, "name": "Acme account" })),
                    )
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({ "error": "invalid key" })),
                    )
                }
            }
        };
        let router = axum::Router::new().route("/v1/me", axum::routing::get(check));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Upstream { port, accepted }
    }

    /// The app starts accepting `key` (an account's key was issued).
    pub fn accept(&self, key: &str) {
        crate::helpers::register_secret(key);
        self.accepted.lock().unwrap().insert(key.to_string());
    }

    /// The app stops accepting `key` (revoked at the provider).
    pub fn reject(&self, key: &str) {
        self.accepted.lock().unwrap().remove(key);
    }
}

/// An operator app file for an API-key app served by `upstream`.
pub fn api_key_app(key: &str, label: &str, upstream: &Upstream) -> String {
    format!(
        r#"key = "{key}"
label = "{label}"
allow_private_hosts = true

[[versions]]
version = 1
base_url = "http://127.0.0.1:{port}"
verify = {{ method = "GET", path = "/v1/me" }}

[versions.auth]
kind = "api_key"
fields = [{{ name = "apiKey", label = "API key", secret = true }}]
inject = {{ header = "Authorization", value = "Bearer {{apiKey}}" }}

[[versions.modules]]
key = "searchContacts"
label = "Search contacts"
kind = "search"
access = "read"
operations = ["GET /v1/contacts", "GET /v1/contacts/{{id}}"]

[[versions.modules]]
key = "createContact"
label = "Create a contact"
kind = "action"
access = "write"
operations = ["POST /v1/contacts"]
"#,
        port = upstream.port
    )
}

/// A running Credence with two local API-key apps (`acme-crm`, `beta-desk`)
/// and the people of a typical agency: Default team with a requester (member,
/// with the feature) and a teammate; a second team; an org admin.
pub struct Agency {
    pub app: TestApp,
    pub upstream: Upstream,
    pub requester: Person,
    pub requester_token: String,
    pub teammate: Person,
    pub teammate_token: String,
    pub other_team: credence_domain::TeamId,
    pub outsider: Person,
    pub outsider_token: String,
    pub admin_token: String,
}

pub const SCOPES: &str = "credential-requests:read,credential-requests:write";

impl Agency {
    pub async fn start(backend: Backend) -> Agency {
        Self::start_with(backend, &[], |_| {}).await
    }

    /// Like [`Agency::start`], with more operator app files (`(key, text)`) and
    /// a last say on the configuration.
    pub async fn start_with(
        backend: Backend,
        extra_apps: &[(&str, String)],
        adjust: impl FnOnce(&mut credence::config::Config),
    ) -> Agency {
        let upstream = Upstream::start().await;
        let apps = tempfile::tempdir().unwrap();
        std::fs::write(
            apps.path().join("acme-crm.toml"),
            api_key_app("acme-crm", "Acme CRM", &upstream),
        )
        .unwrap();
        std::fs::write(
            apps.path().join("beta-desk.toml"),
            api_key_app("beta-desk", "Beta Desk", &upstream),
        )
        .unwrap();
        for (key, text) in extra_apps {
            std::fs::write(apps.path().join(format!("{key}.toml")), text).unwrap();
        }
        let apps_dir = apps.keep();
        let app = spawn_app_with(backend, |config| {
            config.apps_dir = Some(apps_dir);
            adjust(config);
        })
        .await;
        let team = app.team;
        let requester = app
            .add_person(
                "rita@agency.example",
                app.organization,
                "member",
                Some((team, "member")),
            )
            .await;
        credence::service::features::grant(&app.store, &app.vault(), &requester.email)
            .await
            .unwrap();
        let teammate = app
            .add_person(
                "tom@agency.example",
                app.organization,
                "member",
                Some((team, "member")),
            )
            .await;
        let other_team =
            credence::service::identity::create_team(&app.store, app.organization, "Other")
                .await
                .unwrap()
                .id;
        let outsider = app
            .add_person(
                "olga@agency.example",
                app.organization,
                "member",
                Some((other_team, "member")),
            )
            .await;
        let requester_token = app.token(requester.id, SCOPES).await;
        let teammate_token = app.token(teammate.id, SCOPES).await;
        let outsider_token = app.token(outsider.id, SCOPES).await;
        let admin_token = app.token(app.admin_id().await, SCOPES).await;
        Agency {
            app,
            upstream,
            requester,
            requester_token,
            teammate,
            teammate_token,
            other_team,
            outsider,
            outsider_token,
            admin_token,
        }
    }

    /// A request body for `apps` asked of the user `recipient`.
    pub fn body_for(&self, recipient: credence_domain::UserId, apps: &[&str]) -> Value {
        json!({
            "name": "Onboarding Acme",
            "teamId": self.app.team,
            "description": "Access for the weekly sync",
            "credentials": apps.iter().map(|app| json!({ "appName": app, "appModules": ["*"] })).collect::<Vec<_>>(),
            "provider": { "providerMakeUserId": recipient },
        })
    }

    pub async fn post(&self, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .app
            .client
            .post(self.app.url(path))
            .header("Authorization", format!("Token {token}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        crate::helpers::assert_no_secret(&format!("the answer to POST {path}"), &body.to_string());
        (status, body)
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self
            .app
            .client
            .delete(self.app.url(path))
            .header("Authorization", format!("Token {token}"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates a request as the requester; returns (request id, credential ids, publicUri).
    pub async fn create_request(
        &self,
        recipient: credence_domain::UserId,
        apps: &[&str],
    ) -> (String, Vec<String>, String) {
        let (status, body) = self
            .post(
                "/api/v2/credential-requests/requests/v2",
                &self.requester_token,
                Some(self.body_for(recipient, apps)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["request"]["id"].as_str().unwrap().to_string();
        let credentials = body["request"]["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        (
            id,
            credentials,
            body["publicUri"].as_str().unwrap().to_string(),
        )
    }

    /// The undelivered notifications, opened: (kind, recipient email, payload).
    pub async fn outbox(&self) -> Vec<(String, String, Value)> {
        let vault = self.app.vault();
        let messages = self
            .app
            .store
            .db()
            .await
            .unwrap()
            .list_unsent_outbox()
            .await
            .unwrap();
        messages
            .into_iter()
            .map(|m| {
                let payload = credence::service::audit::open_outbox(&vault, &m)
                    .expect("outbox payload opens");
                (m.kind, m.recipient_email, payload)
            })
            .collect()
    }

    /// The audit events recorded, oldest first.
    pub async fn audit_events(&self) -> Vec<String> {
        let filter = credence_store::AuditFilter {
            limit: 10_000,
            oldest_first: true,
            ..Default::default()
        };
        let (entries, _) = self
            .app
            .store
            .db()
            .await
            .unwrap()
            .list_audit(&filter)
            .await
            .unwrap();
        entries.into_iter().map(|e| e.event).collect()
    }
}

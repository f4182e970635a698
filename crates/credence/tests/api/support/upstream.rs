//! A real local HTTP API playing a third-party app: `GET /v1/me` (and
//! `GET /v1/contacts`, for the broker) answers 200 for an accepted API key
//! and 401 otherwise, and can hold its answer for one key
//! until the test releases it (to widen a race window without a sleep); plus
//! the operator app file that points Credence at it.

use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// One verify call held by [`Upstream::hold`]: `arrived` fires when the call
/// came in; dropping or sending on `release` lets the answer go.
pub struct Held {
    pub arrived: oneshot::Receiver<()>,
    pub release: oneshot::Sender<()>,
}

/// A held call's two signals: "it arrived" to the test, "let it go" from it.
type HoldSignals = (oneshot::Sender<()>, oneshot::Receiver<()>);

/// The app's API: `GET /v1/me` answers 200 for an accepted key, 401 otherwise.
#[derive(Clone)]
pub struct Upstream {
    pub port: u16,
    accepted: Arc<Mutex<HashSet<String>>>,
    /// Per key: tell the test the call arrived, then wait for its release.
    holds: Arc<Mutex<HashMap<String, HoldSignals>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let upstream = Upstream {
            port: 0,
            accepted: Arc::default(),
            holds: Arc::default(),
        };
        let (accepted, holds) = (upstream.accepted.clone(), upstream.holds.clone());
        let check = move |headers: HeaderMap| {
            let (accepted, holds) = (accepted.clone(), holds.clone());
            async move {
                let key = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("")
                    .to_string();
                let hold = holds.lock().unwrap().remove(&key);
                if let Some((arrived, release)) = hold {
                    let _ = arrived.send(());
                    let _ = release.await;
                }
                if accepted.lock().unwrap().contains(&key) {
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
        // What the broker's calls reach (`GET /v1/contacts`): the same
        // answer for an accepted key, never held.
        let known = upstream.accepted.clone();
        let contacts = move |headers: HeaderMap| {
            let known = known.clone();
            async move {
                let key = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                if known.lock().unwrap().contains(key) {
                    (
                        StatusCode::OK,
                        axum::Json(json!({ "contacts": [{ "id": 1, "name": "Jane Roe" }] })),
                    )
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({ "error": "invalid key" })),
                    )
                }
            }
        };
        let router = axum::Router::new()
            .route("/v1/me", axum::routing::get(check))
            .route("/v1/contacts", axum::routing::get(contacts));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Upstream { port, ..upstream }
    }

    /// The app starts accepting `key` (an account's key was issued).
    pub fn accept(&self, key: &str) {
        super::register_secret(key);
        self.accepted.lock().unwrap().insert(key.to_string());
    }

    /// The app stops accepting `key` (revoked at the provider).
    pub fn reject(&self, key: &str) {
        self.accepted.lock().unwrap().remove(key);
    }

    /// The next verify call with `key` waits until the answer is released.
    pub fn hold(&self, key: &str) -> Held {
        let (arrived_sender, arrived) = oneshot::channel();
        let (release, release_receiver) = oneshot::channel();
        self.holds
            .lock()
            .unwrap()
            .insert(key.to_string(), (arrived_sender, release_receiver));
        Held { arrived, release }
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

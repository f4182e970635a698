//! A real local HTTP API for the broker's tests: a contacts app that takes one
//! API key (`Authorization: Bearer <key>`), remembers every call it got
//! (method, path and query, headers, body size), sets a cookie on every
//! answer, redirects `/v1/contacts/moved` to another path, and counts the
//! bytes of a streamed upload; plus the operator app file that points
//! Credence at it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::{Arc, Mutex};

/// One call the app got.
#[derive(Debug, Clone)]
pub struct SeenCall {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
}

#[derive(Clone)]
pub struct ContactsApi {
    pub port: u16,
    pub key: String,
    seen: Arc<Mutex<Vec<SeenCall>>>,
}

impl ContactsApi {
    pub async fn start() -> ContactsApi {
        let key = format!("contacts-key-{}", uuid::Uuid::new_v4().simple());
        super::register_secret(&key);
        let seen: Arc<Mutex<Vec<SeenCall>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (accepted, log) = (key.clone(), seen.clone());
        let answer = move |request: Request| {
            let (accepted, log) = (accepted.clone(), log.clone());
            async move { serve(request, &accepted, &log, port).await }
        };
        let router = axum::Router::new()
            .route("/v1/me", get(answer.clone()))
            .route("/v1/contacts", get(answer.clone()).post(answer.clone()))
            .route(
                "/v1/contacts/{id}",
                get(answer.clone()).delete(answer.clone()),
            )
            .route("/v1/elsewhere", get(answer));
        tokio::spawn(async move { axum::serve(listener, router).await });
        ContactsApi { port, key, seen }
    }

    /// Every call the app got, oldest first.
    pub fn seen(&self) -> Vec<SeenCall> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(request: Request, key: &str, log: &Mutex<Vec<SeenCall>>, port: u16) -> Response {
    let (parts, body) = request.into_parts();
    let body_bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map(|b| b.len())
        .unwrap_or(0);
    let path = parts.uri.path().to_string();
    log.lock().unwrap().push(SeenCall {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
    });
    let authorized = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {key}").as_str());
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": "invalid key" })),
        )
            .into_response();
    }
    let (status, body) = match (parts.method.as_str(), path.as_str()) {
        ("GET", "/v1/contacts/moved") => {
            return Response::builder()
                .status(StatusCode::FOUND)
                .header(
                    header::LOCATION,
                    format!("http://127.0.0.1:{port}/v1/elsewhere"),
                )
                .header(header::SET_COOKIE, "sid=upstream-session")
                .body(Body::empty())
                .unwrap();
        }
        ("GET", "/v1/contacts/busy") => {
            return Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header(header::RETRY_AFTER, "7")
                .body(Body::from(r#"{"error":"slow down"}"#))
                .unwrap();
        }
        ("POST", _) => (StatusCode::CREATED, json!({ "received": body_bytes })),
        _ => (
            StatusCode::OK,
            json!({ "contacts": [{ "id": 1, "name": "Jane Roe" }] }),
        ),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::SET_COOKIE, "sid=upstream-session")
        .header("x-request-id", "upstream-1")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// The operator app file for `api`: search and create granted in the usual
/// test request, delete not.
pub fn contacts_app(key: &str, api: &ContactsApi) -> String {
    format!(
        r#"key = "{key}"
label = "Contacts"
allow_private_hosts = true

[[versions]]
version = 1
base_url = "http://127.0.0.1:{port}"
verify = {{ method = "GET", path = "/v1/me" }}
headers = {{ X-Api-Version = "2" }}

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

[[versions.modules]]
key = "deleteContact"
label = "Delete a contact"
kind = "action"
access = "write"
operations = ["DELETE /v1/contacts/{{id}}"]
"#,
        port = api.port
    )
}

//! A real local HTTP API for the broker's tests: a contacts app that takes one
//! API key (`Authorization: Bearer <key>`, or as the password of Basic with
//! the user [`BASIC_USER`]), remembers every call it got (method, path and
//! query, headers, body size), sets a cookie on every answer, redirects
//! `/v1/contacts/moved` to another path, counts the bytes of a streamed
//! upload, and, as careless apps do, echoes the credential back
//! (`/v1/contacts/echo-body`, `/v1/contacts/echo-header`) or answers
//! gzip whatever it was asked (`/v1/contacts/gzip`); plus the operator app
//! files that point Credence at it.

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

/// The username of the Basic variant of the app ([`contacts_basic_app`]).
pub const BASIC_USER: &str = "contacts-user";

#[derive(Clone)]
pub struct ContactsApi {
    pub port: u16,
    pub key: String,
    /// `base64(BASIC_USER:key)`, what the Basic variant sends.
    pub basic: String,
    seen: Arc<Mutex<Vec<SeenCall>>>,
    /// Permits for the next chunk of a stepwise echo.
    steps: Arc<tokio::sync::Semaphore>,
}

impl ContactsApi {
    pub async fn start() -> ContactsApi {
        let key = format!("contacts-key-{}", uuid::Uuid::new_v4().simple());
        super::register_secret(&key);
        let basic = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(format!("{BASIC_USER}:{key}"))
        };
        super::register_secret(&basic);
        let seen: Arc<Mutex<Vec<SeenCall>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let steps = Arc::new(tokio::sync::Semaphore::new(0));
        let accepted = Accepted {
            key: key.clone(),
            basic: basic.clone(),
            steps: steps.clone(),
        };
        let log = seen.clone();
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
        ContactsApi {
            port,
            key,
            basic,
            seen,
            steps,
        }
    }

    /// Lets a stepwise echo (`/v1/contacts/echo-body?stepwise`) send its
    /// next chunk.
    pub fn next_step(&self) {
        self.steps.add_permits(1);
    }

    /// Every call the app got, oldest first.
    pub fn seen(&self) -> Vec<SeenCall> {
        self.seen.lock().unwrap().clone()
    }
}

/// What the app accepts, and the steps of a stepwise echo.
#[derive(Clone)]
struct Accepted {
    key: String,
    basic: String,
    steps: Arc<tokio::sync::Semaphore>,
}

async fn serve(
    request: Request,
    accepted: &Accepted,
    log: &Mutex<Vec<SeenCall>>,
    port: u16,
) -> Response {
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
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let key = accepted.key.as_str();
    let authorized = authorization == format!("Bearer {key}")
        || authorization == format!("Basic {}", accepted.basic);
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
        ("GET", "/v1/contacts/echo-body") => {
            let stepwise = parts.uri.query() == Some("stepwise");
            return echo_body(
                key,
                &authorization,
                stepwise.then(|| accepted.steps.clone()),
            );
        }
        ("GET", "/v1/contacts/echo-header") => {
            return Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header("x-echo-authorization", &authorization)
                .header("x-echo-key", format!("key={key}; checked"))
                .header(
                    header::WWW_AUTHENTICATE,
                    format!("Bearer realm=\"contacts\", token=\"{key}\""),
                )
                .body(Body::from("{}"))
                .unwrap();
        }
        ("GET", "/v1/contacts/gzip") => {
            // `{}` gzipped, sent although the call asked for identity.
            const GZIPPED: [u8; 22] = [
                0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xab, 0xae, 0x05, 0x00,
                0x43, 0xbf, 0xa6, 0xa3, 0x02, 0x00, 0x00, 0x00,
            ];
            return Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Body::from(GZIPPED.to_vec()))
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

/// An error body that echoes the key and the `Authorization` it came in,
/// JSON, sent in chunks cut inside each echo, with its `Content-Length`.
/// Stepwise, each chunk after the first waits for [`ContactsApi::next_step`]
/// (the test's sign that the broker passed the previous one on), so that the
/// broker surely gets the echoes cut in two; each chunk is padded to be
/// longer than any form the broker holds back.
fn echo_body(
    key: &str,
    authorization: &str,
    steps: Option<Arc<tokio::sync::Semaphore>>,
) -> Response {
    let pad = "-".repeat(300);
    let text = format!(
        r#"{{"pad":"{pad}","error":"invalid key {key}","pad2":"{pad}","authorization":"{authorization}","pad3":"{pad}","again":"{key}","hint":"check the key"}}"#
    );
    let cuts = [
        text.find(key).map(|at| at + key.len() / 2),
        text.find(authorization)
            .map(|at| at + authorization.len() / 2),
        text.rfind(key).map(|at| at + 3),
    ];
    let mut cuts: Vec<usize> = cuts.into_iter().flatten().collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([text.len()]) {
        chunks.push(bytes::Bytes::copy_from_slice(&text.as_bytes()[from..cut]));
        from = cut;
    }
    let length = text.len();
    if let Some(steps) = &steps {
        // Steps given for an earlier echo are not this one's.
        steps.forget_permits(usize::MAX);
    }
    let state = (chunks.into_iter().enumerate(), steps);
    let stream = futures_util::stream::unfold(state, |(mut chunks, steps)| async move {
        let (at, chunk) = chunks.next()?;
        if let (true, Some(steps)) = (at > 0, &steps) {
            steps.acquire().await.ok()?.forget();
        }
        Some((Ok::<_, std::io::Error>(chunk), (chunks, steps)))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, length)
        .body(Body::from_stream(stream))
        .unwrap()
}

/// The Basic variant of [`contacts_app`]: the key as the password of
/// [`BASIC_USER`], the same operations.
pub fn contacts_basic_app(key: &str, api: &ContactsApi) -> String {
    contacts_app(key, api)
        .replace(
            r#"fields = [{ name = "apiKey", label = "API key", secret = true }]
inject = { header = "Authorization", value = "Bearer {apiKey}" }"#,
            &format!(
                r#"fields = [{{ name = "apiKey", label = "API key", secret = true }}]
username = "{BASIC_USER}"
password_field = "apiKey""#
            ),
        )
        .replace("kind = \"api_key\"", "kind = \"basic\"")
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

//! The HTTP layer: the JSON API under `/api/v2`, the web pages, and the
//! operational endpoints, with the middleware every request passes through
//! (body limit, metrics, request log, security headers, request timeout).
//!
//! **Invariant:** handlers extract, parse, call a service or one store read, and
//! map the result; rules live in `credence-service` and `credence-domain`.

pub mod api;
pub mod error;
pub mod extract;
mod ops;
pub mod routes;
pub mod web;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use credence_store::Store;
use credence_vault::Vault;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Instant;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// What the HTTP layer takes from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// How long a request may take, body and handler included; then it is
    /// answered 408.
    pub request_timeout: std::time::Duration,
    /// Peers (addresses or CIDR blocks) whose `forwarded_header` names the
    /// client; empty: the TCP peer is the client, and the header is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub forwarded_header: ForwardedHeader,
    /// Whether cookies must be `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// Whether a team's reminder policy may name a Slack webhook on a
    /// private, loopback or link-local address (or over plain http).
    pub reminders_allow_private_hosts: bool,
    /// Whether webhook endpoints may be private, loopback or link-local
    /// addresses, or plain http (the operator's `webhooks_allow_private_hosts`).
    pub webhooks_allow_private_hosts: bool,
}

impl Settings {
    /// The name of a cookie: `__Host-<name>` when cookies are `Secure`, so that a
    /// sibling subdomain can neither set nor shadow it (browsers accept such a
    /// cookie only `Secure`, with `Path=/` and no `Domain`); plain over http,
    /// where browsers refuse the prefix.
    pub fn cookie_name(&self, name: &str) -> String {
        if self.secure_cookies {
            format!("__Host-{name}")
        } else {
            name.to_string()
        }
    }
}

/// Which header a trusted proxy names the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …` (what most load balancers send).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1, …`.
    Forwarded,
}

impl ForwardedHeader {
    /// The names accepted in configuration.
    pub const NAMES: [&'static str; 2] = ["x-forwarded-for", "forwarded"];
}

impl std::str::FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            other => Err(format!(
                "forwarded header {other:?} is neither x-forwarded-for nor forwarded"
            )),
        }
    }
}

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub vault: Arc<Vault>,
    pub settings: Arc<Settings>,
    /// The base of links, without a trailing slash.
    pub public_url: Arc<str>,
    pub limits: Arc<web::SignInLimits>,
    pub metrics: PrometheusHandle,
    pub catalog: Arc<credence_catalog::Catalog>,
    /// For calls to apps (verification, and later the broker and OAuth).
    pub http: reqwest::Client,
    /// The configuration's OAuth clients, shared with every service context.
    pub oauth_clients: Arc<std::collections::BTreeMap<String, credence_provider::OAuthClient>>,
    /// API tokens verified lately (`auth::TokenCache`), shared by the API and the broker.
    pub tokens: Arc<credence_service::auth::TokenCache>,
    /// The local mailbox the web pages show; `None` when mail goes over SMTP.
    pub mailbox: Option<Arc<dyn web::mailbox::LocalMailbox>>,
}

impl AppState {
    /// What the services need, borrowed from the state.
    pub fn ctx(&self) -> credence_service::Context {
        credence_service::Context {
            store: self.store.clone(),
            vault: self.vault.clone(),
            catalog: self.catalog.clone(),
            public_url: self.public_url.clone(),
            http: self.http.clone(),
            oauth_clients: self.oauth_clients.clone(),
            clock: credence_service::clock::Clock::system(),
        }
    }
}

/// The whole application's routes and middleware.
pub fn router(state: AppState) -> Router {
    router_with(state, routes::Routes::new())
}

/// Where the JSON API is mounted.
pub const API_PREFIX: &str = "/api/v2";

/// The path of every JSON API route [`router_with`] serves with `more`: this
/// crate's under [`API_PREFIX`], and those of `more` that start with it.
pub fn api_paths(more: &routes::Routes) -> Vec<String> {
    api::routes()
        .paths()
        .iter()
        .map(|path| format!("{API_PREFIX}{path}"))
        .chain(
            more.paths()
                .iter()
                .filter(|path| path.starts_with(API_PREFIX))
                .map(|path| path.to_string()),
        )
        .collect()
}

/// The OpenAPI document of every route [`router_with`] serves with `more`
/// (served at `/api/v2/openapi.json`).
pub fn openapi(more: &routes::Routes) -> serde_json::Value {
    api::doc::document(more)
}

/// [`router`] with more routes (full paths) under the same middleware: the
/// broker's, which `credence` mounts so that this crate need not know it.
/// They come as [`routes::Routes`], so that [`api_paths`] lists them too.
pub fn router_with(state: AppState, more: routes::Routes) -> Router {
    let document = api::doc::Document::new(openapi(&more));
    let body_limit = state.settings.body_limit;
    let request_timeout = state.settings.request_timeout;
    let mut routes = Router::new()
        .nest(API_PREFIX, api::router())
        .merge(more.into_router())
        .merge(web::router())
        .merge(ops::router())
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            refuse_declared_oversize(body_limit, request, next)
        }))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            answer_in_time(request_timeout, request, next)
        }))
        .layer(middleware::from_fn(record_metrics))
        .layer(axum::Extension(document));
    for (name, value) in SECURITY_HEADERS {
        routes = routes.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    routes
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                // The matched route, never the raw path: paths may carry one-time tokens.
                let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
                tracing::info_span!("http", method = %request.method(), route = route.as_deref().unwrap_or("unmatched"))
            }),
        )
        .with_state(state)
}

/// The headers every answer carries (pages, the JSON API, errors alike):
/// nothing may frame us (the authorize and accept buttons would be clickjacked),
/// no content sniffing, no `Referer` (link pages carry one-time tokens in their
/// paths, and the callback a code in its query), and nothing is cached (every
/// page is someone's own, or carries a CSRF token). A handler's own value wins.
///
/// The Content-Security-Policy allows scripts, styles and images only from
/// Credence itself (no inline script or style), and no `<base>`: injected
/// markup can neither run nor load anything. It sets no `form-action`: browsers apply it to the redirect
/// after a post too, and the consent form's post redirects to the provider.
pub const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// See [`SECURITY_HEADERS`].
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'";

async fn fallback(request: Request) -> error::ApiError {
    error::ApiError::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path().chars().take(200).collect::<String>()
    ))
}

/// Past `limit` a request is answered 408 (our JSON error) and its handler
/// dropped: a slow client cannot hold a handler, or a database connection,
/// for long. Work that must finish once started (revocation at a provider
/// after a commit, a token refresh) runs in its own task and is not cut.
async fn answer_in_time(limit: std::time::Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(error::ApiError::RequestTimeout(
            limit.as_secs(),
        )),
    }
}

/// Answers 413 at once when a request declares a body over the limit, before any
/// of it is read. (Bodies without a declared length are cut at the limit by
/// `DefaultBodyLimit` as they are read.)
async fn refuse_declared_oversize(limit: usize, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return axum::response::IntoResponse::into_response(error::ApiError::PayloadTooLarge(
            limit,
        ));
    }
    next.run(request).await
}

/// Counts requests by route and status, and times them.
async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

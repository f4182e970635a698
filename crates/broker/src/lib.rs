//! The broker (SPEC §8): a team uses an authorized connection through
//! Credence, never by reading it. A call names the connection and a path on
//! its app; the broker checks who calls, the connection's state and the
//! granted modules ([`check`]), opens the credential at the moment of the call
//! (`service::secrets`), sends it only through `credence-provider` (the host
//! from the catalog, the checked resolver, no redirects), streams the answer
//! back with clean headers ([`headers`]) and with every secret value it sent
//! masked ([`scrub`]), and records the call ([`usage`]).
//!
//! It calls `credence-service` and `credence-provider`, and mounts its routes
//! into `credence-http`'s router from `credence` (`http::router_with`), so the
//! HTTP crate does not know it.

pub mod check;
mod headers;
pub mod limit;
pub mod mcp;
pub mod proxy;
mod scrub;
pub mod usage;

use axum::routing::{any, get};
use axum::Extension;
use credence_http::routes::Routes;
use utoipa::OpenApi;

/// The broker's part of the OpenAPI document (full paths), merged into the
/// one `/api/v2/openapi.json` serves through [`Routes::document`].
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    proxy::proxy,
    usage::of_connection,
    usage::of_credential,
    mcp::endpoint
))]
struct Api;

/// The broker's routes, full paths, for `http::router_with`.
pub fn routes(usage: usage::UsageLog, limit: std::sync::Arc<limit::CallLimit>) -> Routes {
    endpoints().layer(Extension(usage)).layer(Extension(limit))
}

/// [`routes`] without the state they share: what lists their paths
/// (`http::api_paths`) without starting the usage writer.
pub fn endpoints() -> Routes {
    Routes::new()
        .document(Api::openapi())
        .route("/api/v2/connections/{id}/proxy/{*path}", any(proxy::proxy))
        .route("/api/v2/connections/{id}/usage", get(usage::of_connection))
        .route("/mcp", any(mcp::endpoint))
        .route(
            "/api/v2/credential-requests/credentials/{id}/usage",
            get(usage::of_credential),
        )
}

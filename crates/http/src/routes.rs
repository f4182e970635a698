//! A router that remembers its paths: every JSON API route is added through
//! [`Routes`], so that the list of endpoints comes from the code that serves
//! them and cannot drift from it. The authorization matrix test
//! (`crates/credence/tests/api/authz_matrix.rs`) fails when a listed route has
//! no row; the methods of each path it reads from the live server (the
//! `Allow` header of a 405). Routes also carry their part of the OpenAPI
//! document ([`Routes::document`]), so that another crate's routes (the
//! broker's) bring their descriptions along; `tests/api/openapi.rs` fails when
//! a served path or method is not described, or a described one not served.

use crate::AppState;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, Route};
use axum::Router;
use std::convert::Infallible;
use tower::{Layer, Service};

/// [`axum::Router`] for the API, with the path of every route it was given.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    paths: Vec<&'static str>,
    openapi: Option<utoipa::openapi::OpenApi>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// [`Router::route`], remembering `path`.
    pub fn route(mut self, path: &'static str, method_router: MethodRouter<AppState>) -> Routes {
        self.router = self.router.route(path, method_router);
        self.paths.push(path);
        self
    }

    /// [`Router::merge`]: another crate's routes beside these, paths and all.
    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.paths.extend(other.paths);
        self.openapi = match (self.openapi, other.openapi) {
            (Some(mine), Some(theirs)) => Some(mine.merge_from(theirs)),
            (mine, theirs) => mine.or(theirs),
        };
        self
    }

    /// Adds the OpenAPI description of these routes (paths as they are
    /// mounted), merged into the document `router_with` serves.
    pub fn document(mut self, openapi: utoipa::openapi::OpenApi) -> Routes {
        self.openapi = Some(match self.openapi {
            Some(mine) => mine.merge_from(openapi),
            None => openapi,
        });
        self
    }

    /// The OpenAPI description given with [`Routes::document`], if any.
    pub fn openapi(&self) -> Option<&utoipa::openapi::OpenApi> {
        self.openapi.as_ref()
    }

    /// [`Router::layer`]: applies to the routes added so far; the paths stay.
    pub fn layer<L>(mut self, layer: L) -> Routes
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.router = self.router.layer(layer);
        self
    }

    /// The paths, as given (relative to where the router is nested).
    pub fn paths(&self) -> &[&'static str] {
        &self.paths
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

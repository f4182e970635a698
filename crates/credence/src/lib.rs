//! Credence: collect access to other people's app accounts without seeing a secret.
//!
//! This crate is the program: configuration, the operator CLI and startup
//! (the store, the vault, the catalog, the HTTP client, the background loops
//! and the server). What it runs lives below it: the use cases in
//! `credence-service`, the HTTP layer in `credence-http`, the client of the
//! apps in `credence-provider`. `ARCHITECTURE.md` has the map.

pub mod cli;
pub mod config;
pub mod mailbox;
pub mod startup;
pub mod telemetry;

pub use config::Config;
pub use startup::Application;

// The layers below, under the names the tests and the bench use.
pub use credence_http as http;
pub use credence_jobs as jobs;
pub use credence_provider as provider;
pub use credence_service as service;

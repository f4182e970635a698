//! Credence: collect access to other people's app accounts without seeing a secret.
//!
//! This crate is the application: configuration, the operator CLI, the services
//! that apply the rules, and the HTTP layer (JSON API and server-rendered web
//! pages). Rules and types live in `credence-domain`, SQL in `credence-store`,
//! encryption in `credence-vault`. `ARCHITECTURE.md` has the map.

pub mod cli;
pub mod config;
pub mod http;
pub mod service;
pub mod startup;
pub mod telemetry;

pub use config::Config;
pub use startup::Application;

//! The app catalog: which third-party apps Credence can connect to, how each one
//! authenticates, and which HTTP operations each of its modules may perform.
//!
//! Apps are data, not code: one TOML file per app (the format is documented in
//! this crate's `README.md`). The built-in files under `apps/` are compiled into
//! the binary; an operator adds their own from a directory. Every file is
//! validated when it is loaded.
//!
//! The rest of Credence asks the catalog three questions:
//! * which OAuth scopes a module selection needs ([`AppVersion::scopes_for`]),
//! * whether the broker may make a call ([`AppVersion::allows`],
//!   [`AppVersion::matching_operation`]), and
//! * where a connection's calls go ([`AppVersion::base_url_for`]).
//!
//! The catalog holds no secret and does no IO beyond reading the operator's
//! directory in [`Catalog::load`].

mod app;
mod auth;
mod builtin;
mod catalog;
mod error;
mod load;
pub mod operation;
mod url;

pub use app::{Access, AccountHost, App, AppVersion, Module, ModuleKind, ModuleSelection};
pub use auth::{
    ApiKey, Auth, AuthKind, Basic, ClientAuth, Custom, Field, Injection, InjectionTarget, OAuth2,
    RevocationStyle, Template, TemplatePart,
};
pub use builtin::BUILTIN;
pub use catalog::Catalog;
pub use error::CatalogError;
pub use operation::{InvalidPattern, Method, Operation, PathPattern};

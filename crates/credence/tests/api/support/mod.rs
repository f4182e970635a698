//! The one test client of the integration tests: start the real server
//! ([`spawn_app`], [`Agency`]), sign in (API tokens: [`TestApp::token`];
//! browser sessions: [`signed_in`], [`sign_in`]), call the API
//! ([`TestApp::send`]), read the audit log and the outbox
//! ([`TestApp::audit_entries`], [`TestApp::outbox`]), run the operator CLI
//! ([`TestApp::operator`]) and raw SQL on either backend ([`Sql`]), and play a
//! third-party app ([`Upstream`]) or the OAuth 2.0 provider ([`OidcProvider`],
//! with the agency that knows it: [`World`]), or drive a real headless
//! Chromium through the web UI ([`chrome::Browser`]). Every answer read through it is checked
//! against the suite's secrets ([`register_secret`]).

mod agency;
mod app;
mod browser;
pub mod chrome;
mod contacts;
mod jobs;
mod maildev;
mod oauth;
mod oidc;
mod sql;
mod upstream;
mod webhook_sink;

pub use agency::{credential_path, Agency, SCOPES};
pub use app::{
    assert_error, assert_no_secret, captured_logs, credence_bin, fresh_database,
    postgres_admin_url, register_secret, reserve_port, spawn_app, spawn_app_with,
    spawn_app_with_limits, wait_until, Person, TestApp, WAIT_LIMIT,
};
pub use browser::{
    accept_invitation_in, accept_invitation_link, browser, csrf_of, field_of, form_page, location,
    no_redirects, page, post_form, set_cookie, sign_in, signed_in,
};
pub use contacts::{contacts_app, contacts_basic_app, ContactsApi};
pub use jobs::{fast, runner, Instance, ManualClock};
pub use maildev::{Maildev, MaildevTls, ReceivedEmail};
pub use oauth::{context_at, oauth_app, world, world_with, World, APP};
pub use oidc::{OidcOptions, OidcProvider, Rotation};
pub use sql::Sql;
pub use upstream::{api_key_app, Held, Upstream};
pub use webhook_sink::WebhookSink;

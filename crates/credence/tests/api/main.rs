//! Integration tests: the real server over real sockets, each test on SQLite and
//! on PostgreSQL. One test binary, so linking happens once.

mod support;

mod audit;
mod authz_matrix;
mod bad_input;
mod broker;
mod browser_journeys;
mod browser_recipient;
mod browser_requester;
mod browser_shell;
mod cli;
mod connections;
mod jobs;
mod key_rotation;
mod listing;
mod mail;
mod mailbox_copies;
mod oauth;
mod oidc;
mod operations;
mod own_connections;
mod races;
mod read_api;
mod reminders;
mod request_rules;
mod requests;
mod revocation;
mod scoping;
mod sdk;
mod secrets;
mod sign_in;
mod sign_in_limits;
mod teardown;
mod token_hygiene;
mod tokens;
mod tracking;
mod web_connections;
mod web_pages;
mod web_recipient;
mod web_requester;
mod web_security;
mod web_settings;
mod webhook_attempts;
mod webhooks;

//! The authorization matrix (issue 14): every `/api/v2` endpoint called by
//! each kind of caller, with the status each must get, in one table
//! ([`MATRIX`]). The routes come from the code (`credence::startup::api_paths`,
//! which lists what the router serves) and their methods from the live server
//! (the `Allow` header of a 405): a route or method without a row fails the
//! test, and so does a row whose route is no longer served.
//!
//! The callers, in the order of each row's statuses: an owner and an admin of
//! the organization (in no team), an admin and a member of the sending team, a
//! guest (the recipient of the team's requests, in the team as accepting an
//! invitation leaves them), the owner of another organization, no token at
//! all, and the organization's owner with a token holding every scope but the
//! row's. Everyone but the guest (who cannot have it) has the
//! credential-requests feature, so that roles and scopes refuse, not the gate. Rows that change something get a fresh object for every
//! call (the `{fresh_…}` and state placeholders below), so no call sees what
//! another one did.

use crate::on_both_backends;
use crate::support::{api_key_app, spawn_app_with, Person, TestApp, Upstream};
use credence::service::{features, identity};
use credence_domain::Scope;
use credence_store::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The callers, in the order of [`Row::expect`].
const CALLERS: [&str; 8] = [
    "org owner",
    "org admin",
    "team admin",
    "team member",
    "guest",
    "other organization",
    "anonymous",
    "token lacking the scope",
];

/// One call and what each caller must get.
struct Row {
    /// The HTTP method; any method for a route served with `any` (the broker).
    method: &'static str,
    /// The route exactly as the router has it (`credence::startup::api_paths`).
    route: &'static str,
    /// The path and query called, with placeholders (see [`Scene::fill`]).
    call: &'static str,
    /// The JSON body, with the same placeholders; empty for none.
    body: &'static str,
    /// The scope the route needs; empty when it needs none (the last caller
    /// then holds a token of one unrelated scope).
    scope: &'static str,
    expect: [u16; 8],
}

const fn row(
    method: &'static str,
    route: &'static str,
    call: &'static str,
    body: &'static str,
    scope: &'static str,
    expect: [u16; 8],
) -> Row {
    Row {
        method,
        route,
        call,
        body,
        scope,
        expect,
    }
}

/// The API key the recipient authorizes with and the team's own connection uses.
const KEY: &str = "ledger-matrix-key-5c1e";

// Request bodies used by several rows. The new requests ask Nadia, a member of
// the organization in no team: a team member may only ask their own team, a
// team admin anyone of the organization.
const NEW_REQUEST: &str = r#"{"name":"Matrix","teamId":{team},"credentials":[{"appName":"ledger","appModules":["*"]}],"provider":{"providerMakeUserId":{nadia}}}"#;
const NEW_ACTION: &str = r#"{"teamId":{team},"credentials":[{"appName":"ledger","appModules":["*"]}],"provider":{"providerMakeUserId":{nadia}}}"#;
const NEW_BY_CREDENTIALS: &str = r#"{"teamId":{team},"keys":[{"type":"keychain:ledger"}],"provider":{"providerMakeUserId":{nadia}}}"#;
const OTHER_TEAM_REQUEST: &str = r#"{"name":"Matrix","teamId":{other_team},"credentials":[{"appName":"ledger","appModules":["*"]}],"provider":{"providerMakeUserId":{nadia}}}"#;
const API_KEY: &str = r#"{"data":{"apiKey":"ledger-matrix-key-5c1e"}}"#;
const NEW_CONNECTION: &str =
    r#"{"accountName":"Matrix ledger","accountType":"ledger","apiKey":"ledger-matrix-key-5c1e"}"#;

/// Placeholders: `{org}`, `{team}`, `{nadia}` (ids); `{request}`,
/// `{credential}` (authorized), `{connection}` (its connection), `{audit}` (an
/// entry of the team): one each, shared by every call. Made anew for each
/// call: `{fresh_request}` (pending), `{pending}`, `{authorized}`, `{broken}`
/// (authorized, its key since refused by the app), `{reauthorizing}`
/// (reauthorization requested) credentials, `{fresh_connection}` (the team's
/// own), `{own_token}` (another token of the caller) and `{member_token}` (one
/// of the team member's). The organization's other team: `{other_team}`, its
/// request `{other_request}` (pending, sent by the owner to Nadia) with
/// `{other_credential}`, its own connection `{other_connection}`, and anew
/// for each call `{other_fresh_request}` and `{other_fresh_connection}`; and
/// `{org_audit}`, an entry of the organization without a team.
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //  method    route                                                              call                                                                    body                scope                        owner admin t-adm t-mem guest other anon  lacking
    // The OpenAPI document and its page are public (openapi.rs).
    row("GET",    "/api/v2/openapi.json",                                            "/api/v2/openapi.json",                                                 "",                 "",                          [200, 200, 200, 200, 200, 200, 200, 200]),
    row("GET",    "/api/v2/docs",                                                    "/api/v2/docs",                                                         "",                 "",                          [200, 200, 200, 200, 200, 200, 200, 200]),
    row("GET",    "/api/v2/users/me",                                                "/api/v2/users/me",                                                     "",                 "user:read",                 [200, 200, 200, 200, 200, 200, 401, 403]),
    row("GET",    "/api/v2/users/me/current-authorization",                          "/api/v2/users/me/current-authorization",                               "",                 "",                          [200, 200, 200, 200, 200, 200, 401, 200]),
    row("GET",    "/api/v2/users/me/api-tokens",                                     "/api/v2/users/me/api-tokens",                                          "",                 "user:read",                 [200, 200, 200, 200, 200, 200, 401, 403]),
    row("POST",   "/api/v2/users/me/api-tokens",                                     "/api/v2/users/me/api-tokens",                                          r#"{"label":"matrix","scope":["user:read"]}"#, "user:write", [201, 201, 201, 201, 201, 201, 401, 403]),
    row("DELETE", "/api/v2/users/me/api-tokens/{id}",                                "/api/v2/users/me/api-tokens/{own_token}",                              "",                 "user:write",                [200, 200, 200, 200, 200, 200, 401, 403]),
    row("DELETE", "/api/v2/users/me/api-tokens/{id}",                                "/api/v2/users/me/api-tokens/{member_token}",                           "",                 "user:write",                [404, 404, 404, 200, 404, 404, 401, 403]),
    row("GET",    "/api/v2/users",                                                   "/api/v2/users?teamId={team}",                                          "",                 "teams:read",                [200, 200, 200, 200, 403, 404, 401, 403]),
    row("GET",    "/api/v2/organizations",                                           "/api/v2/organizations",                                                "",                 "organizations:read",        [200, 200, 200, 200, 200, 200, 401, 403]),
    row("GET",    "/api/v2/organizations/{id}",                                      "/api/v2/organizations/{org}",                                          "",                 "organizations:read",        [200, 200, 200, 200, 200, 404, 401, 403]),
    row("GET",    "/api/v2/organizations/{id}/two-factor",                           "/api/v2/organizations/{org}/two-factor",                               "",                 "organizations:read",        [200, 200, 200, 200, 200, 404, 401, 403]),
    row("PUT",    "/api/v2/organizations/{id}/two-factor",                           "/api/v2/organizations/{org}/two-factor",                               r#"{"required":false}"#, "organizations:write", [200, 403, 403, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/teams",                                                   "/api/v2/teams?organizationId={org}",                                   "",                 "teams:read",                [200, 200, 200, 200, 200, 404, 401, 403]),
    row("GET",    "/api/v2/teams/{id}",                                              "/api/v2/teams/{team}",                                                 "",                 "teams:read",                [200, 200, 200, 200, 403, 404, 401, 403]),
    row("GET",    "/api/v2/credential-requests/apps",                                "/api/v2/credential-requests/apps",                                     "",                 "credential-requests:read",  [200, 200, 200, 200, 200, 200, 401, 403]),
    row("GET",    "/api/v2/credential-requests/apps/{app_name}/{app_version}/modules-with-credentials", "/api/v2/credential-requests/apps/ledger/latest/modules-with-credentials", "", "credential-requests:read", [200, 200, 200, 200, 200, 200, 401, 403]),
    row("GET",    "/api/v2/credential-requests/feature",                             "/api/v2/credential-requests/feature",                                  "",                 "",                          [200, 200, 200, 200, 200, 200, 401, 200]),
    row("POST",   "/api/v2/credential-requests/feature",                             "/api/v2/credential-requests/feature",                                  "",                 "",                          [409, 409, 409, 409, 201, 409, 401, 409]),
    row("GET",    "/api/v2/credential-requests/requests",                            "/api/v2/credential-requests/requests?teamId={team}",                   "",                 "credential-requests:read",  [200, 200, 200, 200, 404, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/requests",                            "/api/v2/credential-requests/requests",                                 NEW_REQUEST,        "credential-requests:write", [201, 201, 201, 403, 403, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/requests/v2",                         "/api/v2/credential-requests/requests/v2",                              NEW_REQUEST,        "credential-requests:write", [201, 201, 201, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/credential-requests/requests/{id}",                       "/api/v2/credential-requests/requests/{request}",                       "",                 "credential-requests:read",  [200, 200, 200, 200, 200, 404, 401, 403]),
    row("DELETE", "/api/v2/credential-requests/requests/{id}",                       "/api/v2/credential-requests/requests/{fresh_request}?confirmed=true",  "",                 "credential-requests:write", [200, 200, 200, 200, 200, 404, 401, 403]),
    row("GET",    "/api/v2/credential-requests/requests/{id}/detail",                "/api/v2/credential-requests/requests/{request}/detail",                "",                 "credential-requests:read",  [200, 200, 200, 200, 200, 404, 401, 403]),
    row("GET",    "/api/v2/credential-requests/received",                            "/api/v2/credential-requests/received",                                 "",                 "credential-requests:read",  [200, 200, 200, 200, 200, 200, 401, 403]),
    row("GET",    "/api/v2/credential-requests/credentials/{id}",                    "/api/v2/credential-requests/credentials/{credential}",                 "",                 "credential-requests:read",  [200, 200, 200, 200, 200, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/credentials/{id}/decline",            "/api/v2/credential-requests/credentials/{pending}/decline",            r#"{"reason":"no"}"#, "credential-requests:write", [403, 403, 403, 403, 200, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/credentials/{id}/delete-remote",      "/api/v2/credential-requests/credentials/{authorized}/delete-remote",   "",                 "credential-requests:write", [200, 200, 200, 200, 403, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/credentials/{id}/request-reauthorize", "/api/v2/credential-requests/credentials/{broken}/request-reauthorize", "",                 "credential-requests:write", [200, 200, 200, 200, 403, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/credentials/{id}/authorize",          "/api/v2/credential-requests/credentials/{pending}/authorize",          API_KEY,            "credential-requests:write", [403, 403, 403, 403, 200, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/credentials/{id}/reauthorize",        "/api/v2/credential-requests/credentials/{reauthorizing}/reauthorize",  API_KEY,            "credential-requests:write", [403, 403, 403, 403, 200, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/credentials/{id}/revoke",             "/api/v2/credential-requests/credentials/{authorized}/revoke",          "",                 "credential-requests:write", [403, 403, 403, 403, 200, 404, 401, 403]),
    row("GET",    "/api/v2/credential-requests/credentials/{id}/usage",              "/api/v2/credential-requests/credentials/{credential}/usage",           "",                 "credential-requests:read",  [200, 200, 200, 200, 200, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/actions/create",                      "/api/v2/credential-requests/actions/create",                           NEW_ACTION,         "credential-requests:write", [201, 201, 201, 403, 403, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/actions/create-by-credentials",       "/api/v2/credential-requests/actions/create-by-credentials",            NEW_BY_CREDENTIALS, "credential-requests:write", [201, 201, 201, 403, 403, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/actions/extend",                      "/api/v2/credential-requests/actions/extend",                           r#"{"connectionId":{connection},"scopes":["extra"]}"#, "credential-requests:write", [400, 400, 400, 400, 404, 404, 401, 403]),
    row("GET",    "/api/v2/audit-logs/organization/{id}",                            "/api/v2/audit-logs/organization/{org}",                                "",                 "organization:read",         [200, 200, 200, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/audit-logs/organization/{id}/filters",                    "/api/v2/audit-logs/organization/{org}/filters",                        "",                 "organization:read",         [200, 200, 200, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/audit-logs/organization/{id}/export",                     "/api/v2/audit-logs/organization/{org}/export",                         "",                 "organization:read",         [200, 200, 200, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/audit-logs/team/{id}",                                    "/api/v2/audit-logs/team/{team}",                                       "",                 "organization:read",         [200, 200, 200, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/audit-logs/team/{id}/filters",                            "/api/v2/audit-logs/team/{team}/filters",                               "",                 "organization:read",         [200, 200, 200, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/audit-logs/team/{id}/export",                             "/api/v2/audit-logs/team/{team}/export",                                "",                 "organization:read",         [200, 200, 200, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/audit-logs/{id}",                                         "/api/v2/audit-logs/{audit}",                                           "",                 "organization:read",         [200, 200, 200, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/connections",                                             "/api/v2/connections?teamId={team}",                                    "",                 "connections:read",          [200, 200, 200, 200, 404, 404, 401, 403]),
    row("POST",   "/api/v2/connections",                                             "/api/v2/connections?teamId={team}",                                    NEW_CONNECTION,     "connections:write",         [201, 201, 201, 201, 404, 404, 401, 403]),
    row("GET",    "/api/v2/connections/{id}",                                        "/api/v2/connections/{connection}",                                     "",                 "connections:read",          [200, 200, 200, 200, 404, 404, 401, 403]),
    row("PATCH",  "/api/v2/connections/{id}",                                        "/api/v2/connections/{connection}",                                     r#"{"name":"Renamed"}"#, "connections:write",   [200, 200, 200, 200, 404, 404, 401, 403]),
    row("DELETE", "/api/v2/connections/{id}",                                        "/api/v2/connections/{fresh_connection}?confirmed=true",                "",                 "connections:write",         [200, 200, 200, 200, 404, 404, 401, 403]),
    row("POST",   "/api/v2/connections/{id}/test",                                   "/api/v2/connections/{connection}/test",                                "",                 "connections:write",         [200, 200, 200, 200, 404, 404, 401, 403]),
    row("POST",   "/api/v2/connections/{id}/scoped",                                 "/api/v2/connections/{connection}/scoped",                              r#"{"scope":[]}"#,  "connections:read",          [200, 200, 200, 200, 404, 404, 401, 403]),
    row("GET",    "/api/v2/connections/{id}/usage",                                  "/api/v2/connections/{connection}/usage",                               "",                 "connections:read",          [200, 200, 200, 200, 404, 404, 401, 403]),
    row("GET",    "/api/v2/connections/{id}/proxy/{*path}",                          "/api/v2/connections/{connection}/proxy/v1/me",                         "",                 "connections:use",           [200, 200, 200, 200, 404, 404, 401, 403]),
    // Tracking (SPEC §9): a request's client, project and owner, the projects' rollups, the team's reminder policy.
    row("PATCH",  "/api/v2/credential-requests/requests/{id}",                       "/api/v2/credential-requests/requests/{request}",                       r#"{"client":"Acme"}"#, "credential-requests:write", [200, 200, 200, 200, 403, 404, 401, 403]),
    row("GET",    "/api/v2/credential-requests/projects",                            "/api/v2/credential-requests/projects?teamId={team}",                   "",                 "credential-requests:read",  [200, 200, 200, 200, 404, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/projects/{name}/teardown",            "/api/v2/credential-requests/projects/Matrix/teardown?teamId={team}",   "",                 "credential-requests:write", [200, 200, 200, 200, 404, 404, 401, 403]),
    row("GET",    "/api/v2/credential-requests/teams/{id}/reminder-policy",          "/api/v2/credential-requests/teams/{team}/reminder-policy",             "",                 "credential-requests:read",  [200, 200, 200, 200, 404, 404, 401, 403]),
    row("PUT",    "/api/v2/credential-requests/teams/{id}/reminder-policy",          "/api/v2/credential-requests/teams/{team}/reminder-policy",             r#"{"maxCount":3}"#, "credential-requests:write", [200, 200, 200, 403, 404, 404, 401, 403]),
    // Webhooks (SPEC §10): the team's endpoint, its deliveries.
    row("GET",    "/api/v2/webhooks",                                                "/api/v2/webhooks?teamId={team}",                                       "",                 "webhooks:read",             [200, 200, 200, 403, 404, 404, 401, 403]),
    row("POST",   "/api/v2/webhooks",                                                "/api/v2/webhooks",                                                     r#"{"teamId":{team},"url":"http://127.0.0.1:9/matrix","events":["*"]}"#, "webhooks:write", [201, 201, 201, 403, 404, 404, 401, 403]),
    row("GET",    "/api/v2/webhooks/{id}",                                           "/api/v2/webhooks/{webhook}",                                           "",                 "webhooks:read",             [200, 200, 200, 404, 404, 404, 401, 403]),
    row("PATCH",  "/api/v2/webhooks/{id}",                                           "/api/v2/webhooks/{webhook}",                                           r#"{"enabled":true}"#, "webhooks:write",       [200, 200, 200, 404, 404, 404, 401, 403]),
    row("DELETE", "/api/v2/webhooks/{id}",                                           "/api/v2/webhooks/{fresh_webhook}",                                     "",                 "webhooks:write",            [200, 200, 200, 404, 404, 404, 401, 403]),
    row("POST",   "/api/v2/webhooks/{id}/rotate-secret",                             "/api/v2/webhooks/{webhook}/rotate-secret",                             "",                 "webhooks:write",            [200, 200, 200, 404, 404, 404, 401, 403]),
    row("GET",    "/api/v2/webhooks/{id}/deliveries",                                "/api/v2/webhooks/{webhook}/deliveries",                                "",                 "webhooks:read",             [200, 200, 200, 404, 404, 404, 401, 403]),
    row("GET",    "/api/v2/webhooks/{id}/deliveries/{delivery}",                     "/api/v2/webhooks/{webhook}/deliveries/{delivery}",                     "",                 "webhooks:read",             [200, 200, 200, 404, 404, 404, 401, 403]),
    row("POST",   "/api/v2/webhooks/{id}/deliveries/{delivery}/replay",              "/api/v2/webhooks/{webhook}/deliveries/{delivery}/replay",              "",                 "webhooks:write",            [202, 202, 202, 404, 404, 404, 401, 403]),
    row("GET",    "/api/v2/webhooks/{id}/deliveries/{delivery}/attempts",            "/api/v2/webhooks/{webhook}/deliveries/{delivery}/attempts",            "",                 "webhooks:read",             [200, 200, 200, 404, 404, 404, 401, 403]),
    // The organization's other team: its requests, connections and log are
    // its own and its organization's managers'; the first team sees nothing.
    row("GET",    "/api/v2/teams/{id}",                                              "/api/v2/teams/{other_team}",                                           "",                 "teams:read",                [200, 200, 403, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/users",                                                   "/api/v2/users?teamId={other_team}",                                    "",                 "teams:read",                [200, 200, 403, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/credential-requests/requests",                            "/api/v2/credential-requests/requests?teamId={other_team}",             "",                 "credential-requests:read",  [200, 200, 404, 404, 404, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/requests/v2",                         "/api/v2/credential-requests/requests/v2",                              OTHER_TEAM_REQUEST, "credential-requests:write", [201, 201, 403, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/credential-requests/requests/{id}",                       "/api/v2/credential-requests/requests/{other_request}",                 "",                 "credential-requests:read",  [200, 200, 404, 404, 404, 404, 401, 403]),
    row("GET",    "/api/v2/credential-requests/requests/{id}/detail",                "/api/v2/credential-requests/requests/{other_request}/detail",          "",                 "credential-requests:read",  [200, 200, 404, 404, 404, 404, 401, 403]),
    row("DELETE", "/api/v2/credential-requests/requests/{id}",                       "/api/v2/credential-requests/requests/{other_fresh_request}?confirmed=true", "",            "credential-requests:write", [200, 200, 404, 404, 404, 404, 401, 403]),
    row("GET",    "/api/v2/credential-requests/credentials/{id}",                    "/api/v2/credential-requests/credentials/{other_credential}",           "",                 "credential-requests:read",  [200, 200, 404, 404, 404, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/credentials/{id}/decline",            "/api/v2/credential-requests/credentials/{other_credential}/decline",   "",                 "credential-requests:write", [403, 403, 404, 404, 404, 404, 401, 403]),
    row("GET",    "/api/v2/credential-requests/credentials/{id}/usage",              "/api/v2/credential-requests/credentials/{other_credential}/usage",     "",                 "credential-requests:read",  [200, 200, 404, 404, 404, 404, 401, 403]),
    row("POST",   "/api/v2/credential-requests/actions/extend",                      "/api/v2/credential-requests/actions/extend",                           r#"{"connectionId":{other_connection},"scopes":["extra"]}"#, "credential-requests:write", [400, 400, 404, 404, 404, 404, 401, 403]),
    row("GET",    "/api/v2/audit-logs/team/{id}",                                    "/api/v2/audit-logs/team/{other_team}",                                 "",                 "organization:read",         [200, 200, 403, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/audit-logs/organization/{id}",                            "/api/v2/audit-logs/organization/{org}?team={other_team}",              "",                 "organization:read",         [200, 200, 403, 403, 403, 404, 401, 403]),
    row("GET",    "/api/v2/connections",                                             "/api/v2/connections?teamId={other_team}",                              "",                 "connections:read",          [200, 200, 404, 404, 404, 404, 401, 403]),
    row("POST",   "/api/v2/connections",                                             "/api/v2/connections?teamId={other_team}",                              NEW_CONNECTION,     "connections:write",         [201, 201, 404, 404, 404, 404, 401, 403]),
    row("GET",    "/api/v2/connections/{id}",                                        "/api/v2/connections/{other_connection}",                               "",                 "connections:read",          [200, 200, 404, 404, 404, 404, 401, 403]),
    row("PATCH",  "/api/v2/connections/{id}",                                        "/api/v2/connections/{other_connection}",                               r#"{"name":"Renamed"}"#, "connections:write",   [200, 200, 404, 404, 404, 404, 401, 403]),
    row("DELETE", "/api/v2/connections/{id}",                                        "/api/v2/connections/{other_fresh_connection}?confirmed=true",          "",                 "connections:write",         [200, 200, 404, 404, 404, 404, 401, 403]),
    row("POST",   "/api/v2/connections/{id}/test",                                   "/api/v2/connections/{other_connection}/test",                          "",                 "connections:write",         [200, 200, 404, 404, 404, 404, 401, 403]),
    row("POST",   "/api/v2/connections/{id}/scoped",                                 "/api/v2/connections/{other_connection}/scoped",                        r#"{"scope":[]}"#,  "connections:read",          [200, 200, 404, 404, 404, 404, 401, 403]),
    row("GET",    "/api/v2/connections/{id}/usage",                                  "/api/v2/connections/{other_connection}/usage",                         "",                 "connections:read",          [200, 200, 404, 404, 404, 404, 401, 403]),
    row("GET",    "/api/v2/connections/{id}/proxy/{*path}",                          "/api/v2/connections/{other_connection}/proxy/v1/me",                   "",                 "connections:use",           [200, 200, 404, 404, 404, 404, 401, 403]),
    // An entry of the organization's own (no team): not a team admin's.
    row("GET",    "/api/v2/audit-logs/{id}",                                         "/api/v2/audit-logs/{org_audit}",                                       "",                 "organization:read",         [200, 200, 403, 403, 403, 404, 401, 403]),
];

/// An API-key app served by `upstream` whose modules may call `GET /v1/me`,
/// the upstream's answer to an accepted key (the broker's row).
fn ledger_app(upstream: &Upstream) -> String {
    let searching = r#"operations = ["GET /v1/contacts", "GET /v1/contacts/{id}"]"#;
    let text = api_key_app("ledger", "Ledger", upstream);
    assert!(text.contains(searching), "api_key_app changed: {text}");
    text.replace(
        searching,
        r#"operations = ["GET /v1/me", "GET /v1/contacts"]"#,
    )
}

/// The people of the matrix and the shared objects.
struct Scene {
    app: TestApp,
    upstream: Upstream,
    callers: [Option<Person>; 8],
    tokens: [Option<String>; 8],
    /// The team member, who sends the team's requests.
    member: Person,
    member_token: String,
    /// The guest, who receives them.
    guest_token: String,
    /// The organization's owner, who sends the other team's requests.
    owner_token: String,
    other_team: Option<credence_domain::TeamId>,
    /// The owner's tokens lacking one scope each, by scope ("" for none).
    lacking: BTreeMap<&'static str, String>,
    fixed: BTreeMap<&'static str, String>,
}

const EVERY_SCOPE: &str = "credential-requests:read,credential-requests:write,connections:read,\
    connections:write,connections:use,organization:read,organizations:read,organizations:write,teams:read,user:read,\
    user:write,webhooks:read,webhooks:write";

async fn scene(backend: Backend) -> Scene {
    let upstream = Upstream::start().await;
    upstream.accept(KEY);
    let apps = tempfile::tempdir().unwrap();
    std::fs::write(apps.path().join("ledger.toml"), ledger_app(&upstream)).unwrap();
    let apps_dir = apps.keep();
    let app = spawn_app_with(backend, |config| {
        config.apps_dir = Some(apps_dir);
        // The webhook rows' endpoint is on this machine.
        config.jobs.webhooks.allow_private_hosts = true;
    })
    .await;
    let org = app.organization;
    let team = app.team;
    let person = |email: &'static str, role: &'static str, in_team: Option<&'static str>| {
        app.add_person(email, org, role, in_team.map(|r| (team, r)))
    };
    let owner = person("owen@agency.example", "owner", None).await;
    let admin = person("ada@agency.example", "admin", None).await;
    let team_admin = person("tara@agency.example", "member", Some("admin")).await;
    let member = person("tim@agency.example", "member", Some("member")).await;
    let guest = person("gus@client.example", "guest", Some("member")).await;
    let nadia = person("nadia@agency.example", "member", None).await;
    let borealis = identity::create_organization(&app.store, "Borealis", "enterprise", false)
        .await
        .unwrap()
        .id;
    let other = app
        .add_person("bea@borealis.example", borealis, "owner", None)
        .await;
    // A guest cannot have the feature (no organization of theirs qualifies
    // them), so their requests are refused by the feature gate as well.
    for someone in [&owner, &admin, &team_admin, &member, &other] {
        features::grant(&app.store, &app.vault(), &someone.email)
            .await
            .unwrap();
    }
    let callers = [
        Some(owner.clone()),
        Some(admin),
        Some(team_admin),
        Some(member.clone()),
        Some(guest.clone()),
        Some(other),
        None,
        Some(owner.clone()),
    ];
    let mut tokens: [Option<String>; 8] = Default::default();
    for (index, caller) in callers.iter().enumerate().take(6) {
        if let Some(person) = caller {
            tokens[index] = Some(app.token(person.id, EVERY_SCOPE).await);
        }
    }
    let mut lacking = BTreeMap::new();
    for row in MATRIX {
        if lacking.contains_key(row.scope) {
            continue;
        }
        let scopes = if row.scope.is_empty() {
            "webhooks:read".to_string()
        } else {
            assert!(
                Scope::parse(row.scope).is_ok(),
                "{} {}: unknown scope {}",
                row.method,
                row.route,
                row.scope
            );
            EVERY_SCOPE
                .split(',')
                .map(str::trim)
                .filter(|scope| *scope != row.scope)
                .collect::<Vec<_>>()
                .join(",")
        };
        lacking.insert(row.scope, app.token(owner.id, &scopes).await);
    }
    let member_token = tokens[3].clone().unwrap();
    let guest_token = tokens[4].clone().unwrap();
    let tokens_owner = tokens[0].clone().unwrap();
    let mut scene = Scene {
        app,
        upstream,
        callers,
        tokens,
        member,
        member_token,
        guest_token,
        owner_token: tokens_owner,
        other_team: None,
        lacking,
        fixed: BTreeMap::new(),
    };
    let (request, credential) = scene.new_request().await;
    scene.authorize(&credential, KEY).await;
    let connection = scene.connection_of(&credential).await;
    let (entries, _) = scene
        .app
        .db()
        .await
        .list_audit(&credence_store::AuditFilter {
            organization: Some(org),
            teams: Some(vec![team]),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let other_team = identity::create_team(&scene.app.store, org, "Other")
        .await
        .unwrap()
        .id;
    scene.other_team = Some(other_team);
    scene.fixed = BTreeMap::from([
        ("org", org.to_string()),
        ("team", team.to_string()),
        ("other_team", other_team.to_string()),
        ("nadia", nadia.id.to_string()),
        ("request", request),
        ("credential", credential),
        ("connection", connection),
        ("audit", entries[0].id.to_string()),
    ]);
    // A team webhook for every event, and one delivery queued to it.
    let webhook = scene.new_webhook().await;
    scene.fixed.insert("webhook", webhook.clone());
    scene.new_request().await;
    let (status, deliveries) = scene
        .app
        .get_json(
            &format!("/api/v2/webhooks/{webhook}/deliveries"),
            &scene.owner_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{deliveries}");
    let delivery = deliveries["deliveries"][0]["id"].to_string();
    assert_ne!(delivery, "null", "a delivery is queued: {deliveries}");
    scene.fixed.insert("delivery", delivery);
    let (other_request, other_credential) = scene.new_other_request().await;
    let other_connection = scene.new_connection(other_team, &scene.owner_token).await;
    let org_audit = scene
        .app
        .audit_entries(&[])
        .await
        .into_iter()
        .find(|entry| entry.organization_id == org.0 && entry.team_id.is_none())
        .expect("an entry of the organization without a team (the feature grants)")
        .id;
    scene.fixed.extend([
        ("other_request", other_request),
        ("other_credential", other_credential),
        ("other_connection", other_connection),
        ("org_audit", org_audit.to_string()),
    ]);
    scene
}

impl Scene {
    /// A pending request of the team, sent by its member to the guest:
    /// (request id, credential id).
    async fn new_request(&self) -> (String, String) {
        let body = json!({
            "name": "Ledger access",
            "teamId": self.app.team,
            "credentials": [{ "appName": "ledger", "appModules": ["*"] }],
            "provider": { "providerMakeUserId": self.callers[4].as_ref().unwrap().id },
        });
        let (status, body) = self
            .app
            .post(
                "/api/v2/credential-requests/requests/v2",
                &self.member_token,
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["request"]["id"].as_str().unwrap().to_string(),
            body["request"]["credentials"][0]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    }

    /// A pending request of the other team, sent by the owner to Nadia:
    /// (request id, credential id).
    async fn new_other_request(&self) -> (String, String) {
        let body = OTHER_TEAM_REQUEST
            .replace("{other_team}", &self.fixed["other_team"])
            .replace("{nadia}", &self.fixed["nadia"]);
        let (status, body) = self
            .app
            .post(
                "/api/v2/credential-requests/requests/v2",
                &self.owner_token,
                Some(serde_json::from_str(&body).unwrap()),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["request"]["id"].as_str().unwrap().to_string(),
            body["request"]["credentials"][0]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    }

    /// A new own connection of `team`, added with `token`, by id.
    async fn new_connection(&self, team: credence_domain::TeamId, token: &str) -> String {
        let (status, body) = self
            .app
            .post(
                &format!("/api/v2/connections?teamId={team}"),
                token,
                Some(serde_json::from_str(NEW_CONNECTION).unwrap()),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["connection"]["id"].to_string()
    }

    /// A new webhook endpoint of the team for every event, by id.
    async fn new_webhook(&self) -> String {
        let (status, body) = self
            .app
            .post(
                "/api/v2/webhooks",
                &self.owner_token,
                Some(json!({ "teamId": self.app.team, "url": "http://127.0.0.1:9/matrix", "events": ["*"] })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        crate::support::register_secret(body["webhook"]["secret"].as_str().unwrap_or_default());
        body["webhook"]["id"].to_string()
    }

    /// The guest authorizes `credential` with `key`.
    async fn authorize(&self, credential: &str, key: &str) {
        let (status, body) = self
            .app
            .post(
                &format!("/api/v2/credential-requests/credentials/{credential}/authorize"),
                &self.guest_token,
                Some(json!({ "data": { "apiKey": key } })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn connection_of(&self, credential: &str) -> String {
        let (status, body) = self
            .app
            .get_json(
                &format!("/api/v2/credential-requests/credentials/{credential}"),
                &self.member_token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["credential"]["remoteId"].as_str().unwrap().to_string()
    }

    /// The value of `placeholder` for a call by `caller` (an index of [`CALLERS`]).
    async fn value(&self, placeholder: &str, caller: usize) -> String {
        if let Some(value) = self.fixed.get(placeholder) {
            return value.clone();
        }
        match placeholder {
            "fresh_request" => self.new_request().await.0,
            "pending" => self.new_request().await.1,
            "authorized" => {
                let (_, credential) = self.new_request().await;
                self.authorize(&credential, KEY).await;
                credential
            }
            "broken" | "reauthorizing" => {
                let (_, credential) = self.new_request().await;
                let key = format!("ledger-matrix-{}", uuid::Uuid::new_v4().simple());
                self.upstream.accept(&key);
                self.authorize(&credential, &key).await;
                self.upstream.reject(&key);
                if placeholder == "reauthorizing" {
                    let (status, body) = self
                        .app
                        .post(
                            &format!(
                                "/api/v2/credential-requests/credentials/{credential}/request-reauthorize"
                            ),
                            &self.member_token,
                            None,
                        )
                        .await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                }
                credential
            }
            "fresh_connection" => self.new_connection(self.app.team, &self.member_token).await,
            "fresh_webhook" => self.new_webhook().await,
            "other_fresh_request" => self.new_other_request().await.0,
            "other_fresh_connection" => {
                self.new_connection(self.other_team.unwrap(), &self.owner_token)
                    .await
            }
            "own_token" => {
                let owner = self.callers[caller].as_ref().or(self.callers[0].as_ref());
                self.token_id_of(owner.unwrap()).await
            }
            "member_token" => self.token_id_of(&self.member).await,
            other => panic!("no placeholder {{{other}}}"),
        }
    }

    /// A new token of `person` (holding only `user:read`), by id.
    async fn token_id_of(&self, person: &Person) -> String {
        let app = &self.app;
        app.token(person.id, "user:read").await;
        let tokens = app.db().await.list_api_tokens(person.id).await.unwrap();
        tokens
            .iter()
            .map(|token| token.id.0)
            .max()
            .unwrap()
            .to_string()
    }

    /// `template` with its placeholders filled in for `caller`.
    async fn fill(&self, template: &str, caller: usize) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let name_end = rest[open + 1..]
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .map(|at| open + 1 + at);
            match name_end {
                Some(end) if end > open + 1 && rest[end..].starts_with('}') => {
                    out.push_str(&rest[..open]);
                    out.push_str(&self.value(&rest[open + 1..end], caller).await);
                    rest = &rest[end + 1..];
                }
                _ => {
                    out.push_str(&rest[..=open]);
                    rest = &rest[open + 1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Calls `row` as `caller`: the status and the start of the answer.
    async fn call(&self, row: &Row, caller: usize) -> (u16, String) {
        let app = &self.app;
        let path = self.fill(row.call, caller).await;
        let method = Method::from_bytes(row.method.as_bytes()).unwrap();
        let mut request = app.client.request(method, app.url(&path));
        let token = if caller == 7 {
            Some(self.lacking[row.scope].clone())
        } else {
            self.tokens[caller].clone()
        };
        if let Some(token) = token {
            request = request.header("Authorization", format!("Token {token}"));
        }
        if !row.body.is_empty() {
            let body = self.fill(row.body, caller).await;
            let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| {
                panic!("{} {}: the body is not JSON: {e}", row.method, row.route)
            });
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        crate::support::assert_no_secret(&format!("{} {path}", row.method), &text);
        (status, text.chars().take(300).collect())
    }
}

/// The methods the live server serves on `route`: from the `Allow` header of
/// the 405 to a method no route uses, without a token; `*` when the route
/// takes every method (it answers something else than 405).
async fn methods_of(scene: &Scene, route: &str) -> BTreeSet<String> {
    let app = &scene.app;
    let path: Vec<String> = route
        .split('/')
        .map(|segment| {
            if segment.starts_with("{*") {
                "x".to_string()
            } else if segment.starts_with('{') {
                "1".to_string()
            } else {
                segment.to_string()
            }
        })
        .collect();
    let response = app
        .client
        .request(
            Method::from_bytes(b"PROPFIND").unwrap(),
            app.url(&path.join("/")),
        )
        .send()
        .await
        .unwrap();
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return BTreeSet::from(["*".to_string()]);
    }
    let allow = response
        .headers()
        .get("allow")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("the 405 for {route} has no Allow header"))
        .to_string();
    allow
        .split(',')
        .map(|method| method.trim().to_string())
        .filter(|method| !method.is_empty() && method != "HEAD")
        .collect()
}

async fn every_api_route_has_a_row_and_every_row_a_route(backend: Backend) {
    let scene = scene(backend).await;
    let paths = credence::startup::api_paths();
    assert!(
        paths.len() > 40,
        "only {} API paths listed: {paths:?}",
        paths.len()
    );
    let unique: BTreeSet<&String> = paths.iter().collect();
    assert_eq!(
        unique.len(),
        paths.len(),
        "a path is listed twice: {paths:?}"
    );
    let mut served: BTreeSet<(String, String)> = BTreeSet::new();
    let mut missing = Vec::new();
    for path in &paths {
        for method in methods_of(&scene, path).await {
            let covered = MATRIX
                .iter()
                .any(|row| row.route == path && (method == "*" || row.method == method));
            if !covered {
                missing.push(format!("{method} {path}"));
            }
            served.insert((method, path.clone()));
        }
    }
    // A route answers every method only when served with `any` (the broker's
    // proxy): if most did, the probe would be broken and cover nothing.
    let any_method: Vec<&String> = served
        .iter()
        .filter(|(method, _)| method == "*")
        .map(|(_, path)| path)
        .collect();
    assert!(
        any_method.len() * 10 < paths.len(),
        "the method probe found no 405 on {any_method:?}"
    );
    let stale: Vec<String> = MATRIX
        .iter()
        .filter(|row| {
            !served.contains(&(row.method.to_string(), row.route.to_string()))
                && !served.contains(&("*".to_string(), row.route.to_string()))
        })
        .map(|row| format!("{} {}", row.method, row.route))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a row in authz_matrix.rs's MATRIX (add one per method): {missing:#?}"
    );
    assert!(
        stale.is_empty(),
        "rows of MATRIX whose route or method is not served: {stale:#?}"
    );
    scene.app.stop().await;
}

async fn every_caller_gets_the_status_of_the_matrix(backend: Backend) {
    let scene = scene(backend).await;
    let mut wrong = Vec::new();
    for row in MATRIX {
        for (caller, expected) in row.expect.iter().enumerate() {
            let (status, answer) = scene.call(row, caller).await;
            if status != *expected {
                wrong.push(format!(
                    "{} {} as {}: expected {expected}, got {status}: {answer}",
                    row.method, row.call, CALLERS[caller]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} calls got another status than the matrix says:\n{}",
        wrong.len(),
        MATRIX.len() * CALLERS.len(),
        wrong.join("\n")
    );
    scene.app.stop().await;
}

on_both_backends!(
    every_api_route_has_a_row_and_every_row_a_route,
    every_caller_gets_the_status_of_the_matrix,
);

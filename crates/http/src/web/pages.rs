//! The HTML of the pages, with maud (escaped by default).

use axum::http::header;
use axum::response::{Html, IntoResponse};
use credence_store::{Membership, User};
use maud::{html, Markup};

/// The stylesheet, compiled into the binary (`crates/http/assets/credence.css`).
const STYLE: &str = include_str!("../../assets/credence.css");

/// Where the pages' stylesheet is served: a file of our own, so the pages
/// carry no inline style and the Content-Security-Policy allows only `'self'`.
pub const STYLESHEET_PATH: &str = "/assets/credence.css";

/// `GET /assets/credence.css`: the same for everyone, so it may be cached.
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
}

/// The script, compiled into the binary (`crates/http/assets/credence.js`):
/// progressive enhancement only, every page works without it.
const SCRIPT: &str = include_str!("../../assets/credence.js");

/// Where the pages' script is served (the Content-Security-Policy allows
/// scripts from `'self'` only, none inline).
pub const SCRIPT_PATH: &str = "/assets/credence.js";

/// `GET /assets/credence.js`: the same for everyone, so it may be cached.
pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
}

/// A page outside the app shell (sign-in, setup, invitation, problems).
fn layout(title: &str, body: Markup) -> Html<String> {
    Html(super::layout::document(title, html! { main.narrow { (body) } }).into_string())
}

pub fn sign_in(csrf: &str, error: Option<&str>, email: &str, next: &str) -> Html<String> {
    layout(
        "Sign in",
        html! {
            h1 { "Sign in to Credence" }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/sign-in" {
                input type="hidden" name="csrf_token" value=(csrf);
                input type="hidden" name="next" value=(next);
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="username" required value=(email);
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub fn setup(user: &User, csrf: &str, error: Option<&str>) -> Html<String> {
    layout(
        "Choose a password",
        html! {
            h1 { "Welcome, " (user.name) }
            p.muted { "Choose a password for " strong { (user.email) } ". At least 12 characters." }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" {
                input type="hidden" name="csrf_token" value=(csrf);
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="new-password" minlength="12" required;
                label for="password_again" { "Password again" }
                input id="password_again" name="password_again" type="password" autocomplete="new-password" minlength="12" required;
                button type="submit" { "Save and sign in" }
            }
        },
    )
}

/// The overview: the user's organizations and the requests they received.
pub fn home(memberships: &[Membership], received: &[credence_store::CredentialRequest]) -> Markup {
    html! {
        h1 { "Overview" }
        @if !memberships.is_empty() {
            section.card {
                h2 { "Your organizations" }
                ul { @for m in memberships { li { (m.organization.name) " — " (m.role) " (" (m.organization.plan) ")" } } }
            }
        }
        section.card {
            h2 { "Requests you received" }
            @if received.is_empty() {
                p.muted { "Nobody has asked you for access yet." }
            } @else {
                ul { @for request in received { li { a href=(format!("/received/{}", request.id)) { (request.name) } " " (super::layout::state_label(request.status.as_str())) } } }
            }
        }
    }
}

pub fn problem(title: &str, message: &str) -> Html<String> {
    layout(
        title,
        html! {
            h1 { (title) }
            p { (message) }
            p { a href="/sign-in" { "Back to sign-in" } }
        },
    )
}

/// After consent for a team's own connection: ready, or why not (outside
/// the shell, for a browser whose session could not be read).
pub fn connection_outcome(id: Option<i64>, name: &str, failure: Option<&str>) -> Html<String> {
    let (title, body) = connection_outcome_body(id, name, failure);
    layout(title, body)
}

/// The title and body of [`connection_outcome`], also drawn in the shell.
pub fn connection_outcome_body(
    id: Option<i64>,
    name: &str,
    failure: Option<&str>,
) -> (&'static str, Markup) {
    let title = if failure.is_some() {
        "Not connected"
    } else {
        "Connected"
    };
    let body = html! {
        h1 { (title) }
        @match failure {
            Some(reason) => {
                p.error role="alert" { (reason) }
                p { "The connection " strong { (name) } @if id.is_some() { " was not changed." } @else { " was not created." } " Start again to try once more." }
            }
            None => {
                p { "The connection " strong { (name) } " is ready" @if let Some(id) = id { " (id " (id) ")" } "." }
            }
        }
        p {
            @if let Some(id) = id { a.button href=(format!("/connections/{id}")) { "View the connection" } " " }
            a.button.secondary href="/connections" { "All connections" }
        }
    };
    (title, body)
}

/// Confirms renewing a team's OAuth connection in place: a form, not a link,
/// so that another site cannot start the consent.
pub fn renew_connection(id: i64, name: &str, app: &str, csrf: &str) -> Html<String> {
    layout(
        "Renew connection",
        html! {
            h1 { "Renew " (name) }
            p { "Sign in again with " strong { (app) } " to renew the connection " strong { (name) } " (id " (id) "). Its name and id stay." }
            form method="post" action=(format!("/oauth/reauth/{id}")) {
                input type="hidden" name="csrf_token" value=(csrf);
                button type="submit" { "Continue with " (app) }
            }
        },
    )
}

pub fn accept_invitation(
    invitation: &credence_store::Invitation,
    csrf: &str,
    error: Option<&str>,
    new_account: bool,
) -> Html<String> {
    layout(
        "Accept invitation",
        html! {
            h1 { "You are invited" }
            p { "Join as a guest to review a credential request sent to " strong { (invitation.email) } "." }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" {
                input type="hidden" name="csrf_token" value=(csrf);
                @if new_account {
                    label for="name" { "Your name" }
                    input id="name" name="name" required value=(invitation.name);
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="new-password" minlength="12" required;
                    label for="password_again" { "Password again" }
                    input id="password_again" name="password_again" type="password" autocomplete="new-password" minlength="12" required;
                    button type="submit" { "Create account and continue" }
                } @else {
                    button type="submit" { "Accept" }
                }
            }
        },
    )
}

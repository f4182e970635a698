//! `/settings`: the signed-in user's API tokens — listed with their scopes and
//! when they were last used, created with chosen scopes (the value is shown
//! once, on the page that answers the form, and never again: not in a flash
//! cookie, not in a log), and deleted. Both changes are audited by the service.
//! Its tabs (`tabs`) lead to the other settings pages: webhooks
//! (`webhooks.rs`), the reminder policy (`reminders.rs`), the local mailbox
//! (`mailbox.rs`).

use super::layout::Nav;
use super::session::{redirect_with_flash, FlashKind, SignedIn, WebError};
use super::CsrfForm;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use credence_domain::{ApiTokenId, Scope, Scopes};
use credence_service::audit::Actor;
use credence_service::{self as service, auth};
use credence_store::ApiToken;
use maud::{html, Markup};
use secrecy::ExposeSecret;

/// What the create form had, to show it again with its errors.
#[derive(Default)]
struct Entered {
    label: String,
    scopes: Vec<String>,
    expires: String,
}

/// An error of the form, by the field it names.
struct FieldErrors(Vec<(String, String)>);

impl FieldErrors {
    fn of(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

/// The pages of Settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Tokens,
    TwoFactor,
    Webhooks,
    Reminders,
    Mailbox,
}

/// The tabs of Settings: API tokens and two-factor sign-in for everyone; the
/// reminder policy for whoever acts for a team (read-only unless they manage
/// it); webhooks for those who manage the team (the page answers 404 to
/// others); the local mailbox for owners and admins.
pub fn tabs(state: &AppState, viewer: &SignedIn, current: Tab) -> Markup {
    let mut entries = vec![
        (Tab::Tokens, "API tokens", "/settings"),
        (
            Tab::TwoFactor,
            "Two-factor authentication",
            super::two_factor::SETTINGS_PATH,
        ),
    ];
    if viewer.manages_team {
        entries.push((Tab::Webhooks, "Webhooks", "/settings/webhooks"));
    }
    if viewer.team.is_some() {
        entries.push((Tab::Reminders, "Reminder policy", "/settings/reminders"));
    }
    if super::mailbox::may_read(state, viewer) {
        entries.push((Tab::Mailbox, "Mailbox", "/mailbox"));
    }
    html! {
        nav aria-label="Settings" {
            ul.actions.tabs {
                @for (tab, label, href) in entries {
                    li { a.button.small.secondary href=(href) aria-current=[(tab == current).then_some("page")] { (label) } }
                }
            }
        }
    }
}

/// `GET /settings`.
pub async fn page(State(state): State<AppState>, viewer: SignedIn) -> Result<Response, WebError> {
    let tokens = state
        .store
        .db()
        .await?
        .list_api_tokens(viewer.user.id)
        .await?;
    let body = settings_body(
        tabs(&state, &viewer, Tab::Tokens),
        &viewer,
        &tokens,
        &Entered::default(),
        &FieldErrors(Vec::new()),
        None,
    );
    Ok(viewer.page(&state, "Settings", Nav::Settings, body))
}

fn settings_body(
    tabs: Markup,
    viewer: &SignedIn,
    tokens: &[ApiToken],
    entered: &Entered,
    errors: &FieldErrors,
    created: Option<(&ApiToken, &str)>,
) -> Markup {
    let field = |name: &str, id: &str| -> Markup {
        html! { @if let Some(message) = errors.of(name) { p.field-error id=(id) { (message) } } }
    };
    html! {
        h1 { "Settings" }
        (tabs)
        @if let Some((token, value)) = created {
            section.card aria-labelledby="new-token" {
                h2 id="new-token" { "API token " (token.name) " created" }
                p { "Copy it now: it is shown only this once. Credence keeps only its hash." }
                label for="token-value" { "Token" }
                input id="token-value" readonly value=(value) autocomplete="off" spellcheck="false";
            }
        }
        section.card aria-labelledby="tokens" {
            h2 id="tokens" { "API tokens" }
            p.muted { "Tokens let your automations call the API as you, with only the scopes you pick." }
            @if tokens.is_empty() {
                p.muted { "You have no API tokens." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "Label" } th scope="col" { "Scopes" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "Expires" } th scope="col" { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for token in tokens {
                                tr {
                                    td { (token.name) }
                                    td { @for scope in token.scopes.iter() { code { (scope.as_str()) } " " } }
                                    td { (token.created_at.format("%Y-%m-%d")) }
                                    td { (token.last_used_at.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "never".into())) }
                                    td { (token.expires_at.map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "never".into())) }
                                    td {
                                        form.inline method="post" action=(format!("/settings/tokens/{}/delete", token.id.0)) {
                                            input type="hidden" name="csrf_token" value=(viewer.csrf);
                                            button.danger.small type="submit" aria-label=(format!("Delete API token {}", token.name)) { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Create an API token" }
            form method="post" action="/settings/tokens" {
                input type="hidden" name="csrf_token" value=(viewer.csrf);
                label for="token-label" { "Label" }
                input id="token-label" name="label" required maxlength="255" value=(entered.label)
                    aria-invalid=[errors.of("name").map(|_| "true")] aria-describedby=[errors.of("name").map(|_| "label-error")];
                (field("name", "label-error"))
                fieldset aria-describedby=[errors.of("scope").map(|_| "scope-error")] {
                    legend { "Scopes" }
                    @for scope in Scope::ALL {
                        label.check {
                            input type="checkbox" name="scope" value=(scope.as_str()) checked[entered.scopes.iter().any(|s| s == scope.as_str())];
                            code { (scope.as_str()) }
                        }
                    }
                    (field("scope", "scope-error"))
                }
                label for="token-expires" { "Expires (optional)" }
                input id="token-expires" name="expires_at" type="date" value=(entered.expires)
                    aria-invalid=[errors.of("expiresAt").map(|_| "true")] aria-describedby="expires-hint";
                p.hint id="expires-hint" { "At most a year ahead. Empty: the token does not expire." }
                (field("expiresAt", "expires-error"))
                button type="submit" { "Create token" }
            }
        }
    }
}

/// `POST /settings/tokens`: the form's pairs (scopes repeat, so not a struct).
pub async fn create_token(
    State(state): State<AppState>,
    viewer: SignedIn,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let entered = Entered {
        label: value("label").chars().take(300).collect(),
        scopes: pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.chars().take(60).collect())
            .take(Scope::ALL.len() * 2)
            .collect(),
        expires: value("expires_at").chars().take(40).collect(),
    };
    let mut errors = Vec::new();
    let scopes = if entered.scopes.is_empty() {
        errors.push(("scope".to_string(), "Pick at least one scope.".to_string()));
        None
    } else {
        Scopes::parse(&entered.scopes.join(","))
            .map_err(|e| errors.push(("scope".to_string(), e.message)))
            .ok()
    };
    let expires_at = if entered.expires.is_empty() {
        None
    } else {
        auth::parse_api_token_expiry("expiresAt", &entered.expires)
            .map_err(|e| errors.push(("expiresAt".to_string(), e.message)))
            .ok()
    };
    let created = match (scopes, errors.is_empty()) {
        (Some(scopes), true) => {
            let made = auth::create_api_token(
                &state.store,
                &Actor::user(&viewer.user),
                viewer.user.id,
                auth::NewApiToken {
                    name: &entered.label,
                    scopes: &scopes,
                    expires_at,
                },
            )
            .await;
            match made {
                Ok(made) => Some(made),
                Err(service::Error::Invalid(problems)) => {
                    errors.extend(problems.into_iter().map(|p| (p.field, p.message)));
                    None
                }
                Err(error) => return Err(error.into()),
            }
        }
        _ => None,
    };
    let tokens = state
        .store
        .db()
        .await?
        .list_api_tokens(viewer.user.id)
        .await?;
    match created {
        Some((token, secret)) => {
            let body = settings_body(
                tabs(&state, &viewer, Tab::Tokens),
                &viewer,
                &tokens,
                &Entered::default(),
                &FieldErrors(Vec::new()),
                Some((&token, secret.expose_secret())),
            );
            Ok(viewer.page(&state, "Settings", Nav::Settings, body))
        }
        None => {
            let body = settings_body(
                tabs(&state, &viewer, Tab::Tokens),
                &viewer,
                &tokens,
                &entered,
                &FieldErrors(errors),
                None,
            );
            Ok(viewer.page_with(
                &state,
                StatusCode::BAD_REQUEST,
                "Settings",
                Nav::Settings,
                body,
            ))
        }
    }
}

/// `POST /settings/tokens/{id}/delete`: one of the user's own tokens; another's
/// is a 404, like one that does not exist.
pub async fn delete_token(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
    _: CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, WebError> {
    let id = id.parse::<i64>().map_err(|_| WebError::NotFound)?;
    let owned = state
        .store
        .db()
        .await?
        .list_api_tokens(viewer.user.id)
        .await?
        .into_iter()
        .any(|t| t.id == ApiTokenId(id));
    if !owned {
        return Err(WebError::NotFound);
    }
    let deleted = auth::delete_api_token(
        &state.store,
        &state.tokens,
        &Actor::user(&viewer.user),
        viewer.user.id,
        ApiTokenId(id),
    )
    .await?;
    Ok(redirect_with_flash(
        &state,
        "/settings",
        FlashKind::Done,
        &format!("API token {} deleted.", deleted.name),
    ))
}

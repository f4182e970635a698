//! Settings → Webhooks (SPEC §10): the endpoints of the current team and of
//! its organization that the viewer manages (the rule of the API:
//! `service::webhooks`, an owner or admin of the organization, or an admin of
//! the team), created with a URL, the events to send and whether it is
//! enabled; enabled and disabled again; deleted after a confirmation; and
//! each endpoint's delivery log. Every change goes through the same service
//! call as `/api/v2/webhooks`, which audits it.
//!
//! The signing secret is shown once, on the page that answers the creation
//! (as API tokens are, `settings.rs`): never in a flash cookie, never on the
//! endpoint's page. What the viewer does not manage is a 404.

use super::layout::Nav;
use super::session::{redirect_with_flash, FlashKind, SignedIn, WebError};
use super::{settings, CsrfForm};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use credence_service::webhook_events::EVENTS;
use credence_service::webhooks::{self, EndpointChange, EndpointInput, Owner};
use credence_service::{self as service};
use credence_store::{WebhookDelivery, WebhookEndpoint};
use maud::{html, Markup};
use secrecy::ExposeSecret;
use serde::Deserialize;

/// The deliveries an endpoint's page shows (the API's largest page).
const DELIVERIES_SHOWN: i64 = 100;

/// The endpoints of one owner the viewer manages.
struct Managed {
    owner: Owner,
    /// "team Default" or "organization Acme".
    label: String,
    endpoints: Vec<WebhookEndpoint>,
}

/// The owners the viewer manages among the current team and its organization,
/// each with its endpoints; none is a 404 (a member who manages nothing).
async fn managed(state: &AppState, viewer: &SignedIn) -> Result<Vec<Managed>, WebError> {
    let Some(team) = &viewer.team else {
        return Err(WebError::NotFound);
    };
    let owners = [
        (
            Owner::Team(team.team.id),
            format!("team {}", team.team.name),
        ),
        (
            Owner::Organization(team.organization.id),
            format!("organization {}", team.organization.name),
        ),
    ];
    let mut found = Vec::new();
    for (owner, label) in owners {
        match webhooks::list(&state.store, &viewer.user, owner).await {
            Ok(endpoints) => found.push(Managed {
                owner,
                label,
                endpoints,
            }),
            Err(service::Error::Forbidden(_) | service::Error::NotFound(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    if found.is_empty() {
        return Err(WebError::NotFound);
    }
    Ok(found)
}

fn owner_key(owner: Owner) -> &'static str {
    match owner {
        Owner::Team(_) => "team",
        Owner::Organization(_) => "organization",
    }
}

/// What the create form had, to show it again with its errors.
struct Entered {
    owner: String,
    url: String,
    events: Vec<String>,
    enabled: bool,
}

impl Default for Entered {
    fn default() -> Entered {
        Entered {
            owner: "team".into(),
            url: String::new(),
            events: Vec::new(),
            enabled: true,
        }
    }
}

/// Messages by form field (`""` for the form as a whole).
#[derive(Default)]
struct Errors(Vec<(String, String)>);

impl Errors {
    fn of(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

fn enabled_label(endpoint: &WebhookEndpoint) -> Markup {
    if endpoint.enabled {
        html! { span class="state authorized" { "Enabled" } }
    } else {
        html! { span class="state revoked" { "Disabled" } }
    }
}

fn events_text(endpoint: &WebhookEndpoint) -> String {
    let names = endpoint.event_names();
    if names == ["*"] {
        "all events".into()
    } else {
        names.join(", ")
    }
}

fn list_body(
    viewer: &SignedIn,
    tabs: Markup,
    managed: &[Managed],
    entered: &Entered,
    errors: &Errors,
    created: Option<(&WebhookEndpoint, &str)>,
) -> Markup {
    let error = |field: &str, id: &str| -> Markup {
        html! { @if let Some(message) = errors.of(field) { p.field-error id=(id) { (message) } } }
    };
    html! {
        h1 { "Settings" }
        (tabs)
        @if let Some((endpoint, secret)) = created {
            section.card aria-labelledby="new-secret" {
                h2 id="new-secret" { "Webhook endpoint created" }
                p { "Deliveries to " code { (endpoint.url) } " are signed with this secret (Standard Webhooks). Copy it now: it is shown only this once." }
                label for="webhook-secret" { "Signing secret" }
                input id="webhook-secret" readonly value=(secret) autocomplete="off" spellcheck="false";
            }
        }
        @if let Some(message) = errors.of("") {
            p.error role="alert" { (message) }
        }
        @for owner in managed {
            section.card aria-labelledby=(format!("hooks-{}", owner_key(owner.owner))) {
                h2 id=(format!("hooks-{}", owner_key(owner.owner))) { "Webhooks of the " (owner.label) }
                @if owner.endpoints.is_empty() {
                    p.muted { "No endpoints yet." }
                } @else {
                    div.table-wrap {
                        table {
                            thead { tr { th scope="col" { "URL" } th scope="col" { "Events" } th scope="col" { "State" } th scope="col" { "Created" } } }
                            tbody {
                                @for endpoint in &owner.endpoints {
                                    tr {
                                        td { a href=(format!("/settings/webhooks/{}", endpoint.id)) { (endpoint.url) } }
                                        td { (events_text(endpoint)) }
                                        td { (enabled_label(endpoint)) }
                                        td { (endpoint.created_at.format("%Y-%m-%d %H:%M")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card aria-labelledby="new-webhook" {
            h2 id="new-webhook" { "Add an endpoint" }
            form method="post" action="/settings/webhooks" {
                input type="hidden" name="csrf_token" value=(viewer.csrf);
                @if managed.len() > 1 {
                    fieldset aria-describedby=[errors.of("owner").map(|_| "owner-error")] {
                        legend { "Whose endpoint" }
                        @for owner in managed {
                            label.check {
                                input type="radio" name="owner" value=(owner_key(owner.owner)) checked[entered.owner == owner_key(owner.owner)];
                                "The " (owner.label)
                            }
                        }
                        (error("owner", "owner-error"))
                    }
                } @else {
                    input type="hidden" name="owner" value=(owner_key(managed[0].owner));
                }
                label for="webhook-url" { "URL" }
                input id="webhook-url" name="url" type="url" required maxlength=(webhooks::URL_LIMIT) value=(entered.url)
                    aria-invalid=[errors.of("url").map(|_| "true")] aria-describedby=[errors.of("url").map(|_| "url-error")];
                (error("url", "url-error"))
                fieldset aria-describedby=[errors.of("events").map(|_| "events-error")] {
                    legend { "Events to send" }
                    label.check {
                        input type="checkbox" name="events" value="*" checked[entered.events.iter().any(|e| e == "*")];
                        "All events"
                    }
                    @for event in EVENTS {
                        label.check {
                            input type="checkbox" name="events" value=(event) checked[entered.events.iter().any(|e| e == event)];
                            code { (event) }
                        }
                    }
                    (error("events", "events-error"))
                }
                label.check {
                    input type="checkbox" name="enabled" value="yes" checked[entered.enabled];
                    "Enabled (deliver from now on)"
                }
                button type="submit" { "Add endpoint" }
            }
        }
    }
}

/// `GET /settings/webhooks`.
pub async fn list(State(state): State<AppState>, viewer: SignedIn) -> Result<Response, WebError> {
    let managed = managed(&state, &viewer).await?;
    let body = list_body(
        &viewer,
        settings::tabs(&state, &viewer, settings::Tab::Webhooks),
        &managed,
        &Entered::default(),
        &Errors::default(),
        None,
    );
    Ok(viewer.page(&state, "Webhooks", Nav::Settings, body))
}

/// `POST /settings/webhooks`: the form's pairs (events repeat).
pub async fn create(
    State(state): State<AppState>,
    viewer: SignedIn,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let managed_now = managed(&state, &viewer).await?;
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let entered = Entered {
        owner: value("owner").chars().take(20).collect(),
        url: value("url")
            .chars()
            .take(webhooks::URL_LIMIT + 10)
            .collect(),
        events: pairs
            .iter()
            .filter(|(k, _)| k == "events")
            .map(|(_, v)| v.chars().take(100).collect())
            .take(webhooks::EVENTS_LIMIT + 1)
            .collect(),
        enabled: pairs.iter().any(|(k, _)| k == "enabled"),
    };
    let mut errors = Errors::default();
    let owner = managed_now
        .iter()
        .find(|m| owner_key(m.owner) == entered.owner)
        .map(|m| m.owner);
    let created = match owner {
        None => {
            errors.0.push((
                "owner".into(),
                "Choose whose endpoint it is: the team's or the organization's.".into(),
            ));
            None
        }
        Some(owner) => {
            let made = webhooks::create(
                &state.store,
                &state.vault,
                &viewer.user,
                owner,
                EndpointInput {
                    url: entered.url.clone(),
                    events: entered.events.clone(),
                    enabled: entered.enabled,
                },
                state.settings.webhooks_allow_private_hosts,
            )
            .await;
            match made {
                Ok(made) => Some(made),
                Err(service::Error::Invalid(problems)) => {
                    errors
                        .0
                        .extend(problems.into_iter().map(|p| (p.field, p.message)));
                    None
                }
                Err(service::Error::Conflict(message)) => {
                    errors.0.push((String::new(), message));
                    None
                }
                Err(error) => return Err(error.into()),
            }
        }
    };
    let tabs = settings::tabs(&state, &viewer, settings::Tab::Webhooks);
    match created {
        Some((endpoint, secret)) => {
            let managed = managed(&state, &viewer).await?;
            let body = list_body(
                &viewer,
                tabs,
                &managed,
                &Entered::default(),
                &Errors::default(),
                Some((&endpoint, secret.expose_secret())),
            );
            Ok(viewer.page_with(&state, StatusCode::CREATED, "Webhooks", Nav::Settings, body))
        }
        None => {
            let status = if errors.of("").is_some() {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            let body = list_body(&viewer, tabs, &managed_now, &entered, &errors, None);
            Ok(viewer.page_with(&state, status, "Webhooks", Nav::Settings, body))
        }
    }
}

/// Where a delivery stands, in words and as a label class.
fn delivery_state(delivery: &WebhookDelivery) -> (&'static str, &'static str) {
    if delivery.delivered_at.is_some() {
        ("Delivered", "authorized")
    } else if delivery.failed_at.is_some() {
        ("Failed", "declined")
    } else if delivery.last_attempt_at.is_some() {
        ("Retrying", "reauthorizing")
    } else {
        ("Pending", "pending")
    }
}

/// The host of an endpoint's URL, for a flash message (a cookie).
fn host_of(endpoint: &WebhookEndpoint) -> String {
    reqwest::Url::parse(&endpoint.url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_string))
        .unwrap_or_default()
}

fn endpoint_id(id: &str) -> Result<i64, WebError> {
    id.parse::<i64>().map_err(|_| WebError::NotFound)
}

/// `GET /settings/webhooks/{id}`: the endpoint and its delivery log.
pub async fn detail(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let id = endpoint_id(&id)?;
    let endpoint = webhooks::get(&state.store, &viewer.user, id).await?;
    let deliveries = webhooks::deliveries(&state.store, &viewer.user, id, DELIVERIES_SHOWN).await?;
    let body = html! {
        h1 { "Webhook endpoint" }
        (settings::tabs(&state, &viewer, settings::Tab::Webhooks))
        section.card aria-labelledby="endpoint-heading" {
            h2 id="endpoint-heading" { code { (endpoint.url) } " " (enabled_label(&endpoint)) }
            dl.facts {
                dt { "Of" } dd { @if endpoint.team_id.is_some() { "the team" } @else { "the whole organization" } }
                dt { "Events" } dd { (events_text(&endpoint)) }
                dt { "Created" } dd { (endpoint.created_at.format("%Y-%m-%d %H:%M UTC")) }
                @if let Some(since) = endpoint.failing_since { dt { "Failing since" } dd { (since.format("%Y-%m-%d %H:%M UTC")) } }
                @if let Some(reason) = &endpoint.disabled_reason { dt { "Disabled because" } dd { (reason) } }
            }
            div.actions {
                form.inline method="post" action=(format!("/settings/webhooks/{id}/enabled")) {
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    @if endpoint.enabled {
                        input type="hidden" name="enabled" value="false";
                        button.secondary type="submit" { "Disable endpoint" }
                    } @else {
                        input type="hidden" name="enabled" value="true";
                        button type="submit" { "Enable endpoint" }
                    }
                }
                a.button.danger href=(format!("/settings/webhooks/{id}/delete")) { "Delete endpoint…" }
            }
        }
        section.card aria-labelledby="deliveries-heading" {
            h2 id="deliveries-heading" { "Delivery log" }
            @if deliveries.is_empty() {
                p.muted { "Nothing was sent to this endpoint yet." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "Event" } th scope="col" { "State" } th scope="col" { "Status" } th scope="col" { "Attempts" } th scope="col" { "Last error" } th scope="col" { "Time" } } }
                        tbody {
                            @for delivery in &deliveries {
                                @let (words, class) = delivery_state(delivery);
                                tr {
                                    td { code { (delivery.event) } }
                                    td { span class=(format!("state {class}")) { (words) } }
                                    td { (delivery.last_status.map(|s| s.to_string()).unwrap_or_else(|| "—".into())) }
                                    td { (delivery.attempts) }
                                    td { (delivery.last_error.as_deref().unwrap_or("—")) }
                                    td { (delivery.last_attempt_at.unwrap_or(delivery.created_at).format("%Y-%m-%d %H:%M:%S")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/settings/webhooks" { "All webhooks" } }
    };
    Ok(viewer.page(&state, "Webhook endpoint", Nav::Settings, body))
}

#[derive(Deserialize)]
pub struct EnabledForm {
    enabled: String,
}

/// `POST /settings/webhooks/{id}/enabled`: `enabled=true|false`.
pub async fn set_enabled(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<EnabledForm>,
) -> Result<Response, WebError> {
    let id = endpoint_id(&id)?;
    let enabled = match form.enabled.as_str() {
        "true" => true,
        "false" => false,
        _ => return Err(WebError::NotFound),
    };
    let endpoint = webhooks::update(
        &state.store,
        &viewer.user,
        id,
        EndpointChange {
            url: None,
            events: None,
            enabled: Some(enabled),
        },
        state.settings.webhooks_allow_private_hosts,
    )
    .await?;
    Ok(redirect_with_flash(
        &state,
        &format!("/settings/webhooks/{id}"),
        FlashKind::Done,
        // The host only: a URL's path or query may carry the receiver's token.
        &format!(
            "Endpoint at {} {}.",
            host_of(&endpoint),
            if endpoint.enabled {
                "enabled"
            } else {
                "disabled"
            }
        ),
    ))
}

/// `GET /settings/webhooks/{id}/delete`: the confirmation.
pub async fn confirm_delete(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let id = endpoint_id(&id)?;
    let endpoint = webhooks::get(&state.store, &viewer.user, id).await?;
    let body = html! {
        h1 { "Delete this webhook endpoint?" }
        div.card {
            p { "Nothing more is sent to " code { (endpoint.url) } ". Its delivery log and signing secret are destroyed; the audit trail stays." }
            div.actions {
                form.inline method="post" action=(format!("/settings/webhooks/{id}/delete")) {
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    button.danger type="submit" { "Delete endpoint" }
                }
                a.button.secondary href=(format!("/settings/webhooks/{id}")) { "Cancel" }
            }
        }
    };
    Ok(viewer.page(&state, "Delete webhook endpoint", Nav::Settings, body))
}

/// `POST /settings/webhooks/{id}/delete` (after the confirmation).
pub async fn delete(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, WebError> {
    let id = endpoint_id(&id)?;
    let endpoint = webhooks::get(&state.store, &viewer.user, id).await?;
    webhooks::delete(&state.store, &viewer.user, id).await?;
    Ok(redirect_with_flash(
        &state,
        "/settings/webhooks",
        FlashKind::Done,
        &format!("Endpoint at {} deleted.", host_of(&endpoint)),
    ))
}

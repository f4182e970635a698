//! The requester's side of credential requests in the browser: the Sent list
//! with its filters, a request's details (each app's state, modules and
//! permissions) with its actions (Request reauthorization per app, Delete
//! with a confirmation listing the connections and who used them), the
//! Received list, and the team switcher's post.
//!
//! What a viewer may not see answers 404, like what does not exist: the
//! service's access rules decide, these pages only draw.

use super::layout::{self, Nav};
use super::session::{redirect_with_flash, team_cookie, FlashKind, SignedIn, WebError};
use super::{safe_next, CsrfForm};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use credence_domain::{CredentialId, CredentialState, RequestId, RequestStatus};
use credence_service::{self as service, access::Viewer};
use credence_store::{CredentialRequest, RequestFilter, RequestScope, RequestedCredential};
use maud::{html, Markup};
use serde::Deserialize;

/// Requests to a page of the lists.
const PAGE: i64 = 25;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    status: Option<String>,
    q: Option<String>,
    page: Option<i64>,
}

impl ListQuery {
    fn filter(&self, scope: RequestScope) -> RequestFilter {
        let mut filter = RequestFilter::within(scope);
        filter.status = self
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .and_then(|s| RequestStatus::parse("status", s).ok());
        filter.name_contains = self
            .q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(|q| q.chars().take(100).collect());
        filter.limit = PAGE;
        filter.offset = (self.page.unwrap_or(1).clamp(1, 10_000) - 1) * PAGE;
        filter
    }

    fn page(&self) -> i64 {
        self.page.unwrap_or(1).clamp(1, 10_000)
    }

    /// This query's link to page `page`.
    fn link(&self, base: &str, page: i64) -> String {
        let mut pairs = vec![("page", page.to_string())];
        if let Some(status) = self.status.as_deref().filter(|s| !s.is_empty()) {
            pairs.push(("status", status.to_string()));
        }
        if let Some(q) = self.q.as_deref().filter(|q| !q.is_empty()) {
            pairs.push(("q", q.to_string()));
        }
        format!(
            "{base}?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    }
}

/// `GET /credential-requests/sent`: the requests the current team sent.
pub async fn sent(
    State(state): State<AppState>,
    viewer: SignedIn,
    Query(query): Query<ListQuery>,
) -> Result<Response, WebError> {
    let Some(team) = viewer.team.clone() else {
        return Err(WebError::NotFound);
    };
    let filter = query.filter(RequestScope::Sent {
        teams: vec![team.team.id],
        recipient: None,
    });
    let (requests, total) = state.store.db().await?.list_requests(&filter).await?;
    let body = html! {
        div.topline {
            h1 { "Sent credential requests" }
            a.button href="/credential-requests/new" { "+ Create request" }
        }
        (filters("/credential-requests/sent", &query))
        @if requests.is_empty() {
            div.card { p.empty { "No requests here yet. " a href="/credential-requests/new" { "Create one" } " to ask a client for access." } }
        } @else {
            div.table-wrap {
                table {
                    caption.muted { (total) " requests from " (team.team.name) }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Recipient" } th scope="col" { "Status" } th scope="col" { "Created" } } }
                    tbody {
                        @for request in &requests {
                            tr {
                                td { a href=(format!("/credential-requests/{}", request.id)) { (request.name) } }
                                td { (request.recipient_name) br; span.muted { (request.recipient_email) } }
                                td { (layout::state_label(request.status.as_str())) }
                                td { (request.created_at.format("%Y-%m-%d %H:%M")) }
                            }
                        }
                    }
                }
            }
            (pager("/credential-requests/sent", &query, total))
        }
    };
    Ok(viewer.page(&state, "Sent", Nav::Sent, body))
}

/// `GET /credential-requests/received`: the requests sent to the user.
pub async fn received_list(
    State(state): State<AppState>,
    viewer: SignedIn,
    Query(query): Query<ListQuery>,
) -> Result<Response, WebError> {
    let filter = query.filter(RequestScope::Received {
        recipient: viewer.user.id,
    });
    let (requests, total) = state.store.db().await?.list_requests(&filter).await?;
    let body = html! {
        h1 { "Received credential requests" }
        (filters("/credential-requests/received", &query))
        @if requests.is_empty() {
            div.card { p.empty { "Nobody has asked you for access yet." } }
        } @else {
            div.table-wrap {
                table {
                    caption.muted { (total) " requests sent to you" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Received" } } }
                    tbody {
                        @for request in &requests {
                            tr {
                                td { a href=(format!("/received/{}", request.id)) { (request.name) } }
                                td { (layout::state_label(request.status.as_str())) }
                                td { (request.created_at.format("%Y-%m-%d %H:%M")) }
                            }
                        }
                    }
                }
            }
            (pager("/credential-requests/received", &query, total))
        }
    };
    Ok(viewer.page(&state, "Received", Nav::Received, body))
}

/// The list filters: a GET form (status, name), so a filtered list has a link.
fn filters(action: &str, query: &ListQuery) -> Markup {
    let chosen = query.status.as_deref().unwrap_or("");
    html! {
        form.filters method="get" action=(action) role="search" {
            div {
                label for="filter-status" { "Status" }
                select id="filter-status" name="status" {
                    option value="" selected[chosen.is_empty()] { "Any" }
                    @for status in RequestStatus::ALL {
                        option value=(status.as_str()) selected[chosen == status.as_str()] { (layout::state_text(status.as_str())) }
                    }
                }
            }
            div {
                label for="filter-q" { "Name contains" }
                input id="filter-q" name="q" type="search" maxlength="100" value=(query.q.as_deref().unwrap_or(""));
            }
            div { button.secondary.small type="submit" { "Filter" } }
        }
    }
}

fn pager(base: &str, query: &ListQuery, total: i64) -> Markup {
    let page = query.page();
    let last = ((total + PAGE - 1) / PAGE).max(1);
    html! {
        @if last > 1 {
            nav.pager aria-label="Pages" {
                @if page > 1 { a href=(query.link(base, page - 1)) rel="prev" { "← Newer" } }
                span.muted { "Page " (page) " of " (last) }
                @if page < last { a href=(query.link(base, page + 1)) rel="next" { "Older →" } }
            }
        }
    }
}

/// `GET /credential-requests/{id}`: a sent request's details. Its recipient
/// is sent to their own page of it.
pub async fn detail(
    State(state): State<AppState>,
    viewer: SignedIn,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let id = RequestId::parse("id", &id).map_err(|_| WebError::NotFound)?;
    let opened = service::requests::open(&state.ctx(), &viewer.user, id).await?;
    if opened.viewer == Viewer::Recipient {
        return Ok(Redirect::to(&format!("/received/{id}")).into_response());
    }
    // Just sent by this viewer: the link, this once (the cookie goes with it).
    let link_cookie = state.settings.cookie_name(super::create::NEW_LINK_COOKIE);
    let new_link = jar.get(&link_cookie).and_then(|cookie| {
        service::secrets::open_shown_link(&state.vault, id, viewer.user.id, cookie.value())
    });
    let request = &opened.request;
    let body = html! {
        div.topline {
            h1 { (request.name) " " (layout::state_label(request.status.as_str())) }
        }
        @if let Some(link) = &new_link {
            (super::create::sent_card(request, secrecy::ExposeSecret::expose_secret(link)))
        }
        (request_facts(request, opened.requester.as_ref().map(|u| u.name.as_str())))
        @for credential in &opened.credentials {
            section.card aria-labelledby=(format!("app-{}", credential.id)) {
                (credential_heading(&state.catalog, credential))
                (credential_facts(&state.catalog, credential))
                @if matches!(credential.state, CredentialState::Authorized | CredentialState::Invalid) {
                    form.inline method="post" action=(format!("/credential-requests/{id}/reauthorization/{}", credential.id)) {
                        input type="hidden" name="csrf_token" value=(viewer.csrf);
                        button.secondary.small type="submit" { "Request reauthorization" }
                    }
                }
            }
        }
        section.card aria-labelledby="danger-heading" {
            h2 id="danger-heading" { "Delete this request" }
            p { "Deleting it destroys every connection it created; the audit trail stays." }
            a.button.danger href=(format!("/credential-requests/{id}/delete")) { "Delete request…" }
        }
    };
    let mut response = viewer.page(&state, &request.name, Nav::Sent, body);
    if new_link.is_some() {
        let removal = axum_extra::extract::cookie::Cookie::build((link_cookie, ""))
            .path("/")
            .secure(state.settings.secure_cookies)
            .max_age(time::Duration::ZERO)
            .build();
        if let Ok(value) = axum::http::HeaderValue::from_str(&removal.to_string()) {
            response
                .headers_mut()
                .append(axum::http::header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// `POST /credential-requests/{id}/reauthorization/{credential}`: asks the
/// recipient to reauthorize one app. Credence tests the connection first; if
/// it still works nothing is sent, and the flash says so.
pub async fn request_reauthorization(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path((id, credential)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, WebError> {
    let id = RequestId::parse("id", &id).map_err(|_| WebError::NotFound)?;
    let credential =
        CredentialId::parse("credential", &credential).map_err(|_| WebError::NotFound)?;
    let opened = service::requests::open(&state.ctx(), &viewer.user, id).await?;
    let Some(asked) = opened.credentials.iter().find(|c| c.id == credential) else {
        return Err(WebError::NotFound);
    };
    let back = format!("/credential-requests/{id}");
    let label = app_label(&state.catalog, asked);
    match service::credentials::request_reauthorization(&state.ctx(), &viewer.user, credential)
        .await
    {
        Ok(_) => Ok(redirect_with_flash(
            &state,
            &back,
            FlashKind::Done,
            &format!(
                "Asked {} to reauthorize {label}.",
                opened.request.recipient_name
            ),
        )),
        Err(service::Error::Conflict(message) | service::Error::Forbidden(message)) => {
            Ok(redirect_with_flash(
                &state,
                &back,
                FlashKind::Failed,
                &format!("{label}: {message}"),
            ))
        }
        Err(error) => Err(error.into()),
    }
}

fn app_label(catalog: &credence_catalog::Catalog, credential: &RequestedCredential) -> String {
    catalog
        .get(&credential.app_key)
        .map(|a| a.label.clone())
        .unwrap_or_else(|| credential.app_key.clone())
}

/// A connection of the request and the consumers that used it in the last
/// [`service::connections::CONSUMERS_SEEN_FOR`].
struct Usage {
    app: String,
    connection_name: String,
    connection_id: i64,
    consumers: Vec<String>,
}

async fn usages(
    state: &AppState,
    credentials: &[RequestedCredential],
) -> Result<Vec<Usage>, WebError> {
    let since = credence_store::now() - service::connections::CONSUMERS_SEEN_FOR;
    let mut db = state.store.db().await?;
    let mut out = Vec::new();
    for credential in credentials {
        if let Some(connection) = credential.connection_id {
            out.push(Usage {
                app: app_label(&state.catalog, credential),
                connection_name: credential.connection_name.clone(),
                connection_id: connection,
                consumers: db.consumers_of_connection(connection, since).await?,
            });
        }
    }
    Ok(out)
}

/// The connection ids a confirmation was shown for, as the form carries them.
fn connection_list(usages: &[Usage]) -> String {
    usages
        .iter()
        .map(|u| u.connection_id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn delete_confirmation(
    viewer: &SignedIn,
    request: &CredentialRequest,
    usages: &[Usage],
    changed: bool,
) -> Markup {
    let id = request.id;
    html! {
        h1 { "Delete " (request.name) "?" }
        @if changed {
            p.flash.bad role="alert" { "The request changed since this page was shown: check the list again." }
        }
        section.card aria-labelledby="destroyed-heading" {
            @if usages.is_empty() {
                h2 id="destroyed-heading" { "No connection will be destroyed" }
                p { "No app of this request has been authorized, so nothing stops working." }
            } @else {
                h2 id="destroyed-heading" { "These connections will be destroyed" }
                p { "They stop working at once and their secrets are deleted. Used in the last "
                    (service::connections::CONSUMERS_SEEN_FOR.num_days()) " days by:" }
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "App" } th scope="col" { "Connection" } th scope="col" { "Used by" } } }
                        tbody {
                            @for usage in usages {
                                tr {
                                    th scope="row" { (usage.app) }
                                    td { (usage.connection_name) }
                                    td {
                                        @if usage.consumers.is_empty() { span.muted { "Nobody in the last 90 days" } }
                                        @else { ul.consumers { @for consumer in &usage.consumers { li { (consumer) } } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action=(format!("/credential-requests/{id}/delete")) {
                input type="hidden" name="csrf_token" value=(viewer.csrf);
                input type="hidden" name="connections" value=(connection_list(usages));
                button.danger type="submit" { "Delete request" }
                " "
                a.button.secondary href=(format!("/credential-requests/{id}")) { "Cancel" }
            }
        }
    }
}

/// `GET /credential-requests/{id}/delete`: what deleting would destroy.
pub async fn delete_page(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let id = RequestId::parse("id", &id).map_err(|_| WebError::NotFound)?;
    let opened = service::requests::open(&state.ctx(), &viewer.user, id).await?;
    let usages = usages(&state, &opened.credentials).await?;
    let body = delete_confirmation(&viewer, &opened.request, &usages, false);
    let nav = if opened.viewer == Viewer::Recipient {
        Nav::Received
    } else {
        Nav::Sent
    };
    Ok(viewer.page(&state, "Delete request", nav, body))
}

#[derive(Deserialize)]
pub struct DeleteForm {
    /// The connections the confirmation listed (comma-separated ids).
    #[serde(default)]
    connections: String,
}

/// `POST /credential-requests/{id}/delete`: deletes the request, with every
/// connection the confirmation listed. Should the request have gained or
/// lost a connection since, the confirmation is shown again instead.
pub async fn delete(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> Result<Response, WebError> {
    let id = RequestId::parse("id", &id).map_err(|_| WebError::NotFound)?;
    let opened = service::requests::open(&state.ctx(), &viewer.user, id).await?;
    let usages = usages(&state, &opened.credentials).await?;
    if connection_list(&usages) != form.connections.trim() {
        let body = delete_confirmation(&viewer, &opened.request, &usages, true);
        return Ok(viewer.page_with(
            &state,
            axum::http::StatusCode::CONFLICT,
            "Delete request",
            Nav::Sent,
            body,
        ));
    }
    let back = if opened.viewer == Viewer::Recipient {
        "/credential-requests/received"
    } else {
        "/credential-requests/sent"
    };
    match service::requests::delete(&state.ctx(), &viewer.user, id, true).await {
        Ok(deleted) => {
            let message = match deleted.len() {
                0 => format!("Deleted {}.", opened.request.name),
                1 => format!("Deleted {} and its connection.", opened.request.name),
                n => format!("Deleted {} and its {n} connections.", opened.request.name),
            };
            Ok(redirect_with_flash(&state, back, FlashKind::Done, &message))
        }
        Err(service::Error::Forbidden(message)) => Ok(redirect_with_flash(
            &state,
            &format!("/credential-requests/{id}"),
            FlashKind::Failed,
            &message,
        )),
        Err(error) => Err(error.into()),
    }
}

/// Who asked whom, when, and for what.
pub fn request_facts(request: &CredentialRequest, requester: Option<&str>) -> Markup {
    html! {
        @if let Some(description) = &request.description { p { (description) } }
        dl.facts {
            dt { "Recipient" } dd { (request.recipient_name) " (" (request.recipient_email) ")" @if request.recipient_kind == "external" { " · not part of the organization" } }
            @if let Some(requester) = requester { dt { "Requested by" } dd { (requester) } }
            dt { "Created" } dd { (request.created_at.format("%Y-%m-%d %H:%M UTC")) }
            @if let Some(client) = &request.client { dt { "Client" } dd { (client) } }
            @if let Some(project) = &request.project { dt { "Project" } dd { (project) } }
        }
    }
}

/// An app's name, version and state label, as the heading of its card.
pub fn credential_heading(
    catalog: &credence_catalog::Catalog,
    credential: &RequestedCredential,
) -> Markup {
    let label = catalog
        .get(&credential.app_key)
        .map(|a| a.label.as_str())
        .unwrap_or(&credential.app_key);
    html! {
        h2 id=(format!("app-{}", credential.id)) {
            (label) " " span.muted { "v" (credential.app_version) } " "
            (layout::state_label(credential.state.as_str()))
        }
    }
}

/// The connection's name, the note, the granted modules (each module's
/// permissions on hover and focus), and why it was declined or is invalid.
pub fn credential_facts(
    catalog: &credence_catalog::Catalog,
    credential: &RequestedCredential,
) -> Markup {
    let modules: Vec<String> = serde_json::from_str(&credential.modules).unwrap_or_default();
    let version = catalog
        .get(&credential.app_key)
        .and_then(|a| a.version(credential.app_version as u32));
    html! {
        dl.facts {
            dt { "Connection name" } dd { (credential.connection_name) }
            @if let Some(note) = &credential.note { dt { "Note" } dd { (note) } }
        }
        @if let Some(version) = version {
            p.muted { "Modules" }
            (layout::granted_modules(version, &modules))
        }
        @if let Some(reason) = &credential.decline_reason { p.error { "Declined: " (reason) } }
        @if let Some(reason) = &credential.invalid_reason { p.error { "Invalid: " (reason) } }
    }
}

#[derive(Deserialize)]
pub struct SwitchForm {
    team: i64,
    back: Option<String>,
}

/// `POST /team`: remembers the team chosen in the switcher, if the user may
/// act for it, and goes back to the page it came from.
pub async fn switch_team(
    State(state): State<AppState>,
    viewer: SignedIn,
    jar: CookieJar,
    CsrfForm(form): CsrfForm<SwitchForm>,
) -> Response {
    let back = safe_next(form.back.as_deref()).to_string();
    match viewer.teams.iter().find(|t| t.team.id.0 == form.team) {
        Some(choice) => {
            let message = format!(
                "Now working in {} · {}.",
                choice.organization.name, choice.team.name
            );
            let redirect = redirect_with_flash(&state, &back, FlashKind::Done, &message);
            (jar.add(team_cookie(&state, choice.team.id)), redirect).into_response()
        }
        None => WebError::NotFound.into_response(),
    }
}

//! `/audit`: the current team's audit log with the API's filters (`dateFrom`,
//! `dateTo`, `event`, `author`, `target`), newest first a page at a time, and
//! its JSON-lines export (`/audit/export`, the same filters). Who may read
//! which entries is `service::audit_log`'s rule; a team the viewer may not
//! read answers 404.

use super::layout::Nav;
use super::session::{SignedIn, WebError};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use credence_service::audit_log::{AuditQuery, Export, FilterValues, Log, Page};
use credence_service::{self as service, audit_log};
use maud::{html, Markup};

const PAGE: i64 = 50;

/// The query's pairs without empty values (an empty form field is no
/// filter) and without the page number; and the page number.
fn pairs_of(raw: Option<&str>) -> (Vec<(String, String)>, i64) {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.unwrap_or("")).unwrap_or_default();
    let page = pairs
        .iter()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 100_000);
    let pairs = pairs
        .into_iter()
        .filter(|(k, v)| k != "page" && !v.trim().is_empty())
        .take(60)
        .collect();
    (pairs, page)
}

fn log_of(viewer: &SignedIn) -> Result<Log, WebError> {
    viewer
        .team
        .as_ref()
        .map(|t| Log::Team(t.team.id))
        .ok_or(WebError::NotFound)
}

/// `GET /audit`.
pub async fn page(
    State(state): State<AppState>,
    viewer: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    let log = log_of(&viewer)?;
    let (pairs, page) = pairs_of(raw.as_deref());
    let values = audit_log::filter_values(&state.store, &viewer.user, log).await?;
    let (records, total, problems) = match AuditQuery::from_pairs(&pairs) {
        Ok(query) => {
            let (records, total) = audit_log::list(
                &state.store,
                &viewer.user,
                log,
                &query,
                Page {
                    offset: (page - 1) * PAGE,
                    limit: PAGE,
                    oldest_first: false,
                },
            )
            .await?;
            (records, total, Vec::new())
        }
        Err(service::Error::Invalid(problems)) => (Vec::new(), 0, problems),
        Err(error) => return Err(error.into()),
    };
    let query_string = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    let last = ((total + PAGE - 1) / PAGE).max(1);
    let link = |page: i64| {
        let mut with_page = pairs.clone();
        with_page.push(("page".into(), page.to_string()));
        format!(
            "/audit?{}",
            serde_urlencoded::to_string(&with_page).unwrap_or_default()
        )
    };
    let body = html! {
        div.topline {
            h1 { "Audit log" }
            a.button.secondary href=(format!("/audit/export?{query_string}")) download { "Export (JSON lines)" }
        }
        (filters(&pairs, &values, &problems))
        @if records.is_empty() {
            div.card { p.empty { @if problems.is_empty() { "No entries match." } @else { "Fix the filters above." } } }
        } @else {
            div.table-wrap {
                table {
                    caption.muted { (total) " entries" }
                    thead { tr { th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Who" } th scope="col" { "Target" } } }
                    tbody {
                        @for record in &records {
                            tr {
                                td { (record.triggered_at) }
                                td { code { (record.event) } }
                                td { (record.actor_label) }
                                td { (record.target_kind) " " code { (record.target_id) } }
                            }
                        }
                    }
                }
            }
            @if last > 1 {
                nav.pager aria-label="Pages" {
                    @if page > 1 { a href=(link(page - 1)) rel="prev" { "← Newer" } }
                    span.muted { "Page " (page) " of " (last) }
                    @if page < last { a href=(link(page + 1)) rel="next" { "Older →" } }
                }
            }
        }
    };
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(viewer.page_with(&state, status, "Audit log", Nav::Audit, body))
}

fn filters(
    pairs: &[(String, String)],
    values: &FilterValues,
    problems: &[credence_domain::ValidationError],
) -> Markup {
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let error = |field: &str| {
        problems
            .iter()
            .find(|p| p.field == field)
            .map(|p| p.message.clone())
    };
    let field = |name: &str, label: &str, kind: &str| -> Markup {
        let id = format!("audit-{name}");
        let problem = error(name);
        html! {
            div {
                label for=(id) { (label) }
                input id=(id) name=(name) type=(kind) value=(value(name))
                    aria-invalid=[problem.as_ref().map(|_| "true")]
                    aria-describedby=[problem.as_ref().map(|_| format!("{id}-error"))];
                @if let Some(message) = problem { p.field-error id=(format!("{id}-error")) { (message) } }
            }
        }
    };
    let event = value("event");
    let author = value("author");
    html! {
        form.filters method="get" action="/audit" role="search" {
            (field("dateFrom", "From", "date"))
            (field("dateTo", "To", "date"))
            div {
                label for="audit-event" { "Event" }
                select id="audit-event" name="event" {
                    option value="" { "Any" }
                    @for name in &values.events { option value=(name) selected[name == event] { (name) } }
                }
            }
            div {
                label for="audit-author" { "Who" }
                select id="audit-author" name="author" {
                    option value="" { "Anyone" }
                    @for (id, name) in &values.authors { option value=(id) selected[id.to_string() == author] { (name) } }
                }
            }
            (field("target", "Target id", "search"))
            div { button.secondary.small type="submit" { "Filter" } }
        }
    }
}

/// `GET /audit/export`: every matching entry, oldest first, as a download.
pub async fn export(
    State(state): State<AppState>,
    viewer: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    let log = log_of(&viewer)?;
    let (pairs, _) = pairs_of(raw.as_deref());
    let query = AuditQuery::from_pairs(&pairs)?;
    let export = Export::for_caller(&state.store, &viewer.user, log, &query).await?;
    let lines = export.json_lines().await?;
    let team = viewer
        .team
        .as_ref()
        .map(|t| t.team.id.0)
        .unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"audit-log-team-{team}.jsonl\""),
            ),
        ],
        Body::from_stream(futures_util::TryStreamExt::map_ok(lines, Bytes::from)),
    )
        .into_response())
}

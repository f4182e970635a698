//! `/tracker`: the intake tracker of SPEC §9 for the current team — the views
//! (active, due for a nudge, SLA breach, authorized this week) narrowed by
//! client, owner and project, each request's reminders, the rollups per
//! project, and two charts drawn by the server as inline SVG (requests by
//! status over the last 8 weeks; SLA rate per project), each with its numbers
//! in a table for screen readers.

use super::layout::{self, Nav};
use super::session::{SignedIn, WebError};
use crate::AppState;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use credence_domain::{RequestStatus, UserId};
use credence_service::tracking;
use credence_store::{CreatedStatus, ProjectRollup, RequestFilter, RequestScope, TrackingView};
use maud::{html, Markup};
use serde::Deserialize;

const PAGE: i64 = 50;
const WEEKS: i64 = 8;

#[derive(Deserialize, Default)]
pub struct TrackerQuery {
    view: Option<String>,
    client: Option<String>,
    project: Option<String>,
    owner: Option<String>,
}

const VIEWS: [(&str, &str); 5] = [
    ("", "All"),
    ("active", "Active"),
    ("due-for-nudge", "Due for a nudge"),
    ("sla-breach", "SLA breach"),
    ("authorized-this-week", "Authorized this week"),
];

fn text_filter(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(100).collect())
}

/// `GET /tracker`.
pub async fn page(
    State(state): State<AppState>,
    viewer: SignedIn,
    Query(query): Query<TrackerQuery>,
) -> Result<Response, WebError> {
    let Some(team) = viewer.team.clone() else {
        return Err(WebError::NotFound);
    };
    let now = Utc::now();
    let view_key = query.view.as_deref().unwrap_or("");
    let view = match view_key {
        "active" => Some(TrackingView::Active),
        "due-for-nudge" => Some(TrackingView::DueForNudge(now)),
        "sla-breach" => Some(TrackingView::SlaBreach(now)),
        "authorized-this-week" => Some(TrackingView::AuthorizedSince(tracking::start_of_week(now))),
        _ => None,
    };
    let owner = query
        .owner
        .as_deref()
        .and_then(|o| o.parse::<i64>().ok())
        .map(UserId);
    let mut filter = RequestFilter::within(RequestScope::Sent {
        teams: vec![team.team.id],
        recipient: None,
    });
    filter.client = text_filter(&query.client);
    filter.project = text_filter(&query.project);
    filter.owner = owner;
    filter.view = view;
    filter.limit = PAGE;
    let mut db = state.store.db().await?;
    let (requests, total) = db.list_requests(&filter).await?;
    let members = db.list_team_members(team.team.id).await?;
    let whole = RequestFilter::within(RequestScope::Sent {
        teams: vec![team.team.id],
        recipient: None,
    });
    let rollups = db.project_rollups(&whole, now).await?;
    let since = week_start(now) - Duration::weeks(WEEKS - 1);
    let recent = db.request_statuses_since(&whole, since).await?;
    drop(db);
    let name_of = |id: Option<UserId>| {
        id.and_then(|id| members.iter().find(|m| m.user.id == id))
            .map(|m| m.user.name.clone())
            .unwrap_or_else(|| "—".into())
    };
    let link = |view: &str| {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if !view.is_empty() {
            pairs.push(("view", view.to_string()));
        }
        for (key, value) in [
            ("client", &query.client),
            ("project", &query.project),
            ("owner", &query.owner),
        ] {
            if let Some(value) = text_filter(value) {
                pairs.push((key, value));
            }
        }
        format!(
            "/tracker?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    };
    let body = html! {
        h1 { "Tracker" }
        nav aria-label="Views" {
            ul.actions.tabs {
                @for (key, label) in VIEWS {
                    li { a.button.small.secondary href=(link(key)) aria-current=[(key == view_key).then_some("page")] { (label) } }
                }
            }
        }
        form.filters method="get" action="/tracker" role="search" {
            @if !view_key.is_empty() { input type="hidden" name="view" value=(view_key); }
            div { label for="tracker-client" { "Client" } input id="tracker-client" name="client" maxlength="100" value=(query.client.as_deref().unwrap_or("")); }
            div { label for="tracker-project" { "Project" } input id="tracker-project" name="project" maxlength="100" value=(query.project.as_deref().unwrap_or("")); }
            div {
                label for="tracker-owner" { "Owner" }
                select id="tracker-owner" name="owner" {
                    option value="" { "Anyone" }
                    @for member in &members {
                        option value=(member.user.id.0) selected[Some(member.user.id) == owner] { (member.user.name) }
                    }
                }
            }
            div { button.secondary.small type="submit" { "Filter" } }
        }
        @if requests.is_empty() {
            div.card { p.empty { "No request in this view." } }
        } @else {
            div.table-wrap {
                table {
                    caption.muted { (total) " requests" @if total > PAGE { " (the newest " (PAGE) " shown; the Sent list pages through all)" } }
                    thead { tr {
                        th scope="col" { "Request" } th scope="col" { "Client" } th scope="col" { "Project" }
                        th scope="col" { "Owner" } th scope="col" { "Status" } th scope="col" { "Reminders" } th scope="col" { "SLA due" }
                    } }
                    tbody {
                        @for request in &requests {
                            tr {
                                td { a href=(format!("/credential-requests/{}", request.id)) { (request.name) } br; span.muted { (request.recipient_name) } }
                                td { (request.client.as_deref().unwrap_or("—")) }
                                td { (request.project.as_deref().unwrap_or("—")) }
                                td { (name_of(request.owner_id.or(Some(request.requester_id)))) }
                                td { (layout::state_label(request.status.as_str())) }
                                td {
                                    (request.nudge_count) " sent"
                                    @if let Some(last) = request.last_nudge_at { br; span.muted { "last " (last.format("%Y-%m-%d %H:%M")) } }
                                    @if let Some(next) = request.next_nudge_at { br; span.muted { "next " (next.format("%Y-%m-%d %H:%M")) } }
                                }
                                td { (request.sla_due_at.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "—".into())) }
                            }
                        }
                    }
                }
            }
        }
        section.card aria-labelledby="projects" {
            h2 id="projects" { "Projects" }
            (rollup_table(&rollups))
            (sla_chart(&rollups))
        }
        section.card aria-labelledby="weeks" {
            h2 id="weeks" { "Requests by status, last " (WEEKS) " weeks" }
            (weeks_chart(&recent, since))
        }
    };
    Ok(viewer.page(&state, "Tracker", Nav::Tracker, body))
}

fn sla_rate(rollup: &ProjectRollup) -> f64 {
    if rollup.total == 0 {
        1.0
    } else {
        rollup.authorized as f64 / rollup.total as f64
    }
}

fn project_name(rollup: &ProjectRollup) -> &str {
    rollup.project.as_deref().unwrap_or("(no project)")
}

fn rollup_table(rollups: &[ProjectRollup]) -> Markup {
    html! {
        @if rollups.is_empty() {
            p.muted { "No requests yet." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Project" } th scope="col" { "Total" } th scope="col" { "Authorized" } th scope="col" { "Pending" } th scope="col" { "SLA breaches" } th scope="col" { "SLA rate" } } }
                    tbody {
                        @for rollup in rollups {
                            tr {
                                th scope="row" { (project_name(rollup)) }
                                td { (rollup.total) } td { (rollup.authorized) } td { (rollup.pending) } td { (rollup.breaches) }
                                td { (format!("{:.0} %", sla_rate(rollup) * 100.0)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Horizontal bars: each project's SLA rate (the numbers are in the table above).
fn sla_chart(rollups: &[ProjectRollup]) -> Markup {
    if rollups.is_empty() {
        return html! {};
    }
    let row_height = 26;
    let height = row_height * rollups.len() as i64 + 10;
    html! {
        svg.chart role="img" aria-labelledby="sla-chart-title" viewBox=(format!("0 0 520 {height}")) width="100%" {
            title id="sla-chart-title" { "SLA rate per project (the table above has the numbers)" }
            @for (index, rollup) in rollups.iter().enumerate() {
                @let y = index as i64 * row_height + 5;
                @let width = (sla_rate(rollup) * 300.0).round() as i64;
                text x="0" y=(y + 16) font-size="12" fill="#1d2330" { (project_name(rollup).chars().take(24).collect::<String>()) }
                rect x="170" y=(y + 3) width="300" height="16" fill="#e9ecef" {}
                rect x="170" y=(y + 3) width=(width) height="16" fill="#1e6b30" {}
                text x=(175 + width.min(250)) y=(y + 16) font-size="12" fill=(if width > 250 { "#ffffff" } else { "#1d2330" }) { (format!("{:.0} %", sla_rate(rollup) * 100.0)) }
            }
        }
    }
}

/// The Monday 00:00 UTC of `at`'s week.
fn week_start(at: DateTime<Utc>) -> DateTime<Utc> {
    tracking::start_of_week(at)
}

/// The colour of a status in the weekly chart (the label colours).
fn status_colour(status: RequestStatus) -> &'static str {
    match status {
        RequestStatus::Authorized => "#2f9e44",
        RequestStatus::PartiallyAuthorized => "#3b5bdb",
        RequestStatus::Declined | RequestStatus::Invalid => "#c92a2a",
        RequestStatus::Pending | RequestStatus::Incomplete => "#868e96",
        RequestStatus::Revoked => "#495057",
    }
}

/// One bar of a stacked column: its top, its height and its colour.
type Bar = (i64, i64, &'static str);

/// Stacked columns: the requests created in each of the last weeks, by their
/// status now; the same numbers in a table beside it for screen readers.
fn weeks_chart(recent: &[CreatedStatus], since: DateTime<Utc>) -> Markup {
    let mut counts = vec![vec![0i64; RequestStatus::ALL.len()]; WEEKS as usize];
    for request in recent {
        let week = ((request.created_at - since).num_days() / 7).clamp(0, WEEKS - 1) as usize;
        if let Some(index) = RequestStatus::ALL.iter().position(|s| *s == request.status) {
            counts[week][index] += 1;
        }
    }
    let busiest = counts
        .iter()
        .map(|w| w.iter().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, height, bar) = (520i64, 180i64, 40i64);
    let gap = (width - 40 - bar * WEEKS) / WEEKS;
    // Each week's column: its bars stacked from the axis up, (y, height, colour).
    let columns: Vec<(usize, i64, Vec<Bar>)> = counts
        .iter()
        .enumerate()
        .map(|(week, statuses)| {
            let mut top = height;
            let bars = statuses
                .iter()
                .enumerate()
                .filter(|(_, count)| **count > 0)
                .map(|(index, count)| {
                    let h = (count * (height - 20) / busiest).max(2);
                    top -= h;
                    (top, h, status_colour(RequestStatus::ALL[index]))
                })
                .collect();
            (week, 40 + week as i64 * (bar + gap), bars)
        })
        .collect();
    html! {
        svg.chart role="img" aria-labelledby="weeks-chart-title" viewBox=(format!("0 0 {width} {}", height + 56)) width="100%" {
            title id="weeks-chart-title" { "Requests created per week by their status now (the table below has the numbers)" }
            line x1="30" y1=(height) x2=(width) y2=(height) stroke="#545b68" {}
            text x="0" y="12" font-size="11" fill="#1d2330" { (busiest) }
            @for (week, x, bars) in &columns {
                @for (y, h, colour) in bars {
                    rect x=(x) y=(y) width=(bar) height=(h) fill=(colour) {}
                }
                text x=(x) y=(height + 16) font-size="11" fill="#1d2330" { ((since + Duration::weeks(*week as i64)).format("%d %b")) }
            }
            @for (index, status) in RequestStatus::ALL.iter().enumerate() {
                @let (x, y) = ((index as i64 % 4) * 130, height + 24 + (index as i64 / 4) * 15);
                rect x=(x) y=(y) width="10" height="10" fill=(status_colour(*status)) {}
                text x=(x + 14) y=(y + 9) font-size="11" fill="#1d2330" { (layout::state_text(status.as_str())) }
            }
        }
        details {
            summary { "The numbers" }
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Week of" } @for status in RequestStatus::ALL { th scope="col" { (layout::state_text(status.as_str())) } } } }
                    tbody {
                        @for (week, statuses) in counts.iter().enumerate() {
                            tr {
                                th scope="row" { ((since + Duration::weeks(week as i64)).format("%Y-%m-%d")) }
                                @for count in statuses { td { (count) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

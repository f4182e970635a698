//! `/audit-logs`: Make's audit log endpoints (an organization's log, one team's,
//! their `/filters`, one entry) and our JSON-lines export. Who sees what is
//! `service::audit_log`'s rule; this module reads Make's query parameters and
//! writes Make's envelopes.
//!
//! Filters: `dateFrom`, `dateTo` (ISO 8601 date or date-time), `event[]`
//! (repeatable, at most 50 times), `author` (a user id), `team` (a team id),
//! `target` (ours: a target id), with `pg[offset]`, `pg[limit]` (at most 1000),
//! `pg[sortDir]` (newest first unless `asc`).

use crate::error::ApiError;
use crate::extract::{select_columns, ApiCaller, AppPath, ListParams, QueryPairs};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use credence_domain::{OrganizationId, Scope, TeamId, UserId, ValidationError};
use credence_service::audit_log::{
    self, json_lines, parse_time, AuditQuery, AuditRecord, Bound, Export, Log, Page,
};
use serde_json::{json, Value};

/// The most entries one page answers.
const MAX_PAGE: usize = 1000;

const COLUMNS: &[&str] = &[
    "id",
    "uuid",
    "triggeredAt",
    "organizationId",
    "teamId",
    "teamName",
    "event",
    "author",
    "actorLabel",
    "targetKind",
    "targetId",
    "data",
];

/// A path id: an integer, or a 400 naming `field`.
fn path_id(field: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().map_err(|_| {
        ApiError::invalid(
            field,
            format!(
                "{field} {:?} is not an integer id",
                raw.chars().take(40).collect::<String>()
            ),
        )
    })
}

/// The filters of the query string; every bad one is reported at once.
fn audit_query(query: &QueryPairs) -> Result<AuditQuery, ApiError> {
    let mut problems: Vec<ValidationError> = Vec::new();
    let time = |field: &str, bound: Bound, problems: &mut Vec<ValidationError>| {
        query.get(field).and_then(|raw| {
            parse_time(field, raw, bound)
                .map_err(|e| problems.push(e))
                .ok()
        })
    };
    let date_from = time("dateFrom", Bound::Start, &mut problems);
    let date_to = time("dateTo", Bound::End, &mut problems);
    if let (Some(from), Some(to)) = (date_from, date_to) {
        if to < from {
            problems.push(ValidationError::new(
                "dateTo",
                format!(
                    "dateTo {} is before dateFrom {}; swap them",
                    to.to_rfc3339(),
                    from.to_rfc3339()
                ),
            ));
        }
    }
    let id = |field: &str, problems: &mut Vec<ValidationError>| {
        query.get(field).and_then(|raw| {
            raw.trim()
                .parse::<i64>()
                .map_err(|_| {
                    problems.push(ValidationError::new(
                        field,
                        format!(
                            "{field} {:?} is not an integer id",
                            raw.chars().take(40).collect::<String>()
                        ),
                    ))
                })
                .ok()
        })
    };
    let author = id("author", &mut problems).map(UserId);
    let team = id("team", &mut problems).map(TeamId);
    let mut events = Vec::new();
    for (key, value) in &query.0 {
        if key != "event[]" && key != "event" {
            continue;
        }
        let length = value.chars().count();
        if length == 0 || length > 100 {
            problems.push(ValidationError::new(
                "event[]",
                format!("event[] must be an event name of 1 to 100 characters; {length} given"),
            ));
        } else if !events.contains(value) {
            events.push(value.clone());
        }
    }
    let target = query.get("target").map(str::to_string);
    if let Some(target) = &target {
        if target.chars().count() > 200 {
            problems.push(ValidationError::new(
                "target",
                "target is longer than 200 characters",
            ));
        }
    }
    if problems.is_empty() {
        Ok(AuditQuery {
            date_from,
            date_to,
            events,
            author,
            team,
            target,
        })
    } else {
        Err(ApiError::Invalid(problems))
    }
}

/// Make's `pg` parameters for the log: sorted by time only, newest first by
/// default, at most [`MAX_PAGE`] entries.
fn page(query: &QueryPairs, params: &ListParams) -> Result<Page, ApiError> {
    params.sort_column(&["triggeredAt"])?;
    let descending = query.get("pg[sortDir]").is_none() || params.descending;
    Ok(Page {
        offset: i64::try_from(params.offset).unwrap_or(i64::MAX),
        limit: params.limit.min(MAX_PAGE) as i64,
        oldest_first: !descending,
    })
}

fn pg_answer(page: Page, total: i64) -> Value {
    json!({
        "sortBy": "triggeredAt",
        "sortDir": if page.oldest_first { "asc" } else { "desc" },
        "offset": page.offset,
        "limit": page.limit,
        "total": total,
    })
}

fn record_json(record: &AuditRecord) -> Result<Value, ApiError> {
    serde_json::to_value(record).map_err(|e| ApiError::Internal(e.into()))
}

async fn list(
    state: AppState,
    caller: ApiCaller,
    log: Log,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::OrganizationRead)?;
    let filters = audit_query(&query)?;
    let params = ListParams::parse(&query.0)?;
    let page = page(&query, &params)?;
    let (records, total) = audit_log::list(&state.store, &caller.user, log, &filters, page).await?;
    let items = records
        .iter()
        .map(record_json)
        .collect::<Result<Vec<_>, _>>()?;
    let cols: Vec<String> = params.cols.into_iter().filter(|c| c != "*").collect();
    let items = select_columns(items, &cols, COLUMNS)?;
    Ok(Json(
        json!({ "auditLogs": items, "pg": pg_answer(page, total) }),
    ))
}

/// `GET /audit-logs/organization/{organizationId}`.
pub async fn organization_log(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let organization = OrganizationId(path_id("organizationId", &id)?);
    list(state, caller, Log::Organization(organization), query).await
}

/// `GET /audit-logs/team/{teamId}`.
pub async fn team_log(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let team = TeamId(path_id("teamId", &id)?);
    list(state, caller, Log::Team(team), query).await
}

async fn filters(state: AppState, caller: ApiCaller, log: Log) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::OrganizationRead)?;
    let values = audit_log::filter_values(&state.store, &caller.user, log).await?;
    let pairs = |pairs: &[(i64, String)]| -> Vec<Value> {
        pairs
            .iter()
            .map(|(id, name)| json!({ "id": id, "name": name }))
            .collect()
    };
    Ok(Json(json!({
        "auditLogFilters": {
            "events": values.events,
            "authors": pairs(&values.authors),
            "teams": pairs(&values.teams),
        }
    })))
}

/// `GET /audit-logs/organization/{organizationId}/filters`.
pub async fn organization_filters(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    let organization = OrganizationId(path_id("organizationId", &id)?);
    filters(state, caller, Log::Organization(organization)).await
}

/// `GET /audit-logs/team/{teamId}/filters`.
pub async fn team_filters(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    let team = TeamId(path_id("teamId", &id)?);
    filters(state, caller, Log::Team(team)).await
}

/// `GET /audit-logs/{id}`: one entry (Make addresses entries by UUID; ours
/// have integer ids).
pub async fn get(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::OrganizationRead)?;
    let id = path_id("id", &id)?;
    let record = audit_log::get(&state.store, &caller.user, id).await?;
    Ok(Json(json!({ "auditLog": record_json(&record)? })))
}

/// The export as `application/x-ndjson`: every matching entry, oldest first,
/// one JSON object per line, streamed a page at a time. Access and filters are
/// checked, and the first page read, before the answer starts, so those
/// failures get their proper status; a database failure later cuts the
/// stream off rather than ending it as if it were complete.
async fn export(
    state: AppState,
    caller: ApiCaller,
    log: Log,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    caller.require(Scope::OrganizationRead)?;
    let filters = audit_query(&query)?;
    let mut export = Export::for_caller(&state.store, &caller.user, log, &filters).await?;
    let first = export.next_page().await?;
    let pages =
        futures_util::stream::try_unfold((export, first), |(mut export, pending)| async move {
            let page = match pending {
                Some(page) => Some(page),
                None => export.next_page().await.map_err(|error| {
                    tracing::error!(error = format!("{error:#}"), "audit export failed midway");
                    std::io::Error::other("the audit export failed; see the server log")
                })?,
            };
            match page {
                None => Ok::<_, std::io::Error>(None),
                Some(records) => {
                    let lines = json_lines(&records)
                        .map_err(|_| std::io::Error::other("cannot write an audit entry"))?;
                    Ok(Some((Bytes::from(lines), (export, None))))
                }
            }
        });
    let filename = match log {
        Log::Organization(organization) => format!("audit-log-organization-{organization}.jsonl"),
        Log::Team(team) => format!("audit-log-team-{team}.jsonl"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(pages),
    )
        .into_response())
}

/// `GET /audit-logs/organization/{organizationId}/export`.
pub async fn organization_export(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let organization = OrganizationId(path_id("organizationId", &id)?);
    export(state, caller, Log::Organization(organization), query).await
}

/// `GET /audit-logs/team/{teamId}/export`.
pub async fn team_export(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let team = TeamId(path_id("teamId", &id)?);
    export(state, caller, Log::Team(team), query).await
}

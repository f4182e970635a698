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
use credence_domain::{OrganizationId, Scope, TeamId};
use credence_service::audit_log::{self, AuditQuery, AuditRecord, Export, Log, Page};
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
    Ok(AuditQuery::from_pairs(&query.0)?)
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
#[utoipa::path(get, path = "/audit-logs/organization/{id}", tag = "audit logs",
    summary = "An organization's audit log, newest first",
    params(
        ("id" = String, Path, description = "The organization's id (an integer)."),
        AuditFilters,
        crate::api::doc::PageParams
    ),
    security(("token" = ["organization:read"])),
    responses((status = 200, description = "An organization's audit log, newest first.", body = schema::Logs)))]
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
#[utoipa::path(get, path = "/audit-logs/team/{id}", tag = "audit logs",
    summary = "A team's audit log, newest first",
    params(
        ("id" = String, Path, description = "The team's id (an integer)."),
        AuditFilters,
        crate::api::doc::PageParams
    ),
    security(("token" = ["organization:read"])),
    responses((status = 200, description = "A team's audit log, newest first.", body = schema::Logs)))]
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
#[utoipa::path(get, path = "/audit-logs/organization/{id}/filters", tag = "audit logs",
    summary = "The values the organization's log can be filtered by",
    params(
        ("id" = String, Path, description = "The organization's id (an integer).")
    ),
    security(("token" = ["organization:read"])),
    responses((status = 200, description = "The values the organization's log can be filtered by.", body = schema::Filters)))]
pub async fn organization_filters(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    let organization = OrganizationId(path_id("organizationId", &id)?);
    filters(state, caller, Log::Organization(organization)).await
}

/// `GET /audit-logs/team/{teamId}/filters`.
#[utoipa::path(get, path = "/audit-logs/team/{id}/filters", tag = "audit logs",
    summary = "The values the team's log can be filtered by",
    params(
        ("id" = String, Path, description = "The team's id (an integer).")
    ),
    security(("token" = ["organization:read"])),
    responses((status = 200, description = "The values the team's log can be filtered by.", body = schema::Filters)))]
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
#[utoipa::path(get, path = "/audit-logs/{id}", tag = "audit logs",
    summary = "One audit log entry",
    params(("id" = String, Path, description = "The entry's id (an integer).")),
    security(("token" = ["organization:read"])),
    responses((status = 200, description = "The entry.", body = schema::One)))]
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
    let export = Export::for_caller(&state.store, &caller.user, log, &filters).await?;
    let lines = export.json_lines().await?;
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
        Body::from_stream(futures_util::TryStreamExt::map_ok(lines, Bytes::from)),
    )
        .into_response())
}

/// `GET /audit-logs/organization/{organizationId}/export`.
#[utoipa::path(get, path = "/audit-logs/organization/{id}/export", tag = "audit logs",
    summary = "An organization's audit log as JSON lines",
    params(
        ("id" = String, Path, description = "The organization's id (an integer)."),
        AuditFilters
    ),
    security(("token" = ["organization:read"])),
    responses((status = 200, description = "Every matching entry, oldest first, one JSON object (an AuditLog) per line.", content_type = "application/x-ndjson", body = String)))]
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
#[utoipa::path(get, path = "/audit-logs/team/{id}/export", tag = "audit logs",
    summary = "A team's audit log as JSON lines",
    params(
        ("id" = String, Path, description = "The team's id (an integer)."),
        AuditFilters
    ),
    security(("token" = ["organization:read"])),
    responses((status = 200, description = "Every matching entry, oldest first, one JSON object (an AuditLog) per line.", content_type = "application/x-ndjson", body = String)))]
pub async fn team_export(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let team = TeamId(path_id("teamId", &id)?);
    export(state, caller, Log::Team(team), query).await
}

/// The log's filters (`AuditQuery::from_pairs`), for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct AuditFilters {
    /// ISO 8601 date or date-time: entries from then on.
    #[param(rename = "dateFrom")]
    date_from: Option<String>,
    /// ISO 8601 date or date-time: entries until then.
    #[param(rename = "dateTo")]
    date_to: Option<String>,
    /// Only these events (repeatable).
    #[param(rename = "event[]")]
    event: Option<Vec<String>>,
    /// Only entries by this user.
    author: Option<i64>,
    /// Only entries of this team.
    team: Option<i64>,
    /// Only entries about this target.
    target: Option<String>,
}

/// The answers' shapes, for the OpenAPI document (built above with `json!`).
#[allow(dead_code)]
pub(crate) mod schema {
    use crate::api::doc::Pg;
    use credence_service::audit_log::AuditRecord;
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Logs {
        audit_logs: Vec<AuditRecord>,
        pg: Pg,
    }

    #[derive(ToSchema)]
    #[schema(as = AuditLogAnswer, rename_all = "camelCase")]
    pub struct One {
        audit_log: AuditRecord,
    }

    #[derive(ToSchema)]
    pub struct Named {
        id: i64,
        name: String,
    }

    #[derive(ToSchema)]
    #[schema(as = AuditLogFilterValues)]
    pub struct FilterValues {
        events: Vec<String>,
        authors: Vec<Named>,
        teams: Vec<Named>,
    }

    #[derive(ToSchema)]
    #[schema(as = AuditLogFilters, rename_all = "camelCase")]
    pub struct Filters {
        audit_log_filters: FilterValues,
    }
}

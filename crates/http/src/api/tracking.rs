//! Intake tracking and reminders (SPEC §9), in the conventions of Make's
//! API: changing a request's client, project and owner
//! (`PATCH /credential-requests/requests/{id}`), the rollups per project
//! (`GET /credential-requests/projects`), and a team's reminder policy
//! (`GET|PUT /credential-requests/teams/{teamId}/reminder-policy`). The
//! tracking views are filters of the Sent list (`requests.rs`).

use super::requests::{list_filter, requests_json, sent_teams};
use crate::error::ApiError;
use crate::extract::{ApiCaller, AppJson, AppPath, ListParams, QueryPairs};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use credence_domain::{RequestId, Scope, TeamId};
use credence_service::reminders::{self, PolicyInput};
use credence_service::tracking::{self, TrackingInput};
use credence_store::RequestScope;
use serde_json::{json, Value};

/// `PATCH /credential-requests/requests/{id}`: `{"client", "project",
/// "owner"}`, each optional (absent keeps, `null` clears; a cleared owner is
/// the requester again). Answers the request.
#[utoipa::path(patch, path = "/credential-requests/requests/{id}", tag = "tracking",
    summary = "Change a request's client, project or owner",
    params(("id" = String, Path, format = Uuid, description = "The request's id.")),
    request_body = TrackingInput,
    security(("token" = ["credential-requests:write"])),
    responses((status = 200, description = "The request.", body = super::requests::schema::RequestAnswer)))]
pub async fn update(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
    AppJson(input): AppJson<TrackingInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    let id = RequestId::parse("requestId", &id)?;
    let updated = tracking::update(&state.ctx(), &caller.user, id, input).await?;
    let mut db = state.store.db().await?;
    let mut items = requests_json(&mut db, std::slice::from_ref(&updated)).await?;
    Ok(Json(
        json!({ "request": items.pop().unwrap_or(Value::Null) }),
    ))
}

/// `GET /credential-requests/projects`: per team and project of the requests
/// the caller sees as sender (`teamId` and the Sent list's filters narrow
/// them): total, authorized, pending, breaches and the
/// SLA rate (authorized ÷ total, 1 when empty).
#[utoipa::path(get, path = "/credential-requests/projects", tag = "tracking",
    summary = "Rollups per team and project of the requests the caller's teams sent",
    params(
        ("teamId" = Option<i64>, Query, description = "Only this team's."),
        crate::api::doc::RequestFilterParams,
        crate::api::doc::PageParams,
    ),
    security(("token" = ["credential-requests:read"])),
    responses((status = 200, description = "The rollups.", body = schema::Projects)))]
pub async fn projects(
    State(state): State<AppState>,
    caller: ApiCaller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsRead)?;
    let params = ListParams::parse(&query.0)?;
    let mut db = state.store.db().await?;
    let teams = sent_teams(&mut db, &caller, &query).await?;
    drop(db);
    let filter = list_filter(
        &query,
        &params,
        RequestScope::Sent {
            teams,
            recipient: None,
        },
    )?;
    let rollups = tracking::rollups(&state.ctx(), &filter, credence_store::now()).await?;
    let projects: Vec<Value> = rollups.iter().map(tracking::rollup_json).collect();
    Ok(Json(json!({ "projects": projects })))
}

fn team_id(raw: &str) -> Result<TeamId, ApiError> {
    raw.parse::<i64>().map(TeamId).map_err(|_| {
        ApiError::invalid(
            "teamId",
            format!(
                "teamId {:?} is not an integer id",
                raw.chars().take(40).collect::<String>()
            ),
        )
    })
}

fn policy_answer(team: TeamId, policy: &reminders::Policy) -> Json<Value> {
    let mut body = reminders::policy_json(policy);
    body["teamId"] = json!(team);
    body["channels"] = json!({
        "email": policy.email,
        "slack": policy.slack_secret_id.is_some(),
    });
    body["updatedAt"] = json!(policy.updated_at);
    body["updatedBy"] = json!(policy.updated_by);
    Json(json!({ "reminderPolicy": body }))
}

/// `GET /credential-requests/teams/{teamId}/reminder-policy`: the team's
/// policy (the defaults until an admin sets one). The Slack URL is a key to
/// the channel: it is never shown, only whether there is one.
#[utoipa::path(get, path = "/credential-requests/teams/{id}/reminder-policy", tag = "tracking",
    summary = "A team's reminder policy (the defaults until an admin sets one)",
    params(("id" = i64, Path, description = "The team.")),
    security(("token" = ["credential-requests:read"])),
    responses((status = 200, description = "The policy.", body = schema::PolicyAnswer)))]
pub async fn get_policy(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(team): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsRead)?;
    let team = team_id(&team)?;
    let policy = reminders::get_policy(&state.ctx(), &caller.user, team).await?;
    Ok(policy_answer(team, &policy))
}

/// `PUT /credential-requests/teams/{teamId}/reminder-policy` (team admins,
/// organization owners and admins): `firstAfterHours`, `everyHours`,
/// `maxCount`, `slaHours`, `email`, `sponsorCc`, `slackWebhookUrl`; an
/// absent field keeps its value.
#[utoipa::path(put, path = "/credential-requests/teams/{id}/reminder-policy", tag = "tracking",
    summary = "Change a team's reminder policy (team admins, organization owners and admins)",
    params(("id" = i64, Path, description = "The team.")),
    request_body = PolicyInput,
    security(("token" = ["credential-requests:write"])),
    responses((status = 200, description = "The policy.", body = schema::PolicyAnswer)))]
pub async fn put_policy(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(team): AppPath<String>,
    AppJson(input): AppJson<PolicyInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    let team = team_id(&team)?;
    let policy = reminders::put_policy(
        &state.ctx(),
        &caller.user,
        team,
        input,
        state.settings.reminders_allow_private_hosts,
    )
    .await?;
    Ok(policy_answer(team, &policy))
}

/// The answers' shapes, for the OpenAPI document (built above with `json!`).
#[allow(dead_code)]
pub(crate) mod schema {
    use chrono::{DateTime, Utc};
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Rollup {
        team_id: i64,
        #[schema(required = true)]
        project: Option<String>,
        total: i64,
        authorized: i64,
        pending: i64,
        breaches: i64,
        /// Authorized ÷ total; 1 when there are none.
        sla_rate: f64,
    }

    #[derive(ToSchema)]
    pub struct Projects {
        projects: Vec<Rollup>,
    }

    #[derive(ToSchema)]
    pub struct Channels {
        email: bool,
        /// Whether a Slack webhook is set (its URL is never shown).
        slack: bool,
    }

    #[derive(ToSchema)]
    #[schema(as = ReminderPolicy, rename_all = "camelCase")]
    pub struct Policy {
        first_after_hours: i64,
        every_hours: i64,
        max_count: i64,
        sla_hours: i64,
        email: bool,
        #[schema(required = true)]
        sponsor_cc: Option<String>,
        slack_webhook_configured: bool,
        team_id: i64,
        channels: Channels,
        #[schema(required = true)]
        updated_at: Option<DateTime<Utc>>,
        #[schema(required = true)]
        updated_by: Option<i64>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct PolicyAnswer {
        reminder_policy: Policy,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct ClosedCredential {
        #[schema(format = Uuid)]
        request_id: String,
        #[schema(format = Uuid)]
        credential_id: String,
        app_name: String,
        previous_state: String,
        #[schema(pattern = "^revoked$")]
        state: String,
        #[schema(required = true)]
        connection_id: Option<i64>,
        #[schema(
            pattern = "^(nothing_granted|no_revocation_endpoint|revoked_at_provider|provider_refused|provider_unreachable)$"
        )]
        at_provider: String,
        /// The provider's HTTP status, when it answered.
        #[schema(required = true)]
        provider_status: Option<u16>,
        /// Why the provider did not revoke, when it did not.
        #[schema(required = true)]
        reason: Option<String>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Teardown {
        team_id: i64,
        project: String,
        /// The note each revoked credential carries.
        note: String,
        closed_at: DateTime<Utc>,
        /// The project's requests.
        requests: i64,
        changed: bool,
        /// Credentials that had ended before (declined or revoked).
        already_ended: i64,
        credentials: Vec<ClosedCredential>,
        message: String,
    }

    #[derive(ToSchema)]
    pub struct TeardownAnswer {
        teardown: Teardown,
    }
}

/// `POST /credential-requests/projects/{name}/teardown?teamId=…`: closes
/// project `name` of team `teamId` (SPEC §9): every credential of its
/// requests still granted or asked for is revoked — at the provider where the
/// app can, its secret destroyed here in any case — with the note "project
/// <name> closed". Answers per credential what happened (`atProvider`:
/// `revoked_at_provider`, `no_revocation_endpoint`, `provider_refused`,
/// `provider_unreachable`, `nothing_granted`); a second call finds nothing
/// left (`changed: false`).
#[utoipa::path(post, path = "/credential-requests/projects/{name}/teardown", tag = "tracking",
    summary = "Close a project: revoke every credential of its requests, at the provider where the app can",
    params(
        ("name" = String, Path, description = "The project, as set on its requests."),
        ("teamId" = i64, Query, description = "The team whose project closes."),
    ),
    security(("token" = ["credential-requests:write"])),
    responses((status = 200, description = "What happened to each credential; `changed: false` when nothing was left.", body = schema::TeardownAnswer)))]
pub async fn teardown(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(name): AppPath<String>,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    let team = match query.get("teamId") {
        Some(raw) => team_id(raw)?,
        None => {
            return Err(ApiError::invalid(
                "teamId",
                "teamId is required: the team whose project closes",
            ))
        }
    };
    let closed =
        credence_service::teardown::close_project(&state.ctx(), &caller.user, team, &name).await?;
    Ok(Json(json!({ "teardown": closed.to_json() })))
}

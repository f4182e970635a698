//! `/teams`: the teams of an organization the caller may see (all of them for
//! its owners and admins, their own for its members, none for its guests, who
//! see only the requests they received).

use super::{organization_role_or_404, visible_team};
use crate::error::ApiError;
use crate::extract::{select_columns, ApiCaller, AppPath, ListParams, QueryPairs};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use credence_domain::{OrgRole, OrganizationId, Scope, TeamId, TeamRole};
use credence_store::Team;
use serde_json::{json, Value};

const COLUMNS: &[&str] = &["id", "name", "organizationId", "userRole"];

fn team_json(team: &Team, role: Option<TeamRole>) -> Value {
    json!({ "id": team.id, "name": team.name, "organizationId": team.organization_id, "userRole": role })
}

#[utoipa::path(get, path = "/teams", tag = "organizations",
    summary = "The teams of an organization the caller may see",
    params(
        ("organizationId" = i64, Query, description = "The organization."),
        crate::api::doc::PageParams,
    ),
    security(("token" = ["teams:read"])),
    responses((status = 200, description = "The teams (`pg[sortBy]`: name, id).", body = schema::Teams)))]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::TeamsRead)?;
    let organization = OrganizationId(query.required_id("organizationId")?);
    let params = ListParams::parse(&query.0)?;
    let sort_by = params.sort_column(&["name", "id"])?;
    let mut db = state.store.db().await?;
    let role = organization_role_or_404(&mut db, organization, caller.user.id).await?;
    let mut teams = match role {
        OrgRole::Owner | OrgRole::Admin => db.list_teams(organization).await?,
        OrgRole::Member => {
            db.list_teams_of_member(organization, caller.user.id)
                .await?
        }
        // A guest is a member of the team they were invited to, but sees none.
        OrgRole::Guest => Vec::new(),
    };
    teams.sort_by(|a, b| match sort_by {
        "id" => a.id.cmp(&b.id),
        _ => a
            .name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then(a.id.cmp(&b.id)),
    });
    if params.descending {
        teams.reverse();
    }
    let mut page = Vec::new();
    for team in teams.iter().skip(params.offset).take(params.limit) {
        page.push(team_json(
            team,
            db.team_role(team.id, caller.user.id).await?,
        ));
    }
    let teams = select_columns(page, &params.cols, COLUMNS)?;
    Ok(Json(
        json!({ "teams": teams, "pg": params.answer(sort_by) }),
    ))
}

#[utoipa::path(get, path = "/teams/{id}", tag = "organizations",
    summary = "One team",
    params(("id" = i64, Path, description = "The team.")),
    security(("token" = ["teams:read"])),
    responses((status = 200, description = "The team.", body = schema::One)))]
pub async fn get(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::TeamsRead)?;
    let mut db = state.store.db().await?;
    let (team, role) = visible_team(&mut db, TeamId(id), caller.user.id).await?;
    Ok(Json(json!({ "team": team_json(&team, role) })))
}

/// The answers' shapes, for the OpenAPI document (built above with `json!`).
#[allow(dead_code)]
pub(crate) mod schema {
    use crate::api::doc::{Pg, TeamRoleName};
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Team {
        id: i64,
        name: String,
        organization_id: i64,
        /// The caller's role in the team; null when they manage the organization.
        user_role: Option<TeamRoleName>,
    }

    #[derive(ToSchema)]
    pub struct Teams {
        teams: Vec<Team>,
        pg: Pg,
    }

    #[derive(ToSchema)]
    #[schema(as = TeamAnswer)]
    pub struct One {
        team: Team,
    }
}

//! `/users/me` and the team members list (`/users?teamId=`), which shows each
//! member's roles and whether they may send credential requests (SPEC §2).

use super::visible_team;
use crate::error::ApiError;
use crate::extract::{select_columns, ApiCaller, ListParams, QueryPairs};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use credence_domain::{Feature, Scope, TeamId};
use credence_store::{TeamMember, User};
use serde_json::{json, Value};

fn features_object(features: &[Feature]) -> Value {
    let map: serde_json::Map<String, Value> = Feature::ALL
        .iter()
        .map(|f| (f.as_str().to_string(), Value::Bool(features.contains(f))))
        .collect();
    Value::Object(map)
}

fn user_json(user: &User, features: &[Feature]) -> Value {
    json!({
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "language": user.language,
        "timezone": user.timezone,
        "locale": "en",
        "avatar": "",
        "features": features_object(features),
    })
}

#[utoipa::path(get, path = "/users/me", tag = "users",
    summary = "The caller: the user the token belongs to",
    security(("token" = ["user:read"])),
    responses((status = 200, description = "The caller.", body = schema::Me)))]
pub async fn me(State(state): State<AppState>, caller: ApiCaller) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::UserRead)?;
    let features = state
        .store
        .db()
        .await?
        .user_features(caller.user.id)
        .await?;
    Ok(Json(
        json!({ "authUser": user_json(&caller.user, &features) }),
    ))
}

#[utoipa::path(get, path = "/users/me/current-authorization", tag = "users",
    summary = "How the caller is authenticated and the token's scopes",
    security(("token" = [])),
    responses((status = 200, description = "The token's scopes.", body = schema::CurrentAuthorization)))]
pub async fn current_authorization(caller: ApiCaller) -> Json<Value> {
    let scopes: Vec<&str> = caller.token.scopes.iter().map(|s| s.as_str()).collect();
    Json(json!({ "authorization": { "authUsed": "token", "scope": scopes } }))
}

const MEMBER_COLUMNS: &[&str] = &[
    "id",
    "name",
    "email",
    "language",
    "timezone",
    "locale",
    "avatar",
    "features",
    "teamRole",
    "organizationRole",
    "credentialRequests",
];

fn member_json(member: &TeamMember) -> Value {
    let mut value = user_json(&member.user, &member.features);
    value["teamRole"] = json!(member.team_role);
    value["organizationRole"] = json!(member.organization_role);
    value["credentialRequests"] = json!(member.features.contains(&Feature::CredentialRequests));
    value
}

/// `GET /users?teamId=`: any member of the team (and the organization's owners
/// and admins) sees who is in it and who has the credential-requests feature;
/// a guest in the team does not (`visible_team`).
#[utoipa::path(get, path = "/users", tag = "users",
    summary = "A team's members, their roles and who has the credential-requests feature",
    params(
        ("teamId" = i64, Query, description = "The team."),
        crate::api::doc::PageParams,
    ),
    security(("token" = ["teams:read"])),
    responses((status = 200, description = "The members (`pg[sortBy]`: name, id, email).", body = schema::Members)))]
pub async fn list_team_members(
    State(state): State<AppState>,
    caller: ApiCaller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::TeamsRead)?;
    let team = TeamId(query.required_id("teamId")?);
    let params = ListParams::parse(&query.0)?;
    let sort_by = params.sort_column(&["name", "id", "email"])?;
    let mut db = state.store.db().await?;
    visible_team(&mut db, team, caller.user.id).await?;
    let mut members = db.list_team_members(team).await?;
    members.sort_by(|a, b| match sort_by {
        "id" => a.user.id.cmp(&b.user.id),
        "email" => a
            .user
            .email
            .to_lowercase()
            .cmp(&b.user.email.to_lowercase()),
        _ => a
            .user
            .name
            .to_lowercase()
            .cmp(&b.user.name.to_lowercase())
            .then(a.user.id.cmp(&b.user.id)),
    });
    if params.descending {
        members.reverse();
    }
    let page: Vec<Value> = members
        .iter()
        .skip(params.offset)
        .take(params.limit)
        .map(member_json)
        .collect();
    let users = select_columns(page, &params.cols, MEMBER_COLUMNS)?;
    Ok(Json(
        json!({ "users": users, "pg": params.answer(sort_by) }),
    ))
}

/// The answers' shapes, for the OpenAPI document (built above with `json!`;
/// the schemathesis test checks that they match).
#[allow(dead_code)]
pub(crate) mod schema {
    use crate::api::doc::{OrgRoleName, Pg, TeamRoleName};
    use std::collections::BTreeMap;
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Me {
        auth_user: User,
    }

    #[derive(ToSchema)]
    pub struct User {
        id: i64,
        name: String,
        email: String,
        language: String,
        timezone: String,
        locale: String,
        avatar: String,
        /// Every feature, and whether the user has it.
        features: BTreeMap<String, bool>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct TeamMember {
        id: i64,
        name: String,
        email: String,
        language: String,
        timezone: String,
        locale: String,
        avatar: String,
        features: BTreeMap<String, bool>,
        team_role: TeamRoleName,
        organization_role: OrgRoleName,
        /// Whether the member may send credential requests.
        credential_requests: bool,
    }

    #[derive(ToSchema)]
    pub struct Members {
        users: Vec<TeamMember>,
        pg: Pg,
    }

    #[derive(ToSchema)]
    pub struct CurrentAuthorization {
        authorization: Authorization,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Authorization {
        /// Always `token`.
        auth_used: String,
        scope: Vec<String>,
    }
}

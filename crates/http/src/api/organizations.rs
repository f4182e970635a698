//! `/organizations`: the organizations the caller belongs to.

use super::organization_role_or_404;
use crate::error::ApiError;
use crate::extract::{select_columns, ApiCaller, AppPath, ListParams, QueryPairs};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use credence_domain::{OrgRole, OrganizationId, Scope};
use credence_store::Organization;
use serde_json::{json, Value};

const COLUMNS: &[&str] = &[
    "id",
    "name",
    "plan",
    "partner",
    "zone",
    "license",
    "isPaused",
    "userRole",
    "credentialRequestsQualified",
];

fn organization_json(organization: &Organization, role: OrgRole, zone: &str) -> Value {
    json!({
        "id": organization.id,
        "name": organization.name,
        "plan": organization.plan,
        "partner": organization.partner,
        "zone": zone,
        "license": {},
        "isPaused": false,
        "userRole": role,
        "credentialRequestsQualified": organization.qualifies_for_credential_requests(),
    })
}

/// The host part of the public URL, which Make calls the zone.
fn zone(state: &AppState) -> &str {
    let url = &*state.public_url;
    url.split_once("://").map(|(_, rest)| rest).unwrap_or(url)
}

#[utoipa::path(get, path = "/organizations", tag = "organizations",
    summary = "The organizations the caller belongs to",
    params(crate::api::doc::PageParams),
    security(("token" = ["organizations:read"])),
    responses((status = 200, description = "The organizations (`pg[sortBy]`: name, id).", body = schema::Organizations)))]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::OrganizationsRead)?;
    let params = ListParams::parse(&query.0)?;
    let sort_by = params.sort_column(&["name", "id"])?;
    let mut memberships = state
        .store
        .db()
        .await?
        .list_memberships(caller.user.id)
        .await?;
    memberships.sort_by(|a, b| match sort_by {
        "id" => a.organization.id.cmp(&b.organization.id),
        _ => a
            .organization
            .name
            .to_lowercase()
            .cmp(&b.organization.name.to_lowercase())
            .then(a.organization.id.cmp(&b.organization.id)),
    });
    if params.descending {
        memberships.reverse();
    }
    let page: Vec<Value> = memberships
        .iter()
        .skip(params.offset)
        .take(params.limit)
        .map(|m| organization_json(&m.organization, m.role, zone(&state)))
        .collect();
    let organizations = select_columns(page, &params.cols, COLUMNS)?;
    Ok(Json(
        json!({ "organizations": organizations, "pg": params.answer(sort_by) }),
    ))
}

#[utoipa::path(get, path = "/organizations/{id}", tag = "organizations",
    summary = "One organization the caller belongs to",
    params(("id" = i64, Path, description = "The organization.")),
    security(("token" = ["organizations:read"])),
    responses((status = 200, description = "The organization.", body = schema::One)))]
pub async fn get(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::OrganizationsRead)?;
    let id = OrganizationId(id);
    let mut db = state.store.db().await?;
    let role = organization_role_or_404(&mut db, id, caller.user.id).await?;
    let organization = db
        .get_organization(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("organization {id} not found")))?;
    Ok(Json(
        json!({ "organization": organization_json(&organization, role, zone(&state)) }),
    ))
}

/// The answers' shapes, for the OpenAPI document (built above with `json!`).
#[allow(dead_code)]
pub(crate) mod schema {
    use crate::api::doc::{OrgRoleName, Pg};
    use std::collections::BTreeMap;
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Organization {
        id: i64,
        name: String,
        #[schema(pattern = "^(free|core|pro|teams|enterprise)$")]
        plan: String,
        partner: bool,
        /// The host of the public URL.
        zone: String,
        license: BTreeMap<String, serde_json::Value>,
        is_paused: bool,
        user_role: OrgRoleName,
        credential_requests_qualified: bool,
    }

    #[derive(ToSchema)]
    pub struct Organizations {
        organizations: Vec<Organization>,
        pg: Pg,
    }

    #[derive(ToSchema)]
    #[schema(as = OrganizationAnswer)]
    pub struct One {
        organization: Organization,
    }
}

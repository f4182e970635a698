//! `/organizations/{id}/two-factor`: whether an organization requires
//! two-factor sign-in of everyone in it (read by anyone in it, changed by its
//! owners; `service::two_factor`). API tokens keep working either way: the
//! requirement is about signing in to the web app.

use crate::error::ApiError;
use crate::extract::{ApiCaller, AppJson, AppPath};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use credence_domain::{OrganizationId, Scope};
use credence_service::audit::Actor;
use credence_service::two_factor;
use serde::Deserialize;
use serde_json::{json, Value};

fn answer(organization: OrganizationId, required: bool) -> Json<Value> {
    Json(json!({ "twoFactor": { "organizationId": organization, "required": required } }))
}

/// `GET /organizations/{id}/two-factor`.
#[utoipa::path(get, path = "/organizations/{id}/two-factor", tag = "organizations",
    summary = "Whether the organization requires two-factor sign-in of its members",
    params(("id" = i64, Path, description = "The organization.")),
    security(("token" = ["organizations:read"])),
    responses((status = 200, description = "The requirement.", body = schema::TwoFactorAnswer)))]
pub async fn get(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::OrganizationsRead)?;
    let organization = OrganizationId(id);
    let required = two_factor::required(&state.store, &caller.user, organization).await?;
    Ok(answer(organization, required))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequiredInput {
    /// Whether everyone in the organization must sign in with a second factor.
    required: bool,
}

/// `PUT /organizations/{id}/two-factor` `{"required": true|false}`.
#[utoipa::path(put, path = "/organizations/{id}/two-factor", tag = "organizations",
    summary = "Require two-factor sign-in of the organization's members, or stop requiring it (owners)",
    params(("id" = i64, Path, description = "The organization.")),
    request_body = RequiredInput,
    security(("token" = ["organizations:write"])),
    responses(
        (status = 200, description = "The requirement, as set.", body = schema::TwoFactorAnswer),
        (status = 409, description = "The owner has not turned on two-factor sign-in themselves.", body = crate::error::Body)))]
pub async fn put(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
    AppJson(input): AppJson<RequiredInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::OrganizationsWrite)?;
    let organization = OrganizationId(id);
    two_factor::set_required(
        &state.store,
        &Actor::user(&caller.user),
        &caller.user,
        organization,
        input.required,
    )
    .await?;
    Ok(answer(organization, input.required))
}

/// The answers' shapes, for the OpenAPI document (built above with `json!`).
#[allow(dead_code)]
pub(crate) mod schema {
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct TwoFactor {
        organization_id: i64,
        required: bool,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct TwoFactorAnswer {
        two_factor: TwoFactor,
    }
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredInput {
    required: bool,
}

/// `PUT /organizations/{id}/two-factor` `{"required": true|false}`.
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

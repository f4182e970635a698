//! `/users/me/api-tokens`: a user's own API tokens, as Make names them and with
//! Make's scopes: listing needs `user:read`, creating and deleting `user:write`
//! (a token may always delete itself). A token can only mint tokens with scopes
//! it holds itself, and delete only tokens whose scopes it holds, so a narrow
//! token can neither widen its own access nor remove the user's broader tokens. A token may expire (`expiresAt`); one that
//! expires only mints tokens that expire no later.

use crate::error::ApiError;
use crate::extract::{ApiCaller, AppJson, AppPath};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use credence_domain::{ApiTokenId, Scope, Scopes};
use credence_service::audit::Actor;
use credence_service::auth;
use credence_store::ApiToken;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};

fn token_json(token: &ApiToken) -> Value {
    json!({
        "id": token.id,
        "label": token.name,
        "scope": token.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
        "created": token.created_at,
        "lastUsed": token.last_used_at,
        "expiresAt": token.expires_at,
    })
}

#[utoipa::path(get, path = "/users/me/api-tokens", tag = "users",
    summary = "The caller's API tokens (never their values)",
    security(("token" = ["user:read"])),
    responses((status = 200, description = "The tokens.", body = schema::Tokens)))]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::UserRead)?;
    let tokens = state
        .store
        .db()
        .await?
        .list_api_tokens(caller.user.id)
        .await?;
    Ok(Json(
        json!({ "apiTokens": tokens.iter().map(token_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A name for the token.
    label: String,
    /// The scopes, each held by the calling token.
    scope: Vec<String>,
    /// ISO 8601 date or date-time; absent or null: the token never expires.
    #[serde(rename = "expiresAt", default)]
    expires_at: Option<String>,
}

#[utoipa::path(post, path = "/users/me/api-tokens", tag = "users",
    summary = "Create an API token with scopes the calling token holds; its value is shown once",
    request_body = CreateToken,
    security(("token" = ["user:write"])),
    responses((status = 201, description = "The token, with its value in `token` (shown this once).", body = schema::Created)))]
pub async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppJson(body): AppJson<CreateToken>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Scope::UserWrite)?;
    if body.scope.len() > Scope::ALL.len() * 2 {
        return Err(ApiError::invalid(
            "scope",
            format!(
                "scope lists {} entries; the limit is {}",
                body.scope.len(),
                Scope::ALL.len() * 2
            ),
        ));
    }
    let scopes = Scopes::parse(&body.scope.join(",")).map_err(|e| e.in_field("scope"))?;
    if let Some(missing) = scopes
        .iter()
        .find(|scope| !caller.token.scopes.contains(*scope))
    {
        return Err(ApiError::Forbidden(format!(
            "this API token lacks the scope {missing}, so it cannot grant it"
        )));
    }
    let label = credence_domain::EntityName::parse("label", &body.label)?;
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|raw| auth::parse_api_token_expiry("expiresAt", raw))
        .transpose()?;
    // Like its scopes, a new token's lifetime stays within the caller's.
    if let Some(limit) = caller.token.expires_at {
        if expires_at.is_none_or(|at| at > limit) {
            return Err(ApiError::invalid(
                "expiresAt",
                format!(
                    "expiresAt must be at or before {}, when this API token expires: a token cannot outlive the one that makes it",
                    limit.to_rfc3339()
                ),
            ));
        }
    }
    let (token, value) = auth::create_api_token(
        &state.store,
        &Actor::user(&caller.user),
        caller.user.id,
        auth::NewApiToken {
            name: label.as_str(),
            scopes: &scopes,
            expires_at,
        },
    )
    .await?;
    let mut answer = token_json(&token);
    answer["token"] = json!(value.expose_secret());
    Ok((StatusCode::CREATED, Json(json!({ "apiToken": answer }))))
}

#[utoipa::path(delete, path = "/users/me/api-tokens/{id}", tag = "users",
    summary = "Delete one of the caller's API tokens",
    description = "A token may always delete itself; deleting another needs `user:write` and every scope that token holds.",
    params(("id" = i64, Path, description = "The token's id.")),
    security(("token" = ["user:write"])),
    responses((status = 200, description = "The id of the token deleted.", body = schema::Deleted)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
) -> Result<Json<Value>, ApiError> {
    // Deleting itself only narrows access, so any token may; deleting another
    // of the user's tokens is managing them, and (as for making one) only
    // within the caller's own scopes: a narrow token cannot cut off the
    // user's broader automations.
    if caller.token.id != ApiTokenId(id) {
        caller.require(Scope::UserWrite)?;
        let tokens = state
            .store
            .db()
            .await?
            .list_api_tokens(caller.user.id)
            .await?;
        let target = tokens
            .iter()
            .find(|token| token.id == ApiTokenId(id))
            .ok_or_else(|| ApiError::NotFound(format!("API token {id} not found")))?;
        let missing = target
            .scopes
            .iter()
            .find(|scope| !caller.token.scopes.contains(*scope));
        if let Some(missing) = missing {
            return Err(ApiError::Forbidden(format!(
                "API token {id} holds the scope {missing}, which this API token lacks, so it cannot delete it"
            )));
        }
    }
    auth::delete_api_token(
        &state.store,
        &state.tokens,
        &Actor::user(&caller.user),
        caller.user.id,
        ApiTokenId(id),
    )
    .await?;
    Ok(Json(json!({ "apiToken": id })))
}

/// The answers' shapes, for the OpenAPI document (built above with `json!`).
#[allow(dead_code)]
pub(crate) mod schema {
    use chrono::{DateTime, Utc};
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[schema(as = ApiToken, rename_all = "camelCase")]
    pub struct Token {
        id: i64,
        label: String,
        scope: Vec<String>,
        created: DateTime<Utc>,
        #[schema(required = true)]
        last_used: Option<DateTime<Utc>>,
        #[schema(required = true)]
        expires_at: Option<DateTime<Utc>>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Tokens {
        api_tokens: Vec<Token>,
    }

    #[derive(ToSchema)]
    #[schema(as = NewApiToken, rename_all = "camelCase")]
    pub struct NewToken {
        id: i64,
        label: String,
        scope: Vec<String>,
        created: DateTime<Utc>,
        #[schema(required = true)]
        last_used: Option<DateTime<Utc>>,
        #[schema(required = true)]
        expires_at: Option<DateTime<Utc>>,
        /// The token's value: shown only in this answer.
        token: String,
    }

    #[derive(ToSchema)]
    #[schema(as = ApiTokenCreated, rename_all = "camelCase")]
    pub struct Created {
        api_token: NewToken,
    }

    #[derive(ToSchema)]
    #[schema(as = ApiTokenDeleted, rename_all = "camelCase")]
    pub struct Deleted {
        api_token: i64,
    }
}

//! `/credential-requests/actions/…`: Make's "actions", which create a credential
//! request from a selection of apps and modules (`create`), from connection and
//! key types (`create-by-credentials`), or to extend an OAuth connection's
//! scopes (`extend`).
//!
//! Make's actions name no recipient: Make hands the link to whoever the caller
//! chooses. Credence always asks one known person (SPEC §4), so these endpoints
//! take the same `provider` as `POST /credential-requests/requests/v2` and answer
//! 400 on the field `provider` without one. Everything else is
//! [`credence_service::requests::create`], so the rules (feature gate, who may ask
//! whom, the catalog) are the same as for any request.

use super::requests::create_answer;
use crate::error::ApiError;
use crate::extract::{ApiCaller, AppJson};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use credence_catalog::{AuthKind, Catalog};
use credence_domain::{OrgRole, OrganizationId, Scope, TeamId, ValidationError};
use credence_service::requests::{CreateRequestInput, CredentialInput, ProviderInput};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;

/// What the `provider` problem says when an action names no recipient.
const PROVIDER_NEEDED: &str = "Credence sends every request to one known recipient, and this action names none: add \"provider\": {\"providerMakeUserId\": <user id>} for a member of the organization, or {\"newUser\": {\"name\": ..., \"email\": ...}} for someone outside it";

/// Longest request name (as `RequestName` allows).
const NAME_MAX: usize = 255;

/// The name of a request whose body gives none, from its apps' labels.
fn default_name(catalog: &Catalog, app_names: &[Option<String>]) -> String {
    let labels: Vec<String> = app_names
        .iter()
        .flatten()
        .map(|name| {
            let key = app_key_of(name);
            catalog
                .get(key)
                .map(|app| app.label.clone())
                .unwrap_or_else(|| key.to_string())
        })
        .collect();
    let name = if labels.is_empty() {
        "Credential request".to_string()
    } else {
        format!("Access to {}", labels.join(", "))
    };
    name.chars().take(NAME_MAX).collect()
}

/// The catalog key a Make credential type names: `account:acme-crm`,
/// `keychain:acme-crm` or `acme-crm`.
fn app_key_of(kind: &str) -> &str {
    let kind = kind.trim();
    kind.strip_prefix("account:")
        .or_else(|| kind.strip_prefix("keychain:"))
        .unwrap_or(kind)
        .trim()
}

/// Calls the shared create path; when it reports the missing recipient of an
/// action, says why Credence needs one. Problems on `credentials[i]…` are
/// renamed by `rename` to the field the caller actually sent.
async fn create_for_action(
    state: &AppState,
    caller: &ApiCaller,
    input: CreateRequestInput,
    rename: impl Fn(&str) -> String,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let had_provider = input.provider.is_some();
    create_answer(state, caller, input)
        .await
        .map_err(|error| match error {
            ApiError::Invalid(problems) => ApiError::Invalid(
                problems
                    .into_iter()
                    .map(|problem| {
                        if problem.field == "provider" && !had_provider {
                            ValidationError::new("provider", PROVIDER_NEEDED)
                        } else {
                            ValidationError::new(rename(&problem.field), problem.message)
                        }
                    })
                    .collect(),
            ),
            other => other,
        })
}

/// `POST /credential-requests/actions/create`: Make's body (`name?`,
/// `description?`, `teamId`, `credentials: [{appName, appModules, appVersion?,
/// nameOverride?, description?}]`) plus Credence's `provider` (and the optional
/// `client`, `project`, `owner`, `expiresAt` of `/requests/v2`). Answers 201
/// `{"request", "publicUri"}`, the request with its `credentials`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateActionBody {
    name: Option<String>,
    description: Option<String>,
    team_id: Option<i64>,
    credentials: Option<Vec<CredentialInput>>,
    provider: Option<ProviderInput>,
    client: Option<String>,
    project: Option<String>,
    owner: Option<i64>,
    terms_accepted: Option<bool>,
    expires_at: Option<DateTime<Utc>>,
}

#[utoipa::path(post, path = "/credential-requests/actions/create", tag = "credential requests",
    summary = "Create a request from a selection of apps and modules (Make's action), asked of one recipient",
    request_body = CreateActionBody,
    security(("token" = ["credential-requests:write"])),
    responses((status = 201, description = "The request, its credentials and the recipient's link.", body = super::requests::schema::Created)))]
pub async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppJson(body): AppJson<CreateActionBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    let name = body.name.unwrap_or_else(|| {
        let apps: Vec<Option<String>> = body
            .credentials
            .iter()
            .flatten()
            .map(|c| c.app_name.clone())
            .collect();
        default_name(&state.catalog, &apps)
    });
    let input = CreateRequestInput {
        name: Some(name),
        team_id: body.team_id,
        description: body.description,
        // Absent, it is reported by the shared path as `credentials`.
        credentials: Some(body.credentials.unwrap_or_default()),
        provider: body.provider,
        client: body.client,
        project: body.project,
        owner: body.owner,
        terms_accepted: body.terms_accepted,
        expires_at: body.expires_at,
        ..Default::default()
    };
    create_for_action(&state, &caller, input, str::to_string).await
}

/// One entry of `connections` or `keys` in `create-by-credentials`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypeSelection {
    #[serde(rename = "type")]
    kind: Option<String>,
    description: Option<String>,
    name_override: Option<String>,
    /// OAuth scopes the connection should have (connections only).
    scope: Option<Vec<String>>,
    /// Values to fill in for the recipient: Credence never does that.
    #[schema(value_type = Option<Object>)]
    prefill: Option<Value>,
}

/// `POST /credential-requests/actions/create-by-credentials`: Make's body
/// (`name?`, `description?`, `teamId`, `connections?: [{type, description?,
/// scope?, nameOverride?}]`, `keys?: [{type, description?, nameOverride?}]`)
/// plus `provider`. Each type names an app (`account:acme-crm`, `keychain:…` or
/// the bare key); Credence asks for all of its modules. Answers 201
/// `{"request", "credentials", "publicUri"}` as Make does.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateByCredentialsBody {
    name: Option<String>,
    description: Option<String>,
    team_id: Option<i64>,
    connections: Option<Vec<TypeSelection>>,
    keys: Option<Vec<TypeSelection>>,
    provider: Option<ProviderInput>,
    client: Option<String>,
    project: Option<String>,
    owner: Option<i64>,
    terms_accepted: Option<bool>,
    expires_at: Option<DateTime<Utc>>,
}

#[utoipa::path(post, path = "/credential-requests/actions/create-by-credentials", tag = "credential requests",
    summary = "Create a request from connection and key types (Make's action), asked of one recipient",
    request_body = CreateByCredentialsBody,
    security(("token" = ["credential-requests:write"])),
    responses((status = 201, description = "The request, its credentials (also at the top level, as Make answers) and the recipient's link.", body = schema::CreatedByCredentials)))]
pub async fn create_by_credentials(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppJson(body): AppJson<CreateByCredentialsBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    // Where each credential came from, to name the caller's fields in problems.
    let mut origins: Vec<String> = Vec::new();
    let mut credentials: Vec<CredentialInput> = Vec::new();
    let mut problems: Vec<ValidationError> = Vec::new();
    for (list, entries) in [("connections", &body.connections), ("keys", &body.keys)] {
        for (index, entry) in entries.iter().flatten().enumerate() {
            let at = format!("{list}[{index}]");
            if entry.prefill.as_ref().is_some_and(|p| !p.is_null()) {
                problems.push(ValidationError::new(
                    format!("{at}.prefill"),
                    "prefill is not supported: in Credence the recipient enters every value of their account themselves",
                ));
            }
            let key = entry.kind.as_deref().map(app_key_of);
            if let (Some(scopes), Some(app)) =
                (&entry.scope, key.and_then(|k| state.catalog.get(k)))
            {
                let offered: BTreeSet<&str> = app
                    .latest()
                    .modules
                    .iter()
                    .flat_map(|module| module.scopes.iter().map(String::as_str))
                    .collect();
                let unknown: Vec<&str> = scopes
                    .iter()
                    .map(String::as_str)
                    .filter(|scope| !offered.contains(scope))
                    .collect();
                if !unknown.is_empty() {
                    problems.push(ValidationError::new(
                        format!("{at}.scope"),
                        format!(
                            "{} has no module that needs the scope(s) {}; Credence asks for all of its modules, whose scopes are: {}",
                            app.key,
                            unknown.iter().map(|s| s.chars().take(64).collect::<String>()).collect::<Vec<_>>().join(", "),
                            if offered.is_empty() { "none".to_string() } else { offered.into_iter().collect::<Vec<_>>().join(", ") }
                        ),
                    ));
                }
            }
            origins.push(at);
            credentials.push(CredentialInput {
                app_name: key.map(str::to_string),
                app_modules: Some(vec!["*".to_string()]),
                app_version: None,
                name_override: entry.name_override.clone(),
                description: entry.description.clone(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let name = body.name.unwrap_or_else(|| {
        let apps: Vec<Option<String>> = credentials.iter().map(|c| c.app_name.clone()).collect();
        default_name(&state.catalog, &apps)
    });
    let input = CreateRequestInput {
        name: Some(name),
        team_id: body.team_id,
        description: body.description,
        credentials: Some(credentials),
        provider: body.provider,
        client: body.client,
        project: body.project,
        owner: body.owner,
        terms_accepted: body.terms_accepted,
        expires_at: body.expires_at,
        ..Default::default()
    };
    let rename = |field: &str| -> String {
        if field == "credentials" {
            return "connections".to_string();
        }
        let Some(rest) = field.strip_prefix("credentials[") else {
            return field.to_string();
        };
        let Some((index, after)) = rest.split_once(']') else {
            return field.to_string();
        };
        match index.parse::<usize>().ok().and_then(|i| origins.get(i)) {
            Some(origin) => {
                let after = if after == ".appName" { ".type" } else { after };
                format!("{origin}{after}")
            }
            None => field.to_string(),
        }
    };
    let (status, Json(mut answer)) = create_for_action(&state, &caller, input, rename).await?;
    answer["credentials"] = answer["request"]["credentials"].clone();
    Ok((status, Json(answer)))
}

/// `POST /credential-requests/actions/extend`: `{connectionId, scopes}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtendBody {
    /// The connection's id.
    #[schema(value_type = Option<i64>)]
    connection_id: Option<Value>,
    /// The OAuth scopes to add.
    #[schema(value_type = Option<Vec<String>>)]
    scopes: Option<Value>,
}

/// Asking for more OAuth scopes on a connection needs an OAuth consent, which
/// Credence does not do yet: a visible connection gets a 400 naming
/// `connectionId` and saying why; an unknown one, or one of a team the caller is
/// not in, a 404.
#[utoipa::path(post, path = "/credential-requests/actions/extend", tag = "credential requests",
    summary = "Ask for more OAuth scopes on a connection (not supported yet: always a 400 naming connectionId, or a 404)",
    request_body = ExtendBody,
    security(("token" = ["credential-requests:write"])),
    responses((status = 400, description = "Credence cannot extend a connection's scopes yet; `suberrors` names `connectionId` and says why.", body = crate::error::Body)))]
pub async fn extend(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppJson(body): AppJson<ExtendBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    let mut problems = Vec::new();
    let connection = match &body.connection_id {
        None | Some(Value::Null) => {
            problems.push(ValidationError::new(
                "connectionId",
                "connectionId is required",
            ));
            None
        }
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n > 0) => n.as_i64(),
        Some(_) => {
            problems.push(ValidationError::new(
                "connectionId",
                "connectionId must be the positive integer id of a connection",
            ));
            None
        }
    };
    match &body.scopes {
        Some(Value::Array(items))
            if !items.is_empty()
                && items
                    .iter()
                    .all(|s| s.as_str().is_some_and(|s| !s.trim().is_empty())) => {}
        None | Some(Value::Null) => problems.push(ValidationError::new(
            "scopes",
            "scopes is required: one or more OAuth scopes",
        )),
        Some(_) => problems.push(ValidationError::new(
            "scopes",
            "scopes must be a non-empty array of OAuth scope strings",
        )),
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let Some(id) = connection else {
        return Err(ApiError::invalid(
            "connectionId",
            "connectionId is required",
        ));
    };
    let not_found = || ApiError::NotFound(format!("connection {id} not found"));
    let mut db = state.store.db().await?;
    let found = db.get_connection(id).await?.ok_or_else(not_found)?;
    let visible = match db
        .organization_role(OrganizationId(found.organization_id), caller.user.id)
        .await?
    {
        Some(OrgRole::Owner | OrgRole::Admin) => true,
        Some(OrgRole::Member) => db
            .team_role(TeamId(found.team_id), caller.user.id)
            .await?
            .is_some(),
        _ => false,
    };
    if !visible {
        return Err(not_found());
    }
    let label = state
        .catalog
        .get(&found.app_key)
        .map(|app| app.label.clone())
        .unwrap_or_else(|| found.app_key.clone());
    let message = if found.auth_kind == AuthKind::Oauth2.as_str() {
        format!(
            "connection {id} ({label}) cannot get more OAuth scopes yet: that needs a new OAuth consent from its owner, which Credence does not support yet; send a new credential request for the modules that need the scopes instead"
        )
    } else {
        format!(
            "connection {id} ({label}) connects with {} and has no OAuth scopes to extend; send a new credential request for the modules you need instead",
            match found.auth_kind.as_str() {
                "api_key" => "an API key",
                "basic" => "a user name and password",
                _ => "custom credentials",
            }
        )
    };
    Err(ApiError::invalid("connectionId", message))
}

/// The answers' shapes, for the OpenAPI document (built above with `json!`).
#[allow(dead_code)]
pub(crate) mod schema {
    use super::super::requests::schema::{CreatedRequest, Credential};
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct CreatedByCredentials {
        request: CreatedRequest,
        credentials: Vec<Credential>,
        public_uri: String,
    }
}

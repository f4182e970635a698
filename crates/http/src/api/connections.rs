//! `/connections` (Make-compatible): a team's connections with the
//! permissions each holds, one connection, testing it, checking its scopes,
//! adding one of the team's own, renaming and deleting. Never a secret.

use crate::error::ApiError;
use crate::extract::{select_columns, ApiCaller, AppJson, AppPath, ListParams, QueryPairs};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use credence_catalog::{AuthKind, Catalog};
use credence_domain::{Scope, TeamId};
use credence_provider::SecretJson;
use credence_service::team_connections::{self, Added, NewOwnConnection};
use credence_service::{access, checks};
use credence_store::Connection;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Map;
use serde_json::{json, Value};

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A connection as Make shows it, plus its state, modules and permissions.
pub fn connection_json(catalog: &Catalog, connection: &Connection) -> Value {
    let app = catalog.get(&connection.app_key);
    let version = app.and_then(|app| app.version(connection.app_version as u32));
    let modules = json_list(&connection.modules);
    let scopes = json_list(&connection.scopes);
    let account_type = match version.map(|v| v.auth.kind()) {
        Some(AuthKind::Oauth2) => "oauth",
        Some(AuthKind::Basic) => "basic",
        Some(AuthKind::ApiKey) => "apikey",
        _ => "custom",
    };
    let permissions: Vec<Value> = version
        .map(|version| {
            version
                .modules
                .iter()
                .filter(|module| modules.iter().any(|m| m == "*" || *m == module.key))
                .map(|module| json!({
                    "module": module.key,
                    "label": module.label,
                    "access": module.access,
                    "operations": module.operations.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
                }))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "id": connection.id,
        "name": connection.name,
        "accountName": connection.app_key,
        "accountLabel": app.map(|a| a.label.as_str()).unwrap_or(&connection.app_key),
        "packageName": Value::Null,
        "expire": Value::Null,
        "metadata": Value::Null,
        "teamId": connection.team_id,
        "theme": "#3b5bdb",
        "upgradeable": false,
        "scopesCnt": scopes.len(),
        "scoped": true,
        "accountType": account_type,
        "editable": false,
        "uid": Value::Null,
        "connectedSystemId": Value::Null,
        "state": connection.state,
        "appVersion": connection.app_version,
        "modules": modules,
        "scopes": scopes,
        "permissions": permissions,
        "providedBy": connection.provided_by,
        "oauthClientId": connection.oauth_client_id,
        "verifiedAt": connection.verified_at,
        "createdAt": connection.created_at,
        "updatedAt": connection.updated_at,
    })
}

const COLUMNS: &[&str] = &[
    "id",
    "name",
    "accountName",
    "accountLabel",
    "packageName",
    "expire",
    "metadata",
    "teamId",
    "theme",
    "upgradeable",
    "scopesCnt",
    "scoped",
    "accountType",
    "editable",
    "uid",
    "connectedSystemId",
    "state",
    "appVersion",
    "modules",
    "scopes",
    "permissions",
    "providedBy",
    "oauthClientId",
    "verifiedAt",
    "createdAt",
    "updatedAt",
];

fn columns(params: &ListParams) -> Vec<String> {
    if params.cols.iter().any(|c| c == "*") {
        Vec::new()
    } else {
        params.cols.clone()
    }
}

/// `GET /connections?teamId=[&type=appName]`.
#[utoipa::path(get, path = "/connections", tag = "connections",
    summary = "A team's connections (its own and those authorized for its requests), with their permissions; never a secret",
    params(
        ("teamId" = i64, Query, description = "The team."),
        ("type[]" = Option<Vec<String>>, Query, description = "Only connections of these apps (also `type`)."),
        crate::api::doc::PageParams,
    ),
    security(("token" = ["connections:read"])),
    responses((status = 200, description = "The connections.", body = schema::Connections)))]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::ConnectionsRead)?;
    let team = TeamId(query.required_id("teamId")?);
    let params = ListParams::parse(&query.0)?;
    let mut db = state.store.db().await?;
    if !access::may_see_team(&mut db, &caller.user, team).await? {
        return Err(ApiError::NotFound(format!("team {team} not found")));
    }
    let app_filter: Vec<&str> = query
        .0
        .iter()
        .filter(|(k, _)| k == "type" || k == "type[]")
        .map(|(_, v)| v.as_str())
        .collect();
    let connections: Vec<Value> = db
        .list_connections(team)
        .await?
        .iter()
        .filter(|c| app_filter.is_empty() || app_filter.contains(&c.app_key.as_str()))
        .skip(params.offset)
        .take(params.limit)
        .map(|c| connection_json(&state.catalog, c))
        .collect();
    let connections = select_columns(connections, &columns(&params), COLUMNS)?;
    Ok(Json(
        json!({ "connections": connections, "pg": params.answer("id") }),
    ))
}

/// `GET /connections/{id}`.
#[utoipa::path(get, path = "/connections/{id}", tag = "connections",
    summary = "One connection",
    params(("id" = i64, Path, description = "The connection."), ("cols[]" = Option<Vec<String>>, Query, description = "Only these keys of the connection (`*`: all).")),
    security(("token" = ["connections:read"])),
    responses((status = 200, description = "The connection.", body = schema::One)))]
pub async fn get(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::ConnectionsRead)?;
    let connection = access::connection(&mut state.store.db().await?, &caller.user, id).await?;
    Ok(Json(one(&state, &connection, &query)?))
}

/// `POST /connections/{id}/test` → `{"verified": bool}`.
#[utoipa::path(post, path = "/connections/{id}/test", tag = "connections",
    summary = "Test a connection (the app's verify call, or a refresh for OAuth 2.0); its state follows",
    params(("id" = i64, Path, description = "The connection.")),
    security(("token" = ["connections:write"])),
    responses((status = 200, description = "Whether the app accepted the connection.", body = schema::Tested),
        (status = 409, description = "The connection cannot be tested in its state.", body = crate::error::Body)))]
pub async fn test(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
) -> Result<Json<Value>, ApiError> {
    // Testing changes the connection: its state (valid/invalid), an audit
    // entry and, for OAuth, a refresh that replaces its tokens.
    caller.require(Scope::ConnectionsWrite)?;
    let verified = checks::test(&state.ctx(), &caller.user, id).await?;
    Ok(Json(json!({ "verified": verified })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ScopedBody {
    scope: Option<Vec<String>>,
}

/// `POST /connections/{id}/scoped {"scope": [...]}`: whether the connection
/// holds every one of these scopes.
#[utoipa::path(post, path = "/connections/{id}/scoped", tag = "connections",
    summary = "Whether a connection holds every one of these scopes",
    params(("id" = i64, Path, description = "The connection.")),
    request_body = Option<ScopedBody>,
    security(("token" = ["connections:read"])),
    responses((status = 200, description = "Whether it holds them, and those it lacks.", body = schema::Scoped)))]
pub async fn scoped(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::ConnectionsRead)?;
    let wanted: Vec<String> = if body.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        let parsed: ScopedBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the JSON body does not fit: {e}")))?;
        parsed.scope.unwrap_or_default()
    };
    if wanted.len() > 500 {
        return Err(ApiError::invalid(
            "scope",
            format!("scope lists {} entries; the limit is 500", wanted.len()),
        ));
    }
    let connection = access::connection(&mut state.store.db().await?, &caller.user, id).await?;
    let held = json_list(&connection.scopes);
    let scoped = wanted.iter().all(|scope| held.contains(scope));
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|scope| !held.contains(scope))
        .collect();
    Ok(Json(
        json!({ "connection": { "id": connection.id, "scoped": scoped, "missingScopes": missing } }),
    ))
}

/// One connection as answered, with `cols[]` applied.
fn one(state: &AppState, connection: &Connection, query: &QueryPairs) -> Result<Value, ApiError> {
    let params = ListParams::parse(&query.0)?;
    let mut items = select_columns(
        vec![connection_json(&state.catalog, connection)],
        &columns(&params),
        COLUMNS,
    )?;
    Ok(json!({ "connection": items.pop().unwrap_or(Value::Null) }))
}

/// The keys of `POST /connections` that are not the app's fields.
const CREATE_KEYS: &[&str] = &[
    "accountName",
    "accountType",
    "appVersion",
    "modules",
    "scopes",
    "clientId",
    "clientSecret",
    "data",
];

/// A string or nothing; anything else is a 400 naming the key.
fn text(body: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ApiError::invalid(key, format!("{key} must be a string"))),
    }
}

/// A list of strings or nothing.
fn texts(body: &mut Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, ApiError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(text) => Ok(text),
                _ => Err(ApiError::invalid(
                    &format!("{key}[{index}]"),
                    format!("{key}[{index}] must be a string"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::invalid(
            key,
            format!("{key} must be a list of strings"),
        )),
    }
}

/// `POST /connections?teamId=` → 201 (Make's body: `accountName` is the name,
/// `accountType` the app; the app's fields at the top level or under `data`;
/// ours besides: `appVersion`, `modules`, `scopes`, `clientId`,
/// `clientSecret`). An API-key, basic or custom app answers the verified
/// connection; an OAuth app answers `202 {"redirectUri"}`, the consent page to
/// open in the browser, after which the connection exists.
#[utoipa::path(post, path = "/connections", tag = "connections",
    summary = "Add a team's own connection: verified at once, or (OAuth 2.0) after the consent page",
    params(
        ("teamId" = i64, Query, description = "The team."),
        ("cols[]" = Option<Vec<String>>, Query, description = "Only these keys of the connection (`*`: all)."),
    ),
    request_body = schema::NewConnection,
    security(("token" = ["connections:write"])),
    responses((status = 201, description = "The connection, verified.", body = schema::One),
        (status = 202, description = "OAuth 2.0: open `redirectUri` in the browser to consent; the connection exists after.", body = super::requests::schema::Redirect),
        (status = 409, description = "A connection of that name exists, or the app is not usable so.", body = crate::error::Body),
        (status = 502, description = "The app could not be reached to verify the values.", body = crate::error::Body)))]
pub async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    query: QueryPairs,
    // The body holds the app's field values: zeroized when dropped.
    AppJson(mut body): AppJson<SecretJson>,
) -> Result<Response, ApiError> {
    caller.require(Scope::ConnectionsWrite)?;
    let team = TeamId(query.required_id("teamId")?);
    let name = text(&mut body, "accountName")?;
    let app = text(&mut body, "accountType")?;
    let app_version = body.remove("appVersion");
    let modules = texts(&mut body, "modules")?;
    let scopes = texts(&mut body, "scopes")?;
    let client_id = text(&mut body, "clientId")?;
    let client_secret = text(&mut body, "clientSecret")?.map(SecretString::from);
    let (data, data_prefix) = match body.remove("data") {
        Some(Value::Object(data)) => {
            if let Some(extra) = body.keys().next() {
                let extra: String = extra.chars().take(64).collect();
                return Err(ApiError::invalid(
                    &extra,
                    format!(
                        "unknown field {extra:?}; with data given, the body takes only {}",
                        CREATE_KEYS.join(", ")
                    ),
                ));
            }
            (SecretJson::from(data), "data.")
        }
        None | Some(Value::Null) => (body, ""),
        Some(_) => {
            return Err(ApiError::invalid(
                "data",
                "data must be an object of the app's fields",
            ))
        }
    };
    let added = team_connections::add(
        &state.ctx(),
        &caller.user,
        NewOwnConnection {
            team,
            name,
            app,
            app_version,
            modules,
            scopes,
            client_id,
            client_secret,
            data,
            data_prefix,
        },
    )
    .await?;
    Ok(match added {
        Added::Connection(connection) => {
            (StatusCode::CREATED, Json(one(&state, &connection, &query)?)).into_response()
        }
        Added::Redirect(url) => {
            (StatusCode::ACCEPTED, Json(json!({ "redirectUri": url }))).into_response()
        }
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    name: Option<String>,
}

/// `PATCH /connections/{id} {"name"}`.
#[utoipa::path(patch, path = "/connections/{id}", tag = "connections",
    summary = "Rename a team's own connection",
    params(("id" = i64, Path, description = "The connection."), ("cols[]" = Option<Vec<String>>, Query, description = "Only these keys of the connection (`*`: all).")),
    request_body = RenameBody,
    security(("token" = ["connections:write"])),
    responses((status = 200, description = "The connection.", body = schema::One)))]
pub async fn rename(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
    query: QueryPairs,
    AppJson(body): AppJson<RenameBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::ConnectionsWrite)?;
    let renamed =
        team_connections::rename(&state.ctx(), &caller.user, id, body.name.as_deref()).await?;
    Ok(Json(one(&state, &renamed, &query)?))
}

/// `DELETE /connections/{id}?confirmed=true`.
#[utoipa::path(delete, path = "/connections/{id}", tag = "connections",
    summary = "Delete a team's own connection",
    params(("id" = i64, Path, description = "The connection."), ("confirmed" = Option<bool>, Query, description = "Must be true when the connection was used recently.")),
    security(("token" = ["connections:write"])),
    responses((status = 200, description = "The id of the connection deleted.", body = schema::Deleted),
        (status = 409, description = "Not confirmed while the connection has recent consumers.", body = crate::error::Body)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::ConnectionsWrite)?;
    let confirmed = query.flag("confirmed")?;
    team_connections::delete(&state.ctx(), &caller.user, id, confirmed).await?;
    Ok(Json(json!({ "connection": id })))
}

/// The answers' shapes, for the OpenAPI document (built above with `json!`;
/// the schemathesis test checks that they match).
#[allow(dead_code)]
pub(crate) mod schema {
    use crate::api::doc::Pg;
    use chrono::{DateTime, Utc};
    use std::collections::BTreeMap;
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[schema(as = ConnectionPermission)]
    pub struct Permission {
        module: String,
        label: String,
        #[schema(pattern = "^(read|write)$")]
        access: String,
        operations: Vec<String>,
    }

    /// A connection as Make shows it, plus its state, modules and permissions.
    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Connection {
        id: i64,
        name: String,
        /// The app.
        account_name: String,
        account_label: String,
        #[schema(value_type = Option<String>)]
        package_name: Option<String>,
        #[schema(value_type = Option<String>)]
        expire: Option<String>,
        #[schema(value_type = Option<Object>)]
        metadata: Option<String>,
        team_id: i64,
        theme: String,
        upgradeable: bool,
        scopes_cnt: u32,
        scoped: bool,
        #[schema(pattern = "^(oauth|apikey|basic|custom)$")]
        account_type: String,
        editable: bool,
        #[schema(value_type = Option<String>)]
        uid: Option<String>,
        #[schema(value_type = Option<String>)]
        connected_system_id: Option<String>,
        state: String,
        app_version: i64,
        modules: Vec<String>,
        scopes: Vec<String>,
        permissions: Vec<Permission>,
        /// The recipient who authorized it; null for the team's own.
        provided_by: Option<i64>,
        oauth_client_id: Option<String>,
        verified_at: Option<DateTime<Utc>>,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    }

    #[derive(ToSchema)]
    pub struct Connections {
        connections: Vec<Connection>,
        pg: Pg,
    }

    #[derive(ToSchema)]
    #[schema(as = ConnectionAnswer)]
    pub struct One {
        connection: Connection,
    }

    #[derive(ToSchema)]
    #[schema(as = ConnectionDeleted)]
    pub struct Deleted {
        connection: i64,
    }

    #[derive(ToSchema)]
    #[schema(as = ConnectionTested)]
    pub struct Tested {
        verified: bool,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct ScopedConnection {
        id: i64,
        scoped: bool,
        missing_scopes: Vec<String>,
    }

    #[derive(ToSchema)]
    #[schema(as = ConnectionScoped)]
    pub struct Scoped {
        connection: ScopedConnection,
    }

    /// Make's body: `accountName` is the name, `accountType` the app; the
    /// app's fields at the top level (any other key) or under `data`.
    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct NewConnection {
        account_name: Option<String>,
        account_type: Option<String>,
        /// A number or `latest`.
        #[schema(value_type = Option<credence_service::requests::AppVersion>)]
        app_version: Option<String>,
        modules: Option<Vec<String>>,
        scopes: Option<Vec<String>>,
        /// OAuth 2.0: the team's own client.
        client_id: Option<String>,
        client_secret: Option<String>,
        /// The app's field values.
        data: Option<BTreeMap<String, serde_json::Value>>,
    }
}

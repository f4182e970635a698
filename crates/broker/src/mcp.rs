//! The broker as a Model Context Protocol server at `/mcp` (Streamable HTTP,
//! stateless, JSON answers), for AI agents. Authenticated with the same API
//! tokens (`connections:use`), checked before anything reaches the MCP layer
//! and again by every tool call. Two tools:
//! * `list_connections`: the connections the caller may use, with the modules
//!   granted and the operations they allow;
//! * `call_connection`: one call to a connection's app. It is made into the
//!   very request the proxy takes (`/api/v2/connections/{id}/proxy/{path}`,
//!   the caller's own token) and goes through [`crate::proxy`]'s `forward`: the
//!   same checks, host lock, header hygiene, rate limit and usage log.

use crate::limit::CallLimit;
use crate::usage::UsageLog;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use credence_catalog::ModuleSelection;
use credence_domain::Scope;
use credence_http::error::ApiError;
use credence_http::extract::ApiCaller;
use credence_http::AppState;
use credence_service::access;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

/// How much of an app's answer a tool call returns.
const ANSWER_LIMIT: usize = 1024 * 1024;

/// `/mcp`: the token is checked first (401/403 as for the proxy); then the
/// MCP transport, stateless, takes the request.
#[utoipa::path(post, path = "/mcp", tag = "broker",
    summary = "The MCP server (Streamable HTTP, stateless, JSON answers): tools to list and call the team's connections",
    request_body(content = Object, description = "A JSON-RPC 2.0 message of the Model Context Protocol.", content_type = "application/json"),
    security(("token" = ["connections:use"])),
    responses(
        (status = 200, description = "The JSON-RPC answer.", content_type = "application/json", body = Object),
        (status = 202, description = "A notification or answer accepted; no body."),
        (status = 406, description = "The `Accept` header does not take `application/json` and `text/event-stream`."),
    ),
)]
pub async fn endpoint(
    State(state): State<AppState>,
    Extension(usage): Extension<UsageLog>,
    Extension(limit): Extension<Arc<CallLimit>>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match ApiCaller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = caller.require(Scope::ConnectionsUse) {
        return error.into_response();
    }
    let host = reqwest::Url::parse(&state.public_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_string))
        .unwrap_or_else(|| "localhost".into());
    // Stateless, JSON answers: no session outlives its request, so nothing
    // holds a graceful stop open.
    let mut config = StreamableHttpServerConfig::default().with_allowed_hosts([host]);
    config.legacy_session_mode = false;
    config.json_response = true;
    let server = Server {
        state,
        usage,
        limit,
    };
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let request = Request::from_parts(parts, body);
    match service.oneshot(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    }
}

#[derive(Clone)]
struct Server {
    state: AppState,
    usage: UsageLog,
    limit: Arc<CallLimit>,
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(object) => Arc::new(object),
        _ => Arc::new(JsonObject::new()),
    }
}

fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "list_connections",
            "The connections you may use, with the modules granted and the operations (method and path pattern) they allow.",
            schema(json!({ "type": "object", "properties": {} })),
        ),
        Tool::new(
            "call_connection",
            "Calls a connection's app with its credential (you never see it): the method and path must match an operation of a granted module. Answers the app's status and body.",
            schema(json!({
                "type": "object",
                "properties": {
                    "connectionId": { "type": "integer" },
                    "method": { "type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"] },
                    "path": { "type": "string", "description": "relative to the app's base URL, e.g. /v1/contacts" },
                    "query": { "type": "string", "description": "the query string, without ?" },
                    "body": { "description": "a JSON value sent as the JSON body" },
                    "consumer": { "type": "string", "description": "names your workflow in the usage log (at most 100 characters)" }
                },
                "required": ["connectionId", "method", "path"]
            })),
        ),
    ]
}

/// The HTTP request of the MCP call, which the transport hands over.
fn parts_of(context: &RequestContext<RoleServer>) -> Result<Parts, McpError> {
    context
        .extensions
        .get::<Parts>()
        .cloned()
        .ok_or_else(|| McpError::internal_error("the HTTP request is missing", None))
}

fn text_result(value: Value, is_error: bool) -> CallToolResponse {
    let content = vec![ContentBlock::text(value.to_string())];
    if is_error {
        CallToolResult::error(content).into()
    } else {
        CallToolResult::success(content).into()
    }
}

/// An API error as a tool's error result (the same JSON body as the API's).
async fn error_result(error: ApiError) -> CallToolResponse {
    let response = error.into_response();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), ANSWER_LIMIT)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    text_result(json!({ "status": status, "error": body }), true)
}

impl Server {
    async fn list_connections(&self, mut parts: Parts) -> Result<Value, ApiError> {
        let caller = ApiCaller::from_request_parts(&mut parts, &self.state).await?;
        caller.require(Scope::ConnectionsUse)?;
        let mut db = self.state.store.db().await?;
        let mut listed = Vec::new();
        for membership in db.list_memberships(caller.user.id).await? {
            let teams =
                access::sender_teams(&mut db, &caller.user, membership.organization.id).await?;
            for team in teams {
                for connection in db.list_connections(team).await? {
                    let used_by_request = !db
                        .credentials_using_connection(connection.id)
                        .await?
                        .is_empty();
                    let version = self
                        .state
                        .catalog
                        .get(&connection.app_key)
                        .and_then(|app| app.version(connection.app_version as u32));
                    let keys: Vec<String> =
                        serde_json::from_str(&connection.modules).unwrap_or_default();
                    let selection = if !used_by_request || keys.iter().any(|k| k == "*") {
                        ModuleSelection::All
                    } else {
                        ModuleSelection::Only(keys.into_iter().collect())
                    };
                    let modules: Vec<Value> = version
                        .map(|version| {
                            version
                                .modules
                                .iter()
                                .filter(|module| selection.includes(&module.key))
                                .map(|module| {
                                    json!({
                                        "key": module.key,
                                        "label": module.label,
                                        "operations": module.operations.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    listed.push(json!({
                        "id": connection.id,
                        "name": connection.name,
                        "app": connection.app_key,
                        "appVersion": connection.app_version,
                        "teamId": connection.team_id,
                        "state": connection.state,
                        "grantedModules": modules,
                    }));
                }
            }
        }
        Ok(json!({ "connections": listed }))
    }

    async fn call_connection(
        &self,
        parts: Parts,
        arguments: JsonObject,
    ) -> Result<Value, ApiError> {
        let field = |name: &str| arguments.get(name);
        let id = field("connectionId")
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                ApiError::invalid(
                    "connectionId",
                    "connectionId must be a connection's id (a number)",
                )
            })?;
        let method = field("method")
            .and_then(Value::as_str)
            .and_then(|method| axum::http::Method::from_bytes(method.as_bytes()).ok())
            .ok_or_else(|| {
                ApiError::invalid("method", "method must be GET, POST, PUT, PATCH or DELETE")
            })?;
        let path = field("path").and_then(Value::as_str).ok_or_else(|| {
            ApiError::invalid("path", "path must be a path on the app, starting with /")
        })?;
        if !path.starts_with('/') {
            return Err(ApiError::invalid(
                "path",
                format!("path {} must start with /", crate::check::shorten(path)),
            ));
        }
        let mut uri = format!("/api/v2/connections/{id}/proxy{path}");
        if let Some(query) = field("query")
            .and_then(Value::as_str)
            .filter(|q| !q.is_empty())
        {
            uri.push('?');
            uri.push_str(query.trim_start_matches('?'));
        }
        let mut request = axum::http::Request::builder().method(method).uri(&uri);
        if let Some(authorization) = parts.headers.get(axum::http::header::AUTHORIZATION) {
            request = request.header(axum::http::header::AUTHORIZATION, authorization);
        }
        let consumer = field("consumer").and_then(Value::as_str).unwrap_or("mcp");
        request = request.header(crate::proxy::CONSUMER_HEADER, consumer);
        let body = match field("body") {
            None | Some(Value::Null) => axum::body::Body::empty(),
            Some(value) => {
                let text = value.to_string();
                request = request
                    .header(axum::http::header::CONTENT_TYPE, "application/json")
                    .header(axum::http::header::CONTENT_LENGTH, text.len());
                axum::body::Body::from(text)
            }
        };
        let request = request.body(body).map_err(|_| {
            ApiError::invalid(
                "path",
                format!("{} is not a valid path", crate::check::shorten(path)),
            )
        })?;
        let response =
            crate::proxy::forward(&self.state, &self.usage, &self.limit, request).await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let bytes = axum::body::to_bytes(response.into_body(), ANSWER_LIMIT)
            .await
            .map_err(|_| {
                ApiError::BadGateway(format!(
                    "the app's answer is larger than {ANSWER_LIMIT} bytes"
                ))
            })?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
        Ok(json!({ "status": status, "contentType": content_type, "body": body }))
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.instructions = Some(
            "Use the connections your team was given without ever seeing their credentials: list_connections, then call_connection within the granted modules.".into(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let parts = parts_of(&context)?;
        let outcome = match request.name.as_ref() {
            "list_connections" => self.list_connections(parts).await,
            "call_connection" => {
                self.call_connection(parts, request.arguments.unwrap_or_default())
                    .await
            }
            other => {
                return Err(McpError::invalid_params(
                    format!("there is no tool {other}; use list_connections or call_connection"),
                    None,
                ))
            }
        };
        Ok(match outcome {
            Ok(value) => {
                let failed = value["status"].as_u64().is_some_and(|status| status >= 400);
                text_result(value, failed)
            }
            Err(error) => error_result(error).await,
        })
    }
}

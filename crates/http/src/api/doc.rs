//! The OpenAPI 3.1 document of the API (SPEC §11), generated from the code:
//! every handler carries its `#[utoipa::path]` next to it (method, path,
//! parameters, body, answers, the scope its token needs), [`Api`] lists them,
//! and the broker brings its own through [`Routes::document`]. [`document`]
//! puts them together under `/api/v2` and adds what every operation shares:
//! the error envelope for the statuses any call may get, and `Bearer` beside
//! `Token` for each scope. Served at `GET /api/v2/openapi.json`, and drawn
//! as a page at `GET /api/v2/docs`. `tests/api/openapi.rs` compares it with
//! what the server serves, both ways, and runs schemathesis against it.

use super::{
    actions, audit, connections, organizations, requests, teams, tokens, tracking, two_factor,
    users, webhooks,
};
use crate::error::{Body, SubError};
use crate::routes::Routes;
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use utoipa::OpenApi;

/// The security scheme of `Authorization: Token <token>` (Make's form).
pub const TOKEN: &str = "token";
/// The same token as `Authorization: Bearer <token>`.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    paths(
        openapi_json,
        docs_page,
        users::me,
        users::current_authorization,
        users::list_team_members,
        tokens::list,
        tokens::create,
        tokens::delete,
        organizations::list,
        organizations::get,
        two_factor::get,
        two_factor::put,
        teams::list,
        teams::get,
        requests::apps,
        requests::modules_with_credentials,
        requests::feature_status,
        requests::request_feature,
        requests::list,
        requests::create_deprecated,
        requests::create,
        requests::get,
        requests::delete,
        tracking::update,
        tracking::projects,
        tracking::get_policy,
        tracking::put_policy,
        tracking::teardown,
        requests::detail,
        requests::received,
        requests::get_credential,
        requests::decline,
        requests::delete_remote,
        requests::request_reauthorize,
        requests::authorize,
        requests::reauthorize,
        requests::revoke,
        actions::create,
        actions::create_by_credentials,
        actions::extend,
        audit::organization_log,
        audit::organization_filters,
        audit::organization_export,
        audit::team_log,
        audit::team_filters,
        audit::team_export,
        audit::get,
        connections::list,
        connections::create,
        connections::get,
        connections::rename,
        connections::delete,
        connections::test,
        connections::scoped,
        webhooks::list,
        webhooks::create,
        webhooks::get,
        webhooks::update,
        webhooks::delete,
        webhooks::rotate_secret,
        webhooks::deliveries,
        webhooks::delivery,
        webhooks::replay,
        webhooks::attempts,
    ),
    components(schemas(Body, SubError, Pg))
)]
struct Api;

/// Make's `pg` answer: the page a list answered.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // described here, built by `ListParams::answer`
#[schema(rename_all = "camelCase")]
pub struct Pg {
    sort_by: String,
    #[schema(pattern = "^(asc|desc)$")]
    sort_dir: String,
    offset: u64,
    limit: u64,
    /// The number of matching items (request lists, audit logs).
    #[schema(required = false)]
    total: u64,
}

/// Make's list parameters (`pg[…]`, `cols[]`), for `params(PageParams)`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described here, read by `ListParams::parse`
pub struct PageParams {
    /// How many items to skip.
    #[param(rename = "pg[offset]", minimum = 0, maximum = 1_000_000_000)]
    offset: Option<u64>,
    /// How many items to answer, 1 to 10000.
    #[param(rename = "pg[limit]", minimum = 1, maximum = 10000)]
    limit: Option<u64>,
    /// The column to sort by (each list names its own).
    #[param(rename = "pg[sortBy]")]
    sort_by: Option<String>,
    #[param(rename = "pg[sortDir]", pattern = "^(asc|desc)$")]
    sort_dir: Option<String>,
    /// Only these keys of each item (`*`: all).
    #[param(rename = "cols[]")]
    cols: Option<Vec<String>>,
}

/// The filters of the request lists (Sent, Received, the project rollups),
/// for `params(RequestFilterParams)`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described here, read by `requests::list_filter`
pub struct RequestFilterParams {
    /// Only requests of this status.
    #[param(
        pattern = "^(pending|incomplete|authorized|partially_authorized|declined|invalid|revoked)$"
    )]
    status: Option<String>,
    /// Only requests whose name contains this (≤ 255 characters).
    name: Option<String>,
    /// Only requests of this client.
    client: Option<String>,
    /// Only requests of this project.
    project: Option<String>,
    /// Only requests this user follows up.
    #[param(rename = "ownerId")]
    owner_id: Option<i64>,
    /// Only requests this user sent.
    #[param(rename = "userId")]
    user_id: Option<i64>,
    /// A tracking view.
    #[param(pattern = "^(active|due-for-nudge|sla-breach|authorized-this-week)$")]
    view: Option<String>,
}

/// The schemas of objects whose keys `cols[]` may narrow: none of their
/// properties is required.
const SELECTABLE: &[&str] = &[
    "User",
    "TeamMember",
    "Organization",
    "Team",
    "Request",
    "Connection",
    "AuditLog",
];

/// The whole document: this crate's operations under `/api/v2`, `more`'s as
/// given (full paths), and what every operation shares.
pub fn document(more: &Routes) -> Value {
    let mut openapi = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("Credence API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Credence's JSON API, shaped like Make's public API where Make has the \
                     operation (paths, `teamId`, `cols[]`, `pg[...]`, envelopes, field names). \
                     Authenticate with `Authorization: Token <api token>` (or `Bearer <api token>`); \
                     each operation names the scope its token needs. Every error answers the \
                     `Error` envelope.",
                ))
                .build(),
        )
        .build()
        .nest(crate::API_PREFIX, Api::openapi());
    if let Some(theirs) = more.openapi() {
        openapi.merge(theirs.clone());
    }
    let mut document = serde_json::to_value(&openapi).unwrap_or_default();
    finish(&mut document);
    document
}

/// The answers any call may get, by status, and when an operation gets them.
const SHARED: &[(&str, &str, &str)] = &[
    ("400", "BadRequest", "The input is invalid (the field is named in `suberrors`), or the body, path or query cannot be read."),
    ("401", "Unauthenticated", "No API token, or one that is unknown, deleted or expired."),
    ("403", "Forbidden", "The token lacks the scope, or the caller's role does not allow this."),
    ("404", "NotFound", "Nothing there, or nothing the caller may know of."),
    ("408", "RequestTimeout", "The request was not answered within the configured time."),
    ("413", "PayloadTooLarge", "The body is larger than the limit."),
    ("415", "UnsupportedMediaType", "The body is not sent as `application/json`."),
    ("500", "Internal", "A fault of ours; the body is generic and the cause is logged."),
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Adds the shared error answers, `Bearer` beside every `Token`
/// requirement, the security schemes, and lifts `required` from the
/// schemas `cols[]` narrows.
fn finish(document: &mut Value) {
    let components = document
        .as_object_mut()
        .expect("an OpenAPI document is an object")
        .entry("components")
        .or_insert_with(|| json!({}));
    let responses = components
        .as_object_mut()
        .expect("components is an object")
        .entry("responses")
        .or_insert_with(|| json!({}));
    for (_, name, description) in SHARED {
        responses[*name] = json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        });
    }
    components["securitySchemes"] = json!({
        TOKEN: {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Authorization: Token <api token>`, the form Make's clients send. The scopes listed on an operation are those the token must hold.",
        },
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "The same API token as `Authorization: Bearer <api token>`.",
        },
    });
    if let Some(schemas) = components["schemas"].as_object_mut() {
        for name in SELECTABLE {
            if let Some(schema) = schemas.get_mut(*name).and_then(Value::as_object_mut) {
                schema.remove("required");
            }
        }
    }
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let path: &str = path;
        for method in METHODS {
            let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) else {
                continue;
            };
            let secured = add_bearer(operation);
            let has_body = operation.contains_key("requestBody");
            let answers = operation
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("responses is an object");
            for (status, name, _) in SHARED {
                let applies = match *status {
                    // Any id a secured call names (in its path, query or
                    // body) may be unknown to the caller.
                    "401" | "403" | "404" => secured || path.contains('{'),
                    "415" => has_body,
                    _ => true,
                };
                if applies && !answers.contains_key(*status) {
                    answers.insert(
                        status.to_string(),
                        json!({"$ref": format!("#/components/responses/{name}")}),
                    );
                }
            }
        }
    }
}

/// `[{"token": [scopes]}]` becomes `[{"token": [scopes]}, {"bearer": [scopes]}]`;
/// whether the operation needs a token at all.
fn add_bearer(operation: &mut Map<String, Value>) -> bool {
    let Some(requirements) = operation.get_mut("security").and_then(Value::as_array_mut) else {
        return false;
    };
    let bearer: Vec<Value> = requirements
        .iter()
        .filter_map(|requirement| requirement.get(TOKEN))
        .map(|scopes| json!({ BEARER: scopes }))
        .collect();
    requirements.extend(bearer);
    !requirements.is_empty()
}

/// The document as served, built once at start.
#[derive(Clone)]
pub struct Document {
    pub json: Arc<Value>,
    text: Arc<str>,
}

impl Document {
    pub fn new(json: Value) -> Document {
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        Document {
            json: Arc::new(json),
            text: text.into(),
        }
    }
}

/// The OpenAPI 3.1 document of every endpoint.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "documentation",
    responses((status = 200, description = "The OpenAPI 3.1 document (this one).", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json(Extension(document): Extension<Document>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document.text.to_string(),
    )
        .into_response()
}

/// The document as a page: every operation with its parameters, body,
/// answers and scopes.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "documentation",
    responses((status = 200, description = "An HTML page listing every operation.", content_type = "text/html", body = String)),
)]
pub async fn docs_page(Extension(document): Extension<Document>) -> Html<String> {
    Html(super::doc_page::render(&document.json).into_string())
}

/// An organization role.
#[derive(utoipa::ToSchema)]
#[schema(as = OrgRole, rename_all = "lowercase")]
pub enum OrgRoleName {
    Owner,
    Admin,
    Member,
    Guest,
}

/// A team role.
#[derive(utoipa::ToSchema)]
#[schema(as = TeamRole, rename_all = "lowercase")]
pub enum TeamRoleName {
    Admin,
    Member,
}

//! `/credential-requests/…`: Make's credential-request API (requests, their
//! credentials, the app catalog's modules) plus the recipient's side and the
//! feature gate, in the same conventions.

use crate::error::ApiError;
use crate::extract::{select_columns, ApiCaller, AppJson, AppPath, ListParams, QueryPairs};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use credence_catalog::{AuthKind, Catalog, ModuleKind};
use credence_domain::{CredentialId, OrgRole, RequestId, RequestStatus, Scope, TeamId, UserId};
use credence_provider::SecretJson;
use credence_service::access::{self, Viewer};
use credence_service::requests::{self, CreateRequestInput};
use credence_service::{credentials, features};
use credence_store::{
    CredentialRequest, Db, RequestFilter, RequestScope, RequestedCredential, TrackingView, User,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

fn request_id(raw: &str) -> Result<RequestId, ApiError> {
    RequestId::parse("requestId", raw).map_err(ApiError::from)
}

fn credential_id(raw: &str) -> Result<CredentialId, ApiError> {
    CredentialId::parse("credentialId", raw).map_err(ApiError::from)
}

/// Make's `type` of a credential: `oauth`, `apikey`, `basic` or `custom`.
fn credential_type(catalog: &Catalog, credential: &RequestedCredential) -> &'static str {
    let kind = catalog
        .get(&credential.app_key)
        .and_then(|app| app.version(credential.app_version as u32))
        .map(|version| version.auth.kind());
    match kind {
        Some(AuthKind::Oauth2) => "oauth",
        Some(AuthKind::ApiKey) => "apikey",
        Some(AuthKind::Basic) => "basic",
        Some(AuthKind::Custom) | None => "custom",
    }
}

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A credential as Make shows it, plus the permissions its modules imply.
pub fn credential_json(catalog: &Catalog, credential: &RequestedCredential) -> Value {
    let app = catalog.get(&credential.app_key);
    let version = app.and_then(|app| app.version(credential.app_version as u32));
    let modules = json_list(&credential.modules);
    let permissions: Vec<Value> = version
        .map(|version| {
            version
                .modules
                .iter()
                .filter(|module| modules.iter().any(|m| m == "*" || *m == module.key))
                .map(|module| {
                    json!({
                        "module": module.key,
                        "label": module.label,
                        "access": module.access,
                        "scopes": module.scopes,
                        "operations": module.operations.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "id": credential.id,
        "requestId": credential.request_id,
        "component": credential.app_key,
        "type": credential_type(catalog, credential),
        "name": credential.connection_name,
        "label": app.map(|a| a.label.as_str()).unwrap_or(&credential.app_key),
        "description": credential.note,
        "scope": json_list(&credential.scopes),
        "remoteId": credential.connection_id.map(|id| id.to_string()),
        "remoteScope": if credential.connection_id.is_some() { json_list(&credential.scopes) } else { Vec::new() },
        "tokenId": Value::Null,
        "createdAt": credential.created_at,
        "updatedAt": credential.updated_at,
        "state": credential.state,
        "declineReason": credential.decline_reason,
        "invalidReason": credential.invalid_reason,
        "appName": credential.app_key,
        "appModules": modules,
        "appVersion": credential.app_version.to_string(),
        "nameOverride": credential.connection_name,
        "permissions": permissions,
    })
}

fn person_json(user: Option<&User>) -> Value {
    match user {
        Some(user) => json!({ "id": user.id, "email": user.email, "name": user.name }),
        None => Value::Null,
    }
}

/// A request as Make shows it (`CredentialRequest`), plus our fields.
fn request_json(
    request: &CredentialRequest,
    credentials: &[RequestedCredential],
    recipient: Option<&User>,
) -> Value {
    json!({
        "id": request.id,
        "organizationId": request.organization_id,
        "teamId": request.team_id,
        "userId": request.requester_id,
        "name": request.name,
        "description": request.description,
        "externalProviderId": Value::Null,
        "makeProviderId": request.recipient_user_id.map(|id| id.to_string()),
        "createdAt": request.created_at,
        "updatedAt": request.updated_at,
        "expiresAt": request.expires_at,
        "status": request.status,
        "shouldSendEmail": true,
        "emailSentAt": Value::Null,
        "appNames": credentials.iter().map(|c| c.app_key.as_str()).collect::<Vec<_>>(),
        "makeProvider": match recipient {
            Some(user) => person_json(Some(user)),
            None => json!({ "id": Value::Null, "email": request.recipient_email, "name": request.recipient_name }),
        },
        "recipient": {
            "kind": request.recipient_kind,
            "name": request.recipient_name,
            "email": request.recipient_email,
            "userId": request.recipient_user_id,
        },
        "client": request.client,
        "project": request.project,
        "ownerId": request.owner_id.unwrap_or(request.requester_id),
        "openedAt": request.opened_at,
        "nudgeCount": request.nudge_count,
        "lastNudgeAt": request.last_nudge_at,
        "nextNudgeAt": request.next_nudge_at,
        "slaDueAt": request.sla_due_at,
        "slaNotifiedAt": request.sla_notified_at,
        "authorizedAt": request.authorized_at,
    })
}

const REQUEST_COLUMNS: &[&str] = &[
    "id",
    "organizationId",
    "teamId",
    "userId",
    "name",
    "description",
    "externalProviderId",
    "makeProviderId",
    "createdAt",
    "updatedAt",
    "expiresAt",
    "status",
    "shouldSendEmail",
    "emailSentAt",
    "appNames",
    "makeProvider",
    "recipient",
    "client",
    "project",
    "ownerId",
    "openedAt",
    "nudgeCount",
    "lastNudgeAt",
    "nextNudgeAt",
    "slaDueAt",
    "slaNotifiedAt",
    "authorizedAt",
];

/// Renders a page of requests with their credentials (one query for all).
pub(super) async fn requests_json(
    db: &mut Db,
    requests: &[CredentialRequest],
) -> Result<Vec<Value>, ApiError> {
    let ids: Vec<RequestId> = requests.iter().map(|r| r.id).collect();
    let mut by_request: HashMap<RequestId, Vec<RequestedCredential>> = HashMap::new();
    for credential in db.list_credentials_of(&ids).await? {
        by_request
            .entry(credential.request_id)
            .or_default()
            .push(credential);
    }
    let mut recipient_ids: Vec<UserId> = requests
        .iter()
        .filter_map(|r| r.recipient_user_id)
        .collect();
    recipient_ids.sort_unstable();
    recipient_ids.dedup();
    let recipients: HashMap<UserId, User> = db
        .get_users(&recipient_ids)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let out = requests
        .iter()
        .map(|request| {
            let recipient = request.recipient_user_id.and_then(|id| recipients.get(&id));
            let credentials = by_request
                .get(&request.id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            request_json(request, credentials, recipient)
        })
        .collect();
    Ok(out)
}

/// `cols[]` of Make: `*` means every column.
fn columns(params: &ListParams) -> Vec<String> {
    if params.cols.iter().any(|c| c == "*") {
        Vec::new()
    } else {
        params.cols.clone()
    }
}

/// A tracking label to filter on (`client`, `project`): at most as long as
/// a label may be.
fn label_filter(query: &QueryPairs, field: &str) -> Result<Option<String>, ApiError> {
    match query.get(field) {
        None => Ok(None),
        Some(raw) => {
            let length = raw.chars().count();
            if length > credence_domain::TrackingField::MAX {
                return Err(ApiError::invalid(
                    field,
                    format!(
                        "{field} filter is {length} characters; the limit is {}",
                        credence_domain::TrackingField::MAX
                    ),
                ));
            }
            Ok(Some(raw.trim().to_string()))
        }
    }
}

/// The tracking view a list asks for (`view=`), at the current time.
fn tracking_view(query: &QueryPairs) -> Result<Option<TrackingView>, ApiError> {
    let now = credence_store::now();
    match query.get("view") {
        None => Ok(None),
        Some("active") => Ok(Some(TrackingView::Active)),
        Some("due-for-nudge") => Ok(Some(TrackingView::DueForNudge(now))),
        Some("sla-breach") => Ok(Some(TrackingView::SlaBreach(now))),
        Some("authorized-this-week") => Ok(Some(TrackingView::AuthorizedSince(
            credence_service::tracking::start_of_week(now),
        ))),
        Some(other) => Err(ApiError::invalid(
            "view",
            format!(
                "view {:?} is not one of active, due-for-nudge, sla-breach, authorized-this-week",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// The filter of a list within `scope`: Make's filters only narrow the scope.
pub(super) fn list_filter(
    query: &QueryPairs,
    params: &ListParams,
    scope: RequestScope,
) -> Result<RequestFilter, ApiError> {
    let status = match query.get("status") {
        Some(raw) => Some(RequestStatus::parse("status", raw)?),
        None => None,
    };
    let name = query.get("name").map(str::to_string);
    if name.as_ref().is_some_and(|n| n.chars().count() > 255) {
        return Err(ApiError::invalid(
            "name",
            "name filter is longer than 255 characters",
        ));
    }
    let sort_by = params.sort_column(&["createdAt", "name", "status"])?;
    Ok(RequestFilter {
        scope,
        status,
        name_contains: name,
        client: label_filter(query, "client")?,
        project: label_filter(query, "project")?,
        owner: query.id("ownerId")?.map(UserId),
        view: tracking_view(query)?,
        requester: query.id("userId")?.map(UserId),
        sort_by: match sort_by {
            "name" => "name",
            "status" => "status",
            _ => "created_at",
        },
        // Newest first unless the caller says otherwise.
        descending: params.descending || !params.sort_dir_given,
        offset: params.offset as i64,
        limit: params.limit.min(1000) as i64,
    })
}

fn pg_answer(params: &ListParams, total: i64) -> Value {
    let mut pg = params.answer(params.sort_by.as_deref().unwrap_or("createdAt"));
    if !params.sort_dir_given {
        pg["sortDir"] = json!("desc");
    }
    pg["limit"] = json!(params.limit.min(1000));
    pg["total"] = json!(total);
    pg
}

/// `GET /credential-requests/requests`: the requests sent by the caller's teams
/// (one team with `teamId`), filtered as Make filters them. `makeProviderId`
/// narrows them to one recipient; it never widens the list beyond those teams,
/// so a caller who sends from no team (a guest, a member of no team, the owner
/// of an organization without teams) lists nothing.
#[utoipa::path(get, path = "/credential-requests/requests", tag = "credential requests",
    summary = "The requests the caller's teams sent",
    params(
        ("teamId" = Option<i64>, Query, description = "Only this team's (else every team the caller sends for)."),
        ("makeProviderId" = Option<i64>, Query, description = "Only those sent to this user."),
        crate::api::doc::RequestFilterParams,
        crate::api::doc::PageParams,
    ),
    security(("token" = ["credential-requests:read"])),
    responses((status = 200, description = "The requests, newest first (`pg[sortBy]`: createdAt, name, status).", body = schema::Requests)))]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsRead)?;
    let params = ListParams::parse(&query.0)?;
    let recipient = match query.get("makeProviderId") {
        Some(provider) => Some(UserId(provider.parse::<i64>().map_err(|_| {
            ApiError::invalid(
                "makeProviderId",
                format!(
                    "makeProviderId {:?} is not a user id",
                    provider.chars().take(40).collect::<String>()
                ),
            )
        })?)),
        None => None,
    };
    let mut db = state.store.db().await?;
    let teams = sent_teams(&mut db, &caller, &query).await?;
    let filter = list_filter(&query, &params, RequestScope::Sent { teams, recipient })?;
    list_answer(&mut db, &filter, &params).await
}

/// The teams whose sent requests a list shows: `teamId`'s (when the caller
/// sees it), else every team the caller sees as sender.
pub(super) async fn sent_teams(
    db: &mut Db,
    caller: &ApiCaller,
    query: &QueryPairs,
) -> Result<Vec<TeamId>, ApiError> {
    Ok(match query.id("teamId")?.map(TeamId) {
        Some(team) => {
            if !access::may_see_team(db, &caller.user, team).await? {
                return Err(ApiError::NotFound(format!("team {team} not found")));
            }
            vec![team]
        }
        None => {
            let mut teams = Vec::new();
            for membership in db.list_memberships(caller.user.id).await? {
                teams.extend(
                    access::sender_teams(db, &caller.user, membership.organization.id).await?,
                );
            }
            teams
        }
    })
}

/// One page of requests matching `filter`, as Make lists them.
async fn list_answer(
    db: &mut Db,
    filter: &RequestFilter,
    params: &ListParams,
) -> Result<Json<Value>, ApiError> {
    let (found, total) = db.list_requests(filter).await?;
    let items = requests_json(db, &found).await?;
    let items = select_columns(items, &columns(params), REQUEST_COLUMNS)?;
    Ok(Json(
        json!({ "requests": items, "pg": pg_answer(params, total) }),
    ))
}

/// `GET /credential-requests/received`: the requests the caller received.
#[utoipa::path(get, path = "/credential-requests/received", tag = "credential requests",
    summary = "The requests the caller received",
    params(
        crate::api::doc::RequestFilterParams,
        crate::api::doc::PageParams,
    ),
    security(("token" = ["credential-requests:read"])),
    responses((status = 200, description = "The requests, newest first.", body = schema::Requests)))]
pub async fn received(
    State(state): State<AppState>,
    caller: ApiCaller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsRead)?;
    let params = ListParams::parse(&query.0)?;
    let filter = list_filter(
        &query,
        &params,
        RequestScope::Received {
            recipient: caller.user.id,
        },
    )?;
    let mut db = state.store.db().await?;
    list_answer(&mut db, &filter, &params).await
}

pub(super) async fn create_answer(
    state: &AppState,
    caller: &ApiCaller,
    input: CreateRequestInput,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    let created = requests::create(&state.ctx(), &caller.user, input).await?;
    let mut db = state.store.db().await?;
    let recipient = match created.request.recipient_user_id {
        Some(id) => db.get_user(id).await?,
        None => None,
    };
    let mut request = request_json(&created.request, &created.credentials, recipient.as_ref());
    request["credentials"] = created
        .credentials
        .iter()
        .map(|c| credential_json(&state.catalog, c))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "request": request, "publicUri": created.public_uri })),
    ))
}

/// `POST /credential-requests/requests/v2`, and Make's deprecated
/// `POST /credential-requests/requests` (same body, same answer).
#[utoipa::path(post, path = "/credential-requests/requests/v2", tag = "credential requests",
    summary = "Create a request: apps and modules asked of one recipient",
    request_body = CreateRequestInput,
    security(("token" = ["credential-requests:write"])),
    responses((status = 201, description = "The request, its credentials and the recipient's link.", body = schema::Created)))]
pub async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppJson(input): AppJson<CreateRequestInput>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    create_answer(&state, &caller, input).await
}

/// `GET /credential-requests/requests/{id}`.
#[utoipa::path(get, path = "/credential-requests/requests/{id}", tag = "credential requests",
    summary = "One request (sent by a team of the caller's, or received)",
    params(("id" = String, Path, format = Uuid, description = "The request's id."), ("cols[]" = Option<Vec<String>>, Query, description = "Only these keys (`*`: all).")),
    security(("token" = ["credential-requests:read"])),
    responses((status = 200, description = "The request.", body = schema::RequestAnswer)))]
pub async fn get(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsRead)?;
    let params = ListParams::parse(&query.0)?;
    let id = request_id(&id)?;
    let mut db = state.store.db().await?;
    let (request, _) = access::request(&mut db, &caller.user, id).await?;
    let items = requests_json(&mut db, std::slice::from_ref(&request)).await?;
    let mut items = select_columns(items, &columns(&params), REQUEST_COLUMNS)?;
    Ok(Json(
        json!({ "request": items.pop().unwrap_or(Value::Null) }),
    ))
}

/// `GET /credential-requests/requests/{id}/detail`: with the people and every
/// credential, its modules and permissions and its state.
#[utoipa::path(get, path = "/credential-requests/requests/{id}/detail", tag = "credential requests",
    summary = "A request with its people and every credential, its modules, permissions and state",
    params(("id" = String, Path, format = Uuid, description = "The request's id.")),
    security(("token" = ["credential-requests:read"])),
    responses((status = 200, description = "The request in detail.", body = schema::DetailAnswer)))]
pub async fn detail(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsRead)?;
    let id = request_id(&id)?;
    let requests::Opened {
        request,
        viewer,
        credentials,
        requester,
        recipient,
    } = requests::open(&state.ctx(), &caller.user, id).await?;
    let mut detail = request_json(&request, &credentials, recipient.as_ref());
    detail["user"] = person_json(requester.as_ref());
    detail["credentials"] = credentials
        .iter()
        .map(|c| credential_json(&state.catalog, c))
        .collect();
    detail["viewer"] = json!(match viewer {
        Viewer::Sender => "sender",
        Viewer::Recipient => "recipient",
    });
    Ok(Json(json!({ "requestDetail": detail })))
}

/// `DELETE /credential-requests/requests/{id}?confirmed=true`.
#[utoipa::path(delete, path = "/credential-requests/requests/{id}", tag = "credential requests",
    summary = "Delete a request and the connections made for it",
    params(("id" = String, Path, format = Uuid, description = "The request's id."), ("confirmed" = Option<bool>, Query, description = "Must be true when connections would be deleted.")),
    security(("token" = ["credential-requests:write"])),
    responses((status = 200, description = "The id of the request deleted and the connections deleted with it.", body = schema::RequestDeleted),
        (status = 409, description = "Not confirmed while connections would be deleted.", body = crate::error::Body)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    let id = request_id(&id)?;
    let confirmed = query.flag("confirmed")?;
    let deleted = requests::delete(&state.ctx(), &caller.user, id, confirmed).await?;
    Ok(Json(
        json!({ "request": id, "deletedConnections": deleted }),
    ))
}

/// `GET /credential-requests/credentials/{id}`.
#[utoipa::path(get, path = "/credential-requests/credentials/{id}", tag = "credentials",
    summary = "One requested credential",
    params(("id" = String, Path, format = Uuid, description = "The credential's id.")),
    security(("token" = ["credential-requests:read"])),
    responses((status = 200, description = "The credential.", body = schema::CredentialAnswer)))]
pub async fn get_credential(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsRead)?;
    let id = credential_id(&id)?;
    let (credential, _, _) =
        access::credential(&mut state.store.db().await?, &caller.user, id).await?;
    Ok(Json(
        json!({ "credential": credential_json(&state.catalog, &credential) }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DeclineBody {
    /// Why, for the requester.
    reason: Option<String>,
}

/// Reads an optional JSON body: empty means none (Make's SDK sends no body to
/// decline without a reason).
fn optional_body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<Option<T>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| ApiError::BadRequest(format!("the JSON body does not fit: {e}")))
}

/// `POST /credential-requests/credentials/{id}/decline`: the body (a reason) is optional.
#[utoipa::path(post, path = "/credential-requests/credentials/{id}/decline", tag = "credentials",
    summary = "Decline a credential (the recipient), with an optional reason",
    params(("id" = String, Path, format = Uuid, description = "The credential's id.")),
    request_body = Option<DeclineBody>,
    security(("token" = ["credential-requests:write"])),
    responses((status = 200, description = "The credential as it is now.", body = schema::CredentialAnswer),
        (status = 409, description = "The credential's state does not allow this.", body = crate::error::Body)))]
pub async fn decline(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    let id = credential_id(&id)?;
    let body: Option<DeclineBody> = optional_body(&body)?;
    let reason = body.and_then(|b| b.reason);
    let credential =
        credentials::decline(&state.ctx(), &caller.user, id, reason.as_deref()).await?;
    Ok(Json(
        json!({ "credential": credential_json(&state.catalog, &credential) }),
    ))
}

#[utoipa::path(post, path = "/credential-requests/credentials/{id}/delete-remote", tag = "credentials",
    summary = "Delete the connection a credential made (the requester)",
    params(("id" = String, Path, format = Uuid, description = "The credential's id.")),
    security(("token" = ["credential-requests:write"])),
    responses((status = 200, description = "The credential as it is now.", body = schema::CredentialAnswer),
        (status = 409, description = "The credential's state does not allow this.", body = crate::error::Body)))]
pub async fn delete_remote(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    let credential =
        credentials::delete_remote(&state.ctx(), &caller.user, credential_id(&id)?).await?;
    Ok(Json(
        json!({ "credential": credential_json(&state.catalog, &credential) }),
    ))
}

#[utoipa::path(post, path = "/credential-requests/credentials/{id}/request-reauthorize", tag = "credentials",
    summary = "Ask the recipient to authorize a credential again (the requester)",
    params(("id" = String, Path, format = Uuid, description = "The credential's id.")),
    security(("token" = ["credential-requests:write"])),
    responses((status = 200, description = "The credential as it is now.", body = schema::CredentialAnswer),
        (status = 409, description = "The credential's state does not allow this.", body = crate::error::Body)))]
pub async fn request_reauthorize(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    let credential =
        credentials::request_reauthorization(&state.ctx(), &caller.user, credential_id(&id)?)
            .await?;
    Ok(Json(
        json!({ "credential": credential_json(&state.catalog, &credential) }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeBody {
    /// The app's field values (an OAuth 2.0 app has none): secrets, zeroized
    /// once the service took them.
    #[schema(value_type = Option<Object>)]
    data: Option<SecretJson>,
}

/// `POST …/credentials/{id}/authorize` (the recipient's first authorization).
#[utoipa::path(post, path = "/credential-requests/credentials/{id}/authorize", tag = "credentials",
    summary = "Authorize a credential (the recipient): the app's fields, or OAuth consent",
    params(("id" = String, Path, format = Uuid, description = "The credential's id.")),
    request_body = Option<AuthorizeBody>,
    security(("token" = ["credential-requests:write"])),
    responses((status = 200, description = "The authorized credential; for an OAuth 2.0 app, `redirectUri`, the consent page to open in the browser.", body = schema::Authorized),
        (status = 502, description = "The app could not be reached to verify the values.", body = crate::error::Body),
        (status = 409, description = "The credential's state does not allow this.", body = crate::error::Body)))]
pub async fn authorize(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize_answer(&state, &caller, &id, &body, false).await
}

/// `POST …/credentials/{id}/reauthorize` (same body as authorize).
#[utoipa::path(post, path = "/credential-requests/credentials/{id}/reauthorize", tag = "credentials",
    summary = "Authorize a credential again (the recipient; same body as authorize)",
    params(("id" = String, Path, format = Uuid, description = "The credential's id.")),
    request_body = Option<AuthorizeBody>,
    security(("token" = ["credential-requests:write"])),
    responses((status = 200, description = "The authorized credential; for an OAuth 2.0 app, `redirectUri`, the consent page to open in the browser.", body = schema::Authorized),
        (status = 502, description = "The app could not be reached to verify the values.", body = crate::error::Body),
        (status = 409, description = "The credential's state does not allow this.", body = crate::error::Body)))]
pub async fn reauthorize(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize_answer(&state, &caller, &id, &body, true).await
}

async fn authorize_answer(
    state: &AppState,
    caller: &ApiCaller,
    id: &str,
    body: &Bytes,
    reauthorize: bool,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    // The body is optional: an OAuth app has no fields to send.
    let body: AuthorizeBody = optional_body(body)?.unwrap_or(AuthorizeBody { data: None });
    let authorization = credentials::authorize(
        &state.ctx(),
        &caller.user,
        credential_id(id)?,
        body.data,
        reauthorize,
    )
    .await?;
    Ok(authorization_json(state, authorization))
}

/// An authorized credential, or (OAuth 2.0) where the recipient's browser goes.
fn authorization_json(state: &AppState, authorization: credentials::Authorization) -> Json<Value> {
    match authorization {
        credentials::Authorization::Authorized(credential) => {
            Json(json!({ "credential": credential_json(&state.catalog, &credential) }))
        }
        credentials::Authorization::Redirect(url) => Json(json!({ "redirectUri": url })),
    }
}

#[utoipa::path(post, path = "/credential-requests/credentials/{id}/revoke", tag = "credentials",
    summary = "Revoke an authorized credential (the recipient)",
    params(("id" = String, Path, format = Uuid, description = "The credential's id.")),
    security(("token" = ["credential-requests:write"])),
    responses((status = 200, description = "The credential as it is now.", body = schema::CredentialAnswer),
        (status = 409, description = "The credential's state does not allow this.", body = crate::error::Body)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsWrite)?;
    let credential = credentials::revoke(&state.ctx(), &caller.user, credential_id(&id)?).await?;
    Ok(Json(
        json!({ "credential": credential_json(&state.catalog, &credential) }),
    ))
}

/// `GET /credential-requests/apps`: the catalog, briefly.
#[utoipa::path(get, path = "/credential-requests/apps", tag = "apps",
    summary = "The apps of the catalog, briefly",
    security(("token" = ["credential-requests:read"])),
    responses((status = 200, description = "The apps.", body = schema::Apps)))]
pub async fn apps(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsRead)?;
    let apps: Vec<Value> = state
        .catalog
        .apps()
        .map(|app| {
            json!({
                "name": app.key,
                "label": app.label,
                "versions": app.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
                "authKind": app.latest().auth.kind(),
                "modules": app.latest().modules.len(),
            })
        })
        .collect();
    Ok(Json(json!({ "apps": apps })))
}

/// `GET /credential-requests/apps/{appName}/{appVersion}/modules-with-credentials`.
#[utoipa::path(get, path = "/credential-requests/apps/{app_name}/{app_version}/modules-with-credentials", tag = "apps",
    summary = "An app version's modules, with their access, operations and scopes",
    params(
        ("app_name" = String, Path, description = "The app (`app#` prefix allowed)."),
        ("app_version" = String, Path, description = "A version number or `latest`."),
    ),
    security(("token" = ["credential-requests:read"])),
    responses((status = 200, description = "The modules.", body = schema::AppModules)))]
pub async fn modules_with_credentials(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath((app_name, app_version)): AppPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsRead)?;
    let key = app_name.strip_prefix("app#").unwrap_or(&app_name);
    let app = state.catalog.get(key).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no app is called {:?}",
            key.chars().take(64).collect::<String>()
        ))
    })?;
    let version = if app_version == "latest" {
        app.latest()
    } else {
        let number = app_version.parse::<u32>().map_err(|_| {
            ApiError::invalid(
                "appVersion",
                format!(
                    "appVersion {:?} must be a number or latest",
                    app_version.chars().take(20).collect::<String>()
                ),
            )
        })?;
        app.version(number)
            .ok_or_else(|| ApiError::NotFound(format!("{} has no version {number}", app.key)))?
    };
    let oauth = version.auth.kind() == AuthKind::Oauth2;
    let credential_type = if oauth {
        format!("account:{}", app.key)
    } else {
        format!("keychain:{}", app.key)
    };
    let modules: Vec<Value> = version
        .modules
        .iter()
        .map(|module| {
            let mut value = json!({
                "id": module.key,
                "name": module.key,
                "label": module.label,
                "type": credential_type,
                "hook": module.kind == ModuleKind::Trigger,
                "access": module.access,
                "operations": module.operations.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
            });
            if oauth {
                value["scope"] = json!(module.scopes);
            }
            value
        })
        .collect();
    Ok(Json(json!({ "appModules": modules })))
}

/// `GET /credential-requests/feature`: the caller's feature status and the
/// eligibility check Credence performs.
#[utoipa::path(get, path = "/credential-requests/feature", tag = "feature",
    summary = "Whether the caller has the credential-requests feature, and whether they may ask for it",
    security(("token" = [])),
    responses((status = 200, description = "The feature's status.", body = schema::FeatureAnswer)))]
pub async fn feature_status(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<Json<Value>, ApiError> {
    let mut db = state.store.db().await?;
    let has = db
        .user_features(caller.user.id)
        .await?
        .contains(&credence_domain::Feature::CredentialRequests);
    let memberships = db.list_memberships(caller.user.id).await?;
    let request = db
        .latest_feature_request(caller.user.id, credence_domain::Feature::CredentialRequests)
        .await?;
    Ok(Json(json!({
        "feature": {
            "name": "credential-requests",
            "enabled": has,
            "request": request.map(|r| json!({ "status": r.status, "requestedAt": r.requested_at, "decidedAt": r.decided_at })),
            "eligibility": features::eligibility(&caller.user, &memberships),
            "organizations": memberships.iter().filter(|m| m.role != OrgRole::Guest).map(|m| json!({
                "id": m.organization.id, "name": m.organization.name, "qualifies": m.organization.qualifies_for_credential_requests(),
            })).collect::<Vec<_>>(),
        }
    })))
}

/// `POST /credential-requests/feature`: ask for the feature.
#[utoipa::path(post, path = "/credential-requests/feature", tag = "feature",
    summary = "Ask for the credential-requests feature",
    security(("token" = [])),
    responses((status = 201, description = "Asked.", body = schema::FeatureRequested),
        (status = 200, description = "Already asked.", body = schema::FeatureRequested),
        (status = 409, description = "The caller has the feature already.", body = crate::error::Body)))]
pub async fn request_feature(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (eligibility, created) = features::request_feature(&state.store, &caller.user).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "featureRequest": { "status": "pending", "eligibility": eligibility } })),
    ))
}

/// A request answered from its own `#[utoipa::path]`: Make's deprecated path
/// for [`create`], kept apart so that the document describes both.
#[utoipa::path(post, path = "/credential-requests/requests", tag = "credential requests",
    summary = "Create a request (Make's deprecated form of /requests/v2; same body and answer)",
    request_body = CreateRequestInput,
    security(("token" = ["credential-requests:write"])),
    responses((status = 201, description = "The request, its credentials and the recipient's link.", body = schema::Created)))]
pub async fn create_deprecated(
    state: State<AppState>,
    caller: ApiCaller,
    input: AppJson<CreateRequestInput>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    create(state, caller, input).await
}

/// The answers' shapes, for the OpenAPI document (built above with `json!`;
/// the schemathesis test checks that they match).
#[allow(dead_code)]
pub(crate) mod schema {
    use crate::api::doc::Pg;
    use chrono::{DateTime, Utc};
    use utoipa::ToSchema;

    /// What a credential's modules allow.
    #[derive(ToSchema)]
    pub struct Permission {
        module: String,
        label: String,
        #[schema(pattern = "^(read|write)$")]
        access: String,
        /// OAuth 2.0 scopes the module needs.
        scopes: Vec<String>,
        /// `METHOD /path` the module allows on the app.
        operations: Vec<String>,
    }

    /// A requested credential: one app of a request.
    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Credential {
        #[schema(format = Uuid)]
        id: String,
        #[schema(format = Uuid)]
        request_id: String,
        component: String,
        #[schema(pattern = "^(oauth|apikey|basic|custom)$")]
        r#type: String,
        name: String,
        label: String,
        #[schema(required = true)]
        description: Option<String>,
        scope: Vec<String>,
        /// The connection made when authorized.
        #[schema(required = true)]
        remote_id: Option<String>,
        remote_scope: Vec<String>,
        #[schema(required = true, value_type = Option<String>)]
        token_id: Option<String>,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        #[schema(pattern = "^(pending|authorized|invalid|declined|revoked|reauthorizing)$")]
        state: String,
        #[schema(required = true)]
        decline_reason: Option<String>,
        #[schema(required = true)]
        invalid_reason: Option<String>,
        app_name: String,
        app_modules: Vec<String>,
        app_version: String,
        name_override: String,
        permissions: Vec<Permission>,
    }

    #[derive(ToSchema)]
    pub struct CredentialAnswer {
        credential: Credential,
    }

    /// `credential` once authorized; `redirectUri` for an OAuth 2.0 app.
    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Authorized {
        #[schema(required = false)]
        credential: Option<Credential>,
        #[schema(required = false)]
        redirect_uri: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct Person {
        #[schema(required = true)]
        id: Option<i64>,
        email: String,
        name: String,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Recipient {
        #[schema(pattern = "^(internal|external)$")]
        kind: String,
        name: String,
        email: String,
        #[schema(required = true)]
        user_id: Option<i64>,
    }

    /// A credential request as Make shows it, plus Credence's tracking fields.
    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Request {
        #[schema(format = Uuid)]
        id: String,
        organization_id: i64,
        team_id: i64,
        user_id: i64,
        name: String,
        description: Option<String>,
        #[schema(value_type = Option<String>)]
        external_provider_id: Option<String>,
        make_provider_id: Option<String>,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        #[schema(
            pattern = "^(pending|incomplete|authorized|partially_authorized|declined|invalid|revoked)$"
        )]
        status: String,
        should_send_email: bool,
        #[schema(value_type = Option<String>)]
        email_sent_at: Option<String>,
        app_names: Vec<String>,
        make_provider: Person,
        recipient: Recipient,
        client: Option<String>,
        project: Option<String>,
        owner_id: i64,
        opened_at: Option<DateTime<Utc>>,
        nudge_count: i64,
        last_nudge_at: Option<DateTime<Utc>>,
        next_nudge_at: Option<DateTime<Utc>>,
        sla_due_at: Option<DateTime<Utc>>,
        sla_notified_at: Option<DateTime<Utc>>,
        authorized_at: Option<DateTime<Utc>>,
    }

    #[derive(ToSchema)]
    pub struct Requests {
        requests: Vec<Request>,
        pg: Pg,
    }

    #[derive(ToSchema)]
    pub struct RequestAnswer {
        request: Request,
    }

    #[derive(ToSchema)]
    #[schema(as = RequestCreated, rename_all = "camelCase")]
    pub struct Created {
        request: CreatedRequest,
        /// The link for the recipient.
        public_uri: String,
    }

    /// [`Request`] with `credentials`.
    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct CreatedRequest {
        #[schema(format = Uuid)]
        id: String,
        organization_id: i64,
        team_id: i64,
        user_id: i64,
        name: String,
        #[schema(required = true)]
        description: Option<String>,
        #[schema(required = true)]
        make_provider_id: Option<String>,
        created_at: DateTime<Utc>,
        #[schema(
            pattern = "^(pending|incomplete|authorized|partially_authorized|declined|invalid|revoked)$"
        )]
        status: String,
        app_names: Vec<String>,
        make_provider: Person,
        recipient: Recipient,
        owner_id: i64,
        credentials: Vec<Credential>,
    }

    /// [`Request`] with the people, every credential and who is looking.
    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct RequestDetail {
        #[schema(format = Uuid)]
        id: String,
        organization_id: i64,
        team_id: i64,
        user_id: i64,
        name: String,
        #[schema(
            pattern = "^(pending|incomplete|authorized|partially_authorized|declined|invalid|revoked)$"
        )]
        status: String,
        app_names: Vec<String>,
        make_provider: Person,
        recipient: Recipient,
        /// The requester.
        #[schema(required = true)]
        user: Option<Person>,
        credentials: Vec<Credential>,
        #[schema(pattern = "^(sender|recipient)$")]
        viewer: String,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct DetailAnswer {
        request_detail: RequestDetail,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct RequestDeleted {
        #[schema(format = Uuid)]
        request: String,
        /// The ids of the connections deleted with it.
        deleted_connections: Vec<i64>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Redirect {
        /// The consent page to open in the browser.
        redirect_uri: String,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct App {
        name: String,
        label: String,
        versions: Vec<u32>,
        #[schema(pattern = "^(api_key|basic|custom|oauth2)$")]
        auth_kind: String,
        /// How many modules its latest version has.
        modules: u32,
    }

    #[derive(ToSchema)]
    pub struct Apps {
        apps: Vec<App>,
    }

    #[derive(ToSchema)]
    pub struct AppModule {
        id: String,
        name: String,
        label: String,
        /// `account:<app>` (OAuth 2.0) or `keychain:<app>`.
        r#type: String,
        /// Whether it is a trigger.
        hook: bool,
        #[schema(pattern = "^(read|write)$")]
        access: String,
        operations: Vec<String>,
        /// OAuth 2.0 apps only: the scopes it needs.
        #[schema(required = false)]
        scope: Vec<String>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct AppModules {
        app_modules: Vec<AppModule>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct FeatureRequest {
        status: String,
        requested_at: DateTime<Utc>,
        decided_at: Option<DateTime<Utc>>,
    }

    #[derive(ToSchema)]
    pub struct QualifyingOrganization {
        id: i64,
        name: String,
        qualifies: bool,
    }

    #[derive(ToSchema)]
    pub struct Feature {
        /// `credential-requests`.
        name: String,
        enabled: bool,
        #[schema(required = true)]
        request: Option<FeatureRequest>,
        /// Whether the caller may ask for it, and why not.
        eligibility: credence_service::features::Eligibility,
        organizations: Vec<QualifyingOrganization>,
    }

    #[derive(ToSchema)]
    pub struct FeatureAnswer {
        feature: Feature,
    }

    #[derive(ToSchema)]
    pub struct PendingFeatureRequest {
        /// `pending`.
        status: String,
        eligibility: credence_service::features::Eligibility,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct FeatureRequested {
        feature_request: PendingFeatureRequest,
    }
}

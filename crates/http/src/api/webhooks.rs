//! `/webhooks`: a team's or an organization's webhook endpoints (SPEC §10),
//! their delivery log and replays. Reading needs `webhooks:read`, changing
//! `webhooks:write`. The signing secret is in the answer to creation and to
//! `rotate-secret` only, never again.

use crate::error::ApiError;
use crate::extract::{ApiCaller, AppJson, AppPath, QueryPairs};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use credence_domain::{OrganizationId, Scope, TeamId};
use credence_service::webhooks::{self, EndpointChange, EndpointInput, Owner};
use credence_store::{WebhookDelivery, WebhookEndpoint};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

fn endpoint_json(endpoint: &WebhookEndpoint) -> Value {
    json!({
        "id": endpoint.id,
        "organizationId": endpoint.organization_id.0,
        "teamId": endpoint.team_id,
        "url": endpoint.url,
        "events": endpoint.event_names(),
        "enabled": endpoint.enabled,
        "created": endpoint.created_at,
        "updated": endpoint.updated_at,
        "previousSecretValidUntil": endpoint.previous_secret_until,
        "failingSince": endpoint.failing_since,
        "disabledAt": endpoint.disabled_at,
        "disabledReason": endpoint.disabled_reason,
    })
}

fn with_secret(endpoint: &WebhookEndpoint, secret: &SecretString) -> Value {
    let mut answer = endpoint_json(endpoint);
    answer["secret"] = json!(secret.expose_secret());
    json!({ "webhook": answer })
}

/// Where a delivery stands: `delivered`, `failed` (given up), `retrying`
/// (failed, due again) or `pending` (not tried yet).
fn delivery_state(delivery: &WebhookDelivery) -> &'static str {
    if delivery.delivered_at.is_some() {
        "delivered"
    } else if delivery.failed_at.is_some() {
        "failed"
    } else if delivery.last_attempt_at.is_some() {
        "retrying"
    } else {
        "pending"
    }
}

fn delivery_json(delivery: &WebhookDelivery) -> Value {
    json!({
        "id": delivery.id,
        "webhookId": delivery.endpoint_id,
        "messageId": delivery.message_id,
        "event": delivery.event,
        "state": delivery_state(delivery),
        "attempts": delivery.attempts,
        "created": delivery.created_at,
        "lastAttemptAt": delivery.last_attempt_at,
        "nextAttemptAt": if delivery.delivered_at.is_none() && delivery.failed_at.is_none() { delivery.next_attempt_at } else { None },
        "status": delivery.last_status,
        "latencyMs": delivery.last_latency_ms,
        "response": delivery.last_response,
        "error": delivery.last_error,
        "deliveredAt": delivery.delivered_at,
        "failedAt": delivery.failed_at,
        "replayOf": delivery.replay_of,
        "payload": serde_json::from_str::<Value>(&delivery.payload).unwrap_or(Value::Null),
    })
}

/// `teamId` or `organizationId` (exactly one), from a body or a query.
fn owner_of(team: Option<i64>, organization: Option<i64>) -> Result<Owner, ApiError> {
    match (team, organization) {
        (Some(team), None) => Ok(Owner::Team(TeamId(team))),
        (None, Some(organization)) => Ok(Owner::Organization(OrganizationId(organization))),
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "teamId",
            "give teamId (a team's endpoint) or organizationId (the whole organization's), not both",
        )),
        (None, None) => Err(ApiError::invalid(
            "teamId",
            "teamId or organizationId is required: whose endpoints these are",
        )),
    }
}

#[utoipa::path(get, path = "/webhooks", tag = "webhooks",
    summary = "A team's or an organization's webhook endpoints (give exactly one of teamId, organizationId)",
    params(
        ("teamId" = Option<i64>, Query, description = "A team's endpoints."),
        ("organizationId" = Option<i64>, Query, description = "The whole organization's endpoints."),
    ),
    security(("token" = ["webhooks:read"])),
    responses((status = 200, description = "The endpoints.", body = schema::Webhooks)))]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::WebhooksRead)?;
    let owner = owner_of(query.id("teamId")?, query.id("organizationId")?)?;
    let endpoints = webhooks::list(&state.store, &caller.user, owner).await?;
    Ok(Json(
        json!({ "webhooks": endpoints.iter().map(endpoint_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    #[serde(rename = "teamId", default)]
    team_id: Option<i64>,
    #[serde(rename = "organizationId", default)]
    organization_id: Option<i64>,
    url: String,
    events: Vec<String>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

#[utoipa::path(post, path = "/webhooks", tag = "webhooks",
    summary = "Add a webhook endpoint; its signing secret is shown once",
    request_body = CreateEndpoint,
    security(("token" = ["webhooks:write"])),
    responses((status = 201, description = "The endpoint with its `whsec_` signing secret (shown this once).", body = schema::WithSecret)))]
pub async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppJson(body): AppJson<CreateEndpoint>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    let owner = owner_of(body.team_id, body.organization_id)?;
    let (endpoint, secret) = webhooks::create(
        &state.store,
        &state.vault,
        &caller.user,
        owner,
        EndpointInput {
            url: body.url,
            events: body.events,
            enabled: body.enabled,
        },
        state.settings.webhooks_allow_private_hosts,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(with_secret(&endpoint, &secret))))
}

#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks",
    summary = "One webhook endpoint",
    params(("id" = i64, Path, description = "The webhook endpoint.")),
    security(("token" = ["webhooks:read"])),
    responses((status = 200, description = "The endpoint.", body = schema::One)))]
pub async fn get(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::WebhooksRead)?;
    let endpoint = webhooks::get(&state.store, &caller.user, id).await?;
    Ok(Json(json!({ "webhook": endpoint_json(&endpoint) })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks",
    summary = "Change a webhook endpoint's URL, events or whether it is enabled",
    params(("id" = i64, Path, description = "The webhook endpoint.")),
    request_body = UpdateEndpoint,
    security(("token" = ["webhooks:write"])),
    responses((status = 200, description = "The endpoint.", body = schema::One)))]
pub async fn update(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<UpdateEndpoint>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    let endpoint = webhooks::update(
        &state.store,
        &caller.user,
        id,
        EndpointChange {
            url: body.url,
            events: body.events,
            enabled: body.enabled,
        },
        state.settings.webhooks_allow_private_hosts,
    )
    .await?;
    Ok(Json(json!({ "webhook": endpoint_json(&endpoint) })))
}

#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks",
    summary = "Delete a webhook endpoint",
    params(("id" = i64, Path, description = "The webhook endpoint.")),
    security(("token" = ["webhooks:write"])),
    responses((status = 200, description = "The id of the endpoint deleted.", body = schema::Deleted)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    webhooks::delete(&state.store, &caller.user, id).await?;
    Ok(Json(json!({ "webhook": id })))
}

#[utoipa::path(post, path = "/webhooks/{id}/rotate-secret", tag = "webhooks",
    summary = "A new signing secret; the previous one stays valid for a while",
    params(("id" = i64, Path, description = "The webhook endpoint.")),
    security(("token" = ["webhooks:write"])),
    responses((status = 200, description = "The endpoint with its new signing secret (shown this once).", body = schema::WithSecret)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    let (endpoint, secret) = webhooks::rotate_secret(
        &state.store,
        &state.vault,
        &caller.user,
        id,
        credence_store::now(),
    )
    .await?;
    Ok(Json(with_secret(&endpoint, &secret)))
}

/// The most deliveries one page of the log shows.
const DELIVERIES_LIMIT: i64 = 100;

#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks",
    summary = "An endpoint's delivery log, newest first",
    params(("id" = i64, Path, description = "The webhook endpoint."), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "How many, 1 to 100.")),
    security(("token" = ["webhooks:read"])),
    responses((status = 200, description = "The deliveries.", body = schema::Deliveries)))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::WebhooksRead)?;
    let limit = match query.get("limit") {
        None => DELIVERIES_LIMIT,
        Some(raw) => match raw.parse::<i64>() {
            Ok(limit) if (1..=DELIVERIES_LIMIT).contains(&limit) => limit,
            _ => {
                return Err(ApiError::invalid(
                    "limit",
                    format!(
                        "limit {:?} must be a number from 1 to {DELIVERIES_LIMIT}",
                        raw.chars().take(20).collect::<String>()
                    ),
                ))
            }
        },
    };
    let found = webhooks::deliveries(&state.store, &caller.user, id, limit).await?;
    Ok(Json(
        json!({ "deliveries": found.iter().map(delivery_json).collect::<Vec<_>>() }),
    ))
}

#[utoipa::path(get, path = "/webhooks/{id}/deliveries/{delivery}", tag = "webhooks",
    summary = "One delivery",
    params(("id" = i64, Path, description = "The webhook endpoint."), ("delivery" = i64, Path, description = "The delivery.")),
    security(("token" = ["webhooks:read"])),
    responses((status = 200, description = "The delivery.", body = schema::DeliveryAnswer)))]
pub async fn delivery(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath((id, delivery)): AppPath<(i64, i64)>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::WebhooksRead)?;
    let found = webhooks::delivery(&state.store, &caller.user, id, delivery).await?;
    Ok(Json(json!({ "delivery": delivery_json(&found) })))
}

#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{delivery}/replay", tag = "webhooks",
    summary = "Send a delivery's message again, as a new delivery",
    params(("id" = i64, Path, description = "The webhook endpoint."), ("delivery" = i64, Path, description = "The delivery.")),
    security(("token" = ["webhooks:write"])),
    responses((status = 202, description = "The new delivery, queued.", body = schema::DeliveryAnswer)))]
pub async fn replay(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath((id, delivery)): AppPath<(i64, i64)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    let replayed = webhooks::replay(&state.store, &caller.user, id, delivery).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "delivery": delivery_json(&replayed) })),
    ))
}

/// `GET /webhooks/{id}/deliveries/{delivery}/attempts`: every attempt of one
/// delivery, oldest first: when, the endpoint's status or why none counted
/// (never the URL nor a secret), and how long it took.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries/{delivery}/attempts", tag = "webhooks",
    summary = "Every attempt of one delivery, oldest first",
    params(
        ("id" = i64, Path, description = "The endpoint."),
        ("delivery" = i64, Path, description = "The delivery."),
    ),
    security(("token" = ["webhooks:read"])),
    responses((status = 200, description = "The attempts.", body = schema::Attempts)))]
pub async fn attempts(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath((id, delivery)): AppPath<(i64, i64)>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::WebhooksRead)?;
    let found = webhooks::attempts(&state.store, &caller.user, id, delivery).await?;
    let attempts: Vec<Value> = found
        .iter()
        .enumerate()
        .map(|(index, attempt)| {
            json!({
                "number": index + 1,
                "attemptedAt": attempt.attempted_at,
                "status": attempt.status,
                "error": attempt.error,
                "latencyMs": attempt.latency_ms,
            })
        })
        .collect();
    Ok(Json(
        json!({ "deliveryId": delivery, "webhookId": id, "attempts": attempts }),
    ))
}

/// The answers' shapes, for the OpenAPI document (built above with `json!`).
#[allow(dead_code)]
pub(crate) mod schema {
    use chrono::{DateTime, Utc};
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Webhook {
        id: i64,
        organization_id: i64,
        /// Null for an organization's endpoint.
        #[schema(required = true)]
        team_id: Option<i64>,
        url: String,
        events: Vec<String>,
        enabled: bool,
        created: DateTime<Utc>,
        updated: DateTime<Utc>,
        #[schema(required = true)]
        previous_secret_valid_until: Option<DateTime<Utc>>,
        #[schema(required = true)]
        failing_since: Option<DateTime<Utc>>,
        #[schema(required = true)]
        disabled_at: Option<DateTime<Utc>>,
        #[schema(required = true)]
        disabled_reason: Option<String>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct WebhookWithSecret {
        id: i64,
        organization_id: i64,
        #[schema(required = true)]
        team_id: Option<i64>,
        url: String,
        events: Vec<String>,
        enabled: bool,
        created: DateTime<Utc>,
        updated: DateTime<Utc>,
        /// The `whsec_` signing secret: only in this answer.
        secret: String,
    }

    #[derive(ToSchema)]
    pub struct Webhooks {
        webhooks: Vec<Webhook>,
    }

    #[derive(ToSchema)]
    #[schema(as = WebhookAnswer)]
    pub struct One {
        webhook: Webhook,
    }

    #[derive(ToSchema)]
    #[schema(as = WebhookCreated)]
    pub struct WithSecret {
        webhook: WebhookWithSecret,
    }

    #[derive(ToSchema)]
    #[schema(as = WebhookDeleted)]
    pub struct Deleted {
        webhook: i64,
    }

    #[derive(ToSchema)]
    #[schema(as = WebhookDelivery, rename_all = "camelCase")]
    pub struct Delivery {
        id: i64,
        webhook_id: i64,
        message_id: String,
        event: String,
        #[schema(pattern = "^(delivered|failed|retrying|pending)$")]
        state: String,
        attempts: i64,
        created: DateTime<Utc>,
        #[schema(required = true)]
        last_attempt_at: Option<DateTime<Utc>>,
        #[schema(required = true)]
        next_attempt_at: Option<DateTime<Utc>>,
        /// The endpoint's last HTTP status.
        #[schema(required = true)]
        status: Option<i32>,
        #[schema(required = true)]
        latency_ms: Option<i64>,
        /// The start of the endpoint's last answer (≤ 1 KiB, secrets blanked).
        #[schema(required = true)]
        response: Option<String>,
        #[schema(required = true)]
        error: Option<String>,
        #[schema(required = true)]
        delivered_at: Option<DateTime<Utc>>,
        #[schema(required = true)]
        failed_at: Option<DateTime<Utc>>,
        #[schema(required = true)]
        replay_of: Option<i64>,
        /// The message as sent.
        payload: serde_json::Value,
    }

    #[derive(ToSchema)]
    pub struct Deliveries {
        deliveries: Vec<Delivery>,
    }

    #[derive(ToSchema)]
    pub struct DeliveryAnswer {
        delivery: Delivery,
    }

    #[derive(ToSchema)]
    #[schema(as = WebhookDeliveryAttempt, rename_all = "camelCase")]
    pub struct Attempt {
        /// 1 for the first.
        number: i64,
        attempted_at: DateTime<Utc>,
        /// The endpoint's HTTP status, when it answered.
        #[schema(required = true)]
        status: Option<i32>,
        /// Why the attempt did not count (never the URL nor a secret).
        #[schema(required = true)]
        error: Option<String>,
        latency_ms: i64,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Attempts {
        delivery_id: i64,
        webhook_id: i64,
        attempts: Vec<Attempt>,
    }
}

//! The usage log: every proxied call that passed the access check is recorded
//! (connection, credential, consumer, caller, method, path template, status,
//! upstream status, latency, time). The proxy hands a record to [`UsageLog`]
//! once the answer's head is known and goes on streaming; one writer task
//! stores records in batches. When the server stops, the router (and with it
//! every sender) is dropped once the last request is done, the writer drains
//! what is left and ends, and `credence` waits for it ([`UsageWriter::finish`])
//! before closing the store: a graceful shutdown loses nothing.
//!
//! Also the two read endpoints: the connection's team (`GET /api/v2/connections/{id}/usage`)
//! and the credential's recipient or sending team
//! (`GET /api/v2/credential-requests/credentials/{id}/usage`); the reads
//! themselves are `credence_service::usage`, which the web pages share.

use axum::extract::State;
use axum::Json;
use credence_domain::{CredentialId, Scope};
use credence_http::error::ApiError;
use credence_http::extract::{ApiCaller, AppPath};
use credence_http::AppState;
use credence_service::usage::{self, READ_LIMIT};
use credence_store::{NewUsage, Store, Usage};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// How many records the writer stores in one transaction at most.
const BATCH: usize = 256;
/// How many records may wait for the writer; past that a call waits for room
/// (the database is behind), rather than a record being dropped.
const QUEUE: usize = 10_000;

/// Where the proxy hands its records. Cheap to clone.
#[derive(Clone)]
pub struct UsageLog {
    sender: mpsc::Sender<NewUsage>,
}

/// The writer task; [`UsageWriter::finish`] waits until every record handed
/// to a [`UsageLog`] (all of them dropped) is stored.
pub struct UsageWriter(tokio::task::JoinHandle<()>);

impl UsageWriter {
    pub async fn finish(self) {
        if let Err(error) = self.0.await {
            tracing::error!(error = %error, "the usage writer stopped");
        }
    }
}

/// Starts the writer on `store`.
pub fn start(store: Store) -> (UsageLog, UsageWriter) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    let writer = tokio::spawn(write(store, receiver));
    (UsageLog { sender }, UsageWriter(writer))
}

impl UsageLog {
    /// Hands `usage` to the writer.
    pub async fn record(&self, usage: NewUsage) {
        if self.sender.send(usage).await.is_err() {
            // Only after the writer ended, which it does once every sender is gone.
            tracing::error!("a usage record came after the usage writer ended");
        }
    }
}

async fn write(store: Store, mut receiver: mpsc::Receiver<NewUsage>) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        write_batch(&store, &batch).await;
        batch.clear();
    }
}

/// Stores `batch` in one transaction, trying a few times over a database
/// outage; what still fails is logged with its count (never its content).
async fn write_batch(store: &Store, batch: &[NewUsage]) {
    let mut wait = std::time::Duration::from_millis(100);
    for attempt in 1..=5 {
        let written: Result<(), credence_store::Error> = async {
            let mut tx = store.begin().await?;
            tx.insert_usages(batch).await?;
            tx.commit().await
        }
        .await;
        match written {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(error = %error, attempt, records = batch.len(), "could not store usage records");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
    tracing::error!(
        records = batch.len(),
        "usage records lost: the database refused them five times"
    );
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "id": usage.id,
        "occurredAt": usage.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "connectionId": usage.connection_id,
        "credentialId": usage.credential_id,
        "teamId": usage.team_id,
        "consumer": usage.consumer,
        "userId": usage.actor_user_id,
        "caller": usage.actor_label,
        "method": usage.method,
        "pathTemplate": usage.path_template,
        "status": usage.status,
        "upstreamStatus": usage.upstream_status,
        "latencyMs": usage.latency_ms,
    })
}

fn list_json(entries: &[Usage]) -> Json<Value> {
    Json(json!({
        "usage": entries.iter().map(usage_json).collect::<Vec<_>>(),
        "pg": { "sortBy": "occurredAt", "sortDir": "desc", "offset": 0, "limit": READ_LIMIT },
    }))
}

/// `GET /api/v2/connections/{id}/usage`: the connection's team (and the
/// organization's owners and admins), with `connections:read`.
#[utoipa::path(get, path = "/api/v2/connections/{id}/usage", tag = "broker",
    summary = "What was done with a connection through the broker, newest first",
    params(("id" = i64, Path, description = "The connection.")),
    security(("token" = ["connections:read"])),
    responses((status = 200, description = "The usage log.", body = UsageList)))]
pub async fn of_connection(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::ConnectionsRead)?;
    let entries = usage::of_connection(&mut state.store.db().await?, &caller.user, id).await?;
    Ok(list_json(&entries))
}

/// `GET /api/v2/credential-requests/credentials/{id}/usage`: what was done
/// with a requested credential's connections — for its recipient above all,
/// and the sending team, with `credential-requests:read`. It stays readable
/// after the credential was revoked and its connection destroyed.
#[utoipa::path(get, path = "/api/v2/credential-requests/credentials/{id}/usage", tag = "broker",
    summary = "What was done with a requested credential's connections (readable after revocation)",
    params(("id" = String, Path, format = Uuid, description = "The credential.")),
    security(("token" = ["credential-requests:read"])),
    responses((status = 200, description = "The usage log.", body = UsageList)))]
pub async fn of_credential(
    State(state): State<AppState>,
    caller: ApiCaller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::CredentialRequestsRead)?;
    let id = CredentialId::parse("credentialId", &id)?;
    let entries = usage::of_credential(&mut state.store.db().await?, &caller.user, id).await?;
    Ok(list_json(&entries))
}

/// One call through the broker, for the OpenAPI document (built by
/// `usage_json`).
#[derive(utoipa::ToSchema)]
#[schema(as = UsageEntry, rename_all = "camelCase")]
#[allow(dead_code)]
pub struct UsageEntry {
    id: i64,
    occurred_at: chrono::DateTime<chrono::Utc>,
    connection_id: i64,
    #[schema(required = true)]
    credential_id: Option<String>,
    team_id: i64,
    #[schema(required = true)]
    consumer: Option<String>,
    #[schema(required = true)]
    user_id: Option<i64>,
    caller: String,
    method: String,
    /// The operation's path template, never the raw path.
    #[schema(required = true)]
    path_template: Option<String>,
    /// What the broker answered.
    status: i64,
    /// What the app answered, if it was called.
    #[schema(required = true)]
    upstream_status: Option<i64>,
    latency_ms: i64,
}

/// The usage log's answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UsageList {
    usage: Vec<UsageEntry>,
    pg: credence_http::api::doc::Pg,
}

//! Credential requests, their requested credentials and the connections made
//! from them. State changes are guarded in SQL (`… WHERE state IN (…)`), so two
//! concurrent actions on one credential cannot both win; the request's cached
//! `status` is recomputed in the same transaction.

use crate::seek::{SeekKey, SortValue};
use crate::{now, Bind, Conn, Db, Error, Result};
use chrono::{DateTime, Utc};
use credence_domain::{
    derive_status, CredentialAction, CredentialId, CredentialState, OrganizationId, RequestId,
    RequestStatus, TeamId, UserId,
};
use serde::Deserialize;
use sqlx::FromRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRequest {
    pub id: RequestId,
    pub organization_id: OrganizationId,
    pub team_id: TeamId,
    pub requester_id: UserId,
    pub name: String,
    pub description: Option<String>,
    /// `internal` or `external`.
    pub recipient_kind: String,
    pub recipient_user_id: Option<UserId>,
    pub recipient_name: String,
    pub recipient_email: String,
    pub client: Option<String>,
    pub project: Option<String>,
    pub owner_id: Option<UserId>,
    pub status: RequestStatus,
    pub terms_accepted_at: DateTime<Utc>,
    pub opened_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Reminders sent so far (SPEC §9).
    pub nudge_count: i64,
    pub last_nudge_at: Option<DateTime<Utc>>,
    /// When the next reminder is due; `None` when none is (the maximum was
    /// reached, or nothing is pending).
    pub next_nudge_at: Option<DateTime<Utc>>,
    /// Not authorized by then, the request is in breach of its SLA.
    pub sla_due_at: Option<DateTime<Utc>>,
    /// When the owner was told of the breach (once).
    pub sla_notified_at: Option<DateTime<Utc>>,
    /// When it last became authorized; `None` while it is not.
    pub authorized_at: Option<DateTime<Utc>>,
}

/// A row as both backends read it: by column name from sqlx, or by
/// position from SQLite's one-row JSON (`one_row`).
#[derive(FromRow, Deserialize)]
struct RequestRow {
    id: String,
    organization_id: i64,
    team_id: i64,
    requester_id: i64,
    name: String,
    description: Option<String>,
    recipient_kind: String,
    recipient_user_id: Option<i64>,
    recipient_name: String,
    recipient_email: String,
    client: Option<String>,
    project: Option<String>,
    owner_id: Option<i64>,
    status: String,
    #[serde(deserialize_with = "crate::one_row::time")]
    terms_accepted_at: DateTime<Utc>,
    #[serde(deserialize_with = "crate::one_row::optional_time")]
    opened_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "crate::one_row::optional_time")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "crate::one_row::time")]
    created_at: DateTime<Utc>,
    #[serde(deserialize_with = "crate::one_row::time")]
    updated_at: DateTime<Utc>,
    nudge_count: i64,
    #[serde(deserialize_with = "crate::one_row::optional_time")]
    last_nudge_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "crate::one_row::optional_time")]
    next_nudge_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "crate::one_row::optional_time")]
    sla_due_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "crate::one_row::optional_time")]
    sla_notified_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "crate::one_row::optional_time")]
    authorized_at: Option<DateTime<Utc>>,
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::Corrupt(format!("{what} {value:?}"))
}

impl TryFrom<RequestRow> for CredentialRequest {
    type Error = Error;

    fn try_from(row: RequestRow) -> Result<Self> {
        Ok(CredentialRequest {
            id: row.id.parse().map_err(|_| corrupt("request id", &row.id))?,
            organization_id: OrganizationId(row.organization_id),
            team_id: TeamId(row.team_id),
            requester_id: UserId(row.requester_id),
            name: row.name,
            description: row.description,
            recipient_kind: row.recipient_kind,
            recipient_user_id: row.recipient_user_id.map(UserId),
            recipient_name: row.recipient_name,
            recipient_email: row.recipient_email,
            client: row.client,
            project: row.project,
            owner_id: row.owner_id.map(UserId),
            status: RequestStatus::parse("status", &row.status)
                .map_err(|_| corrupt("request status", &row.status))?,
            terms_accepted_at: row.terms_accepted_at,
            opened_at: row.opened_at,
            expires_at: row.expires_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            nudge_count: row.nudge_count,
            last_nudge_at: row.last_nudge_at,
            next_nudge_at: row.next_nudge_at,
            sla_due_at: row.sla_due_at,
            sla_notified_at: row.sla_notified_at,
            authorized_at: row.authorized_at,
        })
    }
}

const REQUEST_COLUMNS: &str = "id, organization_id, team_id, requester_id, name, description, recipient_kind, \
    recipient_user_id, recipient_name, recipient_email, client, project, owner_id, status, terms_accepted_at, \
    opened_at, expires_at, created_at, updated_at, nudge_count, last_nudge_at, next_nudge_at, sla_due_at, \
    sla_notified_at, authorized_at";

/// One requested credential (one app of a request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedCredential {
    pub id: CredentialId,
    pub request_id: RequestId,
    pub position: i64,
    pub app_key: String,
    pub app_version: i64,
    /// JSON array of module keys, or `["*"]`.
    pub modules: String,
    /// JSON array of the scopes the modules need.
    pub scopes: String,
    pub note: Option<String>,
    pub connection_name: String,
    pub state: CredentialState,
    pub decline_reason: Option<String>,
    pub invalid_reason: Option<String>,
    pub connection_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When it was revoked, while it is `revoked` (NULL before migration 0017).
    pub revoked_at: Option<DateTime<Utc>>,
    /// Why the sending team revoked it (a project closed), while it is `revoked`.
    pub revoked_note: Option<String>,
}

/// A row as both backends read it: by column name from sqlx, or by
/// position from SQLite's one-row JSON (`one_row`).
#[derive(FromRow, Deserialize)]
struct CredentialRow {
    id: String,
    request_id: String,
    position: i64,
    app_key: String,
    app_version: i64,
    modules: String,
    scopes: String,
    note: Option<String>,
    connection_name: String,
    state: String,
    decline_reason: Option<String>,
    invalid_reason: Option<String>,
    connection_id: Option<i64>,
    #[serde(deserialize_with = "crate::one_row::time")]
    created_at: DateTime<Utc>,
    #[serde(deserialize_with = "crate::one_row::time")]
    updated_at: DateTime<Utc>,
    #[serde(deserialize_with = "crate::one_row::optional_time")]
    revoked_at: Option<DateTime<Utc>>,
    revoked_note: Option<String>,
}

impl TryFrom<CredentialRow> for RequestedCredential {
    type Error = Error;

    fn try_from(row: CredentialRow) -> Result<Self> {
        Ok(RequestedCredential {
            id: row
                .id
                .parse()
                .map_err(|_| corrupt("credential id", &row.id))?,
            request_id: row
                .request_id
                .parse()
                .map_err(|_| corrupt("request id", &row.request_id))?,
            position: row.position,
            app_key: row.app_key,
            app_version: row.app_version,
            modules: row.modules,
            scopes: row.scopes,
            note: row.note,
            connection_name: row.connection_name,
            state: CredentialState::parse("state", &row.state)
                .map_err(|_| corrupt("credential state", &row.state))?,
            decline_reason: row.decline_reason,
            invalid_reason: row.invalid_reason,
            connection_id: row.connection_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
            revoked_at: row.revoked_at,
            revoked_note: row.revoked_note,
        })
    }
}

const CREDENTIAL_COLUMNS: &str =
    "id, request_id, position, app_key, app_version, modules, scopes, note, \
    connection_name, state, decline_reason, invalid_reason, connection_id, created_at, updated_at, \
    revoked_at, revoked_note";

/// A request to store, with its credentials.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub id: RequestId,
    pub organization_id: OrganizationId,
    pub team_id: TeamId,
    pub requester_id: UserId,
    pub name: String,
    pub description: Option<String>,
    pub recipient_kind: &'static str,
    pub recipient_user_id: Option<UserId>,
    pub recipient_name: String,
    pub recipient_email: String,
    pub link_hash: String,
    pub client: Option<String>,
    pub project: Option<String>,
    pub owner_id: Option<UserId>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When it is created (`crate::now()`): the reminder schedule and the SLA
    /// deadline count from it.
    pub created_at: DateTime<Utc>,
    /// The first reminder (from the team's policy); `None`: no reminders.
    pub next_nudge_at: Option<DateTime<Utc>>,
    /// The SLA deadline (from the team's policy).
    pub sla_due_at: Option<DateTime<Utc>>,
    pub credentials: Vec<NewCredential>,
}

#[derive(Debug, Clone)]
pub struct NewCredential {
    pub id: CredentialId,
    pub app_key: String,
    pub app_version: i64,
    pub modules: String,
    pub scopes: String,
    pub note: Option<String>,
    pub connection_name: String,
}

/// Whose requests a list may show. Every list names one, and there is no
/// default: a list is either some teams' sent requests or one user's received
/// ones, never "all".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestScope {
    /// The requests sent from `teams` (the teams the caller may see as
    /// sender); an empty set selects nothing. `recipient` (Make's
    /// `makeProviderId`) narrows them to the requests asked of that user.
    Sent {
        teams: Vec<TeamId>,
        recipient: Option<UserId>,
    },
    /// The requests `recipient` received.
    Received { recipient: UserId },
}

/// Which requests a list shows: the scope, then filters that only narrow it.
#[derive(Debug, Clone)]
pub struct RequestFilter {
    pub scope: RequestScope,
    pub requester: Option<UserId>,
    pub status: Option<RequestStatus>,
    pub name_contains: Option<String>,
    /// Tracking (SPEC §9): exact client, project and owner.
    pub client: Option<String>,
    pub project: Option<String>,
    pub owner: Option<UserId>,
    /// A tracking view, narrowing further.
    pub view: Option<TrackingView>,
    /// One of `created_at`, `name`, `status`.
    pub sort_by: &'static str,
    pub descending: bool,
    pub offset: i64,
    pub limit: i64,
}

impl RequestFilter {
    /// Every request of `scope`, newest first, 50 to a page.
    pub fn within(scope: RequestScope) -> RequestFilter {
        RequestFilter {
            scope,
            requester: None,
            status: None,
            name_contains: None,
            client: None,
            project: None,
            owner: None,
            view: None,
            sort_by: "created_at",
            descending: true,
            offset: 0,
            limit: 50,
        }
    }

    /// The clause of the scope, with its binds appended to `binds`.
    fn scope_clause(&self, binds: &mut Vec<Bind>) -> Vec<String> {
        let mut clauses = Vec::new();
        match &self.scope {
            RequestScope::Sent { teams, recipient } => {
                if teams.is_empty() {
                    clauses.push("1 = 0".to_string());
                } else {
                    let mut marks = Vec::new();
                    for team in teams {
                        binds.push(Bind::Int(team.0));
                        marks.push(format!("${}", binds.len()));
                    }
                    clauses.push(format!("team_id IN ({})", marks.join(", ")));
                }
                if let Some(recipient) = recipient {
                    binds.push(Bind::Int(recipient.0));
                    clauses.push(format!("recipient_user_id = ${}", binds.len()));
                }
            }
            RequestScope::Received { recipient } => {
                binds.push(Bind::Int(recipient.0));
                clauses.push(format!("recipient_user_id = ${}", binds.len()));
            }
        }
        clauses
    }
}

/// The tracking views of the Sent list (SPEC §9), each at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingView {
    /// Something is still awaited from the recipient (`pending`, `incomplete`).
    Active,
    /// A reminder is due at the time.
    DueForNudge(DateTime<Utc>),
    /// Past the SLA deadline at the time and not authorized.
    SlaBreach(DateTime<Utc>),
    /// Authorized (and still so) since the time.
    AuthorizedSince(DateTime<Utc>),
}

impl RequestFilter {
    /// The whole `WHERE` clause: the scope first, then the narrowing filters.
    pub(crate) fn where_clause(&self, binds: &mut Vec<Bind>) -> String {
        // No stored text holds a NUL (PostgreSQL's text cannot even be given
        // one): a text filter with one matches nothing, on both databases.
        let texts = [&self.name_contains, &self.client, &self.project];
        if texts
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
        {
            return "WHERE 1 = 0".to_string();
        }
        let mut clauses = self.scope_clause(binds);
        if let Some(requester) = self.requester {
            binds.push(Bind::Int(requester.0));
            clauses.push(format!("requester_id = ${}", binds.len()));
        }
        if let Some(status) = self.status {
            binds.push(Bind::Text(status.as_str().to_string()));
            clauses.push(format!("status = ${}", binds.len()));
        }
        if let Some(name) = &self.name_contains {
            let escaped = name
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            binds.push(Bind::Text(format!("%{}%", escaped.to_lowercase())));
            clauses.push(format!("lower(name) LIKE ${} ESCAPE '\\'", binds.len()));
        }
        if let Some(client) = &self.client {
            binds.push(Bind::Text(client.clone()));
            clauses.push(format!("client = ${}", binds.len()));
        }
        if let Some(project) = &self.project {
            binds.push(Bind::Text(project.clone()));
            clauses.push(format!("project = ${}", binds.len()));
        }
        if let Some(owner) = self.owner {
            binds.push(Bind::Int(owner.0));
            clauses.push(format!("owner_id = ${}", binds.len()));
        }
        match self.view {
            None => {}
            Some(TrackingView::Active) => {
                clauses.push("status IN ('pending', 'incomplete')".to_string())
            }
            Some(TrackingView::DueForNudge(at)) => {
                binds.push(Bind::Time(at));
                clauses.push(format!(
                    "next_nudge_at IS NOT NULL AND next_nudge_at <= ${}",
                    binds.len()
                ));
            }
            Some(TrackingView::SlaBreach(at)) => {
                binds.push(Bind::Time(at));
                clauses.push(format!(
                    "status <> 'authorized' AND sla_due_at IS NOT NULL AND sla_due_at <= ${}",
                    binds.len()
                ));
            }
            Some(TrackingView::AuthorizedSince(at)) => {
                binds.push(Bind::Time(at));
                clauses.push(format!(
                    "status = 'authorized' AND authorized_at >= ${}",
                    binds.len()
                ));
            }
        }
        format!("WHERE {}", clauses.join(" AND "))
    }
}

/// A credential change to apply, guarded by the action's accepted states.
#[derive(Debug, Clone, Default)]
pub struct CredentialChange {
    pub decline_reason: Option<String>,
    pub invalid_reason: Option<String>,
    /// `Some(Some(id))` sets the connection, `Some(None)` clears it.
    pub connection_id: Option<Option<i64>>,
    /// Why the credential is revoked, kept with it (a project closed).
    pub revoked_note: Option<String>,
}

impl Db {
    /// Stores a request and its credentials (call inside a transaction), and
    /// answers them as stored (`RETURNING`: no second read).
    pub async fn insert_request(
        &mut self,
        new: &NewRequest,
    ) -> Result<(CredentialRequest, Vec<RequestedCredential>)> {
        let at = new.created_at;
        let status = derive_status(
            &vec![CredentialState::Pending; new.credentials.len()],
            false,
        );
        let sql = format!("INSERT INTO credential_requests (id, organization_id, team_id, requester_id, name, description, \
                   recipient_kind, recipient_user_id, recipient_name, recipient_email, link_hash, client, project, owner_id, \
                   status, terms_accepted_at, expires_at, created_at, updated_at, next_nudge_at, sla_due_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $16, $16, $18, $19) \
                   RETURNING {REQUEST_COLUMNS}");
        let request = on_conn!(self, c => sqlx::query_as::<_, RequestRow>(&sql)
            .bind(new.id.to_string()).bind(new.organization_id.0).bind(new.team_id.0).bind(new.requester_id.0)
            .bind(&new.name).bind(&new.description).bind(new.recipient_kind).bind(new.recipient_user_id.map(|u| u.0))
            .bind(&new.recipient_name).bind(&new.recipient_email).bind(&new.link_hash).bind(&new.client)
            .bind(&new.project).bind(new.owner_id.map(|u| u.0)).bind(status.as_str()).bind(at).bind(new.expires_at)
            .bind(new.next_nudge_at).bind(new.sla_due_at)
            .fetch_one(c).await)?;
        let sql = format!("INSERT INTO requested_credentials (id, request_id, position, app_key, app_version, modules, scopes, \
                   note, connection_name, state, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $10) \
                   RETURNING {CREDENTIAL_COLUMNS}");
        let mut credentials = Vec::with_capacity(new.credentials.len());
        for (position, credential) in new.credentials.iter().enumerate() {
            let row = on_conn!(self, c => sqlx::query_as::<_, CredentialRow>(&sql)
                .bind(credential.id.to_string()).bind(new.id.to_string()).bind(position as i64)
                .bind(&credential.app_key).bind(credential.app_version).bind(&credential.modules)
                .bind(&credential.scopes).bind(&credential.note).bind(&credential.connection_name).bind(at)
                .fetch_one(c).await)?;
            credentials.push(RequestedCredential::try_from(row)?);
        }
        self.requests_changed();
        Ok((CredentialRequest::try_from(request)?, credentials))
    }

    pub async fn get_request(&mut self, id: RequestId) -> Result<Option<CredentialRequest>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM credential_requests WHERE id = $1");
        let row = on_conn!(self, c => sqlx::query_as::<_, RequestRow>(&sql).bind(id.to_string()).fetch_optional(c).await)?;
        row.map(CredentialRequest::try_from).transpose()
    }

    /// The request whose link hashes to `link_hash`.
    pub async fn find_request_by_link(
        &mut self,
        link_hash: &str,
    ) -> Result<Option<CredentialRequest>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM credential_requests WHERE link_hash = $1");
        let row = on_conn!(self, c => sqlx::query_as::<_, RequestRow>(&sql).bind(link_hash).fetch_optional(c).await)?;
        row.map(CredentialRequest::try_from).transpose()
    }

    /// Notes the first time the recipient opened the request.
    pub async fn mark_request_opened(&mut self, id: RequestId) -> Result<()> {
        let sql =
            "UPDATE credential_requests SET opened_at = $1 WHERE id = $2 AND opened_at IS NULL";
        on_conn!(self, c => sqlx::query(sql).bind(now()).bind(id.to_string()).execute(c).await.map(|r| r.rows_affected()))?;
        self.refresh_request_status(id).await
    }

    /// Binds an external request to the user who accepted it.
    pub async fn set_request_recipient(&mut self, id: RequestId, user: UserId) -> Result<()> {
        let sql =
            "UPDATE credential_requests SET recipient_user_id = $1, updated_at = $2 WHERE id = $3";
        on_conn!(self, c => sqlx::query(sql).bind(user.0).bind(now()).bind(id.to_string()).execute(c).await.map(|r| r.rows_affected()))?;
        self.requests_changed();
        Ok(())
    }

    pub async fn delete_request(&mut self, id: RequestId) -> Result<bool> {
        let sql = "DELETE FROM credential_requests WHERE id = $1";
        let deleted = on_conn!(self, c => sqlx::query(sql).bind(id.to_string()).execute(c).await.map(|r| r.rows_affected()))?;
        self.requests_changed();
        Ok(deleted == 1)
    }

    pub async fn list_credentials(
        &mut self,
        request: RequestId,
    ) -> Result<Vec<RequestedCredential>> {
        let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM requested_credentials WHERE request_id = $1 ORDER BY position");
        let rows = on_conn!(self, c => sqlx::query_as::<_, CredentialRow>(&sql).bind(request.to_string()).fetch_all(c).await)?;
        rows.into_iter()
            .map(RequestedCredential::try_from)
            .collect()
    }

    /// The credentials of several requests at once (for list pages).
    pub async fn list_credentials_of(
        &mut self,
        requests: &[RequestId],
    ) -> Result<Vec<RequestedCredential>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=requests.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM requested_credentials WHERE request_id IN ({}) ORDER BY request_id, position",
            marks.join(", ")
        );
        let binds: Vec<Bind> = requests
            .iter()
            .map(|id| Bind::Text(id.to_string()))
            .collect();
        let rows: Vec<CredentialRow> = match self.conn() {
            Conn::Sqlite(c) => {
                crate::one_row::fetch_all(
                    c,
                    CREDENTIAL_COLUMNS,
                    &sql,
                    "request_id, position",
                    &binds,
                )
                .await?
            }
            Conn::Postgres(c) => bind_all!(sqlx::query_as(&sql), &binds).fetch_all(c).await?,
        };
        rows.into_iter()
            .map(RequestedCredential::try_from)
            .collect()
    }

    /// The credentials whose connection is `connection` (one, as created today).
    pub async fn credentials_using_connection(
        &mut self,
        connection: i64,
    ) -> Result<Vec<RequestedCredential>> {
        let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM requested_credentials WHERE connection_id = $1 ORDER BY id");
        let rows = on_conn!(self, c => sqlx::query_as::<_, CredentialRow>(&sql).bind(connection).fetch_all(c).await)?;
        rows.into_iter()
            .map(RequestedCredential::try_from)
            .collect()
    }

    pub async fn get_credential(
        &mut self,
        id: CredentialId,
    ) -> Result<Option<RequestedCredential>> {
        let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM requested_credentials WHERE id = $1");
        let row = on_conn!(self, c => sqlx::query_as::<_, CredentialRow>(&sql).bind(id.to_string()).fetch_optional(c).await)?;
        row.map(RequestedCredential::try_from).transpose()
    }

    /// Reads a credential and holds it until the transaction ends, so that the
    /// connection it names cannot change before the caller acts on it (a
    /// reauthorization committing in between would otherwise leave its new
    /// connection named by nothing). PostgreSQL locks the row (`FOR UPDATE`);
    /// SQLite's `BEGIN IMMEDIATE` transaction already excludes every other
    /// writer, so a plain read suffices there.
    pub async fn lock_credential(
        &mut self,
        id: CredentialId,
    ) -> Result<Option<RequestedCredential>> {
        let sql = format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM requested_credentials WHERE id = $1{}",
            self.for_update()
        );
        let row = on_conn!(self, c => sqlx::query_as::<_, CredentialRow>(&sql).bind(id.to_string()).fetch_optional(c).await)?;
        row.map(RequestedCredential::try_from).transpose()
    }

    /// The credentials of a request, each held until the transaction ends (as
    /// [`Db::lock_credential`]): what they name is what a deletion destroys.
    pub async fn lock_credentials_of_request(
        &mut self,
        request: RequestId,
    ) -> Result<Vec<RequestedCredential>> {
        let sql = format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM requested_credentials WHERE request_id = $1 ORDER BY position{}",
            self.for_update()
        );
        let rows = on_conn!(self, c => sqlx::query_as::<_, CredentialRow>(&sql).bind(request.to_string()).fetch_all(c).await)?;
        rows.into_iter()
            .map(RequestedCredential::try_from)
            .collect()
    }

    /// The credentials that name `connection`, each held until the transaction
    /// ends (as [`Db::lock_credential`]). On PostgreSQL a row whose connection
    /// changed while this waited for it is no longer returned.
    pub async fn lock_credentials_using_connection(
        &mut self,
        connection: i64,
    ) -> Result<Vec<RequestedCredential>> {
        let sql = format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM requested_credentials WHERE connection_id = $1 ORDER BY id{}",
            self.for_update()
        );
        let rows = on_conn!(self, c => sqlx::query_as::<_, CredentialRow>(&sql).bind(connection).fetch_all(c).await)?;
        rows.into_iter()
            .map(RequestedCredential::try_from)
            .collect()
    }

    /// The row-lock suffix of a read that must hold its rows: ` FOR UPDATE` on
    /// PostgreSQL, nothing on SQLite (whose write transactions are exclusive).
    fn for_update(&self) -> &'static str {
        match self.backend() {
            crate::Backend::Postgres => " FOR UPDATE",
            crate::Backend::Sqlite => "",
        }
    }

    /// Applies `action` to a credential if its current state accepts it, with
    /// `change`; the request's status follows. A credential that moved meanwhile
    /// (or never was in an accepted state) gives `Conflict` naming its state.
    pub async fn transition_credential(
        &mut self,
        id: CredentialId,
        action: CredentialAction,
        change: &CredentialChange,
    ) -> Result<RequestedCredential> {
        let accepted = action.accepted_from();
        let mut binds = vec![
            Bind::Text(action.target().as_str().to_string()),
            Bind::Time(now()),
            Bind::Text(change.decline_reason.clone().unwrap_or_default()),
            Bind::Text(change.invalid_reason.clone().unwrap_or_default()),
            Bind::Text(id.to_string()),
            Bind::Text(change.revoked_note.clone().unwrap_or_default()),
        ];
        let connection = match change.connection_id {
            None => "connection_id".to_string(),
            Some(Some(connection)) => {
                binds.push(Bind::Int(connection));
                format!("${}", binds.len())
            }
            Some(None) => "NULL".to_string(),
        };
        let mut marks = Vec::new();
        for state in accepted {
            binds.push(Bind::Text(state.as_str().to_string()));
            marks.push(format!("${}", binds.len()));
        }
        // Reasons are kept only in the states they explain.
        let sql = format!(
            "UPDATE requested_credentials SET state = $1, updated_at = $2, \
             decline_reason = CASE WHEN $1 = 'declined' THEN NULLIF($3, '') ELSE NULL END, \
             invalid_reason = CASE WHEN $1 = 'invalid' THEN NULLIF($4, '') ELSE NULL END, \
             revoked_at = CASE WHEN $1 = 'revoked' THEN $2 ELSE NULL END, \
             revoked_note = CASE WHEN $1 = 'revoked' THEN NULLIF($6, '') ELSE NULL END, \
             connection_id = {connection} \
             WHERE id = $5 AND state IN ({})",
            marks.join(", ")
        );
        let changed = on_conn!(self, c => bind_all!(sqlx::query(&sql), &binds).execute(c).await.map(|r| r.rows_affected()))?;
        let Some(credential) = self.get_credential(id).await? else {
            return Err(Error::NotFound(format!("credential {id}")));
        };
        if changed == 0 {
            let refusal = credential.state.apply(action).err().map(|e| e.to_string());
            return Err(Error::Conflict(refusal.unwrap_or_else(|| {
                format!(
                    "credential {id} changed meanwhile; it is now {}",
                    credential.state
                )
            })));
        }
        self.refresh_request_status(credential.request_id).await?;
        Ok(credential)
    }

    /// Recomputes a request's cached status from its credentials.
    pub async fn refresh_request_status(&mut self, id: RequestId) -> Result<()> {
        // The request's row is held first: two transactions changing its
        // credentials at once then derive the status one after the other,
        // the second from what the first committed (SQLite's `BEGIN
        // IMMEDIATE` already runs them one at a time).
        let lock = format!(
            "SELECT id FROM credential_requests WHERE id = $1{}",
            self.for_update()
        );
        on_conn!(self, c => sqlx::query_scalar::<_, String>(&lock).bind(id.to_string()).fetch_optional(c).await)?;
        let states: Vec<CredentialState> = self
            .list_credentials(id)
            .await?
            .iter()
            .map(|c| c.state)
            .collect();
        let opened_sql = "SELECT opened_at IS NOT NULL FROM credential_requests WHERE id = $1";
        let opened = on_conn!(self, c => sqlx::query_scalar::<_, bool>(opened_sql).bind(id.to_string()).fetch_optional(c).await)?;
        let Some(opened) = opened else { return Ok(()) };
        let status = derive_status(&states, opened);
        // The reminders stop the moment nothing is pending (SPEC §9);
        // `authorized_at` is when it last became authorized.
        let pending = states.contains(&CredentialState::Pending);
        let sql = "UPDATE credential_requests SET status = $1, updated_at = $2, \
                   authorized_at = CASE WHEN $1 = 'authorized' THEN COALESCE(authorized_at, $2) ELSE NULL END, \
                   next_nudge_at = CASE WHEN $4 THEN next_nudge_at ELSE NULL END \
                   WHERE id = $3";
        on_conn!(self, c => sqlx::query(sql).bind(status.as_str()).bind(now()).bind(id.to_string()).bind(pending)
            .execute(c).await.map(|r| r.rows_affected()))?;
        self.requests_changed();
        Ok(())
    }

    /// Requests matching `filter`, and how many match in all. The scope's
    /// clause always comes first, so the other filters only narrow it.
    ///
    /// The count is a query of its own only when the page cannot tell it
    /// (`total_from_page`): a last page, or the only one, says it
    /// exactly. Make's own client (`@makehq/sdk`, whose `Pagination` is
    /// sortBy/sortDir/offset/limit) never reads `pg.total`, so the count is
    /// ours to keep cheap, not a contract to keep expensive. A total counted
    /// or told is kept with the page ends (`seek`), under the same rule: it
    /// is the list's own until a write to requests commits here.
    pub async fn list_requests(
        &mut self,
        filter: &RequestFilter,
    ) -> Result<(Vec<CredentialRequest>, i64)> {
        let changes = self.seeks.now();
        let query = filter.seek_query();
        let requests = self.page_of_query(filter, &query).await?;
        let keep = !self.in_transaction();
        let told = total_from_page(filter.offset, filter.limit, requests.len());
        let total = match (told, keep.then(|| self.seeks.total(&query)).flatten()) {
            (Some(total), _) | (None, Some(total)) => total,
            (None, None) => self.count_requests(filter).await?,
        };
        if keep {
            self.seeks.remember_total(query, total, changes);
        }
        Ok((requests, total))
    }

    /// The page of [`Db::list_requests`] alone, without its total. A page
    /// whose offset is where a page of the same query just ended is read
    /// after that page's last row (`seek`); a full page leaves its own end.
    pub async fn page_of_requests(
        &mut self,
        filter: &RequestFilter,
    ) -> Result<Vec<CredentialRequest>> {
        self.page_of_query(filter, &filter.seek_query()).await
    }

    /// [`Db::page_of_requests`], its list's `query` (`seek_query`) already
    /// written.
    async fn page_of_query(
        &mut self,
        filter: &RequestFilter,
        query: &str,
    ) -> Result<Vec<CredentialRequest>> {
        let changes = self.seeks.now();
        // Only a plain connection's reads are kept: a transaction may still
        // roll back what it read.
        let keep = !self.in_transaction();
        let after = match filter.offset > 0 && keep {
            true => self.seeks.find(query, filter.offset),
            false => None,
        };
        let (page_sql, binds) = match &after {
            Some(after) => filter.seek_sql(after),
            None => {
                let (page_sql, _, binds) = filter.list_sql();
                (page_sql, binds)
            }
        };
        let page = self.rows_of_page(filter, &page_sql, &binds).await?;
        if let Some(last) = page
            .last()
            .filter(|_| keep && page.len() as i64 == filter.limit)
        {
            let end = filter.offset.max(0) + filter.limit;
            self.seeks
                .remember(query.to_string(), end, filter.seek_key(last), changes);
        }
        Ok(page)
    }

    async fn rows_of_page(
        &mut self,
        filter: &RequestFilter,
        page_sql: &str,
        binds: &[Bind],
    ) -> Result<Vec<CredentialRequest>> {
        let rows: Vec<RequestRow> = match self.conn() {
            Conn::Sqlite(c) => {
                let order = filter.order_by();
                crate::one_row::fetch_all(c, REQUEST_COLUMNS, page_sql, &order, binds).await?
            }
            Conn::Postgres(c) => {
                bind_all!(sqlx::query_as(page_sql), binds)
                    .fetch_all(c)
                    .await?
            }
        };
        rows.into_iter()
            .map(CredentialRequest::try_from)
            .collect::<Result<Vec<_>>>()
    }

    /// How many requests match `filter` in all (its offset and limit aside):
    /// a `COUNT(*)` over the matching rows.
    pub async fn count_requests(&mut self, filter: &RequestFilter) -> Result<i64> {
        let (_, count_sql, binds) = filter.list_sql();
        Ok(
            on_conn!(self, c => bind_all!(sqlx::query_scalar::<_, i64>(&count_sql), &binds).fetch_one(c).await)?,
        )
    }

    /// The database's plans for the two queries of [`Db::list_requests`] (the
    /// page, then the count), one line per step, as `EXPLAIN QUERY PLAN`
    /// (SQLite) or `EXPLAIN` (PostgreSQL) prints them. On PostgreSQL, call it
    /// inside a transaction: it turns sequential scans off there (`SET
    /// LOCAL`), so that a plan that still scans the table has no index to
    /// use — a small test table would be scanned anyway.
    /// The third is the page read after a previous page's end (`seek`).
    pub async fn explain_list_requests(
        &mut self,
        filter: &RequestFilter,
    ) -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
        let (page_sql, count_sql, binds) = filter.list_sql();
        let after = SeekKey {
            sort: match filter.sort_column() {
                "created_at" => SortValue::Time(now()),
                _ => SortValue::Text("m".to_string()),
            },
            id: uuid_shaped_id(),
        };
        let (seek_sql, seek_binds) = filter.seek_sql(&after);
        let mut plans = Vec::new();
        let pages = [
            (page_sql, &binds, true),
            (count_sql, &binds, false),
            (seek_sql, &seek_binds, true),
        ];
        for (sql, binds, rows) in pages {
            let lines = match self.conn() {
                Conn::Sqlite(c) => {
                    // As the page runs there: its rows read as one.
                    let sql = match rows {
                        true => crate::one_row::sql(REQUEST_COLUMNS, &sql, &filter.order_by()),
                        false => sql,
                    };
                    let explain = format!("EXPLAIN QUERY PLAN {sql}");
                    let rows = bind_all!(sqlx::query(&explain), binds)
                        .fetch_all(&mut *c)
                        .await?;
                    use sqlx::Row;
                    rows.iter()
                        .map(|row| row.try_get::<String, _>("detail"))
                        .collect::<std::result::Result<Vec<_>, _>>()?
                }
                Conn::Postgres(c) => {
                    sqlx::query("SET LOCAL enable_seqscan = off")
                        .execute(&mut *c)
                        .await?;
                    let explain = format!("EXPLAIN {sql}");
                    bind_all!(sqlx::query_scalar::<_, String>(&explain), binds)
                        .fetch_all(&mut *c)
                        .await?
                }
            };
            plans.push(lines);
        }
        let seek = plans.pop().unwrap_or_default();
        let count = plans.pop().unwrap_or_default();
        let page = plans.pop().unwrap_or_default();
        Ok((page, count, seek))
    }
}

/// An id of the shape requests' ids have, for a plan's bind.
fn uuid_shaped_id() -> String {
    "00000000-0000-4000-8000-000000000000".to_string()
}

/// The total a page of `rows` at `offset`, `limit` to a page, tells without
/// counting: a page with fewer rows than the limit is the last one, so
/// everything before it and on it is everything — unless it is empty past
/// the start, when the offset may have overshot the end by any amount. A
/// full page (more may follow) or an empty one past offset 0 tells nothing.
fn total_from_page(offset: i64, limit: i64, rows: usize) -> Option<i64> {
    let (offset, rows) = (offset.max(0), rows as i64);
    (rows < limit.max(0) && (rows > 0 || offset == 0)).then_some(offset + rows)
}

impl RequestFilter {
    /// The column sorted on: one of the list indexes' second columns.
    fn sort_column(&self) -> &'static str {
        match self.sort_by {
            "name" => "name",
            "status" => "status",
            _ => "created_at",
        }
    }

    /// The page's order: the sort, then the id, so that equal sort values
    /// still have one order.
    fn order_by(&self) -> String {
        let order = if self.descending { "DESC" } else { "ASC" };
        format!("{} {order}, id {order}", self.sort_column())
    }

    /// What names this list apart from its offset and limit: the page ends
    /// of one are no use to another.
    fn seek_query(&self) -> String {
        let mut binds = Vec::new();
        let where_sql = self.where_clause(&mut binds);
        format!("{where_sql} ORDER BY {} {binds:?}", self.order_by())
    }

    /// The key a page ending with `last` leaves for the next.
    fn seek_key(&self, last: &CredentialRequest) -> SeekKey {
        let sort = match self.sort_column() {
            "name" => SortValue::Text(last.name.clone()),
            "status" => SortValue::Text(last.status.as_str().to_string()),
            _ => SortValue::Time(last.created_at),
        };
        SeekKey {
            sort,
            id: last.id.to_string(),
        }
    }

    /// The page after `after`, `limit` rows of it, and its binds: a range of
    /// the list index where `OFFSET` would step over the rows before it.
    fn seek_sql(&self, after: &SeekKey) -> (String, Vec<Bind>) {
        let mut binds = Vec::new();
        let where_sql = self.where_clause(&mut binds);
        let past = if self.descending { "<" } else { ">" };
        binds.extend(after.binds());
        let (sort, id) = (binds.len() - 1, binds.len());
        let page = format!(
            "SELECT {REQUEST_COLUMNS} FROM credential_requests {where_sql} AND ({}, id) {past} (${sort}, ${id}) ORDER BY {} LIMIT {}",
            self.sort_column(),
            self.order_by(),
            self.limit.max(0)
        );
        (page, binds)
    }

    /// The page's query, the count's, and the binds both take.
    fn list_sql(&self) -> (String, String, Vec<Bind>) {
        let mut binds = Vec::new();
        let where_sql = self.where_clause(&mut binds);
        let order_by = self.order_by();
        let page = format!(
            "SELECT {REQUEST_COLUMNS} FROM credential_requests {where_sql} ORDER BY {order_by} LIMIT {} OFFSET {}",
            self.limit.max(0),
            self.offset.max(0)
        );
        let count = format!("SELECT COUNT(*) FROM credential_requests {where_sql}");
        (page, count, binds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clauses(scope: RequestScope) -> (Vec<String>, usize) {
        let mut binds = Vec::new();
        let clauses = RequestFilter::within(scope).scope_clause(&mut binds);
        (clauses, binds.len())
    }

    #[test]
    fn only_a_page_that_ends_the_list_tells_the_total() {
        // The last, partial page: everything up to it and on it.
        assert_eq!(total_from_page(0, 50, 7), Some(7));
        assert_eq!(total_from_page(100, 50, 3), Some(103));
        // Nothing at all, from the start.
        assert_eq!(total_from_page(0, 50, 0), Some(0));
        // A full page (more may follow), an empty page past the end (by how
        // much?) and a page of no rows asked: counted.
        assert_eq!(total_from_page(0, 50, 50), None);
        assert_eq!(total_from_page(100, 50, 0), None);
        assert_eq!(total_from_page(0, 0, 0), None);
    }

    #[test]
    fn an_empty_set_of_sent_teams_selects_nothing_even_narrowed_to_a_recipient() {
        let (sql, binds) = clauses(RequestScope::Sent {
            teams: Vec::new(),
            recipient: Some(UserId(3)),
        });
        assert_eq!(sql, ["1 = 0", "recipient_user_id = $1"]);
        assert_eq!(binds, 1);
    }

    #[test]
    fn a_recipient_narrows_the_sent_teams_and_never_replaces_them() {
        let (sql, binds) = clauses(RequestScope::Sent {
            teams: vec![TeamId(1), TeamId(2)],
            recipient: Some(UserId(3)),
        });
        assert_eq!(sql, ["team_id IN ($1, $2)", "recipient_user_id = $3"]);
        assert_eq!(binds, 3);
    }

    #[test]
    fn received_requests_are_the_recipients_own() {
        let (sql, binds) = clauses(RequestScope::Received {
            recipient: UserId(3),
        });
        assert_eq!(sql, ["recipient_user_id = $1"]);
        assert_eq!(binds, 1);
    }
}

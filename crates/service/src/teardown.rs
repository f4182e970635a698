//! Closing a project (SPEC §9, teardown): the sending team ends every
//! credential of the project's requests at once. Each one still granted or
//! asked for becomes `revoked` ([`CredentialAction::Close`]) with the time and
//! the note "project <name> closed"; its connection and sealed secret are
//! destroyed and the change audited (`credential.revoked`), one transaction
//! per request; then, after each commit, its grant is revoked at the
//! provider where the app has a revocation endpoint
//! ([`endings::Revocations::after_commit_reporting`]). A provider that is
//! down or refuses is reported and never keeps a secret alive.
//!
//! Sender-driven, unlike the recipient's revoke (`credentials::revoke`):
//! callers are the team's senders (API) or the operator (CLI). Idempotent:
//! declined and revoked credentials are left alone, so a second teardown
//! changes nothing and says so.

use super::audit::Actor;
use super::endings::{self, Revocations};
use super::{access, notices, Context, Error, Result};
use chrono::{DateTime, Utc};
use credence_catalog::AuthKind;
use credence_domain::{
    CredentialAction, CredentialId, CredentialState, RequestId, TeamId, TrackingField,
};
use credence_provider::oauth::Revocation;
use credence_store::{Connection, CredentialChange, User};
use serde_json::{json, Value};

/// What happened at the provider to one closed credential's grant. The
/// reasons hold no token or client secret (`provider::oauth::revoke_reporting`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtProvider {
    /// It was still pending: nothing was granted, nothing to revoke.
    NothingGranted,
    /// Its app cannot revoke a grant (an API key, or an OAuth app without a
    /// revocation endpoint): the secret is destroyed here, and that is all.
    NoRevocationEndpoint,
    /// The provider revoked the grant (2xx).
    Revoked { status: u16 },
    /// The provider answered, but refused.
    Refused { status: u16, reason: String },
    /// The provider could not be asked or did not answer.
    Unreachable { reason: String },
}

impl AtProvider {
    /// The outcome's name in the API's answer and the CLI's lines.
    pub fn as_str(&self) -> &'static str {
        match self {
            AtProvider::NothingGranted => "nothing_granted",
            AtProvider::NoRevocationEndpoint => "no_revocation_endpoint",
            AtProvider::Revoked { .. } => "revoked_at_provider",
            AtProvider::Refused { .. } => "provider_refused",
            AtProvider::Unreachable { .. } => "provider_unreachable",
        }
    }

    /// Why the provider did not revoke, when it did not (fit to show).
    pub fn reason(&self) -> Option<&str> {
        match self {
            AtProvider::Refused { reason, .. } | AtProvider::Unreachable { reason } => Some(reason),
            _ => None,
        }
    }

    /// The provider's HTTP status, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            AtProvider::Revoked { status } | AtProvider::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One credential the teardown revoked.
#[derive(Debug, Clone)]
pub struct ClosedCredential {
    pub request: RequestId,
    pub credential: CredentialId,
    pub app_key: String,
    /// Its state before.
    pub from: CredentialState,
    /// The connection destroyed, if it had one.
    pub connection: Option<i64>,
    pub at_provider: AtProvider,
}

/// What a teardown did.
#[derive(Debug, Clone)]
pub struct Teardown {
    pub team: TeamId,
    pub project: String,
    /// The note every revoked credential keeps.
    pub note: String,
    pub closed_at: DateTime<Utc>,
    /// The project's requests (in that team).
    pub requests: usize,
    /// The credentials revoked now, in the order of their requests.
    pub credentials: Vec<ClosedCredential>,
    /// The credentials already ended (declined or revoked) before: left alone.
    pub already_ended: usize,
}

impl Teardown {
    /// The answer of the API (and the CLI's `--json`), never a secret.
    pub fn to_json(&self) -> Value {
        let credentials: Vec<Value> = self
            .credentials
            .iter()
            .map(|closed| {
                json!({
                    "requestId": closed.request,
                    "credentialId": closed.credential,
                    "appName": closed.app_key,
                    "previousState": closed.from,
                    "state": CredentialState::Revoked,
                    "connectionId": closed.connection,
                    "atProvider": closed.at_provider.as_str(),
                    "providerStatus": closed.at_provider.status(),
                    "reason": closed.at_provider.reason(),
                })
            })
            .collect();
        json!({
            "teamId": self.team,
            "project": self.project,
            "note": self.note,
            "closedAt": self.closed_at,
            "requests": self.requests,
            "changed": !self.credentials.is_empty(),
            "alreadyEnded": self.already_ended,
            "credentials": credentials,
            "message": self.message(),
        })
    }

    /// One sentence: what changed, or that nothing was left.
    pub fn message(&self) -> String {
        if self.credentials.is_empty() {
            format!(
                "nothing left to revoke in project {:?} of team {} ({} requests, {} credentials already ended)",
                self.project, self.team, self.requests, self.already_ended
            )
        } else {
            format!(
                "project {:?} of team {} closed: {} credentials revoked",
                self.project,
                self.team,
                self.credentials.len()
            )
        }
    }
}

/// The note a credential revoked by a teardown keeps.
pub fn note(project: &str) -> String {
    format!("project {project} closed")
}

/// Closes project `project` of team `team` for `caller`, a sender of the
/// team (its admins and members, the organization's owners and admins); a
/// team the caller may not see is a 404 that says nothing.
pub async fn close_project(
    ctx: &Context,
    caller: &User,
    team: TeamId,
    project: &str,
) -> Result<Teardown> {
    let project = TrackingField::parse("project", project)?;
    {
        let mut db = ctx.store.db().await?;
        if !access::may_see_team(&mut db, caller, team).await? {
            return Err(Error::NotFound(format!("team {team} not found")));
        }
    }
    close(ctx, &Actor::user(caller), team, project.as_str()).await
}

/// Closes project `project` of team `team` as the operator (the CLI).
pub async fn close_project_as_operator(
    ctx: &Context,
    team: TeamId,
    project: &str,
) -> Result<Teardown> {
    let project = TrackingField::parse("project", project)?;
    if ctx.store.db().await?.get_team(team).await?.is_none() {
        return Err(Error::NotFound(format!("team {team} not found")));
    }
    close(ctx, &Actor::operator(), team, project.as_str()).await
}

/// A credential closed in the transaction, waiting for its provider's word.
struct Closing {
    closed: ClosedCredential,
    /// Its connection's app can revoke at the provider.
    revocable: bool,
}

async fn close(ctx: &Context, actor: &Actor, team: TeamId, project: &str) -> Result<Teardown> {
    let note = note(project);
    let ids = ctx
        .store
        .db()
        .await?
        .requests_of_project(team, project)
        .await?;
    let mut report = Teardown {
        team,
        project: project.to_string(),
        note: note.clone(),
        closed_at: credence_store::now(),
        requests: ids.len(),
        credentials: Vec::new(),
        already_ended: 0,
    };
    for id in ids {
        let mut tx = ctx.store.begin().await?;
        // Read again inside the transaction: moved to another project or
        // deleted meanwhile, it is not this teardown's any more.
        let Some(request) = tx.get_request(id).await? else {
            continue;
        };
        if request.team_id != team || request.project.as_deref() != Some(project) {
            continue;
        }
        let mut revocations = Revocations::default();
        let mut closing = Vec::new();
        for credential in tx.lock_credentials_of_request(id).await? {
            if credential.state.apply(CredentialAction::Close).is_err() {
                report.already_ended += 1;
                continue;
            }
            let change = CredentialChange {
                connection_id: Some(None),
                revoked_note: Some(note.clone()),
                ..Default::default()
            };
            let changed = tx
                .transition_credential(credential.id, CredentialAction::Close, &change)
                .await?;
            let mut revocable = false;
            if let Some(connection) = credential.connection_id {
                revocable = tx
                    .get_connection(connection)
                    .await?
                    .is_some_and(|found| has_revocation_endpoint(ctx, &found));
                endings::destroy(ctx, &mut tx, connection, &mut revocations).await?;
            }
            notices::event(
                &mut tx,
                actor,
                &request,
                &changed,
                "credential.revoked",
                json!({
                    "connectionId": credential.connection_id,
                    "previousState": credential.state,
                    "project": project,
                    "note": note,
                    "teardown": true,
                }),
            )
            .await?;
            let at_provider = if credential.connection_id.is_none() {
                AtProvider::NothingGranted
            } else if revocable {
                // Until the provider answers (after the commit).
                AtProvider::Unreachable {
                    reason:
                        "the connection's tokens could not be opened; the provider was not asked"
                            .into(),
                }
            } else {
                AtProvider::NoRevocationEndpoint
            };
            closing.push(Closing {
                closed: ClosedCredential {
                    request: id,
                    credential: credential.id,
                    app_key: credential.app_key.clone(),
                    from: credential.state,
                    connection: credential.connection_id,
                    at_provider,
                },
                revocable,
            });
        }
        tx.commit().await?;
        let outcomes = revocations.after_commit_reporting(ctx).await;
        for Closing {
            mut closed,
            revocable,
        } in closing
        {
            if revocable {
                let outcome = outcomes
                    .iter()
                    .find(|(connection, _)| Some(*connection) == closed.connection);
                if let Some((_, outcome)) = outcome {
                    closed.at_provider = match outcome.clone() {
                        Revocation::Revoked { status } => AtProvider::Revoked { status },
                        Revocation::Refused { status, reason } => {
                            AtProvider::Refused { status, reason }
                        }
                        Revocation::NotAsked { reason } => AtProvider::Unreachable { reason },
                    };
                }
            }
            report.credentials.push(closed);
        }
    }
    tracing::info!(
        team = %team,
        requests = report.requests,
        revoked = report.credentials.len(),
        "a project was closed"
    );
    Ok(report)
}

/// Whether `connection`'s app revokes grants at its provider: an OAuth app
/// whose catalog entry names a revocation endpoint.
fn has_revocation_endpoint(ctx: &Context, connection: &Connection) -> bool {
    connection.auth_kind == AuthKind::Oauth2.as_str()
        && ctx
            .catalog
            .get(&connection.app_key)
            .and_then(|app| app.version(connection.app_version as u32))
            .and_then(|version| version.auth.oauth2())
            .is_some_and(|oauth| oauth.revocation_url.is_some())
}

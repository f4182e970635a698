//! Ending a connection, in one place: the credential's transition, the
//! connection and its secret destroyed, the audit entry and the notices, in the
//! caller's transaction; then, after the commit, its grant revoked at the
//! provider (a failure there must never keep a local secret alive). Also a
//! definitive refusal at the provider, which leaves the connection `invalid`.
//!
//! Decline, revoke and delete-remote ([`end_for_credential`]), a team deleting
//! its connection ([`credentials_of_deleted_connection`] then [`destroy`]),
//! a request deleted ([`destroy`]) and a refresh refused ([`invalidate`]) all
//! come here.

use super::audit::{self, Actor, Event};
use super::{apps, connections, notices, secrets, Context, Result};
use credence_catalog::AuthKind;
use credence_domain::{CredentialAction, CredentialId};
use credence_provider::oauth::Revocation;
use credence_provider::{self as provider, FieldValues};
use credence_store::{
    Connection, CredentialChange, CredentialRequest, Db, RequestedCredential, User,
};
use serde_json::{json, Value};

/// Grants to revoke at their providers once the transaction that destroyed
/// their connections has committed ([`Revocations::after_commit`]).
#[derive(Default)]
#[must_use = "the grants are revoked only by after_commit"]
pub struct Revocations(Vec<ToRevoke>);

/// Destroys connection `connection` (secret first) inside `tx`, keeping its
/// tokens in `revocations` when its app can revoke them at the provider.
pub async fn destroy(
    ctx: &Context,
    tx: &mut Db,
    connection: i64,
    revocations: &mut Revocations,
) -> Result<()> {
    revocations
        .0
        .extend(tokens_to_revoke(tx, ctx, connection).await);
    connections::destroy(tx, connection).await
}

/// An action that ends a credential's connection (decline, revoke,
/// delete-remote): its audit event (also the notification's kind), what the
/// entry records, and whom to tell.
pub struct Ending<'a> {
    pub action: CredentialAction,
    pub decline_reason: Option<String>,
    pub event: &'a str,
    pub details: Value,
    pub tell: &'a str,
}

/// Applies an [`Ending`] in `tx`: the guarded transition, the connection and its
/// secret destroyed, the audit entry and the notification, committed together.
/// Tokens are revoked at the provider only after the commit, so that a failure
/// there never keeps the secret alive.
pub async fn end_for_credential(
    ctx: &Context,
    mut tx: Db,
    caller: &User,
    request: &CredentialRequest,
    credential: &RequestedCredential,
    ending: Ending<'_>,
) -> Result<RequestedCredential> {
    let change = CredentialChange {
        decline_reason: ending.decline_reason,
        connection_id: Some(None),
        ..Default::default()
    };
    let changed = tx
        .transition_credential(credential.id, ending.action, &change)
        .await?;
    let mut revocations = Revocations::default();
    if let Some(connection) = credential.connection_id {
        destroy(ctx, &mut tx, connection, &mut revocations).await?;
    }
    notices::event(
        &mut tx,
        &Actor::user(caller),
        request,
        &changed,
        ending.event,
        ending.details.clone(),
    )
    .await?;
    notices::tell(
        ctx,
        &mut tx,
        ending.event,
        ending.tell,
        request,
        &changed,
        ending.details,
    )
    .await?;
    tx.commit().await?;
    revocations.after_commit(ctx).await;
    Ok(changed)
}

/// The team deleted a connection a recipient provided (inside the caller's
/// transaction, before the connection goes): each credential using it that
/// can be is moved back to `pending` as by delete-remote, audited, and the
/// recipient told. Answers the credentials moved.
pub async fn credentials_of_deleted_connection(
    ctx: &Context,
    db: &mut Db,
    actor: &Actor,
    connection: i64,
) -> Result<Vec<CredentialId>> {
    let mut moved = Vec::new();
    // Held: a reauthorization that replaced the connection meanwhile keeps
    // its new one (the lock drops a credential that no longer names it).
    for credential in db.lock_credentials_using_connection(connection).await? {
        if credential
            .state
            .apply(CredentialAction::DeleteRemote)
            .is_err()
        {
            continue;
        }
        let Some(request) = db.get_request(credential.request_id).await? else {
            continue;
        };
        let changed = db
            .transition_credential(
                credential.id,
                CredentialAction::DeleteRemote,
                &CredentialChange {
                    connection_id: Some(None),
                    ..Default::default()
                },
            )
            .await?;
        let details = json!({ "connectionId": connection, "connectionDeleted": true });
        notices::event(
            db,
            actor,
            &request,
            &changed,
            "credential.delete_remote",
            details.clone(),
        )
        .await?;
        notices::tell(
            ctx,
            db,
            "credential.delete_remote",
            &request.recipient_email,
            &request,
            &changed,
            details,
        )
        .await?;
        moved.push(changed.id);
    }
    Ok(moved)
}

/// A definitive refusal (inside the caller's transaction): the connection is
/// `invalid`, and so is every authorized credential using it (`using`, held by
/// the caller), audited, with both the requester and the recipient told.
pub async fn invalidate(
    ctx: &Context,
    tx: &mut Db,
    connection: &Connection,
    using: Vec<RequestedCredential>,
    reason: &str,
) -> Result<()> {
    tx.set_connection_state(connection.id, "invalid").await?;
    let actor = Actor::system();
    for credential in using {
        if credential
            .state
            .apply(CredentialAction::Invalidate)
            .is_err()
        {
            continue;
        }
        let Some(request) = tx.get_request(credential.request_id).await? else {
            continue;
        };
        let invalid = tx
            .transition_credential(
                credential.id,
                CredentialAction::Invalidate,
                &CredentialChange {
                    invalid_reason: Some(reason.to_string()),
                    ..Default::default()
                },
            )
            .await?;
        notices::connection_invalid(ctx, tx, &actor, &request, &invalid, connection.id, reason)
            .await?;
    }
    Ok(())
}

/// A destroyed connection's tokens, held until its transaction commits.
struct ToRevoke {
    connection: Connection,
    tokens: FieldValues,
}

/// Opens the tokens of OAuth connection `connection` (inside the transaction
/// that is about to destroy it) when its app can revoke them at the provider.
/// Never fails: a secret that does not open must not keep the connection alive.
async fn tokens_to_revoke(db: &mut Db, ctx: &Context, connection: i64) -> Option<ToRevoke> {
    let found = db.get_connection(connection).await.ok()??;
    if found.auth_kind != AuthKind::Oauth2.as_str() {
        return None;
    }
    let revocable = ctx
        .catalog
        .get(&found.app_key)
        .and_then(|app| app.version(found.app_version as u32))
        .and_then(|version| version.auth.oauth2())
        .is_some_and(|oauth| oauth.revocation_url.is_some());
    if !revocable {
        return None;
    }
    match secrets::read_connection_values(db, &ctx.vault, &found).await {
        Ok(Some(tokens)) => Some(ToRevoke {
            connection: found,
            tokens,
        }),
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(connection, error = %error, "could not open a connection's tokens to revoke them");
            None
        }
    }
}

impl Revocations {
    /// Whether the grant of connection `connection` is held for revocation
    /// (its app has a revocation endpoint and its tokens opened).
    pub fn holds(&self, connection: i64) -> bool {
        self.0.iter().any(|held| held.connection.id == connection)
    }

    /// Revokes, once the transaction that destroyed the connections has
    /// committed, the grants [`destroy`] kept. The calls run in a task of
    /// their own, which the caller waits for: a request answered 408 (or a
    /// client gone) meanwhile must not cut a revocation short.
    pub async fn after_commit(self, ctx: &Context) {
        let _ = self.after_commit_reporting(ctx).await;
    }

    /// [`Revocations::after_commit`], answering what each connection's
    /// revocation came to (a teardown reports it per credential).
    pub async fn after_commit_reporting(self, ctx: &Context) -> Vec<(i64, Revocation)> {
        let Revocations(all) = self;
        if all.is_empty() {
            return Vec::new();
        }
        let ctx = ctx.clone();
        let revoking = tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for ToRevoke { connection, tokens } in all {
                let app_key = connection.app_key.clone();
                let outcome = revoke_at_provider(&ctx, &app_key, tokens, &connection).await;
                outcomes.push((connection.id, outcome));
            }
            outcomes
        });
        match revoking.await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::error!(error = %error, "revocation at the provider stopped");
                Vec::new()
            }
        }
    }
}

/// Revokes `tokens` at the provider of `app_key` (RFC 7009, or the app's
/// bearer style), after the connection holding them was destroyed and that
/// transaction committed: a failure here must never keep a local secret
/// alive. The outcome goes to the audit log as
/// `connection.revoked_at_provider` (`ok`, `status`, `reason`), never a
/// token, and is answered. Never fails the caller.
async fn revoke_at_provider(
    ctx: &Context,
    app_key: &str,
    tokens: FieldValues,
    connection: &Connection,
) -> Revocation {
    let Some(oauth_app) = ctx.catalog.get(app_key).and_then(|app| {
        let oauth = app.version(connection.app_version as u32)?.auth.oauth2()?;
        Some((app, oauth))
    }) else {
        return Revocation::NotAsked {
            reason: format!("{app_key} is not an OAuth app of the catalog"),
        };
    };
    let (app, oauth) = oauth_app;
    let client = apps::client_for(ctx, app, tokens.own_client()).ok();
    let outcome =
        provider::oauth::revoke_reporting(&ctx.http, app, oauth, client.as_ref(), &tokens).await;
    let (ok, code, reason) = match &outcome {
        Revocation::Revoked { status } => (true, Some(*status), None),
        Revocation::Refused { status, reason } => (false, Some(*status), Some(reason.clone())),
        Revocation::NotAsked { reason } => (false, None, Some(reason.clone())),
    };
    if !ok {
        tracing::warn!(
            connection = connection.id,
            app = app_key,
            status = code,
            "could not revoke a connection's token at the provider"
        );
    }
    let recorded = async {
        let mut db = ctx.store.db().await?;
        audit::record(
            &mut db,
            &Actor::system(),
            Event {
                organization: credence_domain::OrganizationId(connection.organization_id),
                team: Some(credence_domain::TeamId(connection.team_id)),
                name: "connection.revoked_at_provider",
                target_kind: "connection",
                target_id: connection.id.to_string(),
                details: serde_json::json!({ "app": app_key, "ok": ok, "status": code, "reason": reason }),
            },
        )
        .await
    };
    if let Err(error) = recorded.await {
        tracing::warn!(connection = connection.id, error = %error, "could not audit a revocation at the provider");
    }
    outcome
}

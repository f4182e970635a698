//! Reading connections (SPEC §5, the read half of the Connections API): who may
//! see a team's connections, and testing one through its app's verify
//! operation. A connection shows the permissions it holds; nobody reads its secret.

use super::audit::{self, Actor, Event};
use super::upstream::{self, FieldValues};
use super::{Context, Error, Result};
use credence_catalog::AuthKind;
use credence_domain::{OrganizationId, TeamId};
use credence_store::{Connection, Db, User};
use serde_json::json;

/// Whether the caller may see the connections of `team`: the same people who
/// see its sent requests (its members, not guests, and the organization's
/// owners and admins).
pub async fn may_see_team(db: &mut Db, caller: &User, team: TeamId) -> Result<bool> {
    super::requests::may_see_team_requests(db, caller, team).await
}

/// The connection, if the caller may see it; otherwise a 404 that says nothing.
pub async fn visible(db: &mut Db, caller: &User, id: i64) -> Result<Connection> {
    let not_found = || Error::NotFound(format!("connection {id} not found"));
    let connection = db.get_connection(id).await?.ok_or_else(not_found)?;
    if may_see_team(db, caller, TeamId(connection.team_id)).await? {
        Ok(connection)
    } else {
        Err(not_found())
    }
}

/// Tests a connection with its app's verify operation; records the outcome in
/// the audit log and the connection's state. `Ok(true)` when the app accepts it.
pub async fn test(ctx: &Context, caller: &User, id: i64) -> Result<bool> {
    let connection = visible(&mut ctx.store.db().await?, caller, id).await?;
    let (app, version) = super::connections::app_of(ctx, &connection)?;
    if version.auth.kind() == AuthKind::Oauth2 {
        return test_oauth(ctx, caller, &connection).await;
    }
    let opened =
        super::secrets::read_connection_values(&mut ctx.store.db().await?, &ctx.vault, &connection)
            .await?;
    let Some(values) = opened.map(FieldValues) else {
        return Ok(false);
    };
    let outcome = upstream::verify(&ctx.http, app, version, &values).await;
    let mut tx = ctx.store.begin().await?;
    tx.set_connection_state(id, if outcome.is_ok() { "valid" } else { "invalid" })
        .await?;
    audit::record(&mut tx, &Actor::user(caller), Event {
        organization: OrganizationId(connection.organization_id),
        team: Some(TeamId(connection.team_id)),
        name: "connection.verified",
        target_kind: "connection",
        target_id: id.to_string(),
        details: json!({ "app": connection.app_key, "verified": outcome.is_ok(), "reason": outcome.as_ref().err() }),
    })
    .await?;
    tx.commit().await?;
    Ok(outcome.is_ok())
}

/// An OAuth connection is tested by refreshing its token (the provider's
/// answer is the test): `Ok(true)` when it issued one, `Ok(false)` on a
/// definitive refusal (the connection and its credentials are then invalid,
/// both sides told). An outage is an error to retry; nothing is recorded.
async fn test_oauth(ctx: &Context, caller: &User, connection: &Connection) -> Result<bool> {
    let outcome = super::oauth::refresh_with(ctx, connection.id, true).await?;
    let reason = match &outcome {
        super::oauth::RefreshOutcome::Refused { reason } => Some(reason.clone()),
        _ => None,
    };
    let mut tx = ctx.store.begin().await?;
    audit::record(&mut tx, &Actor::user(caller), Event {
        organization: OrganizationId(connection.organization_id),
        team: Some(TeamId(connection.team_id)),
        name: "connection.verified",
        target_kind: "connection",
        target_id: connection.id.to_string(),
        details: json!({ "app": connection.app_key, "verified": reason.is_none(), "reason": reason }),
    })
    .await?;
    tx.commit().await?;
    Ok(reason.is_none())
}

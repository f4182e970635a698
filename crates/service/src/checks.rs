//! Whether a connection still works, asked of its app — the one test used by
//! the connection test endpoint and before asking a recipient to reauthorize.
//! An OAuth 2.0 connection is tested by refreshing its token (the provider's
//! answer is the test; a refusal has made it and its credentials `invalid`,
//! both sides told); any other by the app's verify call with its values.

use super::audit::{self, Actor, Event};
use super::{access, apps, refresh, secrets, Context, Result};
use credence_catalog::AuthKind;
use credence_domain::{OrganizationId, TeamId};
use credence_provider::call;
use credence_store::{Connection, User};
use serde_json::json;

/// What the app said of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Works,
    /// Refused, with the reason (fit to show).
    Fails(String),
}

/// Asks the app whether `connection` works. A provider outage is an error to
/// retry; nothing is recorded then.
pub async fn try_connection(ctx: &Context, connection: &Connection) -> Result<Verdict> {
    let (app, version) = apps::of_connection(ctx, connection)?;
    if version.auth.kind() == AuthKind::Oauth2 {
        return Ok(match refresh::refresh_now(ctx, connection.id).await? {
            refresh::RefreshOutcome::Refused { reason } => Verdict::Fails(reason),
            _ => Verdict::Works,
        });
    }
    let opened =
        secrets::read_connection_values(&mut ctx.store.db().await?, &ctx.vault, connection).await?;
    let Some(values) = opened else {
        return Ok(Verdict::Fails(
            "the connection has no stored credentials".into(),
        ));
    };
    Ok(match call::verify(&ctx.http, app, version, &values).await {
        Ok(()) => Verdict::Works,
        Err(reason) => Verdict::Fails(reason),
    })
}

/// Tests connection `id` for `caller` (`POST /connections/{id}/test`): the
/// outcome goes to the audit log and, for a connection without OAuth, to its
/// state (an OAuth connection's state is the refresh's to write). `Ok(true)`
/// when the app accepts it.
pub async fn test(ctx: &Context, caller: &User, id: i64) -> Result<bool> {
    Ok(verify(ctx, caller, id).await? == Verdict::Works)
}

/// Like [`test`], with the app's reason when it refused (the web page shows it).
pub async fn verify(ctx: &Context, caller: &User, id: i64) -> Result<Verdict> {
    let connection = access::connection(&mut ctx.store.db().await?, caller, id).await?;
    let verdict = try_connection(ctx, &connection).await?;
    let reason = match &verdict {
        Verdict::Works => None,
        Verdict::Fails(reason) => Some(reason.as_str()),
    };
    let (_, version) = apps::of_connection(ctx, &connection)?;
    let mut tx = ctx.store.begin().await?;
    if version.auth.kind() != AuthKind::Oauth2 {
        tx.set_connection_state(id, if reason.is_none() { "valid" } else { "invalid" })
            .await?;
    }
    audit::record(&mut tx, &Actor::user(caller), Event {
        organization: OrganizationId(connection.organization_id),
        team: Some(TeamId(connection.team_id)),
        name: "connection.verified",
        target_kind: "connection",
        target_id: id.to_string(),
        details: json!({ "app": connection.app_key, "verified": reason.is_none(), "reason": reason }),
    })
    .await?;
    tx.commit().await?;
    Ok(verdict)
}

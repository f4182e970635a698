//! Keeping an OAuth 2.0 connection's access token fresh: [`refresh_if_due`]
//! (the background refresher) and [`refresh_now`] (testing a connection).
//!
//! A definitive refusal by the provider makes the connection and its
//! credentials `invalid`, both sides told ([`endings::invalidate`]); an outage
//! only delays the next attempt (backoff in `connections.refresh_after`).
//!
//! One refresh per connection runs at a time across all instances: each
//! first claims the connection's refresh lease (a guarded `UPDATE` of
//! `connections.refresh_lease_until`), waiting while another holds it, and
//! then reads what the previous one stored — with rotating refresh tokens,
//! presenting a consumed one would make the provider revoke the whole grant.
//! No database lock is held while the provider answers (on SQLite that would
//! stop every writer); the outcome is written in a short transaction that
//! holds the row and checks that the tokens are still the ones read (a
//! reauthorization in between wins; a re-wrap by `keys rotate` does not). A
//! provider outage changes nothing but the backoff and answers a conflict the
//! caller may retry after.

use super::{apps, endings, secrets, Context, Error, Result};
use credence_catalog::AuthKind;
use credence_provider::oauth::TokenError;
use credence_provider::{self as provider, FieldValues};
use credence_store::Connection;
use secrecy::{ExposeSecret, SecretString};

/// How long before its expiry an access token counts as expiring (at most;
/// see the module docs). The background refresher looks this far ahead.
pub const EXPIRY_MARGIN: chrono::Duration = chrono::Duration::minutes(2);

/// A connection not refreshed for this long is refreshed anyway.
pub const IDLE_AFTER: chrono::Duration = chrono::Duration::days(7);

/// The first wait after a provider outage; it doubles with each outage in a
/// row, up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: chrono::Duration = chrono::Duration::seconds(30);
pub const BACKOFF_MAX: chrono::Duration = chrono::Duration::hours(1);

/// The wait after `failures` outages in a row (the one just seen included).
fn backoff(failures: i64) -> chrono::Duration {
    let exponent = failures.clamp(1, 12) - 1;
    std::cmp::min(BACKOFF_FIRST * (1 << exponent), BACKOFF_MAX)
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The stored access token is not expiring (another instance may just
    /// have refreshed it): the provider was not asked.
    StillValid,
    /// The provider issued a new access token; it is sealed and stored.
    Refreshed,
    /// The provider refused for good (or the connection was invalid already):
    /// the connection and its credentials are `invalid`, both sides told.
    Refused { reason: String },
}

/// Refreshes the access token of OAuth connection `id` if it is expiring, or
/// idle for [`IDLE_AFTER`] (the background refresher). See the module docs.
pub async fn refresh_if_due(ctx: &Context, id: i64) -> Result<RefreshOutcome> {
    run(ctx, id, When::Due).await
}

/// Refreshes the access token of OAuth connection `id` even when it is not
/// expiring: the provider's answer tests the grant. See the module docs.
pub async fn refresh_now(ctx: &Context, id: i64) -> Result<RefreshOutcome> {
    run(ctx, id, When::Now).await
}

/// Whether a refresh asks the provider only when the token is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Due,
    Now,
}

/// How long a refresh may hold a connection's lease: longer than the HTTP
/// client's timeout, so a lease outlives only an instance that died.
pub const REFRESH_LEASE: chrono::Duration = chrono::Duration::seconds(60);

/// Runs a refresh in a task of its own, under the connection's lease.
async fn run(ctx: &Context, id: i64, when: When) -> Result<RefreshOutcome> {
    // In a task of its own, which the caller waits for: once the provider has
    // answered (and may have rotated the refresh token), the outcome must be
    // written even if the request that asked is answered 408 or dropped.
    let ctx = ctx.clone();
    tokio::spawn(async move { refresh_holding_lease(&ctx, id, when).await })
        .await
        .map_err(|error| Error::Internal(anyhow::anyhow!("a refresh stopped: {error}")))?
}

/// [`run`] in the caller's task.
async fn refresh_holding_lease(ctx: &Context, id: i64, when: When) -> Result<RefreshOutcome> {
    let lease_until = claim_lease(ctx, id).await?;
    let outcome = refresh_leased(ctx, id, when).await;
    // Only this refresh's own lease: if it ran out meanwhile, another refresh
    // may hold the connection now, and freeing its lease would let a third in.
    let released = async {
        ctx.store
            .db()
            .await?
            .release_refresh_lease(id, lease_until)
            .await
    };
    match released.await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                connection = id,
                "a refresh outlived its lease; another holds it now"
            )
        }
        // The lease runs out by itself.
        Err(error) => {
            tracing::warn!(connection = id, error = %error, "could not release a refresh lease")
        }
    }
    outcome
}

/// Claims the refresh lease of connection `id`, waiting (up to one lease)
/// while another refresh holds it; answers the lease's end, its token for
/// the release.
async fn claim_lease(ctx: &Context, id: i64) -> Result<chrono::DateTime<chrono::Utc>> {
    let give_up = tokio::time::Instant::now()
        + (REFRESH_LEASE + chrono::Duration::seconds(5))
            .to_std()
            .unwrap_or_default();
    loop {
        let now = credence_store::now();
        let until = now + REFRESH_LEASE;
        if ctx
            .store
            .db()
            .await?
            .claim_refresh_lease(id, now, until)
            .await?
        {
            return Ok(until);
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(Error::Conflict(format!(
                "connection {id} is being refreshed elsewhere; try again"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The refresh itself, under the lease.
async fn refresh_leased(ctx: &Context, id: i64, when: When) -> Result<RefreshOutcome> {
    let not_found = || Error::NotFound(format!("connection {id} not found"));
    let mut db = ctx.store.db().await?;
    let connection = db.get_connection(id).await?.ok_or_else(not_found)?;
    if connection.auth_kind != AuthKind::Oauth2.as_str() {
        return Err(Error::Conflict(format!(
            "connection {id} does not use OAuth 2.0; there is no token to refresh"
        )));
    }
    if connection.state == "invalid" {
        return Ok(RefreshOutcome::Refused {
            reason: format!("connection {id} is invalid; it needs a new authorization"),
        });
    }
    let (app, version) = apps::of_connection(ctx, &connection)?;
    let oauth = apps::oauth2_of(version)?;
    let secret = connection
        .secret_id
        .clone()
        .ok_or_else(|| Error::Conflict(format!("connection {id} holds no tokens")))?;
    let read = db
        .get_secret(&secret)
        .await?
        .ok_or_else(|| Error::Conflict(format!("connection {id} holds no tokens")))?;
    drop(db);
    let tokens = secrets::open_connection_values(&ctx.vault, &connection, &secret, &read.sealed)?;
    let now = ctx.clock.now();
    // The margin is at most half the token's lifetime, so a short-lived token
    // just refreshed by another instance does not count as expiring again.
    let issued = connection.refreshed_at.unwrap_or(connection.created_at);
    let expiring = tokens
        .expires_at()
        .is_some_and(|at| at <= now + std::cmp::min(EXPIRY_MARGIN, (at - issued) / 2));
    // Providers expire refresh tokens nobody used for a while.
    let idle = issued <= now - IDLE_AFTER;
    if !expiring && !idle && when == When::Due {
        return Ok(RefreshOutcome::StillValid);
    }
    // The copy put into the form is a SecretString: zeroized when dropped.
    let Some(refresh_token) = tokens
        .get("refresh_token")
        .map(|token| SecretString::from(token.to_string()))
    else {
        if expiring {
            let reason = format!(
                "{} gave no refresh token and the access token expired",
                app.label
            );
            return write_refusal(ctx, &connection, &secret, &read.sealed, reason).await;
        }
        // Nothing to refresh with, and nothing expiring: the token stands.
        return Ok(RefreshOutcome::StillValid);
    };
    let client = apps::client_for(ctx, app, tokens.own_client())?;
    // The connection's tokens (not its expiry or token type) must not come
    // back in a refusal's reason either.
    let held: Vec<&str> = tokens
        .0
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "expires_at" | "token_type"))
        .map(|(_, value)| value.expose_secret())
        .collect();
    let outcome = provider::oauth::refresh(
        &ctx.http,
        app,
        oauth,
        &client,
        &refresh_token,
        &held,
        ctx.clock.now(),
    )
    .await;
    match outcome {
        Ok(mut values) => {
            // RFC 6749 §6: without a new refresh token the old one stays good.
            if !values.contains_key("refresh_token") {
                values.insert("refresh_token".into(), refresh_token);
            }
            // Fields the response does not repeat (e.g. an id token field, the
            // connection's own client) stay as they were.
            for (name, value) in tokens.0 {
                if name != "expires_at" {
                    values.entry(name).or_insert(value);
                }
            }
            let new = FieldValues(values);
            let mut tx = ctx.store.begin().await?;
            if !unchanged(ctx, &mut tx, &connection, &secret, &read.sealed).await? {
                return Ok(RefreshOutcome::StillValid);
            }
            let sealed = secrets::seal_connection_values(
                &ctx.vault,
                connection.id,
                connection.team_id,
                &secret,
                &new,
            )?;
            tx.replace_secret(&secret, sealed.as_str()).await?;
            tx.record_refresh(id, new.expires_at()).await?;
            tx.commit().await?;
            Ok(RefreshOutcome::Refreshed)
        }
        Err(TokenError::Refused(reason)) => {
            write_refusal(ctx, &connection, &secret, &read.sealed, reason).await
        }
        Err(TokenError::Destination(reason)) => Err(Error::Conflict(reason)),
        Err(TokenError::Unavailable(reason)) => {
            let after = credence_store::now() + backoff(connection.refresh_failures + 1);
            let mut tx = ctx.store.begin().await?;
            tx.record_refresh_outage(id, after).await?;
            tx.commit().await?;
            Err(Error::Conflict(format!(
                "could not refresh connection {id}: {reason}; Credence tries again after {}",
                after.to_rfc3339()
            )))
        }
    }
}

/// Inside `tx`: holds `connection` and answers whether its secret still
/// holds what the refresh read (`sealed`): the same text, or the same tokens
/// sealed again (`keys rotate` re-wraps them under a newer key version
/// meanwhile). When not — a reauthorization stored new tokens, or the
/// connection is gone — the refresh's outcome is stale.
async fn unchanged(
    ctx: &Context,
    tx: &mut credence_store::Db,
    connection: &Connection,
    secret: &str,
    sealed: &str,
) -> Result<bool> {
    if tx.lock_connection(connection.id).await?.is_none() {
        return Ok(false);
    }
    let Some(stored) = tx.get_secret(secret).await? else {
        return Ok(false);
    };
    if stored.sealed == sealed {
        return Ok(true);
    }
    let open = |text: &str| secrets::open_connection_values(&ctx.vault, connection, secret, text);
    let (read, now) = (open(sealed)?, open(&stored.sealed)?);
    Ok(read.0.len() == now.0.len()
        && read
            .0
            .iter()
            .zip(&now.0)
            .all(|((a, x), (b, y))| a == b && x.expose_secret() == y.expose_secret()))
}

/// Writes a definitive refusal, unless the tokens changed meanwhile.
async fn write_refusal(
    ctx: &Context,
    connection: &Connection,
    secret: &str,
    sealed: &str,
    reason: String,
) -> Result<RefreshOutcome> {
    let mut tx = ctx.store.begin().await?;
    // The credentials before the connection: the order of every other writer
    // (delete-remote, reauthorization and request deletion hold a credential,
    // then destroy its connection), so that none waits on another in a circle.
    let using = tx.lock_credentials_using_connection(connection.id).await?;
    if !unchanged(ctx, &mut tx, connection, secret, sealed).await? {
        return Ok(RefreshOutcome::StillValid);
    }
    endings::invalidate(ctx, &mut tx, connection, using, &reason).await?;
    tx.commit().await?;
    Ok(RefreshOutcome::Refused { reason })
}

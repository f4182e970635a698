//! Sign-in limits and known browsers: the attempt counters every instance on
//! one database shares, and the browsers an account signed in on. Keys and
//! browser tokens arrive hashed (the caller hashes; an email typed into the
//! wrong field is never kept in the clear), counter keys under the HMAC key
//! kept here (`sign_in_key`).

use crate::{now, Db, Result};
use chrono::{DateTime, Utc};
use credence_domain::UserId;

/// One counted attempt: how many the key's current window holds now, this one
/// included, and when that window started (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountedAttempt {
    pub attempts: i64,
    pub window_start: i64,
}

impl Db {
    /// Counts an attempt for `key` at `now` (Unix seconds), in one atomic upsert
    /// so that instances and concurrent requests never lose a count: a window
    /// that started `window_seconds` or more ago is restarted at `now`.
    pub async fn count_sign_in_attempt(
        &mut self,
        key: &str,
        now: i64,
        window_seconds: i64,
    ) -> Result<CountedAttempt> {
        // Every SET expression reads the row as it was, so both see the old window.
        let sql = "INSERT INTO sign_in_counters (key, window_start, attempts) VALUES ($1, $2, 1) \
                   ON CONFLICT (key) DO UPDATE SET \
                     attempts = CASE WHEN sign_in_counters.window_start <= $3 THEN 1 ELSE sign_in_counters.attempts + 1 END, \
                     window_start = CASE WHEN sign_in_counters.window_start <= $3 THEN $2 ELSE sign_in_counters.window_start END \
                   RETURNING attempts, window_start";
        let (attempts, window_start) = on_conn!(self, c => sqlx::query_as::<_, (i64, i64)>(sql)
            .bind(key).bind(now).bind(now - window_seconds)
            .fetch_one(c).await)?;
        Ok(CountedAttempt {
            attempts,
            window_start,
        })
    }

    /// Takes back one attempt counted in the window that started at
    /// `window_start` (a right password, or one never checked); nothing when
    /// that window has been restarted since.
    pub async fn refund_sign_in_attempt(&mut self, key: &str, window_start: i64) -> Result<()> {
        let sql = "UPDATE sign_in_counters SET attempts = attempts - 1 \
                   WHERE key = $1 AND window_start = $2 AND attempts > 0";
        on_conn!(self, c => sqlx::query(sql).bind(key).bind(window_start).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Whether the browser token with this hash is known for the account with
    /// this email (compared without regard to case), and not expired.
    pub async fn is_known_browser(&mut self, token_hash: &str, email: &str) -> Result<bool> {
        let sql = "SELECT b.user_id FROM known_browsers b JOIN users u ON u.id = b.user_id \
                   WHERE b.token_hash = $1 AND lower(u.email) = lower($2) AND b.expires_at > $3";
        let found = on_conn!(self, c => sqlx::query_scalar::<_, i64>(sql)
            .bind(token_hash).bind(email).bind(now())
            .fetch_optional(c).await)?;
        Ok(found.is_some())
    }

    /// Notes that `user` signed in on the browser whose token has this hash,
    /// until `expires_at` (moved later when it was already known).
    pub async fn remember_browser(
        &mut self,
        token_hash: &str,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "INSERT INTO known_browsers (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (token_hash, user_id) DO UPDATE SET expires_at = excluded.expires_at";
        on_conn!(self, c => sqlx::query(sql).bind(token_hash).bind(user.0).bind(now()).bind(expires_at).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The key of the HMAC that names sign-in counters: the one stored, or
    /// `candidate` when there is none yet (then stored; when two instances race,
    /// both read the one that won).
    pub async fn sign_in_key(&mut self, candidate: &str) -> Result<String> {
        let select = "SELECT key FROM sign_in_key WHERE id = 1";
        if let Some(key) =
            on_conn!(self, c => sqlx::query_scalar::<_, String>(select).fetch_optional(c).await)?
        {
            return Ok(key);
        }
        let insert = "INSERT INTO sign_in_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING";
        on_conn!(self, c => sqlx::query(insert).bind(candidate).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(on_conn!(self, c => sqlx::query_scalar::<_, String>(select).fetch_one(c).await)?)
    }

    /// Forgets every browser known for `user` (its password was reset): their
    /// attempts count as an unknown browser's again.
    pub async fn forget_browsers_of_user(&mut self, user: UserId) -> Result<u64> {
        let sql = "DELETE FROM known_browsers WHERE user_id = $1";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(user.0).execute(c).await.map(|r| r.rows_affected()))?,
        )
    }

    /// Deletes counters whose window started before `oldest_window_start` (Unix
    /// seconds) and expired known browsers; returns how many rows went.
    pub async fn sweep_sign_in_limits(&mut self, oldest_window_start: i64) -> Result<u64> {
        let counters = "DELETE FROM sign_in_counters WHERE window_start < $1";
        let counters = on_conn!(self, c => sqlx::query(counters).bind(oldest_window_start).execute(c).await.map(|r| r.rows_affected()))?;
        let browsers = "DELETE FROM known_browsers WHERE expires_at <= $1";
        let browsers = on_conn!(self, c => sqlx::query(browsers).bind(now()).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(counters + browsers)
    }
}

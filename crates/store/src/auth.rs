//! Sign-in state: browser sessions, one-time setup links and API tokens. Every
//! token is stored only as a hash (the caller hashes; this crate never sees a
//! token's value).

use crate::{now, ApiToken, Db, Error, Result, User};
use chrono::{DateTime, Duration, Utc};
use credence_domain::{ApiTokenId, Scopes, UserId};
use sqlx::FromRow;

const USER_COLUMNS_OF_U: &str =
    "u.id, u.email, u.name, u.password_hash, u.language, u.timezone, u.created_at";

#[derive(FromRow)]
struct ApiTokenRow {
    id: i64,
    user_id: i64,
    name: String,
    scopes: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

/// The columns of an [`ApiTokenRow`], in a `SELECT` or `RETURNING`.
const API_TOKEN_COLUMNS: &str = "id, user_id, name, scopes, created_at, last_used_at, expires_at";

impl TryFrom<ApiTokenRow> for ApiToken {
    type Error = Error;

    fn try_from(row: ApiTokenRow) -> Result<ApiToken> {
        Ok(ApiToken {
            id: ApiTokenId(row.id),
            user_id: UserId(row.user_id),
            name: row.name,
            scopes: Scopes::parse(&row.scopes).map_err(|e| Error::Corrupt(e.to_string()))?,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
        })
    }
}

impl Db {
    pub async fn insert_session(
        &mut self,
        token_hash: &str,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";
        on_conn!(self, c => sqlx::query(sql).bind(token_hash).bind(user.0).bind(now()).bind(expires_at).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The user a live session belongs to.
    pub async fn find_session_user(&mut self, token_hash: &str) -> Result<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS_OF_U} FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2"
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, User>(&sql).bind(token_hash).bind(now()).fetch_optional(c).await)?,
        )
    }

    pub async fn delete_session(&mut self, token_hash: &str) -> Result<()> {
        let sql = "DELETE FROM sessions WHERE token_hash = $1";
        on_conn!(self, c => sqlx::query(sql).bind(token_hash).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn delete_expired_sessions(&mut self) -> Result<u64> {
        let sql = "DELETE FROM sessions WHERE expires_at <= $1";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(now()).execute(c).await.map(|r| r.rows_affected()))?,
        )
    }

    pub async fn insert_setup_link(
        &mut self,
        token_hash: &str,
        user: UserId,
        valid_for: Duration,
    ) -> Result<()> {
        let created_at = now();
        let sql = "INSERT INTO setup_links (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";
        on_conn!(self, c => sqlx::query(sql).bind(token_hash).bind(user.0).bind(created_at).bind(created_at + valid_for).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The user an unused, unexpired setup link is for.
    pub async fn find_setup_link_user(&mut self, token_hash: &str) -> Result<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS_OF_U} FROM setup_links l JOIN users u ON u.id = l.user_id \
             WHERE l.token_hash = $1 AND l.used_at IS NULL AND l.expires_at > $2"
        );
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, User>(&sql).bind(token_hash).bind(now()).fetch_optional(c).await)?,
        )
    }

    /// Marks a setup link used; only one caller can ever win this for a link.
    pub async fn consume_setup_link(&mut self, token_hash: &str) -> Result<Option<UserId>> {
        let at = now();
        let sql = "UPDATE setup_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
                   RETURNING user_id";
        let user = on_conn!(self, c => sqlx::query_scalar::<_, i64>(sql).bind(at).bind(token_hash).fetch_optional(c).await)?;
        Ok(user.map(UserId))
    }

    /// Stores a new token (its hash only); `expires_at` `None` means it never expires.
    pub async fn insert_api_token(
        &mut self,
        user: UserId,
        name: &str,
        token_hash: &str,
        scopes: &Scopes,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<ApiToken> {
        let sql = format!(
            "INSERT INTO api_tokens (user_id, name, token_hash, scopes, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {API_TOKEN_COLUMNS}"
        );
        let row = on_conn!(self, c => sqlx::query_as::<_, ApiTokenRow>(&sql)
            .bind(user.0).bind(name).bind(token_hash).bind(scopes.to_stored()).bind(now()).bind(expires_at)
            .fetch_one(c).await)?;
        row.try_into()
    }

    /// The token with this hash and its owner, expired or not (the caller says
    /// which). A read only: its use is noted in memory by the caller and
    /// written in batches ([`Db::record_api_token_uses`]), so that a busy
    /// token does not turn reads into writes.
    pub async fn find_api_token(&mut self, token_hash: &str) -> Result<Option<(ApiToken, User)>> {
        let sql = format!(
            "SELECT t.id AS token_id, t.user_id, t.name AS token_name, t.scopes, t.created_at AS token_created_at, \
                    t.last_used_at, t.expires_at, {USER_COLUMNS_OF_U} \
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1"
        );
        let found = on_conn!(self, c => sqlx::query(&sql).bind(token_hash).fetch_optional(c).await.and_then(|row| {
            row.map(|row| {
                use sqlx::Row;
                let token = ApiTokenRow {
                    id: row.try_get("token_id")?,
                    user_id: row.try_get("user_id")?,
                    name: row.try_get("token_name")?,
                    scopes: row.try_get("scopes")?,
                    created_at: row.try_get("token_created_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                    expires_at: row.try_get("expires_at")?,
                };
                Ok((token, User::from_row(&row)?))
            }).transpose()
        }))?;
        let Some((token, user)) = found else {
            return Ok(None);
        };
        Ok(Some((ApiToken::try_from(token)?, user)))
    }

    /// Writes when each of these tokens was last used, as noted in memory
    /// since the last batch; a time never moves back (another instance may
    /// have written a later one). A deleted token is skipped. Answers the rows
    /// changed.
    pub async fn record_api_token_uses(
        &mut self,
        uses: &[(ApiTokenId, DateTime<Utc>)],
    ) -> Result<u64> {
        let sql = "UPDATE api_tokens SET last_used_at = $1 \
                   WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)";
        let mut changed = 0;
        for (token, at) in uses {
            changed += on_conn!(self, c => sqlx::query(sql).bind(*at).bind(token.0).execute(c).await.map(|r| r.rows_affected()))?;
        }
        Ok(changed)
    }

    pub async fn list_api_tokens(&mut self, user: UserId) -> Result<Vec<ApiToken>> {
        let sql =
            format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY id");
        let rows = on_conn!(self, c => sqlx::query_as::<_, ApiTokenRow>(&sql).bind(user.0).fetch_all(c).await)?;
        rows.into_iter().map(ApiToken::try_from).collect()
    }

    /// Deletes one of `user`'s tokens and returns what it was; `NotFound` when
    /// they have no such token.
    pub async fn delete_api_token(&mut self, user: UserId, token: ApiTokenId) -> Result<ApiToken> {
        let sql = format!(
            "DELETE FROM api_tokens WHERE id = $1 AND user_id = $2 RETURNING {API_TOKEN_COLUMNS}"
        );
        let row = on_conn!(self, c => sqlx::query_as::<_, ApiTokenRow>(&sql).bind(token.0).bind(user.0).fetch_optional(c).await)?;
        row.ok_or_else(|| Error::NotFound(format!("api token {token}")))?
            .try_into()
    }

    /// Ends every browser session of `user` (after their password changed).
    pub async fn delete_sessions_of_user(&mut self, user: UserId) -> Result<u64> {
        let sql = "DELETE FROM sessions WHERE user_id = $1";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(user.0).execute(c).await.map(|r| r.rows_affected()))?,
        )
    }
}

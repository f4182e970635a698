//! Two-factor sign-in (migration 0016): a user's TOTP enrolment with its
//! sealed secret, the recovery codes (hashes only), the pending second step
//! of a sign-in, and the organizations that require it. The caller hashes
//! codes and tokens and seals the secret; this crate sees neither in plain.
//!
//! Every use is a guarded `UPDATE` (a later time step, an unused code, a live
//! challenge), so two requests racing with one code cannot both win it.

use crate::{now, Db, Error, Organization, Result};
use chrono::{DateTime, Utc};
use credence_domain::{OrganizationId, UserId};

/// A user's enrolment: started (`confirmed_at` unset) or in force.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TwoFactor {
    pub id: String,
    #[sqlx(try_from = "i64")]
    pub user_id: UserId,
    /// The vault's text of the TOTP secret (see `service::two_factor`).
    pub secret_sealed: String,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The RFC 6238 time step of the last code accepted.
    pub last_used_step: Option<i64>,
}

impl std::fmt::Debug for TwoFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoFactor")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("secret_sealed", &"[sealed]")
            .field("confirmed_at", &self.confirmed_at)
            .field("last_used_step", &self.last_used_step)
            .finish_non_exhaustive()
    }
}

const TWO_FACTOR_COLUMNS: &str =
    "id, user_id, secret_sealed, created_at, confirmed_at, last_used_step";

/// A sign-in waiting for its second step, after its attempt was counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInChallenge {
    pub user_id: UserId,
    /// Where the sign-in goes once done (a path of this site).
    pub next_path: String,
    /// Answers tried so far, this one included.
    pub attempts: i64,
}

impl Db {
    /// The enrolment of `user`, started or in force.
    pub async fn get_two_factor(&mut self, user: UserId) -> Result<Option<TwoFactor>> {
        let sql = format!("SELECT {TWO_FACTOR_COLUMNS} FROM two_factor WHERE user_id = $1");
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, TwoFactor>(&sql).bind(user.0).fetch_optional(c).await)?,
        )
    }

    /// Starts an enrolment for `user` with the secret sealed as `sealed` (for
    /// row `id`); `Conflict` when they have one already.
    pub async fn insert_two_factor(&mut self, id: &str, user: UserId, sealed: &str) -> Result<()> {
        let sql = "INSERT INTO two_factor (id, user_id, secret_sealed, created_at) VALUES ($1, $2, $3, $4)";
        on_conn!(self, c => sqlx::query(sql).bind(id).bind(user.0).bind(sealed).bind(now()).execute(c).await.map(|r| r.rows_affected()))
            .map_err(|e| Error::unique_as_conflict(e, || format!("user {user} already has two-factor authentication")))?;
        Ok(())
    }

    /// Deletes an enrolment not yet confirmed (a new one replaces it); true
    /// when there was one.
    pub async fn delete_unconfirmed_two_factor(&mut self, user: UserId) -> Result<bool> {
        let sql = "DELETE FROM two_factor WHERE user_id = $1 AND confirmed_at IS NULL";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(user.0).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Deletes `user`'s enrolment and recovery codes; true when there was one.
    pub async fn delete_two_factor(&mut self, user: UserId) -> Result<bool> {
        let codes = "DELETE FROM two_factor_recovery_codes WHERE user_id = $1";
        on_conn!(self, c => sqlx::query(codes).bind(user.0).execute(c).await.map(|r| r.rows_affected()))?;
        let sql = "DELETE FROM two_factor WHERE user_id = $1";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(user.0).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Confirms enrolment `id` with the code of time `step`: only once, only
    /// while the row holds the secret `sealed` the code was checked against.
    pub async fn confirm_two_factor(&mut self, id: &str, sealed: &str, step: i64) -> Result<bool> {
        let sql = "UPDATE two_factor SET confirmed_at = $1, last_used_step = $2 \
                   WHERE id = $3 AND secret_sealed = $4 AND confirmed_at IS NULL";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(now()).bind(step).bind(id).bind(sealed)
            .execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Spends time step `step` of `user`'s confirmed enrolment: true only when
    /// no code of this or a later step was accepted before.
    pub async fn use_two_factor_step(&mut self, user: UserId, step: i64) -> Result<bool> {
        let sql = "UPDATE two_factor SET last_used_step = $1 WHERE user_id = $2 \
                   AND confirmed_at IS NOT NULL AND (last_used_step IS NULL OR last_used_step < $1)";
        Ok(on_conn!(self, c => sqlx::query(sql).bind(step).bind(user.0)
            .execute(c).await.map(|r| r.rows_affected()))?
            == 1)
    }

    /// Replaces every recovery code of `user` by these hashes.
    pub async fn replace_recovery_codes(&mut self, user: UserId, hashes: &[String]) -> Result<()> {
        let delete = "DELETE FROM two_factor_recovery_codes WHERE user_id = $1";
        on_conn!(self, c => sqlx::query(delete).bind(user.0).execute(c).await.map(|r| r.rows_affected()))?;
        let at = now();
        let insert = "INSERT INTO two_factor_recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)";
        for hash in hashes {
            on_conn!(self, c => sqlx::query(insert).bind(user.0).bind(hash).bind(at).execute(c).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// Spends the recovery code with this hash: true only the first time.
    pub async fn use_recovery_code(&mut self, user: UserId, hash: &str) -> Result<bool> {
        let sql = "UPDATE two_factor_recovery_codes SET used_at = $1 \
                   WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(now()).bind(user.0).bind(hash)
            .execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// How many of `user`'s recovery codes are still unused.
    pub async fn recovery_codes_left(&mut self, user: UserId) -> Result<i64> {
        let sql =
            "SELECT COUNT(*) FROM two_factor_recovery_codes WHERE user_id = $1 AND used_at IS NULL";
        Ok(on_conn!(self, c => sqlx::query_scalar::<_, i64>(sql).bind(user.0).fetch_one(c).await)?)
    }

    /// Stores the second step of `user`'s sign-in under the hash of its token.
    pub async fn insert_sign_in_challenge(
        &mut self,
        token_hash: &str,
        user: UserId,
        next_path: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "INSERT INTO sign_in_challenges (token_hash, user_id, next_path, created_at, expires_at) \
                   VALUES ($1, $2, $3, $4, $5)";
        on_conn!(self, c => sqlx::query(sql).bind(token_hash).bind(user.0).bind(next_path).bind(now()).bind(expires_at)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The live challenge with this hash (to show its form), not counting a try.
    pub async fn find_sign_in_challenge(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<SignInChallenge>> {
        let sql = "SELECT user_id, next_path, attempts FROM sign_in_challenges \
                   WHERE token_hash = $1 AND expires_at > $2";
        let row = on_conn!(self, c => sqlx::query_as::<_, (i64, String, i64)>(sql).bind(token_hash).bind(now())
            .fetch_optional(c).await)?;
        Ok(row.map(|(user, next_path, attempts)| SignInChallenge {
            user_id: UserId(user),
            next_path,
            attempts,
        }))
    }

    /// Counts one answer to the live challenge with this hash; `None` when
    /// there is none (unknown, expired or done).
    pub async fn count_sign_in_challenge_attempt(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<SignInChallenge>> {
        let sql = "UPDATE sign_in_challenges SET attempts = attempts + 1 \
                   WHERE token_hash = $1 AND expires_at > $2 RETURNING user_id, next_path, attempts";
        let row = on_conn!(self, c => sqlx::query_as::<_, (i64, String, i64)>(sql).bind(token_hash).bind(now())
            .fetch_optional(c).await)?;
        Ok(row.map(|(user, next_path, attempts)| SignInChallenge {
            user_id: UserId(user),
            next_path,
            attempts,
        }))
    }

    /// Ends a challenge (answered, or tried too often); true when it was there.
    pub async fn delete_sign_in_challenge(&mut self, token_hash: &str) -> Result<bool> {
        let sql = "DELETE FROM sign_in_challenges WHERE token_hash = $1";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(token_hash).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Ends every pending challenge of `user` (their two-factor sign-in was
    /// turned off, or their password reset).
    pub async fn delete_sign_in_challenges_of_user(&mut self, user: UserId) -> Result<u64> {
        let sql = "DELETE FROM sign_in_challenges WHERE user_id = $1";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(user.0).execute(c).await.map(|r| r.rows_affected()))?,
        )
    }

    /// Whether `organization` requires two-factor sign-in of its people.
    pub async fn organization_requires_two_factor(
        &mut self,
        organization: OrganizationId,
    ) -> Result<bool> {
        let sql = "SELECT two_factor_required FROM organizations WHERE id = $1";
        on_conn!(self, c => sqlx::query_scalar::<_, bool>(sql).bind(organization.0).fetch_optional(c).await)?
            .ok_or_else(|| Error::NotFound(format!("organization {organization}")))
    }

    /// Sets whether `organization` requires two-factor sign-in; true when
    /// that changed it.
    pub async fn set_organization_two_factor(
        &mut self,
        organization: OrganizationId,
        required: bool,
    ) -> Result<bool> {
        let sql = "UPDATE organizations SET two_factor_required = $1 WHERE id = $2 AND two_factor_required <> $1";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(required).bind(organization.0)
            .execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// The organizations of `user` that require two-factor sign-in while
    /// `user` has none in force: empty when nothing stands between them and
    /// the app (one query, asked on every signed-in page).
    pub async fn organizations_awaiting_two_factor(
        &mut self,
        user: UserId,
    ) -> Result<Vec<Organization>> {
        let sql = "SELECT o.id, o.name, o.plan, o.partner, o.created_at \
                   FROM organization_members m JOIN organizations o ON o.id = m.organization_id \
                   WHERE m.user_id = $1 AND o.two_factor_required = $2 \
                   AND NOT EXISTS (SELECT 1 FROM two_factor t WHERE t.user_id = $1 AND t.confirmed_at IS NOT NULL) \
                   ORDER BY o.id";
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, Organization>(sql).bind(user.0).bind(true)
            .fetch_all(c).await)?,
        )
    }

    /// Deletes challenges past their expiry; how many went.
    pub async fn sweep_sign_in_challenges(&mut self) -> Result<u64> {
        let sql = "DELETE FROM sign_in_challenges WHERE expires_at <= $1";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(now()).execute(c).await.map(|r| r.rows_affected()))?,
        )
    }
}

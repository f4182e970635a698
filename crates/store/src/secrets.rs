//! Sealed secrets. The store keeps the vault's text as it is; it never sees
//! plaintext, and rotation swaps a row's text only if nobody changed it meanwhile.

use crate::{now, Db, Error, Result, StoredSecret};

impl Db {
    pub async fn insert_secret(&mut self, id: &str, purpose: &str, sealed: &str) -> Result<()> {
        let at = now();
        let sql = "INSERT INTO secrets (id, purpose, sealed, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)";
        on_conn!(self, c => sqlx::query(sql).bind(id).bind(purpose).bind(sealed).bind(at).execute(c).await.map(|r| r.rows_affected()))
            .map_err(|e| Error::unique_as_conflict(e, || format!("secret {id} already exists")))?;
        Ok(())
    }

    pub async fn get_secret(&mut self, id: &str) -> Result<Option<StoredSecret>> {
        let sql = "SELECT id, purpose, sealed, updated_at FROM secrets WHERE id = $1";
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, StoredSecret>(sql).bind(id).fetch_optional(c).await)?,
        )
    }

    /// Replaces a secret's sealed text (a new value entered by its owner).
    pub async fn replace_secret(&mut self, id: &str, sealed: &str) -> Result<()> {
        let sql = "UPDATE secrets SET sealed = $1, updated_at = $2 WHERE id = $3";
        let done = on_conn!(self, c => sqlx::query(sql).bind(sealed).bind(now()).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(Error::NotFound(format!("secret {id}")));
        }
        Ok(())
    }

    /// Deletes a secret for good; true when there was one.
    pub async fn delete_secret(&mut self, id: &str) -> Result<bool> {
        let sql = "DELETE FROM secrets WHERE id = $1";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(id).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }

    /// Secrets in id order after `after`, `limit` at a time (for key rotation).
    pub async fn list_secrets_after(
        &mut self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<StoredSecret>> {
        let sql = "SELECT id, purpose, sealed, updated_at FROM secrets WHERE id > $1 ORDER BY id LIMIT $2";
        Ok(
            on_conn!(self, c => sqlx::query_as::<_, StoredSecret>(sql).bind(after).bind(limit).fetch_all(c).await)?,
        )
    }

    /// Swaps `old` for `new` only if the row still holds `old`; false otherwise
    /// (the owner replaced it meanwhile, under the current key already).
    pub async fn rewrap_secret(&mut self, id: &str, old: &str, new: &str) -> Result<bool> {
        let sql = "UPDATE secrets SET sealed = $1 WHERE id = $2 AND sealed = $3";
        Ok(
            on_conn!(self, c => sqlx::query(sql).bind(new).bind(id).bind(old).execute(c).await.map(|r| r.rows_affected()))?
                == 1,
        )
    }
}

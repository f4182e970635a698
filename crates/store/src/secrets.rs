//! Sealed secrets, and every sealed column of the schema for key rotation.
//! The store keeps the vault's text as it is; it never sees plaintext, and
//! rotation swaps a row's text only if nobody changed it meanwhile.

use crate::{now, Db, Error, Result, StoredSecret};

/// The scheme of associated data every value sealed by this code is bound by
/// (see migration 0008): the owner record, not just the row.
pub const AAD_OWNER_BOUND: i64 = 2;

impl Db {
    pub async fn insert_secret(&mut self, id: &str, purpose: &str, sealed: &str) -> Result<()> {
        let at = now();
        let sql = "INSERT INTO secrets (id, purpose, sealed, aad_scheme, created_at, updated_at) VALUES ($1, $2, $3, $5, $4, $4)";
        on_conn!(self, c => sqlx::query(sql).bind(id).bind(purpose).bind(sealed).bind(at).bind(AAD_OWNER_BOUND).execute(c).await.map(|r| r.rows_affected()))
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
        let sql = "UPDATE secrets SET sealed = $1, updated_at = $2, aad_scheme = $4 WHERE id = $3";
        let done = on_conn!(self, c => sqlx::query(sql).bind(sealed).bind(now()).bind(id).bind(AAD_OWNER_BOUND).execute(c).await.map(|r| r.rows_affected()))?;
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
}

/// A column of the schema that holds sealed values. Rotation re-wraps every
/// one, and a key version is retired only when none of them uses it; a new
/// sealed column belongs in [`SealedColumn::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealedColumn {
    /// `secrets.sealed`: connections' values (and any secret without an owner).
    Secrets,
    /// `outbox.payload`: notifications, which may carry links that act as keys.
    Outbox,
    /// `oauth_flows.verifier_sealed`: a flow's PKCE verifier.
    FlowVerifier,
    /// `oauth_flows.client_sealed`: the own OAuth client a `connect` flow brought.
    FlowClient,
    /// `two_factor.secret_sealed`: a user's TOTP secret (migration 0016).
    TwoFactorSecret,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 5] = [
        SealedColumn::Secrets,
        SealedColumn::Outbox,
        SealedColumn::FlowVerifier,
        SealedColumn::FlowClient,
        SealedColumn::TwoFactorSecret,
    ];

    pub fn table(self) -> &'static str {
        match self {
            SealedColumn::Secrets => "secrets",
            SealedColumn::Outbox => "outbox",
            SealedColumn::FlowVerifier | SealedColumn::FlowClient => "oauth_flows",
            SealedColumn::TwoFactorSecret => "two_factor",
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            SealedColumn::Secrets => "sealed",
            SealedColumn::Outbox => "payload",
            SealedColumn::FlowVerifier => "verifier_sealed",
            SealedColumn::FlowClient => "client_sealed",
            SealedColumn::TwoFactorSecret => "secret_sealed",
        }
    }

    /// `table.column`, as reports name it.
    pub fn label(self) -> String {
        format!("{}.{}", self.table(), self.column())
    }

    fn has_scheme(self) -> bool {
        matches!(self, SealedColumn::Secrets | SealedColumn::Outbox)
    }
}

/// One sealed value with what its vault context is made of. Which fields are
/// set depends on the column: a secret's purpose and owning connection, an
/// outbox row's kind and recipient; a flow's row id alone; a TOTP secret's
/// user.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SealedRow {
    /// The row's id, as text (an outbox id is a number).
    pub row_id: String,
    pub sealed: String,
    /// 1 or [`AAD_OWNER_BOUND`].
    pub aad_scheme: i64,
    pub purpose: Option<String>,
    pub connection_id: Option<i64>,
    pub team_id: Option<i64>,
    pub kind: Option<String>,
    pub recipient_email: Option<String>,
    pub user_id: Option<i64>,
}

fn outbox_id(row: &str) -> Result<i64> {
    row.parse()
        .map_err(|_| Error::Corrupt(format!("outbox row id {row:?} is not a number")))
}

/// The `LIKE` pattern of values sealed under key `version`.
fn version_pattern(version: u32) -> String {
    format!("cv1.k{version}.%")
}

impl Db {
    /// Up to `limit` values of `column` after row `after` (in row order) that
    /// are not sealed under key `current` or not bound by the current scheme:
    /// what a rotation pass still has to do. `after` is `""` to start.
    ///
    /// A secret comes with one row per connection pointing at it (in
    /// connection order; one row without a connection when none does), all
    /// in the same page: `limit` counts secrets, so a page never ends between
    /// two pointers to one secret.
    pub async fn sealed_rows_to_renew(
        &mut self,
        column: SealedColumn,
        after: &str,
        current: u32,
        limit: i64,
    ) -> Result<Vec<SealedRow>> {
        let pattern = version_pattern(current);
        match column {
            SealedColumn::Secrets => {
                // A connection's secret is opened in the name of the connection
                // pointing at it; the join supplies that owner, and every other
                // row pointing at it too (the page is of secrets, then joined).
                let sql = "SELECT s.id AS row_id, s.sealed, s.aad_scheme, s.purpose, \
                           c.id AS connection_id, c.team_id, \
                           CAST(NULL AS TEXT) AS kind, CAST(NULL AS TEXT) AS recipient_email, \
                           CAST(NULL AS BIGINT) AS user_id \
                           FROM (SELECT id, sealed, aad_scheme, purpose FROM secrets \
                                 WHERE id > $1 AND (sealed NOT LIKE $2 OR aad_scheme < $3) \
                                 ORDER BY id LIMIT $4) s \
                           LEFT JOIN connections c ON c.secret_id = s.id \
                           ORDER BY s.id, c.id";
                Ok(on_conn!(self, c => sqlx::query_as::<_, SealedRow>(sql)
                    .bind(after).bind(&pattern).bind(AAD_OWNER_BOUND).bind(limit)
                    .fetch_all(c).await)?)
            }
            SealedColumn::Outbox => {
                let after = if after.is_empty() {
                    0
                } else {
                    outbox_id(after)?
                };
                let sql = "SELECT CAST(id AS TEXT) AS row_id, payload AS sealed, aad_scheme, \
                           CAST(NULL AS TEXT) AS purpose, CAST(NULL AS BIGINT) AS connection_id, \
                           CAST(NULL AS BIGINT) AS team_id, kind, recipient_email, \
                           CAST(NULL AS BIGINT) AS user_id \
                           FROM outbox WHERE id > $1 AND (payload NOT LIKE $2 OR aad_scheme < $3) \
                           ORDER BY id LIMIT $4";
                Ok(on_conn!(self, c => sqlx::query_as::<_, SealedRow>(sql)
                    .bind(after).bind(&pattern).bind(AAD_OWNER_BOUND).bind(limit)
                    .fetch_all(c).await)?)
            }
            SealedColumn::FlowVerifier | SealedColumn::FlowClient => {
                let name = column.column();
                let sql = format!(
                    "SELECT id AS row_id, {name} AS sealed, CAST($3 AS BIGINT) AS aad_scheme, \
                     CAST(NULL AS TEXT) AS purpose, CAST(NULL AS BIGINT) AS connection_id, \
                     CAST(NULL AS BIGINT) AS team_id, CAST(NULL AS TEXT) AS kind, \
                     CAST(NULL AS TEXT) AS recipient_email, CAST(NULL AS BIGINT) AS user_id \
                     FROM oauth_flows WHERE id > $1 AND {name} IS NOT NULL AND {name} NOT LIKE $2 \
                     ORDER BY id LIMIT $4"
                );
                Ok(on_conn!(self, c => sqlx::query_as::<_, SealedRow>(&sql)
                    .bind(after).bind(&pattern).bind(AAD_OWNER_BOUND).bind(limit)
                    .fetch_all(c).await)?)
            }
            SealedColumn::TwoFactorSecret => {
                // Bound to its row and its user from the start (no older scheme).
                let sql = "SELECT id AS row_id, secret_sealed AS sealed, CAST($3 AS BIGINT) AS aad_scheme, \
                           CAST(NULL AS TEXT) AS purpose, CAST(NULL AS BIGINT) AS connection_id, \
                           CAST(NULL AS BIGINT) AS team_id, CAST(NULL AS TEXT) AS kind, \
                           CAST(NULL AS TEXT) AS recipient_email, CAST(user_id AS BIGINT) AS user_id \
                           FROM two_factor WHERE id > $1 AND secret_sealed NOT LIKE $2 \
                           ORDER BY id LIMIT $4";
                Ok(on_conn!(self, c => sqlx::query_as::<_, SealedRow>(sql)
                    .bind(after).bind(&pattern).bind(AAD_OWNER_BOUND).bind(limit)
                    .fetch_all(c).await)?)
            }
        }
    }

    /// Swaps `old` for `new` in `column` of `row`, bound by the current
    /// scheme, only if the row still holds `old`; false otherwise (it was
    /// changed or removed meanwhile, and must be read again).
    pub async fn renew_sealed(
        &mut self,
        column: SealedColumn,
        row: &str,
        old: &str,
        new: &str,
    ) -> Result<bool> {
        let (table, name) = (column.table(), column.column());
        let set_scheme = if column.has_scheme() {
            ", aad_scheme = $4"
        } else {
            ""
        };
        let sql =
            format!("UPDATE {table} SET {name} = $1{set_scheme} WHERE id = $2 AND {name} = $3");
        // The outbox's ids are integers; the other tables' are text.
        let outbox_row = match column {
            SealedColumn::Outbox => Some(outbox_id(row)?),
            _ => None,
        };
        let done = on_conn!(self, c => {
            let query = sqlx::query(&sql).bind(new);
            let query = match outbox_row {
                Some(id) => query.bind(id),
                None => query.bind(row),
            };
            let query = query.bind(old);
            let query = if column.has_scheme() { query.bind(AAD_OWNER_BOUND) } else { query };
            query.execute(c).await.map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// How many values of `column` are sealed under key `version`.
    pub async fn count_sealed_under(&mut self, column: SealedColumn, version: u32) -> Result<i64> {
        let (table, name) = (column.table(), column.column());
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {name} LIKE $1");
        Ok(on_conn!(self, c => sqlx::query_scalar::<_, i64>(&sql)
            .bind(version_pattern(version)).fetch_one(c).await)?)
    }

    /// How many values of `column` are not sealed under key `version`, or not
    /// bound by the current scheme.
    pub async fn count_sealed_not_current(
        &mut self,
        column: SealedColumn,
        version: u32,
    ) -> Result<i64> {
        let (table, name) = (column.table(), column.column());
        let older_scheme = if column.has_scheme() {
            " OR aad_scheme < $2"
        } else {
            ""
        };
        let sql = format!(
            "SELECT COUNT(*) FROM {table} WHERE {name} IS NOT NULL AND ({name} NOT LIKE $1{older_scheme})"
        );
        Ok(on_conn!(self, c => {
            let query = sqlx::query_scalar::<_, i64>(&sql).bind(version_pattern(version));
            let query = if column.has_scheme() { query.bind(AAD_OWNER_BOUND) } else { query };
            query.fetch_one(c).await
        })?)
    }
}

//! Secrets at rest: sealing a value into the `secrets` table, opening it at the
//! moment of use, and renewing every sealed value of every table after a key
//! rotation (or an upgrade of the associated-data scheme).
//!
//! A connection's secret is bound to its owner record (SPEC §7): its vault
//! context is `connection:<connection id>:team:<team id>:secret:<secret
//! id>:connection`, made from the connection row it is opened through, so
//! pointing another connection's `secret_id` at it makes it fail to open, and
//! so does copying its text into another row. A secret with no owner record
//! (only tests make them) is bound to its row and purpose, `secret:<id>:<purpose>`.

use super::{Error, Result};
use credence_store::{Connection, SealedColumn, SealedRow, Store, AAD_OWNER_BOUND};
use credence_vault::{Sealed, Vault, VaultError};
use secrecy::SecretString;

/// The vault context of the secret `secret_id` of connection `connection_id`
/// of team `team_id`.
pub fn connection_context(connection_id: i64, team_id: i64, secret_id: &str) -> String {
    format!(
        "connection:{connection_id}:team:{team_id}:secret:{secret_id}:{}",
        super::connections::SECRET_PURPOSE
    )
}

/// The vault context of a secret with no owner record; also the context every
/// secret was sealed with before migration 0008 (scheme 1).
fn row_context(id: &str, purpose: &str) -> String {
    format!("secret:{id}:{purpose}")
}

/// A connection's secret is never handled as one without an owner.
fn refuse_owned(purpose: &str) -> Result<()> {
    if purpose == super::connections::SECRET_PURPOSE {
        return Err(Error::Internal(anyhow::anyhow!(
            "a connection's secret is sealed by connections::create and opened by open_connection"
        )));
    }
    Ok(())
}

/// Seals `value` and stores it under a new id, which is returned. For secrets
/// with no owner record; a connection's secret is sealed by `connections::create`.
pub async fn put_unowned(
    store: &Store,
    vault: &Vault,
    purpose: &str,
    value: &SecretString,
) -> Result<String> {
    refuse_owned(purpose)?;
    let id = uuid::Uuid::new_v4().to_string();
    let sealed = vault.seal_str(value, &row_context(&id, purpose))?;
    store
        .db()
        .await?
        .insert_secret(&id, purpose, sealed.as_str())
        .await?;
    Ok(id)
}

/// Opens the secret `id` that has no owner record, stored for `purpose`.
pub async fn open_unowned(
    store: &Store,
    vault: &Vault,
    id: &str,
    purpose: &str,
) -> Result<SecretString> {
    refuse_owned(purpose)?;
    let Some(stored) = store.db().await?.get_secret(id).await? else {
        return Err(Error::NotFound(format!("secret {id} not found")));
    };
    Ok(vault.open_string(
        &Sealed::from_stored(stored.sealed),
        &row_context(id, purpose),
    )?)
}

/// Opens the secret of `connection`, in the connection's name: a secret moved
/// to it from another connection does not open.
pub async fn open_connection(
    store: &Store,
    vault: &Vault,
    connection: &Connection,
) -> Result<SecretString> {
    let missing = || Error::NotFound(format!("the secret of connection {}", connection.id));
    let secret = connection.secret_id.as_deref().ok_or_else(missing)?;
    let stored = store
        .db()
        .await?
        .get_secret(secret)
        .await?
        .ok_or_else(missing)?;
    Ok(vault.open_string(
        &Sealed::from_stored(stored.sealed),
        &connection_context(connection.id, connection.team_id, secret),
    )?)
}

/// What a renewal pass did to one sealed column.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ColumnRenewal {
    /// Data keys re-wrapped under the current key version (payload unchanged).
    pub rewrapped: u64,
    /// Values sealed afresh because they were bound by the old scheme.
    pub rebound: u64,
    /// Values already on the current version when the pass began.
    pub already_current: u64,
    /// Values that changed between being read and being written back: read
    /// again in a further pass.
    pub changed_meanwhile: u64,
    /// Values that do not open (corrupt, or moved to a row they do not belong to).
    pub failed: u64,
    /// Values still on an old key version or scheme when the pass ended.
    pub left: u64,
}

/// What [`renew_all`] did: the key version everything is now on, per column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    pub version: u32,
    pub columns: Vec<(SealedColumn, ColumnRenewal)>,
    /// One line per value that could not be renewed, naming its column and
    /// row (never its text); empty when every value is current.
    pub problems: Vec<String>,
}

/// How many passes over a column before giving up on values that keep
/// changing under old versions (a stale instance still sealing with them).
const MAX_PASSES: usize = 10;
const PAGE: i64 = 500;

/// Brings every sealed value of every table onto the vault's current key
/// version and the current associated-data scheme. Re-wrapping keeps the
/// payload; a value of the old scheme is opened and sealed afresh. Each write
/// is guarded by the text that was read, and passes repeat until no value of
/// the column is left on an old version (values written meanwhile included).
/// Both versions open throughout, so the service keeps running.
pub async fn renew_all(store: &Store, vault: &Vault) -> Result<Renewal> {
    let version = vault.current_version();
    let mut renewal = Renewal {
        version,
        columns: Vec::new(),
        problems: Vec::new(),
    };
    for column in SealedColumn::ALL {
        let report = renew_column(store, vault, column, version, &mut renewal.problems).await?;
        renewal.columns.push((column, report));
    }
    Ok(renewal)
}

async fn renew_column(
    store: &Store,
    vault: &Vault,
    column: SealedColumn,
    version: u32,
    problems: &mut Vec<String>,
) -> Result<ColumnRenewal> {
    let mut report = ColumnRenewal {
        already_current: u64::try_from(
            store
                .db()
                .await?
                .count_sealed_under(column, version)
                .await?,
        )
        .unwrap_or(0),
        ..ColumnRenewal::default()
    };
    let mut failed = std::collections::BTreeSet::new();
    for pass in 0.. {
        // Values this pass tried (not skipped as failed before): while a pass
        // tries any, something was written or lost a race, so look again.
        let mut attempted = 0u64;
        let mut after = String::new();
        loop {
            let page = store
                .db()
                .await?
                .sealed_rows_to_renew(column, &after, version, PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.row_id.clone();
            for row in page {
                // A secret two connections point at (a moved `secret_id`) is
                // listed once per connection: only the one it belongs to opens it.
                let attempt = (row.row_id.clone(), row.connection_id);
                if failed.contains(&attempt) {
                    continue;
                }
                attempted += 1;
                let (renewed, rebound) = match renew_one(vault, column, &row) {
                    Ok(done) => done,
                    Err(error) => {
                        let owner = match row.connection_id {
                            Some(connection) => format!(" (through connection {connection})"),
                            None => String::new(),
                        };
                        problems.push(format!(
                            "{} row {}{owner}: {error}",
                            column.label(),
                            row.row_id
                        ));
                        failed.insert(attempt);
                        report.failed += 1;
                        continue;
                    }
                };
                let written = store
                    .db()
                    .await?
                    .renew_sealed(column, &row.row_id, &row.sealed, renewed.as_str())
                    .await?;
                match (written, rebound) {
                    (false, _) => report.changed_meanwhile += 1,
                    (true, true) => report.rebound += 1,
                    (true, false) => report.rewrapped += 1,
                }
            }
        }
        let left = store
            .db()
            .await?
            .count_sealed_not_current(column, version)
            .await?;
        let left = u64::try_from(left).unwrap_or(0);
        report.left = left;
        if left == 0 || attempted == 0 {
            // Done, or only values that do not open are left (reported above).
            break;
        }
        if pass + 1 == MAX_PASSES {
            problems.push(format!(
                "{}: {left} values are still on an old key version after {MAX_PASSES} passes; is an instance running with an old copy of the key file?",
                column.label(),
            ));
            break;
        }
    }
    Ok(report)
}

/// The renewed text of one value, and whether it was sealed afresh for the
/// current scheme (rather than only re-wrapped).
fn renew_one(
    vault: &Vault,
    column: SealedColumn,
    row: &SealedRow,
) -> Result<(Sealed, bool), VaultError> {
    let sealed = Sealed::from_stored(row.sealed.clone());
    let context = context_of(column, row);
    if row.aad_scheme < AAD_OWNER_BOUND {
        let legacy = legacy_context_of(column, row);
        if legacy != context {
            return Ok((vault.reseal(&sealed, &legacy, &context)?, true));
        }
    }
    // On the current version already (then only the scheme is marked).
    let renewed = vault.rewrap(&sealed, &context)?.unwrap_or(sealed);
    Ok((renewed, false))
}

/// The context a value of `column` is sealed with now.
fn context_of(column: SealedColumn, row: &SealedRow) -> String {
    let id = &row.row_id;
    match column {
        SealedColumn::Secrets => {
            let purpose = row.purpose.as_deref().unwrap_or_default();
            match (row.connection_id, row.team_id) {
                (Some(connection), Some(team)) if purpose == super::connections::SECRET_PURPOSE => {
                    connection_context(connection, team, id)
                }
                _ => row_context(id, purpose),
            }
        }
        SealedColumn::Outbox => super::audit::outbox_context(
            id,
            row.kind.as_deref().unwrap_or_default(),
            row.recipient_email.as_deref().unwrap_or_default(),
        ),
        SealedColumn::FlowVerifier => super::oauth::verifier_context(id),
        SealedColumn::FlowClient => super::oauth::flow_client_context(id),
    }
}

/// The context a value of `column` was sealed with under scheme 1.
fn legacy_context_of(column: SealedColumn, row: &SealedRow) -> String {
    match column {
        SealedColumn::Secrets => {
            row_context(&row.row_id, row.purpose.as_deref().unwrap_or_default())
        }
        SealedColumn::Outbox => super::audit::legacy_outbox_context(
            row.kind.as_deref().unwrap_or_default(),
            row.recipient_email.as_deref().unwrap_or_default(),
        ),
        // Flows were bound to their row from the start.
        SealedColumn::FlowVerifier | SealedColumn::FlowClient => context_of(column, row),
    }
}

/// The sealed columns that hold values under key `version`, with how many;
/// empty when nothing uses it.
pub async fn usage_of_version(store: &Store, version: u32) -> Result<Vec<(SealedColumn, i64)>> {
    let mut db = store.db().await?;
    let mut used = Vec::new();
    for column in SealedColumn::ALL {
        let count = db.count_sealed_under(column, version).await?;
        if count > 0 {
            used.push((column, count));
        }
    }
    Ok(used)
}

//! Secrets at rest: sealing a value into the `secrets` table, opening it at the
//! moment of use, and renewing every sealed value of every table after a key
//! rotation (or an upgrade of the associated-data scheme).
//!
//! A connection's secret is bound to its owner record (SPEC §7): its vault
//! context is `connection:<connection id>:team:<team id>:secret:<secret
//! id>:connection`, made from the connection row it is opened through, so
//! pointing another connection's `secret_id` at it makes it fail to open, and
//! so does copying its text into another row. A secret with no owner record is
//! bound to its row and purpose, `secret:<id>:<purpose>` (the binding of every
//! secret before migration 0008). The server itself stores no such secret
//! today, every one belongs to a connection; [`put_unowned`] and
//! [`open_unowned`] are the API for a value that has no owner row, and the
//! tests check the row binding through them.

use super::{Error, Result};
use credence_provider::FieldValues;
use credence_store::{Connection, Db, SealedColumn, SealedRow, Store, AAD_OWNER_BOUND};
use credence_vault::{Sealed, Vault, VaultError};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;

/// The purpose of a connection's secret in the vault (and its `secrets` row).
pub const CONNECTION_PURPOSE: &str = "connection";

/// The vault context of a flow's PKCE verifier: bound to its row.
pub fn verifier_context(flow: &str) -> String {
    format!("oauth_flow:{flow}:pkce_verifier")
}

/// The vault context of a flow's own client: bound to its row.
pub fn flow_client_context(flow: &str) -> String {
    format!("oauth_flow:{flow}:client")
}

/// The vault context of the secret `secret_id` of connection `connection_id`
/// of team `team_id`.
pub fn connection_context(connection_id: i64, team_id: i64, secret_id: &str) -> String {
    format!(
        "connection:{connection_id}:team:{team_id}:secret:{secret_id}:{}",
        CONNECTION_PURPOSE
    )
}

/// The vault context of a secret with no owner record; also the context every
/// secret was sealed with before migration 0008 (scheme 1).
fn row_context(id: &str, purpose: &str) -> String {
    format!("secret:{id}:{purpose}")
}

/// A connection's secret is never handled as one without an owner.
fn refuse_owned(purpose: &str) -> Result<()> {
    if purpose == CONNECTION_PURPOSE {
        return Err(Error::Internal(anyhow::anyhow!(
            "a connection's secret is sealed by seal_connection_values and opened by open_connection_values"
        )));
    }
    Ok(())
}

/// Seals `value` and stores it under a new id, which is returned. For secrets
/// with no owner record (a team's Slack webhook URL for reminders); a
/// connection's secret is sealed by `connections::create` and refused here.
pub async fn put_unowned(
    store: &Store,
    vault: &Vault,
    purpose: &str,
    value: &SecretString,
) -> Result<String> {
    put_unowned_in(&mut store.db().await?, vault, purpose, value).await
}

/// [`put_unowned`] inside the caller's transaction.
pub async fn put_unowned_in(
    db: &mut Db,
    vault: &Vault,
    purpose: &str,
    value: &SecretString,
) -> Result<String> {
    refuse_owned(purpose)?;
    let id = uuid::Uuid::new_v4().to_string();
    let sealed = vault.seal_str(value, &row_context(&id, purpose))?;
    db.insert_secret(&id, purpose, sealed.as_str()).await?;
    Ok(id)
}

/// [`open_unowned`] through the caller's connection or transaction.
pub async fn open_unowned_in(
    db: &mut Db,
    vault: &Vault,
    id: &str,
    purpose: &str,
) -> Result<SecretString> {
    refuse_owned(purpose)?;
    let Some(stored) = db.get_secret(id).await? else {
        return Err(Error::NotFound(format!("secret {id} not found")));
    };
    Ok(vault.open_string(
        &Sealed::from_stored(stored.sealed),
        &row_context(id, purpose),
    )?)
}

/// Opens the secret `id` that has no owner record, stored for `purpose`.
pub async fn open_unowned(
    store: &Store,
    vault: &Vault,
    id: &str,
    purpose: &str,
) -> Result<SecretString> {
    open_unowned_in(&mut store.db().await?, vault, id, purpose).await
}

/// The one place a connection's sealed values become plain: opens `sealed`,
/// read from the secret `secret` of `connection`, in the connection's name (a
/// secret moved to it from another connection does not open). Everything that
/// needs them goes through here: the app's verify call, the OAuth client
/// (refresh, revocation), and next the broker.
fn open_sealed_of(
    vault: &Vault,
    connection: &Connection,
    secret: &str,
    sealed: &str,
) -> Result<SecretString> {
    Ok(vault.open_string(
        &Sealed::from_stored(sealed.to_string()),
        &connection_context(connection.id, connection.team_id, secret),
    )?)
}

/// Seals `values` as the secret `secret` of connection `connection_id` of team
/// `team_id`: the one sealer of a connection's values (new connections,
/// refreshed and renewed tokens). The JSON copies of the values are zeroized,
/// as is the text sealed.
pub fn seal_connection_values(
    vault: &Vault,
    connection_id: i64,
    team_id: i64,
    secret: &str,
    values: &FieldValues,
) -> Result<Sealed> {
    Ok(vault.seal(
        &values.to_secret_json().to_json_bytes(),
        &connection_context(connection_id, team_id, secret),
    )?)
}

/// A connection's values by name (field values, or OAuth tokens), from
/// `sealed` as [`open_sealed_of`] opens it. For a caller that compares what
/// it read later (a refresh writes only over the tokens it read).
pub fn open_connection_values(
    vault: &Vault,
    connection: &Connection,
    secret: &str,
    sealed: &str,
) -> Result<FieldValues> {
    let plain = open_sealed_of(vault, connection, secret, sealed)?;
    let values: BTreeMap<String, String> =
        serde_json::from_str(plain.expose_secret()).map_err(|_| {
            Error::Internal(anyhow::anyhow!(
                "connection {} holds unreadable values",
                connection.id
            ))
        })?;
    Ok(FieldValues(
        values
            .into_iter()
            .map(|(name, value)| (name, SecretString::from(value)))
            .collect(),
    ))
}

/// Reads the secret of `connection` through `db` (the caller's transaction,
/// when what it reads must stay what the transaction holds) and opens its
/// values; `None` when the connection holds no secret.
pub async fn read_connection_values(
    db: &mut Db,
    vault: &Vault,
    connection: &Connection,
) -> Result<Option<FieldValues>> {
    let Some(secret) = connection.secret_id.as_deref() else {
        return Ok(None);
    };
    let Some(stored) = db.get_secret(secret).await? else {
        return Ok(None);
    };
    open_connection_values(vault, connection, secret, &stored.sealed).map(Some)
}

/// The plain JSON text of `connection`'s secret (what was sealed), opened as
/// [`open_sealed_of`] opens it; for checks of what is stored.
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
    open_sealed_of(vault, connection, secret, &stored.sealed)
}

/// What a renewal pass did to one sealed column.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ColumnRenewal {
    /// Data keys re-wrapped under the current key version (payload unchanged).
    pub rewrapped: u64,
    /// Values sealed afresh because they were bound by the old scheme.
    pub rebound: u64,
    /// Values already on the current version when the renewal began or
    /// reached them (written meanwhile under a newer version).
    pub already_current: u64,
    /// Values that changed between being read and being written back: read
    /// again in a further pass.
    pub changed_meanwhile: u64,
    /// Values that do not open (corrupt, or moved to a row they do not
    /// belong to) or are left alone (a legacy secret several connections
    /// point at, a connection's secret no connection points at).
    pub failed: u64,
    /// Values still on an old key version or scheme when the renewal ended.
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
/// How many values a page of a renewal pass reads at once.
pub const RENEWAL_PAGE: i64 = 500;

/// Brings every sealed value of every table onto the vault's current key
/// version and the current associated-data scheme. Re-wrapping keeps the
/// payload; a value of the old scheme is opened and sealed afresh. Each write
/// is guarded by the text that was read, and passes repeat until no value of
/// the column is left on an old version (values written meanwhile included);
/// each pass works towards the newest version in the key file, so a rotation
/// meanwhile only adds a pass. Both versions open throughout, so the service
/// keeps running.
pub async fn renew_all(store: &Store, vault: &Vault) -> Result<Renewal> {
    let mut columns = Vec::new();
    let mut problems = Vec::new();
    for column in SealedColumn::ALL {
        let mut renewer = ColumnRenewer::start(store, vault, column, RENEWAL_PAGE).await?;
        while let Some(page) = renewer.next_page().await? {
            renewer.renew_page(page).await?;
        }
        let (report, found) = renewer.finish();
        columns.push((column, report));
        problems.extend(found);
    }
    Ok(Renewal {
        version: vault.current_version(),
        columns,
        problems,
    })
}

/// The renewal of one sealed column, a page at a time: [`renew_all`] drives
/// it to the end with [`ColumnRenewer::next_page`] and
/// [`ColumnRenewer::renew_page`]; a caller driving it itself can change
/// values between a page being read and being renewed (what a concurrent
/// writer does).
pub struct ColumnRenewer<'a> {
    store: &'a Store,
    vault: &'a Vault,
    column: SealedColumn,
    page_size: i64,
    /// The key version this pass moves values to: read again at every pass.
    version: u32,
    passes: usize,
    /// The last row of the previous page; `""` at the start of a pass.
    after: String,
    /// Values this pass tried (not skipped as failed before): while a pass
    /// tries any, something was written or lost a race, so look again.
    attempted: u64,
    /// Secrets (and the connection they were tried through) that do not
    /// renew: reported once, skipped by later passes.
    failed: std::collections::BTreeSet<(String, Option<i64>)>,
    done: bool,
    report: ColumnRenewal,
    problems: Vec<String>,
}

impl<'a> ColumnRenewer<'a> {
    /// A renewal of `column` reading `page_size` values (secrets) at a time.
    pub async fn start(
        store: &'a Store,
        vault: &'a Vault,
        column: SealedColumn,
        page_size: i64,
    ) -> Result<ColumnRenewer<'a>> {
        let version = vault.current_version();
        let already_current = store
            .db()
            .await?
            .count_sealed_under(column, version)
            .await?;
        Ok(ColumnRenewer {
            store,
            vault,
            column,
            page_size,
            version,
            passes: 0,
            after: String::new(),
            attempted: 0,
            failed: std::collections::BTreeSet::new(),
            done: false,
            report: ColumnRenewal {
                already_current: u64::try_from(already_current).unwrap_or(0),
                ..ColumnRenewal::default()
            },
            problems: Vec::new(),
        })
    }

    /// The key version the current pass moves values to.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The next page of values still to renew, starting a further pass when
    /// one ends with values left that it may still move; `None` when the
    /// column is done.
    pub async fn next_page(&mut self) -> Result<Option<Vec<SealedRow>>> {
        while !self.done {
            let page = self
                .store
                .db()
                .await?
                .sealed_rows_to_renew(self.column, &self.after, self.version, self.page_size)
                .await?;
            if let Some(last) = page.last() {
                self.after = last.row_id.clone();
                return Ok(Some(page));
            }
            self.end_pass().await?;
        }
        Ok(None)
    }

    /// Counts what a pass left and decides whether another one is needed.
    async fn end_pass(&mut self) -> Result<()> {
        self.passes += 1;
        // A rotation during the pass made values it wrote, and values written
        // meanwhile, newer than `self.version`: what is left is counted
        // against the newest version, and the next pass works towards it.
        let newest = self.vault.current_version();
        let left = self
            .store
            .db()
            .await?
            .count_sealed_not_current(self.column, newest)
            .await?;
        let left = u64::try_from(left).unwrap_or(0);
        self.report.left = left;
        let version_moved = newest != self.version;
        if left == 0 || (self.attempted == 0 && !version_moved) {
            // Done, or only values that do not renew are left (reported).
            self.done = true;
        } else if self.passes == MAX_PASSES {
            self.problems.push(format!(
                "{}: {left} values are still on an old key version after {MAX_PASSES} passes; is an instance running with an old copy of the key file?",
                self.column.label(),
            ));
            self.done = true;
        } else {
            self.version = newest;
            self.after.clear();
            self.attempted = 0;
        }
        Ok(())
    }

    /// Renews the values of `page` (from [`ColumnRenewer::next_page`]), each
    /// written only if its row still holds the text read.
    pub async fn renew_page(&mut self, page: Vec<SealedRow>) -> Result<()> {
        let mut rows = page.into_iter().peekable();
        while let Some(first) = rows.next() {
            // All the rows of one secret: one per connection pointing at it.
            let mut same = vec![first];
            while let Some(next) = rows.next_if(|next| next.row_id == same[0].row_id) {
                same.push(next);
            }
            if let Some(problem) = self.left_alone(&same) {
                let key = (same[0].row_id.clone(), None);
                if self.failed.insert(key) {
                    self.problems.push(problem);
                    self.report.failed += 1;
                }
                continue;
            }
            for row in same {
                self.renew_row(row).await?;
            }
        }
        Ok(())
    }

    /// Why the secret of `rows` (one per connection pointing at it) is not
    /// to be renewed at all; `None` for any other value.
    fn left_alone(&self, rows: &[SealedRow]) -> Option<String> {
        let first = &rows[0];
        let connection_secret = first.purpose.as_deref() == Some(CONNECTION_PURPOSE);
        if self.column != SealedColumn::Secrets || !connection_secret {
            return None;
        }
        let pointers: Vec<String> = rows
            .iter()
            .filter_map(|row| row.connection_id.map(|id| id.to_string()))
            .collect();
        let label = self.column.label();
        let secret = &first.row_id;
        if pointers.is_empty() && first.aad_scheme >= AAD_OWNER_BOUND {
            // Bound to a connection no longer pointing at it (a moved
            // `secret_id`): opening it in its row's name fails anyway.
            return Some(format!(
                "{label} row {secret}: no connection points at it, and a connection's secret opens only through its connection; left as it is"
            ));
        }
        if first.aad_scheme < AAD_OWNER_BOUND && pointers.len() > 1 {
            // Sealed before the owner binding, it opens through any of them:
            // re-sealing it for the first would hand it to whichever row a
            // moved `secret_id` put first, possibly another team's.
            return Some(format!(
                "{label} row {secret}: connections {} all point at it, and it was sealed before the owner binding, which names no owner; none is trusted with it and it is left as it is (point the others elsewhere, then renew again)",
                pointers.join(", ")
            ));
        }
        None
    }

    async fn renew_row(&mut self, row: SealedRow) -> Result<()> {
        // A secret two connections point at (a moved `secret_id`) is tried
        // once per connection: only the one it belongs to opens it.
        let attempt = (row.row_id.clone(), row.connection_id);
        if self.failed.contains(&attempt) {
            return Ok(());
        }
        let renewed = match renew_one(self.vault, self.column, &row) {
            Ok(renewed) => renewed,
            Err(error) => {
                let owner = match row.connection_id {
                    Some(connection) => format!(" (through connection {connection})"),
                    None => String::new(),
                };
                self.problems.push(format!(
                    "{} row {}{owner}: {error}",
                    self.column.label(),
                    row.row_id
                ));
                self.failed.insert(attempt);
                self.attempted += 1;
                self.report.failed += 1;
                return Ok(());
            }
        };
        let (text, rebound) = match renewed {
            Renewed::Current => {
                // Written under a newer version since the pass began.
                self.report.already_current += 1;
                return Ok(());
            }
            Renewed::Rewrapped(text) => (text, false),
            Renewed::Rebound(text) => (text, true),
        };
        self.attempted += 1;
        let written = self
            .store
            .db()
            .await?
            .renew_sealed(self.column, &row.row_id, &row.sealed, text.as_str())
            .await?;
        match (written, rebound) {
            (false, _) => self.report.changed_meanwhile += 1,
            (true, true) => self.report.rebound += 1,
            (true, false) => self.report.rewrapped += 1,
        }
        Ok(())
    }

    /// What the renewal did to the column, and a line per value it could not
    /// renew.
    pub fn finish(self) -> (ColumnRenewal, Vec<String>) {
        (self.report, self.problems)
    }
}

/// What renewing one value comes to.
enum Renewed {
    /// Already on the newest version and bound by the current scheme.
    Current,
    /// The data key re-wrapped (or only the scheme to mark).
    Rewrapped(Sealed),
    /// Sealed afresh for the current scheme.
    Rebound(Sealed),
}

/// The renewed text of one value.
fn renew_one(vault: &Vault, column: SealedColumn, row: &SealedRow) -> Result<Renewed, VaultError> {
    let sealed = Sealed::from_stored(row.sealed.clone());
    let context = context_of(column, row);
    if row.aad_scheme < AAD_OWNER_BOUND {
        let legacy = legacy_context_of(column, row);
        if legacy != context {
            return Ok(Renewed::Rebound(vault.reseal(&sealed, &legacy, &context)?));
        }
    }
    Ok(match vault.rewrap(&sealed, &context)? {
        Some(renewed) => Renewed::Rewrapped(renewed),
        None if row.aad_scheme < AAD_OWNER_BOUND => Renewed::Rewrapped(sealed),
        None => Renewed::Current,
    })
}

/// The context a value of `column` is sealed with now.
fn context_of(column: SealedColumn, row: &SealedRow) -> String {
    let id = &row.row_id;
    match column {
        SealedColumn::Secrets => {
            let purpose = row.purpose.as_deref().unwrap_or_default();
            match (row.connection_id, row.team_id) {
                (Some(connection), Some(team)) if purpose == CONNECTION_PURPOSE => {
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
        SealedColumn::FlowVerifier => verifier_context(id),
        SealedColumn::FlowClient => flow_client_context(id),
        SealedColumn::TwoFactorSecret => {
            super::two_factor::secret_context(id, row.user_id.unwrap_or_default())
        }
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
        // Flows and TOTP secrets were bound to their owner from the start.
        SealedColumn::FlowVerifier | SealedColumn::FlowClient | SealedColumn::TwoFactorSecret => {
            context_of(column, row)
        }
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

/// The running instances (a heartbeat within three of their intervals) whose
/// key file's newest version is older than `current`: they may still seal
/// under a version about to be retired.
pub async fn instances_behind(
    store: &Store,
    current: u32,
) -> Result<Vec<credence_store::InstanceHeartbeat>> {
    let at = credence_store::now();
    let beats = store.db().await?.list_heartbeats().await?;
    Ok(beats
        .into_iter()
        .filter(|beat| beat.is_live_at(at) && beat.key_version < i64::from(current))
        .collect())
}

/// The vault context of a new request's link, kept sealed in the creator's
/// browser for the one page that shows it after the wizard's redirect: bound
/// to the request and the user, so it opens for nobody else and no other request.
fn shown_link_context(
    request: credence_domain::RequestId,
    user: credence_domain::UserId,
) -> String {
    format!("shown_link:{request}:user:{}", user.0)
}

/// Seals the link of `request` for `user` to see once (a cookie's value).
pub fn seal_shown_link(
    vault: &Vault,
    request: credence_domain::RequestId,
    user: credence_domain::UserId,
    link: &str,
) -> Result<String> {
    Ok(vault
        .seal(link.as_bytes(), &shown_link_context(request, user))?
        .as_str()
        .to_string())
}

/// Opens what [`seal_shown_link`] sealed; `None` when it was sealed for
/// another request or user, or is not a sealed value at all.
pub fn open_shown_link(
    vault: &Vault,
    request: credence_domain::RequestId,
    user: credence_domain::UserId,
    sealed: &str,
) -> Option<SecretString> {
    vault
        .open_string(
            &Sealed::from_stored(sealed.to_string()),
            &shown_link_context(request, user),
        )
        .ok()
}

//! The usage log's reads (SPEC §8): what was done with a connection, for the
//! team that may see it, and with a requested credential's connections, for
//! its recipient above all and the sending team. The broker writes the log
//! (`credence_broker::usage`); the API and the recipient's page read it here.

use super::{access, Result};
use credence_domain::CredentialId;
use credence_store::{Db, Usage, User};

/// How many usage entries a read answers, newest first.
pub const READ_LIMIT: i64 = 1_000;

/// The usage of connection `id`, newest first, if `caller` may see the
/// connection (else the 404 of [`access::connection`]).
pub async fn of_connection(db: &mut Db, caller: &User, id: i64) -> Result<Vec<Usage>> {
    access::connection(db, caller, id).await?;
    Ok(db.list_usage_of_connection(id, READ_LIMIT).await?)
}

/// The usage of requested credential `id`'s connections, newest first, if
/// `caller` may see the credential. It stays readable after the credential
/// was revoked and its connection destroyed.
pub async fn of_credential(db: &mut Db, caller: &User, id: CredentialId) -> Result<Vec<Usage>> {
    access::credential(db, caller, id).await?;
    Ok(db
        .list_usage_of_credential(&id.to_string(), READ_LIMIT)
        .await?)
}

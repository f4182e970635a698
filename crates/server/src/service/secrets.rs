//! Secrets at rest: sealing a value into the `secrets` table, opening it at the
//! moment of use, and re-wrapping every data key after a key rotation.
//!
//! Each secret's vault context is `secret:<id>:<purpose>`, so a sealed value
//! copied into another row, or read for another purpose, does not open.

use super::{Error, Result};
use credence_store::Store;
use credence_vault::{Sealed, Vault};
use secrecy::SecretString;

fn context(id: &str, purpose: &str) -> String {
    format!("secret:{id}:{purpose}")
}

/// Seals `value` and stores it under a new id, which is returned.
pub async fn put(
    store: &Store,
    vault: &Vault,
    purpose: &str,
    value: &SecretString,
) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let sealed = vault.seal_str(value, &context(&id, purpose))?;
    store
        .db()
        .await?
        .insert_secret(&id, purpose, sealed.as_str())
        .await?;
    Ok(id)
}

/// Opens the secret `id`, which must have been stored for `purpose`.
pub async fn open(store: &Store, vault: &Vault, id: &str, purpose: &str) -> Result<SecretString> {
    let Some(stored) = store.db().await?.get_secret(id).await? else {
        return Err(Error::NotFound(format!("secret {id} not found")));
    };
    Ok(vault.open_string(&Sealed::from_stored(stored.sealed), &context(id, purpose))?)
}

/// What a rotation pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    pub rewrapped: u64,
    pub already_current: u64,
    /// Rows changed by someone else during the pass (already on the new key).
    pub changed_meanwhile: u64,
}

/// Re-wraps every secret's data key under the vault's current key version. The
/// sealed payloads stay as they are; both versions open during the pass, so the
/// service keeps running.
pub async fn rewrap_all(store: &Store, vault: &Vault) -> Result<Rewrapped> {
    let mut report = Rewrapped::default();
    let mut after = String::new();
    loop {
        let page = store.db().await?.list_secrets_after(&after, 500).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for stored in page {
            let sealed = Sealed::from_stored(stored.sealed.clone());
            match vault.rewrap(&sealed, &context(&stored.id, &stored.purpose))? {
                None => report.already_current += 1,
                Some(new) => {
                    if store
                        .db()
                        .await?
                        .rewrap_secret(&stored.id, &stored.sealed, new.as_str())
                        .await?
                    {
                        report.rewrapped += 1;
                    } else {
                        report.changed_meanwhile += 1;
                    }
                }
            }
        }
    }
    Ok(report)
}

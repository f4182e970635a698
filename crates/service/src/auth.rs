//! Signing in: passwords (argon2id), browser sessions, one-time setup links and
//! API tokens.

use super::audit::{self, Actor, Event};
use super::password_hashing::{HashingError, HashingGate};
use super::{random_token, token_hash, Error, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Duration, Utc};
use credence_domain::{ApiTokenId, NewPassword, Scopes, UserId, ValidationError};
use credence_store::{ApiToken, Store, User};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

/// How long a browser session lasts.
pub const SESSION_LIFETIME: Duration = Duration::days(14);
/// How long a setup link stays usable.
pub const SETUP_LINK_LIFETIME: Duration = Duration::days(3);

/// Hashes a password with argon2id off the async threads (it takes tens of ms
/// by design), in a turn of the hashing `gate`; when the gate is full the error
/// is busy ([`super::password_hashing::is_busy`]) and nothing was hashed.
pub async fn hash_password(gate: &HashingGate, password: NewPassword) -> Result<String> {
    gate.try_run(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| Error::Internal(anyhow::anyhow!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
}

/// A fixed hash to verify against when the email is unknown, so that the answer
/// takes as long for an unknown email as for a wrong password. Computed once,
/// on first need, inside a turn of the hashing gate (it is an argon2 hash too).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(b"not a password of anyone", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// What checking a password found.
#[derive(Debug)]
pub enum PasswordCheck {
    Right(User),
    /// The email is unknown or the password wrong (the caller must not say which).
    Wrong,
    /// The hashing gate is full: nothing was checked; try again shortly.
    Busy,
}

/// Checks an email and password under the hashing `gate`, answering `Busy` at
/// once rather than queueing when it is full.
pub async fn check_password(
    store: &Store,
    gate: &HashingGate,
    email: &str,
    password: SecretString,
) -> Result<PasswordCheck> {
    let user = store.db().await?.find_user_by_email(email).await?;
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let matches = gate
        .try_run(move || {
            let hash = hash.unwrap_or_else(|| dummy_hash().to_string());
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.expose_secret().as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await;
    let matches = match matches {
        Ok(matches) => matches,
        Err(HashingError::Busy) => return Ok(PasswordCheck::Busy),
        Err(error) => return Err(Error::Internal(error.into())),
    };
    Ok(
        match user.filter(|u| matches && u.password_hash.is_some()) {
            Some(user) => PasswordCheck::Right(user),
            None => PasswordCheck::Wrong,
        },
    )
}

/// Starts a session; returns the cookie value (the store keeps only its hash).
pub async fn start_session(store: &Store, user: UserId) -> Result<String> {
    let token = random_token();
    store
        .db()
        .await?
        .insert_session(
            &token_hash(&token),
            user,
            credence_store::now() + SESSION_LIFETIME,
        )
        .await?;
    Ok(token)
}

pub async fn session_user(store: &Store, token: &str) -> Result<Option<User>> {
    Ok(store
        .db()
        .await?
        .find_session_user(&token_hash(token))
        .await?)
}

pub async fn end_session(store: &Store, token: &str) -> Result<()> {
    Ok(store.db().await?.delete_session(&token_hash(token)).await?)
}

/// Makes a one-time link with which `user` chooses a password; returns the token.
pub async fn create_setup_link(db: &mut credence_store::Db, user: UserId) -> Result<String> {
    let token = random_token();
    db.insert_setup_link(&token_hash(&token), user, SETUP_LINK_LIFETIME)
        .await?;
    Ok(token)
}

pub async fn setup_link_user(store: &Store, token: &str) -> Result<Option<User>> {
    Ok(store
        .db()
        .await?
        .find_setup_link_user(&token_hash(token))
        .await?)
}

/// Uses a setup link: sets the password and spends the link, together. Every
/// session of the user ends with it, and every browser stops being known for
/// the user (a setup link is also how a forgotten password is reset: whoever
/// held the old one must neither stay signed in nor keep a known browser's own
/// tries); the caller starts the new session afterwards. The caller looks the
/// link up first, so that an unknown link costs no hash.
pub async fn complete_setup(
    store: &Store,
    gate: &HashingGate,
    token: &str,
    password: NewPassword,
) -> Result<UserId> {
    let hash = hash_password(gate, password).await?;
    let mut tx = store.begin().await?;
    let Some(user) = tx.consume_setup_link(&token_hash(token)).await? else {
        return Err(Error::NotFound(
            "this setup link is unknown, used or expired".into(),
        ));
    };
    tx.set_password_hash(user, &hash).await?;
    tx.delete_sessions_of_user(user).await?;
    tx.forget_browsers_of_user(user).await?;
    tx.delete_sign_in_challenges_of_user(user).await?;
    tx.commit().await?;
    Ok(user)
}

/// How far ahead an API token's expiry may be set.
pub const API_TOKEN_MAX_LIFETIME: Duration = Duration::days(365);

/// What a new API token is: its label, scopes and optional expiry.
pub struct NewApiToken<'a> {
    pub name: &'a str,
    pub scopes: &'a Scopes,
    /// From [`parse_api_token_expiry`]; `None`: it never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Reads an API token's expiry given as `field`: in the future and at most
/// [`API_TOKEN_MAX_LIFETIME`] ahead. A date alone means the end of that day (UTC).
pub fn parse_api_token_expiry(
    field: &str,
    raw: &str,
) -> std::result::Result<DateTime<Utc>, ValidationError> {
    let at = super::audit_log::parse_time(field, raw, super::audit_log::Bound::End)?;
    let now = credence_store::now();
    if at <= now {
        return Err(ValidationError::new(
            field,
            format!("{field} {} is not in the future", at.to_rfc3339()),
        ));
    }
    if at > now + API_TOKEN_MAX_LIFETIME {
        return Err(ValidationError::new(
            field,
            format!(
                "{field} {} is more than {} days ahead; the limit is {} days",
                at.to_rfc3339(),
                (at - now).num_days(),
                API_TOKEN_MAX_LIFETIME.num_days()
            ),
        ));
    }
    Ok(at)
}

/// Creates an API token for `user`; returns its record and its value, which is
/// shown once and never stored. Values are UUIDv4-shaped because Make clients
/// send those as `Authorization: Token …`. The creation is audited (label,
/// scopes, id, expiry; never the value) in each of the user's organizations.
pub async fn create_api_token(
    store: &Store,
    actor: &Actor,
    user: UserId,
    new: NewApiToken<'_>,
) -> Result<(ApiToken, SecretString)> {
    let name = credence_domain::EntityName::parse("name", new.name)?;
    let value = uuid::Uuid::new_v4().to_string();
    let mut tx = store.begin().await?;
    let record = tx
        .insert_api_token(
            user,
            name.as_str(),
            &token_hash(&value),
            new.scopes,
            new.expires_at,
        )
        .await?;
    audit_api_token(&mut tx, actor, "api_token.created", &record).await?;
    tx.commit().await?;
    Ok((record, SecretString::from(value)))
}

/// Deletes one of `user`'s API tokens, audited like its creation. This
/// instance's `cache` forgets it at once; other instances within
/// [`TOKEN_CACHE_TTL`].
pub async fn delete_api_token(
    store: &Store,
    cache: &TokenCache,
    actor: &Actor,
    user: UserId,
    token: ApiTokenId,
) -> Result<ApiToken> {
    let mut tx = store.begin().await?;
    let deleted = tx.delete_api_token(user, token).await?;
    audit_api_token(&mut tx, actor, "api_token.deleted", &deleted).await?;
    tx.commit().await?;
    cache.forget(deleted.id);
    Ok(deleted)
}

/// A token belongs to a user, not to an organization, so its audit entry goes
/// to every organization the user is in: each one's admins see who can act
/// there through the API.
async fn audit_api_token(
    db: &mut credence_store::Db,
    actor: &Actor,
    event: &str,
    token: &ApiToken,
) -> Result<()> {
    for membership in db.list_memberships(token.user_id).await? {
        audit::record(
            db,
            actor,
            Event {
                organization: membership.organization.id,
                team: None,
                name: event,
                target_kind: "api_token",
                target_id: token.id.to_string(),
                details: json!({
                    "label": token.name,
                    "scopes": token.scopes.iter().map(|scope| scope.as_str()).collect::<Vec<_>>(),
                    "userId": token.user_id,
                    "expiresAt": token.expires_at,
                }),
            },
        )
        .await?;
    }
    Ok(())
}

/// What an `Authorization` value names. (Matched at once by its caller, never
/// stored, so the size of `Valid` costs nothing worth a box.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum TokenCheck {
    /// A token in force, and its user.
    Valid(ApiToken, User),
    /// A token that expired at this time: it grants nothing.
    Expired(chrono::DateTime<chrono::Utc>),
    /// Nobody issued it, or it was deleted.
    Unknown,
}

/// Checks an API token: an expired one is never `Valid`, whoever asks (the
/// API, the broker and the MCP endpoint). A token found in force is
/// remembered in `cache` for [`TOKEN_CACHE_TTL`], so that a busy client costs
/// one hash and one map lookup per call rather than a database round trip.
/// Each valid use is noted in the cache's memory only; [`flush_token_uses`]
/// writes the latest use of each token in one batch.
pub async fn check_api_token(store: &Store, cache: &TokenCache, token: &str) -> Result<TokenCheck> {
    let hash = token_hash(token);
    let now = credence_store::now();
    let check = match cache.get(&hash) {
        Some((found, user)) => verdict(found, user, now),
        None => match store.db().await?.find_api_token(&hash).await? {
            Some((found, user)) => {
                let check = verdict(found, user, now);
                if let TokenCheck::Valid(found, user) = &check {
                    cache.put(hash, found, user);
                }
                check
            }
            None => TokenCheck::Unknown,
        },
    };
    if let TokenCheck::Valid(found, _) = &check {
        cache.note_use(found.id, now);
    }
    Ok(check)
}

/// How often a running instance writes the uses of API tokens it noted
/// ([`flush_token_uses`]); a token's `last_used_at` lags its last call by at
/// most this (and one write's duration), or, when the process is killed
/// rather than stopped, loses at most this much (README, "Several instances").
pub const TOKEN_USE_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes the uses of API tokens noted since the last flush, the latest per
/// token, in one transaction; answers how many tokens it wrote. On failure
/// the uses are noted again (a later use of the same token wins), so that the
/// next flush retries them.
pub async fn flush_token_uses(store: &Store, cache: &TokenCache) -> Result<usize> {
    let uses = cache.take_uses();
    if uses.is_empty() {
        return Ok(0);
    }
    let written: Result<()> = async {
        let mut tx = store.begin().await?;
        tx.record_api_token_uses(&uses).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    match written {
        Ok(()) => Ok(uses.len()),
        Err(error) => {
            for (token, at) in uses {
                cache.note_use(token, at);
            }
            Err(error)
        }
    }
}

fn verdict(found: ApiToken, user: User, now: DateTime<Utc>) -> TokenCheck {
    match found.expires_at {
        Some(at) if at <= now => TokenCheck::Expired(at),
        _ => TokenCheck::Valid(found, user),
    }
}

/// How long a verified API token is believed without asking the database. A
/// token deleted on this instance is forgotten at once; one deleted on
/// another instance keeps working here for at most this long (README,
/// "Several instances").
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Verified API tokens by hash, each for [`TOKEN_CACHE_TTL`]. Bounded: when
/// full, the stale entries go, and if none are stale, all of them (a refill
/// costs one query per token). Only tokens in force are kept — an unknown
/// value is asked about every time, so guessing cannot fill it.
///
/// It also holds the uses noted since the last [`flush_token_uses`]: one
/// time per token (the latest), so it is bounded by the number of tokens in
/// use, not of calls.
pub struct TokenCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, CachedToken>>,
    ttl: std::time::Duration,
    capacity: usize,
    uses: std::sync::Mutex<std::collections::HashMap<ApiTokenId, DateTime<Utc>>>,
}

struct CachedToken {
    token: ApiToken,
    user: User,
    until: std::time::Instant,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(TOKEN_CACHE_TTL, 10_000)
    }
}

impl TokenCache {
    pub fn new(ttl: std::time::Duration, capacity: usize) -> TokenCache {
        TokenCache {
            entries: Default::default(),
            ttl,
            capacity,
            uses: Default::default(),
        }
    }

    /// Notes that `token` was used at `at` (kept: the latest).
    fn note_use(&self, token: ApiTokenId, at: DateTime<Utc>) {
        let mut uses = self
            .uses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let latest = uses.entry(token).or_insert(at);
        if *latest < at {
            *latest = at;
        }
    }

    /// The uses noted since the last call, emptied.
    fn take_uses(&self) -> Vec<(ApiTokenId, DateTime<Utc>)> {
        let mut uses = self
            .uses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut taken: Vec<_> = std::mem::take(&mut *uses).into_iter().collect();
        // In id order: two instances' batches update rows in one order.
        taken.sort_by_key(|(token, _)| token.0);
        taken
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, CachedToken>> {
        // A panic while holding the lock leaves only a map of copies behind.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, hash: &str) -> Option<(ApiToken, User)> {
        let mut entries = self.entries();
        match entries.get(hash) {
            Some(cached) if cached.until > std::time::Instant::now() => {
                Some((cached.token.clone(), cached.user.clone()))
            }
            Some(_) => {
                entries.remove(hash);
                None
            }
            None => None,
        }
    }

    fn put(&self, hash: String, token: &ApiToken, user: &User) {
        let now = std::time::Instant::now();
        let mut entries = self.entries();
        if entries.len() >= self.capacity {
            entries.retain(|_, cached| cached.until > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            hash,
            CachedToken {
                token: token.clone(),
                user: user.clone(),
                until: now + self.ttl,
            },
        );
    }

    /// Forgets a token (it was deleted here), and its uses not yet written.
    pub fn forget(&self, token: ApiTokenId) {
        self.entries().retain(|_, cached| cached.token.id != token);
        self.uses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&token);
    }
}

//! Signing in: passwords (argon2id), browser sessions, one-time setup links and
//! API tokens.

use super::password_hashing::{HashingError, HashingGate};
use super::{random_token, token_hash, Error, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::Duration;
use credence_domain::{NewPassword, Scopes, UserId};
use credence_store::{ApiToken, Store, User};
use secrecy::{ExposeSecret, SecretString};

/// How long a browser session lasts.
pub const SESSION_LIFETIME: Duration = Duration::days(14);
/// How long a setup link stays usable.
pub const SETUP_LINK_LIFETIME: Duration = Duration::days(3);

/// Hashes a password with argon2id off the async threads (it takes tens of ms
/// by design), waiting for a turn of the hashing gate.
pub async fn hash_password(password: NewPassword) -> Result<String> {
    HashingGate::shared()
        .run(move || {
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
/// takes as long for an unknown email as for a wrong password.
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

/// Checks an email and password; `None` when either is wrong (the caller must
/// not say which).
pub async fn verify_password(
    store: &Store,
    email: &str,
    password: SecretString,
) -> Result<Option<User>> {
    match check_password(store, email, password).await? {
        PasswordCheck::Right(user) => Ok(Some(user)),
        PasswordCheck::Wrong => Ok(None),
        PasswordCheck::Busy => Err(Error::Internal(HashingError::Busy.into())),
    }
}

/// Checks an email and password under the hashing gate, answering `Busy` at
/// once rather than queueing when it is full.
pub async fn check_password(
    store: &Store,
    email: &str,
    password: SecretString,
) -> Result<PasswordCheck> {
    let user = store.db().await?.find_user_by_email(email).await?;
    let hash = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_string());
    let matches = HashingGate::shared()
        .try_run(move || {
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

/// Uses a setup link: sets the password and spends the link, together.
pub async fn complete_setup(store: &Store, token: &str, password: NewPassword) -> Result<UserId> {
    let hash = hash_password(password).await?;
    let mut tx = store.begin().await?;
    let Some(user) = tx.consume_setup_link(&token_hash(token)).await? else {
        return Err(Error::NotFound(
            "this setup link is unknown, used or expired".into(),
        ));
    };
    tx.set_password_hash(user, &hash).await?;
    tx.commit().await?;
    Ok(user)
}

/// Creates an API token for `user`; returns its record and its value, which is
/// shown once and never stored. Values are UUIDv4-shaped because Make clients
/// send those as `Authorization: Token …`.
pub async fn create_api_token(
    store: &Store,
    user: UserId,
    name: &str,
    scopes: &Scopes,
) -> Result<(ApiToken, SecretString)> {
    let name = credence_domain::EntityName::parse("name", name)?;
    let value = uuid::Uuid::new_v4().to_string();
    let record = store
        .db()
        .await?
        .insert_api_token(user, name.as_str(), &token_hash(&value), scopes)
        .await?;
    Ok((record, SecretString::from(value)))
}

/// The token and user an `Authorization` value names, if any.
pub async fn api_token_user(store: &Store, token: &str) -> Result<Option<(ApiToken, User)>> {
    Ok(store.db().await?.find_api_token(&token_hash(token)).await?)
}

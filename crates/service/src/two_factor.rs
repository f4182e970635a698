//! Two-factor sign-in with TOTP (RFC 6238; issue 14, SPEC §12): enrolment,
//! the second step of a sign-in, recovery codes, and organizations that
//! require it of their people.
//!
//! * **The secret** is 160 random bits (RFC 4226's recommendation), used with
//!   SHA-1, 6 digits and 30-second steps — what every authenticator app
//!   reads from an `otpauth://` QR code. It is sealed by the vault, bound to
//!   its row and its user ([`secret_context`]), and opened only here: to
//!   show it while an enrolment waits for its first code, and to check a
//!   code. Once confirmed it is never shown again.
//! * **Codes** are accepted for the current step and one either side (clock
//!   drift), and only for a step later than the last one accepted
//!   (`Db::use_two_factor_step`, a guarded `UPDATE`): a code seen over a
//!   shoulder or replayed by a proxy is refused.
//! * **Recovery codes**: ten, shown once, each usable once. Each is 80
//!   random bits, so a plain SHA-256 of it is as good as a slow hash: nobody
//!   can enumerate 2^80 candidates against a stolen table, whereas a slow
//!   hash exists to protect low-entropy secrets people choose (passwords).
//! * **The second step** of a sign-in is a `sign_in_challenges` row, not a
//!   session: it opens only the code form, lives [`CHALLENGE_LIFETIME`],
//!   allows [`CHALLENGE_ATTEMPTS`] answers, and each answer is also counted
//!   by the sign-in limits like a password (the caller admits it first).
//! * Every change — enabled, disabled, a recovery code used, recovery codes
//!   regenerated, an organization's requirement changed — writes its audit
//!   entry in its own transaction. A user belongs to no one organization, so
//!   (like an API token's) their entries go to each organization they are in.

use super::audit::{self, Actor, Event};
use super::{random_token, token_hash, Error, Result};
use chrono::{DateTime, Duration, Utc};
use credence_domain::{OrgRole, OrganizationId, UserId, ValidationError};
use credence_store::{Db, Organization, Store, User};
use credence_vault::{Sealed, Vault};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

/// The issuer authenticator apps show beside the account.
pub const ISSUER: &str = "Credence";
/// Seconds per time step (RFC 6238's default, what every app assumes).
pub const STEP_SECONDS: i64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// How many recovery codes an enrolment gets.
pub const RECOVERY_CODES: usize = 10;
/// How long the second step of a sign-in waits for its code.
pub const CHALLENGE_LIFETIME: Duration = Duration::minutes(5);
/// How many answers the second step of a sign-in takes before the password
/// must be typed again.
pub const CHALLENGE_ATTEMPTS: i64 = 5;
/// The longest code field read, in characters.
pub const CODE_LIMIT: usize = 64;
/// Letters of a recovery code (base32, 5 bits each: 80 bits).
const RECOVERY_CODE_LETTERS: usize = 16;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The vault context of the TOTP secret of enrolment `row` of user `user`:
/// a sealed text copied to another row, or a row moved to another user,
/// does not open.
pub fn secret_context(row: &str, user: i64) -> String {
    format!("two_factor:{row}:user:{user}:totp_secret")
}

/// Where a user stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// When it was turned on; `None` while off.
    pub enabled_at: Option<DateTime<Utc>>,
    /// An enrolment was started and waits for its first code.
    pub pending: bool,
    pub recovery_codes_left: i64,
}

impl Status {
    pub fn enabled(&self) -> bool {
        self.enabled_at.is_some()
    }
}

/// An enrolment waiting for its first code: the secret as base32 text (to
/// type into an app) and as the `otpauth://` URL a QR code carries.
pub struct Enrolment {
    pub secret: SecretString,
    pub url: SecretString,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrolment([redacted])")
    }
}

/// Fresh recovery codes, to be shown once (`xxxx-xxxx-xxxx-xxxx`).
pub struct RecoveryCodes(pub Vec<SecretString>);

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryCodes({} codes, redacted)", self.0.len())
    }
}

/// What a code field held.
enum Code {
    Totp(String),
    /// Normalized: lower case, no dashes.
    Recovery(String),
}

/// Reads a code typed into `field`: six digits, or a recovery code (spaces
/// and dashes ignored, any case). The error never repeats what was typed.
fn parse_code(field: &str, raw: &str) -> Result<Code, ValidationError> {
    let length = raw.chars().count();
    if length > CODE_LIMIT {
        return Err(ValidationError::new(
            field,
            format!("{field} is {length} characters; the limit is {CODE_LIMIT}"),
        ));
    }
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    if cleaned.is_empty() {
        return Err(ValidationError::new(
            field,
            format!("{field} is empty; type the {DIGITS}-digit code your authenticator app shows, or a recovery code"),
        ));
    }
    if cleaned.len() == DIGITS && cleaned.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Code::Totp(cleaned));
    }
    if cleaned.len() == RECOVERY_CODE_LETTERS && cleaned.bytes().all(|b| BASE32.contains(&b)) {
        return Ok(Code::Recovery(cleaned));
    }
    Err(ValidationError::new(
        field,
        format!("{field} is neither a {DIGITS}-digit code nor a recovery code ({RECOVERY_CODE_LETTERS} letters and digits)"),
    ))
}

fn wrong_code(field: &str) -> Error {
    Error::Invalid(vec![ValidationError::new(
        field,
        format!("{field} is not the current code of your authenticator app; check that your phone's clock is right and type the code shown now"),
    )])
}

fn used_code(field: &str) -> Error {
    Error::Invalid(vec![ValidationError::new(
        field,
        format!("{field} was used already; wait for the next code your app shows"),
    )])
}

/// The TOTP of a base32 secret.
fn totp_of(secret: &SecretString) -> Result<TOTP> {
    let bytes = Secret::Encoded(secret.expose_secret().to_string())
        .to_bytes()
        .map_err(|_| Error::Internal(anyhow::anyhow!("a stored TOTP secret is not base32")))?;
    TOTP::new(Algorithm::SHA1, DIGITS, 1, STEP_SECONDS as u64, bytes)
        .map_err(|e| Error::Internal(anyhow::anyhow!("a stored TOTP secret is unusable: {e}")))
}

/// The time step `code` belongs to at `now` (this one, or one either side),
/// compared in constant time; `None` when it is none of them.
fn matching_step(totp: &TOTP, code: &str, now: DateTime<Utc>) -> Option<i64> {
    let current = now.timestamp().div_euclid(STEP_SECONDS);
    let mut found = None;
    for step in [current - 1, current, current + 1] {
        let Ok(at) = u64::try_from(step * STEP_SECONDS) else {
            continue;
        };
        if bool::from(totp.generate(at).as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

/// `otpauth://totp/…` for `email`, the format authenticator apps read.
fn otpauth_url(secret: &str, email: &str) -> String {
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        issuer = percent_encode(ISSUER),
        account = percent_encode(email),
    )
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Ten new recovery codes and their hashes.
fn new_recovery_codes() -> (RecoveryCodes, Vec<String>) {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut bytes = [0u8; RECOVERY_CODE_LETTERS];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        // 32 divides 256: taking each byte modulo 32 keeps the letters uniform.
        let letters: String = bytes
            .iter()
            .map(|b| BASE32[usize::from(*b % 32)] as char)
            .collect();
        hashes.push(token_hash(&letters));
        let shown = letters
            .as_bytes()
            .chunks(4)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect::<Vec<_>>()
            .join("-");
        codes.push(SecretString::from(shown));
    }
    (RecoveryCodes(codes), hashes)
}

fn open_secret(vault: &Vault, row: &credence_store::TwoFactor) -> Result<SecretString> {
    Ok(vault.open_string(
        &Sealed::from_stored(row.secret_sealed.clone()),
        &secret_context(&row.id, row.user_id.0),
    )?)
}

/// Audits `event` about `user` in each organization they are in.
async fn audit_user(
    db: &mut Db,
    actor: &Actor,
    event: &str,
    user: &User,
    details: serde_json::Value,
) -> Result<()> {
    let mut details = details;
    if let Some(object) = details.as_object_mut() {
        object.insert("userId".into(), json!(user.id));
        object.insert("email".into(), json!(user.email));
    }
    for membership in db.list_memberships(user.id).await? {
        audit::record(
            db,
            actor,
            Event {
                organization: membership.organization.id,
                team: None,
                name: event,
                target_kind: "user",
                target_id: user.id.to_string(),
                details: details.clone(),
            },
        )
        .await?;
    }
    Ok(())
}

/// Where `user` stands.
pub async fn status(store: &Store, user: UserId) -> Result<Status> {
    let mut db = store.db().await?;
    let row = db.get_two_factor(user).await?;
    let enabled_at = row.as_ref().and_then(|row| row.confirmed_at);
    let recovery_codes_left = if enabled_at.is_some() {
        db.recovery_codes_left(user).await?
    } else {
        0
    };
    Ok(Status {
        enabled_at,
        pending: row.is_some() && enabled_at.is_none(),
        recovery_codes_left,
    })
}

/// Whether `user` signs in with a second factor.
pub async fn is_enabled(store: &Store, user: UserId) -> Result<bool> {
    Ok(store
        .db()
        .await?
        .get_two_factor(user)
        .await?
        .is_some_and(|row| row.confirmed_at.is_some()))
}

/// Starts (or starts again) an enrolment for `user` with a new secret.
/// Refused while two-factor sign-in is on: it is turned off first.
pub async fn start_enrolment(store: &Store, vault: &Vault, user: &User) -> Result<()> {
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = SecretString::from(Secret::Raw(bytes.to_vec()).to_encoded().to_string());
    let mut tx = store.begin().await?;
    if tx
        .get_two_factor(user.id)
        .await?
        .is_some_and(|row| row.confirmed_at.is_some())
    {
        return Err(Error::Conflict(
            "two-factor authentication is on already; turn it off before enrolling again".into(),
        ));
    }
    tx.delete_unconfirmed_two_factor(user.id).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let sealed = vault.seal_str(&secret, &secret_context(&id, user.id.0))?;
    tx.insert_two_factor(&id, user.id, sealed.as_str()).await?;
    tx.commit().await?;
    Ok(())
}

/// The enrolment of `user` waiting for its first code, to show: `None` when
/// none waits (never started, or already confirmed — then the secret is
/// never shown again).
pub async fn pending_enrolment(
    store: &Store,
    vault: &Vault,
    user: &User,
) -> Result<Option<Enrolment>> {
    let Some(row) = store.db().await?.get_two_factor(user.id).await? else {
        return Ok(None);
    };
    if row.confirmed_at.is_some() {
        return Ok(None);
    }
    let secret = open_secret(vault, &row)?;
    let url = SecretString::from(otpauth_url(secret.expose_secret(), &user.email));
    Ok(Some(Enrolment { secret, url }))
}

/// Confirms `user`'s waiting enrolment with a current `code` (field `code`):
/// two-factor sign-in is on from now, and the recovery codes returned are
/// shown once. Audited `two_factor.enabled`.
pub async fn confirm_enrolment(
    store: &Store,
    vault: &Vault,
    actor: &Actor,
    user: &User,
    code: &str,
    now: DateTime<Utc>,
) -> Result<RecoveryCodes> {
    let Code::Totp(code) = parse_code("code", code)? else {
        return Err(ValidationError::new(
            "code",
            format!(
                "code must be the {DIGITS}-digit code your authenticator app shows for Credence"
            ),
        )
        .into());
    };
    let mut tx = store.begin().await?;
    let row =
        match tx.get_two_factor(user.id).await? {
            Some(row) if row.confirmed_at.is_none() => row,
            Some(_) => {
                return Err(Error::Conflict(
                    "two-factor authentication is on already".into(),
                ))
            }
            None => return Err(Error::Conflict(
                "no enrolment waits for a code; start setting up two-factor authentication again"
                    .into(),
            )),
        };
    let totp = totp_of(&open_secret(vault, &row)?)?;
    let step = matching_step(&totp, &code, now).ok_or_else(|| wrong_code("code"))?;
    if !tx
        .confirm_two_factor(&row.id, &row.secret_sealed, step)
        .await?
    {
        return Err(Error::Conflict(
            "the enrolment changed meanwhile; start setting up two-factor authentication again"
                .into(),
        ));
    }
    let (codes, hashes) = new_recovery_codes();
    tx.replace_recovery_codes(user.id, &hashes).await?;
    audit_user(
        &mut tx,
        actor,
        "two_factor.enabled",
        user,
        json!({ "recoveryCodes": RECOVERY_CODES }),
    )
    .await?;
    tx.commit().await?;
    Ok(codes)
}

/// How a code was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    Totp,
    RecoveryCode,
}

/// Checks and spends `code` (the field `code`) for `user`'s confirmed enrolment
/// `row` inside `db`: a TOTP code of a step not used before, or (when
/// `recovery` allows it) an unused recovery code. A recovery code used is
/// audited in the same transaction.
async fn spend_code(
    db: &mut Db,
    vault: &Vault,
    row: &credence_store::TwoFactor,
    user: &User,
    code: Code,
    recovery: bool,
    now: DateTime<Utc>,
) -> Result<Verified> {
    let field = "code";
    match code {
        Code::Totp(code) => {
            let totp = totp_of(&open_secret(vault, row)?)?;
            let step = matching_step(&totp, &code, now).ok_or_else(|| wrong_code(field))?;
            if !db.use_two_factor_step(user.id, step).await? {
                return Err(used_code(field));
            }
            Ok(Verified::Totp)
        }
        Code::Recovery(_) if !recovery => Err(ValidationError::new(
            field,
            format!("{field} must be the {DIGITS}-digit code of your authenticator app here, not a recovery code"),
        )
        .into()),
        Code::Recovery(code) => {
            if !db.use_recovery_code(user.id, &token_hash(&code)).await? {
                return Err(ValidationError::new(
                    field,
                    format!("{field} is not one of your unused recovery codes"),
                )
                .into());
            }
            let left = db.recovery_codes_left(user.id).await?;
            audit_user(
                db,
                &Actor::user(user),
                "two_factor.recovery_code_used",
                user,
                json!({ "recoveryCodesLeft": left }),
            )
            .await?;
            Ok(Verified::RecoveryCode)
        }
    }
}

/// The confirmed enrolment of `user` in `db`, or a conflict saying it is off.
async fn enabled_row(db: &mut Db, user: UserId) -> Result<credence_store::TwoFactor> {
    match db.get_two_factor(user).await? {
        Some(row) if row.confirmed_at.is_some() => Ok(row),
        _ => Err(Error::Conflict(
            "two-factor authentication is not on for this account".into(),
        )),
    }
}

/// Turns two-factor sign-in off for `user`, given a current code or a
/// recovery code (field `code`): the secret and the recovery codes are
/// deleted. Audited `two_factor.disabled`.
pub async fn disable(
    store: &Store,
    vault: &Vault,
    actor: &Actor,
    user: &User,
    code: &str,
    now: DateTime<Utc>,
) -> Result<Verified> {
    let code = parse_code("code", code)?;
    let mut tx = store.begin().await?;
    let row = enabled_row(&mut tx, user.id).await?;
    let verified = spend_code(&mut tx, vault, &row, user, code, true, now).await?;
    tx.delete_two_factor(user.id).await?;
    tx.delete_sign_in_challenges_of_user(user.id).await?;
    audit_user(&mut tx, actor, "two_factor.disabled", user, json!({})).await?;
    tx.commit().await?;
    Ok(verified)
}

/// Turns two-factor sign-in off for `user` without a code: what an operator
/// does for someone who lost both their authenticator and their recovery
/// codes (`credence user reset-two-factor`). The secret, the recovery codes
/// and any sign-in half done are deleted; where an organization requires
/// two-factor sign-in, the user's next sign-in goes to enrolment. Audited
/// `two_factor.reset` in each of their organizations. A conflict when the
/// user has none (nothing is changed).
pub async fn reset(store: &Store, actor: &Actor, user: &User) -> Result<()> {
    let mut tx = store.begin().await?;
    if !tx.delete_two_factor(user.id).await? {
        return Err(Error::Conflict(format!(
            "user {} has no two-factor authentication to reset",
            user.email
        )));
    }
    tx.delete_sign_in_challenges_of_user(user.id).await?;
    audit_user(&mut tx, actor, "two_factor.reset", user, json!({})).await?;
    tx.commit().await?;
    Ok(())
}

/// New recovery codes for `user` in place of every old one, given a current
/// code of their authenticator app (field `code`). Audited
/// `two_factor.recovery_codes_regenerated`.
pub async fn regenerate_recovery_codes(
    store: &Store,
    vault: &Vault,
    actor: &Actor,
    user: &User,
    code: &str,
    now: DateTime<Utc>,
) -> Result<RecoveryCodes> {
    let code = parse_code("code", code)?;
    let mut tx = store.begin().await?;
    let row = enabled_row(&mut tx, user.id).await?;
    spend_code(&mut tx, vault, &row, user, code, false, now).await?;
    let (codes, hashes) = new_recovery_codes();
    tx.replace_recovery_codes(user.id, &hashes).await?;
    audit_user(
        &mut tx,
        actor,
        "two_factor.recovery_codes_regenerated",
        user,
        json!({ "recoveryCodes": RECOVERY_CODES }),
    )
    .await?;
    tx.commit().await?;
    Ok(codes)
}

/// Starts the second step of `user`'s sign-in, which goes to `next` once
/// done; returns the challenge's token (the store keeps only its hash).
pub async fn start_challenge(store: &Store, user: UserId, next: &str) -> Result<String> {
    let token = random_token();
    store
        .db()
        .await?
        .insert_sign_in_challenge(
            &token_hash(&token),
            user,
            next,
            credence_store::now() + CHALLENGE_LIFETIME,
        )
        .await?;
    Ok(token)
}

/// The user a live challenge is for (to show its form and to count its
/// answers against the user's sign-in limits); `None` when it is unknown,
/// expired or done.
pub async fn challenge_user(store: &Store, token: &str) -> Result<Option<User>> {
    let mut db = store.db().await?;
    let Some(challenge) = db.find_sign_in_challenge(&token_hash(token)).await? else {
        return Ok(None);
    };
    Ok(db.get_user(challenge.user_id).await?)
}

/// What an answer to the second step came to.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    /// Signed in: start the session and go to `next`.
    Right {
        user: User,
        next: String,
        verified: Verified,
    },
    /// Not the code; `tries_left` more answers are taken (0: the password
    /// must be typed again).
    Wrong { error: Error, tries_left: i64 },
    /// No such challenge (unknown, expired, used up, or two-factor sign-in
    /// was turned off meanwhile): sign in again.
    Gone,
}

/// Answers the challenge `token` with `code` (field `code`) at `now`. A
/// malformed code is `Invalid` and counts nothing; any other answer counts
/// one of the challenge's tries.
pub async fn answer_challenge(
    store: &Store,
    vault: &Vault,
    token: &str,
    code: &str,
    now: DateTime<Utc>,
) -> Result<Answer> {
    let code = parse_code("code", code)?;
    let hash = token_hash(token);
    let mut tx = store.begin().await?;
    let Some(challenge) = tx.count_sign_in_challenge_attempt(&hash).await? else {
        return Ok(Answer::Gone);
    };
    let enrolled = match tx.get_two_factor(challenge.user_id).await? {
        Some(row) if row.confirmed_at.is_some() => Some(row),
        _ => None,
    };
    let user = tx.get_user(challenge.user_id).await?;
    let (Some(row), Some(user), true) = (enrolled, user, challenge.attempts <= CHALLENGE_ATTEMPTS)
    else {
        tx.delete_sign_in_challenge(&hash).await?;
        tx.commit().await?;
        return Ok(Answer::Gone);
    };
    // The code is checked inside a savepoint-free transaction: a wrong code
    // changes nothing but the try counted, which must stay counted.
    match spend_code(&mut tx, vault, &row, &user, code, true, now).await {
        Ok(verified) => {
            tx.delete_sign_in_challenge(&hash).await?;
            tx.commit().await?;
            Ok(Answer::Right {
                user,
                next: challenge.next_path,
                verified,
            })
        }
        Err(error @ Error::Invalid(_)) => {
            let tries_left = (CHALLENGE_ATTEMPTS - challenge.attempts).max(0);
            if tries_left == 0 {
                tx.delete_sign_in_challenge(&hash).await?;
            }
            tx.commit().await?;
            Ok(Answer::Wrong { error, tries_left })
        }
        Err(error) => Err(error),
    }
}

/// Whether `organization` requires two-factor sign-in, for someone in it; a
/// 404 for anyone else.
pub async fn required(store: &Store, caller: &User, organization: OrganizationId) -> Result<bool> {
    let mut db = store.db().await?;
    if db
        .organization_role(organization, caller.id)
        .await?
        .is_none()
    {
        return Err(Error::NotFound(format!(
            "organization {organization} not found"
        )));
    }
    Ok(db.organization_requires_two_factor(organization).await?)
}

/// Sets whether `organization` requires two-factor sign-in of everyone in
/// it: its owners only, and only once the owner has it on themself (so that
/// turning it on does not lock them out first). Answers whether it changed;
/// a change is audited `two_factor.enforcement_changed`.
pub async fn set_required(
    store: &Store,
    actor: &Actor,
    caller: &User,
    organization: OrganizationId,
    required: bool,
) -> Result<bool> {
    let mut tx = store.begin().await?;
    match tx.organization_role(organization, caller.id).await? {
        None => {
            return Err(Error::NotFound(format!(
                "organization {organization} not found"
            )))
        }
        Some(OrgRole::Owner) => {}
        Some(role) => {
            return Err(Error::Forbidden(format!(
                "only owners of organization {organization} may change whether it requires two-factor authentication; you are {role}"
            )))
        }
    }
    if required
        && tx
            .get_two_factor(caller.id)
            .await?
            .is_none_or(|row| row.confirmed_at.is_none())
    {
        return Err(Error::Conflict(format!(
            "turn on two-factor authentication for yourself before requiring it in organization {organization}"
        )));
    }
    let changed = tx
        .set_organization_two_factor(organization, required)
        .await?;
    if changed {
        audit::record(
            &mut tx,
            actor,
            Event {
                organization,
                team: None,
                name: "two_factor.enforcement_changed",
                target_kind: "organization",
                target_id: organization.to_string(),
                details: json!({ "required": required }),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(changed)
}

/// The organizations of `user` that require two-factor sign-in while they
/// have none: empty when nothing keeps them from the app.
pub async fn awaiting_enrolment(store: &Store, user: UserId) -> Result<Vec<Organization>> {
    Ok(store
        .db()
        .await?
        .organizations_awaiting_two_factor(user)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totp() -> TOTP {
        // RFC 6238's SHA-1 test secret.
        TOTP::new(Algorithm::SHA1, 8, 1, 30, b"12345678901234567890".to_vec()).unwrap()
    }

    #[test]
    fn rfc_6238_vectors() {
        let totp = totp();
        assert_eq!(totp.generate(59), "94287082");
        assert_eq!(totp.generate(1_111_111_109), "07081804");
        assert_eq!(totp.generate(20_000_000_000), "65353130");
    }

    #[test]
    fn a_code_matches_its_step_and_the_neighbours_only() {
        let totp = totp();
        let at = DateTime::from_timestamp(1_111_111_109, 0).unwrap();
        let step = 1_111_111_109 / 30;
        assert_eq!(matching_step(&totp, "07081804", at), Some(step));
        let later = at + Duration::seconds(30);
        assert_eq!(matching_step(&totp, "07081804", later), Some(step));
        let much_later = at + Duration::seconds(90);
        assert_eq!(matching_step(&totp, "07081804", much_later), None);
        assert_eq!(matching_step(&totp, "00000000", at), None);
    }

    #[test]
    fn codes_parse_and_errors_name_the_field_not_the_value() {
        assert!(matches!(parse_code("code", " 123 456 "), Ok(Code::Totp(c)) if c == "123456"));
        assert!(
            matches!(parse_code("code", "ABCD-efgh-2345-6777"), Ok(Code::Recovery(c)) if c == "abcdefgh23456777")
        );
        for bad in [
            "",
            "12345",
            "1234567",
            "abcd-efgh-2345-6781",
            &"9".repeat(65),
        ] {
            let error = parse_code("code", bad).err().unwrap();
            assert_eq!(error.field, "code");
            assert!(error.message.starts_with("code "), "{}", error.message);
            if bad.len() > 4 {
                assert!(!error.message.contains(bad), "{}", error.message);
            }
        }
    }

    #[test]
    fn recovery_codes_are_distinct_well_formed_and_hashed() {
        let (codes, hashes) = new_recovery_codes();
        assert_eq!(codes.0.len(), RECOVERY_CODES);
        let mut seen = std::collections::BTreeSet::new();
        for (code, hash) in codes.0.iter().zip(&hashes) {
            let shown = code.expose_secret();
            assert_eq!(shown.len(), 19, "{shown}");
            let Ok(Code::Recovery(normal)) = parse_code("code", shown) else {
                panic!("a recovery code parses as one");
            };
            assert_eq!(&token_hash(&normal), hash);
            assert!(seen.insert(normal));
        }
    }

    #[test]
    fn the_otpauth_url_names_issuer_account_and_parameters() {
        let url = otpauth_url("JBSWY3DPEHPK3PXP", "ada+x@agency.example");
        assert_eq!(
            url,
            "otpauth://totp/Credence:ada%2Bx%40agency.example?secret=JBSWY3DPEHPK3PXP&issuer=Credence&algorithm=SHA1&digits=6&period=30"
        );
    }
}

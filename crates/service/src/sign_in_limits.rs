//! Sign-in limits: passwords cannot be guessed quickly, and guessing at an
//! account does not keep its owner out.
//!
//! Every attempt is counted in the database, so all instances sharing it share
//! the counts, under keys that are HMACs with a random key kept in that
//! database (an email typed into the wrong field — perhaps a password — is
//! never kept in the clear, nor as a hash a dictionary reverses). A *source* is an IPv4 address or an IPv6 /64
//! (one subscriber's usual allocation: rotating addresses inside it gains
//! nothing). An attempt from an unknown browser counts against:
//!
//! * its source (`per_source`), whatever the account;
//! * the account at that source (`per_account_at_source`): a guesser slows
//!   down only themself;
//! * the account across all sources (`per_account`), the ceiling against
//!   guessing from many sources. Past it, unknown browsers wait for the window
//!   to end, even with the right password (the answer a second factor would
//!   give, once there is one).
//!
//! A *known browser* — one that presents the `credence_browser` token issued
//! when this account last signed in on it — counts only against the account on
//! that browser (`per_known_browser`), so its owner signs in whatever an
//! attacker does elsewhere. Each key's window starts at its first attempt and
//! lasts `window`; a right password takes its attempt back.
//!
//! The limits also carry the [`HashingGate`] every password hash of the
//! application goes through (tests give each application its own).

use super::clock::Clock;
use super::password_hashing::HashingGate;
use super::{random_token, token_hash, Result};
use chrono::{DateTime, Utc};
use credence_domain::UserId;
use credence_store::Store;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a browser stays known after its last sign-in.
pub const KNOWN_BROWSER_LIFETIME: chrono::Duration = chrono::Duration::days(365);

/// The limits, and the clock they count time by (tests set it).
#[derive(Clone)]
pub struct SignInLimits {
    /// How long a counter's window lasts from its first attempt.
    pub window: Duration,
    pub per_source: i64,
    pub per_account_at_source: i64,
    pub per_account: i64,
    pub per_known_browser: i64,
    clock: Clock,
    hashing: Arc<HashingGate>,
}

impl std::fmt::Debug for SignInLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInLimits")
            .field("window", &self.window)
            .field("per_source", &self.per_source)
            .field("per_account_at_source", &self.per_account_at_source)
            .field("per_account", &self.per_account)
            .field("per_known_browser", &self.per_known_browser)
            .finish_non_exhaustive()
    }
}

impl Default for SignInLimits {
    /// In five minutes: 20 attempts per source, 5 per account at one source,
    /// 10 per account from unknown browsers everywhere, 5 per known browser.
    fn default() -> Self {
        SignInLimits {
            window: Duration::from_secs(300),
            per_source: 20,
            per_account_at_source: 5,
            per_account: 10,
            per_known_browser: 5,
            clock: Clock::system(),
            hashing: HashingGate::shared(),
        }
    }
}

impl SignInLimits {
    /// The same limits, counting time by `clock` (tests move it by hand).
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Clock::from_fn(clock);
        self
    }

    /// The clock of the sign-in: its counters' windows, and the time step
    /// a two-factor code is checked against (`two_factor`).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The same limits, hashing passwords behind `gate` instead of the
    /// process's shared one (tests fill a small gate to see it refuse).
    pub fn with_hashing_gate(mut self, gate: Arc<HashingGate>) -> Self {
        self.hashing = gate;
        self
    }

    /// The gate every password hash of the application goes through.
    pub fn hashing_gate(&self) -> &HashingGate {
        &self.hashing
    }

    fn now_seconds(&self) -> i64 {
        self.clock.now().timestamp()
    }

    fn window_seconds(&self) -> i64 {
        i64::try_from(self.window.as_secs())
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

/// Where an attempt comes from, as the limits count it: an IPv4 address, or
/// the /64 of an IPv6 address (an IPv4-mapped IPv6 address is its IPv4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source(String);

impl Source {
    pub fn of(address: IpAddr) -> Source {
        match address.to_canonical() {
            IpAddr::V4(v4) => Source(v4.to_string()),
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                Source(format!("{}/64", std::net::Ipv6Addr::from(network)))
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether an attempt may check its password.
#[derive(Debug)]
pub enum Admission {
    Go(Attempt),
    /// Over a limit: try again after this long.
    Wait(Duration),
}

/// An admitted attempt: the counters it was counted in, to take it back.
#[derive(Debug)]
pub struct Attempt {
    counted: Vec<(String, i64)>,
    known_browser: bool,
}

/// A counter's key: an HMAC-SHA256, under the database's `signing_key`, of its
/// kind and parts (hex).
fn counter_key(signing_key: &str, kind: &str, parts: &[&str]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(signing_key.as_bytes())
        .expect("an HMAC takes a key of any length");
    mac.update(kind.as_bytes());
    for part in parts {
        // A separator no email or address holds, so parts cannot run together.
        mac.update(b"\n");
        mac.update(part.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Counts an attempt to sign in as `email` from `address`, on the browser whose
/// `credence_browser` token is `browser_token`, and says whether it may go on.
pub async fn admit(
    store: &Store,
    limits: &SignInLimits,
    email: &str,
    address: IpAddr,
    browser_token: Option<&str>,
) -> Result<Admission> {
    let account = email.trim().to_lowercase();
    let now = limits.now_seconds();
    let window = limits.window_seconds();
    let mut db = store.db().await?;
    let signing_key = db.sign_in_key(&random_token()).await?;
    let counter_key = |kind: &str, parts: &[&str]| counter_key(&signing_key, kind, parts);
    let browser_hash = browser_token.map(token_hash);
    let known_browser = match &browser_hash {
        Some(hash) => db.is_known_browser(hash, &account).await?,
        None => false,
    };
    let counters = match &browser_hash {
        Some(hash) if known_browser => vec![(
            counter_key("account on browser", &[&account, hash]),
            limits.per_known_browser,
        )],
        _ => {
            let source = Source::of(address).to_string();
            vec![
                (counter_key("source", &[&source]), limits.per_source),
                (
                    counter_key("account at source", &[&account, &source]),
                    limits.per_account_at_source,
                ),
                (counter_key("account", &[&account]), limits.per_account),
            ]
        }
    };
    let mut attempt = Attempt {
        counted: Vec::with_capacity(counters.len()),
        known_browser,
    };
    for (key, limit) in counters {
        let counted = db.count_sign_in_attempt(&key, now, window).await?;
        attempt.counted.push((key, counted.window_start));
        if counted.attempts > limit {
            let wait = counted.window_start + window - now;
            return Ok(Admission::Wait(Duration::from_secs(
                u64::try_from(wait).unwrap_or(0).max(1),
            )));
        }
    }
    Ok(Admission::Go(attempt))
}

impl Attempt {
    /// Whether the attempt came from a browser known for its account.
    pub fn from_known_browser(&self) -> bool {
        self.known_browser
    }

    /// Takes the attempt back (its password was never checked).
    pub async fn refund(&self, store: &Store) -> Result<()> {
        let mut db = store.db().await?;
        for (key, window_start) in &self.counted {
            db.refund_sign_in_attempt(key, *window_start).await?;
        }
        Ok(())
    }

    /// After the right password: takes the attempt back and remembers the
    /// browser for `user`. Returns the `credence_browser` token to set: the
    /// browser's own when it was known for this account already, else a new
    /// one (a token planted in the browser by someone else is never adopted).
    pub async fn signed_in(
        &self,
        store: &Store,
        user: UserId,
        browser_token: Option<&str>,
    ) -> Result<String> {
        self.refund(store).await?;
        let token = match browser_token {
            Some(token) if self.known_browser => token.to_string(),
            _ => random_token(),
        };
        remember_browser(store, user, &token).await?;
        Ok(token)
    }
}

/// After a sign-in that did not go through the sign-in form (a setup link, an
/// accepted invitation): remembers a new browser for `user` and returns the
/// `credence_browser` token to set, so that its owner is not kept out by the
/// account's ceiling the next time they sign in there.
pub async fn new_known_browser(store: &Store, user: UserId) -> Result<String> {
    let token = random_token();
    remember_browser(store, user, &token).await?;
    Ok(token)
}

async fn remember_browser(store: &Store, user: UserId, token: &str) -> Result<()> {
    store
        .db()
        .await?
        .remember_browser(
            &token_hash(token),
            user,
            credence_store::now() + KNOWN_BROWSER_LIFETIME,
        )
        .await?;
    Ok(())
}

/// Deletes counters whose window is over, browsers no longer known and
/// second steps of sign-ins (`two_factor`) past their time.
pub async fn sweep(store: &Store, limits: &SignInLimits) -> Result<u64> {
    let oldest = limits.now_seconds() - limits.window_seconds();
    let mut db = store.db().await?;
    let swept = db.sweep_sign_in_limits(oldest).await?;
    Ok(swept + db.sweep_sign_in_challenges().await?)
}

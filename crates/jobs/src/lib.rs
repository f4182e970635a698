//! Credence's background jobs: delivering the notifications of the outbox,
//! and the webhook messages (`webhooks.rs`).
//!
//! Every change that tells someone writes its message to the `outbox` table in
//! its own transaction (`service::audit::notify`), so a change that rolls back
//! leaves nothing to send. Every running instance runs [`Jobs::run`]: each
//! pass claims due messages under a lease (`Db::claim_outbox`: `FOR UPDATE
//! SKIP LOCKED` on PostgreSQL, a guarded `UPDATE` on SQLite), renders and
//! delivers each (SMTP, or the local mailbox without an SMTP server), then
//! marks it sent — only while it still holds the lease. A failure is retried
//! with exponential backoff and jitter; a message that fails
//! [`Settings::max_attempts`] times, or cannot be delivered at all (its
//! payload does not open, its kind has no template), is dead-lettered:
//! kept, listed by `credence jobs list`, and sent again on `credence jobs retry`.
//!
//! **Invariant:** delivery is at least once and, but for a crash, exactly
//! once. A worker that dies (or stalls past its lease) after sending and
//! before marking leaves the message claimable when the lease ends; the
//! next claimer sends it again — once, since its mark then succeeds. A
//! message is never lost: it leaves the queue only by a mark of its holder.
//!
//! **Invariant:** this crate writes no SQL (the queries are in
//! `credence-store`) and opens a payload only through
//! `service::audit::open_outbox`; what it logs names messages by id and
//! kind, never a payload or an address's mail.

pub mod mail;
pub mod reminders;
pub mod slack;
pub mod templates;
mod transport;
pub mod webhooks;

pub use templates::Templates;
pub use transport::{Security, SmtpSettings};
pub use webhooks::{WebhookPass, WebhookSettings};

use credence_service::clock::Clock;
use credence_store::{Db, OutboxJob, OutboxSelection, Store};
use credence_vault::Vault;
use std::sync::Arc;
use std::time::Duration;

/// How the runner works; [`Settings::default`] for production.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often an instance looks for due messages (each pass drains what is
    /// due); `None` runs no runner in this instance (tests that drive passes).
    pub every: Option<Duration>,
    /// How long a claim holds a message: longer than one delivery can take.
    pub lease: Duration,
    /// Messages claimed at once.
    pub batch: i64,
    /// Deliveries of a batch under way at once.
    pub concurrency: usize,
    /// The longest one delivery may take; then it counts as failed (and may
    /// have reached the server: it is retried, at least once). A message whose
    /// lease would end within this is given back untried, so that a lease
    /// always covers its delivery.
    pub delivery_timeout: Duration,
    /// Claims before a message that keeps failing is dead-lettered.
    pub max_attempts: i64,
    /// The wait after the first failure; doubled at each further one.
    pub backoff_base: Duration,
    /// The longest wait between two attempts.
    pub backoff_cap: Duration,
    /// Where the time comes from (tests move it instead of waiting).
    pub clock: Clock,
    pub mail: MailSettings,
    /// Whether Slack messages may go to private, loopback or link-local
    /// hosts, or over plain http (`reminders_allow_private_hosts`).
    pub slack_allow_private_hosts: bool,
    /// How webhook messages are delivered (`webhooks.rs`).
    pub webhooks: WebhookSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            every: Some(Duration::from_secs(2)),
            lease: Duration::from_secs(120),
            batch: 50,
            concurrency: 8,
            delivery_timeout: Duration::from_secs(60),
            max_attempts: 10,
            backoff_base: Duration::from_secs(30),
            backoff_cap: Duration::from_secs(6 * 3600),
            clock: Clock::system(),
            mail: MailSettings::default(),
            slack_allow_private_hosts: false,
            webhooks: WebhookSettings::default(),
        }
    }
}

/// Where mail goes.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// The `From` of every email, e.g. `Credence <credence@example.com>`.
    pub from: String,
    /// `None`: mail stays in the local mailbox (`credence mail list`).
    pub smtp: Option<SmtpSettings>,
    /// The operator's templates (`templates.rs`), overriding the built-in ones.
    pub templates_dir: Option<std::path::PathBuf>,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            from: "Credence <credence@localhost>".into(),
            smtp: None,
            templates_dir: None,
        }
    }
}

/// Why a delivery did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt later (the server is down, refused for now).
    Transient(String),
    /// No attempt can succeed (no template, payload does not open): dead-lettered at once.
    Permanent(String),
}

impl Failure {
    fn reason(&self) -> &str {
        match self {
            Failure::Transient(reason) | Failure::Permanent(reason) => reason,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub claimed: usize,
    pub sent: usize,
    pub retried: usize,
    pub dead_lettered: usize,
    /// Delivered, but the lease had run out before the mark: another worker
    /// may send it again.
    pub lease_lost: usize,
    /// Given back untried: too little of the lease was left to deliver it.
    pub released: usize,
}

impl std::ops::AddAssign for Pass {
    fn add_assign(&mut self, other: Pass) {
        self.claimed += other.claimed;
        self.sent += other.sent;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        self.lease_lost += other.lease_lost;
        self.released += other.released;
    }
}

/// The outbox runner of one instance. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    vault: Arc<Vault>,
    public_url: Arc<str>,
    settings: Settings,
    transport: transport::Transport,
    slack: slack::Slack,
    templates: Templates,
    webhook_client: reqwest::Client,
}

/// A claim held by this runner: the messages and the lease's token.
pub struct Claim {
    pub token: String,
    pub jobs: Vec<OutboxJob>,
}

impl Jobs {
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        public_url: Arc<str>,
        settings: Settings,
    ) -> anyhow::Result<Jobs> {
        let transport = transport::Transport::new(&settings.mail)?;
        let templates = Templates::load(settings.mail.templates_dir.as_deref())?;
        let slack = slack::Slack::new(settings.slack_allow_private_hosts)?;
        let webhook_client = credence_provider::destination::webhook_client(
            settings.webhooks.allow_private_hosts,
            settings.webhooks.timeout,
        )?;
        Ok(Jobs {
            store,
            vault,
            public_url,
            settings,
            transport,
            slack,
            templates,
            webhook_client,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every `every`, passes until nothing is due, until `stop` turns true:
    /// then the pass under way finishes (its deliveries are marked) and no
    /// other starts. A task aborted mid-pass leaves its messages to their
    /// leases instead (see the crate's invariant).
    pub async fn run(self, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                changed = stop.changed() => {
                    // The sender is gone: nobody can stop this any more, so stop now.
                    if changed.is_err() {
                        return;
                    }
                }
            }
            loop {
                if *stop.borrow() {
                    return;
                }
                let more_mail = match self.run_once().await {
                    Ok(pass) => pass.claimed as i64 >= self.settings.batch && pass.released == 0,
                    Err(error) => {
                        tracing::warn!(error = %error, "could not deliver the outbox");
                        false
                    }
                };
                let more_webhooks = match self.run_webhooks_once().await {
                    Ok(pass) => pass.claimed as i64 >= self.settings.batch,
                    Err(error) => {
                        tracing::warn!(error = %error, "could not deliver the webhooks");
                        false
                    }
                };
                if !more_mail && !more_webhooks {
                    break;
                }
            }
        }
    }

    /// Passes until nothing is due; answers what they did together.
    pub async fn drain(&self) -> anyhow::Result<Pass> {
        let mut total = Pass::default();
        loop {
            let pass = self.run_once().await?;
            total += pass;
            if (pass.claimed as i64) < self.settings.batch || pass.released > 0 {
                return Ok(total);
            }
        }
    }

    /// One pass: claim a batch, deliver each (`concurrency` at once), mark each.
    pub async fn run_once(&self) -> anyhow::Result<Pass> {
        use futures_util::StreamExt;
        let claim = self.claim().await?;
        let claimed = claim.jobs.len();
        let token = claim.token.as_str();
        // Owned jobs: a stream of borrowed ones makes the spawned runner's
        // future not `Send` for every lifetime (a known rustc limitation).
        let outcomes: Vec<anyhow::Result<Pass>> = futures_util::stream::iter(claim.jobs)
            .map(|job| async move { self.process(&job, token).await })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        let mut pass = Pass {
            claimed,
            ..Pass::default()
        };
        for outcome in outcomes {
            pass += outcome?;
        }
        Ok(pass)
    }

    /// Delivers one claimed message and marks it; answers what it did.
    async fn process(&self, job: &OutboxJob, token: &str) -> anyhow::Result<Pass> {
        let mut done = Pass::default();
        let timeout = self.settings.delivery_timeout;
        let lease_left = job
            .lease_until
            .map(|until| until - self.settings.clock.now())
            .unwrap_or_default();
        if lease_left <= chrono::Duration::from_std(timeout)? {
            // Delivering now could outlast the lease and let another
            // instance send it too: give it back for the next claim.
            self.store.db().await?.release_outbox(job.id, token).await?;
            done.released += 1;
            return Ok(done);
        }
        let delivered = match tokio::time::timeout(timeout, self.deliver(job)).await {
            Ok(delivered) => delivered,
            Err(_) => Err(Failure::Transient(format!(
                "the delivery took longer than {} s",
                timeout.as_secs()
            ))),
        };
        let now = self.settings.clock.now();
        let mut db = self.store.db().await?;
        match delivered {
            Ok(via) => {
                if db.mark_outbox_sent(job.id, token, now, via).await? {
                    done.sent += 1;
                } else {
                    done.lease_lost += 1;
                    tracing::warn!(outbox_id = job.id, kind = %job.kind, "delivered after the lease ran out; another worker may deliver it again");
                }
            }
            Err(failure) => {
                let retry_at = self.retry_at(job, &failure);
                let marked = db
                    .mark_outbox_failed(job.id, token, now, failure.reason(), retry_at)
                    .await?;
                match (marked, retry_at) {
                    (false, _) => done.lease_lost += 1,
                    (true, Some(at)) => {
                        done.retried += 1;
                        tracing::info!(outbox_id = job.id, kind = %job.kind, attempts = job.attempts, retry_at = %at, reason = %failure.reason(), "a notification was not delivered; retrying later");
                    }
                    (true, None) => {
                        done.dead_lettered += 1;
                        tracing::warn!(outbox_id = job.id, kind = %job.kind, attempts = job.attempts, reason = %failure.reason(), "a notification was dead-lettered; `credence jobs retry` sends it again");
                    }
                }
            }
        }
        Ok(done)
    }

    /// Claims a batch of due messages under a new lease.
    pub async fn claim(&self) -> anyhow::Result<Claim> {
        let now = self.settings.clock.now();
        let until = now + chrono::Duration::from_std(self.settings.lease)?;
        let token = uuid::Uuid::new_v4().to_string();
        let jobs = self
            .store
            .db()
            .await?
            .claim_outbox(now, until, &token, self.settings.batch)
            .await?;
        Ok(Claim { token, jobs })
    }

    /// Renders and sends one message; answers how it left (`smtp`, `mailbox`).
    pub async fn deliver(&self, job: &OutboxJob) -> Result<&'static str, Failure> {
        let payload =
            credence_service::audit::open_outbox(&self.vault, &job.message()).map_err(|_| {
                Failure::Permanent(format!(
                    "the payload of outbox message {} does not open",
                    job.id
                ))
            })?;
        if let Some(kind) = job.kind.strip_prefix(slack::PREFIX) {
            let email = self
                .templates
                .render(kind, &payload, &self.public_url)
                .map_err(|error| Failure::Permanent(error.to_string()))?;
            let url = payload
                .get("webhookUrl")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            return self.slack.send(job.id, url, &email).await;
        }
        let email = self
            .templates
            .render(&job.kind, &payload, &self.public_url)
            .map_err(|error| Failure::Permanent(error.to_string()))?;
        self.transport
            .send(&self.store, job, &email, self.settings.clock.now())
            .await
    }

    /// When a failed message is due again; `None`: dead-letter it.
    fn retry_at(
        &self,
        job: &OutboxJob,
        failure: &Failure,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        if matches!(failure, Failure::Permanent(_)) || job.attempts >= self.settings.max_attempts {
            return None;
        }
        let delay = backoff(
            job.attempts,
            self.settings.backoff_base,
            self.settings.backoff_cap,
            rand::random::<f64>(),
        );
        Some(self.settings.clock.now() + chrono::Duration::from_std(delay).ok()?)
    }
}

/// The wait after failed attempt number `attempts` (1 = the first): the base
/// doubled per earlier failure, at most `cap`, then jittered into its upper
/// half by `unit` (in [0, 1)) so that messages failing together spread out.
pub fn backoff(attempts: i64, base: Duration, cap: Duration, unit: f64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let full = base.saturating_mul(1u32 << doublings).min(cap);
    full.mul_f64(0.5 + unit.clamp(0.0, 1.0) / 2.0)
}

/// One line of `credence jobs list`: a message and where it stands.
#[derive(Debug, Clone)]
pub struct JobView {
    pub job: OutboxJob,
    pub state: &'static str,
}

/// Where a message stands: `sent`, `dead`, `leased`, `retrying` or `waiting`.
pub fn state_of(job: &OutboxJob, now: chrono::DateTime<chrono::Utc>) -> &'static str {
    if job.sent_at.is_some() {
        "sent"
    } else if job.dead_lettered_at.is_some() {
        "dead"
    } else if job.lease_until.is_some_and(|until| until > now) {
        "leased"
    } else if job.last_error.is_some() {
        "retrying"
    } else {
        "waiting"
    }
}

/// The messages of `selection` for an operator, oldest first.
pub async fn list(
    store: &Store,
    selection: OutboxSelection,
    limit: i64,
) -> anyhow::Result<Vec<JobView>> {
    let now = credence_store::now();
    let jobs = store.db().await?.list_outbox_jobs(selection, limit).await?;
    Ok(jobs
        .into_iter()
        .map(|job| JobView {
            state: state_of(&job, now),
            job,
        })
        .collect())
}

/// Makes unsent message `id` due at once with a fresh count of attempts.
pub async fn retry(store: &Store, id: i64) -> anyhow::Result<OutboxJob> {
    let mut db: Db = store.db().await?;
    if !db.retry_outbox(id).await? {
        let why = match db.get_outbox_job(id).await? {
            Some(_) => format!("outbox message {id} was sent already; there is nothing to retry"),
            None => format!("there is no outbox message {id}; `credence jobs list` shows them"),
        };
        anyhow::bail!(why);
    }
    db.get_outbox_job(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("outbox message {id} vanished"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_into_the_upper_half() {
        let base = Duration::from_secs(30);
        let cap = Duration::from_secs(3600);
        assert_eq!(backoff(1, base, cap, 0.0), Duration::from_secs(15));
        assert_eq!(backoff(1, base, cap, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(3, base, cap, 1.0), Duration::from_secs(120));
        assert_eq!(backoff(40, base, cap, 1.0), cap);
        assert_eq!(backoff(40, base, cap, 0.0), cap / 2);
        assert_eq!(backoff(0, base, cap, 1.0), base);
    }
}

/// One email of the local mailbox, rendered as it was delivered.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub entry: credence_store::MailboxEntry,
    pub email: mail::Email,
}

/// The local mailbox, newest first (only `recipient`'s when given). Each
/// email is rendered again from its sealed outbox row on reading.
pub async fn mailbox(
    store: &Store,
    vault: &Vault,
    templates: &Templates,
    public_url: &str,
    recipient: Option<&str>,
    limit: i64,
) -> anyhow::Result<Vec<Delivered>> {
    let entries = store.db().await?.list_mailbox(recipient, limit).await?;
    entries
        .into_iter()
        .map(|entry| open_delivered(vault, templates, public_url, entry))
        .collect()
}

/// Email `id` of the local mailbox.
pub async fn mailbox_email(
    store: &Store,
    vault: &Vault,
    templates: &Templates,
    public_url: &str,
    id: i64,
) -> anyhow::Result<Delivered> {
    let entry = store.db().await?.get_mailbox(id).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "there is no email {id} in the local mailbox; `credence mail list` shows them"
        )
    })?;
    open_delivered(vault, templates, public_url, entry)
}

/// Renders a mailbox entry again from its sealed outbox row (also for the
/// web's mailbox, which selects the entries of some organizations).
pub fn open_delivered(
    vault: &Vault,
    templates: &Templates,
    public_url: &str,
    entry: credence_store::MailboxEntry,
) -> anyhow::Result<Delivered> {
    let payload = credence_service::audit::open_outbox(vault, &entry.message()).map_err(|_| {
        anyhow::anyhow!(
            "the payload of outbox message {} does not open",
            entry.outbox_id
        )
    })?;
    let email = templates.render(&entry.kind, &payload, public_url)?;
    Ok(Delivered { entry, email })
}

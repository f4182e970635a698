//! The reminder scan (SPEC §9), run by every instance beside the outbox
//! runner: every [`Settings::every`] it asks `service::reminders::scan` for
//! what is due at [`Settings::clock`]'s time — nudges, then SLA deadlines —
//! until a pass finds less than a batch. What it decides goes into the
//! outbox in the transaction that records it; the outbox runner delivers it.
//! Instances never nudge twice: each nudge is claimed by a guarded update
//! (see `credence_store::tracking`).

use credence_service::clock::Clock;
use credence_service::reminders::Scan;
use credence_service::Context;
use std::time::Duration;

/// How the scan works; [`Settings::default`] for production.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often an instance scans; `None`: never (tests drive passes).
    pub every: Option<Duration>,
    /// Requests handled per query.
    pub batch: i64,
    /// Where the time comes from (tests move it instead of waiting).
    pub clock: Clock,
    /// Whether a team's Slack webhook may be on a private, loopback or
    /// link-local host, or plain http.
    pub allow_private_hosts: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            every: Some(Duration::from_secs(60)),
            batch: 200,
            clock: Clock::system(),
            allow_private_hosts: false,
        }
    }
}

/// One instance's reminder scan. Cheap to clone.
#[derive(Clone)]
pub struct Reminders {
    ctx: Context,
    settings: Settings,
}

impl Reminders {
    pub fn new(ctx: Context, settings: Settings) -> Reminders {
        Reminders { ctx, settings }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Passes at the clock's time while a query finds a whole batch due
    /// (what another instance claimed first is no longer due, so this ends);
    /// a pass in which a request failed ends it too, so that a request that
    /// keeps failing is retried at the next scan rather than at once.
    pub async fn scan(&self) -> anyhow::Result<Scan> {
        let mut total = Scan::default();
        loop {
            let at = self.settings.clock.now();
            let pass = credence_service::reminders::scan(&self.ctx, at, self.settings.batch)
                .await
                .map_err(|error| anyhow::anyhow!(error))?;
            total.reminded += pass.reminded;
            total.escalated += pass.escalated;
            total.stopped += pass.stopped;
            total.breaches += pass.breaches;
            total.met += pass.met;
            total.lost += pass.lost;
            total.failed += pass.failed;
            if !pass.more || pass.failed > 0 {
                return Ok(total);
            }
        }
    }

    /// Every `every`, [`Reminders::scan`], until `stop` turns true.
    pub async fn run(self, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                changed = stop.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            if *stop.borrow() {
                return;
            }
            if let Err(error) = self.scan().await {
                tracing::warn!(error = %error, "could not scan for due reminders");
            }
        }
    }
}

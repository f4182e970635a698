//! Counting the SQL statements an operation runs, from sqlx's own log events
//! (target `sqlx::query`, one per statement it executes; `BEGIN` and
//! `COMMIT` are sent without one, so they are not counted). The counter is
//! off but for the operation counted: sqlx formats an event only when a
//! subscriber wants it, so the other figures pay nothing for it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

const TARGET: &str = "sqlx::query";

static COUNTING: AtomicBool = AtomicBool::new(false);
static COUNTED: AtomicU64 = AtomicU64::new(0);

struct Statements;

impl<S: Subscriber> Layer<S> for Statements {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.target() == TARGET {
            // Asked again at each event, as counting is switched on and off.
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        metadata.target() == TARGET && COUNTING.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == TARGET {
            COUNTED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Installs the counter as the process's subscriber (the bench logs with
/// `eprintln!`, so it has no other).
pub fn install() -> anyhow::Result<()> {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Statements))?;
    Ok(())
}

/// The statements of `runs` runs of `op`, one at a time, as the most common
/// count: the server's background jobs (the outbox, the reminders, SQLite's
/// checkpointer) run a statement now and then in the same process, and a
/// count they fall into is an outlier, not the mode.
pub async fn typical<F, Fut>(runs: usize, op: F) -> anyhow::Result<u64>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut counts = std::collections::BTreeMap::<u64, usize>::new();
    for i in 0..runs {
        COUNTED.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        let done = op(i).await;
        COUNTING.store(false, Ordering::Relaxed);
        done?;
        *counts.entry(COUNTED.load(Ordering::Relaxed)).or_default() += 1;
    }
    // The most common count; of two as common, the smaller.
    Ok(counts
        .iter()
        .max_by_key(|(count, times)| (**times, std::cmp::Reverse(**count)))
        .map_or(0, |(count, _)| *count))
}

//! The per-connection call limit: at most `proxy_calls_per_minute` proxied
//! calls per connection per minute (a fixed window from the first call);
//! past it, 429 with `Retry-After`. Counted in memory: counting in the
//! database would add a write to every call. Instances that share a database
//! share the limit by each taking its share: the limit divided by the live
//! instances the heartbeats count (`set_instances`, rounded down, at least
//! one call). So the instances together never admit more than the limit; a
//! load balancer that sends one connection's calls to one instance only gets
//! that instance's share (README).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Past this many connections counted, windows that ended are forgotten.
const PRUNE_AT: usize = 10_000;

pub struct CallLimit {
    per_minute: u32,
    /// The live instances sharing the limit, this one included (≥ 1).
    instances: AtomicU32,
    windows: Mutex<HashMap<i64, (Instant, u32)>>,
}

impl CallLimit {
    pub fn per_minute(per_minute: u32) -> Arc<CallLimit> {
        Arc::new(CallLimit {
            per_minute,
            instances: AtomicU32::new(1),
            windows: Mutex::default(),
        })
    }

    /// How many live instances share the limit now (this one included; 0 is
    /// taken as 1, as this one runs).
    pub fn set_instances(&self, live: usize) {
        let live = u32::try_from(live).unwrap_or(u32::MAX).max(1);
        self.instances.store(live, Ordering::Relaxed);
    }

    /// What a refusal of `connection` says: the limit, and this instance's
    /// share of it when several share it.
    pub fn reached(&self, connection: i64) -> String {
        let instances = self.instances.load(Ordering::Relaxed).max(1);
        if instances == 1 {
            format!(
                "connection {connection} is past its {} calls per minute",
                self.per_minute
            )
        } else {
            format!(
                "connection {connection} is past its {} calls per minute on this instance, its share of the limit of {} over {instances} instances",
                self.share(),
                self.per_minute
            )
        }
    }

    /// The calls per connection per minute this instance admits.
    pub fn share(&self) -> u32 {
        (self.per_minute / self.instances.load(Ordering::Relaxed).max(1)).max(1)
    }

    /// Counts a call of `connection`: `Ok` when within the limit, else the
    /// seconds until the window ends (at least 1).
    pub fn admit(&self, connection: i64) -> Result<(), u64> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= PRUNE_AT {
            windows.retain(|_, (started, _)| now.duration_since(*started) < WINDOW);
        }
        let window = windows.entry(connection).or_insert((now, 0));
        if now.duration_since(window.0) >= WINDOW {
            *window = (now, 0);
        }
        if window.1 >= self.share() {
            let left = WINDOW.saturating_sub(now.duration_since(window.0));
            return Err(left.as_secs_f64().ceil().max(1.0) as u64);
        }
        window.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_has_its_own_budget_per_minute() {
        let limit = CallLimit::per_minute(2);
        assert_eq!(limit.admit(1), Ok(()));
        assert_eq!(limit.admit(1), Ok(()));
        let wait = limit.admit(1).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(limit.admit(2), Ok(()));
    }

    #[test]
    fn instances_sharing_a_database_each_take_their_share_of_the_limit() {
        let limit = CallLimit::per_minute(600);
        assert_eq!(limit.share(), 600);
        limit.set_instances(3);
        assert_eq!(limit.share(), 200);
        limit.set_instances(7);
        assert_eq!(limit.share(), 85, "rounded down: together never past 600");
        limit.set_instances(0);
        assert_eq!(limit.share(), 600, "this instance runs, so at least one");
        let tiny = CallLimit::per_minute(2);
        tiny.set_instances(3);
        assert_eq!(tiny.share(), 1, "at least one call each");
        tiny.set_instances(2);
        assert_eq!(tiny.admit(9), Ok(()));
        assert!(tiny.admit(9).is_err());
    }
}

//! The per-connection call limit: at most `proxy_calls_per_minute` proxied
//! calls per connection per minute on this instance (a fixed window from the
//! first call); past it, 429 with `Retry-After`. Counted in memory: counting
//! in the database would add a write to every call; with several instances
//! the limit holds per instance (README).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Past this many connections counted, windows that ended are forgotten.
const PRUNE_AT: usize = 10_000;

pub struct CallLimit {
    per_minute: u32,
    windows: Mutex<HashMap<i64, (Instant, u32)>>,
}

impl CallLimit {
    pub fn per_minute(per_minute: u32) -> Arc<CallLimit> {
        Arc::new(CallLimit {
            per_minute,
            windows: Mutex::default(),
        })
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
        if window.1 >= self.per_minute {
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
}

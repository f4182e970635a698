//! The time the OAuth refresh reads (`refresh`: is the access
//! token expiring; when does a token just issued expire): the system's, or one
//! a test sets, so a test need not wait for a token to expire.

use chrono::{DateTime, SubsecRound, Utc};
use std::sync::Arc;

/// Where the time comes from. Cheap to clone; [`Clock::system`] by default.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }

    /// A clock that reads `now` (tests: one they set by hand).
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The current time at the store's precision (see `credence_store::now`).
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)().trunc_subsecs(6)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

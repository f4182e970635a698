//! A gate in front of argon2: each hash takes tens of milliseconds of a core and
//! 19 MiB of memory on the blocking pool, so an unbounded number at once (a
//! flood of sign-in attempts) would exhaust the memory. At most `at_once` hashes
//! run; up to `waiting` more wait their turn; past that a hash is refused
//! ("busy") at once instead of queueing without bound. Every hash goes through
//! here: checking a sign-in's password, and hashing a new one (setup link,
//! invitation, CLI), so that no path can queue work ahead of the others.

use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

/// Why a hash did not run.
#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    /// As many hashes as the gate allows are running or waiting already.
    #[error("too many passwords are being checked at once")]
    Busy,
    /// The hashing task panicked or was cancelled.
    #[error("the password hashing task failed: {0}")]
    Failed(#[from] tokio::task::JoinError),
}

/// Bounds the password hashes running at once and those waiting for a turn.
pub struct HashingGate {
    /// One permit per hash running on the blocking pool.
    running: Arc<Semaphore>,
    /// One permit per hash running or waiting; `try_run` refuses when none is left.
    admitted: Arc<Semaphore>,
    admitted_limit: usize,
}

impl HashingGate {
    pub fn new(at_once: usize, waiting: usize) -> HashingGate {
        let at_once = at_once.max(1);
        HashingGate {
            running: Arc::new(Semaphore::new(at_once)),
            admitted: Arc::new(Semaphore::new(at_once + waiting)),
            admitted_limit: at_once + waiting,
        }
    }

    /// The process's gate: as many hashes at once as there are cores (at least
    /// two), and 32 waiting per core. An application uses the one its
    /// `SignInLimits` carry, which is this one unless a test gives its own.
    pub fn shared() -> Arc<HashingGate> {
        static GATE: OnceLock<Arc<HashingGate>> = OnceLock::new();
        GATE.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            Arc::new(HashingGate::new(cores.max(2), 32 * cores))
        })
        .clone()
    }

    /// How many hashes are running or waiting now.
    pub fn admitted(&self) -> usize {
        self.admitted_limit - self.admitted.available_permits()
    }

    /// Runs `work` when a turn is free, or answers `Busy` at once when as many
    /// hashes as allowed are already running or waiting.
    pub async fn try_run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashingError> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashingError::Busy)?;
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .expect("the gate's semaphore is never closed");
        // The permits move into the blocking task: a request dropped mid-hash
        // (the client went away) must not free a turn while its hash still runs.
        Ok(tokio::task::spawn_blocking(move || {
            let _permits = (running, admitted);
            work()
        })
        .await?)
    }
}

/// Whether `error` is a hash the gate refused as busy (the caller answers 503
/// with `Retry-After`, not 500).
pub fn is_busy(error: &super::Error) -> bool {
    matches!(
        error,
        super::Error::Internal(cause)
            if matches!(cause.downcast_ref::<HashingError>(), Some(HashingError::Busy))
    )
}

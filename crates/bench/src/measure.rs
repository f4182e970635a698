//! Timing: run an operation a bounded number of times from a few concurrent
//! workers (within a time limit, after a short warm-up) and summarise the
//! latencies as percentiles and the whole run as a throughput.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many times, from how many workers, for at most how long.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub count: usize,
    pub workers: usize,
    pub limit: Duration,
}

/// The latencies of one run, sorted, and its wall-clock time.
#[derive(Debug, Clone)]
pub struct Timings {
    sorted: Vec<Duration>,
    pub elapsed: Duration,
    /// The time limit stopped the run before `count`.
    pub truncated: bool,
}

impl Timings {
    pub fn count(&self) -> usize {
        self.sorted.len()
    }

    /// The `p`th percentile (0–100), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    /// The mean latency: means add up where percentiles do not, so a sum of
    /// parts is compared with the whole by their means.
    pub fn mean(&self) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        self.sorted.iter().sum::<Duration>() / self.sorted.len() as u32
    }

    /// Operations per second over the whole run.
    pub fn throughput(&self) -> f64 {
        self.count() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Runs `op(i)` for `i` in `0..plan.count` (fewer if the time limit comes
/// first) from `plan.workers` tasks, after a warm-up of a tenth (at most 50)
/// that is not counted. The first failure ends the run with its error.
pub async fn run<F, Fut>(label: &str, plan: Plan, op: F) -> anyhow::Result<Timings>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let warm_up = Plan {
        count: (plan.count / 10).min(50),
        ..plan
    };
    // Warm-up indices come after the measured ones, so they pick differently.
    timed(warm_up, plan.count, op.clone()).await?;
    eprintln!(
        "  measuring {label} ({} × {} workers)",
        plan.count, plan.workers
    );
    let timings = timed(plan, 0, op).await?;
    if timings.truncated {
        eprintln!(
            "  {label}: time limit of {} s reached after {} operations",
            plan.limit.as_secs(),
            timings.count()
        );
    }
    Ok(timings)
}

async fn timed<F, Fut>(plan: Plan, offset: usize, op: Arc<F>) -> anyhow::Result<Timings>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + plan.limit;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..plan.workers.max(1) {
        let (next, op) = (next.clone(), op.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut truncated = false;
            loop {
                if Instant::now() >= deadline {
                    truncated = true;
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.count {
                    break;
                }
                let start = Instant::now();
                op(offset + i).await?;
                latencies.push(start.elapsed());
            }
            anyhow::Ok((latencies, truncated))
        });
    }
    let mut sorted = Vec::with_capacity(plan.count);
    let mut truncated = false;
    while let Some(joined) = workers.join_next().await {
        let (latencies, stopped) = joined??;
        sorted.extend(latencies);
        truncated |= stopped;
    }
    let elapsed = started.elapsed();
    sorted.sort_unstable();
    Ok(Timings {
        sorted,
        elapsed,
        truncated,
    })
}

/// A well-mixed index in `0..n` for the `i`th operation (splitmix64), so runs
/// pick the same "random" teams and requests every time.
pub fn pick(i: usize, salt: u64, n: usize) -> usize {
    let mut z = (i as u64)
        .wrapping_add(salt)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % n.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let timings = Timings {
            sorted: (1..=100).map(Duration::from_millis).collect(),
            elapsed: Duration::from_secs(2),
            truncated: false,
        };
        assert_eq!(timings.percentile(50.0), Duration::from_millis(50));
        assert_eq!(timings.percentile(99.0), Duration::from_millis(99));
        assert_eq!(timings.percentile(100.0), Duration::from_millis(100));
        assert_eq!(timings.throughput(), 50.0);
    }

    #[test]
    fn picks_spread_over_the_range() {
        let mut seen = [0usize; 10];
        for i in 0..10_000 {
            seen[pick(i, 7, 10)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}

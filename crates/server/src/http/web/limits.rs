//! Sign-in rate limits, per account and per client address, so that passwords
//! cannot be guessed quickly. Kept in memory: with several instances each keeps
//! its own count, which still bounds guessing by the number of instances.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

pub struct SignInLimits {
    per_account: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl Default for SignInLimits {
    /// 5 attempts per account, then one a minute; 20 per address, then one every 6 s.
    fn default() -> Self {
        SignInLimits::new(5, Duration::from_secs(60), 20, Duration::from_secs(6))
    }
}

impl SignInLimits {
    pub fn new(
        account_burst: u32,
        account_period: Duration,
        address_burst: u32,
        address_period: Duration,
    ) -> Self {
        let quota = |burst: u32, period: Duration| {
            Quota::with_period(period)
                .expect("period is not zero")
                .allow_burst(NonZeroU32::new(burst.max(1)).expect("not zero"))
        };
        SignInLimits {
            per_account: RateLimiter::keyed(quota(account_burst, account_period)),
            per_address: RateLimiter::keyed(quota(address_burst, address_period)),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt; `Err(wait)` when the account or the address is over its limit.
    pub fn check(&self, email: &str, address: IpAddr) -> Result<(), Duration> {
        if self.per_account.len() > 100_000 {
            self.per_account.retain_recent();
            self.per_address.retain_recent();
        }
        let now = self.clock.now();
        self.per_address
            .check_key(&address)
            .map_err(|not_until| not_until.wait_time_from(now))?;
        self.per_account
            .check_key(&email.to_lowercase())
            .map_err(|not_until| not_until.wait_time_from(now))?;
        Ok(())
    }
}

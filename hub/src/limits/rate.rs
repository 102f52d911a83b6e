//! One in-process rate limit (GCRA via `governor`) keyed by a string: a client id, or a
//! provider origin. The shared (Redis) form of the same rule is `crate::replica::ratelimit`.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Every this many checks, keys whose state is back to "full burst" are dropped, so the key
/// map holds only recently active keys (an address flood cannot grow it without bound).
const RETAIN_EVERY: u64 = 4096;

/// The limiter; `None` inside when the limit is off.
pub struct LocalRate {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl std::fmt::Debug for LocalRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRate")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl LocalRate {
    /// `per_minute` calls per key per minute, with a burst of the same size; 0 = off.
    pub fn new(per_minute: u32) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Self {
            limiter,
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Whether the limit is on.
    pub fn enabled(&self) -> bool {
        self.limiter.is_some()
    }

    /// Admits one call of `key`, or says how many whole seconds to wait (at least 1).
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            limiter.retain_recent();
        }
        // `check_key` wants the key type itself; the allocation is one short string.
        limiter.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits_per_key_and_reports_a_wait() {
        let limit = LocalRate::new(3);
        for _ in 0..3 {
            assert_eq!(limit.check("a"), Ok(()));
        }
        let wait = limit.check("a").unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert_eq!(limit.check("b"), Ok(()));
    }

    #[test]
    fn zero_turns_it_off() {
        let limit = LocalRate::new(0);
        assert!(!limit.enabled());
        for _ in 0..10_000 {
            assert_eq!(limit.check("a"), Ok(()));
        }
    }
}

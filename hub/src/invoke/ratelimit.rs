//! Per-client invoke rate limit (GCRA via `governor`), keyed by [`ClientId`].

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::request::ClientId;

/// Every this many checks, keys whose state is back to "full burst" are dropped, so the key
/// map holds only recently active clients.
const RETAIN_EVERY: u64 = 4096;

/// The limiter; `None` inside when the limit is off.
pub struct InvokeRateLimit {
    limiter: Option<DefaultKeyedRateLimiter<ClientId>>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl std::fmt::Debug for InvokeRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvokeRateLimit")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl InvokeRateLimit {
    /// `per_minute` calls per client per minute, with a burst of the same size; 0 = off.
    pub fn new(per_minute: u32) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Self {
            limiter,
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Admits one call of `client`, or says how many whole seconds to wait (at least 1).
    pub fn check(&self, client: &ClientId) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter.check_key(client).map_err(|not_until| {
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
    fn limits_per_client_and_reports_a_wait() {
        let limit = InvokeRateLimit::new(3);
        let a = ClientId::named("a");
        let b = ClientId::named("b");
        for _ in 0..3 {
            assert_eq!(limit.check(&a), Ok(()));
        }
        let wait = limit.check(&a).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert_eq!(limit.check(&b), Ok(()));
    }

    #[test]
    fn zero_turns_it_off() {
        let limit = InvokeRateLimit::new(0);
        let a = ClientId::named("a");
        for _ in 0..10_000 {
            assert_eq!(limit.check(&a), Ok(()));
        }
    }
}

//! The per-provider rate and the learned back-off, shared by every replica.
//!
//! One `EVALSHA` per routed call: the script first looks at the provider's back-off key
//! (`<prefix>backoff:<origin>`, set with a TTL when the provider answers 429) and then, when
//! a provider rate is configured, runs the same GCRA as the client limits on
//! `<prefix>ratelimit:provider:<origin>`. Like the client limits, a Redis error or a slow
//! answer gives "no decision" and the replica's own limiter decides (fail open).

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use super::Keys;
use super::ratelimit::{CHECK_TIMEOUT, warn_throttled};
use crate::limits::LimitKind;

/// KEYS[1]: back-off key, KEYS[2]: rate key. ARGV[1]: emission interval µs, ARGV[2]: burst
/// (0 = no rate). Returns `{1, 0}` admitted, `{0, wait_µs}` over the rate, `{2, wait_µs}`
/// backed off.
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local left = redis.call('PTTL', KEYS[1])
if left > 0 then
  return {2, left * 1000}
end
local burst = tonumber(ARGV[2])
if burst == 0 then
  return {1, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[2]))
if tat == nil or tat < now then
  tat = now
end
local allow_at = tat - (burst - 1) * interval
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[2], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
",
    )
});

/// KEYS[1]: back-off key, ARGV[1]: milliseconds. Never shortens a longer back-off.
static BACK_OFF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
return 1
",
    )
});

/// The shared provider limits (multi-replica mode only).
#[derive(Clone)]
pub struct SharedProviderLimits {
    conn: ConnectionManager,
    keys: Keys,
    /// Emission interval in µs and burst of the provider rate; burst 0 = no rate.
    interval_us: u64,
    burst: u32,
    last_warning_ms: Arc<AtomicI64>,
}

impl std::fmt::Debug for SharedProviderLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedProviderLimits")
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl SharedProviderLimits {
    /// `rate_per_min` calls per provider per minute (0 = back-off only).
    pub fn new(conn: ConnectionManager, keys: Keys, rate_per_min: u32) -> Self {
        Self {
            conn,
            keys,
            interval_us: 60_000_000_u64.div_ceil(u64::from(rate_per_min.max(1))),
            burst: rate_per_min,
            last_warning_ms: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// Admits one call to `origin`, or names the limit and the seconds to wait. `None` when
    /// Redis did not decide.
    pub async fn check(&self, origin: &str) -> Option<Result<(), (LimitKind, u64)>> {
        let mut conn = self.conn.clone();
        let mut invocation = ADMIT.key(self.keys.provider_backoff(origin));
        invocation
            .key(self.keys.scoped_rate(LimitKind::ProviderRate, origin))
            .arg(self.interval_us)
            .arg(self.burst);
        let call = invocation.invoke_async::<(i64, i64)>(&mut conn);
        let failure = match tokio::time::timeout(CHECK_TIMEOUT, call).await {
            Ok(Ok((1, _))) => return Some(Ok(())),
            Ok(Ok((verdict, wait_us))) => {
                let kind = if verdict == 2 {
                    LimitKind::ProviderBackoff
                } else {
                    LimitKind::ProviderRate
                };
                let wait = u64::try_from(wait_us).unwrap_or(0).div_ceil(1_000_000);
                return Some(Err((kind, wait.max(1))));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", CHECK_TIMEOUT.as_millis()),
        };
        warn_throttled(&self.last_warning_ms, &failure);
        None
    }

    /// Backs `origin` off for `wait` on every replica. A failure is logged: this replica
    /// still knows the back-off.
    pub async fn back_off(&self, origin: &str, wait: Duration) {
        let mut conn = self.conn.clone();
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = BACK_OFF.key(self.keys.provider_backoff(origin));
        invocation.arg(ms);
        let call = invocation.invoke_async::<i64>(&mut conn);
        match tokio::time::timeout(CHECK_TIMEOUT, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn_throttled(&self.last_warning_ms, &e.to_string()),
            Err(_) => warn_throttled(&self.last_warning_ms, "no answer to the back-off"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::replica::testing;

    #[tokio::test]
    async fn replica_provider_rate_and_backoff_are_shared() {
        let Some((_, conn)) = testing::redis().await else {
            return;
        };
        let keys = Keys::new(&testing::unique_prefix());
        let a = SharedProviderLimits::new(conn.clone(), keys.clone(), 2);
        let b = SharedProviderLimits::new(conn.clone(), keys.clone(), 2);
        assert_eq!(a.check("https://p").await, Some(Ok(())));
        assert_eq!(b.check("https://p").await, Some(Ok(())));
        let over = a.check("https://p").await.unwrap().unwrap_err();
        assert_eq!(over.0, LimitKind::ProviderRate);

        let backoff_only = SharedProviderLimits::new(conn, keys, 0);
        assert_eq!(backoff_only.check("https://q").await, Some(Ok(())));
        a.back_off("https://q", Duration::from_secs(20)).await;
        a.back_off("https://q", Duration::from_secs(1)).await;
        let (kind, wait) = backoff_only.check("https://q").await.unwrap().unwrap_err();
        assert_eq!(kind, LimitKind::ProviderBackoff);
        assert!((19..=20).contains(&wait), "{wait}");
        assert_eq!(backoff_only.check("https://other").await, Some(Ok(())));
    }
}

//! The per-client rate limits (invoke, search, MCP) and the per-provider rate shared by every
//! replica: GCRA in a Lua script.
//!
//! Same rule as the in-process `governor` limiter (`limits::rate`): `N` calls per
//! minute per key with a burst of `N`, i.e. one call every `60 s / N` on average and at
//! most `N` at once. The state is one Redis key per client holding its theoretical arrival
//! time (TAT) in microseconds of the Redis clock (`TIME`, so replica clocks do not matter),
//! expiring when the client is back to a full burst. One `EVALSHA` per invoke.
//!
//! **On a Redis error or a slow answer** (over [`CHECK_TIMEOUT`]) the check reports "no
//! decision" and the caller uses its own in-process limiter: the limit fails open to
//! per-replica limits (N replicas then admit up to N times the rate) rather than refusing
//! calls because Redis is down. A warning is logged at most every [`WARN_EVERY`].

use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use super::Keys;
use crate::limits::LimitKind;

/// Longest wait for the shared limit before the local one decides.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// At most one "shared limit unavailable" warning per this period.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// GCRA. KEYS[1]: the client's key. ARGV[1]: emission interval in µs (60 s / N, rounded
/// up), ARGV[2]: burst (N). Returns `{1, 0}` when admitted, `{0, wait_µs}` when not.
pub(super) static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local allow_at = tat - (burst - 1) * interval
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
",
    )
});

/// The shared limiter (present only when the limit is on).
#[derive(Clone)]
pub struct SharedRateLimit {
    conn: ConnectionManager,
    keys: Keys,
    scope: LimitKind,
    interval_us: u64,
    burst: u32,
    last_warning_ms: std::sync::Arc<AtomicI64>,
}

impl std::fmt::Debug for SharedRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRateLimit")
            .field("scope", &self.scope)
            .field("interval_us", &self.interval_us)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl SharedRateLimit {
    /// `per_minute` calls per key per minute (burst the same) for the limit `scope`; `None`
    /// when 0 (off).
    pub fn new(
        conn: ConnectionManager,
        keys: Keys,
        scope: LimitKind,
        per_minute: u32,
    ) -> Option<Self> {
        if per_minute == 0 {
            return None;
        }
        Some(Self {
            conn,
            keys,
            scope,
            interval_us: 60_000_000_u64.div_ceil(u64::from(per_minute)),
            burst: per_minute,
            last_warning_ms: std::sync::Arc::new(AtomicI64::new(i64::MIN)),
        })
    }

    /// The limit this budget belongs to.
    pub fn scope(&self) -> LimitKind {
        self.scope
    }

    /// Admits one call of `client` (`Ok`), or says how many whole seconds to wait (at least
    /// 1). `None` when Redis did not answer in time or failed (see the module docs).
    pub async fn check(&self, client: &str) -> Option<Result<(), u64>> {
        let mut conn = self.conn.clone();
        let key = self.keys.scoped_rate(self.scope, client);
        let mut invocation = GCRA.key(&key);
        invocation.arg(self.interval_us).arg(self.burst);
        let call = invocation.invoke_async::<(i64, i64)>(&mut conn);
        let failure = match tokio::time::timeout(CHECK_TIMEOUT, call).await {
            Ok(Ok((1, _))) => return Some(Ok(())),
            Ok(Ok((_, wait_us))) => {
                let wait_us = u64::try_from(wait_us).unwrap_or(0);
                return Some(Err(wait_us.div_ceil(1_000_000).max(1)));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", CHECK_TIMEOUT.as_millis()),
        };
        warn_throttled(&self.last_warning_ms, &failure);
        None
    }
}

/// Logs "shared limit unavailable" at most once per [`WARN_EVERY`] per `last` slot.
pub(super) fn warn_throttled(last_warning_ms: &AtomicI64, failure: &str) {
    let now = chrono::Utc::now().timestamp_millis();
    let last = last_warning_ms.load(Ordering::Relaxed);
    let every = i64::try_from(WARN_EVERY.as_millis()).unwrap_or(i64::MAX);
    if now.saturating_sub(last) >= every
        && last_warning_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
                error = %failure,
            "shared rate limit unavailable (Redis); using this replica's own limit"
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::replica::{connect_manager, testing};

    #[tokio::test]
    async fn replica_rate_limit_is_one_budget_for_every_handle() {
        let Some((_, conn)) = testing::redis().await else {
            return;
        };
        let keys = Keys::new(&testing::unique_prefix());
        // Two handles with their own connections: two replicas.
        let a =
            SharedRateLimit::new(conn.clone(), keys.clone(), LimitKind::InvokeClient, 4).unwrap();
        let client = redis::Client::open(
            std::env::var("AIMARKET_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
                .as_str(),
        )
        .unwrap();
        let b = SharedRateLimit::new(
            connect_manager(&client).await.unwrap(),
            keys.clone(),
            LimitKind::InvokeClient,
            4,
        )
        .unwrap();
        let mut admitted = 0;
        let mut refused = Vec::new();
        for i in 0..7 {
            let limiter = if i % 2 == 0 { &a } else { &b };
            match limiter.check("key:client-1").await.unwrap() {
                Ok(()) => admitted += 1,
                Err(wait) => refused.push(wait),
            }
        }
        assert_eq!(admitted, 4);
        assert_eq!(refused.len(), 3);
        // One call every 15 s: the wait is at most that, and at least a second.
        assert!(refused.iter().all(|w| (1..=15).contains(w)), "{refused:?}");
        // Another client has its own budget.
        assert_eq!(a.check("key:client-2").await, Some(Ok(())));
        assert!(SharedRateLimit::new(conn, keys, LimitKind::SearchClient, 0).is_none());
    }

    #[tokio::test]
    async fn replica_rate_limit_gives_no_decision_when_redis_fails() {
        let Some((_, conn)) = testing::redis().await else {
            return;
        };
        let keys = Keys::new(&testing::unique_prefix());
        let limit =
            SharedRateLimit::new(conn.clone(), keys.clone(), LimitKind::InvokeClient, 4).unwrap();
        // A key of the wrong type makes the script fail: the caller must decide.
        let mut raw = conn.clone();
        let _: i64 = redis::cmd("LPUSH")
            .arg(keys.rate_limit("key:broken"))
            .arg("x")
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(limit.check("key:broken").await, None);
        let _: i64 = redis::cmd("DEL")
            .arg(keys.rate_limit("key:broken"))
            .query_async(&mut raw)
            .await
            .unwrap();
    }
}

//! The crawl lease: one crawl at a time across replicas.
//!
//! The lease is one Redis key, taken with `SET <key> <value> NX PX <ttl>`. Its value is
//! `<replica id>|<nonce>|<run id>`: the first two parts (the *token*, with its trailing `|`)
//! identify this acquisition; the run id is added once the `crawl_runs` row exists, so a
//! replica that finds the lease taken can tell its operator which run is going and read that
//! run's totals when it ends.
//!
//! While the crawl runs, a task renews the lease every third of its lifetime. Renewal,
//! attaching the run id and release are Lua scripts that act only when the stored value
//! still starts with the caller's token (compare-and-set / compare-and-delete), so a
//! replica whose lease expired (a long pause) can never extend or delete its successor's
//! lease. If that happens the renewal task logs a warning; the crawl goes on (crawl writes
//! are idempotent upserts, so an overlap costs work, not correctness).
//!
//! A replica that dies mid-crawl stops renewing; the key expires after the lifetime
//! (`replica.crawl_lease_ttl_s`) and the next crawl anywhere can take it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// Extends the lease when the caller still holds it. KEYS[1] lease, ARGV[1] token, ARGV[2]
/// lifetime in ms. Returns 1 when extended, 0 when not held.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Deletes the lease when the caller still holds it (compare-and-delete). KEYS[1] lease,
/// ARGV[1] token. Returns 1 when deleted, 0 when not held.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Rewrites the lease value (and its lifetime) when the caller still holds it. KEYS[1]
/// lease, ARGV[1] token, ARGV[2] new value, ARGV[3] lifetime in ms. Returns 1 or 0.
static ATTACH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
",
    )
});

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Who holds the lease, as read from its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The holding replica's id.
    pub replica_id: String,
    /// Its `crawl_runs` id, once attached.
    pub run_id: Option<i64>,
    /// The acquisition's token (`<replica id>|<nonce>|`).
    pub token: String,
}

impl Holder {
    /// Parses a lease value; `None` for a value this code did not write.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.splitn(3, '|');
        let replica_id = parts.next()?;
        let nonce = parts.next()?;
        let run = parts.next()?;
        let run_id = if run.is_empty() {
            None
        } else {
            Some(run.parse().ok()?)
        };
        Some(Self {
            replica_id: replica_id.to_owned(),
            run_id,
            token: format!("{replica_id}|{nonce}|"),
        })
    }
}

/// The outcome of [`Lease::try_acquire`].
#[derive(Debug)]
pub enum Acquired {
    /// This replica holds the lease now.
    Won(LeaseGuard),
    /// Another acquisition holds it.
    Held(Holder),
}

/// The crawl lease of one hub (one key), as seen by one replica.
#[derive(Clone)]
pub struct Lease {
    conn: ConnectionManager,
    key: String,
    replica_id: String,
    ttl: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("replica_id", &self.replica_id)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The lease at `key` for replica `replica_id`, living `ttl` without renewal.
    pub fn new(conn: ConnectionManager, key: String, replica_id: String, ttl: Duration) -> Self {
        Self {
            conn,
            key,
            replica_id,
            ttl,
        }
    }

    /// The lease lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lease if it is free (and starts renewing it), else says who holds it.
    pub async fn try_acquire(&self) -> Result<Acquired, redis::RedisError> {
        // Bounded: the key can only vanish between SET and GET if its holder released it
        // (or it expired) in that instant; a third collision in a row is not worth chasing.
        for _ in 0..3 {
            let token = format!("{}|{}|", self.replica_id, uuid::Uuid::new_v4().simple());
            let mut conn = self.conn.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(&self.key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(millis(self.ttl))
                .query_async(&mut conn)
                .await?;
            if set.is_some() {
                return Ok(Acquired::Won(LeaseGuard::start(self.clone(), token)));
            }
            if let Some(holder) = self.holder().await? {
                return Ok(Acquired::Held(holder));
            }
        }
        Ok(Acquired::Held(Holder {
            replica_id: "unknown".to_owned(),
            run_id: None,
            token: String::new(),
        }))
    }

    /// Who holds the lease now, if anyone. A value this code did not write counts as held
    /// by `unknown`.
    pub async fn holder(&self) -> Result<Option<Holder>, redis::RedisError> {
        let mut conn = self.conn.clone();
        let value: Option<String> = redis::cmd("GET")
            .arg(&self.key)
            .query_async(&mut conn)
            .await?;
        Ok(value.map(|v| {
            Holder::parse(&v).unwrap_or(Holder {
                replica_id: "unknown".to_owned(),
                run_id: None,
                token: v,
            })
        }))
    }

    async fn renew(&self, token: &str) -> Result<bool, redis::RedisError> {
        let mut conn = self.conn.clone();
        let renewed: i64 = RENEW
            .key(&self.key)
            .arg(token)
            .arg(millis(self.ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(renewed == 1)
    }
}

/// A held lease. Renewed in the background until [`LeaseGuard::release`]; dropping it
/// without release stops the renewal and releases it in the background (best effort; else
/// it expires).
#[derive(Debug)]
pub struct LeaseGuard {
    lease: Lease,
    token: String,
    renewer: Option<JoinHandle<()>>,
    lost: Arc<AtomicBool>,
}

impl LeaseGuard {
    fn start(lease: Lease, token: String) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (lease, token, lost) = (lease.clone(), token.clone(), Arc::clone(&lost));
            tokio::spawn(async move {
                let period = lease.ttl / 3;
                loop {
                    tokio::time::sleep(period).await;
                    let renewed = lease
                        .renew(&token)
                        .instrument(crate::telemetry::span!("replica.lease.renew"))
                        .await;
                    match renewed {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::Release);
                            tracing::warn!(
                                key = %lease.key,
                                "the crawl lease expired before it was renewed; another \
                                 replica may crawl at the same time"
                            );
                            return;
                        }
                        // The next period tries again; the lease lives three of them.
                        Err(e) => tracing::warn!(error = %e, "cannot renew the crawl lease"),
                    }
                }
            })
        };
        Self {
            lease,
            token,
            renewer: Some(renewer),
            lost,
        }
    }

    /// This acquisition's token (`<replica id>|<nonce>|`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// True once a renewal found the lease held by someone else (or gone).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Records the run this lease covers in its value, for replicas that find it taken.
    /// False when the lease is no longer held.
    pub async fn attach_run(&self, run_id: i64) -> Result<bool, redis::RedisError> {
        let mut conn = self.lease.conn.clone();
        let attached: i64 = ATTACH
            .key(&self.lease.key)
            .arg(&self.token)
            .arg(format!("{}{run_id}", self.token))
            .arg(millis(self.lease.ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(attached == 1)
    }

    /// Extends the lease now (the background task does this on its own). False when it is
    /// no longer held.
    pub async fn renew(&self) -> Result<bool, redis::RedisError> {
        self.lease.renew(&self.token).await
    }

    /// Stops renewing and deletes the lease if it is still this acquisition's. Returns
    /// whether it was deleted.
    pub async fn release(mut self) -> Result<bool, redis::RedisError> {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        release(&self.lease, &self.token).await
    }

    /// Stops renewing without releasing, as a crashed replica would (tests of expiry).
    #[cfg(test)]
    pub(crate) fn forget(mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }
}

async fn release(lease: &Lease, token: &str) -> Result<bool, redis::RedisError> {
    let mut conn = lease.conn.clone();
    let deleted: i64 = RELEASE
        .key(&lease.key)
        .arg(token)
        .invoke_async(&mut conn)
        .await?;
    Ok(deleted == 1)
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some(renewer) = self.renewer.take() else {
            return;
        };
        renewer.abort();
        // An aborted crawl (shutdown) drops its guard: give the lease back if the runtime is
        // still there, else it expires on its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (lease, token) = (self.lease.clone(), self.token.clone());
            runtime.spawn(async move {
                if let Err(e) = release(&lease, &token).await {
                    tracing::debug!(error = %e, "cannot release the crawl lease");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::replica::testing;

    async fn pttl(conn: &ConnectionManager, key: &str) -> i64 {
        let mut conn = conn.clone();
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    fn won(acquired: Acquired) -> LeaseGuard {
        match acquired {
            Acquired::Won(guard) => guard,
            Acquired::Held(holder) => panic!("expected to win, held by {holder:?}"),
        }
    }

    fn held(acquired: Acquired) -> Holder {
        match acquired {
            Acquired::Held(holder) => holder,
            Acquired::Won(guard) => panic!("expected contention, won {}", guard.token()),
        }
    }

    #[test]
    fn replica_lease_values_parse() {
        let h = Holder::parse("pod-1-42-abcd|n0nce|17").unwrap();
        assert_eq!(h.replica_id, "pod-1-42-abcd");
        assert_eq!(h.run_id, Some(17));
        assert_eq!(h.token, "pod-1-42-abcd|n0nce|");
        let h = Holder::parse("a|b|").unwrap();
        assert_eq!(h.run_id, None);
        assert_eq!(Holder::parse("no separators"), None);
        assert_eq!(Holder::parse("a|b|not-a-number"), None);
    }

    #[tokio::test]
    async fn replica_lease_acquire_contention_release_by_owner_only() {
        let Some((_, conn)) = testing::redis().await else {
            return;
        };
        let key = format!("{}crawl:lease", testing::unique_prefix());
        let ttl = Duration::from_secs(30);
        let a = Lease::new(conn.clone(), key.clone(), "replica-a".into(), ttl);
        let b = Lease::new(conn.clone(), key.clone(), "replica-b".into(), ttl);

        let guard = won(a.try_acquire().await.unwrap());
        let remaining = pttl(&conn, &key).await;
        assert!(remaining > 0 && remaining <= 30_000, "{remaining}");
        // Contention: B learns who holds it, and the run once attached.
        let holder = held(b.try_acquire().await.unwrap());
        assert_eq!(holder.replica_id, "replica-a");
        assert_eq!(holder.run_id, None);
        assert_eq!(holder.token, guard.token());
        assert!(guard.attach_run(42).await.unwrap());
        let holder = held(b.try_acquire().await.unwrap());
        assert_eq!(holder.run_id, Some(42));
        assert_eq!(holder.token, guard.token());

        // Only the owner's token releases it: B's own token deletes nothing.
        assert!(!release(&b, "replica-b|other|").await.unwrap());
        assert_eq!(b.holder().await.unwrap().unwrap().replica_id, "replica-a");
        assert!(guard.release().await.unwrap());
        assert_eq!(a.holder().await.unwrap(), None);

        // Free again: B takes it.
        let guard = won(b.try_acquire().await.unwrap());
        assert!(guard.release().await.unwrap());
    }

    #[tokio::test]
    async fn replica_lease_renewal_extends_and_a_lost_lease_is_never_touched() {
        let Some((_, conn)) = testing::redis().await else {
            return;
        };
        let key = format!("{}crawl:lease", testing::unique_prefix());
        let a = Lease::new(
            conn.clone(),
            key.clone(),
            "replica-a".into(),
            Duration::from_secs(30),
        );
        let guard = won(a.try_acquire().await.unwrap());
        // Shrink the remaining lifetime behind the guard's back; renewal restores it.
        let mut raw = conn.clone();
        let _: i64 = redis::cmd("PEXPIRE")
            .arg(&key)
            .arg(5_000)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(pttl(&conn, &key).await <= 5_000);
        assert!(guard.renew().await.unwrap());
        assert!(pttl(&conn, &key).await > 5_000);

        // Someone else's acquisition after ours expired: renew, attach and release by the
        // old guard all leave it alone.
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg("replica-b|fresh|")
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(!guard.renew().await.unwrap());
        assert!(!guard.attach_run(7).await.unwrap());
        assert!(!guard.release().await.unwrap());
        let holder = a.holder().await.unwrap().unwrap();
        assert_eq!(holder.replica_id, "replica-b");
        assert_eq!(holder.token, "replica-b|fresh|");
        let _: i64 = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn replica_lease_background_renewal_keeps_it_and_expiry_frees_it() {
        let Some((_, conn)) = testing::redis().await else {
            return;
        };
        let key = format!("{}crawl:lease", testing::unique_prefix());
        // The shortest lifetime the settings allow; renewed every second.
        let ttl = Duration::from_secs(3);
        let a = Lease::new(conn.clone(), key.clone(), "replica-a".into(), ttl);
        let b = Lease::new(conn.clone(), key.clone(), "replica-b".into(), ttl);
        let guard = won(a.try_acquire().await.unwrap());
        // Bounded: past two lifetimes the lease is still A's, because it is renewed.
        for _ in 0..7 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let holder = held(b.try_acquire().await.unwrap());
            assert_eq!(holder.replica_id, "replica-a");
        }
        assert!(!guard.is_lost());
        // A "crashes": no release, no renewal. The lease expires and B gets it.
        guard.forget();
        let mut taken = None;
        for _ in 0..100 {
            if let Acquired::Won(g) = b.try_acquire().await.unwrap() {
                taken = Some(g);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let guard = taken.expect("the lease expired within ten seconds");
        assert!(guard.release().await.unwrap());
    }
}

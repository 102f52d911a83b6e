//! Running several replicas of one hub: what they share through Redis and how each one's
//! search index follows the shared catalog.
//!
//! [`SharedState`] is built at startup from `REDIS_URL` (and the store's engine):
//!
//! - **No `REDIS_URL`** (single-replica mode): nothing here talks to Redis. Crawls are single
//!   flight inside the process, the invoke rate limit is the in-process `governor` one. With
//!   a PostgreSQL store the catalog-version poll still runs, so several replicas without
//!   Redis converge (each crawls on its own schedule then; limits are per process).
//! - **`REDIS_URL` set** (multi-replica mode; an unreachable Redis stops startup with a
//!   message naming `REDIS_URL`):
//!   - [`lease`]: one crawl at a time across replicas (`<prefix>crawl:lease`), and one
//!     scheduled crawl per interval (`<prefix>crawl:schedule`); see `crawl::scheduler`.
//!   - [`sync`]: every catalog change a replica publishes locally is also published on the
//!     channel `<prefix>catalog`; the other replicas hand it to their index (which applies
//!     the keys when it is at the change's `since`, else rebuilds from the store). The
//!     periodic poll of `store.catalog_version()` heals a missed message.
//!   - [`ratelimit`]: the per-client limits (invoke, search, MCP) are each one GCRA shared by
//!     all replicas (a Lua script, one round trip). On a Redis error they fall back to the
//!     replica's own limiter (fail open to per-replica limits) and log a warning.
//!   - [`provider`]: the per-provider rate and the back-off learned from a provider's 429,
//!     one script per routed call, with the same fallback.
//!
//! The key prefix (`replica.key_prefix`, default `aimarket:`) lets several hubs, or tests,
//! share one Redis.

pub mod lease;
pub mod provider;
pub mod ratelimit;
pub mod sync;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, watch};

use crate::crawl::CatalogUpdate;
use crate::limits::LimitKind;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::Store;

pub use lease::{Acquired, Holder, Lease, LeaseGuard};
pub use provider::SharedProviderLimits;
pub use ratelimit::SharedRateLimit;

/// How long startup waits for Redis before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one Redis command (a stalled Redis must not stall requests for long).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on the health endpoint's `PING`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Catalog changes queued for the channel before they are coalesced into "rebuild".
const OUTBOX: usize = 256;

/// Why the replica layer could not start or a Redis command failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// Redis is configured but cannot be reached.
    #[error(
        "cannot connect to Redis at REDIS_URL={url}: {reason} (unset REDIS_URL to run a single \
         replica without Redis)"
    )]
    Connect {
        /// The configured URL, password redacted.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A Redis command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The Redis key names, all under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (for example `aimarket:`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The crawl lease: `<prefix>crawl:lease`.
    pub fn crawl_lease(&self) -> String {
        format!("{}crawl:lease", self.prefix)
    }

    /// The scheduled-crawl slot: `<prefix>crawl:schedule`.
    pub fn crawl_schedule(&self) -> String {
        format!("{}crawl:schedule", self.prefix)
    }

    /// The catalog-change channel: `<prefix>catalog`.
    pub fn catalog_channel(&self) -> String {
        format!("{}catalog", self.prefix)
    }

    /// One client's invoke rate-limit state: `<prefix>ratelimit:<client>`.
    pub fn rate_limit(&self, client: &str) -> String {
        format!("{}ratelimit:{client}", self.prefix)
    }

    /// The rate-limit state of `key` under limit `scope`: the invoke limit keeps its
    /// original name (`<prefix>ratelimit:<client>`); the others are
    /// `<prefix>ratelimit:search:<client>`, `…:mcp:<client>` and `…:provider:<origin>`.
    /// Client ids start with `key:`, `ch:`, `ip:` or `id:`, so the names never collide.
    pub fn scoped_rate(&self, scope: LimitKind, key: &str) -> String {
        let scope = match scope {
            LimitKind::InvokeClient => return self.rate_limit(key),
            LimitKind::SearchClient => "search",
            LimitKind::McpClient => "mcp",
            LimitKind::ProviderInflight | LimitKind::ProviderRate | LimitKind::ProviderBackoff => {
                "provider"
            }
        };
        format!("{}ratelimit:{scope}:{key}", self.prefix)
    }

    /// A provider's back-off (a key with a TTL): `<prefix>backoff:<origin>`.
    pub fn provider_backoff(&self, origin: &str) -> String {
        format!("{}backoff:{origin}", self.prefix)
    }
}

/// What exists only in multi-replica mode.
struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    lease: Lease,
    /// The client limits that are on.
    rates: Vec<SharedRateLimit>,
    providers: SharedProviderLimits,
    /// False when the store is SQLite: catalog versions of separate files mean nothing to
    /// each other, so no catalog messages are sent or read.
    catalog_channel: bool,
    outbox: mpsc::Sender<CatalogUpdate>,
}

struct Inner {
    replica_id: String,
    redis: Option<Redis>,
    /// Period of the catalog-version poll, when it runs.
    poll: Option<Duration>,
    /// The outbox's receiving end until [`spawn`] takes it.
    outbox_rx: std::sync::Mutex<Option<mpsc::Receiver<CatalogUpdate>>>,
    /// Changes dropped because the outbox was full: the next message asks for a rebuild.
    overflowed: std::sync::atomic::AtomicBool,
    stop: watch::Sender<bool>,
    /// Counters (health and tests).
    stats: ReplicaStats,
}

/// Counters of the replica layer.
#[derive(Debug, Default)]
pub struct ReplicaStats {
    /// Catalog messages from other replicas handed to the index.
    pub remote_updates: AtomicI64,
    /// Times the poll found the store ahead and asked for a rebuild.
    pub poll_heals: AtomicI64,
}

/// What replicas share (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct SharedState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("replica_id", &self.inner.replica_id)
            .field("mode", &self.mode())
            .field("poll", &self.inner.poll)
            .finish_non_exhaustive()
    }
}

/// A name for this process that other replicas can log: host, pid and a random suffix
/// (replicas behind one Service share the public URL, so it cannot be that).
fn new_replica_id() -> String {
    // Kubernetes sets HOSTNAME to the pod name; it only makes logs readable.
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_owned());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}

impl SharedState {
    fn build(replica_id: String, redis: Option<Redis>, poll: Option<Duration>) -> Self {
        Self {
            inner: Arc::new(Inner {
                replica_id,
                redis,
                poll,
                outbox_rx: std::sync::Mutex::new(None),
                overflowed: std::sync::atomic::AtomicBool::new(false),
                stop: watch::Sender::new(false),
                stats: ReplicaStats::default(),
            }),
        }
    }

    /// Single-replica mode without the poll (tests and tools that build an `AppState` by
    /// hand).
    pub fn disabled() -> Self {
        Self::build(new_replica_id(), None, None)
    }

    /// Builds the shared state the settings describe; connects to Redis when `REDIS_URL` is
    /// set and fails with [`ReplicaError::Connect`] (naming `REDIS_URL`) when it cannot.
    pub async fn connect(settings: &Settings, store: &Store) -> Result<Self, ReplicaError> {
        let replica_id = new_replica_id();
        let postgres = store.backend() == "postgres";
        let poll =
            (postgres || settings.redis_url.is_some()).then(|| settings.replica.catalog_poll());
        let Some(url) = &settings.redis_url else {
            return Ok(Self::build(replica_id, None, poll));
        };
        let connect_error = |reason: String| ReplicaError::Connect {
            url: url.to_string(),
            reason,
        };
        let client = redis::Client::open(url.expose()).map_err(|e| connect_error(e.to_string()))?;
        let conn = connect_manager(&client)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        if !postgres {
            tracing::warn!(
                "REDIS_URL is set but the store is SQLite: replicas do not share a catalog. \
                 Use DATABASE_URL=postgres://… for several replicas; catalog messages are off"
            );
        }
        let keys = Keys::new(&settings.replica.key_prefix);
        let lease = Lease::new(
            conn.clone(),
            keys.crawl_lease(),
            replica_id.clone(),
            settings.replica.crawl_lease_ttl(),
        );
        let limits = &settings.limits;
        let rates = [
            (LimitKind::InvokeClient, settings.invoke.rate_per_min),
            (LimitKind::SearchClient, limits.search_rate_per_min),
            (LimitKind::McpClient, limits.mcp_rate_per_min),
        ]
        .into_iter()
        .filter_map(|(scope, n)| SharedRateLimit::new(conn.clone(), keys.clone(), scope, n))
        .collect();
        let providers =
            SharedProviderLimits::new(conn.clone(), keys.clone(), limits.provider_rate_per_min);
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
        let shared = Self::build(
            replica_id,
            Some(Redis {
                client,
                conn,
                keys,
                lease,
                rates,
                providers,
                catalog_channel: postgres,
                outbox,
            }),
            poll,
        );
        *shared.outbox_slot() = Some(outbox_rx);
        tracing::info!(
            replica_id = %shared.replica_id(),
            redis = %url,
            key_prefix = %settings.replica.key_prefix,
            "multi-replica mode: crawl lease, rate limits and catalog changes shared through Redis"
        );
        Ok(shared)
    }

    fn outbox_slot(&self) -> std::sync::MutexGuard<'_, Option<mpsc::Receiver<CatalogUpdate>>> {
        self.inner
            .outbox_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// This process's name in leases and catalog messages.
    pub fn replica_id(&self) -> &str {
        &self.inner.replica_id
    }

    /// `"multi-replica"` with Redis, else `"single-replica"` (health's `mode`).
    pub fn mode(&self) -> &'static str {
        if self.inner.redis.is_some() {
            "multi-replica"
        } else {
            "single-replica"
        }
    }

    /// Health's `redis`: `"disabled"` without `REDIS_URL`, else `"ok"` when a `PING` answers
    /// within a second and `"unavailable"` when it does not.
    pub async fn redis_health(&self) -> &'static str {
        let Some(redis) = &self.inner.redis else {
            return "disabled";
        };
        let mut conn = redis.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(HEALTH_TIMEOUT, ping).await {
            Ok(Ok(_)) => "ok",
            _ => "unavailable",
        }
    }

    /// The crawl lease, in multi-replica mode.
    pub fn crawl_lease(&self) -> Option<&Lease> {
        self.inner.redis.as_ref().map(|r| &r.lease)
    }

    /// Claims the scheduled crawl of this interval for this replica: true when no replica
    /// started a scheduled crawl within the last 90 % of `interval` (so N replicas, each on
    /// its own jittered timer, crawl about once per interval together). Always true in
    /// single-replica mode.
    pub async fn claim_schedule_slot(&self, interval: Duration) -> Result<bool, ReplicaError> {
        let Some(redis) = &self.inner.redis else {
            return Ok(true);
        };
        let hold = interval.mul_f64(0.9).as_millis().max(1);
        let mut conn = redis.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(redis.keys.crawl_schedule())
            .arg(&self.inner.replica_id)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(hold).unwrap_or(u64::MAX))
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// Checks one request of `client` against the shared limit `scope` (a client limit).
    /// `None` when there is no shared limit (single-replica mode, or the limit is off) or
    /// Redis failed: the caller then uses its in-process limiter.
    pub async fn check_rate(&self, scope: LimitKind, client: &str) -> Option<Result<(), u64>> {
        self.inner
            .redis
            .as_ref()?
            .rates
            .iter()
            .find(|rate| rate.scope() == scope)?
            .check(client)
            .await
    }

    /// Checks one routed call to provider `origin` against the shared back-off and (when
    /// `limits.provider_rate_per_min` is on) the shared provider rate. `None` in
    /// single-replica mode or when Redis failed.
    pub async fn check_provider(&self, origin: &str) -> Option<Result<(), (LimitKind, u64)>> {
        self.inner.redis.as_ref()?.providers.check(origin).await
    }

    /// Tells every replica to back provider `origin` off for `wait` (a no-op without Redis).
    pub async fn back_off_provider(&self, origin: &str, wait: Duration) {
        if let Some(redis) = &self.inner.redis {
            redis.providers.back_off(origin, wait).await;
        }
    }

    /// Tells the other replicas about a catalog change this replica made. Never blocks: a
    /// full outbox turns the next message into "rebuild" (and the poll heals in any case).
    pub fn announce(&self, update: &CatalogUpdate) {
        let Some(redis) = &self.inner.redis else {
            return;
        };
        if !redis.catalog_channel {
            return;
        }
        if redis.outbox.try_send(update.clone()).is_err() {
            self.inner.overflowed.store(true, Ordering::Release);
        }
    }

    /// Counters.
    pub fn stats(&self) -> &ReplicaStats {
        &self.inner.stats
    }

    /// Stops the background tasks. Idempotent.
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }

    fn stopped(&self) -> watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }
}

/// A [`ConnectionManager`] with bounded timeouts, connected (and answering `PING`) within
/// [`CONNECT_TIMEOUT`].
pub async fn connect_manager(client: &redis::Client) -> Result<ConnectionManager, String> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    let connect = async {
        let mut conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(conn)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))?
}

/// Connects to `url` and sends `PING` (tools and tests that check a Redis before using it).
pub async fn ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    connect_manager(&client).await.map(drop)
}

/// Starts the background tasks: the catalog channel's publisher and subscriber (with
/// Redis and a shared store) and the catalog-version poll (with Redis or PostgreSQL). They
/// hold the state weakly and end on [`SharedState::shutdown`] or when the state is dropped.
pub fn spawn(state: &Arc<AppState>) {
    let shared = &state.shared;
    if let Some(redis) = &shared.inner.redis
        && redis.catalog_channel
        && let Some(outbox) = shared.outbox_slot().take()
    {
        sync::spawn_publisher(shared.clone(), outbox);
        sync::spawn_subscriber(Arc::downgrade(state), shared.clone());
    }
    if let Some(period) = shared.inner.poll {
        sync::spawn_poll(Arc::downgrade(state), shared.clone(), period);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Real Redis for unit tests: `AIMARKET_TEST_REDIS_URL` (default
    //! `redis://127.0.0.1:6379`), skipped with a message when unreachable unless `CI` is set.

    use super::*;

    /// A client and a connection, or `None` (after printing SKIP).
    pub(crate) async fn redis() -> Option<(redis::Client, ConnectionManager)> {
        let url = std::env::var("AIMARKET_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let connected = match redis::Client::open(url.as_str()) {
            Ok(client) => connect_manager(&client).await.map(|conn| (client, conn)),
            Err(e) => Err(e.to_string()),
        };
        match connected {
            Ok(pair) => Some(pair),
            Err(reason) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "Redis at {url} is unreachable in CI: {reason}"
                );
                println!("SKIP: Redis at {url} is unreachable ({reason})");
                None
            }
        }
    }

    /// A key prefix no other test uses.
    pub(crate) fn unique_prefix() -> String {
        format!("aimarket:test:{}:", uuid::Uuid::new_v4().simple())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn replica_keys_live_under_the_prefix() {
        let keys = Keys::new("aimarket:");
        assert_eq!(keys.crawl_lease(), "aimarket:crawl:lease");
        assert_eq!(keys.crawl_schedule(), "aimarket:crawl:schedule");
        assert_eq!(keys.catalog_channel(), "aimarket:catalog");
        assert_eq!(keys.rate_limit("key:ab"), "aimarket:ratelimit:key:ab");
        assert_eq!(
            keys.scoped_rate(LimitKind::InvokeClient, "ip:1.2.3.4"),
            "aimarket:ratelimit:ip:1.2.3.4"
        );
        assert_eq!(
            keys.scoped_rate(LimitKind::SearchClient, "ip:1.2.3.4"),
            "aimarket:ratelimit:search:ip:1.2.3.4"
        );
        assert_eq!(
            keys.provider_backoff("https://p.example"),
            "aimarket:backoff:https://p.example"
        );
    }

    #[test]
    fn replica_ids_are_unique_and_have_no_separator() {
        let a = new_replica_id();
        let b = new_replica_id();
        assert_ne!(a, b);
        assert!(!a.contains('|'), "{a}");
        let disabled = SharedState::disabled();
        assert_eq!(disabled.mode(), "single-replica");
        assert!(disabled.crawl_lease().is_none());
    }

    #[tokio::test]
    async fn replica_health_says_disabled_without_redis() {
        assert_eq!(SharedState::disabled().redis_health().await, "disabled");
    }

    #[tokio::test]
    async fn replica_connect_names_redis_url_when_unreachable() {
        let mut settings = Settings::for_test(std::env::temp_dir());
        // Port 1 on loopback: nothing listens there.
        settings.redis_url = Some("redis://127.0.0.1:1".parse().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(None, dir.path()).await.unwrap();
        let err = SharedState::connect(&settings, &store).await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("REDIS_URL=redis://127.0.0.1:1"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn replica_schedule_slot_is_claimed_once_per_interval() {
        let Some((client, conn)) = testing::redis().await else {
            return;
        };
        let prefix = testing::unique_prefix();
        let mut settings = Settings::for_test(std::env::temp_dir());
        settings.replica.key_prefix = prefix.clone();
        let build = |id: &str| {
            let keys = Keys::new(&prefix);
            let lease = Lease::new(
                conn.clone(),
                keys.crawl_lease(),
                id.into(),
                Duration::from_secs(5),
            );
            let (outbox, _) = mpsc::channel(1);
            SharedState::build(
                id.into(),
                Some(Redis {
                    client: client.clone(),
                    conn: conn.clone(),
                    providers: SharedProviderLimits::new(conn.clone(), keys.clone(), 0),
                    keys,
                    lease,
                    rates: Vec::new(),
                    catalog_channel: true,
                    outbox,
                }),
                None,
            )
        };
        let (a, b) = (build("a"), build("b"));
        let hour = Duration::from_secs(3600);
        assert!(a.claim_schedule_slot(hour).await.unwrap());
        assert!(!b.claim_schedule_slot(hour).await.unwrap());
        assert!(!a.claim_schedule_slot(hour).await.unwrap());
        assert_eq!(a.redis_health().await, "ok");
        assert_eq!(a.mode(), "multi-replica");
        let mut conn = conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(Keys::new(&prefix).crawl_schedule())
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

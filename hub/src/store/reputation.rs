//! The reputation tables: signed events (`reputation_events`), the last recompute's results
//! (`peer_reputation`, `capability_reputation`), the invocation aggregates the scores read,
//! and the one transaction that writes a recompute (peers' scores included).

use super::catalog::CatalogVersionTx as _;
use super::{BeginWrite as _, CapabilityKey, Store, StoreError, on_pool, on_pool_write};

const PEER_REPUTATION_COLUMNS: &str = "peer_url, age, bond, success_rate, volume, calls_30d, \
     successes_30d, volume_usd_30d, events_30d, event_successes_30d, computed_at";

/// A signed event to store (its signature, hex, is its identity: a replay stores nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct NewReputationEvent<'a> {
    /// The event's signature, hex.
    pub signature_hex: &'a str,
    /// The reporting hub's origin.
    pub consumer_hub: &'a str,
    /// The origin the event is about.
    pub provider_hub: &'a str,
    /// The event type.
    pub kind: &'a str,
    /// The capability, when named.
    pub capability_id: Option<&'a str>,
    /// When it happened (unix ms).
    pub event_ts: i64,
    /// The amount (USD).
    pub price_usd: f64,
    /// The call's latency (ms).
    pub latency_ms: i64,
}

/// Which event types count as what in [`Store::reputation_event_lines`] (constant strings
/// without quotes: they are written into the statement).
#[derive(Debug, Clone, Copy)]
pub struct EventKinds<'a> {
    /// Types that count as a success.
    pub success: &'a [&'a str],
    /// Types that count as a failure.
    pub failure: &'a [&'a str],
    /// The type whose amount is not money that moved (left out of the volume).
    pub unpriced: &'a str,
}

/// One (provider, reporting hub) line of the events aggregate.
#[derive(Debug, sqlx::FromRow)]
pub struct EventLine {
    /// The origin the events are about.
    pub provider_hub: String,
    /// The reporting hub.
    pub consumer_hub: String,
    /// Events of any type.
    pub events: i64,
    /// Success events.
    pub successes: i64,
    /// Failure events.
    pub failures: i64,
    /// USD volume of the priced events.
    pub volume_usd: f64,
}

/// One recent event about a hub, as its report lists it.
#[derive(Debug, sqlx::FromRow)]
pub struct RecentEvent {
    /// The event type.
    pub kind: String,
    /// The reporting hub.
    pub consumer_hub: String,
    /// The capability, when named.
    pub capability_id: Option<String>,
    /// When it happened (unix ms).
    pub event_ts: i64,
    /// The amount (USD).
    pub price_usd: f64,
    /// The call's latency (ms).
    pub latency_ms: i64,
}

/// A stored `peer_reputation` row: a peer's components and inputs at the last recompute.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[allow(missing_docs)]
pub struct PeerReputationRow {
    pub peer_url: String,
    pub age: f64,
    pub bond: f64,
    pub success_rate: f64,
    pub volume: f64,
    pub calls_30d: i64,
    pub successes_30d: i64,
    pub volume_usd_30d: f64,
    pub events_30d: i64,
    pub event_successes_30d: i64,
    pub computed_at: i64,
}

/// A stored `capability_reputation` row (its key plus the measured values).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[allow(missing_docs)]
pub struct CapabilityReputationRow {
    pub origin: String,
    pub product_id: String,
    pub capability_id: String,
    pub calls_30d: i64,
    pub successes_30d: i64,
    pub trust_score: Option<f64>,
}

/// One (capability, listing peer) line of the invocation aggregate.
#[derive(Debug, sqlx::FromRow)]
#[allow(missing_docs)]
pub struct CapabilityCalls {
    pub origin: String,
    pub product_id: String,
    pub capability_id: String,
    pub peer_url: String,
    pub calls: i64,
    pub successes: i64,
}

/// This hub's own calls to one peer over a window.
#[derive(Debug, sqlx::FromRow)]
pub struct InvocationTotals {
    /// Calls (402s excluded).
    pub calls: i64,
    /// Successful calls.
    pub successes: i64,
    /// Micro-dollars charged.
    pub volume_micros: i64,
}

/// Everything one recompute writes, in one transaction.
#[derive(Debug, Default)]
pub struct ReputationWrite<'a> {
    /// `(peer id, trust score, bond USD)` of the peers whose stored values changed.
    pub peers: &'a [(i64, f64, f64)],
    /// The peers whose trust changed: their capabilities' keys are returned.
    pub changed_peer_ids: &'a [i64],
    /// `peer_reputation` rows to write.
    pub peer_rows: &'a [PeerReputationRow],
    /// `capability_reputation` rows to write.
    pub capability_rows: &'a [CapabilityReputationRow],
    /// `capability_reputation` rows to delete.
    pub stale_capabilities: &'a [CapabilityKey],
    /// Whether a score visible to search changed (the catalog version is bumped).
    pub bump_version: bool,
    /// Events received before this (unix ms) are purged.
    pub purge_events_before: i64,
    /// When (unix ms).
    pub now: i64,
}

impl ReputationWrite<'_> {
    fn is_empty(&self) -> bool {
        self.peers.is_empty()
            && self.peer_rows.is_empty()
            && self.capability_rows.is_empty()
            && self.stale_capabilities.is_empty()
    }
}

/// `'a', 'b'` for constant strings without quotes in them.
fn sql_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Stores signed events; returns how many were new (the rest are replays).
    pub async fn insert_reputation_events(
        &self,
        events: &[NewReputationEvent<'_>],
        received_at: i64,
    ) -> Result<u64, StoreError> {
        const SQL: &str = "INSERT INTO reputation_events (signature, consumer_hub, \
             provider_hub, kind, capability_id, event_ts, price_usd, latency_ms, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (signature) DO NOTHING";
        if events.is_empty() {
            return Ok(0);
        }
        let mut stored = 0;
        on_pool_write!(self, |pool| {
            for e in events {
                stored += sqlx::query(SQL)
                    .bind(e.signature_hex)
                    .bind(e.consumer_hub)
                    .bind(e.provider_hub)
                    .bind(e.kind)
                    .bind(e.capability_id)
                    .bind(e.event_ts)
                    .bind(e.price_usd)
                    .bind(e.latency_ms)
                    .bind(received_at)
                    .execute(pool)
                    .await?
                    .rows_affected();
            }
        });
        Ok(stored)
    }

    /// The events aggregate over `[since_ms, ∞)` per (provider, reporting hub), optionally
    /// for one provider.
    pub async fn reputation_event_lines(
        &self,
        kinds: EventKinds<'_>,
        since_ms: i64,
        provider: Option<&str>,
    ) -> Result<Vec<EventLine>, StoreError> {
        let sql = format!(
            "SELECT provider_hub, consumer_hub, COUNT(*) AS events, \
             CAST(SUM(CASE WHEN kind IN ({s}) THEN 1 ELSE 0 END) AS BIGINT) AS successes, \
             CAST(SUM(CASE WHEN kind IN ({f}) THEN 1 ELSE 0 END) AS BIGINT) AS failures, \
             CAST(SUM(CASE WHEN kind = '{m}' THEN 0 ELSE price_usd END) AS DOUBLE PRECISION) \
             AS volume_usd \
             FROM reputation_events WHERE event_ts >= $1 AND ($2 IS NULL OR provider_hub = $2) \
             GROUP BY provider_hub, consumer_hub",
            s = sql_list(kinds.success),
            f = sql_list(kinds.failure),
            m = kinds.unpriced,
        );
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(since_ms)
                .bind(provider)
                .fetch_all(pool)
                .await?
        }))
    }

    /// The latest `limit` events about `provider`, newest first.
    pub async fn recent_reputation_events(
        &self,
        provider: &str,
        limit: i64,
    ) -> Result<Vec<RecentEvent>, StoreError> {
        const SQL: &str = "SELECT kind, consumer_hub, capability_id, event_ts, price_usd, \
             latency_ms FROM reputation_events WHERE provider_hub = $1 \
             ORDER BY event_ts DESC, id DESC LIMIT $2";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(provider)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Every stored `peer_reputation` row.
    pub async fn peer_reputation_rows(&self) -> Result<Vec<PeerReputationRow>, StoreError> {
        let sql = format!("SELECT {PEER_REPUTATION_COLUMNS} FROM peer_reputation");
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_all(pool)
                .await?
        }))
    }

    /// The stored `peer_reputation` row of `peer_url`.
    pub async fn peer_reputation_row(
        &self,
        peer_url: &str,
    ) -> Result<Option<PeerReputationRow>, StoreError> {
        let sql =
            format!("SELECT {PEER_REPUTATION_COLUMNS} FROM peer_reputation WHERE peer_url = $1");
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(peer_url)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Calls and successes per (capability, listing peer) since `since_ms` (402s excluded).
    pub async fn capability_calls(
        &self,
        since_ms: i64,
    ) -> Result<Vec<CapabilityCalls>, StoreError> {
        const SQL: &str = "SELECT origin, product_id, capability_id, peer_url, \
             COUNT(*) AS calls, \
             CAST(SUM(CASE WHEN success THEN 1 ELSE 0 END) AS BIGINT) AS successes \
             FROM invocations WHERE ts >= $1 AND status <> 402 \
             GROUP BY origin, product_id, capability_id, peer_url";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).bind(since_ms).fetch_all(pool).await?
        }))
    }

    /// Every stored `capability_reputation` row.
    pub async fn capability_reputation_rows(
        &self,
    ) -> Result<Vec<CapabilityReputationRow>, StoreError> {
        const SQL: &str = "SELECT origin, product_id, capability_id, calls_30d, \
             successes_30d, trust_score FROM capability_reputation";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).fetch_all(pool).await?
        }))
    }

    /// This hub's calls to `peer_url` since `since_ms` (402s excluded).
    pub async fn peer_invocation_totals(
        &self,
        peer_url: &str,
        since_ms: i64,
    ) -> Result<InvocationTotals, StoreError> {
        const SQL: &str = "SELECT COUNT(*) AS calls, \
             CAST(COALESCE(SUM(CASE WHEN success THEN 1 ELSE 0 END), 0) AS BIGINT) \
             AS successes, CAST(COALESCE(SUM(price), 0) AS BIGINT) AS volume_micros \
             FROM invocations WHERE peer_url = $1 AND ts >= $2 AND status <> 402";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(peer_url)
                .bind(since_ms)
                .fetch_one(pool)
                .await?
        }))
    }

    /// Writes one recompute: purges old events, then in one transaction the peers' scores,
    /// the reputation rows and (when `bump_version`) a catalog-version bump. Returns the
    /// version published, if any, and the keys of the capabilities of the peers in
    /// `changed_peer_ids`.
    pub async fn write_reputation(
        &self,
        w: &ReputationWrite<'_>,
    ) -> Result<(Option<i64>, Vec<CapabilityKey>), StoreError> {
        const KEYS_OF_PEER: &str =
            "SELECT origin, product_id, capability_id FROM capabilities WHERE peer_id = $1";
        const PEER: &str =
            "UPDATE peers SET trust_score = $2, bond_usd = $3, updated_at = $4 WHERE id = $1";
        const PEER_ROW: &str = "INSERT INTO peer_reputation (peer_url, age, bond, \
             success_rate, volume, calls_30d, successes_30d, volume_usd_30d, events_30d, \
             event_successes_30d, computed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (peer_url) DO UPDATE SET age = excluded.age, bond = excluded.bond, \
             success_rate = excluded.success_rate, volume = excluded.volume, \
             calls_30d = excluded.calls_30d, successes_30d = excluded.successes_30d, \
             volume_usd_30d = excluded.volume_usd_30d, events_30d = excluded.events_30d, \
             event_successes_30d = excluded.event_successes_30d, \
             computed_at = excluded.computed_at";
        const FORGET_PEERS: &str = "DELETE FROM peer_reputation \
             WHERE peer_url NOT IN (SELECT url FROM peers WHERE state = 'active')";
        const CAP_ROW: &str = "INSERT INTO capability_reputation (origin, product_id, \
             capability_id, calls_30d, successes_30d, trust_score, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (origin, product_id, capability_id) DO UPDATE SET \
             calls_30d = excluded.calls_30d, successes_30d = excluded.successes_30d, \
             trust_score = excluded.trust_score, updated_at = excluded.updated_at";
        const CAP_STALE: &str = "DELETE FROM capability_reputation WHERE origin = $1 \
             AND product_id = $2 AND capability_id = $3";
        const PURGE_EVENTS: &str = "DELETE FROM reputation_events WHERE received_at < $1";

        let now = w.now;
        Ok(on_pool_write!(self, |pool| {
            sqlx::query(PURGE_EVENTS)
                .bind(w.purge_events_before)
                .execute(pool)
                .await?;
            if w.is_empty() {
                return Ok((None, Vec::new()));
            }
            let mut tx = pool.begin_write().await?;
            for (id, trust, bond) in w.peers {
                sqlx::query(PEER)
                    .bind(id)
                    .bind(trust)
                    .bind(bond)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            // The keys whose trust follows a changed peer, read after the peer rows are
            // written and inside the same transaction. Read before it, a crawl committing
            // that peer's capabilities in between was missed: its own update could be
            // applied before this commit (old score) and this update did not name its keys,
            // so search kept the old trust until the next change. Now a crawl that commits
            // first is read here, and one that commits later (the peer row it updates waits
            // for this transaction) is applied with the new score.
            let mut peer_keys: Vec<CapabilityKey> = Vec::new();
            for id in w.changed_peer_ids {
                let found: Vec<CapabilityKey> = sqlx::query_as(KEYS_OF_PEER)
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                peer_keys.extend(found);
            }
            for r in w.peer_rows {
                sqlx::query(PEER_ROW)
                    .bind(&r.peer_url)
                    .bind(r.age)
                    .bind(r.bond)
                    .bind(r.success_rate)
                    .bind(r.volume)
                    .bind(r.calls_30d)
                    .bind(r.successes_30d)
                    .bind(r.volume_usd_30d)
                    .bind(r.events_30d)
                    .bind(r.event_successes_30d)
                    .bind(r.computed_at)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(FORGET_PEERS).execute(&mut *tx).await?;
            for r in w.capability_rows {
                sqlx::query(CAP_ROW)
                    .bind(&r.origin)
                    .bind(&r.product_id)
                    .bind(&r.capability_id)
                    .bind(r.calls_30d)
                    .bind(r.successes_30d)
                    .bind(r.trust_score)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            for key in w.stale_capabilities {
                sqlx::query(CAP_STALE)
                    .bind(&key.origin)
                    .bind(&key.product_id)
                    .bind(&key.capability_id)
                    .execute(&mut *tx)
                    .await?;
            }
            let version = if w.bump_version {
                Some(tx.bump_catalog_version().await?)
            } else {
                None
            };
            tx.commit().await?;
            (version, peer_keys)
        }))
    }
}

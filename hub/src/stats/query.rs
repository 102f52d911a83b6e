//! The JSON form of the live stats, read from the stored invocation records.

use serde::Serialize;

use super::{LiveEvent, LiveFeed};
use crate::payments::{InvocationRecord, micros_to_usd};
use crate::store::{Store, StoreError, now_ms, on_pool};

/// Most events one request may ask for.
pub const MAX_EVENTS: u32 = 200;

/// Totals over every stored invocation record.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Calls recorded.
    pub total_invocations: i64,
    /// Calls that delivered a result.
    pub successful: i64,
    /// Calls answered with the provider's 402 (the buyer had not paid yet): neither a
    /// success nor a failure.
    pub payment_required: i64,
    /// Calls that failed (neither delivered nor a 402).
    pub failed: i64,
    /// `successful / (total_invocations - payment_required)`, 0 with no such calls.
    pub success_rate: f64,
    /// Mean charge per call through this hub, USD.
    pub avg_price_usd: f64,
    /// Mean provider round trip, milliseconds.
    pub avg_latency_ms: f64,
    /// Charged in the last hour, USD.
    pub volume_1h_usd: f64,
    /// Charged in the last 24 hours, USD.
    pub volume_24h_usd: f64,
    /// Charged in total, USD.
    pub volume_total_usd: f64,
}

#[derive(Debug, sqlx::FromRow)]
struct Totals {
    total: i64,
    successful: i64,
    payment_required: i64,
    price_sum: i64,
    latency_sum: i64,
    volume_1h: i64,
    volume_24h: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: i64,
    peer_url: String,
    origin: String,
    product_id: String,
    capability_id: String,
    status: i64,
    success: bool,
    latency_ms: i64,
    price: i64,
    ts: i64,
}

/// The summary (cached in `feed` for [`super::SUMMARY_TTL`]).
pub async fn summary(store: &Store, feed: &LiveFeed) -> Result<Summary, StoreError> {
    const SQL: &str = "SELECT COUNT(*) AS total, \
         CAST(COALESCE(SUM(CASE WHEN success THEN 1 ELSE 0 END), 0) AS BIGINT) AS successful, \
         CAST(COALESCE(SUM(CASE WHEN NOT success AND status = 402 THEN 1 ELSE 0 END), 0) \
              AS BIGINT) AS payment_required, \
         CAST(COALESCE(SUM(price), 0) AS BIGINT) AS price_sum, \
         CAST(COALESCE(SUM(latency_ms), 0) AS BIGINT) AS latency_sum, \
         CAST(COALESCE(SUM(CASE WHEN ts >= $1 THEN price ELSE 0 END), 0) AS BIGINT) AS volume_1h, \
         CAST(COALESCE(SUM(CASE WHEN ts >= $2 THEN price ELSE 0 END), 0) AS BIGINT) AS volume_24h \
         FROM invocations";
    if let Some(hit) = feed.cached_summary() {
        return Ok(hit);
    }
    let now = now_ms();
    let t: Totals = on_pool!(store, |pool| {
        sqlx::query_as(SQL)
            .bind(now - 3_600_000)
            .bind(now - 86_400_000)
            .fetch_one(pool)
            .await?
    });
    let per_call = |sum: f64| {
        if t.total == 0 {
            0.0
        } else {
            sum / t.total as f64
        }
    };
    let summary = Summary {
        total_invocations: t.total,
        successful: t.successful,
        payment_required: t.payment_required,
        failed: t.total - t.successful - t.payment_required,
        // A 402 is not an attempt that could have succeeded.
        success_rate: match t.total - t.payment_required {
            0 => 0.0,
            attempts => t.successful as f64 / attempts as f64,
        },
        avg_price_usd: per_call(micros_to_usd(t.price_sum)),
        avg_latency_ms: per_call(t.latency_sum as f64),
        volume_1h_usd: micros_to_usd(t.volume_1h),
        volume_24h_usd: micros_to_usd(t.volume_24h),
        volume_total_usd: micros_to_usd(t.price_sum),
    };
    feed.cache_summary(&summary);
    Ok(summary)
}

/// The latest `limit` events, newest first.
pub async fn recent_events(store: &Store, limit: u32) -> Result<Vec<LiveEvent>, StoreError> {
    const SQL: &str = "SELECT id, peer_url, origin, product_id, capability_id, status, \
         success, latency_ms, price, ts FROM invocations ORDER BY id DESC LIMIT $1";
    let rows: Vec<Row> = on_pool!(store, |pool| {
        sqlx::query_as(SQL)
            .bind(i64::from(limit.min(MAX_EVENTS)))
            .fetch_all(pool)
            .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| {
            let record = InvocationRecord {
                peer_url: r.peer_url,
                origin: r.origin,
                product_id: r.product_id,
                capability_id: r.capability_id,
                status: u16::try_from(r.status).unwrap_or(0),
                success: r.success,
                latency_ms: u64::try_from(r.latency_ms).unwrap_or(0),
                price_micros: r.price,
                channel_id: None,
                ts: r.ts,
            };
            LiveEvent::from_record(Some(r.id), &record)
        })
        .collect())
}

//! The JSON form of the live stats, read from the stored invocation records.

use serde::Serialize;

use super::{LiveEvent, LiveFeed};
use crate::payments::micros_to_usd;
use crate::store::{Store, StoreError, now_ms};

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

/// The summary (cached in `feed` for [`super::SUMMARY_TTL`]).
pub async fn summary(store: &Store, feed: &LiveFeed) -> Result<Summary, StoreError> {
    if let Some(hit) = feed.cached_summary() {
        return Ok(hit);
    }
    let now = now_ms();
    let t = store
        .invocation_totals(now - 3_600_000, now - 86_400_000)
        .await?;
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
    let rows = store
        .recent_invocations(i64::from(limit.min(MAX_EVENTS)))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, record)| LiveEvent::from_record(Some(id), &record))
        .collect())
}

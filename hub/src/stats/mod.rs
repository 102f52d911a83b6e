//! Live invocation stats: `GET /ai-market/v2/stats/live`.
//!
//! - [`LiveFeed`]: a tokio broadcast channel fed by the ledger right after it stores an
//!   invocation record (the background writer, never the invoke itself: a send never waits,
//!   and with no subscriber it costs nothing). Each SSE client has its own receiver, bounded
//!   at [`CLIENT_BUFFER`] events; a client that falls further behind is dropped rather than
//!   buffered for. At most [`MAX_CLIENTS`] streams are open at once.
//! - [`query`]: the JSON form, recent events and a summary from the stored records (so it
//!   survives restarts and agrees across replicas sharing a database), the summary cached for
//!   [`SUMMARY_TTL`] because it scans the records.

pub mod query;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use tokio::sync::broadcast;

pub use query::{Summary, recent_events, summary};

use crate::payments::{InvocationRecord, micros_to_usd};

/// Events a subscriber may fall behind before it is dropped.
pub const CLIENT_BUFFER: usize = 256;
/// Open event streams at most.
pub const MAX_CLIENTS: usize = 256;
/// Interval of the SSE heartbeat comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long a computed summary is reused.
pub const SUMMARY_TTL: Duration = Duration::from_secs(1);

/// One routed call as the live stats show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveEvent {
    /// The stored record's id; absent on streamed events (records are written in batches
    /// whose ids are not read back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// The capability's owning hub.
    pub source_hub: String,
    /// The peer whose catalog listed it.
    pub peer_url: String,
    /// Product id.
    pub product_id: String,
    /// Capability id.
    pub capability_id: String,
    /// HTTP status answered to the buyer.
    pub status: u16,
    /// Whether the provider delivered a result.
    pub success: bool,
    /// `"success"`, `"payment_required"` (a relayed 402: the buyer has not paid yet) or
    /// `"failure"`.
    pub outcome: &'static str,
    /// Provider round trip.
    pub latency_ms: u64,
    /// What the buyer was charged through this hub.
    pub price_usd: f64,
    /// When the call finished (RFC 3339).
    pub timestamp: String,
}

/// The outcome of a recorded call, as live stats and the summary name it.
pub fn outcome(record: &InvocationRecord) -> &'static str {
    if record.success {
        "success"
    } else if record.status == 402 {
        "payment_required"
    } else {
        "failure"
    }
}

impl LiveEvent {
    /// The event of a record (`id` when read back from the store).
    pub fn from_record(id: Option<i64>, record: &InvocationRecord) -> Self {
        Self {
            id,
            source_hub: record.origin.clone(),
            peer_url: record.peer_url.clone(),
            product_id: record.product_id.clone(),
            capability_id: record.capability_id.clone(),
            status: record.status,
            success: record.success,
            outcome: outcome(record),
            latency_ms: record.latency_ms,
            price_usd: micros_to_usd(record.price_micros),
            timestamp: DateTime::from_timestamp_millis(record.ts)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
                .unwrap_or_default(),
        }
    }
}

/// The live event channel and the summary cache. Cloning shares them.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<Arc<LiveEvent>>,
    clients: Arc<AtomicUsize>,
    summary: Arc<Mutex<Option<(Instant, Summary)>>>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self {
            sender: broadcast::Sender::new(CLIENT_BUFFER),
            clients: Arc::new(AtomicUsize::new(0)),
            summary: Arc::new(Mutex::new(None)),
        }
    }
}

/// An open stream's claim on the feed: its receiver, released when dropped.
#[derive(Debug)]
pub struct Subscription {
    /// The client's receiver (bounded at [`CLIENT_BUFFER`]).
    pub events: broadcast::Receiver<Arc<LiveEvent>>,
    clients: Arc<AtomicUsize>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LiveFeed {
    /// Sends `event` to every open stream; never waits.
    pub fn publish(&self, event: LiveEvent) {
        // An error only means nobody is listening. The cached summary is left alone: it
        // is at most `SUMMARY_TTL` old, and clearing it on every call would make a busy hub
        // scan its records for every stats request.
        let _ = self.sender.send(Arc::new(event));
    }

    /// Publishes freshly stored records, in order.
    pub fn publish_records(&self, records: &[InvocationRecord]) {
        for record in records {
            self.publish(LiveEvent::from_record(None, record));
        }
    }

    /// Opens a stream, or `None` when [`MAX_CLIENTS`] are open.
    pub fn subscribe(&self) -> Option<Subscription> {
        let claimed = self
            .clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CLIENTS).then_some(n + 1)
            });
        claimed.ok().map(|_| Subscription {
            events: self.sender.subscribe(),
            clients: Arc::clone(&self.clients),
        })
    }

    /// Open streams.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Acquire)
    }

    pub(crate) fn cached_summary(&self) -> Option<Summary> {
        let guard = self.summary.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|(at, _)| at.elapsed() < SUMMARY_TTL)
            .map(|(_, s)| s.clone())
    }

    pub(crate) fn cache_summary(&self, summary: &Summary) {
        *self.summary.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), summary.clone()));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(id: i64) -> LiveEvent {
        let record = InvocationRecord {
            peer_url: "https://p.example".into(),
            origin: "https://p.example".into(),
            product_id: "prod".into(),
            capability_id: "cap@v1".into(),
            status: 200,
            success: true,
            latency_ms: 12,
            price_micros: 1_500,
            channel_id: None,
            ts: 0,
        };
        LiveEvent::from_record(Some(id), &record)
    }

    #[tokio::test]
    async fn subscribers_receive_and_laggards_are_cut_off() {
        let feed = LiveFeed::default();
        feed.publish(event(0)); // nobody listening: fine
        let mut sub = feed.subscribe().unwrap();
        assert_eq!(feed.clients(), 1);
        feed.publish(event(1));
        let got = sub.events.recv().await.unwrap();
        assert_eq!(
            (got.id, got.price_usd, got.outcome),
            (Some(1), 0.0015, "success")
        );
        for i in 0..=CLIENT_BUFFER as i64 {
            feed.publish(event(i));
        }
        assert!(matches!(
            sub.events.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
        drop(sub);
        assert_eq!(feed.clients(), 0);
    }

    #[test]
    fn client_bound() {
        let feed = LiveFeed::default();
        let subs: Vec<_> = (0..MAX_CLIENTS)
            .map(|_| feed.subscribe().unwrap())
            .collect();
        assert!(feed.subscribe().is_none());
        drop(subs);
        assert!(feed.subscribe().is_some());
    }
}

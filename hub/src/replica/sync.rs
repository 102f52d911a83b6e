//! Keeping every replica's search index on the shared catalog.
//!
//! - **Publisher**: each catalog change this replica publishes locally
//!   (`AppState::publish_catalog_update`) is sent on `<prefix>catalog` as a JSON
//!   [`Message`]: the version, `since` and the changed keys (at most
//!   [`MAX_KEYS_PER_MESSAGE`]; a larger change is sent as "rebuild": `since: null`, no
//!   keys).
//! - **Subscriber**: a message from another replica is handed to this replica's index
//!   (`AppState::apply_catalog_update`, which never re-publishes it) when it is news: a
//!   version above the one this replica last published, or a same-version change (trust)
//!   from exactly that version. The index applies the keys when it is at `since` and
//!   rebuilds from the store otherwise. Lost connections are re-established with backoff.
//! - **Poll** (with Redis, or with a PostgreSQL store): every `replica.catalog_poll_ms` the
//!   store's catalog version (one single-row read) is compared with the last published one.
//!   When the store is ahead and has stayed at the same version for one whole period (or has
//!   been ahead for [`POLL_PATIENCE`] periods), this replica asks its index for a rebuild.
//!   Waiting one period lets a message (which carries keys, so no rebuild) arrive first and
//!   avoids rebuilding in the middle of another replica's crawl. The poll skips while this
//!   replica crawls or, with Redis, while any replica holds the crawl lease (the crawl
//!   publishes its change when it ends).
//!
//! Messages come from the operator's own Redis, and their keys are only used to re-read
//! rows from the store, so a malformed message is logged and ignored.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::SharedState;
use crate::catalog::CatalogFeed;
use crate::crawl::CatalogUpdate;
use crate::state::AppState;
use crate::store::CapabilityKey;

/// Most keys carried by one message; a larger change asks receivers to rebuild.
pub const MAX_KEYS_PER_MESSAGE: usize = 10_000;
/// Polls the store may stay ahead (moving) before a rebuild is asked for anyway.
pub const POLL_PATIENCE: u32 = 6;
/// First and longest wait before re-subscribing after the channel connection failed.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(500);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(30);

/// A catalog change on the channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The publishing replica (receivers ignore their own messages).
    pub replica: String,
    /// The store's catalog version after the change.
    pub version: i64,
    /// The version the key lists start from; `None`: rebuild.
    pub since: Option<i64>,
    /// Keys new to the catalog, as `[origin, product_id, capability_id]`.
    #[serde(default)]
    pub added: Vec<[String; 3]>,
    /// Keys whose row was rewritten.
    #[serde(default)]
    pub changed: Vec<[String; 3]>,
    /// Keys no longer in the catalog.
    #[serde(default)]
    pub removed: Vec<[String; 3]>,
}

fn to_wire(keys: &[CapabilityKey]) -> Vec<[String; 3]> {
    keys.iter()
        .map(|k| {
            [
                k.origin.clone(),
                k.product_id.clone(),
                k.capability_id.clone(),
            ]
        })
        .collect()
}

fn from_wire(keys: Vec<[String; 3]>) -> Vec<CapabilityKey> {
    keys.into_iter()
        .map(|[origin, product_id, capability_id]| CapabilityKey {
            origin,
            product_id,
            capability_id,
        })
        .collect()
}

impl Message {
    /// The message for `update` published by `replica`; `rebuild` drops the keys (a change
    /// was lost before it), as does a change over [`MAX_KEYS_PER_MESSAGE`].
    pub fn new(replica: &str, update: &CatalogUpdate, rebuild: bool) -> Self {
        if rebuild || update.len() > MAX_KEYS_PER_MESSAGE {
            return Self {
                replica: replica.to_owned(),
                version: update.version,
                since: None,
                added: Vec::new(),
                changed: Vec::new(),
                removed: Vec::new(),
            };
        }
        Self {
            replica: replica.to_owned(),
            version: update.version,
            since: update.since,
            added: to_wire(&update.added),
            changed: to_wire(&update.changed),
            removed: to_wire(&update.removed),
        }
    }

    /// The local update this message stands for.
    pub fn into_update(self) -> CatalogUpdate {
        CatalogUpdate {
            version: self.version,
            since: self.since,
            added: from_wire(self.added),
            changed: from_wire(self.changed),
            removed: from_wire(self.removed),
        }
    }

    /// Whether a replica that last published `local` should take this change: a newer
    /// version, or a same-version change that starts exactly there.
    pub fn is_news(&self, local: i64) -> bool {
        self.version > local || (self.version == local && self.since == Some(local))
    }
}

/// Sends this replica's changes on the channel.
pub(super) fn spawn_publisher(shared: SharedState, mut outbox: mpsc::Receiver<CatalogUpdate>) {
    let Some(redis) = shared.inner.redis.as_ref() else {
        return;
    };
    let mut conn = redis.conn.clone();
    let channel = redis.keys.catalog_channel();
    let mut stop = shared.stopped();
    tokio::spawn(async move {
        loop {
            let update = tokio::select! {
                update = outbox.recv() => match update {
                    Some(update) => update,
                    None => return,
                },
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            let rebuild = shared.inner.overflowed.swap(false, Ordering::AcqRel);
            let message = Message::new(shared.replica_id(), &update, rebuild);
            let payload = match serde_json::to_string(&message) {
                Ok(payload) => payload,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a catalog message");
                    continue;
                }
            };
            let sent: Result<i64, _> = tracing::Instrument::instrument(
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(payload)
                    .query_async(&mut conn),
                crate::telemetry::span!("replica.sync.publish"),
            )
            .await;
            match sent {
                Ok(receivers) => tracing::debug!(
                    version = update.version,
                    receivers,
                    "catalog change published to the other replicas"
                ),
                // The other replicas' polls pick the version up.
                Err(e) => tracing::warn!(
                    error = %e,
                    version = update.version,
                    "cannot publish a catalog change to the other replicas"
                ),
            }
        }
    });
}

/// Hands one received payload to the index when it is news. Returns whether it was taken.
pub(super) fn receive(shared: &SharedState, feed: &CatalogFeed, payload: &[u8]) -> bool {
    let message: Message = match serde_json::from_slice(payload) {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed catalog message");
            return false;
        }
    };
    if message.replica == shared.replica_id() {
        return false;
    }
    let local = feed.published_version();
    if !message.is_news(local) {
        return false;
    }
    tracing::debug!(
        from = %message.replica,
        version = message.version,
        since = ?message.since,
        "catalog change from another replica"
    );
    shared
        .stats()
        .remote_updates
        .fetch_add(1, Ordering::Relaxed);
    feed.apply(message.into_update());
    true
}

/// Listens on the channel, re-subscribing with backoff when the connection drops.
pub(super) fn spawn_subscriber(state: Weak<AppState>, shared: SharedState) {
    let Some(redis) = shared.inner.redis.as_ref() else {
        return;
    };
    let client = redis.client.clone();
    let channel = redis.keys.catalog_channel();
    let mut stop = shared.stopped();
    tokio::spawn(async move {
        let mut backoff = RESUBSCRIBE_MIN;
        loop {
            let session = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                tracing::debug!(%channel, "subscribed to catalog changes");
                let mut messages = pubsub.on_message();
                let mut received = false;
                while let Some(msg) = messages.next().await {
                    let Some(state) = state.upgrade() else {
                        return Ok::<bool, redis::RedisError>(true);
                    };
                    crate::telemetry::span!("replica.sync.receive")
                        .in_scope(|| receive(&state.shared, &state.feed, msg.get_payload_bytes()));
                    received = true;
                }
                // The stream ended: the connection was lost.
                Ok(received)
            };
            let outcome = tokio::select! {
                outcome = session => outcome,
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            if state.strong_count() == 0 {
                return;
            }
            match outcome {
                Ok(true) => backoff = RESUBSCRIBE_MIN,
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    error = %e,
                    retry_in_ms = backoff.as_millis() as u64,
                    "catalog channel unavailable; the catalog poll covers the gap"
                ),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
        }
    });
}

/// What the poll remembers between rounds: the store version it last saw ahead of this
/// replica, and for how many rounds the store has been ahead.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollState {
    ahead: Option<(i64, u32)>,
}

impl PollState {
    /// One round: `stored` is the store's version, `local` the last published one. Returns
    /// the version to rebuild at, when it is time.
    pub fn observe(&mut self, stored: i64, local: i64) -> Option<i64> {
        if stored <= local {
            self.ahead = None;
            return None;
        }
        match self.ahead {
            Some((seen, rounds)) if seen == stored || rounds + 1 >= POLL_PATIENCE => {
                self.ahead = None;
                Some(stored)
            }
            Some((_, rounds)) => {
                self.ahead = Some((stored, rounds + 1));
                None
            }
            None => {
                self.ahead = Some((stored, 1));
                None
            }
        }
    }

    /// Forgets what was seen (a crawl is running; it publishes when it ends).
    pub fn reset(&mut self) {
        self.ahead = None;
    }
}

/// Compares the store's catalog version with the published one every `period`.
pub(super) fn spawn_poll(state: Weak<AppState>, shared: SharedState, period: Duration) {
    let mut stop = shared.stopped();
    tokio::spawn(async move {
        let mut poll = PollState::default();
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            let Some(state) = state.upgrade() else {
                return;
            };
            if crawling(&state).await {
                poll.reset();
                continue;
            }
            let stored = match state.store.catalog_version().await {
                Ok(version) => version,
                Err(e) => {
                    tracing::debug!(error = %e, "catalog poll: cannot read the store's version");
                    continue;
                }
            };
            if let Some(version) = poll.observe(stored, state.published_catalog_version()) {
                tracing::info!(
                    version,
                    "the store's catalog moved without a message; rebuilding the search index"
                );
                state
                    .shared
                    .stats()
                    .poll_heals
                    .fetch_add(1, Ordering::Relaxed);
                state.apply_catalog_update(CatalogUpdate::initial(version));
            }
        }
    });
}

/// True while a crawl that will publish its change is going: this replica's, or (with
/// Redis) any replica's.
async fn crawling(state: &Arc<AppState>) -> bool {
    if state.crawl.is_running() {
        return true;
    }
    match state.shared.crawl_lease() {
        Some(lease) => match lease.holder().await {
            Ok(holder) => holder.is_some(),
            // Without Redis the version is all there is to go by.
            Err(_) => false,
        },
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(id: &str) -> CapabilityKey {
        CapabilityKey {
            origin: "https://a.example".into(),
            product_id: "p".into(),
            capability_id: id.into(),
        }
    }

    #[test]
    fn replica_message_round_trips_and_caps_keys() {
        let update = CatalogUpdate {
            version: 12,
            since: Some(10),
            added: vec![key("a")],
            changed: vec![key("b")],
            removed: vec![key("c")],
        };
        let message = Message::new("r1", &update, false);
        let text = serde_json::to_string(&message).unwrap();
        let back: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(back.clone().into_update(), update);
        assert_eq!(back.replica, "r1");

        let rebuild = Message::new("r1", &update, true).into_update();
        assert_eq!(rebuild, CatalogUpdate::initial(12));

        let big = CatalogUpdate {
            version: 3,
            since: Some(2),
            added: (0..=MAX_KEYS_PER_MESSAGE)
                .map(|i| key(&i.to_string()))
                .collect(),
            ..CatalogUpdate::default()
        };
        assert_eq!(
            Message::new("r1", &big, false).into_update(),
            CatalogUpdate::initial(3)
        );
    }

    #[test]
    fn replica_message_news_rule() {
        let at = |version, since| Message {
            replica: "r".into(),
            version,
            since,
            added: Vec::new(),
            changed: Vec::new(),
            removed: Vec::new(),
        };
        assert!(at(5, Some(4)).is_news(4));
        assert!(at(7, Some(4)).is_news(4));
        assert!(at(5, None).is_news(4));
        // A trust change at the current version.
        assert!(at(4, Some(4)).is_news(4));
        // Already there (through the poll, or a duplicate), or older.
        assert!(!at(4, Some(3)).is_news(4));
        assert!(!at(4, None).is_news(4));
        assert!(!at(3, Some(2)).is_news(4));
    }

    #[test]
    fn replica_poll_waits_for_a_quiet_store() {
        let mut poll = PollState::default();
        assert_eq!(poll.observe(3, 3), None);
        // Ahead once: a message may still come.
        assert_eq!(poll.observe(5, 3), None);
        // Still at 5 one period later: rebuild.
        assert_eq!(poll.observe(5, 3), Some(5));
        // Caught up.
        assert_eq!(poll.observe(5, 5), None);
        // Moving every round (a long crawl elsewhere): rebuild after the patience runs out.
        let mut poll = PollState::default();
        let decisions: Vec<Option<i64>> = (0..POLL_PATIENCE as i64)
            .map(|i| poll.observe(10 + i, 3))
            .collect();
        assert!(decisions[..decisions.len() - 1].iter().all(Option::is_none));
        assert_eq!(
            decisions.last().copied().flatten(),
            Some(10 + POLL_PATIENCE as i64 - 1)
        );
        // A message catching up in between resets the count.
        let mut poll = PollState::default();
        assert_eq!(poll.observe(8, 3), None);
        assert_eq!(poll.observe(8, 8), None);
        assert_eq!(poll.observe(9, 8), None);
    }
}

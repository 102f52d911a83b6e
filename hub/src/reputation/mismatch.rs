//! Price mismatches the `price-guard` plugin detects, recorded as reputation events of this
//! hub against the peer that answered the 402.
//!
//! The plugin calls [`ReputationSink::price_mismatch`] on the request path, so the sink
//! only queues the event (`try_send` on a bounded channel; a full queue drops the event with
//! a warning) and a background task stores it in `reputation_events` as a `price_mismatch`
//! event whose reporter (`consumer_hub`) is this hub, signed with the hub's key over the
//! §5.2 event canonical. It then wakes the recompute: a `price_mismatch` counts as a failure
//! of the peer (with the weight of any event), so the peer's trust drops, and the event is
//! listed in `GET /ai-market/v2/reputation/{hub}` `recent_events`.

use std::sync::Arc;

use aimarket_plugins::{PriceMismatch, ReputationSink};
use aimarket_protocol::signing::KeyPair;
use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::ReputationDeps;
use super::events::event_canonical;
use crate::state::AppState;
use crate::store::{NewReputationEvent, normalize_origin, now_ms};

/// The event type.
pub const PRICE_MISMATCH: &str = "price_mismatch";
/// Events queued before new ones are dropped.
const QUEUE: usize = 1024;

/// The hub's [`ReputationSink`]: queues events for [`spawn_recorder`].
#[derive(Debug, Clone)]
pub struct MismatchSink {
    tx: mpsc::Sender<PriceMismatch>,
}

/// The receiving end, handed to [`spawn_recorder`] once the state exists.
#[derive(Debug)]
pub struct MismatchQueue {
    rx: mpsc::Receiver<PriceMismatch>,
}

/// A connected sink and queue.
pub fn mismatch_channel() -> (Arc<MismatchSink>, MismatchQueue) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Arc::new(MismatchSink { tx }), MismatchQueue { rx })
}

impl ReputationSink for MismatchSink {
    fn price_mismatch(&self, event: &PriceMismatch) {
        tracing::warn!(
            peer = %event.peer_url, capability_id = %event.capability_id,
            advertised_usd = event.advertised_usd, requested_usd = event.requested_usd,
            "provider 402 asks more than the advertised price"
        );
        if self.tx.try_send(event.clone()).is_err() {
            tracing::warn!(peer = %event.peer_url, "reputation queue full; price mismatch not recorded");
        }
    }
}

/// Stores queued mismatches, for the life of the runtime (the registry holding the sink
/// lives as long as the state).
pub fn spawn_recorder(
    state: Arc<AppState>,
    mut queue: MismatchQueue,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = queue.rx.recv().await {
            let deps = state.reputation_deps();
            match record(&deps, &event).await {
                Ok(()) => deps.schedule.wake(),
                Err(e) => tracing::warn!(peer = %event.peer_url, error = %e,
                    "cannot record a price mismatch"),
            }
        }
    })
}

/// The signed event this hub stores for `event`.
fn signed_event(own_origin: &str, peer: &str, event: &PriceMismatch, key: &KeyPair) -> Value {
    let mut e = json!({
        "type": PRICE_MISMATCH,
        "provider_hub": peer,
        "consumer_hub": own_origin,
        "capability_id": event.capability_id.as_ref(),
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "price_usd": event.requested_usd,
        "latency_ms": 0,
    });
    let canonical = e.as_object().and_then(event_canonical).unwrap_or_default();
    e["signature"] = json!(key.sign_b64(canonical.as_bytes()));
    e
}

async fn record(
    deps: &ReputationDeps<'_>,
    event: &PriceMismatch,
) -> Result<(), super::ReputationError> {
    let own = normalize_origin(deps.public_url.as_str())
        .map_err(|e| super::ReputationError::BadRequest(e.to_string()))?;
    let peer = normalize_origin(&event.peer_url)
        .map_err(|e| super::ReputationError::BadRequest(e.to_string()))?;
    let signed = signed_event(&own, &peer, event, deps.signing_key);
    let signature = signed["signature"].as_str().unwrap_or_default();
    let signature_hex = hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(signature)
            .unwrap_or_default(),
    );
    let now = now_ms();
    let requested = if event.requested_usd.is_finite() {
        event.requested_usd.max(0.0)
    } else {
        0.0
    };
    let row = NewReputationEvent {
        signature_hex: &signature_hex,
        consumer_hub: &own,
        provider_hub: &peer,
        kind: PRICE_MISMATCH,
        capability_id: Some(event.capability_id.as_ref()),
        event_ts: now,
        price_usd: requested,
        latency_ms: 0,
    };
    deps.store.insert_reputation_events(&[row], now).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aimarket_plugins::ChallengeShape;

    #[test]
    fn events_are_signed_by_this_hub_over_the_event_canonical() {
        let key = KeyPair::from_seed(&[8u8; 32]);
        let event = PriceMismatch {
            request_id: "r".into(),
            origin: "https://p.example".into(),
            via: None,
            peer_url: "https://p.example".into(),
            product_id: "prod".into(),
            capability_id: "cap@v1".into(),
            advertised_usd: 0.01,
            requested_usd: 0.5,
            shape: ChallengeShape::V1Header,
        };
        let e = signed_event("https://hub.example", "https://p.example", &event, &key);
        let canonical = event_canonical(e.as_object().unwrap()).unwrap();
        assert!(canonical.starts_with("type:price_mismatch|provider_hub:https://p.example|"));
        key.public_key()
            .verify_b64(canonical.as_bytes(), e["signature"].as_str().unwrap())
            .unwrap();
    }
}

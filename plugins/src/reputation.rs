//! Where plugins report events that affect a peer's reputation. The hub supplies the sink.

use std::sync::Arc;

use serde::Serialize;

use crate::payment::ChallengeShape;

/// A provider's 402 asked for more than the price it advertised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceMismatch {
    /// The request id.
    pub request_id: String,
    /// The capability's owning origin.
    pub origin: Arc<str>,
    /// The relaying peer, if any.
    pub via: Option<Arc<str>>,
    /// The peer that answered the 402 (`via` when present, else `origin`).
    pub peer_url: Arc<str>,
    /// Product id.
    pub product_id: Arc<str>,
    /// Capability id.
    pub capability_id: Arc<str>,
    /// The price the guard compared against (routed price, or list price when larger), USD.
    pub advertised_usd: f64,
    /// The largest amount the 402 asked for, USD.
    pub requested_usd: f64,
    /// Which challenge carried that amount.
    pub shape: ChallengeShape,
}

/// Receives reputation events. Called on the request path: implementations must not block
/// (queue the event, e.g. with `try_send` on a channel, and return).
pub trait ReputationSink: Send + Sync {
    /// A price mismatch was detected (and the 402 was not relayed as is).
    fn price_mismatch(&self, event: &PriceMismatch);
}

/// The default sink when the hub supplies none: logs each event as a warning.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogReputationSink;

impl ReputationSink for LogReputationSink {
    fn price_mismatch(&self, event: &PriceMismatch) {
        tracing::warn!(
            request_id = %event.request_id,
            peer = %event.peer_url,
            product_id = %event.product_id,
            capability_id = %event.capability_id,
            advertised_usd = event.advertised_usd,
            requested_usd = event.requested_usd,
            "provider 402 asks more than the advertised price"
        );
    }
}

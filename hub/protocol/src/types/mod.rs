//! Serde wire types of the protocol.
//!
//! These are for *reading* documents after their signature has been checked on the raw
//! `Value`, and for *building* documents the hub serves. Never re-serialise one of them to
//! verify a signature: canonicals are built from the parsed `Value` (see
//! [`crate::signing`]). Documents the hub re-serves ([`WellKnown`], [`Manifest`], [`Tool`])
//! keep unknown fields in `extra`, so forward-compatible extensions survive a round trip.

mod discovery;
mod federation;
mod invoke;
mod payment;
mod receipt;
mod search;

pub use discovery::{
    ByHubEntry, FederationInfo, Manifest, ObservedHub, PeerInfo, SignatureObject, Tool, WellKnown,
};
pub use federation::{
    AnnounceSignature, ChannelCloseRequest, ChannelCloseResponse, ChannelOpenRequest,
    ChannelOpenResponse, FederationAnnounce, ReputationEvent,
};
pub use invoke::{InvokeRequest, InvokeResponse};
pub use payment::{
    PaymentRequiredV1, X402Resource, X402V1Accept, X402V1Body, X402V2, X402V2Accept,
};
pub use receipt::Receipt;
pub use search::{SearchMatch, SearchResponse};

/// The price a routing hub shows for a capability: `price × (1 + bps/10000)`, in whole
/// micro-dollars, exactly as the reference computes it:
/// `round(round(price*1e6) * (1 + bps/10000)) / 1e6` with Python's round-half-to-even.
/// Non-finite input comes back unchanged (NaN stays NaN); callers validate prices first.
pub fn routed_price_usd(price: f64, bps: u32) -> f64 {
    let micro = (price * 1e6).round_ties_even();
    (micro * (1.0 + f64::from(bps) / 10000.0)).round_ties_even() / 1e6
}

/// Accepts a JSON integer, or a float with no fractional part (`3000.0`, which draft
/// 2020-12 counts as an integer), for optional non-negative counts.
pub(crate) mod lenient_u64 {
    use serde::{Deserialize, Deserializer, de::Error};
    use serde_json::Number;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let Some(n) = Option::<Number>::deserialize(d)? else {
            return Ok(None);
        };
        if let Some(u) = n.as_u64() {
            return Ok(Some(u));
        }
        match n.as_f64() {
            // The range check makes the cast exact.
            Some(f) if f.fract() == 0.0 && (0.0..9.0e15).contains(&f) => Ok(Some(f as u64)),
            _ => Err(D::Error::custom(format!(
                "expected a non-negative integer, found {n}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_price_matches_reference_examples() {
        assert_eq!(routed_price_usd(0.004, 100), 0.00404);
        assert_eq!(routed_price_usd(0.4, 100), 0.404);
        assert_eq!(routed_price_usd(0.001, 0), 0.001);
        assert_eq!(routed_price_usd(0.0, 100), 0.0);
        assert_eq!(routed_price_usd(1.0, 10000), 2.0);
        // 0.0000025 → 2.5 micro → half-to-even 2 → 2.02 → 2 micro.
        assert_eq!(routed_price_usd(0.0000025, 100), 0.000002);
        assert!(routed_price_usd(f64::NAN, 100).is_nan());
    }
}

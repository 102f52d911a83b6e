//! How much this hub trusts a capability: THE one function search, the manifest and the
//! plugins read it from.
//!
//! Until the reputation work lands, a capability's trust score is its listing peer's score
//! (new peers start at 0.5, the store's default) and its success rate is the one its
//! provider declares, clamped to `[0, 1]`; an undeclared (or non-finite) success rate counts
//! as the neutral [`UNKNOWN_SUCCESS_RATE`]. The reputation work replaces the body of
//! [`capability_trust`] with measured values; everything else keeps calling it.
//!
//! The values are computed when a capability is indexed and when the manifest is built, so
//! whoever changes a peer's trust must publish a catalog update for its capabilities
//! (`AppState::publish_catalog_update`) for search to see the new values.

use crate::store::CapabilityRow;

/// Success rate assumed when the provider declares none: neither good nor bad.
pub const UNKNOWN_SUCCESS_RATE: f64 = 0.5;

/// The peer a capability was listed by, as the trust computation sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerTrust<'a> {
    /// The peer's store id.
    pub peer_id: i64,
    /// The peer's URL (origin form).
    pub url: &'a str,
    /// The peer's trust score as stored.
    pub trust_score: f64,
}

impl<'a> PeerTrust<'a> {
    /// The listing peer of `row` (the store joins its fields into every capability row).
    pub fn of(row: &'a CapabilityRow) -> Self {
        Self {
            peer_id: row.peer_id,
            url: &row.peer_url,
            trust_score: row.peer_trust_score,
        }
    }
}

/// `(trust_score, success_rate)` of `capability` listed by `peer`, both in `[0, 1]`.
pub fn capability_trust(peer: &PeerTrust<'_>, capability: &CapabilityRow) -> (f64, f64) {
    let trust = unit(peer.trust_score).unwrap_or(0.0);
    let success = capability
        .success_rate
        .and_then(unit)
        .unwrap_or(UNKNOWN_SUCCESS_RATE);
    (trust, success)
}

/// `x` clamped to `[0, 1]`; `None` when it is not a finite number.
fn unit(x: f64) -> Option<f64> {
    x.is_finite().then(|| x.clamp(0.0, 1.0))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A capability row for unit tests.
    pub(crate) fn row(trust: f64, success: Option<f64>) -> CapabilityRow {
        CapabilityRow {
            id: 1,
            peer_id: 7,
            origin: "https://p.example".into(),
            via: None,
            product_id: "prod".into(),
            capability_id: "cap@v1".into(),
            name: "prod.cap".into(),
            description: "does things".into(),
            input_schema: r#"{"type":"object"}"#.into(),
            output_schema: None,
            price_usd: 0.01,
            p50_latency_ms: Some(250),
            success_rate: success,
            invoke_url: None,
            tool_json: "{}".into(),
            content_hash: String::new(),
            first_seen: 0,
            last_seen: 0,
            peer_url: "https://p.example".into(),
            peer_name: Some("P".into()),
            peer_categories: Vec::new(),
            peer_trust_score: trust,
        }
    }

    fn trust_of(r: &CapabilityRow) -> (f64, f64) {
        capability_trust(&PeerTrust::of(r), r)
    }

    #[test]
    fn peer_score_and_declared_success() {
        assert_eq!(trust_of(&row(0.5, Some(0.97))), (0.5, 0.97));
        assert_eq!(trust_of(&row(0.8, None)), (0.8, UNKNOWN_SUCCESS_RATE));
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        assert_eq!(trust_of(&row(1.7, Some(12.0))), (1.0, 1.0));
        assert_eq!(trust_of(&row(-0.2, Some(-3.0))), (0.0, 0.0));
        assert_eq!(
            trust_of(&row(f64::NAN, Some(f64::INFINITY))),
            (0.0, UNKNOWN_SUCCESS_RATE)
        );
    }
}

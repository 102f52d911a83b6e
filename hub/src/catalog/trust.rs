//! How much this hub trusts a capability: THE one function search, the manifest and the
//! plugins read it from.
//!
//! A capability's trust score is its listing peer's trust score (spec §5.1, computed by
//! [`crate::reputation`] from measured inputs), adjusted by the capability's own observed
//! success rate once it has [`crate::reputation::MIN_CAPABILITY_CALLS`] calls routed through
//! this hub in 30 days: the reputation recompute then stores the capability's own score
//! (the peer's score with its success component replaced by the capability's), which the
//! store joins into every capability row. Its success rate is the observed one under the
//! same condition, else the one its provider declares, clamped to `[0, 1]`; an undeclared
//! (or non-finite) success rate counts as the neutral [`UNKNOWN_SUCCESS_RATE`].
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
    let measured = capability.observed_calls_30d >= crate::reputation::MIN_CAPABILITY_CALLS;
    let peer_trust = unit(peer.trust_score).unwrap_or(0.0);
    let trust = match capability.observed_trust.and_then(unit) {
        Some(own) if measured => own,
        _ => peer_trust,
    };
    let observed = measured
        .then(|| capability.observed_successes_30d as f64 / capability.observed_calls_30d as f64);
    let success = observed
        .and_then(unit)
        .or_else(|| capability.capability.success_rate.and_then(unit))
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
    use aimarket_protocol::capability::Capability;

    /// A capability row for unit tests.
    pub(crate) fn row(trust: f64, success: Option<f64>) -> CapabilityRow {
        CapabilityRow {
            id: 1,
            peer_id: 7,
            capability: Capability {
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
            },
            content_hash: String::new(),
            first_seen: 0,
            last_seen: 0,
            peer_url: "https://p.example".into(),
            peer_name: Some("P".into()),
            peer_categories: Vec::new(),
            peer_trust_score: trust,
            observed_calls_30d: 0,
            observed_successes_30d: 0,
            observed_trust: None,
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
    fn measured_capabilities_use_their_own_trust_and_success() {
        let mut r = row(0.6, Some(0.97));
        r.observed_trust = Some(0.4);
        r.observed_calls_30d = crate::reputation::MIN_CAPABILITY_CALLS - 1;
        r.observed_successes_30d = 1;
        // Too few calls: the peer's score and the declared rate.
        assert_eq!(trust_of(&r), (0.6, 0.97));
        r.observed_calls_30d = 20;
        r.observed_successes_30d = 5;
        assert_eq!(trust_of(&r), (0.4, 0.25));
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

#![allow(clippy::unwrap_used)]
use std::collections::HashSet;

use aimarket_protocol::error::ProtocolError;

use super::*;
use crate::store::StoreError;

/// The wire contract: every code's string and status, as clients see them. A change here
/// is a protocol change (issue #14 changed only `plugin_unavailable` route timeouts, 504 →
/// 503, and added `input_schema_invalid`).
const CONTRACT: &str = "\
bad_request 400 invalid_json 400 not_found 404 method_not_allowed 405 payload_too_large 413 \
unsupported_media_type 415 unauthorized 401 forbidden 403 rate_limited 429 internal_error 500 \
service_unavailable 503 invalid_document 400 peer_not_found 404 capability_not_found 404 \
ambiguous_capability 409 routing_fee_required 402 peer_pending 403 input_invalid 400 \
input_schema_invalid 502 price_limit_exceeded 409 idempotency_conflict 409 \
idempotency_in_flight 409 provider_timeout 504 provider_error 502 \
provider_signature_invalid 502 payment_required 402 invalid_api_key 401 \
provider_payment_failed 502 invalid_amount 400 tx_hash_required 400 payments_unavailable 503 \
deposit_not_verified 402 payment_verifier_unavailable 503 payer_proof_required 400 \
payer_proof_invalid 403 not_payer 403 payment_invalid 402 payment_authorization_required 402 \
tx_already_used 409 channel_not_found 404 channel_unauthorized 402 channel_expired 402 \
channel_closed 402 insufficient_balance 402 channel_busy 409 receipt_not_found 404 \
plugin_unavailable 503 blocked 403 no_provider 403 unsafe_url 400 admission_closed 401 \
pending_peers_full 429 too_many_streams 429 verification_not_found 404 pipeline_invalid 400 \
budget_exceeded 409 pipeline_not_found 404";

#[test]
fn every_code_keeps_its_wire_string_and_status() {
    let actual: Vec<String> = Code::ALL
        .iter()
        .map(|c| format!("{} {}", c.as_str(), c.kind().status()))
        .collect();
    let expected: Vec<String> = CONTRACT
        .split_whitespace()
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|pair| pair.join(" "))
        .collect();
    assert_eq!(actual, expected);
    let distinct: HashSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(distinct.len(), Code::ALL.len(), "wire strings are unique");
}

#[test]
fn body_has_the_protocol_shape() {
    let e = ApiError::new(Code::PriceLimitExceeded, "too dear")
        .with_field("routed_price_usd", 0.404)
        .with_field("success", true);
    assert_eq!(e.status(), 409);
    let body = e.body();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "price_limit_exceeded");
    assert_eq!(body["detail"], "too dear");
    assert_eq!(body["protocol_version"], "v2");
    assert_eq!(body["routed_price_usd"], 0.404);
}

#[test]
fn internal_errors_hide_the_cause_but_debug_shows_it() {
    let io = std::io::Error::other("disk on fire");
    let e = ApiError::internal(io);
    assert_eq!(e.status(), 500);
    assert!(!e.body().to_string().contains("disk on fire"));
    assert!(format!("{e:?}").contains("disk on fire"));
    // A domain error whose code is internal is hidden the same way.
    let e = ApiError::from(StoreError::Corrupt("row 7 is garbage".into()));
    assert_eq!((e.status(), e.detail()), (500, "internal error"));
    assert!(format!("{e:?}").contains("row 7 is garbage"));
}

#[test]
fn protocol_errors_are_bad_requests_with_their_reason() {
    let e = ApiError::from(ProtocolError::MissingField("nonce"));
    assert_eq!(e.status(), 400);
    assert_eq!(e.body()["reason"], "missing_field");
    assert!(e.detail().contains("nonce"));
}

/// Issue #14: `plugin_unavailable` had two statuses (503 from search and invoke, 504 from a
/// plugin route that timed out). It has one now, with the plugin and a retry hint.
#[test]
fn plugin_unavailable_is_always_503() {
    use aimarket_plugins::RouteError;
    let e = ApiError::from(RouteError::TimedOut {
        plugin: "slow".into(),
        timeout_ms: 5,
    });
    assert_eq!((e.status(), e.code()), (503, Code::PluginUnavailable));
    assert_eq!(
        (e.body()["plugin"].as_str(), e.retry_after()),
        (Some("slow"), Some(1))
    );
    let e = ApiError::from(RouteError::MethodNotAllowed {
        allowed: vec!["GET".into()],
    });
    assert_eq!(
        (e.status(), e.body()["allowed"][0].as_str()),
        (405, Some("GET"))
    );
}

#[test]
fn payment_errors_map_to_402_404_409_with_their_reason() {
    use crate::payments::{PaymentError as P, SecretProblem};
    let cases = [
        (
            P::InsufficientBalance {
                balance_micros: 500,
                needed_micros: 1_000,
            },
            402,
            "insufficient_balance",
        ),
        (
            P::BadSecret {
                problem: SecretProblem::Missing,
            },
            402,
            "channel_unauthorized",
        ),
        (
            P::Expired {
                channel_id: "c".into(),
            },
            402,
            "channel_expired",
        ),
        (
            P::Closed {
                channel_id: "c".into(),
            },
            402,
            "channel_closed",
        ),
        (
            P::ChannelNotFound {
                channel_id: "c".into(),
            },
            404,
            "channel_not_found",
        ),
        (
            P::TxAlreadyUsed {
                tx_hash: "t".into(),
            },
            409,
            "tx_already_used",
        ),
        (P::PaymentsUnavailable, 503, "payments_unavailable"),
        (P::TxHashRequired, 400, "tx_hash_required"),
        (
            P::InvalidAmount {
                what: "deposit_usd",
                reason: "must be greater than 0".into(),
            },
            400,
            "invalid_amount",
        ),
    ];
    for (error, status, wire) in cases {
        let reason = error.reason();
        let api = ApiError::from(error);
        assert_eq!((api.status(), api.code().as_str()), (status, wire));
        if let Some(reason) = reason {
            assert_eq!(api.body()["reason"], reason);
            assert_eq!(status, 402);
        }
    }
    let body = ApiError::from(P::InsufficientBalance {
        balance_micros: 500,
        needed_micros: 1_000,
    })
    .body();
    assert_eq!(
        (body["balance_usd"].as_f64(), body["needed"].as_f64()),
        (Some(0.0005), Some(0.001))
    );
    let api = ApiError::from(P::HoldNotFound {
        hold_id: "h".into(),
    });
    assert_eq!(api.status(), 500);
}

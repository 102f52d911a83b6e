//! What a provider's answer means for the buyer.
//!
//! | provider answers            | buyer gets                                               |
//! |-----------------------------|----------------------------------------------------------|
//! | 2xx JSON object             | 200 with `result`, the provider `receipt` unchanged and a `routing_receipt` |
//! | 2xx with `success`/`ok` false or 0 | 200 passed through, nothing charged               |
//! | 402                         | 402 with status, body and payment headers verbatim + `X-AIMarket-Routing-Fee` |
//! | other 4xx                   | same status and body + `X-AIMarket-Upstream-Status`      |
//! | 3xx, 5xx, non-JSON 2xx      | 502 `provider_error`                                     |
//!
//! A present `X-Provider-Signature` must verify (spec §7.1) against the listing's key:
//! request-bound first, then the legacy result-only form (accepted with a warning). One that
//! verifies neither way is a 502. An absent signature, or one the hub has no key for, is
//! accepted and flagged in the answer's `provider_signature` field.

use aimarket_protocol::canonical::{Style, to_canonical_string};
use aimarket_protocol::signing::verify_provider_response;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::InvokeResult;
use super::error::InvokeError;
use super::forward::{Upstream, names};
use super::resolve::Offer;

/// The 402 headers relayed verbatim (spec §4.1 step 6 and the x402 forms).
pub const PAYMENT_HEADERS: [&str; 4] = [
    names::X_PAYMENT_REQUIRED,
    names::PAYMENT_REQUIRED,
    names::X_PAYMENT_NONCE,
    "www-authenticate",
];

/// How the provider's response signature checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureStatus {
    /// Request-bound signature verified (spec §7.1).
    Verified,
    /// Only the legacy result-only signature verified.
    Legacy,
    /// No `X-Provider-Signature` header.
    Absent,
    /// A signature was sent but the hub knows no key for this provider.
    Unverifiable,
}

impl SignatureStatus {
    /// Wire spelling (`provider_signature` field).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Legacy => "legacy",
            Self::Absent => "absent",
            Self::Unverifiable => "unverifiable",
        }
    }
}

/// A provider answer, classified.
#[derive(Debug)]
pub enum Answer {
    /// The capability ran and succeeded.
    Success {
        /// The provider's JSON object, without `result` / `output`.
        body: Map<String, Value>,
        /// `result` (or `output`, or the whole object).
        result: Value,
        /// The signature check.
        signature: SignatureStatus,
        /// Provider headers relayed to the buyer (x402 settlement answers).
        relayed: Vec<(String, String)>,
        /// The provider's own in-body signature, as checked (see [`body_signature`]).
        body_signature: Option<Value>,
    },
    /// A 2xx whose body says `success: false` or `ok: false` (also `0`): a typed failure,
    /// nothing is charged.
    Failed {
        /// The provider's JSON object.
        body: Map<String, Value>,
        /// Provider headers relayed to the buyer (x402 settlement answers).
        relayed: Vec<(String, String)>,
    },
    /// 402 to relay.
    PaymentRequired(Upstream),
    /// Another 4xx to relay.
    ClientError(Upstream),
}

/// Classifies an upstream answer; unusable ones are errors.
pub fn classify(upstream: Upstream, offer: &Offer, input: &Value) -> Result<Answer, InvokeError> {
    let peer = || offer.peer_url.clone();
    match upstream.status {
        200..=299 => {}
        402 => return Ok(Answer::PaymentRequired(upstream)),
        400..=499 => return Ok(Answer::ClientError(upstream)),
        300..=399 => {
            return Err(InvokeError::ProviderError {
                peer: peer(),
                detail: format!("unexpected redirect (HTTP {})", upstream.status),
            });
        }
        status => {
            return Err(InvokeError::ProviderError {
                peer: peer(),
                detail: format!("provider answered HTTP {status}"),
            });
        }
    }
    let parsed: Value =
        serde_json::from_slice(&upstream.body).map_err(|e| InvokeError::ProviderError {
            peer: peer(),
            detail: format!("answer is not JSON ({e})"),
        })?;
    let Value::Object(mut body) = parsed else {
        return Err(InvokeError::ProviderError {
            peer: peer(),
            detail: "answer is not a JSON object".into(),
        });
    };
    let relayed = relayed_headers(&upstream);
    if ["success", "ok"]
        .iter()
        .any(|k| body.get(*k).is_some_and(is_false))
    {
        return Ok(Answer::Failed { body, relayed });
    }
    let envelope = body.remove("result").or_else(|| body.remove("output"));
    let result = match envelope {
        Some(result) => result,
        None => {
            // No envelope: the whole object is the result (as the reference reads it).
            body.remove("success");
            Value::Object(body.clone())
        }
    };
    let signature = check_signature(&upstream, offer, input, &result)?;
    let body_signature = body_signature(&body, offer, input, &result);
    Ok(Answer::Success {
        body,
        result,
        signature,
        relayed,
        body_signature,
    })
}

/// `false` or `0` (real providers send `success: 1` / `0`).
fn is_false(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// The provider's x402 settlement headers, each value as received.
fn relayed_headers(upstream: &Upstream) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in [names::PAYMENT_RESPONSE, names::X_PAYMENT_RESPONSE] {
        for value in upstream.headers.get_all(name) {
            if let Ok(text) = value.to_str() {
                out.push((name.to_owned(), text.to_owned()));
            }
        }
    }
    out
}

/// Longest provider error text quoted in an answer, in characters.
const MAX_ERROR_TEXT_CHARS: usize = 300;

/// A short, printable account of why a provider refused: its `detail`/`error`/`message`
/// field when the body is JSON, else the start of the body.
pub fn error_text(upstream: &Upstream) -> String {
    let parsed: Option<Value> = serde_json::from_slice(&upstream.body).ok();
    let text = parsed
        .as_ref()
        .and_then(|v| {
            ["detail", "error", "message"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&upstream.body).into_owned());
    // Cut on characters, never inside one.
    let cut: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_TEXT_CHARS)
        .collect();
    if cut.is_empty() {
        format!("HTTP {}", upstream.status)
    } else {
        cut
    }
}

/// How the provider's own in-body signature reads. Hosted tenants (HESTIA) sign their answer
/// with a key of their own and send `{signature, provider_pubkey}` in the body, over the
/// provider-response canonical (spec §7.1). Those fields pass through untouched; this says
/// whose signature it is and whether it verifies against the key it names, so a buyer does
/// not take it for this hub's or for `X-Provider-Signature`. `key_listed` tells whether that
/// key is the one the catalog lists for the capability (a tenant's own key is not).
pub fn body_signature(
    body: &Map<String, Value>,
    offer: &Offer,
    input: &Value,
    result: &Value,
) -> Option<Value> {
    let signature = body.get("signature")?.as_str()?;
    let key_text = body.get("provider_pubkey").and_then(Value::as_str);
    let key = key_text.and_then(|k| aimarket_protocol::signing::PublicKey::from_b64(k).ok());
    let verified = key.is_some_and(|key| {
        verify_provider_response(
            &offer.capability_id,
            &offer.product_id,
            input,
            result,
            signature.trim(),
            &key,
        )
        .is_ok()
    });
    Some(serde_json::json!({
        "signed_by": if key.is_some() { "provider_pubkey" } else { "unknown" },
        "provider_pubkey": key_text,
        "verified": verified,
        "key_listed": key.is_some() && key == offer.provider_key,
    }))
}

fn check_signature(
    upstream: &Upstream,
    offer: &Offer,
    input: &Value,
    result: &Value,
) -> Result<SignatureStatus, InvokeError> {
    let Some(sig) = upstream.header(names::X_PROVIDER_SIGNATURE) else {
        tracing::debug!(peer = %offer.peer_url, "provider response is unsigned");
        return Ok(SignatureStatus::Absent);
    };
    let Some(key) = &offer.provider_key else {
        tracing::warn!(peer = %offer.peer_url, "provider response is signed but no key is pinned for it");
        return Ok(SignatureStatus::Unverifiable);
    };
    let sig = sig.trim();
    if verify_provider_response(
        &offer.capability_id,
        &offer.product_id,
        input,
        result,
        sig,
        key,
    )
    .is_ok()
    {
        return Ok(SignatureStatus::Verified);
    }
    let legacy = to_canonical_string(result, Style::Compact);
    if key.verify_b64(legacy.as_bytes(), sig).is_ok() {
        tracing::warn!(peer = %offer.peer_url, "provider uses the legacy result-only signature");
        return Ok(SignatureStatus::Legacy);
    }
    Err(InvokeError::ProviderSignatureInvalid {
        peer: offer.peer_url.clone(),
        detail: "X-Provider-Signature does not verify against the provider's key".into(),
    })
}

/// The content type to relay: the provider's, or JSON when it sent none.
fn content_type(upstream: &Upstream) -> String {
    upstream
        .header("content-type")
        .unwrap_or("application/json")
        .to_owned()
}

/// The ways a buyer can pay for a call that answered 402, through this hub: `hub_channel`
/// when this hub can pay the provider for it (a credential, a provider that takes this hub's
/// admission signature, or — with demo channels — a provider whose challenge offers a
/// channel), `seller_direct` when the provider's own challenge offers a payment the buyer
/// can make and send through the hub (`X-Payment`).
pub fn payment_ways(upstream: &Upstream, hub_can_pay: bool, demo: bool) -> Vec<&'static str> {
    let mut ways = Vec::with_capacity(2);
    if hub_can_pay || (demo && offers_channel(upstream)) {
        ways.push("hub_channel");
    }
    if offers_seller_direct(upstream) {
        ways.push("seller_direct");
    }
    ways
}

/// Whether a 402 offers a payment channel at the provider (a `payment_ways` entry on the
/// `channel` rail or with an `open` URL, or a v1 `payment` block), which this hub can open
/// itself with demo payments.
fn offers_channel(upstream: &Upstream) -> bool {
    let Ok(body) = serde_json::from_slice::<Value>(&upstream.body) else {
        return false;
    };
    let way = body
        .get("payment_ways")
        .and_then(Value::as_array)
        .is_some_and(|ways| {
            ways.iter().any(|w| {
                w.get("rail").and_then(Value::as_str) == Some("channel") || w.get("open").is_some()
            })
        });
    way || body.get("payment").is_some_and(Value::is_object)
}

/// Whether a 402 asks for a payment the buyer makes to the provider itself: an x402 or v1
/// challenge header, an x402 body (`accepts`), or a `payment_ways` entry on the
/// seller-direct or x402 rail. A v2 "open a channel at this factory" way is not one: a
/// channel at the provider cannot be presented through this hub.
pub fn offers_seller_direct(upstream: &Upstream) -> bool {
    if upstream.headers.contains_key(names::X_PAYMENT_REQUIRED)
        || upstream.headers.contains_key(names::PAYMENT_REQUIRED)
    {
        return true;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&upstream.body) else {
        return false;
    };
    let accepts = body
        .get("accepts")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let way = body
        .get("payment_ways")
        .and_then(Value::as_array)
        .is_some_and(|ways| {
            ways.iter().any(|w| {
                w.get("rail")
                    .and_then(Value::as_str)
                    .is_some_and(|r| matches!(r, "seller_direct" | "x402"))
            })
        });
    accepts || way
}

/// Header naming the ways a relayed 402 can be paid through this hub (comma-separated;
/// see [`payment_ways`]).
pub const PAYMENT_WAYS_HEADER: &str = "x-aimarket-payment-ways";

/// A provider 402, relayed: status, body and payment headers verbatim, plus the routing fee
/// and the ways that can succeed through this hub (`X-AIMarket-Payment-Ways`).
pub fn payment_required(upstream: Upstream, routing_fee_bps: u32, ways: &[&str]) -> InvokeResult {
    let mut headers = vec![
        ("content-type".to_owned(), content_type(&upstream)),
        (names::ROUTING_FEE.to_owned(), routing_fee_bps.to_string()),
        (PAYMENT_WAYS_HEADER.to_owned(), ways.join(", ")),
    ];
    let mut exposed = vec![names::ROUTING_FEE, PAYMENT_WAYS_HEADER];
    for name in PAYMENT_HEADERS {
        // Every value of the header, each exactly as received.
        for value in upstream.headers.get_all(name) {
            if let Ok(text) = value.to_str() {
                headers.push((name.to_owned(), text.to_owned()));
            }
        }
        if upstream.headers.contains_key(name) {
            exposed.push(name);
        }
    }
    headers.push((
        "access-control-expose-headers".to_owned(),
        exposed.join(", "),
    ));
    InvokeResult {
        status: 402,
        headers,
        body: upstream.body,
    }
}

/// A provider 4xx other than 402, relayed with its body and `X-AIMarket-Upstream-Status`.
pub fn client_error(upstream: Upstream) -> InvokeResult {
    InvokeResult {
        status: upstream.status,
        headers: vec![
            ("content-type".to_owned(), content_type(&upstream)),
            (
                names::UPSTREAM_STATUS.to_owned(),
                upstream.status.to_string(),
            ),
        ],
        body: upstream.body,
    }
}

/// A JSON 200 answer.
pub fn json_ok(body: &Value) -> InvokeResult {
    InvokeResult {
        status: 200,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: Bytes::from(serde_json::to_vec(body).expect("a JSON value always serialises")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aimarket_protocol::signing::{KeyPair, sign_provider_response};
    use reqwest::header::{HeaderMap, HeaderValue};
    use serde_json::json;

    fn offer(key: Option<&KeyPair>) -> Offer {
        Offer {
            provider_key: key.map(KeyPair::public_key),
            ..crate::invoke::resolve::test_offer("https://o", None)
        }
    }

    fn upstream(status: u16, body: &str, headers: &[(&'static str, &str)]) -> Upstream {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, HeaderValue::from_str(v).unwrap());
        }
        Upstream {
            status,
            headers: map,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn signatures_request_bound_legacy_bad_absent() {
        let key = KeyPair::from_seed(&[3u8; 32]);
        let input = json!({"q": 1});
        let result = json!({"a": "b"});
        let body = json!({"success": true, "result": result}).to_string();
        let good = sign_provider_response("c@v1", "p", &input, &result, &key);
        let legacy = key.sign_b64(to_canonical_string(&result, Style::Compact).as_bytes());
        let o = offer(Some(&key));
        let status = |sig: Option<&str>| {
            let headers: Vec<(&'static str, &str)> = sig
                .map(|s| vec![(names::X_PROVIDER_SIGNATURE, s)])
                .unwrap_or_default();
            match classify(upstream(200, &body, &headers), &o, &input) {
                Ok(Answer::Success { signature, .. }) => Ok(signature),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e),
            }
        };
        assert_eq!(status(Some(&good)).unwrap(), SignatureStatus::Verified);
        assert_eq!(status(Some(&legacy)).unwrap(), SignatureStatus::Legacy);
        assert_eq!(status(None).unwrap(), SignatureStatus::Absent);
        assert!(matches!(
            status(Some(&KeyPair::from_seed(&[4u8; 32]).sign_b64(b"x"))),
            Err(InvokeError::ProviderSignatureInvalid { .. })
        ));
        // A signature over another input does not verify.
        let other = sign_provider_response("c@v1", "p", &json!({"q": 2}), &result, &key);
        assert!(status(Some(&other)).is_err());
    }

    #[test]
    fn statuses() {
        let o = offer(None);
        let input = json!({});
        assert!(matches!(
            classify(upstream(402, "{}", &[]), &o, &input),
            Ok(Answer::PaymentRequired(_))
        ));
        assert!(matches!(
            classify(upstream(404, "nope", &[]), &o, &input),
            Ok(Answer::ClientError(_))
        ));
        for (status, body) in [(500, "{}"), (302, ""), (200, "<html>"), (200, "[1]")] {
            assert!(
                matches!(
                    classify(upstream(status, body, &[]), &o, &input),
                    Err(InvokeError::ProviderError { .. })
                ),
                "{status} {body}"
            );
        }
        assert!(matches!(
            classify(
                upstream(200, r#"{"success": false, "error": "x"}"#, &[]),
                &o,
                &input
            ),
            Ok(Answer::Failed { .. })
        ));
        match classify(upstream(200, r#"{"answer": 42}"#, &[]), &o, &input).unwrap() {
            Answer::Success { result, .. } => assert_eq!(result, json!({"answer": 42})),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn relays_402_headers_verbatim() {
        let up = upstream(
            402,
            r#"{"error":"payment_required"}"#,
            &[
                (names::X_PAYMENT_REQUIRED, r#"{"amount":"0.40"}"#),
                (names::PAYMENT_REQUIRED, "eyJ4IjoxfQ=="),
                (names::X_PAYMENT_NONCE, "0xabc"),
                ("www-authenticate", "Payment realm=x"),
                ("content-type", "application/json"),
                ("set-cookie", "a=b"),
            ],
        );
        let r = payment_required(up, 100, &["seller_direct"]);
        assert_eq!(r.status, 402);
        let get = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get(names::X_PAYMENT_REQUIRED), Some(r#"{"amount":"0.40"}"#));
        assert_eq!(get(names::PAYMENT_REQUIRED), Some("eyJ4IjoxfQ=="));
        assert_eq!(get(names::X_PAYMENT_NONCE), Some("0xabc"));
        assert_eq!(get("www-authenticate"), Some("Payment realm=x"));
        assert_eq!(get(names::ROUTING_FEE), Some("100"));
        assert_eq!(get("set-cookie"), None);
        assert_eq!(&r.body[..], br#"{"error":"payment_required"}"#);
    }

    #[test]
    fn a_real_hestia_tenant_signature_is_verified_and_named_as_the_tenants() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/real");
        let read = |name: &str| -> Value {
            serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
        };
        let request = read("hestia.tenant-answer.request.json");
        let answer = read("hestia.tenant-answer.json");
        let hearth_key = aimarket_protocol::signing::PublicKey::from_b64(
            read("hestia.well-known.json")["signer_public_key"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let offer = Offer {
            product_id: "hestia-agents".into(),
            capability_id: "json.canonical@v1".into(),
            provider_key: Some(hearth_key),
            ..crate::invoke::resolve::test_offer("http://127.0.0.1:59459", None)
        };
        let body = answer.as_object().unwrap();
        let input = &request["body"]["input"];
        let checked = body_signature(body, &offer, input, &answer["result"]).unwrap();
        assert_eq!(checked["verified"], true, "{checked}");
        assert_eq!(
            checked["key_listed"], false,
            "the tenant's own key, not the hearth's"
        );
        // Another input does not verify.
        let other = body_signature(body, &offer, &json!({"document": {}}), &answer["result"]);
        assert_eq!(other.unwrap()["verified"], false);
    }
}

//! The invoke request, parsed at the edge into typed values: the body
//! `{product_id?, capability_id, source_hub?, input, max_price_usd?}` (other keys such as
//! `verify` or `subcontract` are tolerated and ignored) and the headers that matter.
//!
//! Read tolerantly, as real clients send it: a `product_id` may be left out when the
//! capability id alone names one listing, and a `source_hub` that is not a URL (real
//! gateways send `"mcp-oracle-gateway"`) means "unspecified".

use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::InvokeError;
use crate::store::normalize_origin;

/// Longest `product_id` / `capability_id` accepted.
pub const MAX_ID_CHARS: usize = 256;
/// Largest `max_price_usd` accepted; the crawler caps declared prices at 1,000 USD.
pub const MAX_PRICE_LIMIT_USD: f64 = 1_000_000.0;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// Longest forwarded payment header value (a base64 x402 payload is a few KB).
pub const MAX_PAYMENT_HEADER_BYTES: usize = 16 * 1024;

/// A validated invoke body.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeRequest {
    /// Product id; `None` when the buyer left it out (resolved from the capability id).
    pub product_id: Option<String>,
    /// Capability id.
    pub capability_id: String,
    /// The owning origin asked for; `None` for absent, `"local"` or this hub itself
    /// ("wherever this hub indexes it").
    pub source_hub: Option<String>,
    /// The capability input (a JSON object).
    pub input: Value,
    /// The buyer's price cap, USD.
    pub max_price_usd: Option<f64>,
    /// The depositor's signed `DebitAuthorization` for a call paid from an escrow channel,
    /// as sent (checked by the ledger before anything is held).
    pub payment_authorization: Option<Value>,
}

/// The wire shape, before checks. Unknown keys are ignored on purpose (spec §4.1: hubs that
/// predate a block ignore it).
#[derive(Deserialize)]
struct Wire {
    product_id: Option<Value>,
    capability_id: Option<Value>,
    #[serde(default)]
    source_hub: Option<Value>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    max_price_usd: Option<Value>,
    #[serde(default)]
    payment_authorization: Option<Value>,
}

fn id_field(value: Option<Value>, name: &str) -> Result<String, InvokeError> {
    let text = match value {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => {
            return Err(InvokeError::BadRequest(format!("`{name}` is required")));
        }
        Some(_) => {
            return Err(InvokeError::BadRequest(format!(
                "`{name}` must be a string"
            )));
        }
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(InvokeError::BadRequest(format!(
            "`{name}` must not be empty"
        )));
    }
    if trimmed.chars().count() > MAX_ID_CHARS {
        return Err(InvokeError::BadRequest(format!(
            "`{name}` is longer than {MAX_ID_CHARS} characters"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(InvokeError::BadRequest(format!(
            "`{name}` contains a control character"
        )));
    }
    Ok(trimmed.to_owned())
}

impl InvokeRequest {
    /// Parses a request body. Syntax errors are `invalid_json`; wrong shapes and values are
    /// `bad_request` naming the field.
    pub fn from_slice(body: &[u8], own_origin: &str) -> Result<Self, InvokeError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| InvokeError::InvalidJson(e.to_string()))?;
        Self::from_value(value, own_origin)
    }

    /// Builds a request from an already parsed body (the MCP `market_invoke` arguments).
    pub fn from_value(value: Value, own_origin: &str) -> Result<Self, InvokeError> {
        if !value.is_object() {
            return Err(InvokeError::BadRequest(
                "the request body must be a JSON object".into(),
            ));
        }
        let wire: Wire = serde_json::from_value(value)
            .map_err(|e| InvokeError::BadRequest(format!("invalid request body: {e}")))?;
        let product_id = match wire.product_id {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            other => Some(id_field(other, "product_id")?),
        };
        let capability_id = id_field(wire.capability_id, "capability_id")?;
        let source_hub = parse_source_hub(wire.source_hub, own_origin)?;
        let input = match wire.input {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => {
                return Err(InvokeError::InputNotObject);
            }
        };
        let max_price_usd = match wire.max_price_usd {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(p) if p.is_finite() && (0.0..=MAX_PRICE_LIMIT_USD).contains(&p) => Some(p),
                _ => {
                    return Err(InvokeError::BadRequest(format!(
                        "`max_price_usd` must be a number between 0 and {MAX_PRICE_LIMIT_USD}"
                    )));
                }
            },
            Some(_) => {
                return Err(InvokeError::BadRequest(
                    "`max_price_usd` must be a number".into(),
                ));
            }
        };
        Ok(Self {
            product_id,
            capability_id,
            source_hub,
            input,
            max_price_usd,
            payment_authorization: wire.payment_authorization.filter(|v| !v.is_null()),
        })
    }

    /// SHA-256 of the request's meaningful content, for idempotency: two bodies that differ
    /// only in key order or whitespace are the same request.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.product_id.as_deref().unwrap_or(""),
            self.capability_id.as_str(),
            self.source_hub.as_deref().unwrap_or("local"),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        // serde_json maps are sorted (no `preserve_order`), so this rendering is canonical.
        hasher.update(self.input.to_string().as_bytes());
        hasher.update([0]);
        if let Some(p) = self.max_price_usd {
            hasher.update(p.to_bits().to_be_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

/// `source_hub`: absent, `"local"`, empty, this hub's own origin or any string that is not
/// an http(s) URL (a client's own name, such as `"mcp-oracle-gateway"`) mean "anywhere"; a
/// URL is reduced to its origin. Only a wrong JSON type is refused.
fn parse_source_hub(value: Option<Value>, own_origin: &str) -> Result<Option<String>, InvokeError> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(InvokeError::BadRequest(
                "`source_hub` must be \"local\" or a hub URL".into(),
            ));
        }
    };
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("local") {
        return Ok(None);
    }
    let looks_like_url = text
        .get(..8)
        .is_some_and(|p| p.to_ascii_lowercase().starts_with("https://"))
        || text
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("http://"));
    if !looks_like_url {
        return Ok(None);
    }
    let origin = normalize_origin(text).map_err(|e| {
        InvokeError::BadRequest(format!("`source_hub` is not a valid hub URL: {e}"))
    })?;
    if origin == own_origin {
        return Ok(None);
    }
    Ok(Some(origin))
}

/// What the buyer sent in headers. Values are kept verbatim (payment headers are forwarded
/// byte for byte).
#[derive(Debug, Clone, Default)]
pub struct BuyerHeaders {
    /// `X-Payment-Channel`: a channel at this hub.
    pub channel_id: Option<String>,
    /// `X-Payment-Channel-Secret`.
    pub channel_secret: Option<String>,
    /// `X-Payment` (or `X-PAYMENT`): the buyer pays the provider directly.
    pub x_payment: Option<String>,
    /// `PAYMENT-SIGNATURE` (x402 v2).
    pub payment_signature: Option<String>,
    /// `X-Payment-Nonce`.
    pub x_payment_nonce: Option<String>,
    /// `X-Payment-Secret` (x402 challenges hand the buyer a secret to return).
    pub x_payment_secret: Option<String>,
    /// `Idempotency-Key` (hub-level, never forwarded).
    pub idempotency_key: Option<String>,
    /// `X-API-Key`: must be one the hub accepts (`AIMARKET_API_KEYS`), else 401. Never
    /// forwarded.
    pub api_key: Option<String>,
    /// W3C `traceparent`, when valid.
    pub traceparent: Option<String>,
    /// `X-Request-Id`, when sane.
    pub request_id: Option<String>,
}

impl BuyerHeaders {
    /// True when the buyer presents a credential for the provider itself.
    pub fn pays_provider(&self) -> bool {
        self.x_payment.is_some() || self.payment_signature.is_some()
    }

    /// Checks the values that are used as keys or forwarded: bounded lengths, visible ASCII.
    pub fn check(&self) -> Result<(), InvokeError> {
        if let Some(key) = &self.idempotency_key
            && (key.is_empty()
                || key.len() > MAX_IDEMPOTENCY_KEY_CHARS
                || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(InvokeError::BadRequest(format!(
                "`Idempotency-Key` must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"
            )));
        }
        for (name, value) in [
            ("X-Payment", &self.x_payment),
            ("PAYMENT-SIGNATURE", &self.payment_signature),
            ("X-Payment-Nonce", &self.x_payment_nonce),
            ("X-Payment-Secret", &self.x_payment_secret),
            ("X-Payment-Channel", &self.channel_id),
            ("X-Payment-Channel-Secret", &self.channel_secret),
        ] {
            if value
                .as_ref()
                .is_some_and(|v| v.len() > MAX_PAYMENT_HEADER_BYTES)
            {
                return Err(InvokeError::BadRequest(format!(
                    "`{name}` is longer than {MAX_PAYMENT_HEADER_BYTES} bytes"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const OWN: &str = "http://127.0.0.1:9083";

    fn parse(v: Value) -> Result<InvokeRequest, InvokeError> {
        InvokeRequest::from_value(v, OWN)
    }

    #[test]
    fn accepts_the_documented_shape_and_ignores_extra_keys() {
        let r = parse(json!({"product_id": " p ", "capability_id": "c@v1",
            "source_hub": "https://Hub2.example.com/x", "input": {"a": 1},
            "max_price_usd": 0.5, "verify": {"requested": true}, "subcontract": 1}))
        .unwrap();
        assert_eq!(r.product_id.as_deref(), Some("p"));
        assert_eq!(r.source_hub.as_deref(), Some("https://hub2.example.com"));
        assert_eq!(r.max_price_usd, Some(0.5));
        // No product_id: left for the invoke to look up by capability_id.
        let r = parse(json!({"capability_id": "c@v1"})).unwrap();
        assert_eq!(r.product_id, None);
    }

    #[test]
    fn local_forms_and_defaults() {
        for hub in [
            json!("local"),
            json!(""),
            json!(null),
            json!(OWN),
            json!("LOCAL"),
        ] {
            let r =
                parse(json!({"product_id": "p", "capability_id": "c", "source_hub": hub})).unwrap();
            assert_eq!(r.source_hub, None);
            assert_eq!(r.input, json!({}));
        }
    }

    #[test]
    fn refuses_bad_values() {
        let bad = [
            json!({"product_id": "p"}),
            json!({"product_id": 5, "capability_id": "c"}),
            json!({"product_id": "p\n", "capability_id": "c\u{0}"}),
            json!({"product_id": "p", "capability_id": "c", "max_price_usd": -1}),
            json!({"product_id": "p", "capability_id": "c", "max_price_usd": "1"}),
            json!({"product_id": "p", "capability_id": "c", "source_hub": "http://"}),
            json!({"product_id": "p", "capability_id": "c", "source_hub": 3}),
            json!([1]),
        ];
        for body in bad {
            assert!(
                matches!(parse(body.clone()), Err(InvokeError::BadRequest(_))),
                "{body}"
            );
        }
        assert!(matches!(
            parse(json!({"product_id": "p", "capability_id": "c", "input": [1]})),
            Err(InvokeError::InputNotObject)
        ));
        assert!(matches!(
            InvokeRequest::from_slice(b"{nope", OWN),
            Err(InvokeError::InvalidJson(_))
        ));
    }

    #[test]
    fn real_clients_forms_are_read_tolerantly() {
        // aimarket-oracle-gateway names itself; the reference reads that as "unspecified".
        for hub in ["mcp-oracle-gateway", "local-dev", "ftp://x", "☃"] {
            let r =
                parse(json!({"product_id": "p", "capability_id": "c", "source_hub": hub})).unwrap();
            assert_eq!(r.source_hub, None, "{hub}");
        }
        let r = parse(json!({"capability_id": "c@v1"})).unwrap();
        assert_eq!(r.product_id, None);
        let r = parse(json!({"product_id": " ", "capability_id": "c@v1"})).unwrap();
        assert_eq!(r.product_id, None);
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_content() {
        let a = InvokeRequest::from_slice(
            br#"{"product_id":"p","capability_id":"c","input":{"x":1,"y":2}}"#,
            OWN,
        )
        .unwrap();
        let b = InvokeRequest::from_slice(
            br#"{ "input": {"y":2, "x":1}, "capability_id":"c", "product_id":"p" }"#,
            OWN,
        )
        .unwrap();
        let c = InvokeRequest::from_slice(
            br#"{"product_id":"p","capability_id":"c","input":{"x":1,"y":3}}"#,
            OWN,
        )
        .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn header_checks() {
        let mut h = BuyerHeaders {
            idempotency_key: Some("abc-123".into()),
            ..BuyerHeaders::default()
        };
        h.check().unwrap();
        h.idempotency_key = Some("has space".into());
        assert!(h.check().is_err());
        h.idempotency_key = Some("k".repeat(300));
        assert!(h.check().is_err());
    }
}

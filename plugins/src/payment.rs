//! Reading the amount a provider's 402 asks for, in each of the three challenge shapes seen in
//! the wild:
//!
//! 1. v1 `X-Payment-Required` header: plain JSON `{"amount": "0.40", "token", "chain", ...}`;
//!    `amount` is a decimal USD string (or number).
//! 2. x402 v1 in the JSON body: `{"x402Version": 1, "accepts": [{"maxAmountRequired":
//!    "1000", ...}]}`; the amount is an integer string in token base units.
//! 3. x402 v2 `PAYMENT-REQUIRED` header: base64 of compact JSON `{"x402Version": 2,
//!    "accepts": [{"amount": "1000", ...}]}`; token base units too.
//!
//! Base units are converted at [`DEFAULT_TOKEN_DECIMALS`] (USDC and USDT on the supported
//! chains use 6). Only `accepts[0]` is read, as clients pay the first offer.

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

/// Decimals of the stablecoins the protocol settles in.
pub const DEFAULT_TOKEN_DECIMALS: u32 = 6;

/// Which challenge an amount came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeShape {
    /// v1 `X-Payment-Required` JSON header, decimal USD `amount`.
    V1Header,
    /// x402 v1 `accepts[0].maxAmountRequired` in the body, base units.
    X402V1Body,
    /// x402 v2 `PAYMENT-REQUIRED` base64 header, `accepts[0].amount`, base units.
    X402V2Header,
}

/// One amount a 402 asks for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RequestedAmount {
    /// Where it was read.
    pub shape: ChallengeShape,
    /// The amount in USD.
    pub usd: f64,
}

/// Every amount the challenge carries (possibly none), in the order of [`ChallengeShape`].
pub fn requested_amounts(
    x_payment_required: Option<&str>,
    payment_required: Option<&str>,
    body: &Value,
    token_decimals: u32,
) -> Vec<RequestedAmount> {
    let mut out = Vec::with_capacity(3);
    if let Some(usd) = x_payment_required.and_then(|h| v1_header_usd(h, token_decimals)) {
        out.push(RequestedAmount {
            shape: ChallengeShape::V1Header,
            usd,
        });
    }
    if let Some(usd) = accepts_usd(body, token_decimals) {
        out.push(RequestedAmount {
            shape: ChallengeShape::X402V1Body,
            usd,
        });
    }
    if let Some(usd) = payment_required
        .and_then(decode_base64_json)
        .and_then(|v| accepts_usd(&v, token_decimals))
    {
        out.push(RequestedAmount {
            shape: ChallengeShape::X402V2Header,
            usd,
        });
    }
    out
}

/// The largest amount of a list, if any.
pub fn max_usd(amounts: &[RequestedAmount]) -> Option<f64> {
    amounts.iter().map(|a| a.usd).reduce(f64::max)
}

/// v1 header: JSON with a decimal `amount`. Providers that put an x402 object (plain or
/// base64) in this header are read as such rather than ignored.
fn v1_header_usd(header: &str, token_decimals: u32) -> Option<f64> {
    let value = serde_json::from_str::<Value>(header.trim())
        .ok()
        .or_else(|| decode_base64_json(header))?;
    if let Some(amount) = value.get("amount") {
        return decimal_usd(amount);
    }
    accepts_usd(&value, token_decimals)
}

/// `accepts[0].maxAmountRequired` (x402 v1) or `accepts[0].amount` (x402 v2), base units.
fn accepts_usd(value: &Value, token_decimals: u32) -> Option<f64> {
    let offer = value.get("accepts")?.as_array()?.first()?;
    let amount = offer
        .get("maxAmountRequired")
        .or_else(|| offer.get("amount"))?;
    base_units_usd(amount, token_decimals)
}

fn decode_base64_json(text: &str) -> Option<Value> {
    let text = text.trim();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = engines.iter().find_map(|e| e.decode(text).ok())?;
    serde_json::from_slice(&bytes).ok()
}

/// A decimal USD amount: `"0.40"` or `0.4`. Negative, non-finite or unparsable → `None`.
fn decimal_usd(value: &Value) -> Option<f64> {
    let usd = match value {
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        Value::Number(n) => n.as_f64()?,
        _ => return None,
    };
    (usd.is_finite() && usd >= 0.0).then_some(usd)
}

/// An integer amount in token base units: `"1000"` or `1000`. Decimal points, signs or
/// anything else → `None` (x402 amounts are atomic integers).
fn base_units_usd(value: &Value, token_decimals: u32) -> Option<f64> {
    let units: u128 = match value {
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()?
        }
        Value::Number(n) => u128::from(n.as_u64()?),
        _ => return None,
    };
    let scale = 10f64.powi(i32::try_from(token_decimals).ok()?);
    // u128 → f64 loses precision only beyond 2^53 base units (≈ $9e9 at 6 decimals), far
    // above any per-call price; the comparison it feeds has a tolerance anyway.
    #[allow(clippy::cast_precision_loss)]
    let usd = units as f64 / scale;
    Some(usd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(v: &Value) -> String {
        base64::engine::general_purpose::STANDARD.encode(v.to_string())
    }

    #[test]
    fn v1_header_decimal_amount() {
        let h =
            r#"{"amount":"0.40","token":"USDT","chain":"base","recipient":"0x1","nonce":"pay_1"}"#;
        let got = requested_amounts(Some(h), None, &Value::Null, 6);
        assert_eq!(
            got,
            vec![RequestedAmount {
                shape: ChallengeShape::V1Header,
                usd: 0.40
            }]
        );
        let numeric = requested_amounts(Some(r#"{"amount": 1.5}"#), None, &Value::Null, 6);
        assert_eq!(max_usd(&numeric), Some(1.5));
    }

    #[test]
    fn x402_v1_body_base_units() {
        let body = json!({"x402Version": 1, "accepts": [{"scheme": "exact",
            "maxAmountRequired": "1000"}, {"maxAmountRequired": "999999999"}]});
        let got = requested_amounts(None, None, &body, 6);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].shape, ChallengeShape::X402V1Body);
        assert!((got[0].usd - 0.001).abs() < 1e-12);
    }

    #[test]
    fn x402_v2_header_base64() {
        let decoded = json!({"x402Version": 2, "accepts": [{"amount": "250000",
            "network": "eip155:8453"}]});
        let got = requested_amounts(None, Some(&b64(&decoded)), &Value::Null, 6);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].shape, ChallengeShape::X402V2Header);
        assert!((got[0].usd - 0.25).abs() < 1e-12);
    }

    #[test]
    fn all_three_shapes_and_the_max() {
        let v2 = json!({"accepts": [{"amount": "2000000"}]});
        let body = json!({"accepts": [{"maxAmountRequired": "1000000"}]});
        let got = requested_amounts(Some(r#"{"amount":"0.5"}"#), Some(&b64(&v2)), &body, 6);
        assert_eq!(got.len(), 3);
        assert_eq!(max_usd(&got), Some(2.0));
    }

    #[test]
    fn garbage_is_ignored_not_guessed() {
        let body = json!({"accepts": [{"maxAmountRequired": "-5"}]});
        assert!(requested_amounts(Some("not json"), Some("%%%"), &body, 6).is_empty());
        let decimal_units = json!({"accepts": [{"maxAmountRequired": "0.001"}]});
        assert!(requested_amounts(None, None, &decimal_units, 6).is_empty());
        assert!(requested_amounts(Some(r#"{"amount":"-1"}"#), None, &Value::Null, 6).is_empty());
        assert!(requested_amounts(Some(r#"{"amount":"NaN"}"#), None, &Value::Null, 6).is_empty());
        assert!(requested_amounts(None, None, &json!({"accepts": []}), 6).is_empty());
        assert_eq!(max_usd(&[]), None);
    }

    #[test]
    fn x402_object_in_the_v1_header_is_read() {
        let obj = json!({"accepts": [{"maxAmountRequired": "3000000"}]});
        let plain = requested_amounts(Some(&obj.to_string()), None, &Value::Null, 6);
        assert_eq!(max_usd(&plain), Some(3.0));
        let encoded = requested_amounts(Some(&b64(&obj)), None, &Value::Null, 6);
        assert_eq!(max_usd(&encoded), Some(3.0));
    }
}

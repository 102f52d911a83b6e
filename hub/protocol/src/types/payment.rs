//! The 402 challenge in its three shapes (CLIENTS.md §3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ProtocolError;

/// v1 `X-Payment-Required` header value (plain JSON, not base64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRequiredV1 {
    /// Decimal amount as a string (`"0.40"`).
    pub amount: String,
    /// Token symbol.
    pub token: String,
    /// Chain name.
    pub chain: String,
    /// Payee address.
    pub recipient: String,
    /// Payment nonce.
    pub nonce: String,
    /// Expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Receipt lookup URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_url: Option<String>,
}

/// x402 v1 members of a 402 JSON body: `{"x402Version": 1, "accepts": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct X402V1Body {
    /// `1`.
    #[serde(rename = "x402Version")]
    pub x402_version: u32,
    /// Acceptable payments.
    pub accepts: Vec<X402V1Accept>,
}

/// One x402 v1 payment requirement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X402V1Accept {
    /// `exact`.
    pub scheme: String,
    /// Network name (`base`).
    pub network: String,
    /// Amount in token base units, as a decimal string.
    pub max_amount_required: String,
    /// Token contract.
    pub asset: String,
    /// Payee.
    pub pay_to: String,
    /// Resource URL.
    pub resource: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Response MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Output schema (often `null`).
    #[serde(default)]
    pub output_schema: Value,
    /// Payment window.
    pub max_timeout_seconds: u64,
    /// EIP-712 domain hints and nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

/// x402 v2 challenge, carried base64-encoded in the `PAYMENT-REQUIRED` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct X402V2 {
    /// `2`.
    #[serde(rename = "x402Version")]
    pub x402_version: u32,
    /// Human message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The paid resource.
    pub resource: X402Resource,
    /// Acceptable payments.
    pub accepts: Vec<X402V2Accept>,
    /// Payment nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Other members.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// x402 v2 `resource`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X402Resource {
    /// Resource URL.
    pub url: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// One x402 v2 payment requirement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X402V2Accept {
    /// `exact`.
    pub scheme: String,
    /// CAIP-2 network (`eip155:8453`).
    pub network: String,
    /// Amount in token base units (6 decimals, rounded up), decimal string.
    pub amount: String,
    /// Token contract.
    pub asset: String,
    /// Payee.
    pub pay_to: String,
    /// Payment window.
    pub max_timeout_seconds: u64,
    /// EIP-712 domain hints and nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

impl X402V2 {
    /// The `PAYMENT-REQUIRED` header value: standard base64 of the compact JSON.
    pub fn encode(&self) -> String {
        let value = serde_json::to_value(self).expect("X402V2 has string keys and finite numbers");
        B64.encode(crate::canonical::to_canonical_vec(
            &value,
            crate::canonical::Style::Compact,
        ))
    }

    /// Parses a `PAYMENT-REQUIRED` header value.
    pub fn decode(header: &str) -> Result<Self, ProtocolError> {
        let bytes = B64
            .decode(header.trim())
            .map_err(|_| ProtocolError::BadBase64 {
                field: "PAYMENT-REQUIRED",
            })?;
        let value = crate::canonical::parse(&bytes)?;
        serde_json::from_value(value)
            .map_err(|e| ProtocolError::InvalidJson(format!("PAYMENT-REQUIRED: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn x402_v2_round_trips_through_base64() {
        let v = X402V2 {
            x402_version: 2,
            error: Some("Payment required".into()),
            resource: X402Resource {
                url: "http://h/ai-market/v2/invoke".into(),
                description: "d".into(),
                mime_type: Some("application/json".into()),
            },
            accepts: vec![X402V2Accept {
                scheme: "exact".into(),
                network: "eip155:8453".into(),
                amount: "1000".into(),
                asset: "0x8335".into(),
                pay_to: "0x1111".into(),
                max_timeout_seconds: 300,
                extra: Some(json!({"name": "USD Coin", "version": "2"})),
            }],
            nonce: Some("0xab".into()),
            extra: Map::new(),
        };
        let header = v.encode();
        let raw = String::from_utf8(B64.decode(&header).unwrap()).unwrap();
        assert!(
            raw.starts_with(r#"{"accepts":[{"amount":"1000","asset":"0x8335","extra":"#),
            "{raw}"
        );
        assert!(raw.contains(r#""maxTimeoutSeconds":300"#) && raw.contains(r#""x402Version":2"#));
        assert_eq!(X402V2::decode(&header).unwrap(), v);
        assert_eq!(
            X402V2::decode("%%%"),
            Err(ProtocolError::BadBase64 {
                field: "PAYMENT-REQUIRED"
            })
        );
        assert!(matches!(
            X402V2::decode(&B64.encode(b"{}")),
            Err(ProtocolError::InvalidJson(_))
        ));
    }

    #[test]
    fn x402_v1_body_uses_camel_case() {
        let body: X402V1Body = serde_json::from_value(json!({"x402Version": 1, "accepts": [{"scheme": "exact",
            "network": "base", "maxAmountRequired": "1000", "asset": "0x1", "payTo": "0x2",
            "resource": "r", "description": "", "mimeType": "application/json", "outputSchema": null,
            "maxTimeoutSeconds": 300, "extra": {"nonce": "0x3"}}]})).unwrap();
        assert_eq!(body.accepts[0].max_amount_required, "1000");
        let back = serde_json::to_value(&body).unwrap();
        assert_eq!(back["accepts"][0]["payTo"], "0x2");
    }
}

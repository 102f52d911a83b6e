//! Federation announce, reputation events and payment channels.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::SignatureObject;

/// The announce `signature`: the spec's bare base64 string, or the object form the
/// reference hub requires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AnnounceSignature {
    /// `"signature": "<base64>"`.
    Bare(String),
    /// `"signature": {"algorithm": "ed25519", "value": "<base64>"}`.
    Object(SignatureObject),
}

impl AnnounceSignature {
    /// The base64 signature value, whichever form.
    pub fn value(&self) -> &str {
        match self {
            Self::Bare(s) => s,
            Self::Object(o) => &o.value,
        }
    }
}

/// `POST /ai-market/v2/federation/announce` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FederationAnnounce {
    /// Announcing hub's base URL.
    pub hub_url: String,
    /// Its well-known URL.
    pub well_known_url: String,
    /// Capabilities it serves (signed; absent = 0).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub capabilities_count: Option<u64>,
    /// Hub name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_name: Option<String>,
    /// Its signing key (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_public_key: Option<String>,
    /// Signature over the three-field canonical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<AnnounceSignature>,
}

/// One event of `POST /ai-market/v2/reputation/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReputationEvent {
    /// `invocation_success`, `invocation_failure`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Hub that served the call.
    pub provider_hub: String,
    /// Capability id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability_id: Option<String>,
    /// RFC 3339 time.
    pub timestamp: String,
    /// Price paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_usd: Option<f64>,
    /// Latency.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub latency_ms: Option<u64>,
    /// Reporting hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_hub: Option<String>,
    /// Signature: string (spec) or object (reference); kept raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Value>,
}

/// `POST /ai-market/v2/channel/open` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelOpenRequest {
    /// Deposit in USD.
    pub deposit_usd: f64,
    /// Depositor address or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depositor: Option<String>,
    /// Chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// Token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// On-chain deposit transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// Other members.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Channel open answer. Carries both `deposit_usd` and `original_deposit_usd` because
/// SDKs read one or the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelOpenResponse {
    /// Channel id (`ch_…`).
    pub channel_id: String,
    /// One-time debit secret (`X-Payment-Channel-Secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_secret: Option<String>,
    /// Deposit.
    pub deposit_usd: f64,
    /// Same as `deposit_usd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_deposit_usd: Option<f64>,
    /// Remaining balance.
    pub balance_usd: f64,
    /// Expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// `v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// Other members.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /ai-market/v2/channel/close` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelCloseRequest {
    /// Channel id.
    pub channel_id: String,
    /// Other members.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Channel close answer: flat fields plus a `settlement` envelope (SDKs read either).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelCloseResponse {
    /// Channel id.
    pub channel_id: String,
    /// Amount used.
    pub used_usd: f64,
    /// Amount refunded.
    pub refund_usd: f64,
    /// Final status (`closed`).
    pub status: String,
    /// Settlement envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<Value>,
    /// Other members.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn announce_signature_accepts_both_forms() {
        let a: FederationAnnounce = serde_json::from_value(
            json!({"hub_url": "h", "well_known_url": "w", "signature": "c2ln"}),
        )
        .unwrap();
        assert_eq!(a.signature.as_ref().unwrap().value(), "c2ln");
        let b: FederationAnnounce = serde_json::from_value(
            json!({"hub_url": "h", "well_known_url": "w", "signature": {"algorithm": "ed25519", "value": "c2ln"}}),
        )
        .unwrap();
        assert!(matches!(b.signature, Some(AnnounceSignature::Object(_))));
        assert_eq!(b.signature.unwrap().value(), "c2ln");
    }
}

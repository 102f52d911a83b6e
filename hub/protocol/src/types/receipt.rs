//! Invocation receipts (v1 and v2 fields).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::SignatureObject;

/// A receipt. Read it only after [`crate::signing::verify_receipt`] succeeded on the raw
/// `Value`, and treat the fields listed by [`crate::signing::unsigned_receipt_fields`] as
/// unauthenticated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// Unique receipt id (`rcpt_…`).
    pub nonce: String,
    /// Product id.
    pub product_id: String,
    /// Capability id.
    pub capability_id: String,
    /// Price charged.
    pub price_usd: f64,
    /// List price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_price_usd: Option<f64>,
    /// RFC 3339 time.
    pub timestamp: String,
    /// Outcome (signed as 1/0).
    #[serde(default)]
    pub success: bool,
    /// Latency (absent = 0 in the canonical).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub latency_ms: Option<u64>,
    /// Consumer hub URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_hub: Option<String>,
    /// Routing fee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_fee_bps: Option<u32>,
    /// v2: receipt type (`rejection`, …).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// v2: channel id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    /// v2: rejection category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// v2: plugin that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// v2: reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// v2: verifier score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_score: Option<f64>,
    /// v2: delivery reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_reasons: Option<Vec<String>>,
    /// v2: trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// v2: whether the buyer was refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded: Option<bool>,
    /// Signature (`version: 2` for v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureObject>,
    /// Other members.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

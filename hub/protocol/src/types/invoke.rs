//! `POST /ai-market/v2/invoke`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn default_source_hub() -> String {
    "local".to_owned()
}

/// Invoke request body. `source_hub` defaults to `"local"` as the reference does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokeRequest {
    /// Product id.
    pub product_id: String,
    /// Capability id.
    pub capability_id: String,
    /// Origin hub URL, or `local`.
    #[serde(default = "default_source_hub")]
    pub source_hub: String,
    /// Capability input (an object).
    #[serde(default)]
    pub input: Value,
    /// Buyer's price cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price_usd: Option<f64>,
    /// Other optional members (verify, purpose, payment_authorization, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Invoke 200 body. Price and latency are present even when `success` is false (the Rust
/// SDK requires them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokeResponse {
    /// Whether the capability succeeded.
    pub success: bool,
    /// The capability's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Provider receipt, passed through unchanged (its signature covers the raw JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Value>,
    /// Price charged.
    pub price_usd: f64,
    /// List price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_price_usd: Option<f64>,
    /// Latency.
    pub latency_ms: u64,
    /// `v2`.
    pub protocol_version: String,
    /// Routing hub URL when routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_via: Option<String>,
    /// Routing fee when routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_fee_bps: Option<u32>,
    /// Error code on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Other members.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

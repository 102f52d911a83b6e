//! `GET /ai-market/v2/search` response.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The search envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// The intent as received (a string; some SDKs refuse anything else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Category filter, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Ranked matches.
    pub matches: Vec<SearchMatch>,
    /// Matches before paging.
    pub total: u64,
    /// Paging offset.
    #[serde(default)]
    pub offset: u64,
    /// Paging limit.
    #[serde(default)]
    pub limit: u64,
    /// More results after this page.
    #[serde(default)]
    pub has_more: bool,
    /// Search diagnostics (`mode`, `latency_ms`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<Value>,
    /// Distinct hubs in the index.
    #[serde(default)]
    pub total_hubs_searched: u64,
    /// `v2`.
    pub protocol_version: String,
}

/// One ranked capability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchMatch {
    /// Product id.
    pub product_id: String,
    /// Capability id.
    pub capability_id: String,
    /// Origin hub URL (`local` for this hub's own rows in some clients).
    pub source_hub: String,
    /// Origin hub name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_hub_name: Option<String>,
    /// Tool name.
    pub name: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Relevance score.
    pub score: f64,
    /// `exact|hybrid|semantic|fuzzy|lexical|browse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_type: Option<String>,
    /// List price.
    pub price_per_call_usd: f64,
    /// Price including the routing fee.
    pub routed_price_usd: f64,
    /// Routing fee.
    pub routing_fee_bps: u32,
    /// Trust score (clients filter on ≥ 0.3).
    pub trust_score: f64,
    /// Median latency (clients filter on ≤ 10 s).
    pub p50_latency_ms: u64,
    /// Success rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate_30d: Option<f64>,
    /// Where to invoke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoke_url: Option<String>,
    /// Input schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// Output schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Other fields (score_breakdown, offerable, route_status, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

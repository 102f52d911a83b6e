//! Discovery documents: the well-known, the manifest and its tools.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A signature object `{algorithm, public_key?, value, version?}`; other members (e.g. the
/// reference hub's `pq_algorithm`/`pq_public_key`/`pq_value`) are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureObject {
    /// Always `ed25519`.
    pub algorithm: String,
    /// Base64 signer key, when embedded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Base64 Ed25519 signature.
    pub value: String,
    /// Receipt canonical version (`2` for v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u8>,
    /// Unknown members.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET /.well-known/ai-market.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WellKnown {
    /// Human-readable hub name.
    pub name: String,
    /// `["v1", "v2"]`.
    pub protocol_versions: Vec<String>,
    /// Hub software version; its presence marks a v2 hub for routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_version: Option<String>,
    /// Spec package version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_release_version: Option<String>,
    /// MCP endpoint URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_endpoint: Option<String>,
    /// Where the signed manifest lives.
    pub manifest_url: String,
    /// Local products.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub products_count: Option<u64>,
    /// Local capabilities.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub capabilities_count: Option<u64>,
    /// Capabilities indexed from peers.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub federated_capabilities_count: Option<u64>,
    /// Settlement chains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_chains: Option<Vec<String>>,
    /// Settlement tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_tokens: Option<Vec<String>>,
    /// Base64 Ed25519 key that signs this hub's manifest (and this document).
    pub signer_public_key: String,
    /// Federation parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<FederationInfo>,
    /// Trusted peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerInfo>>,
    /// Seen but untrusted hubs (gossip only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_hubs: Option<Vec<ObservedHub>>,
    /// When the document was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<String>,
    /// Whole-document signature (optional for discovery documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureObject>,
    /// Unknown fields, re-served as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The well-known's `federation` block.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FederationInfo {
    /// Seconds between crawls (≥ 60).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub crawl_interval_s: Option<u64>,
    /// Routing fee in basis points (0..=10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_fee_bps: Option<u32>,
    /// Minimum peer trust score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_trust_score: Option<f64>,
    /// Seed hub URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_list: Option<Vec<String>>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One entry of the well-known's `peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Peer base URL.
    pub url: String,
    /// Peer name.
    pub name: String,
    /// Capabilities indexed from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities_count: Option<i64>,
    /// Last successful crawl (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_crawl: Option<String>,
    /// Trust score 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_score: Option<f64>,
    /// Declared categories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One entry of the well-known's `observed_hubs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedHub {
    /// Hub URL.
    pub url: String,
    /// Always `observed`.
    pub status: String,
    /// Name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// First sighting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    /// Hub that reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_by: Option<String>,
    /// Gossip depth (≥ 1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub depth: Option<u64>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A capability manifest, v1 (`capabilities_count`) or federated v2 (`total_capabilities`,
/// `by_hub`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `v1` or `v2`.
    pub protocol_version: String,
    /// RFC 3339 generation time (freshness is checked against it).
    pub generated_at: String,
    /// Hub base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// v1: products.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub products_count: Option<u64>,
    /// v1: capabilities (signed; absent = 0 in the canonical).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub capabilities_count: Option<u64>,
    /// v2: all tools listed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub total_capabilities: Option<u64>,
    /// v2: local tools.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub local_capabilities: Option<u64>,
    /// v2: federated tools.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub federated_capabilities: Option<u64>,
    /// v2: peers indexed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub hubs_indexed: Option<u64>,
    /// The catalogue.
    pub tools: Vec<Tool>,
    /// v2: per-hub metadata (signed through `by_hub_hash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_hub: Option<BTreeMap<String, ByHubEntry>>,
    /// Five-field signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureObject>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `by_hub` entry of a v2 manifest.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ByHubEntry {
    /// Capabilities from this hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities_count: Option<i64>,
    /// Its trust score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_score: Option<f64>,
    /// How the score was derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_basis: Option<String>,
    /// Observations in 30 days.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub observations_30d: Option<u64>,
    /// Last crawl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_crawl: Option<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One capability in a manifest (`tools[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `product.capability` name.
    pub name: String,
    /// Free-text description.
    pub description: String,
    /// JSON Schema of the input.
    pub input_schema: Value,
    /// JSON Schema of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// List price per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_call_usd: Option<f64>,
    /// Median latency.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient_u64::deserialize"
    )]
    pub p50_latency_ms: Option<u64>,
    /// Success rate 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate_30d: Option<f64>,
    /// Product id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    /// Capability id (`name@vN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability_id: Option<String>,
    /// Origin hub URL (federated rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_hub: Option<String>,
    /// Origin hub name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_hub_name: Option<String>,
    /// Price including this hub's routing fee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_price_usd: Option<f64>,
    /// Routing fee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_fee_bps: Option<u32>,
    /// Trust score 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_score: Option<f64>,
    /// Where to invoke it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoke_url: Option<String>,
    /// Unknown fields (access_mode, offerable, route_status, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

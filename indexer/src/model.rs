//! Input and output types of the index. They carry no protocol logic: the hub maps its store
//! rows to [`IndexedCapability`] and a [`SearchPage`] to the wire response.

use serde::{Deserialize, Serialize};

/// Separator inside [`IndexedCapability::key`]; a control character that cannot occur in
/// URLs or protocol identifiers.
pub const KEY_SEPARATOR: char = '\u{1f}';

/// One capability as the index sees it: what it searches, filters on and returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedCapability {
    /// Unique key, see [`IndexedCapability::make_key`]. Upserts replace the document with the
    /// same key; removes name keys.
    pub key: String,
    /// Origin URL of the hub that owns the capability (`source_hub` on the wire).
    pub origin: String,
    /// Display name of that hub (`source_hub_name`).
    pub source_hub_name: String,
    /// The hub we learned the capability through, when it is not the origin itself.
    #[serde(default)]
    pub via: Option<String>,
    /// Product the capability belongs to.
    pub product_id: String,
    /// Capability id, e.g. `translate.multi@v2`.
    pub capability_id: String,
    /// Human name.
    pub name: String,
    /// Free-text description, any language.
    pub description: String,
    /// JSON Schema of the input; property names and descriptions are searchable.
    #[serde(default)]
    pub input_schema: serde_json::Value,
    /// Categories declared by the providing peer.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Listed price per call in USD.
    pub price_usd: f64,
    /// Price a caller pays through this hub (price plus routing fee), in USD.
    pub routed_price_usd: f64,
    /// Median latency in milliseconds.
    pub p50_latency_ms: u64,
    /// Trust score in [0, 1].
    pub trust_score: f64,
    /// Success rate over 30 days in [0, 1].
    pub success_rate: f64,
}

impl IndexedCapability {
    /// The canonical key: origin, product id and capability id joined by [`KEY_SEPARATOR`].
    pub fn make_key(origin: &str, product_id: &str, capability_id: &str) -> String {
        let mut key =
            String::with_capacity(origin.len() + product_id.len() + capability_id.len() + 2);
        key.push_str(origin);
        key.push(KEY_SEPARATOR);
        key.push_str(product_id);
        key.push(KEY_SEPARATOR);
        key.push_str(capability_id);
        key
    }
}

/// A search request, already validated by the caller (the HTTP layer rejects malformed
/// parameters; the index still copes with any text in `intent`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Free-text intent; empty (or only punctuation/stop words) browses the catalog.
    pub intent: String,
    /// Maximum routed price in USD (inclusive).
    pub budget: Option<f64>,
    /// Maximum p50 latency in ms (inclusive).
    pub max_latency_ms: Option<u64>,
    /// Minimum trust score (inclusive).
    pub min_trust: Option<f64>,
    /// Exact origin URL of the owning hub.
    pub hub: Option<String>,
    /// Category: matches a declared category (case-insensitive) or a capability whose id or
    /// name contains all words of the category.
    pub category: Option<String>,
    /// Page size. Zero returns no matches but still counts `total`.
    pub limit: usize,
    /// Number of ranked matches to skip.
    pub offset: usize,
    /// Leave `input_schema` out of the hits.
    pub compact: bool,
}

/// One ranked match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Final score used for ordering (see [`crate::rank`]).
    pub score: f64,
    /// Text relevance before the quality factor (0 when browsing).
    pub relevance: f64,
    /// Quality in [0, 1] from trust, success rate, latency and price.
    pub quality: f64,
    /// How the match was found.
    pub match_type: MatchType,
    /// The indexed capability; `input_schema` is `Value::Null` when the query was compact.
    pub capability: IndexedCapability,
}

/// How a hit was found, for diagnostics (`match_type` on the wire if the hub wants it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchType {
    /// Exact (stemmed) terms, phrases or prefixes.
    Lexical,
    /// The query needed typo tolerance to find enough matches.
    Fuzzy,
    /// Empty intent: catalog browse ordered by quality.
    Browse,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    /// Ranked matches `offset .. offset + limit`.
    pub matches: Vec<SearchHit>,
    /// Number of documents matching the query and filters.
    pub total: usize,
    /// Whether matches exist past this page.
    pub has_more: bool,
    /// Distinct source hubs in the whole index (`total_hubs_searched`).
    pub hubs: usize,
}

//! Helpers shared by the integration tests.

use aimarket_indexer::{Index, IndexedCapability, SearchPage, SearchQuery};
use serde_json::json;

/// A capability with neutral signals; tests override what they need.
pub fn cap(origin: &str, capability_id: &str, name: &str, description: &str) -> IndexedCapability {
    let product_id = format!("prod-{}", capability_id.replace(['.', '@'], "-"));
    IndexedCapability {
        key: IndexedCapability::make_key(origin, &product_id, capability_id),
        origin: origin.to_string(),
        source_hub_name: format!("Hub at {origin}"),
        via: None,
        product_id,
        capability_id: capability_id.to_string(),
        name: name.to_string(),
        description: description.to_string(),
        input_schema: json!({"type": "object", "properties": {"text": {"type": "string"}}}),
        categories: Vec::new(),
        price_usd: 0.01,
        routed_price_usd: 0.0101,
        p50_latency_ms: 500,
        trust_score: 0.5,
        success_rate: 0.5,
    }
}

/// An in-RAM index holding `caps`, committed as version 1.
pub fn index_of(caps: Vec<IndexedCapability>) -> Index {
    let index = Index::in_ram().unwrap();
    index.apply(caps, Vec::new(), 1).unwrap();
    index
}

/// A query for `intent` with the default page size of the HTTP API.
pub fn q(intent: &str) -> SearchQuery {
    SearchQuery {
        intent: intent.to_string(),
        limit: 20,
        ..SearchQuery::default()
    }
}

/// Capability ids of a page, in order.
pub fn ids(page: &SearchPage) -> Vec<&str> {
    page.matches
        .iter()
        .map(|m| m.capability.capability_id.as_str())
        .collect()
}

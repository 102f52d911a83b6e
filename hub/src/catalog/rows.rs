//! Store rows → what search indexes and what the manifest publishes. One mapping, so a
//! capability shows the same numbers in search, in the manifest and to plugins.
//!
//! Effective values (documented in the README):
//! - `trust_score`, `success_rate_30d`: [`capability_trust`];
//! - `routed_price_usd`: `price × (1 + bps/10000)` in whole micro-dollars
//!   ([`routed_price_usd`]);
//! - `p50_latency_ms`: as declared; undeclared counts as [`UNKNOWN_LATENCY_MS`] (a neutral
//!   value: clients need a number, and 0 would rank and filter an unknown provider as the
//!   fastest);
//! - `source_hub_name`: the listing peer's name for its own tools; for a re-export, the name
//!   the relaying hub published (`source_hub_name` of its tool), else the origin's host.
//! - searchable categories: the listing peer's declared categories plus the tool's own
//!   `category` / `categories`.

use aimarket_indexer::IndexedCapability;
use aimarket_protocol::types::routed_price_usd;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::trust::{PeerTrust, capability_trust};
use crate::store::CapabilityRow;

/// Latency assumed for a capability that declares none, ms.
pub const UNKNOWN_LATENCY_MS: u64 = 1000;
/// Longest `source_hub_name` taken from a relaying hub's tool.
const MAX_HUB_NAME_CHARS: usize = 200;
/// Most categories taken from one tool.
const MAX_TOOL_CATEGORIES: usize = 16;

/// The numbers a capability is published with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effective {
    /// Declared price, USD.
    pub price_usd: f64,
    /// Price through this hub, USD.
    pub routed_price_usd: f64,
    /// Median latency, ms.
    pub p50_latency_ms: u64,
    /// Trust score in `[0, 1]`.
    pub trust_score: f64,
    /// Success rate in `[0, 1]`.
    pub success_rate: f64,
}

impl Effective {
    /// The effective values of `row` at `routing_fee_bps`.
    pub fn of(row: &CapabilityRow, routing_fee_bps: u32) -> Self {
        let (trust_score, success_rate) = capability_trust(&PeerTrust::of(row), row);
        let price_usd = finite_non_negative(row.capability.price_usd);
        Self {
            price_usd,
            routed_price_usd: routed_price_usd(price_usd, routing_fee_bps),
            p50_latency_ms: row.capability.p50_latency_ms.unwrap_or(UNKNOWN_LATENCY_MS),
            trust_score,
            success_rate,
        }
    }
}

fn finite_non_negative(x: f64) -> f64 {
    if x.is_finite() { x.max(0.0) } else { 0.0 }
}

/// The few fields read from the tool JSON as served (everything else comes from columns).
#[derive(Debug, Default, Deserialize)]
struct ToolExtras {
    #[serde(default)]
    category: Option<Value>,
    #[serde(default)]
    categories: Option<Value>,
    #[serde(default)]
    source_hub_name: Option<Value>,
}

impl ToolExtras {
    fn of(row: &CapabilityRow) -> Self {
        // The crawler stored valid JSON; a row written by other code just has no extras.
        serde_json::from_str(&row.capability.tool_json).unwrap_or_default()
    }

    fn categories(&self) -> impl Iterator<Item = &str> {
        let one = self.category.as_ref().and_then(Value::as_str);
        let many = self
            .categories
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        one.into_iter().chain(many).take(MAX_TOOL_CATEGORIES)
    }
}

/// The name shown for the owning hub (module docs).
fn source_hub_name(row: &CapabilityRow, extras: &ToolExtras) -> String {
    let declared = match &row.capability.via {
        None => row.peer_name.as_deref(),
        Some(_) => extras.source_hub_name.as_ref().and_then(Value::as_str),
    };
    match declared.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => name.chars().take(MAX_HUB_NAME_CHARS).collect(),
        None => origin_host(&row.capability.origin),
    }
}

/// `host[:port]` of an origin URL, or the URL itself.
fn origin_host(origin: &str) -> String {
    url::Url::parse(origin)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| {
                u.port()
                    .map_or_else(|| h.to_owned(), |p| format!("{h}:{p}"))
            })
        })
        .unwrap_or_else(|| origin.to_owned())
}

/// A JSON object parsed from stored schema text; anything else becomes `{}`.
fn schema_object(text: Option<&str>) -> Value {
    match text.map(serde_json::from_str::<Value>) {
        Some(Ok(value @ Value::Object(_))) => value,
        _ => Value::Object(Map::new()),
    }
}

/// The index document of `row`: the index's view of the record, with the effective values.
/// It takes the row by value so the record's strings move into the document uncopied.
pub fn indexed(row: CapabilityRow, routing_fee_bps: u32) -> IndexedCapability {
    let effective = Effective::of(&row, routing_fee_bps);
    let extras = ToolExtras::of(&row);
    let source_hub_name = source_hub_name(&row, &extras);
    let mut categories = row.peer_categories;
    categories.extend(extras.categories().map(str::to_owned));
    let cap = row.capability;
    let input_schema = schema_object(Some(&cap.input_schema));
    IndexedCapability {
        key: IndexedCapability::make_key(&cap.origin, &cap.product_id, &cap.capability_id),
        origin: cap.origin,
        source_hub_name,
        via: cap.via,
        product_id: cap.product_id,
        capability_id: cap.capability_id,
        name: cap.name,
        description: cap.description,
        input_schema,
        categories,
        price_usd: effective.price_usd,
        routed_price_usd: effective.routed_price_usd,
        p50_latency_ms: effective.p50_latency_ms,
        trust_score: effective.trust_score,
        success_rate: effective.success_rate,
    }
}

/// The manifest tool of `row` (spec §3.1): `invoke_url` is this hub's invoke endpoint, and a
/// re-export carries `via` (the hub it came through) so a hub crawling this manifest stops
/// the chain after one hop.
pub fn manifest_tool(row: &CapabilityRow, routing_fee_bps: u32, invoke_url: &str) -> Value {
    let effective = Effective::of(row, routing_fee_bps);
    let extras = ToolExtras::of(row);
    let cap = &row.capability;
    let mut tool = json!({
        "name": format!("{}.{}", cap.product_id, cap.capability_id),
        "display_name": cap.name,
        "description": cap.description,
        "input_schema": schema_object(Some(&cap.input_schema)),
        "output_schema": schema_object(cap.output_schema.as_deref()),
        "price_per_call_usd": effective.price_usd,
        "p50_latency_ms": effective.p50_latency_ms,
        "success_rate_30d": effective.success_rate,
        "product_id": cap.product_id,
        "capability_id": cap.capability_id,
        "source_hub": cap.origin,
        "source_hub_name": source_hub_name(row, &extras),
        "routed_price_usd": effective.routed_price_usd,
        "routing_fee_bps": routing_fee_bps,
        "trust_score": effective.trust_score,
        "invoke_url": invoke_url,
    });
    if let Some(via) = &cap.via {
        tool["via"] = Value::from(via.as_str());
    }
    tool
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::catalog::trust::tests::row;

    #[test]
    fn indexed_document_carries_effective_values() {
        let mut r = row(0.5, Some(0.97));
        r.capability.price_usd = 0.004;
        r.peer_categories = vec!["nlp".into()];
        r.capability.tool_json = r#"{"category": "translation", "categories": ["text", 5]}"#.into();
        let doc = indexed(r, 100);
        assert_eq!(doc.routed_price_usd, 0.00404);
        assert_eq!(doc.trust_score, 0.5);
        assert_eq!(doc.success_rate, 0.97);
        assert_eq!(doc.p50_latency_ms, 250);
        assert_eq!(doc.source_hub_name, "P");
        assert_eq!(doc.categories, ["nlp", "translation", "text"]);
        assert_eq!(doc.input_schema, json!({"type": "object"}));
        assert_eq!(doc.key, "https://p.example\u{1f}prod\u{1f}cap@v1");
    }

    #[test]
    fn unknown_latency_and_names_have_defaults() {
        let mut r = row(0.5, None);
        r.capability.p50_latency_ms = None;
        r.peer_name = None;
        r.capability.origin = "http://127.0.0.1:8080".into();
        let doc = indexed(r, 0);
        assert_eq!(doc.p50_latency_ms, UNKNOWN_LATENCY_MS);
        assert_eq!(doc.source_hub_name, "127.0.0.1:8080");
    }

    #[test]
    fn re_exports_use_the_relayed_name_and_carry_via() {
        let mut r = row(0.5, None);
        r.capability.via = Some("https://relay.example".into());
        r.peer_name = Some("Relay".into());
        r.capability.tool_json = r#"{"source_hub_name": "Origin Hub"}"#.into();
        let tool = manifest_tool(&r, 100, "https://hub.example/ai-market/v2/invoke");
        assert_eq!(tool["source_hub_name"], "Origin Hub");
        assert_eq!(tool["via"], "https://relay.example");
        assert_eq!(tool["name"], "prod.cap@v1");
        assert_eq!(tool["source_hub"], "https://p.example");
        assert_eq!(tool["output_schema"], json!({}));
        assert_eq!(
            tool["invoke_url"],
            "https://hub.example/ai-market/v2/invoke"
        );
    }
}

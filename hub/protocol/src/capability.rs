//! [`Capability`]: the one record of a federated capability, from the crawler (which builds
//! it from a verified manifest) through the hub's store (which persists it as is and reads it
//! back inside its rows) to search and invoke (which derive their own views from it).
//!
//! JSON-valued fields hold JSON **text**, not parsed trees: the store persists text, and the
//! readers that need a tree (the manifest, the index, invoke's schema compiler) parse only
//! what they use, so reading the whole catalog never builds a tree per schema it does not
//! look at. The crawler serialises each value once, where it parses the manifest.
//!
//! The views derived from it, each built by one conversion in the hub: the index document
//! (`catalog::rows::indexed`, with the effective trust, success rate and routed price), the
//! plugins' search `Candidate` (`catalog::search::candidate`, from the index hit; its JSON is
//! the webhook plugins' contract) and invoke's `Offer` (`invoke::resolve::build_offer`, with
//! the compiled schema and the response key).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One capability as listed in a verified manifest: what it is, what it costs, where it is
/// invoked, and the tool object exactly as served.
///
/// Its key is `(origin, product_id, capability_id)`: one record per key in a hub's catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capability {
    /// Origin (`scheme://host[:port]`) of the hub that hosts the capability: the tool's
    /// `source_hub`, or the listing peer itself.
    pub origin: String,
    /// The peer hub it was learned through, when that is not the origin (a re-export).
    pub via: Option<String>,
    /// Product id.
    pub product_id: String,
    /// Capability id within the product.
    pub capability_id: String,
    /// `name` as served.
    pub name: String,
    /// `description` as served.
    pub description: String,
    /// `input_schema` as served (JSON text).
    pub input_schema: String,
    /// `output_schema` as served (JSON text), if any.
    pub output_schema: Option<String>,
    /// Declared price per call in USD.
    pub price_usd: f64,
    /// Declared median latency in ms; `None` when not declared (unknown).
    pub p50_latency_ms: Option<u64>,
    /// Declared 30-day success rate, if any.
    pub success_rate: Option<f64>,
    /// The tool's own invoke endpoint, if it declared one the crawler kept.
    pub invoke_url: Option<String>,
    /// The tool object exactly as served (JSON text; it is covered by the manifest
    /// signature).
    pub tool_json: String,
}

impl Capability {
    /// A string field of the tool as served (`category`, `via`, ...), if it is a string.
    ///
    /// Parses [`Capability::tool_json`] each call: for occasional reads, not for loops over
    /// a whole catalog. Invalid JSON text reads as the field being absent.
    pub fn tool_str(&self, field: &str) -> Option<String> {
        let tool: Value = serde_json::from_str(&self.tool_json).ok()?;
        match tool.get(field)? {
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(tool_json: &str) -> Capability {
        Capability {
            origin: "https://a.example".into(),
            via: None,
            product_id: "p".into(),
            capability_id: "c".into(),
            name: "p.c".into(),
            description: String::new(),
            input_schema: "{}".into(),
            output_schema: None,
            price_usd: 0.0,
            p50_latency_ms: None,
            success_rate: None,
            invoke_url: None,
            tool_json: tool_json.into(),
        }
    }

    #[test]
    fn tool_fields_are_read_from_the_served_json() {
        let c = cap(r#"{"category": "nlp", "via": 5}"#);
        assert_eq!(c.tool_str("category").as_deref(), Some("nlp"));
        assert_eq!(c.tool_str("via"), None);
        assert_eq!(c.tool_str("missing"), None);
        assert_eq!(cap("not json").tool_str("category"), None);
    }
}

//! From a verified catalog to store rows, with the re-export rules of issue 3.
//!
//! A v2 hub's federated manifest lists its own tools and tools it learned from other hubs
//! (re-exports: `source_hub` is another origin). The crawler already reduced each tool's
//! origin and set `via` to the peer for re-exports, and dropped tools whose origin is this
//! hub. Here, for an **admitted** (active) peer:
//!
//! - its own tools are indexed directly (`via = None`);
//! - a re-export is indexed with `via` = the peer, so admitting one peer hub brings in its
//!   whole catalog (spec §1.1);
//! - a re-export whose origin is itself an admitted peer is dropped: that peer is crawled
//!   directly and its direct entry wins (even when its own crawl failed this time, so a
//!   stale copy cannot resurrect a tool the origin withdrew);
//! - never more than one intermediate hub: a re-export that itself declares a `via` (a
//!   string naming a hub other than the peer) came through a second hub, and is dropped. Our
//!   own manifest marks re-exports the same way, so chains stop after one hop.

use std::collections::HashSet;

use aimarket_crawler::CatalogTool;
use serde_json::Value;

use crate::store::{NewCapability, normalize_origin};

/// A peer's catalog as rows to store, with what was left out.
#[derive(Debug, Default)]
pub(crate) struct Mapped {
    /// Rows for `replace_peer_catalog`.
    pub caps: Vec<NewCapability>,
    /// Re-exports dropped because their origin is an admitted peer (direct entry wins).
    pub direct_wins: usize,
    /// Re-exports dropped because they came through more than one hub.
    pub too_many_hops: usize,
}

/// Maps the tools of admitted peer `peer_origin`. `admitted` holds the origins of every
/// admitted peer (operator seeds and active peers) in origin form.
pub(crate) fn map_catalog(
    peer_origin: &str,
    tools: &[CatalogTool],
    admitted: &HashSet<String>,
) -> Mapped {
    let mut out = Mapped {
        caps: Vec::with_capacity(tools.len()),
        ..Mapped::default()
    };
    for tool in tools {
        let via = match tool.via.as_deref() {
            None => None,
            Some(_) if declares_another_hop(&tool.tool_json, peer_origin) => {
                out.too_many_hops += 1;
                continue;
            }
            Some(_) if admitted.contains(&tool.origin) => {
                out.direct_wins += 1;
                continue;
            }
            Some(_) => Some(peer_origin.to_owned()),
        };
        out.caps.push(to_row(tool, via));
    }
    out
}

/// True when the tool as served names an intermediate hub other than `peer_origin` (the
/// peer learned it through someone else). An unparsable `via` counts as another hub: the
/// chain length cannot be vouched for.
fn declares_another_hop(tool_json: &Value, peer_origin: &str) -> bool {
    match tool_json.get("via").and_then(Value::as_str).map(str::trim) {
        None | Some("") => false,
        Some(via) => normalize_origin(via).map_or(true, |origin| origin != peer_origin),
    }
}

fn to_row(tool: &CatalogTool, via: Option<String>) -> NewCapability {
    NewCapability {
        origin: tool.origin.clone(),
        via,
        product_id: tool.product_id.clone(),
        capability_id: tool.capability_id.clone(),
        name: tool.name.clone(),
        description: tool.description.clone(),
        input_schema: tool.input_schema.to_string(),
        output_schema: tool.output_schema.as_ref().map(Value::to_string),
        price_usd: tool.price_usd,
        // The crawler reports an undeclared latency as 0 ("unknown"); the store says None.
        p50_latency_ms: match tool.p50_latency_ms {
            0 => None,
            ms => Some(i64::try_from(ms).unwrap_or(i64::MAX)),
        },
        success_rate: tool.success_rate,
        invoke_url: tool.invoke_url.as_ref().map(|u| u.as_str().to_owned()),
        tool_json: tool.tool_json.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PEER: &str = "https://peer.example";

    fn tool(origin: &str, id: &str, extra: Value) -> CatalogTool {
        let mut json = json!({"name": format!("p.{id}"), "price_per_call_usd": 0.5});
        for (k, v) in extra.as_object().into_iter().flatten() {
            json[k] = v.clone();
        }
        CatalogTool {
            origin: origin.into(),
            via: (origin != PEER).then(|| PEER.to_owned()),
            product_id: "p".into(),
            capability_id: id.into(),
            name: format!("p.{id}"),
            description: "d".into(),
            input_schema: json!({"type": "object"}),
            output_schema: None,
            price_usd: 0.5,
            p50_latency_ms: 0,
            success_rate: Some(0.9),
            category: None,
            invoke_url: None,
            tool_json: json,
        }
    }

    #[test]
    fn re_export_rules() {
        let admitted: HashSet<String> =
            [PEER.to_owned(), "https://direct.example".to_owned()].into();
        let tools = vec![
            tool(PEER, "own", json!({})),
            tool("https://other.example", "re", json!({})),
            tool("https://direct.example", "dup", json!({})),
            tool(
                "https://far.example",
                "two-hops",
                json!({"via": "https://middle.example"}),
            ),
            tool(
                "https://far.example",
                "garbled",
                json!({"via": "not a url"}),
            ),
            tool(
                "https://near.example",
                "self-via",
                json!({"via": "https://peer.example/"}),
            ),
            // A declared via on the peer's own tool is meaningless: still direct.
            tool(PEER, "own-via", json!({"via": "https://middle.example"})),
        ];
        let mapped = map_catalog(PEER, &tools, &admitted);
        let rows: Vec<(&str, Option<&str>)> = mapped
            .caps
            .iter()
            .map(|c| (c.capability_id.as_str(), c.via.as_deref()))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("own", None),
                ("re", Some(PEER)),
                ("self-via", Some(PEER)),
                ("own-via", None),
            ]
        );
        assert_eq!(mapped.direct_wins, 1);
        assert_eq!(mapped.too_many_hops, 2);
    }

    #[test]
    fn row_fields() {
        let mut t = tool(PEER, "c", json!({}));
        t.p50_latency_ms = 120;
        t.output_schema = Some(json!({"type": "string"}));
        let row = to_row(&t, None);
        assert_eq!(row.p50_latency_ms, Some(120));
        assert_eq!(row.output_schema.as_deref(), Some(r#"{"type":"string"}"#));
        assert_eq!(row.input_schema, r#"{"type":"object"}"#);
        assert_eq!(row.success_rate, Some(0.9));
        let unknown = to_row(&tool(PEER, "c", json!({})), None);
        assert_eq!(unknown.p50_latency_ms, None);
        let back: Value = serde_json::from_str(&unknown.tool_json).expect("json");
        assert_eq!(back, t.tool_json);
    }
}

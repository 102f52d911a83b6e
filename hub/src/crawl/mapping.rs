//! From a verified catalog to the records to store, with the re-export rules of issue 3.
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

use std::borrow::Cow;
use std::collections::HashSet;

use aimarket_protocol::capability::Capability;

use crate::store::normalize_origin;

/// A peer's catalog as records to store, with what was left out.
#[derive(Debug, Default)]
pub(crate) struct Mapped<'a> {
    /// Records for `replace_peer_catalog`: the crawler's own records, borrowed, except where
    /// `via` had to be rewritten.
    pub caps: Vec<Cow<'a, Capability>>,
    /// Re-exports dropped because their origin is an admitted peer (direct entry wins).
    pub direct_wins: usize,
    /// Re-exports dropped because they came through more than one hub.
    pub too_many_hops: usize,
}

/// Maps the tools of admitted peer `peer_origin`. `admitted` holds the origins of every
/// admitted peer (operator seeds and active peers) in origin form.
pub(crate) fn map_catalog<'a>(
    peer_origin: &str,
    tools: &'a [Capability],
    admitted: &HashSet<String>,
) -> Mapped<'a> {
    let mut out = Mapped {
        caps: Vec::with_capacity(tools.len()),
        ..Mapped::default()
    };
    for tool in tools {
        let via = match tool.via.as_deref() {
            None => None,
            Some(_) if declares_another_hop(tool, peer_origin) => {
                out.too_many_hops += 1;
                continue;
            }
            Some(_) if admitted.contains(&tool.origin) => {
                out.direct_wins += 1;
                continue;
            }
            Some(_) => Some(peer_origin),
        };
        out.caps.push(if tool.via.as_deref() == via {
            Cow::Borrowed(tool)
        } else {
            // The crawler names the peer by its URL's origin; the store by the peer row's
            // origin form. They agree except in corner cases, which get a copy.
            Cow::Owned(Capability {
                via: via.map(str::to_owned),
                ..tool.clone()
            })
        });
    }
    out
}

/// True when the tool as served names an intermediate hub other than `peer_origin` (the
/// peer learned it through someone else). An unparsable `via` counts as another hub: the
/// chain length cannot be vouched for.
fn declares_another_hop(tool: &Capability, peer_origin: &str) -> bool {
    match tool.tool_str("via").as_deref().map(str::trim) {
        None | Some("") => false,
        Some(via) => normalize_origin(via).map_or(true, |origin| origin != peer_origin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const PEER: &str = "https://peer.example";

    fn tool(origin: &str, id: &str, extra: Value) -> Capability {
        let mut json = json!({"name": format!("p.{id}"), "price_per_call_usd": 0.5});
        for (k, v) in extra.as_object().into_iter().flatten() {
            json[k] = v.clone();
        }
        Capability {
            origin: origin.into(),
            via: (origin != PEER).then(|| PEER.to_owned()),
            product_id: "p".into(),
            capability_id: id.into(),
            name: format!("p.{id}"),
            description: "d".into(),
            input_schema: r#"{"type":"object"}"#.into(),
            output_schema: None,
            price_usd: 0.5,
            p50_latency_ms: None,
            success_rate: Some(0.9),
            invoke_url: None,
            tool_json: json.to_string(),
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
    fn records_are_borrowed_unless_via_is_rewritten() {
        let admitted: HashSet<String> = [PEER.to_owned()].into();
        let mut other_form = tool("https://other.example", "re2", json!({}));
        other_form.via = Some("https://PEER.example".into());
        let tools = vec![
            tool(PEER, "own", json!({})),
            tool("https://other.example", "re", json!({})),
            other_form,
        ];
        let mapped = map_catalog(PEER, &tools, &admitted);
        let borrowed: Vec<bool> = mapped
            .caps
            .iter()
            .map(|c| matches!(c, Cow::Borrowed(_)))
            .collect();
        assert_eq!(borrowed, [true, true, false]);
        assert_eq!(mapped.caps[2].via.as_deref(), Some(PEER));
        assert_eq!(mapped.caps[2].tool_json, tools[2].tool_json);
    }
}

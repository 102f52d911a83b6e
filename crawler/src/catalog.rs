//! What a verified peer contributes: [`VerifiedCatalog`] (its [`VerifiedPeer`] and its tools as
//! [`Capability`] records) and the per-tool extraction rules.
//!
//! Tool rules (each failure drops that tool alone and is reported in
//! [`VerifiedCatalog::rejected_tools`]):
//! - the tool must satisfy the manifest schema's tool item schema;
//! - ids: `product_id` / `capability_id` when present, else derived from `name` as
//!   `"<product_id>.<capability_id>"` (v1 style, split at the first dot);
//! - price: `price_per_call_usd`, else `price_usd`; missing, non-numeric or outside
//!   `[0, 1000]` rejects the tool (no invented default price);
//! - `p50_latency_ms`: `None` (*unknown*) when not declared or declared `0`, capped at one
//!   day; a float (real oracles declare `5.52`) is that latency rounded to whole
//!   milliseconds, at least 1;
//! - `success_rate_30d` (or `success_rate`): clamped to `[0, 1]`, `None` when not declared;
//! - origin: `source_hub` when it is a URL (reduced to its origin), else the peer itself; a
//!   `source_hub` URL that fails the URL policy rejects the tool; a tool whose origin is this
//!   hub is rejected (our own capability, re-exported back to us);
//! - `invoke_url` is kept only when it has the same origin as the tool's origin;
//! - duplicates of `(origin, product_id, capability_id)`: the last one wins, the earlier
//!   ones are reported.

use std::collections::HashMap;

use aimarket_protocol::capability::Capability;
use aimarket_protocol::schema::{SchemaKind, validate};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::url_safety::{SafeUrl, UrlPolicy};

/// Highest price a tool may declare, in USD per call.
pub const MAX_PRICE_USD: f64 = 1000.0;
/// Highest `p50_latency_ms` kept (one day); larger declarations are capped.
pub const MAX_LATENCY_MS: u64 = 86_400_000;

/// Where the key that verified the manifest came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// The key pinned for this peer (operator `URL=KEY` or an earlier trust-on-first-use).
    Pinned,
    /// The key the peer presented (well-known `signer_public_key` / manifest
    /// `signature.public_key`) with nothing pinned: a trust-on-first-use candidate that the
    /// hub may pin if its policy allows (spec §2.2, issue: operator seeds only).
    Presented,
}

/// A peer hub as described by its well-known document, after verification of its manifest.
///
/// Not the well-known's `peers[]` entry (`aimarket_protocol::types::PeerInfo`): this is what
/// the crawler learned about the peer it fetched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifiedPeer {
    /// The peer's origin, `scheme://host[:port]`: its identity.
    pub url: String,
    /// `name` from the well-known.
    pub name: String,
    /// Where the well-known was fetched.
    pub well_known_url: SafeUrl,
    /// Where the manifest was fetched (after the `/ai-market/v2/manifest` fallback, if any).
    pub manifest_url: SafeUrl,
    /// The Ed25519 key that verified the manifest (standard base64).
    pub public_key: String,
    /// Where that key came from.
    pub key_source: KeySource,
    /// Declared categories (well-known `categories`, plus the tools' `category` values),
    /// sorted, deduplicated, at most 64.
    pub categories: Vec<String>,
    /// `hub_version` from the well-known.
    pub hub_version: Option<String>,
    /// `protocol_versions` from the well-known.
    pub protocol_versions: Vec<String>,
    /// `federation.routing_fee_bps` from the well-known.
    pub routing_fee_bps: Option<u32>,
    /// `peers[].url`, each already through [`SafeUrl`] parsing and the URL policy, without
    /// the peer itself, deduplicated and capped.
    pub peers: Vec<SafeUrl>,
    /// `federation.seed_list`, same treatment.
    pub seed_list: Vec<SafeUrl>,
}

/// A tool that was dropped, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedTool {
    /// Index in the manifest's `tools` array.
    pub index: usize,
    /// `name`, when it was a string.
    pub name: Option<String>,
    /// Why it was dropped.
    pub reason: String,
}

/// A peer's catalog whose manifest signature verified, fresh and schema-checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifiedCatalog {
    /// The peer.
    pub peer: VerifiedPeer,
    /// Tools that passed every rule, in manifest order (duplicates resolved).
    pub tools: Vec<Capability>,
    /// Tools that were dropped, in manifest order.
    pub rejected_tools: Vec<RejectedTool>,
    /// Tools beyond the per-manifest limit, not examined.
    pub truncated_tools: usize,
    /// The manifest's `generated_at`.
    pub generated_at: DateTime<Utc>,
}

/// Inputs of tool extraction that do not change per tool.
pub(crate) struct ToolContext<'a> {
    pub peer: &'a SafeUrl,
    pub self_origin: Option<&'a str>,
    pub policy: UrlPolicy,
}

/// The tools of a verified manifest after the module's rules.
pub(crate) struct Extracted {
    /// Tools that passed, in manifest order (duplicates resolved).
    pub tools: Vec<Capability>,
    /// The `category` each kept tool declares, in the same order (not a column of the
    /// record: the peer's categories are collected from it).
    pub categories: Vec<Option<String>>,
    /// Tools that were dropped, in manifest order.
    pub rejected: Vec<RejectedTool>,
}

/// Extracts the tools of a verified manifest, applying the module's rules.
pub(crate) fn extract_tools(tools: Vec<Value>, ctx: &ToolContext<'_>) -> Extracted {
    let peer_origin = ctx.peer.origin();
    let mut kept: Vec<Option<(usize, Capability, Option<String>)>> =
        Vec::with_capacity(tools.len());
    let mut rejected = Vec::new();
    let mut by_key: HashMap<(String, String, String), usize> = HashMap::new();
    for (index, tool) in tools.into_iter().enumerate() {
        let name = tool.get("name").and_then(Value::as_str).map(str::to_owned);
        match extract_one(tool, &peer_origin, ctx) {
            Ok((t, category)) => {
                let key = (
                    t.origin.clone(),
                    t.product_id.clone(),
                    t.capability_id.clone(),
                );
                if let Some(prev) = by_key.insert(key, kept.len())
                    && let Some((prev_index, prev_tool, _)) = kept[prev].take()
                {
                    rejected.push(RejectedTool {
                        index: prev_index,
                        name: Some(prev_tool.name),
                        reason: format!(
                            "duplicate of tool #{index} ({}/{}); the last one is kept",
                            t.product_id, t.capability_id
                        ),
                    });
                }
                kept.push(Some((index, t, category)));
            }
            Err(reason) => rejected.push(RejectedTool {
                index,
                name,
                reason,
            }),
        }
    }
    rejected.sort_by_key(|r| r.index);
    let (tools, categories) = kept.into_iter().flatten().map(|(_, t, c)| (t, c)).unzip();
    Extracted {
        tools,
        categories,
        rejected,
    }
}

/// One tool as a record, with its declared `category`.
fn extract_one(
    tool: Value,
    peer_origin: &str,
    ctx: &ToolContext<'_>,
) -> Result<(Capability, Option<String>), String> {
    validate_tolerantly(&tool)?;
    let str_field = |k: &str| {
        tool.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    // The schema guarantees these three.
    let name = str_field("name")
        .ok_or("tool has an empty name")?
        .to_owned();
    let description = tool
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let input_schema = tool
        .get("input_schema")
        .map_or_else(|| Value::Null.to_string(), Value::to_string);

    let (product_id, capability_id) =
        ids(&name, str_field("product_id"), str_field("capability_id"))?;

    let price = tool
        .get("price_per_call_usd")
        .or_else(|| tool.get("price_usd"))
        .ok_or("tool declares no price (price_per_call_usd)")?;
    let price_usd = price.as_f64().ok_or("price is not a number")?;
    if !(0.0..=MAX_PRICE_USD).contains(&price_usd) {
        return Err(format!("price {price_usd} is outside [0, {MAX_PRICE_USD}]"));
    }

    let p50_latency_ms = match tool.get("p50_latency_ms") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(float_latency_ms))
                .ok_or("p50_latency_ms is not a non-negative number")?
                .min(MAX_LATENCY_MS),
        )
        // A declared 0 says nothing about the latency either.
        .filter(|ms| *ms != 0),
    };
    let success_rate = tool
        .get("success_rate_30d")
        .or_else(|| tool.get("success_rate"))
        .and_then(Value::as_f64)
        .map(|r| r.clamp(0.0, 1.0));

    let origin = match str_field("source_hub").and_then(|s| SafeUrl::parse(s).ok()) {
        // Not a URL (absent, or e.g. the reference's "local"): the peer's own capability.
        None => peer_origin.to_owned(),
        // The peer naming itself: already vetted (it is where we fetched from).
        Some(url) if url.origin() == peer_origin => peer_origin.to_owned(),
        Some(url) => {
            ctx.policy
                .check(&url, false)
                .map_err(|e| format!("source_hub {url} is unsafe: {e}"))?;
            url.origin()
        }
    };
    if ctx.self_origin == Some(origin.as_str()) {
        return Err("capability of this hub, re-exported back to it".to_owned());
    }
    let via = (origin != peer_origin).then(|| peer_origin.to_owned());
    let invoke_url = str_field("invoke_url")
        .and_then(|s| SafeUrl::parse(s).ok())
        .filter(|u| u.origin() == origin)
        .map(|u| u.as_str().to_owned());
    let category = str_field("category").map(str::to_owned);

    let capability = Capability {
        origin,
        via,
        product_id,
        capability_id,
        name,
        description,
        output_schema: tool.get("output_schema").map(Value::to_string),
        input_schema,
        price_usd,
        p50_latency_ms,
        success_rate,
        invoke_url,
        tool_json: tool.to_string(),
    };
    Ok((capability, category))
}

/// Explicit ids win; otherwise split the v1 `name` `"<product_id>.<capability_id>"`.
fn ids(name: &str, pid: Option<&str>, cid: Option<&str>) -> Result<(String, String), String> {
    let split = name.split_once('.');
    let pid = match (pid, split) {
        (Some(p), _) => p,
        (None, Some((p, _))) if !p.is_empty() => p,
        _ => {
            return Err(format!(
                "no product_id, and name {name:?} is not <product>.<capability>"
            ));
        }
    };
    let cid = match cid {
        Some(c) => c,
        None => match name.strip_prefix(pid).and_then(|r| r.strip_prefix('.')) {
            Some(rest) if !rest.is_empty() => rest,
            _ => match split {
                Some((_, c)) if !c.is_empty() => c,
                _ => {
                    return Err(format!(
                        "no capability_id, and none derivable from name {name:?}"
                    ));
                }
            },
        },
    };
    Ok((pid.to_owned(), cid.to_owned()))
}

/// Validates a tool against the schema, reading a fractional `p50_latency_ms` (which the
/// schema types as an integer, and real oracles send as `5.52`) as the latency it is. The
/// stored tool keeps the value as sent.
fn validate_tolerantly(tool: &Value) -> Result<(), String> {
    let fractional = tool
        .get("p50_latency_ms")
        .and_then(Value::as_f64)
        .filter(|f| *f >= 0.0 && f.fract() != 0.0);
    match fractional {
        None => validate(SchemaKind::Tool, tool),
        Some(ms) => {
            let mut copy = tool.clone();
            copy["p50_latency_ms"] = Value::from(float_latency_ms(ms));
            validate(SchemaKind::Tool, &copy)
        }
    }
    .map_err(|e| e.to_string())
}

/// A declared float latency in whole milliseconds: rounded, and never `0` (which means
/// "not declared") for a positive value; huge values saturate and are capped by the caller.
fn float_latency_ms(ms: f64) -> u64 {
    if ms <= 0.0 {
        return 0;
    }
    // `as` saturates at u64::MAX for values beyond it.
    (ms.round() as u64).max(1)
}

#[cfg(test)]
mod float_latency_tests {
    use super::float_latency_ms;

    #[test]
    fn floats_are_latencies() {
        assert_eq!(float_latency_ms(5.52), 6);
        assert_eq!(float_latency_ms(0.2), 1);
        assert_eq!(float_latency_ms(0.0), 0);
        assert_eq!(float_latency_ms(120.0), 120);
        assert_eq!(float_latency_ms(1e30), u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn ctx_for(peer: &SafeUrl) -> ToolContext<'_> {
        ToolContext {
            peer,
            self_origin: Some("https://me.example.com"),
            policy: UrlPolicy::STRICT,
        }
    }

    fn tool(extra: Value) -> Value {
        let mut t = json!({"name": "p1.cap@v1", "description": "d", "input_schema": {"type": "object"},
            "price_per_call_usd": 0.5});
        for (k, v) in extra.as_object().unwrap() {
            t[k] = v.clone();
        }
        t
    }

    #[test]
    fn ids_from_fields_or_name() {
        assert_eq!(
            ids("a.b.c", None, None).unwrap(),
            ("a".into(), "b.c".into())
        );
        assert_eq!(
            ids("x", Some("p"), Some("c")).unwrap(),
            ("p".into(), "c".into())
        );
        assert_eq!(
            ids("prod-1.translate@v2", Some("prod-1"), None).unwrap().1,
            "translate@v2"
        );
        assert_eq!(ids("other.cap", Some("prod-1"), None).unwrap().1, "cap");
        assert!(ids("noseparator", None, None).is_err());
        assert!(ids(".cap", None, None).is_err());
        assert!(ids("p.", None, None).is_err());
    }

    #[test]
    fn rules_applied_per_tool() {
        let peer = SafeUrl::parse("https://peer.example.com/.well-known/ai-market.json").unwrap();
        let tools = vec![
            tool(json!({})),                                                // 0 ok
            tool(json!({"price_per_call_usd": null})),                      // 1 bad type (schema)
            json!({"name": "p.c", "description": "d", "input_schema": {}}), // 2 no price
            tool(json!({"price_per_call_usd": 1000.5})),                    // 3 too expensive
            tool(
                json!({"name": "p2.c", "source_hub": "https://other.example.com/x", "invoke_url": "https://other.example.com/inv"}),
            ), // 4 re-export
            tool(json!({"name": "p3.c", "source_hub": "http://10.0.0.1/"})), // 5 unsafe origin
            tool(json!({"name": "p4.c", "source_hub": "https://me.example.com"})), // 6 ours
            tool(
                json!({"name": "p5.c", "source_hub": "local", "invoke_url": "https://evil.example.com/x",
                "success_rate": 7.0, "p50_latency_ms": 120}),
            ), // 7 local; invoke dropped
            tool(json!({"description": "second", "p50_latency_ms": 5.52})), // 8 duplicate of 0
            json!("not an object"),                                         // 9 schema
        ];
        let Extracted {
            tools: kept,
            categories,
            rejected,
        } = extract_tools(tools, &ctx_for(&peer));
        let rejected_idx: Vec<usize> = rejected.iter().map(|r| r.index).collect();
        assert_eq!(rejected_idx, vec![0, 1, 2, 3, 5, 6, 9], "{rejected:#?}");
        assert!(
            rejected[0].reason.contains("duplicate of tool #8"),
            "{}",
            rejected[0].reason
        );
        assert!(rejected[2].reason.contains("no price"));
        assert!(rejected[3].reason.contains("outside"));
        assert!(rejected[4].reason.contains("unsafe"));
        assert_eq!(kept.len(), 3);
        let re = &kept[0];
        assert_eq!(re.origin, "https://other.example.com");
        assert_eq!(re.via.as_deref(), Some("https://peer.example.com"));
        assert_eq!(
            re.invoke_url.as_deref(),
            Some("https://other.example.com/inv")
        );
        let local = &kept[1];
        assert_eq!(local.origin, "https://peer.example.com");
        assert_eq!(local.via, None);
        assert_eq!(local.invoke_url, None);
        assert_eq!(local.success_rate, Some(1.0));
        assert_eq!(local.p50_latency_ms, Some(120));
        assert_eq!(kept[2].description, "second");
        assert_eq!(
            kept[2].p50_latency_ms,
            Some(6),
            "a float latency is that latency"
        );
        assert_eq!(kept[2].success_rate, None);
        let served: Value = serde_json::from_str(&kept[2].tool_json).unwrap();
        assert_eq!(served["description"], "second");
        assert_eq!(served["p50_latency_ms"], 5.52, "the tool is kept as served");
        assert_eq!(kept[2].input_schema, r#"{"type":"object"}"#);
        assert_eq!(categories, [None, None, None]);
    }

    #[test]
    fn latency_zero_is_unknown_and_categories_follow_the_tools() {
        let peer = SafeUrl::parse("https://peer.example.com/").unwrap();
        let tools = vec![
            tool(json!({"name": "a.c", "p50_latency_ms": 0, "category": "nlp"})),
            tool(json!({"name": "b.c", "category": ""})),
            tool(json!({"name": "c.c", "p50_latency_ms": 90_000_000_u64,
                "output_schema": {"type": "string"}})),
        ];
        let out = extract_tools(tools, &ctx_for(&peer));
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        let latencies: Vec<Option<u64>> = out.tools.iter().map(|t| t.p50_latency_ms).collect();
        assert_eq!(latencies, [None, None, Some(MAX_LATENCY_MS)]);
        assert_eq!(out.categories, [Some("nlp".to_owned()), None, None]);
        assert_eq!(
            out.tools[2].output_schema.as_deref(),
            Some(r#"{"type":"string"}"#)
        );
        assert_eq!(out.tools[0].output_schema, None);
    }
}

//! The webhook wire protocol: what the hub POSTs and what it accepts back. Documented with
//! examples in `plugins/README.md`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::HookError;
use crate::view::{Candidate, Decision, InvokeView, Provider, SearchQueryView, UpstreamPayment};

/// Fields common to every webhook request.
#[derive(Debug, Serialize)]
pub struct Envelope<'a, T> {
    /// `rank` or `before_invoke`.
    pub hook: &'static str,
    /// The hub's request id.
    pub request_id: &'a str,
    /// The client, if known.
    pub client_id: Option<&'a str>,
    /// The hub's public URL.
    pub hub: &'a str,
    /// Hook-specific payload, flattened into the envelope.
    #[serde(flatten)]
    pub body: T,
}

/// `rank` payload.
#[derive(Debug, Serialize)]
pub struct RankBody<'a> {
    /// The search query.
    pub query: &'a SearchQueryView,
    /// The candidates, in current order.
    pub candidates: Vec<WireCandidate<'a>>,
}

/// One candidate on the wire.
#[derive(Debug, Serialize)]
pub struct WireCandidate<'a> {
    pub key: &'a str,
    pub product_id: &'a str,
    pub capability_id: &'a str,
    pub origin: &'a str,
    pub source_hub_name: &'a str,
    pub via: Option<&'a str>,
    pub bm25: f32,
    pub score: f64,
    pub price_usd: f64,
    pub routed_price_usd: f64,
    pub p50_latency_ms: u64,
    pub trust_score: f64,
    pub success_rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<&'a Value>,
}

impl<'a> WireCandidate<'a> {
    /// The wire view of a candidate.
    pub fn new(c: &'a Candidate, include_tool: bool) -> Self {
        Self {
            key: &c.key,
            product_id: &c.product_id,
            capability_id: &c.capability_id,
            origin: &c.origin,
            source_hub_name: &c.source_hub_name,
            via: c.via.as_deref(),
            // JSON has no NaN; a non-finite score would make the body unserialisable.
            bm25: if c.bm25.is_finite() { c.bm25 } else { 0.0 },
            score: if c.score.is_finite() { c.score } else { 0.0 },
            price_usd: c.price_usd,
            routed_price_usd: c.routed_price_usd,
            p50_latency_ms: c.p50_latency_ms,
            trust_score: c.trust_score,
            success_rate: c.success_rate,
            tool: include_tool.then_some(&*c.tool),
        }
    }
}

/// `before_invoke` payload.
#[derive(Debug, Serialize)]
pub struct BeforeInvokeBody<'a> {
    /// The attempt.
    pub invoke: WireInvoke<'a>,
}

/// The invoke on the wire.
#[derive(Debug, Serialize)]
pub struct WireInvoke<'a> {
    pub product_id: &'a str,
    pub capability_id: &'a str,
    pub source_hub: Option<&'a str>,
    pub max_price_usd: Option<f64>,
    pub attempt: u32,
    pub upstream_payment: UpstreamPayment,
    pub provider: &'a Provider,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a Value>,
}

impl<'a> WireInvoke<'a> {
    /// The wire view of an attempt.
    pub fn new(req: &'a InvokeView, include_input: bool) -> Self {
        Self {
            product_id: &req.product_id,
            capability_id: &req.capability_id,
            source_hub: req.source_hub.as_deref(),
            max_price_usd: req.max_price_usd,
            attempt: req.attempt,
            upstream_payment: req.upstream_payment,
            provider: &req.provider,
            input: include_input.then_some(&*req.input),
        }
    }
}

/// Reply to `rank`. All fields optional; unknown fields are an error (typos must not pass
/// silently).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RankReply {
    /// Keys in the wanted order; unlisted candidates follow in their previous order.
    #[serde(default)]
    pub order: Option<Vec<String>>,
    /// New scores by key.
    #[serde(default)]
    pub scores: Option<BTreeMap<String, f64>>,
    /// Keys to remove.
    #[serde(default)]
    pub drop: Option<Vec<String>>,
}

impl RankReply {
    /// Applies the reply: drop, then rescore, then reorder (by `order` when given, else by
    /// the new scores when given). Unknown keys are ignored.
    pub fn apply(self, candidates: &mut Vec<Candidate>) {
        if let Some(drop) = &self.drop {
            let drop: HashSet<&str> = drop.iter().map(String::as_str).collect();
            candidates.retain(|c| !drop.contains(&*c.key));
        }
        if let Some(scores) = &self.scores {
            for c in candidates.iter_mut() {
                if let Some(s) = scores.get(&*c.key) {
                    c.score = *s;
                }
            }
        }
        if let Some(order) = &self.order {
            let mut position: HashMap<&str, usize> = HashMap::with_capacity(order.len());
            for (i, key) in order.iter().enumerate() {
                position.entry(key.as_str()).or_insert(i);
            }
            // Stable: unlisted candidates keep their relative order after the listed ones.
            candidates.sort_by_key(|c| position.get(&*c.key).copied().unwrap_or(usize::MAX));
        } else if self.scores.is_some() {
            candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        }
    }
}

/// Reply to `before_invoke`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DecisionReply {
    /// `allow` or `block`.
    pub decision: String,
    /// Block category (default `webhook_block`).
    #[serde(default)]
    pub category: Option<String>,
    /// Block reason (default `blocked by webhook`).
    #[serde(default)]
    pub reason: Option<String>,
}

impl DecisionReply {
    /// The decision, or an error for an unknown `decision`.
    pub fn into_decision(self) -> Result<Decision, HookError> {
        match self.decision.as_str() {
            "allow" => Ok(Decision::Allow),
            "block" => Ok(Decision::block(
                self.category.unwrap_or_else(|| "webhook_block".into()),
                self.reason.unwrap_or_else(|| "blocked by webhook".into()),
            )),
            other => Err(HookError::new(format!(
                "webhook decision must be \"allow\" or \"block\", got {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::view::fixtures::candidate;
    use serde_json::json;

    fn keys(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| &*c.key).collect()
    }

    fn list() -> Vec<Candidate> {
        ["a", "b", "c", "d"]
            .iter()
            .map(|k| candidate(k, 1.0))
            .collect()
    }

    #[test]
    fn order_drop_and_scores() {
        let mut l = list();
        let reply: RankReply = serde_json::from_value(json!({
            "order": ["c", "zzz", "a", "c"], "drop": ["b"], "scores": {"c": 9.5}
        }))
        .unwrap();
        reply.apply(&mut l);
        assert_eq!(keys(&l), vec!["c", "a", "d"]);
        assert_eq!(l[0].score, 9.5);
    }

    #[test]
    fn scores_alone_sort_and_empty_reply_changes_nothing() {
        let mut l = list();
        let reply: RankReply =
            serde_json::from_value(json!({"scores": {"d": 5.0, "b": 3.0}})).unwrap();
        reply.apply(&mut l);
        assert_eq!(keys(&l), vec!["d", "b", "a", "c"]);
        let mut l2 = list();
        RankReply::default().apply(&mut l2);
        assert_eq!(keys(&l2), vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert!(serde_json::from_value::<RankReply>(json!({"ordr": []})).is_err());
        assert!(serde_json::from_value::<RankReply>(json!({"scores": {"a": "x"}})).is_err());
        let d: DecisionReply = serde_json::from_value(json!({"decision": "maybe"})).unwrap();
        assert!(d.into_decision().is_err());
        let b: DecisionReply = serde_json::from_value(json!({"decision": "block"})).unwrap();
        assert_eq!(
            b.into_decision().unwrap(),
            Decision::block("webhook_block", "blocked by webhook")
        );
    }

    #[test]
    fn rank_request_shape() {
        let q = SearchQueryView {
            intent: "translate".into(),
            limit: 20,
            ..SearchQueryView::default()
        };
        let c = candidate("a", 2.0);
        let body = Envelope {
            hook: "rank",
            request_id: "r1",
            client_id: None,
            hub: "https://hub.example",
            body: RankBody {
                query: &q,
                candidates: vec![WireCandidate::new(&c, false)],
            },
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["hook"], "rank");
        assert_eq!(v["query"]["intent"], "translate");
        assert_eq!(v["candidates"][0]["key"], "a");
        assert!(v["candidates"][0].get("tool").is_none());
    }
}

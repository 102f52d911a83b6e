//! A pipeline request parsed at the edge into typed values, and its DAG checked (unique ids,
//! known dependencies, no cycle) before anything is looked up, held or called.
//!
//! Body: `{channel_id?, channel_secret?, max_total_usd?, nodes: [{id, product_id?,
//! capability_id, source_hub?, input?, input_from?, depends_on?}]}`.
//!
//! `input_from` maps an input field to an earlier node's output: `{"text": "a/echo/text"}`
//! takes the value at JSON pointer `/echo/text` of node `a`'s `result`; `"a"` alone takes
//! the whole result; the object form `{"node": "a", "pointer": "/echo/text"}` says the same.
//! Mapped fields override literal `input` fields of the same name. A node named in
//! `input_from` is a dependency even when `depends_on` leaves it out.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::PipelineError;
use crate::payments::usd_to_micros;

/// Most nodes in one pipeline (each is a routed call; bigger DAGs are a job queue's work).
pub const MAX_NODES: usize = 32;
/// Longest node id.
pub const MAX_NODE_ID_CHARS: usize = 64;

/// Where a mapped input field comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Index of the producing node.
    pub node: usize,
    /// JSON pointer into that node's `result` (`""` is the whole result).
    pub pointer: String,
}

/// One node, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// The node id (unique in the pipeline).
    pub id: String,
    /// The invoke body without `input`: `product_id?`, `capability_id`, `source_hub?`.
    pub call: Map<String, Value>,
    /// Product id, when given.
    pub product_id: Option<String>,
    /// Capability id.
    pub capability_id: String,
    /// The owning hub asked for, when given.
    pub source_hub: Option<String>,
    /// Literal input fields.
    pub input: Map<String, Value>,
    /// Mapped input fields, in declaration order.
    pub input_from: Vec<(String, Source)>,
    /// Indices of the nodes this one waits for (explicit and implied by `input_from`).
    pub depends_on: Vec<usize>,
}

/// A validated pipeline: nodes plus a topological order.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSpec {
    /// The nodes as declared.
    pub nodes: Vec<NodeSpec>,
    /// Node indices in an order where every dependency comes first (declaration order
    /// among independent nodes).
    pub order: Vec<usize>,
    /// The channel that pays for the run (body `channel_id`; the header wins when both).
    pub channel_id: Option<String>,
    /// The channel secret from the body, if sent there.
    pub channel_secret: Option<String>,
    /// The whole run's budget in micro-USD.
    pub max_total_micros: Option<i64>,
    /// SHA-256 hex of the compact sorted body (the idempotency fingerprint).
    pub fingerprint: String,
}

fn bad(detail: impl Into<String>) -> PipelineError {
    PipelineError::Invalid {
        node: None,
        detail: detail.into(),
    }
}

fn bad_node(node: &str, detail: impl Into<String>) -> PipelineError {
    PipelineError::Invalid {
        node: Some(node.to_owned()),
        detail: detail.into(),
    }
}

fn opt_string(
    m: &Map<String, Value>,
    key: &str,
    node: &str,
) -> Result<Option<String>, PipelineError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(bad_node(node, format!("`{key}` must be a string"))),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_NODE_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `"a/echo/text"` → (`a`, `/echo/text`); `{"node", "pointer"}` likewise.
fn parse_source(v: &Value, node: &str, field: &str) -> Result<(String, String), PipelineError> {
    let (from, pointer) = match v {
        Value::String(s) => match s.split_once('/') {
            Some((n, rest)) => (n.to_owned(), format!("/{rest}")),
            None => (s.clone(), String::new()),
        },
        Value::Object(o) => {
            let n = o.get("node").and_then(Value::as_str).unwrap_or_default();
            let p = match o.get("pointer") {
                None | Some(Value::Null) => "",
                Some(Value::String(p)) => p.as_str(),
                Some(_) => {
                    return Err(bad_node(
                        node,
                        format!("`input_from.{field}.pointer` must be a string"),
                    ));
                }
            };
            (n.to_owned(), p.to_owned())
        }
        _ => {
            return Err(bad_node(
                node,
                format!("`input_from.{field}` must be \"node/json/pointer\" or {{node, pointer}}"),
            ));
        }
    };
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(bad_node(
            node,
            format!("`input_from.{field}`: a JSON pointer starts with `/`"),
        ));
    }
    Ok((from, pointer))
}

impl PipelineSpec {
    /// Parses and checks a pipeline body: shapes, ids, references, cycles and the budget.
    /// Capabilities, prices and input schemas are checked against the catalog later
    /// ([`super::plan`]).
    pub fn from_value(body: &Value) -> Result<Self, PipelineError> {
        let m = body
            .as_object()
            .ok_or_else(|| bad("the body must be a JSON object"))?;
        let nodes_v = match m.get("nodes") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(bad("`nodes` must be an array")),
            None => return Err(bad("`nodes` is required")),
        };
        if nodes_v.is_empty() {
            return Err(bad("`nodes` must not be empty"));
        }
        if nodes_v.len() > MAX_NODES {
            return Err(bad(format!("at most {MAX_NODES} nodes per pipeline")));
        }
        // First pass: ids, so that references can be resolved in any declaration order.
        let mut ids: Vec<String> = Vec::with_capacity(nodes_v.len());
        for (i, n) in nodes_v.iter().enumerate() {
            let id = n
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("node {i}: `id` (a string) is required")))?;
            if !valid_id(id) {
                return Err(bad(format!(
                    "node {i}: `id` must be 1 to {MAX_NODE_ID_CHARS} of A-Z a-z 0-9 _ - ."
                )));
            }
            if ids.iter().any(|x| x == id) {
                return Err(bad_node(id, "duplicate node id"));
            }
            ids.push(id.to_owned());
        }
        let index = |id: &str, node: &str, what: &str| {
            ids.iter()
                .position(|x| x == id)
                .ok_or_else(|| bad_node(node, format!("{what} names unknown node `{id}`")))
        };
        let mut nodes = Vec::with_capacity(nodes_v.len());
        for (i, n) in nodes_v.iter().enumerate() {
            let id = ids[i].clone();
            let o = n
                .as_object()
                .ok_or_else(|| bad_node(&id, "a node must be an object"))?;
            let capability_id = opt_string(o, "capability_id", &id)?
                .ok_or_else(|| bad_node(&id, "`capability_id` is required"))?;
            let product_id = opt_string(o, "product_id", &id)?;
            let source_hub = opt_string(o, "source_hub", &id)?;
            let input = match o.get("input") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => return Err(bad_node(&id, "`input` must be an object")),
            };
            let mut depends_on = Vec::new();
            match o.get("depends_on") {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) => {
                    for d in a {
                        let d = d
                            .as_str()
                            .ok_or_else(|| bad_node(&id, "`depends_on` must list node ids"))?;
                        depends_on.push(index(d, &id, "`depends_on`")?);
                    }
                }
                Some(_) => return Err(bad_node(&id, "`depends_on` must be an array")),
            }
            let mut input_from = Vec::new();
            match o.get("input_from") {
                None | Some(Value::Null) => {}
                Some(Value::Object(map)) => {
                    for (field, v) in map {
                        let (from, pointer) = parse_source(v, &id, field)?;
                        let from = index(&from, &id, "`input_from`")?;
                        depends_on.push(from);
                        input_from.push((
                            field.clone(),
                            Source {
                                node: from,
                                pointer,
                            },
                        ));
                    }
                }
                Some(_) => return Err(bad_node(&id, "`input_from` must be an object")),
            }
            if depends_on.contains(&i) {
                return Err(bad_node(&id, "a node cannot depend on itself"));
            }
            depends_on.sort_unstable();
            depends_on.dedup();
            let mut call = Map::new();
            call.insert("capability_id".into(), Value::from(capability_id.clone()));
            if let Some(p) = &product_id {
                call.insert("product_id".into(), Value::from(p.clone()));
            }
            if let Some(h) = &source_hub {
                call.insert("source_hub".into(), Value::from(h.clone()));
            }
            nodes.push(NodeSpec {
                id,
                call,
                product_id,
                capability_id,
                source_hub,
                input,
                input_from,
                depends_on,
            });
        }
        let order = topological_order(&nodes)?;
        let max_total_micros = match m.get("max_total_usd") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| bad("`max_total_usd` must be a number"))
                    .and_then(|usd| {
                        usd_to_micros(usd).map_err(|e| bad(format!("`max_total_usd`: {e}")))
                    })?,
            ),
        };
        let text = |key: &str| match m.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
            None | Some(Value::Null) | Some(Value::String(_)) => Ok(None),
            Some(_) => Err(bad(format!("`{key}` must be a string"))),
        };
        let canonical = aimarket_protocol::canonical::to_canonical_vec(
            body,
            aimarket_protocol::canonical::Style::Compact,
        );
        Ok(Self {
            nodes,
            order,
            channel_id: text("channel_id")?,
            channel_secret: text("channel_secret")?,
            max_total_micros,
            fingerprint: format!("pipeline:{}", hex::encode(Sha256::digest(&canonical))),
        })
    }

    /// Indices of the nodes that depend, directly or not, on `node`.
    pub fn dependents_of(&self, node: usize) -> Vec<usize> {
        let mut out = Vec::new();
        // `order` puts every dependency first, so one pass in order finds the closure.
        for &i in &self.order {
            if self.nodes[i]
                .depends_on
                .iter()
                .any(|d| *d == node || out.contains(d))
            {
                out.push(i);
            }
        }
        out
    }

    /// The node whose result is the pipeline's `final_result`: the last sink (a node no
    /// other depends on) in topological order.
    pub fn final_node(&self) -> usize {
        let is_dep = |i: usize| self.nodes.iter().any(|n| n.depends_on.contains(&i));
        self.order
            .iter()
            .rev()
            .copied()
            .find(|&i| !is_dep(i))
            .unwrap_or(self.order[self.order.len() - 1])
    }
}

/// Kahn's algorithm, taking ready nodes in declaration order; a cycle is a 400 naming the
/// nodes on it.
fn topological_order(nodes: &[NodeSpec]) -> Result<Vec<usize>, PipelineError> {
    let mut indegree: Vec<usize> = nodes.iter().map(|n| n.depends_on.len()).collect();
    let mut done = vec![false; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    // At most one node is settled per round, so `nodes.len()` rounds bound the loop.
    for _ in 0..nodes.len() {
        let Some(next) = (0..nodes.len()).find(|&i| !done[i] && indegree[i] == 0) else {
            break;
        };
        done[next] = true;
        order.push(next);
        for (i, n) in nodes.iter().enumerate() {
            if n.depends_on.contains(&next) {
                indegree[i] -= 1;
            }
        }
    }
    if order.len() < nodes.len() {
        let stuck: Vec<&str> = (0..nodes.len())
            .filter(|&i| !done[i])
            .map(|i| nodes[i].id.as_str())
            .collect();
        return Err(bad(format!("the nodes form a cycle: {}", stuck.join(", "))));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn node(id: &str) -> Value {
        json!({"id": id, "capability_id": "echo@v1", "input": {"text": id}})
    }

    #[test]
    fn diamond_orders_dependencies_first_and_maps_inputs() {
        let spec = PipelineSpec::from_value(&json!({"nodes": [
            {"id": "d", "capability_id": "c", "input_from": {"x": "b/echo/text", "y": "c"}},
            node("a"),
            {"id": "b", "capability_id": "c", "depends_on": ["a"]},
            {"id": "c", "capability_id": "c",
             "input_from": {"t": {"node": "a", "pointer": "/echo"}}},
        ], "max_total_usd": 0.5}))
        .unwrap();
        assert_eq!(spec.order, vec![1, 2, 3, 0]);
        assert_eq!(spec.nodes[0].depends_on, vec![2, 3]);
        assert_eq!(
            spec.nodes[0].input_from[0].1,
            Source {
                node: 2,
                pointer: "/echo/text".into()
            }
        );
        assert_eq!(spec.nodes[0].input_from[1].1.pointer, "");
        assert_eq!(spec.max_total_micros, Some(500_000));
        assert_eq!(spec.final_node(), 0);
        assert_eq!(spec.dependents_of(1), vec![2, 3, 0]);
        assert_eq!(spec.dependents_of(2), vec![0]);
    }

    #[test]
    fn bad_graphs_are_refused() {
        for (body, needle) in [
            (json!({"nodes": []}), "empty"),
            (json!({"nodes": [node("a"), node("a")]}), "duplicate"),
            (
                json!({"nodes": [{"id": "a", "capability_id": "c", "depends_on": ["zz"]}]}),
                "unknown node",
            ),
            (
                json!({"nodes": [{"id": "a", "capability_id": "c", "depends_on": ["b"]},
                              {"id": "b", "capability_id": "c", "depends_on": ["a"]}]}),
                "cycle",
            ),
            (
                json!({"nodes": [{"id": "a", "capability_id": "c", "depends_on": ["a"]}]}),
                "itself",
            ),
            (
                json!({"nodes": [{"id": "a b", "capability_id": "c"}]}),
                "`id`",
            ),
            (json!({"nodes": [{"id": "a"}]}), "capability_id"),
            (
                json!({"nodes": [node("a")], "max_total_usd": -1}),
                "max_total_usd",
            ),
            (
                json!({"nodes": [{"id": "a", "capability_id": "c", "input_from": {"x": 3}}]}),
                "input_from",
            ),
            (json!([1]), "object"),
        ] {
            let e = PipelineSpec::from_value(&body).unwrap_err();
            assert!(e.to_string().contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn the_fingerprint_ignores_key_order() {
        let a =
            PipelineSpec::from_value(&json!({"nodes": [node("a")], "max_total_usd": 1})).unwrap();
        let b =
            PipelineSpec::from_value(&json!({"max_total_usd": 1, "nodes": [node("a")]})).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
    }
}

//! Runs a planned pipeline: nodes start as soon as their dependencies succeeded (at most
//! [`MAX_PARALLEL_NODES`] at a time), each one a routed invoke through
//! [`crate::invoke::invoke`] with the buyer's channel headers, so rails, plugins, receipts,
//! failover and holds are those of a single invoke.
//!
//! Budget: before a node starts it is granted its planned price plus whatever slack the
//! budget still has after the money spent, the grants of running nodes and the planned
//! prices of nodes not yet started; the grant is its invoke's `max_price_usd`, so the sum of
//! what the run is charged never exceeds `max_total_usd` (an invoke compares in whole
//! micro-dollars and a channel-funded failover keeps the held amount).
//!
//! After the first failure no further node starts: dependents are skipped and so is every
//! node not yet started, so nothing more is charged; nodes already running finish.

use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::plan::Plan;
use super::spec::PipelineSpec;
use crate::invoke::InvokeDeps;
use crate::invoke::{BuyerHeaders, Caller, InvokeCall, InvokeRequest};
use crate::payments::{micros_to_usd, usd_to_micros};

/// Nodes in flight at once within one run.
pub const MAX_PARALLEL_NODES: usize = 4;

/// Where a node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Succeeded.
    Ran,
    /// Called (or its input could not be built) and failed; charged nothing.
    Failed,
    /// Never called.
    Skipped,
}

impl NodeStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ran => "ran",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// One node's outcome.
#[derive(Debug, Clone)]
pub struct NodeOutcome {
    /// Where it ended.
    pub status: NodeStatus,
    /// The invoke's HTTP status (0 when never called).
    pub http_status: u16,
    /// What the buyer was charged, micro-USD.
    pub price_micros: i64,
    /// Wall time of the call, ms.
    pub latency_ms: u64,
    /// The provider that served it (the answer's `source_hub`, else the planned one).
    pub provider: String,
    /// The capability's `result` on success.
    pub result: Value,
    /// The provider's receipt (passed through).
    pub receipt: Value,
    /// This hub's routing receipt.
    pub routing_receipt: Value,
    /// Why it failed or was skipped.
    pub error: Option<Value>,
}

impl NodeOutcome {
    fn skipped(provider: &str, why: &str) -> Self {
        Self {
            status: NodeStatus::Skipped,
            http_status: 0,
            price_micros: 0,
            latency_ms: 0,
            provider: provider.to_owned(),
            result: Value::Null,
            receipt: Value::Null,
            routing_receipt: Value::Null,
            error: Some(json!({"error": "skipped", "detail": why})),
        }
    }

    fn failed_before_call(provider: &str, code: &str, detail: String) -> Self {
        Self {
            status: NodeStatus::Failed,
            error: Some(json!({"error": code, "detail": detail})),
            ..Self::skipped(provider, "")
        }
    }
}

/// The buyer as the transport saw it: the headers every node invoke gets, and the caller.
#[derive(Debug, Clone)]
pub struct Buyer {
    /// Channel, API key and trace headers (never `X-Payment`: one channel pays the run).
    pub headers: BuyerHeaders,
    /// The caller's address and API key.
    pub caller: Caller,
}

/// The budget bookkeeping of one run (see the module docs).
struct Budget {
    limit: Option<i64>,
    spent: i64,
    granted: i64,
    planned_waiting: i64,
}

impl Budget {
    /// The grant of a node planned at `planned`; `None` without a budget.
    fn grant(&mut self, planned: i64) -> Option<i64> {
        self.planned_waiting -= planned;
        let limit = self.limit?;
        let grant = (limit - self.spent - self.granted - self.planned_waiting).max(0);
        self.granted += grant;
        Some(grant)
    }

    fn finish(&mut self, grant: Option<i64>, charged: i64) {
        self.granted -= grant.unwrap_or(0);
        self.spent += charged;
    }
}

/// Builds node `i`'s input: literal fields, then mapped fields from finished nodes.
fn node_input(
    spec: &PipelineSpec,
    i: usize,
    outcomes: &[Option<NodeOutcome>],
) -> Result<Value, String> {
    let node = &spec.nodes[i];
    let mut input: Map<String, Value> = node.input.clone();
    for (field, source) in &node.input_from {
        let from = &spec.nodes[source.node].id;
        let result = outcomes[source.node]
            .as_ref()
            .map(|o| &o.result)
            .ok_or_else(|| format!("node `{from}` has no result"))?;
        let value = result.pointer(&source.pointer).ok_or_else(|| {
            format!(
                "`input_from.{field}`: node `{from}`'s result has nothing at `{}`",
                source.pointer
            )
        })?;
        input.insert(field.clone(), value.clone());
    }
    Ok(Value::Object(input))
}

/// Idempotency key of one node of a keyed run: a retry of the run (after a crash) replays
/// the nodes that already succeeded instead of charging them again.
fn node_key(run_key: &str, node_id: &str) -> String {
    let digest = hex::encode(Sha256::digest(run_key.as_bytes()));
    format!("pl-{}-{node_id}", &digest[..24])
}

/// One node through the routed invoke.
async fn call_node(
    deps: &InvokeDeps<'_>,
    spec: &PipelineSpec,
    plan: &Plan,
    buyer: &Buyer,
    i: usize,
    input: Value,
    grant: Option<i64>,
) -> NodeOutcome {
    let node = &spec.nodes[i];
    let planned = &plan.nodes[i];
    let mut body = node.call.clone();
    body.insert("product_id".into(), Value::from(planned.product_id.clone()));
    body.insert("input".into(), input);
    if let Some(g) = grant {
        body.insert("max_price_usd".into(), json!(micros_to_usd(g)));
    }
    let mut headers = buyer.headers.clone();
    headers.idempotency_key = buyer
        .headers
        .idempotency_key
        .as_deref()
        .map(|k| node_key(k, &node.id));
    let own_origin = deps.invoker.own_origin();
    let request = match InvokeRequest::from_value(Value::Object(body), own_origin) {
        Ok(r) => r,
        Err(e) => {
            return NodeOutcome::failed_before_call(
                &planned.provider,
                "bad_request",
                e.to_string(),
            );
        }
    };
    let started = Instant::now();
    let result = crate::invoke::invoke(
        deps,
        InvokeCall::new(request, headers, buyer.caller.clone()),
    )
    .await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let answer = result.json();
    let ok = (200..300).contains(&result.status)
        && answer.get("success").and_then(Value::as_bool) != Some(false);
    let provider = answer
        .get("source_hub")
        .and_then(Value::as_str)
        .unwrap_or(&planned.provider)
        .to_owned();
    if !ok {
        let mut error = json!({
            "error": answer.get("error").cloned().unwrap_or_else(|| Value::from("provider_error")),
            "http_status": result.status,
        });
        if let Some(detail) = answer.get("detail").or_else(|| answer.get("reason")) {
            error["detail"] = detail.clone();
        }
        return NodeOutcome {
            status: NodeStatus::Failed,
            http_status: result.status,
            price_micros: 0,
            latency_ms,
            provider,
            result: Value::Null,
            receipt: answer.get("receipt").cloned().unwrap_or(Value::Null),
            routing_receipt: answer
                .get("routing_receipt")
                .cloned()
                .unwrap_or(Value::Null),
            error: Some(error),
        };
    }
    NodeOutcome {
        status: NodeStatus::Ran,
        http_status: result.status,
        price_micros: answer
            .get("price_usd")
            .and_then(Value::as_f64)
            .and_then(|p| usd_to_micros(p).ok())
            .unwrap_or(0),
        latency_ms: answer
            .get("latency_ms")
            .and_then(Value::as_f64)
            .map_or(latency_ms, |l| l.max(0.0) as u64),
        provider,
        result: answer.get("result").cloned().unwrap_or(Value::Null),
        receipt: answer.get("receipt").cloned().unwrap_or(Value::Null),
        routing_receipt: answer
            .get("routing_receipt")
            .cloned()
            .unwrap_or(Value::Null),
        error: None,
    }
}

/// Runs every node; returns one outcome per node in declaration order.
pub async fn execute(
    deps: &InvokeDeps<'_>,
    spec: &PipelineSpec,
    plan: &Plan,
    buyer: &Buyer,
) -> Vec<NodeOutcome> {
    let n = spec.nodes.len();
    let mut outcomes: Vec<Option<NodeOutcome>> = vec![None; n];
    let mut started = vec![false; n];
    let mut stopped = false;
    let mut budget = Budget {
        limit: spec.max_total_micros,
        spent: 0,
        granted: 0,
        planned_waiting: plan.total_micros,
    };
    let mut running = FuturesUnordered::new();
    // Each round settles at least one node (or ends the run), so n + 1 rounds suffice.
    for _ in 0..=n {
        if !stopped {
            for &i in &spec.order {
                if running.len() >= MAX_PARALLEL_NODES {
                    break;
                }
                let ready = !started[i]
                    && spec.nodes[i].depends_on.iter().all(|d| {
                        outcomes[*d]
                            .as_ref()
                            .is_some_and(|o| o.status == NodeStatus::Ran)
                    });
                if !ready {
                    continue;
                }
                started[i] = true;
                match node_input(spec, i, &outcomes) {
                    Ok(input) => {
                        let grant = budget.grant(plan.nodes[i].price_micros);
                        running.push(async move {
                            (
                                i,
                                grant,
                                call_node(deps, spec, plan, buyer, i, input, grant).await,
                            )
                        });
                    }
                    Err(detail) => {
                        budget.planned_waiting -= plan.nodes[i].price_micros;
                        outcomes[i] = Some(NodeOutcome::failed_before_call(
                            &plan.nodes[i].provider,
                            "input_unresolved",
                            detail,
                        ));
                        stopped = true;
                        break;
                    }
                }
            }
        }
        let Some((i, grant, outcome)) = running.next().await else {
            break;
        };
        budget.finish(grant, outcome.price_micros);
        if outcome.status != NodeStatus::Ran {
            stopped = true;
        }
        outcomes[i] = Some(outcome);
    }
    let failed: Vec<bool> = outcomes
        .iter()
        .map(|o| o.as_ref().is_none_or(|o| o.status != NodeStatus::Ran))
        .collect();
    let failed = |i: usize| failed[i];
    outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            o.unwrap_or_else(|| {
                let why = if spec.nodes[i]
                    .depends_on
                    .iter()
                    .any(|d| !started[*d] || failed(*d))
                {
                    "a node it depends on failed or was skipped"
                } else {
                    "not started: the run stopped after a failure"
                };
                NodeOutcome::skipped(&plan.nodes[i].provider, why)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grants_never_add_up_to_more_than_the_budget() {
        // Two nodes planned at 30 and 40 under a budget of 100: the first takes the slack.
        let mut b = Budget {
            limit: Some(100),
            spent: 0,
            granted: 0,
            planned_waiting: 70,
        };
        let g1 = b.grant(30).unwrap();
        let g2 = b.grant(40).unwrap();
        assert_eq!((g1, g2), (60, 40));
        assert!(g1 + g2 <= 100);
        b.finish(Some(g1), 35);
        b.finish(Some(g2), 40);
        assert_eq!((b.spent, b.granted), (75, 0));
        let mut free = Budget {
            limit: None,
            spent: 0,
            granted: 0,
            planned_waiting: 5,
        };
        assert_eq!(free.grant(5), None);
    }

    #[test]
    fn node_keys_are_short_and_distinct() {
        let a = node_key(&"k".repeat(255), "a");
        assert!(a.len() < 100);
        assert_ne!(a, node_key("k", "a"));
        assert_ne!(node_key("k", "a"), node_key("k", "b"));
    }
}

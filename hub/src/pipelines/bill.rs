//! The bill of materials and the answer of a run.
//!
//! The bill `{kind: "pipeline_bill", trace_id, hub, steps: [...], total_usd, total_micros,
//! max_total_usd, created_at, signer_public_key, signature}` is signed with the hub key over
//! the whole-document canonical of [`aimarket_protocol::signing::sign_document`]: the
//! compact sorted JSON of the bill without its top-level `signature`. `aimarket-hub verify`
//! recognises it (`trace_id` + `steps` + `total_usd`) and checks it the same way.

use aimarket_protocol::signing::sign_document;
use serde_json::{Map, Value, json};

use super::PipelineAnswer;
use super::Version;
use super::error::PipelineError;
use super::plan::Plan;
use super::run::{NodeOutcome, NodeStatus};
use super::spec::PipelineSpec;
use crate::invoke::InvokeDeps;
use crate::payments::micros_to_usd;

/// The `kind` of a bill of materials.
pub const BILL_KIND: &str = "pipeline_bill";

/// One bill step per node, in declaration order.
fn step(spec: &PipelineSpec, plan: &Plan, i: usize, o: &NodeOutcome) -> Value {
    let node = &spec.nodes[i];
    json!({
        "node_id": node.id,
        "product_id": plan.nodes[i].product_id,
        "capability_id": node.capability_id,
        "provider": o.provider,
        "status": o.status.as_str(),
        "success": o.status == NodeStatus::Ran,
        "price_usd": micros_to_usd(o.price_micros),
        "price_micros": o.price_micros,
        "planned_price_usd": micros_to_usd(plan.nodes[i].price_micros),
        "latency_ms": o.latency_ms,
        "receipt": o.receipt,
        "routing_receipt": o.routing_receipt,
        "error": o.error,
    })
}

/// Signs the bill and builds the answer: 200 when every node ran, else 502
/// `pipeline_node_failed` (the protocol error shape plus the same fields).
pub fn answer(
    deps: &InvokeDeps<'_>,
    spec: &PipelineSpec,
    plan: &Plan,
    outcomes: &[NodeOutcome],
    trace_id: &str,
    version: Version,
) -> Result<PipelineAnswer, PipelineError> {
    let total_micros: i64 = outcomes.iter().map(|o| o.price_micros).sum();
    let steps: Vec<Value> = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| step(spec, plan, i, o))
        .collect();
    let mut bill = json!({
        "kind": BILL_KIND,
        "trace_id": trace_id,
        "hub": deps.public_url.as_str(),
        "steps": steps,
        "total_usd": micros_to_usd(total_micros),
        "total_micros": total_micros,
        "max_total_usd": spec.max_total_micros.map(micros_to_usd),
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "signer_public_key": deps.signing_key.public_key().to_b64(),
    });
    sign_document(&mut bill, deps.signing_key)
        .map_err(|e| PipelineError::Internal(format!("signing the bill: {e}")))?;

    let ids = |s: NodeStatus| -> Vec<&str> {
        outcomes
            .iter()
            .zip(&spec.nodes)
            .filter(|(o, _)| o.status == s)
            .map(|(_, n)| n.id.as_str())
            .collect()
    };
    let mut results = Map::new();
    for (o, n) in outcomes.iter().zip(&spec.nodes) {
        if o.status == NodeStatus::Ran {
            results.insert(n.id.clone(), o.result.clone());
        }
    }
    let failed = ids(NodeStatus::Failed);
    let success = failed.is_empty() && ids(NodeStatus::Skipped).is_empty();
    let final_node = spec.final_node();
    let mut body = json!({
        "success": success,
        "trace_id": trace_id,
        "final_node": spec.nodes[final_node].id,
        "final_result": if success { outcomes[final_node].result.clone() } else { Value::Null },
        "results": results,
        "nodes": {
            "ran": ids(NodeStatus::Ran),
            "failed": failed,
            "skipped": ids(NodeStatus::Skipped),
        },
        "total_usd": micros_to_usd(total_micros),
        "bill_of_materials": bill,
        "protocol_version": version.as_str(),
    });
    let status = if success {
        200
    } else {
        let first = failed.first().copied().unwrap_or_default();
        body["error"] = json!("pipeline_node_failed");
        body["detail"] = json!(format!(
            "node `{first}` failed; its dependents and every node not yet started were skipped \
             and charged nothing"
        ));
        502
    };
    Ok(PipelineAnswer { status, body })
}

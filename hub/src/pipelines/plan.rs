//! Prices and checks a parsed pipeline against the catalog before anything is held:
//! every capability must exist (the offer an invoke would pick first gives the planned
//! price), literal inputs must satisfy the input schema, the planned total must fit the
//! budget.

use serde_json::Value;

use super::error::PipelineError;
use super::spec::PipelineSpec;
use crate::error_code::{ErrorCode, ErrorKind};
use crate::invoke::InvokeDeps;
use crate::invoke::validate::{Schema, SchemaCache};
use crate::mcp::lookup::describe;
use crate::payments::{micros_to_usd, usd_to_micros};

/// What one node is expected to cost and where it is expected to go.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedNode {
    /// The product id (named by the buyer, or the one product listing the capability).
    pub product_id: String,
    /// The provider an invoke picks first (`source_hub` of its best offer).
    pub provider: String,
    /// Its routed price, micro-USD.
    pub price_micros: i64,
}

/// The priced plan, in node declaration order.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// One entry per node.
    pub nodes: Vec<PlannedNode>,
    /// Sum of the routed prices, micro-USD.
    pub total_micros: i64,
}

/// Prices every node and validates literal inputs; refuses an over-budget plan.
pub async fn plan(deps: &InvokeDeps<'_>, spec: &PipelineSpec) -> Result<Plan, PipelineError> {
    let schemas = SchemaCache::default();
    let mut nodes = Vec::with_capacity(spec.nodes.len());
    for node in &spec.nodes {
        let invalid = |detail: String| PipelineError::Invalid {
            node: Some(node.id.clone()),
            detail,
        };
        let product_id = match &node.product_id {
            Some(p) => p.clone(),
            None => {
                let mut listed = deps
                    .store
                    .products_of_capability(&node.capability_id, 3)
                    .await?;
                listed.dedup_by(|a, b| a.0 == b.0);
                match listed.as_slice() {
                    [(only, _)] => only.clone(),
                    [] => {
                        return Err(invalid(format!(
                            "no active peer offers capability `{}`",
                            node.capability_id
                        )));
                    }
                    _ => {
                        return Err(invalid(format!(
                            "several products offer `{}`: name a `product_id`",
                            node.capability_id
                        )));
                    }
                }
            }
        };
        let offers = describe(
            deps,
            &product_id,
            &node.capability_id,
            node.source_hub.as_deref(),
        )
        .await
        .map_err(|e| match e.wire_code().kind() {
            ErrorKind::NotFound | ErrorKind::BadRequest => invalid(e.detail()),
            _ => PipelineError::Internal(e.detail()),
        })?;
        let best = &offers[0];
        // Only a fully literal input can be checked now; a mapped one is checked by the
        // invoke itself when its upstream values are known (still before any charge).
        if node.input_from.is_empty() {
            let schema_text = best.tool.get("input_schema").map(Value::to_string);
            // A schema that does not compile is refused by the node's invoke (502, before
            // its hold); only a compiled one can be checked here.
            if let Some(Schema::Compiled(schema)) = schema_text.as_deref().map(|t| schemas.get(t)) {
                schema
                    .check(&Value::Object(node.input.clone()))
                    .map_err(|violations| PipelineError::InputInvalid {
                        node: node.id.clone(),
                        errors: violations
                            .into_iter()
                            .map(|v| format!("{}: {}", v.path, v.message))
                            .collect(),
                    })?;
            }
        }
        let price_micros = usd_to_micros(best.effective.routed_price_usd)
            .map_err(|e| PipelineError::Internal(e.to_string()))?;
        nodes.push(PlannedNode {
            product_id,
            provider: best.tool["source_hub"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            price_micros,
        });
    }
    let total_micros = nodes.iter().map(|n| n.price_micros).sum();
    if let Some(budget) = spec.max_total_micros
        && total_micros > budget
    {
        return Err(PipelineError::BudgetExceeded {
            planned_usd: micros_to_usd(total_micros),
            budget_usd: micros_to_usd(budget),
        });
    }
    Ok(Plan {
        nodes,
        total_micros,
    })
}

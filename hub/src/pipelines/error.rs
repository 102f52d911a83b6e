//! Why a pipeline is refused before it runs, and how the API reports it ([`ErrorCode`]).

use crate::error_code::{ApiError, Code, ErrorCode};
use crate::payments::PaymentError;
use crate::store::StoreError;

/// A pipeline refused (nothing was held or called) or a lookup that failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The body is not JSON.
    #[error("the body is not JSON: {0}")]
    InvalidJson(String),
    /// A malformed pipeline: shape, ids, unknown nodes, cycles, unknown capabilities.
    #[error("{}{detail}", node.as_ref().map(|n| format!("node `{n}`: ")).unwrap_or_default())]
    Invalid {
        /// The node at fault, if one is.
        node: Option<String>,
        /// What is wrong.
        detail: String,
    },
    /// A literal `input` fails the capability's input schema.
    #[error("node `{node}`: the input does not match the capability's input schema")]
    InputInvalid {
        /// The node.
        node: String,
        /// The schema violations.
        errors: Vec<String>,
    },
    /// The routed prices add up to more than `max_total_usd`.
    #[error("the routed prices add up to {planned_usd} USD, above max_total_usd {budget_usd} USD")]
    BudgetExceeded {
        /// Sum of the routed prices.
        planned_usd: f64,
        /// The budget.
        budget_usd: f64,
    },
    /// Priced nodes and no channel, or a channel that cannot cover the planned total.
    #[error("{0}")]
    PaymentRequired(String),
    /// Same `Idempotency-Key`, different pipeline.
    #[error("this Idempotency-Key was used with a different pipeline")]
    IdempotencyConflict,
    /// Same `Idempotency-Key`, first run still going.
    #[error("a pipeline with this Idempotency-Key is still running")]
    IdempotencyInFlight,
    /// No stored run with this trace id.
    #[error("no pipeline run with trace id {0}")]
    NotFound(String),
    /// The ledger failed.
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else inside this hub (details logged, not returned).
    #[error("{0}")]
    Internal(String),
}

impl ErrorCode for PipelineError {
    /// `POST /ai-market/pipelines`, `/ai-market/v2/pipelines` and MCP `market_pipeline`:
    /// everything refused before a run is a 4xx; the ledger's and store's own errors keep
    /// their codes.
    fn wire_code(&self) -> Code {
        match self {
            Self::InvalidJson(_) => Code::InvalidJson,
            Self::Invalid { .. } => Code::PipelineInvalid,
            Self::InputInvalid { .. } => Code::InputInvalid,
            Self::BudgetExceeded { .. } => Code::BudgetExceeded,
            Self::PaymentRequired(_) => Code::PaymentRequired,
            Self::IdempotencyConflict => Code::IdempotencyConflict,
            Self::IdempotencyInFlight => Code::IdempotencyInFlight,
            Self::NotFound(_) => Code::PipelineNotFound,
            Self::Payment(e) => e.wire_code(),
            Self::Store(e) => e.wire_code(),
            Self::Internal(_) => Code::InternalError,
        }
    }

    fn passes_on(&self) -> Option<&dyn ErrorCode> {
        match self {
            Self::Payment(e) => Some(e),
            Self::Store(e) => Some(e),
            _ => None,
        }
    }

    fn decorate(&self, api: ApiError) -> ApiError {
        match self {
            Self::Invalid {
                node: Some(node), ..
            } => api.with_field("node", node.as_str()),
            Self::InputInvalid { node, errors } => api
                .with_field("node", node.as_str())
                .with_field("errors", errors.clone()),
            Self::BudgetExceeded {
                planned_usd,
                budget_usd,
            } => api
                .with_field("planned_total_usd", *planned_usd)
                .with_field("max_total_usd", *budget_usd),
            _ => api,
        }
    }
}

//! Pipeline refusals ([`PipelineError`]) as HTTP: the status of each is chosen here.

use super::{ApiError, ErrorKind, code};
use crate::pipelines::PipelineError;

impl From<PipelineError> for ApiError {
    /// `POST /ai-market/pipelines`, `/ai-market/v2/pipelines` and MCP `market_pipeline`:
    /// everything refused before a run is a 4xx; the ledger's and store's own errors keep
    /// their mapping.
    fn from(error: PipelineError) -> Self {
        use ErrorKind as K;
        let detail = error.to_string();
        match error {
            PipelineError::InvalidJson(_) => Self::new(K::BadRequest, code::INVALID_JSON, detail),
            PipelineError::Invalid { node, .. } => {
                let e = Self::new(K::BadRequest, code::PIPELINE_INVALID, detail);
                match node {
                    Some(n) => e.with_field("node", n),
                    None => e,
                }
            }
            PipelineError::InputInvalid { node, errors } => {
                Self::new(K::BadRequest, code::INPUT_INVALID, detail)
                    .with_field("node", node)
                    .with_field("errors", errors)
            }
            PipelineError::BudgetExceeded {
                planned_usd,
                budget_usd,
            } => Self::new(K::Conflict, code::BUDGET_EXCEEDED, detail)
                .with_field("planned_total_usd", planned_usd)
                .with_field("max_total_usd", budget_usd),
            PipelineError::PaymentRequired(_) => {
                Self::new(K::PaymentRequired, code::PAYMENT_REQUIRED, detail)
            }
            PipelineError::IdempotencyConflict => {
                Self::new(K::Conflict, code::IDEMPOTENCY_CONFLICT, detail)
            }
            PipelineError::IdempotencyInFlight => {
                Self::new(K::Conflict, code::IDEMPOTENCY_IN_FLIGHT, detail)
            }
            PipelineError::NotFound(_) => Self::not_found(code::PIPELINE_NOT_FOUND, detail),
            PipelineError::Payment(e) => e.into(),
            PipelineError::Store(e) => e.into(),
            PipelineError::Internal(_) => Self::internal(std::io::Error::other(detail)),
        }
    }
}

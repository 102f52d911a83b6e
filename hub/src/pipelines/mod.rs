//! Pipelines across the federation (`POST /ai-market/pipelines`, v1 shape, and
//! `POST /ai-market/v2/pipelines`; MCP `market_pipeline`): a DAG of nodes, each a routed
//! invoke, paid by one channel, under one budget, answered with a signed bill of
//! materials that is stored and readable by trace id.
//!
//! [`run_pipeline`] is the one service function both transports call. Modules: [`spec`]
//! (the body, parsed and checked as a graph), [`plan`] (catalog lookups, schema checks,
//! prices, budget), [`run`] (the concurrent run through [`crate::invoke::invoke`]) and
//! [`bill`] (the signed bill of materials and the answer).

pub mod bill;
pub mod error;
pub mod plan;
pub mod run;
pub mod spec;

use serde_json::Value;

pub use error::PipelineError;
pub use run::Buyer;
pub use spec::PipelineSpec;

use crate::invoke::InvokeDeps;
use crate::payments::{IdemState, StoredResponse, micros_to_usd};
use crate::store::Store;

/// Which answer shape the caller speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `/ai-market/pipelines`, the v1 factory shape (`protocol_version: "v1"`).
    V1,
    /// `/ai-market/v2/pipelines` and MCP.
    V2,
}

impl Version {
    /// The `protocol_version` of the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// A finished run (or a replay of one): status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineAnswer {
    /// HTTP status: 200 when every node ran, 502 when one failed.
    pub status: u16,
    /// The answer (see [`bill::answer`]).
    pub body: Value,
}

/// Runs a pipeline end to end: parse, claim the `Idempotency-Key`, plan (400/409/402 before
/// anything is held), run, sign and store the bill.
///
/// With an `Idempotency-Key`, any answer of a run that started (it may have charged) is
/// stored for 24 h under `(key, client)` and replayed to a retry with the same body; a
/// refusal before the run is not, so a corrected retry runs.
pub async fn run_pipeline(
    deps: &InvokeDeps<'_>,
    body: &Value,
    mut buyer: Buyer,
    version: Version,
) -> Result<PipelineAnswer, PipelineError> {
    let spec = PipelineSpec::from_value(body)?;
    // The header wins over the v1 body field.
    if buyer.headers.channel_id.is_none() {
        buyer.headers.channel_id = spec.channel_id.clone();
    }
    if buyer.headers.channel_secret.is_none() {
        buyer.headers.channel_secret = spec.channel_secret.clone();
    }
    // One channel pays: a payment of the buyer's own would go to every provider at once.
    buyer.headers.x_payment = None;
    buyer.headers.payment_signature = None;
    buyer.headers.x_payment_nonce = None;
    buyer.headers.x_payment_secret = None;
    buyer.headers.check().map_err(|e| PipelineError::Invalid {
        node: None,
        detail: e.to_string(),
    })?;
    let Some(key) = buyer.headers.idempotency_key.clone() else {
        return start(deps, &spec, &buyer, version).await;
    };
    let client = deps
        .limits
        .identities()
        .identify(
            deps.ledger,
            &buyer.caller,
            buyer.headers.channel_id.as_deref(),
            buyer.headers.channel_secret.as_deref(),
        )
        .await
        .client;
    match deps
        .ledger
        .idempotency_begin(&key, client.as_str(), &spec.fingerprint)
        .await?
    {
        IdemState::New => {}
        IdemState::Replay(stored) => {
            return Ok(PipelineAnswer {
                status: stored.status,
                body: serde_json::from_slice(&stored.body)
                    .map_err(|e| PipelineError::Internal(format!("stored pipeline answer: {e}")))?,
            });
        }
        IdemState::Conflict => return Err(PipelineError::IdempotencyConflict),
        IdemState::InFlight => return Err(PipelineError::IdempotencyInFlight),
    }
    let result = start(deps, &spec, &buyer, version).await;
    let recorded = match &result {
        Ok(answer) => {
            let stored = StoredResponse {
                status: answer.status,
                headers: vec![("content-type".to_owned(), "application/json".to_owned())],
                body: serde_json::to_vec(&answer.body).unwrap_or_default(),
            };
            deps.ledger
                .idempotency_finish(&key, client.as_str(), &stored)
                .await
        }
        Err(_) => deps.ledger.idempotency_abandon(&key, client.as_str()).await,
    };
    if let Err(e) = recorded {
        tracing::error!(error = %e, "cannot record the pipeline's idempotency outcome");
    }
    result
}

/// Plans, checks the payment, runs, signs and stores.
async fn start(
    deps: &InvokeDeps<'_>,
    spec: &PipelineSpec,
    buyer: &Buyer,
    version: Version,
) -> Result<PipelineAnswer, PipelineError> {
    let plan = plan::plan(deps, spec).await?;
    check_payment(deps, &plan, buyer).await?;
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let trace_id = format!("tr_{trace}");
    let mut buyer = buyer.clone();
    // Every node invoke carries the run's W3C trace, so providers' logs join on it.
    buyer.headers.traceparent = Some(format!("00-{trace}-{}-01", &trace[..16]));
    let outcomes = run::execute(deps, spec, &plan, &buyer).await;
    let answer = bill::answer(deps, spec, &plan, &outcomes, &trace_id, version)?;
    let total_micros: i64 = outcomes.iter().map(|o| o.price_micros).sum();
    // The run happened and may have charged: its answer goes back even if it cannot be
    // stored (a 500 here would make an idempotent retry look like a fresh run).
    if let Err(e) = deps
        .store
        .insert_pipeline_run(&trace_id, answer.status, &answer.body, total_micros)
        .await
    {
        tracing::error!(error = %e, trace_id, "cannot store the pipeline run");
    }
    Ok(answer)
}

/// A priced plan needs a channel (or an API key the hub bills) that can cover it all, so
/// a run is never refused half way for want of money.
async fn check_payment(
    deps: &InvokeDeps<'_>,
    plan: &plan::Plan,
    buyer: &Buyer,
) -> Result<(), PipelineError> {
    if plan.total_micros == 0 {
        return Ok(());
    }
    let Some(channel_id) = buyer.headers.channel_id.as_deref() else {
        if buyer.headers.api_key.is_some() {
            return Ok(());
        }
        return Err(PipelineError::PaymentRequired(format!(
            "the pipeline costs {} USD: open a channel (POST /ai-market/v2/channel/open) and send \
             X-Payment-Channel and X-Payment-Channel-Secret (or `channel_id`)",
            micros_to_usd(plan.total_micros)
        )));
    };
    let channel = deps
        .ledger
        .get_channel(channel_id)
        .await
        .map_err(|e| PipelineError::PaymentRequired(e.to_string()))?;
    let now = chrono::Utc::now().timestamp_millis();
    if channel.state_at(now) != "open" {
        return Err(PipelineError::PaymentRequired(format!(
            "channel {channel_id} is {}",
            channel.state_at(now)
        )));
    }
    if channel.balance_micros() < plan.total_micros {
        return Err(PipelineError::PaymentRequired(format!(
            "channel {channel_id} holds {} USD; the pipeline costs {} USD",
            micros_to_usd(channel.balance_micros()),
            micros_to_usd(plan.total_micros)
        )));
    }
    Ok(())
}

/// The stored answer of run `trace_id`.
pub async fn get_pipeline(store: &Store, trace_id: &str) -> Result<PipelineAnswer, PipelineError> {
    match store.get_pipeline_run(trace_id).await? {
        Some((status, body)) => Ok(PipelineAnswer { status, body }),
        None => Err(PipelineError::NotFound(trace_id.to_owned())),
    }
}

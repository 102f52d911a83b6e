//! Every lower crate's error enum converted to [`ApiError`]: the status of each failure is
//! chosen here and nowhere else (the kinds and the rendering are in the parent module).

use aimarket_protocol::error::ProtocolError;
use serde_json::Value;

use super::{ApiError, ErrorKind, code};
use crate::catalog::{CatalogError, ParamError};
use crate::crawl::CrawlRunError;
use crate::federation::FederationError;
use crate::invoke::InvokeError;
use crate::limits::LimitRefusal;
use crate::payments::PaymentError;
use crate::reputation::ReputationError;
use crate::store::StoreError;

impl From<ProtocolError> for ApiError {
    /// A protocol error is always about a document the client sent: 400 with its message.
    fn from(error: ProtocolError) -> Self {
        Self::new(
            ErrorKind::BadRequest,
            code::INVALID_DOCUMENT,
            error.to_string(),
        )
        .with_field("reason", error.code())
    }
}

impl From<InvokeError> for ApiError {
    /// Routed-invoke failures (`POST /ai-market/v2/invoke`, and the MCP tool in process).
    fn from(error: InvokeError) -> Self {
        use ErrorKind as K;
        let detail = error.to_string();
        match error {
            InvokeError::InvalidJson(_) => Self::new(K::BadRequest, code::INVALID_JSON, detail),
            InvokeError::BadRequest(_) => Self::bad_request(detail),
            InvokeError::CapabilityNotFound { source_hub, .. } => {
                let e = Self::not_found(code::CAPABILITY_NOT_FOUND, detail);
                match source_hub {
                    Some(hub) => e.with_field("source_hub", hub),
                    None => e,
                }
            }
            InvokeError::AmbiguousCapability {
                capability_id,
                candidates,
            } => {
                let list: Vec<Value> = candidates
                    .into_iter()
                    .map(|(product_id, source_hub)| {
                        serde_json::json!({"product_id": product_id, "source_hub": source_hub})
                    })
                    .collect();
                Self::new(K::Conflict, code::AMBIGUOUS_CAPABILITY, detail)
                    .with_field("capability_id", capability_id)
                    .with_field("candidates", list)
            }
            InvokeError::RoutingFeeRequired { fee_usd } => {
                Self::new(K::PaymentRequired, code::ROUTING_FEE_REQUIRED, detail)
                    .with_field("routing_fee_usd", fee_usd)
            }
            InvokeError::PeerPending { peer } => {
                Self::new(K::Forbidden, code::PEER_PENDING, detail)
                    .with_field("reason", "peer_pending")
                    .with_field("category", "federation")
                    .with_field("source_hub", peer)
            }
            InvokeError::InputNotObject => Self::new(K::BadRequest, code::INPUT_INVALID, detail)
                .with_field(
                    "errors",
                    serde_json::json!([{"path": "/", "message": "must be an object"}]),
                ),
            InvokeError::InputInvalid { violations } => {
                let paths: Vec<Value> = violations.iter().map(|v| v.path.clone().into()).collect();
                let errors = serde_json::to_value(&violations).unwrap_or(Value::Null);
                Self::new(K::BadRequest, code::INPUT_INVALID, detail)
                    .with_field("paths", paths)
                    .with_field("errors", errors)
            }
            InvokeError::PriceLimitExceeded {
                routed_price_usd,
                price_usd,
                max_price_usd,
            } => Self::new(K::Conflict, code::PRICE_LIMIT_EXCEEDED, detail)
                .with_field("routed_price_usd", routed_price_usd)
                .with_field("current_price_usd", routed_price_usd)
                .with_field("price_usd", price_usd)
                .with_field("max_price_usd", max_price_usd),
            InvokeError::Limited(refusal) => Self::from(refusal),
            InvokeError::IdempotencyConflict => {
                Self::new(K::Conflict, code::IDEMPOTENCY_CONFLICT, detail)
            }
            InvokeError::IdempotencyInFlight => {
                Self::new(K::Conflict, code::IDEMPOTENCY_IN_FLIGHT, detail).with_retry_after(1)
            }
            InvokeError::Payment(e) => Self::from(e),
            InvokeError::ChannelRefused { cause, option } => channel_refused(cause, &option),
            InvokeError::InvalidApiKey => Self::new(K::Unauthorized, code::INVALID_API_KEY, detail)
                .with_field("reason", code::INVALID_API_KEY),
            InvokeError::ProviderTimeout { peer, .. } => {
                Self::new(K::GatewayTimeout, code::PROVIDER_TIMEOUT, detail)
                    .with_field("source_hub", peer)
            }
            InvokeError::ProviderError { peer, .. } => {
                Self::new(K::BadGateway, code::PROVIDER_ERROR, detail)
                    .with_field("source_hub", peer)
            }
            InvokeError::ProviderSignatureInvalid { peer, .. } => {
                Self::new(K::BadGateway, code::PROVIDER_SIGNATURE_INVALID, detail)
                    .with_field("source_hub", peer)
            }
            InvokeError::ProviderPaymentFailed { peer, .. } => {
                Self::new(K::BadGateway, code::PROVIDER_PAYMENT_FAILED, detail)
                    .with_field("source_hub", peer)
            }
            InvokeError::NoProvider { plugin, .. } => {
                Self::new(K::Forbidden, code::NO_PROVIDER, detail).with_field("plugin", plugin)
            }
            InvokeError::Blocked(refusal) => blocked(refusal),
            InvokeError::Rejected { refusal, receipt } => {
                let refunded = receipt
                    .get("refunded")
                    .cloned()
                    .unwrap_or(Value::Bool(false));
                blocked(refusal)
                    .with_field("refunded", refunded)
                    .with_field("receipt", receipt)
            }
            InvokeError::PluginUnavailable(refusal) => {
                Self::new(K::Unavailable, code::PLUGIN_UNAVAILABLE, detail)
                    .with_field("plugin", refusal.plugin)
                    .with_field("category", refusal.category)
                    .with_retry_after(1)
            }
            InvokeError::Store(e) => Self::from(e),
            InvokeError::Internal(message) => Self::internal(std::io::Error::other(message)),
        }
    }
}

impl From<LimitRefusal> for ApiError {
    /// Every limit answers 429 `rate_limited` with `Retry-After`, the `limit` that was hit
    /// and, for the provider limits, the provider (`source_hub`).
    fn from(refusal: LimitRefusal) -> Self {
        let api = Self::new(
            ErrorKind::TooManyRequests,
            code::RATE_LIMITED,
            refusal.to_string(),
        )
        .with_field("limit", refusal.limit.as_str())
        .with_field("retry_after_s", refusal.retry_after_s)
        .with_retry_after(refusal.retry_after_s);
        match refusal.provider {
            Some(provider) => api.with_field("source_hub", provider),
            None => api,
        }
    }
}

/// SQLSTATEs that mean the server is going away or not there yet, not that the query is
/// wrong: class 08 (connection exception) and 57P01-57P03 (admin shutdown, crash shutdown,
/// cannot connect now).
fn is_outage_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// 503 `unavailable` with `Retry-After: 5`, the cause logged as a warning.
fn unavailable(error: &StoreError) -> ApiError {
    tracing::warn!(error = %error, "database unavailable");
    ApiError::new(
        ErrorKind::Unavailable,
        code::UNAVAILABLE,
        "the database is not answering; retry shortly",
    )
    .with_retry_after(5)
}

impl From<StoreError> for ApiError {
    /// Store failures: an unknown peer is 404, a malformed peer URL 400, a database that
    /// does not answer 503 (transient); anything else is a 500 with the cause logged.
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::PeerNotFound { .. } => {
                Self::not_found(code::PEER_NOT_FOUND, error.to_string())
            }
            StoreError::InvalidPeerUrl { .. } => Self::bad_request(error.to_string()),
            // A database going away mid-query (PostgreSQL stopping or restarting) answers
            // with SQLSTATE 57P01-57P03 ("terminating connection due to administrator
            // command", "the database system is starting up") or a class 08 connection
            // exception: the same transient outage as a pool timeout (issue #13: these were
            // 500s).
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
            ) => unavailable(&error),
            StoreError::Database(sqlx::Error::Database(ref db))
                if db.code().as_deref().is_some_and(is_outage_sqlstate) =>
            {
                unavailable(&error)
            }
            // PostgreSQL refuses text it cannot store (a NUL byte: 22021; an untranslatable
            // character: 22P05). Such a value can only come from the request, so it is the
            // client's error, whichever handler forgot to screen it.
            StoreError::Database(sqlx::Error::Database(ref db))
                if matches!(db.code().as_deref(), Some("22021" | "22P05")) =>
            {
                Self::bad_request(
                    "the request contains text the database cannot store (e.g. a NUL byte)",
                )
            }
            other => Self::internal(other),
        }
    }
}

impl From<PaymentError> for ApiError {
    /// Ledger failures. A channel that cannot pay is 402 with a machine `reason` (the detail
    /// says it in words); ledger misuse by this hub (unknown or settled hold, duplicate
    /// receipt) is a 500.
    fn from(error: PaymentError) -> Self {
        use ErrorKind as K;
        let detail = error.to_string();
        let reason = error.reason();
        let api = match error {
            PaymentError::InvalidAmount { what, .. } => {
                Self::new(K::BadRequest, code::INVALID_AMOUNT, detail).with_field("field", what)
            }
            PaymentError::InvalidRequest(_) => Self::bad_request(detail),
            PaymentError::TxHashRequired => {
                Self::new(K::BadRequest, code::TX_HASH_REQUIRED, detail)
            }
            PaymentError::PaymentsUnavailable => {
                Self::new(K::Unavailable, code::PAYMENTS_UNAVAILABLE, detail)
            }
            PaymentError::DepositRejected { .. } => {
                Self::new(K::PaymentRequired, code::DEPOSIT_NOT_VERIFIED, detail)
            }
            PaymentError::PayerProofRequired => {
                Self::new(K::BadRequest, code::PAYER_PROOF_REQUIRED, detail)
            }
            PaymentError::PayerProofInvalid { .. } => {
                Self::new(K::Forbidden, code::PAYER_PROOF_INVALID, detail)
            }
            PaymentError::NotPayer { .. } => Self::new(K::Forbidden, code::NOT_PAYER, detail),
            PaymentError::X402Rejected { .. } => {
                Self::new(K::PaymentRequired, code::PAYMENT_INVALID, detail)
            }
            PaymentError::AuthorizationRequired { field, .. } => Self::new(
                K::PaymentRequired,
                code::PAYMENT_AUTHORIZATION_REQUIRED,
                detail,
            )
            .with_field("field", field),
            PaymentError::VerifierUnavailable { .. } => {
                Self::new(K::Unavailable, code::PAYMENT_VERIFIER_UNAVAILABLE, detail)
                    .with_retry_after(5)
            }
            PaymentError::TxAlreadyUsed { tx_hash } => {
                Self::new(K::Conflict, code::TX_ALREADY_USED, detail).with_field("tx_hash", tx_hash)
            }
            PaymentError::ChannelNotFound { channel_id } => {
                Self::not_found(code::CHANNEL_NOT_FOUND, detail)
                    .with_field("channel_id", channel_id)
            }
            PaymentError::BadSecret { .. } => {
                Self::new(K::PaymentRequired, code::CHANNEL_UNAUTHORIZED, detail)
            }
            PaymentError::Expired { channel_id } => {
                Self::new(K::PaymentRequired, code::CHANNEL_EXPIRED, detail)
                    .with_field("channel_id", channel_id)
            }
            PaymentError::Closed { channel_id } => {
                Self::new(K::PaymentRequired, code::CHANNEL_CLOSED, detail)
                    .with_field("channel_id", channel_id)
            }
            PaymentError::InsufficientBalance {
                balance_micros,
                needed_micros,
            } => {
                let needed = crate::payments::micros_to_usd(needed_micros);
                Self::new(K::PaymentRequired, code::INSUFFICIENT_BALANCE, detail)
                    .with_field(
                        "balance_usd",
                        crate::payments::micros_to_usd(balance_micros),
                    )
                    .with_field("needed", needed)
                    .with_field("needed_usd", needed)
            }
            PaymentError::ChannelBusy { channel_id, holds } => {
                Self::new(K::Conflict, code::CHANNEL_BUSY, detail)
                    .with_field("channel_id", channel_id)
                    .with_field("in_flight", holds)
                    .with_retry_after(1)
            }
            PaymentError::Store(e) => Self::from(e),
            PaymentError::Database(e) => Self::from(StoreError::Database(e)),
            other @ (PaymentError::DuplicateHold { .. }
            | PaymentError::HoldNotFound { .. }
            | PaymentError::HoldSettled { .. }
            | PaymentError::DuplicateReceipt { .. }
            | PaymentError::InvalidReceipt(_)
            | PaymentError::Corrupt(_)) => Self::internal(other),
        };
        match reason {
            Some(reason) => api.with_field("reason", reason),
            None => api,
        }
    }
}

impl From<CrawlRunError> for ApiError {
    /// A crawl run that could not run: store failures as above; a hub that is shutting down,
    /// or that cannot coordinate the crawl with the other replicas, is 503.
    fn from(error: CrawlRunError) -> Self {
        match error {
            CrawlRunError::Store(e) => Self::from(e),
            CrawlRunError::Aborted | CrawlRunError::Replica(_) => {
                Self::new(ErrorKind::Unavailable, code::UNAVAILABLE, error.to_string())
            }
            CrawlRunError::Setup(_) => Self::internal(error),
        }
    }
}

impl From<std::sync::Arc<CrawlRunError>> for ApiError {
    /// A run's shared outcome (several triggers may wait on one run): same classes as the
    /// owned error.
    fn from(error: std::sync::Arc<CrawlRunError>) -> Self {
        match std::sync::Arc::try_unwrap(error) {
            Ok(owned) => Self::from(owned),
            Err(shared) => match shared.as_ref() {
                CrawlRunError::Aborted
                | CrawlRunError::Replica(_)
                | CrawlRunError::Store(StoreError::Database(
                    sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
                )) => Self::new(
                    ErrorKind::Unavailable,
                    code::UNAVAILABLE,
                    shared.to_string(),
                ),
                _ => Self::internal(shared),
            },
        }
    }
}

impl From<FederationError> for ApiError {
    /// Admission and operator actions: bad input 400 (`invalid_document` for a signature
    /// that does not verify, `unsafe_url` for §7.4), closed admission 401, the pending bound
    /// 429, an unknown peer 404; store errors as above.
    fn from(error: FederationError) -> Self {
        let detail = error.to_string();
        match error {
            FederationError::BadRequest(_) => Self::bad_request(detail),
            FederationError::Announce(e) => Self::from(e),
            FederationError::UnsafeUrl { url, .. } => {
                Self::new(ErrorKind::BadRequest, code::UNSAFE_URL, detail).with_field("url", url)
            }
            FederationError::AdmissionClosed => {
                Self::new(ErrorKind::Unauthorized, code::ADMISSION_CLOSED, detail)
            }
            FederationError::PendingLimit { limit } => {
                Self::new(ErrorKind::TooManyRequests, code::PENDING_LIMIT, detail)
                    .with_field("limit", limit)
                    .with_retry_after(3600)
            }
            FederationError::PeerNotFound(url) => {
                Self::not_found(code::PEER_NOT_FOUND, detail).with_field("url", url)
            }
            FederationError::Store(e) => Self::from(e),
        }
    }
}

impl From<ReputationError> for ApiError {
    /// Reputation: a malformed batch or hub URL 400; store and ledger errors as above.
    fn from(error: ReputationError) -> Self {
        match error {
            ReputationError::BadRequest(detail) => Self::bad_request(detail),
            ReputationError::Store(e) => Self::from(e),
            ReputationError::Ledger(e) => Self::from(e),
        }
    }
}

impl From<ParamError> for ApiError {
    /// A search parameter that does not parse or is out of range: 400 naming it.
    fn from(error: ParamError) -> Self {
        Self::bad_request(error.to_string()).with_field("param", error.param)
    }
}

impl From<CatalogError> for ApiError {
    /// Search and manifest failures: a fail-closed rank plugin is 503 `plugin_unavailable`,
    /// a closed index (shutdown) 503; store errors as above; the rest are 500s.
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Refused(refusal) => Self::new(
                ErrorKind::Unavailable,
                code::PLUGIN_UNAVAILABLE,
                refusal.to_string(),
            )
            .with_field("plugin", refusal.plugin)
            .with_field("category", refusal.category)
            .with_retry_after(1),
            CatalogError::Closed => {
                Self::new(ErrorKind::Unavailable, code::UNAVAILABLE, error.to_string())
            }
            CatalogError::Store(e) => Self::from(e),
            other => Self::internal(other),
        }
    }
}

/// 402 `payment_required` for a buyer channel this hub cannot debit. One code for every
/// invoke 402 (the provider's relayed ones say `payment_required` too), so a client needs one
/// test to take its "open a channel and retry" path; the specific cause is `reason`, the
/// ledger's code. `hub_payment` and `payment_ways[0]` say how to pay this hub.
fn channel_refused(cause: PaymentError, option: &crate::invoke::HubPaymentOption) -> ApiError {
    if let PaymentError::AuthorizationRequired { field, .. } = &cause {
        // Its own code, so that a client learns the channel needs a signed debit, not money.
        return ApiError::new(
            ErrorKind::PaymentRequired,
            code::PAYMENT_AUTHORIZATION_REQUIRED,
            cause.to_string(),
        )
        .with_field("field", *field)
        .with_field("reason", "payment_authorization_required")
        .with_field("needed", option.needed)
        .with_field("needed_base_units", option.needed_base_units.clone())
        .with_field("hub_payment", option.to_json())
        .with_field("payment_ways", Value::Array(vec![option.as_payment_way()]));
    }
    let reason = cause.reason().unwrap_or(cause.code());
    let detail = format!(
        "{cause}; open a channel at this hub (POST {}) and retry with X-Payment-Channel \
         and X-Payment-Channel-Secret",
        option.open
    );
    let mut api = ApiError::new(ErrorKind::PaymentRequired, code::PAYMENT_REQUIRED, detail)
        .with_field("reason", reason)
        .with_field("needed", option.needed)
        .with_field("needed_usd", option.needed)
        .with_field("routed_price_usd", option.needed)
        .with_field("hub_payment", option.to_json())
        .with_field("payment_ways", Value::Array(vec![option.as_payment_way()]));
    match cause {
        PaymentError::ChannelNotFound { channel_id }
        | PaymentError::Expired { channel_id }
        | PaymentError::Closed { channel_id } => api = api.with_field("channel_id", channel_id),
        PaymentError::InsufficientBalance { balance_micros, .. } => {
            api = api.with_field(
                "balance_usd",
                crate::payments::micros_to_usd(balance_micros),
            );
        }
        _ => {}
    }
    api
}

/// 403 `blocked` for a plugin's block decision: `{category, reason, plugin, hook}`.
fn blocked(refusal: aimarket_plugins::Refusal) -> ApiError {
    ApiError::new(ErrorKind::Forbidden, code::BLOCKED, refusal.reason.clone())
        .with_field("category", refusal.category)
        .with_field("reason", refusal.reason)
        .with_field("plugin", refusal.plugin)
        .with_field("hook", refusal.hook.as_str())
}

impl From<aimarket_plugins::RouteError> for ApiError {
    /// Plugin routes: no such plugin or path 404, wrong method 405, a panicking handler 500,
    /// one that did not answer in time 504.
    fn from(error: aimarket_plugins::RouteError) -> Self {
        use aimarket_plugins::RouteError as E;
        let detail = error.to_string();
        match error {
            E::NotFound(_) => Self::not_found(code::NOT_FOUND, detail),
            E::MethodNotAllowed { allowed } => Self::new(
                ErrorKind::MethodNotAllowed,
                code::METHOD_NOT_ALLOWED,
                detail,
            )
            .with_field("allowed", allowed),
            E::Panicked { .. } => Self::internal(error),
            E::TimedOut { .. } => {
                Self::new(ErrorKind::GatewayTimeout, code::PLUGIN_UNAVAILABLE, detail)
            }
        }
    }
}

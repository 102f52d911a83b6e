//! Why an invoke failed before or instead of relaying a provider answer, and how the API
//! reports each failure ([`ErrorCode`]: the code decides the status).

use aimarket_plugins::Refusal;
use serde::Serialize;
use serde_json::Value;

use super::hub_payment::HubPaymentOption;
use crate::error_code::{ApiError, Code, ErrorCode};
use crate::limits::LimitRefusal;
use crate::payments::PaymentError;
use crate::store::StoreError;

/// One failing location of an `input_invalid` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputViolation {
    /// JSON pointer into `input` (`/` for the input itself).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

/// Everything that can make an invoke fail at this hub.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The body is not JSON.
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// A field or header has the wrong shape or value.
    #[error("{0}")]
    BadRequest(String),
    /// No active peer offers this capability (from this `source_hub`, when given).
    #[error("capability {}{capability_id} is not in this hub's catalog{}",
        if product_id.is_empty() { String::new() } else { format!("{product_id}/") },
        source_hub.as_deref().map(|h| format!(" for source_hub {h}")).unwrap_or_default())]
    CapabilityNotFound {
        /// Product id asked for.
        product_id: String,
        /// Capability id asked for.
        capability_id: String,
        /// The origin asked for.
        source_hub: Option<String>,
    },
    /// No `product_id` was given and several products list this capability id.
    #[error("capability {capability_id} is listed by {} products; name one with product_id", candidates.len())]
    AmbiguousCapability {
        /// Capability id asked for.
        capability_id: String,
        /// `(product_id, source_hub)` of each listing (bounded).
        candidates: Vec<(String, String)>,
    },
    /// A seller-direct call (`X-Payment`) when this hub charges its routing fee on the
    /// buyer's channel (`seller_direct_fee = channel`) and no `X-Payment-Channel` was sent.
    #[error(
        "this hub charges its routing fee of {fee_usd} USD on seller-direct calls: send X-Payment-Channel with the payment"
    )]
    RoutingFeeRequired {
        /// The fee, USD.
        fee_usd: f64,
    },
    /// `source_hub` names a peer that has not been admitted (spec §2.4).
    #[error("peer {peer} is pending admission; its capabilities cannot be invoked")]
    PeerPending {
        /// The peer's origin.
        peer: String,
    },
    /// `input` is not a JSON object.
    #[error("`input` must be a JSON object")]
    InputNotObject,
    /// `input` does not satisfy the capability's input schema.
    #[error("input does not match the capability's input_schema ({} problem(s))", violations.len())]
    InputInvalid {
        /// The failing paths, at most a bounded number.
        violations: Vec<InputViolation>,
    },
    /// The capability's stored `input_schema` does not compile, so the input cannot be
    /// checked: refused before anything is held or forwarded (fail closed).
    #[error(
        "capability {product_id}/{capability_id} of {source_hub} publishes an input_schema \
         this hub cannot compile ({reason}); the call was not forwarded and nothing was charged"
    )]
    InputSchemaInvalid {
        /// Product id of the offer.
        product_id: String,
        /// Capability id of the offer.
        capability_id: String,
        /// The offer's origin.
        source_hub: String,
        /// Why the schema does not compile.
        reason: String,
    },
    /// `max_price_usd` is below what this hub charges for the call.
    #[error("routed price {routed_price_usd} USD exceeds max_price_usd {max_price_usd} USD")]
    PriceLimitExceeded {
        /// What this hub charges.
        routed_price_usd: f64,
        /// The provider's list price.
        price_usd: f64,
        /// The buyer's limit.
        max_price_usd: f64,
    },
    /// A client or provider limit refused the call (nothing was charged or forwarded).
    #[error(transparent)]
    Limited(#[from] LimitRefusal),
    /// The `Idempotency-Key` was used before with a different request.
    #[error("Idempotency-Key was already used with a different request body")]
    IdempotencyConflict,
    /// The first request with this `Idempotency-Key` is still running.
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyInFlight,
    /// The buyer's channel cannot pay (unknown, wrong secret, expired, closed, too low).
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// The buyer's channel cannot pay for this call, and opening a channel here and
    /// retrying would: a 402 with the machine `reason` and this hub's payment option, so a
    /// client's "open a channel and retry" path recovers (unknown or foreign channel,
    /// closed, expired, too low, missing or wrong secret).
    #[error("{cause}")]
    ChannelRefused {
        /// What the ledger refused.
        cause: PaymentError,
        /// How to pay this hub for the call instead.
        option: Box<HubPaymentOption>,
    },
    /// An `X-API-Key` this hub did not issue (`AIMARKET_API_KEYS`).
    #[error(
        "X-API-Key is not a key this hub accepts; remove it and pay with a channel \
         (X-Payment-Channel) or use a key the operator issued"
    )]
    InvalidApiKey,
    /// The provider did not answer within the timeout.
    #[error("provider {peer} did not answer within {timeout_s} s")]
    ProviderTimeout {
        /// The peer called.
        peer: String,
        /// The configured timeout.
        timeout_s: u64,
    },
    /// The provider could not be reached or answered unusably.
    #[error("provider {peer} failed: {detail}")]
    ProviderError {
        /// The peer called.
        peer: String,
        /// What went wrong.
        detail: String,
    },
    /// The provider's `X-Provider-Signature` does not verify (spec §7.1).
    #[error("provider {peer} sent an X-Provider-Signature that does not verify: {detail}")]
    ProviderSignatureInvalid {
        /// The peer called.
        peer: String,
        /// Why verification failed.
        detail: String,
    },
    /// The hub could not pay the provider for a channel-funded call (it still answered 402).
    #[error("this hub could not pay provider {peer}: {detail}")]
    ProviderPaymentFailed {
        /// The peer called.
        peer: String,
        /// What the provider said.
        detail: String,
    },
    /// Route plugins removed every provider of the capability.
    #[error("no provider may serve this call: {detail}")]
    NoProvider {
        /// The route plugin that removed the last provider, when known.
        plugin: Option<String>,
        /// Why.
        detail: String,
    },
    /// A `before_invoke` plugin blocked the call: nothing was charged or forwarded.
    #[error("{}", .0.reason)]
    Blocked(Refusal),
    /// An `after_invoke` plugin blocked the provider's answer: the buyer's hold was released
    /// and `receipt` is the hub-signed v2 rejection receipt (spec §7.3.4).
    #[error("{}", refusal.reason)]
    Rejected {
        /// Who blocked and why.
        refusal: Refusal,
        /// The signed rejection receipt (stored under its nonce).
        receipt: Value,
    },
    /// A fail-closed plugin failed (error, panic or budget exceeded).
    #[error("{0}")]
    PluginUnavailable(Refusal),
    /// The catalog could not be read.
    #[error("catalog unavailable: {0}")]
    Store(#[from] StoreError),
    /// A bug or an unexpected failure inside this hub.
    #[error("internal error: {0}")]
    Internal(String),
}

impl InvokeError {
    /// A ledger refusal of the buyer's channel: the ones opening a new channel fixes become
    /// [`InvokeError::ChannelRefused`] with `option`; anything else stays a payment error.
    pub fn channel_refused(cause: PaymentError, option: &HubPaymentOption) -> Self {
        match cause {
            PaymentError::ChannelNotFound { .. }
            | PaymentError::Expired { .. }
            | PaymentError::Closed { .. }
            | PaymentError::InsufficientBalance { .. }
            | PaymentError::BadSecret { .. }
            | PaymentError::AuthorizationRequired { .. } => Self::ChannelRefused {
                cause,
                option: Box::new(option.clone()),
            },
            other => Self::Payment(other),
        }
    }
}

impl ErrorCode for InvokeError {
    /// Routed-invoke failures (`POST /ai-market/v2/invoke`, and the MCP tool in process).
    fn wire_code(&self) -> Code {
        match self {
            Self::InvalidJson(_) => Code::InvalidJson,
            Self::BadRequest(_) => Code::BadRequest,
            Self::CapabilityNotFound { .. } => Code::CapabilityNotFound,
            Self::AmbiguousCapability { .. } => Code::AmbiguousCapability,
            Self::RoutingFeeRequired { .. } => Code::RoutingFeeRequired,
            Self::PeerPending { .. } => Code::PeerPending,
            Self::InputNotObject | Self::InputInvalid { .. } => Code::InputInvalid,
            Self::InputSchemaInvalid { .. } => Code::InputSchemaInvalid,
            Self::PriceLimitExceeded { .. } => Code::PriceLimitExceeded,
            Self::Limited(refusal) => refusal.wire_code(),
            Self::IdempotencyConflict => Code::IdempotencyConflict,
            Self::IdempotencyInFlight => Code::IdempotencyInFlight,
            Self::Payment(e) => e.wire_code(),
            // One code for every invoke 402 (the provider's relayed ones say
            // `payment_required` too), so a client needs one test to take its "open a
            // channel and retry" path; the specific cause is `reason`. A missing debit
            // authorization keeps its own code: the channel needs a signature, not money.
            Self::ChannelRefused { cause, .. } => match cause {
                PaymentError::AuthorizationRequired { .. } => Code::PaymentAuthorizationRequired,
                _ => Code::PaymentRequired,
            },
            Self::InvalidApiKey => Code::InvalidApiKey,
            Self::ProviderTimeout { .. } => Code::ProviderTimeout,
            Self::ProviderError { .. } => Code::ProviderError,
            Self::ProviderSignatureInvalid { .. } => Code::ProviderSignatureInvalid,
            Self::ProviderPaymentFailed { .. } => Code::ProviderPaymentFailed,
            Self::NoProvider { .. } => Code::NoProvider,
            Self::Blocked(_) | Self::Rejected { .. } => Code::Blocked,
            Self::PluginUnavailable(_) => Code::PluginUnavailable,
            Self::Store(e) => e.wire_code(),
            Self::Internal(_) => Code::InternalError,
        }
    }

    fn passes_on(&self) -> Option<&dyn ErrorCode> {
        match self {
            Self::Limited(refusal) => Some(refusal),
            Self::Payment(e) => Some(e),
            Self::Store(e) => Some(e),
            _ => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::ChannelRefused { cause, option } => match cause {
                PaymentError::AuthorizationRequired { .. } => cause.to_string(),
                _ => format!(
                    "{cause}; open a channel at this hub (POST {}) and retry with \
                     X-Payment-Channel and X-Payment-Channel-Secret",
                    option.open
                ),
            },
            other => other.to_string(),
        }
    }

    fn decorate(&self, api: ApiError) -> ApiError {
        match self {
            Self::CapabilityNotFound {
                source_hub: Some(hub),
                ..
            } => api.with_field("source_hub", hub.as_str()),
            Self::AmbiguousCapability {
                capability_id,
                candidates,
            } => {
                let list: Vec<Value> = candidates
                    .iter()
                    .map(|(product_id, source_hub)| {
                        serde_json::json!({"product_id": product_id, "source_hub": source_hub})
                    })
                    .collect();
                api.with_field("capability_id", capability_id.as_str())
                    .with_field("candidates", list)
            }
            Self::RoutingFeeRequired { fee_usd } => api.with_field("routing_fee_usd", *fee_usd),
            Self::PeerPending { peer } => api
                .with_field("reason", "peer_pending")
                .with_field("category", "federation")
                .with_field("source_hub", peer.as_str()),
            Self::InputNotObject => api.with_field(
                "errors",
                serde_json::json!([{"path": "/", "message": "must be an object"}]),
            ),
            Self::InputInvalid { violations } => {
                let paths: Vec<Value> = violations.iter().map(|v| v.path.clone().into()).collect();
                let errors = serde_json::to_value(violations).unwrap_or(Value::Null);
                api.with_field("paths", paths).with_field("errors", errors)
            }
            Self::InputSchemaInvalid {
                product_id,
                capability_id,
                source_hub,
                ..
            } => api
                .with_field("product_id", product_id.as_str())
                .with_field("capability_id", capability_id.as_str())
                .with_field("source_hub", source_hub.as_str()),
            Self::PriceLimitExceeded {
                routed_price_usd,
                price_usd,
                max_price_usd,
            } => api
                .with_field("routed_price_usd", *routed_price_usd)
                .with_field("current_price_usd", *routed_price_usd)
                .with_field("price_usd", *price_usd)
                .with_field("max_price_usd", *max_price_usd),
            Self::IdempotencyInFlight => api.with_retry_after(1),
            Self::ChannelRefused { cause, option } => channel_refused(api, cause, option),
            Self::InvalidApiKey => api.with_field("reason", Code::InvalidApiKey.as_str()),
            Self::ProviderTimeout { peer, .. }
            | Self::ProviderError { peer, .. }
            | Self::ProviderSignatureInvalid { peer, .. }
            | Self::ProviderPaymentFailed { peer, .. } => {
                api.with_field("source_hub", peer.as_str())
            }
            Self::NoProvider { plugin, .. } => api.with_field("plugin", plugin.clone()),
            Self::Blocked(refusal) => blocked(api, refusal),
            Self::Rejected { refusal, receipt } => {
                let refunded = receipt
                    .get("refunded")
                    .cloned()
                    .unwrap_or(Value::Bool(false));
                blocked(api, refusal)
                    .with_field("refunded", refunded)
                    .with_field("receipt", receipt.clone())
            }
            Self::PluginUnavailable(refusal) => api
                .with_field("plugin", refusal.plugin.as_str())
                .with_field("category", refusal.category.as_str())
                .with_retry_after(1),
            _ => api,
        }
    }
}

/// The 402 for a buyer channel this hub cannot debit: the ledger's machine `reason`, and
/// `hub_payment` and `payment_ways[0]` saying how to pay this hub.
fn channel_refused(api: ApiError, cause: &PaymentError, option: &HubPaymentOption) -> ApiError {
    let payment = |api: ApiError| {
        api.with_field("needed", option.needed)
            .with_field("hub_payment", option.to_json())
            .with_field("payment_ways", Value::Array(vec![option.as_payment_way()]))
    };
    if let PaymentError::AuthorizationRequired { field, .. } = cause {
        return payment(
            api.with_field("field", *field)
                .with_field("reason", Code::PaymentAuthorizationRequired.as_str())
                .with_field("needed_base_units", option.needed_base_units.clone()),
        );
    }
    let reason = cause.reason().unwrap_or_else(|| cause.wire_code().as_str());
    let api = payment(
        api.with_field("reason", reason)
            .with_field("needed_usd", option.needed)
            .with_field("routed_price_usd", option.needed),
    );
    match cause {
        PaymentError::ChannelNotFound { channel_id }
        | PaymentError::Expired { channel_id }
        | PaymentError::Closed { channel_id } => api.with_field("channel_id", channel_id.as_str()),
        PaymentError::InsufficientBalance { balance_micros, .. } => api.with_field(
            "balance_usd",
            crate::payments::micros_to_usd(*balance_micros),
        ),
        _ => api,
    }
}

/// 403 `blocked` for a plugin's block decision: `{category, reason, plugin, hook}`; the
/// detail is the plugin's reason.
fn blocked(api: ApiError, refusal: &Refusal) -> ApiError {
    api.with_field("category", refusal.category.as_str())
        .with_field("reason", refusal.reason.as_str())
        .with_field("plugin", refusal.plugin.as_str())
        .with_field("hook", refusal.hook.as_str())
}

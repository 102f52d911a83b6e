//! Why an invoke failed before or instead of relaying a provider answer. Mapped to HTTP in
//! `http/error.rs` (the one place statuses are chosen).

use aimarket_plugins::Refusal;
use serde::Serialize;
use serde_json::Value;

use super::hub_payment::HubPaymentOption;
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

//! The wire codes (the error body's `error` field) and the class each belongs to.

use super::ErrorKind;

/// Declares [`Code`] from one table: variant, wire string, kind. One row per code, so a
/// code cannot have two statuses (issue #14: `plugin_unavailable` had two).
macro_rules! codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $wire:literal => $kind:ident, )*) => {
        /// A stable wire code. Clients switch on these strings; never rename one. Its
        /// [`ErrorKind`] decides the HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The wire string (the body's `error` field).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $wire,)*
                }
            }

            /// The error class, which decides the HTTP status.
            pub fn kind(self) -> ErrorKind {
                match self {
                    $(Code::$variant => ErrorKind::$kind,)*
                }
            }
        }
    };
}

codes! {
    /// Generic malformed request (bad query or path parameter, invalid value).
    BadRequest = "bad_request" => BadRequest,
    /// The request body is not valid JSON or does not have the expected shape.
    InvalidJson = "invalid_json" => BadRequest,
    /// No such route or resource.
    NotFound = "not_found" => NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed = "method_not_allowed" => MethodNotAllowed,
    /// The body is larger than this endpoint accepts.
    PayloadTooLarge = "payload_too_large" => PayloadTooLarge,
    /// The body's content type is not accepted here.
    UnsupportedMediaType = "unsupported_media_type" => UnsupportedMediaType,
    /// No or unknown credentials (admin endpoints without a configured/presented token).
    Unauthorized = "unauthorized" => Unauthorized,
    /// Credentials presented but not sufficient.
    Forbidden = "forbidden" => Forbidden,
    /// Too many requests; see `Retry-After`.
    RateLimited = "rate_limited" => TooManyRequests,
    /// A bug or an infrastructure failure on this hub; details are logged, not returned.
    InternalError = "internal_error" => Internal,
    /// A dependency of this hub (database, Redis) is temporarily unavailable.
    Unavailable = "service_unavailable" => Unavailable,
    /// A protocol document (manifest, receipt, announce, …) is invalid or badly signed.
    InvalidDocument = "invalid_document" => BadRequest,
    /// No peer with this URL or id.
    PeerNotFound = "peer_not_found" => NotFound,
    /// No active peer offers the invoked capability.
    CapabilityNotFound = "capability_not_found" => NotFound,
    /// An invoke without `product_id` whose capability id several products list.
    AmbiguousCapability = "ambiguous_capability" => Conflict,
    /// A seller-direct call when this hub charges its routing fee on a channel and none was
    /// presented.
    RoutingFeeRequired = "routing_fee_required" => PaymentRequired,
    /// The invoke's `source_hub` is a peer that has not been admitted.
    PeerPending = "peer_pending" => Forbidden,
    /// The invoke's `input` does not match the capability's input schema.
    InputInvalid = "input_invalid" => BadRequest,
    /// The capability's stored input schema does not compile, so no input can be checked:
    /// the call is refused before anything is held (fail closed). 502: the provider
    /// published it.
    InputSchemaInvalid = "input_schema_invalid" => BadGateway,
    /// The invoke's `max_price_usd` is below the routed price.
    PriceLimitExceeded = "price_limit_exceeded" => Conflict,
    /// An `Idempotency-Key` reused with a different request.
    IdempotencyConflict = "idempotency_conflict" => Conflict,
    /// An `Idempotency-Key` whose first request is still running.
    IdempotencyInFlight = "idempotency_in_flight" => Conflict,
    /// The provider did not answer in time.
    ProviderTimeout = "provider_timeout" => GatewayTimeout,
    /// The provider was unreachable or answered unusably.
    ProviderError = "provider_error" => BadGateway,
    /// The provider's `X-Provider-Signature` does not verify.
    ProviderSignatureInvalid = "provider_signature_invalid" => BadGateway,
    /// 402 on invoke: the call needs payment; `reason` says why (`channel_not_found`,
    /// `channel_closed`, `channel_expired`, `insufficient_balance`, …) and `hub_payment`
    /// how to pay this hub.
    PaymentRequired = "payment_required" => PaymentRequired,
    /// 401 on invoke: an `X-API-Key` this hub does not accept.
    InvalidApiKey = "invalid_api_key" => Unauthorized,
    /// The hub could not pay the provider for a channel-funded call.
    ProviderPaymentFailed = "provider_payment_failed" => BadGateway,
    /// A money amount that is negative, not a number or absurd.
    InvalidAmount = "invalid_amount" => BadRequest,
    /// Channel open without `tx_hash` where only on-chain deposits are accepted.
    TxHashRequired = "tx_hash_required" => BadRequest,
    /// Neither demo payments nor an on-chain verifier is configured.
    PaymentsUnavailable = "payments_unavailable" => Unavailable,
    /// The deposit transaction does not prove the deposit.
    DepositNotVerified = "deposit_not_verified" => PaymentRequired,
    /// The chain node that verifies deposits could not be asked.
    PaymentVerifierUnavailable = "payment_verifier_unavailable" => Unavailable,
    /// An on-chain deposit without the payer proof.
    PayerProofRequired = "payer_proof_required" => BadRequest,
    /// A payer proof whose signature is not the payer's.
    PayerProofInvalid = "payer_proof_invalid" => Forbidden,
    /// A channel open by someone other than the deposit's sender.
    NotPayer = "not_payer" => Forbidden,
    /// An x402 payment to the hub that does not pay.
    PaymentInvalid = "payment_invalid" => PaymentRequired,
    /// A paid call on an escrow channel without a valid `payment_authorization`.
    PaymentAuthorizationRequired = "payment_authorization_required" => PaymentRequired,
    /// The transaction already funded a channel.
    TxAlreadyUsed = "tx_already_used" => Conflict,
    /// No payment channel with this id.
    ChannelNotFound = "channel_not_found" => NotFound,
    /// Missing or wrong `X-Payment-Channel-Secret`.
    ChannelUnauthorized = "channel_unauthorized" => PaymentRequired,
    /// The channel's lifetime ended.
    ChannelExpired = "channel_expired" => PaymentRequired,
    /// The channel was closed.
    ChannelClosed = "channel_closed" => PaymentRequired,
    /// The channel's balance does not cover the call.
    InsufficientBalance = "insufficient_balance" => PaymentRequired,
    /// Close refused while calls paid from the channel are in flight.
    ChannelBusy = "channel_busy" => Conflict,
    /// No stored receipt with this nonce.
    ReceiptNotFound = "receipt_not_found" => NotFound,
    /// A fail-closed plugin failed (ranking, an invoke hook) or a plugin route did not
    /// answer in time. Always 503 with `Retry-After`: the plugin runs inside this hub, so it
    /// is this hub's service that is unavailable (a plugin route timeout was 504 before
    /// issue #14).
    PluginUnavailable = "plugin_unavailable" => Unavailable,
    /// A plugin blocked the invoke (before the call, or its answer after it).
    Blocked = "blocked" => Forbidden,
    /// Route plugins left no provider that may serve the call.
    NoProvider = "no_provider" => Forbidden,
    /// A URL fails spec §7.4 (syntax, address range or resolution).
    UnsafeUrl = "unsafe_url" => BadRequest,
    /// Unauthenticated announcements are refused: open admission is off.
    AdmissionClosed = "admission_closed" => Unauthorized,
    /// The bound on pending peers is reached (spec §2.4 rule 3).
    PendingLimit = "pending_peers_full" => TooManyRequests,
    /// The live stats stream has as many clients as it serves.
    TooManyStreams = "too_many_streams" => TooManyRequests,
    /// No Pay-on-Verified verdict for this receipt nonce.
    VerificationNotFound = "verification_not_found" => NotFound,
    /// A pipeline that cannot run: shape, unknown or cyclic nodes, unknown capabilities.
    PipelineInvalid = "pipeline_invalid" => BadRequest,
    /// A pipeline whose routed prices add up to more than its `max_total_usd`.
    BudgetExceeded = "budget_exceeded" => Conflict,
    /// No stored pipeline run with this trace id.
    PipelineNotFound = "pipeline_not_found" => NotFound,
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

//! The payments area's single error type.

use crate::error_code::{ApiError, Code, ErrorCode};
use crate::store::StoreError;

/// Why a channel credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretProblem {
    /// The channel needs `X-Payment-Channel-Secret` and none was sent.
    Missing,
    /// A secret was sent and it is not this channel's.
    Wrong,
}

impl SecretProblem {
    /// Stable snake_case reason for the body's `reason` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing_channel_secret",
            Self::Wrong => "invalid_channel_secret",
        }
    }
}

/// Everything that can go wrong with channels, holds, receipts and idempotency records.
///
/// Amounts are micro-dollars (`i64`); the [`ErrorCode`] rendering below shows them in USD.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// A money amount that is negative, not a number, or absurdly large.
    #[error("invalid {what}: {reason}")]
    InvalidAmount {
        /// Which amount (`deposit_usd`, `price`, …).
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A request field other than an amount is malformed (over-long tx hash, bad id, …).
    #[error("{0}")]
    InvalidRequest(String),
    /// Only on-chain deposits are accepted here and the request carried no `tx_hash`.
    #[error("tx_hash is required: this hub accepts only verified on-chain deposits")]
    TxHashRequired,
    /// Neither demo payments nor an on-chain verifier is configured.
    #[error(
        "payment channels are not available on this hub: enable demo payments \
         (AIMARKET_DEMO_PAYMENTS) or configure an EVM verifier (AIMARKET_EVM_RPC_URL, \
         AIMARKET_PAYMENT_RECIPIENT, AIMARKET_PAYMENT_TOKEN_CONTRACT)"
    )]
    PaymentsUnavailable,
    /// The deposit transaction does not prove the deposit.
    #[error("deposit not verified: {reason}")]
    DepositRejected {
        /// What the verifier found.
        reason: String,
    },
    /// An on-chain deposit came without the payer proof (`payer`, `payer_signature`).
    #[error(
        "payer proof required: sign the AIMarket-Payer-Proof/v1 message for this deposit with \
         the paying wallet (personal_sign) and send payer and payer_signature"
    )]
    PayerProofRequired,
    /// The payer proof's signature does not recover to the named payer.
    #[error("payer proof invalid: {reason}")]
    PayerProofInvalid {
        /// What the check found.
        reason: String,
    },
    /// The deposit was sent by another wallet than the proven payer: only the sender may open
    /// a channel with it (and the deposit stays unused for its owner).
    #[error("not the payer: {reason}")]
    NotPayer {
        /// Who sent the deposit, in words.
        reason: String,
    },
    /// An x402 payment to this hub that does not pay (signature, amount, recipient, window,
    /// a used nonce).
    #[error("x402 payment refused: {reason}")]
    X402Rejected {
        /// What the check found.
        reason: String,
    },
    /// A paid call on an escrow channel without a valid `payment_authorization` (the
    /// depositor's EIP-712 `DebitAuthorization`): which member is missing or wrong, and why.
    #[error("payment_authorization{}: {reason}", field_path(field))]
    AuthorizationRequired {
        /// The member (`payment_authorization` itself, `nonce`, `signature`, …).
        field: &'static str,
        /// What the check found.
        reason: String,
    },
    /// The verifier's backend (the JSON-RPC node) could not be asked.
    #[error("deposit verifier unavailable: {reason}")]
    VerifierUnavailable {
        /// What failed (never a URL with credentials).
        reason: String,
    },
    /// This transaction already funded a channel.
    #[error("transaction {tx_hash} already funded a channel")]
    TxAlreadyUsed {
        /// The (normalised) transaction hash.
        tx_hash: String,
    },
    /// No channel with this id.
    #[error("payment channel {channel_id} not found")]
    ChannelNotFound {
        /// The id that was looked up.
        channel_id: String,
    },
    /// The channel secret is missing or wrong.
    #[error("unauthorized: {} channel secret", match problem {
        SecretProblem::Missing => "missing",
        SecretProblem::Wrong => "invalid",
    })]
    BadSecret {
        /// Missing or wrong.
        problem: SecretProblem,
    },
    /// The channel's lifetime ended; it can only be closed.
    #[error("payment channel {channel_id} expired; close it to settle")]
    Expired {
        /// The channel.
        channel_id: String,
    },
    /// The channel was closed.
    #[error("payment channel {channel_id} is closed")]
    Closed {
        /// The channel.
        channel_id: String,
    },
    /// The channel's available balance does not cover the amount.
    #[error(
        "insufficient channel balance: {} USD available, {} USD needed",
        super::micros_to_usd(*balance_micros),
        super::micros_to_usd(*needed_micros)
    )]
    InsufficientBalance {
        /// Available (deposit − captured − held), micro-dollars.
        balance_micros: i64,
        /// What the call needs, micro-dollars.
        needed_micros: i64,
    },
    /// The channel cannot be closed while calls paid from it are in flight.
    #[error(
        "payment channel {channel_id} has {holds} call(s) in flight; close it after they finish"
    )]
    ChannelBusy {
        /// The channel.
        channel_id: String,
        /// Holds still open.
        holds: i64,
    },
    /// A hold id was used twice (hold ids must be unique, e.g. a receipt nonce).
    #[error("hold {hold_id} already exists")]
    DuplicateHold {
        /// The id.
        hold_id: String,
    },
    /// No hold with this id.
    #[error("hold {hold_id} not found")]
    HoldNotFound {
        /// The id.
        hold_id: String,
    },
    /// The hold was already captured or released, so it cannot change again.
    #[error("hold {hold_id} is already {state}")]
    HoldSettled {
        /// The id.
        hold_id: String,
        /// `captured` or `released`.
        state: &'static str,
    },
    /// A receipt with this nonce is already stored.
    #[error("a receipt with nonce {nonce} is already stored")]
    DuplicateReceipt {
        /// The nonce.
        nonce: String,
    },
    /// A receipt to store is not a JSON object with a string `nonce`.
    #[error("invalid receipt: {0}")]
    InvalidReceipt(String),
    /// A store failure (connection, migration, …).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored row this build cannot interpret.
    #[error("stored payment data is invalid: {0}")]
    Corrupt(String),
}

impl ErrorCode for PaymentError {
    /// A channel that cannot pay is 402 (with a machine `reason`, the detail says it in
    /// words); ledger misuse by this hub (unknown or settled hold, duplicate receipt) is a
    /// 500; store and driver failures as the store reads them.
    fn wire_code(&self) -> Code {
        match self {
            Self::InvalidAmount { .. } => Code::InvalidAmount,
            Self::InvalidRequest(_) => Code::BadRequest,
            Self::TxHashRequired => Code::TxHashRequired,
            Self::PaymentsUnavailable => Code::PaymentsUnavailable,
            Self::DepositRejected { .. } => Code::DepositNotVerified,
            Self::PayerProofRequired => Code::PayerProofRequired,
            Self::PayerProofInvalid { .. } => Code::PayerProofInvalid,
            Self::NotPayer { .. } => Code::NotPayer,
            Self::X402Rejected { .. } => Code::PaymentInvalid,
            Self::AuthorizationRequired { .. } => Code::PaymentAuthorizationRequired,
            Self::VerifierUnavailable { .. } => Code::PaymentVerifierUnavailable,
            Self::TxAlreadyUsed { .. } => Code::TxAlreadyUsed,
            Self::ChannelNotFound { .. } => Code::ChannelNotFound,
            Self::BadSecret { .. } => Code::ChannelUnauthorized,
            Self::Expired { .. } => Code::ChannelExpired,
            Self::Closed { .. } => Code::ChannelClosed,
            Self::InsufficientBalance { .. } => Code::InsufficientBalance,
            Self::ChannelBusy { .. } => Code::ChannelBusy,
            Self::Store(e) => e.wire_code(),
            Self::DuplicateHold { .. }
            | Self::HoldNotFound { .. }
            | Self::HoldSettled { .. }
            | Self::DuplicateReceipt { .. }
            | Self::InvalidReceipt(_)
            | Self::Corrupt(_) => Code::InternalError,
        }
    }

    fn passes_on(&self) -> Option<&dyn ErrorCode> {
        match self {
            Self::Store(e) => Some(e),
            _ => None,
        }
    }

    /// The amounts in USD, the ids and fields the client needs to act, and the `reason`.
    fn decorate(&self, api: ApiError) -> ApiError {
        let api = match self {
            Self::InvalidAmount { what, .. } => api.with_field("field", *what),
            Self::AuthorizationRequired { field, .. } => api.with_field("field", *field),
            Self::VerifierUnavailable { .. } => api.with_retry_after(5),
            Self::TxAlreadyUsed { tx_hash } => api.with_field("tx_hash", tx_hash.as_str()),
            Self::ChannelNotFound { channel_id }
            | Self::Expired { channel_id }
            | Self::Closed { channel_id } => api.with_field("channel_id", channel_id.as_str()),
            Self::InsufficientBalance {
                balance_micros,
                needed_micros,
            } => {
                let needed = super::micros_to_usd(*needed_micros);
                api.with_field("balance_usd", super::micros_to_usd(*balance_micros))
                    .with_field("needed", needed)
                    .with_field("needed_usd", needed)
            }
            Self::ChannelBusy { channel_id, holds } => api
                .with_field("channel_id", channel_id.as_str())
                .with_field("in_flight", *holds)
                .with_retry_after(1),
            _ => api,
        };
        match self.reason() {
            Some(reason) => api.with_field("reason", reason),
            None => api,
        }
    }
}

impl PaymentError {
    /// The short machine reason of a 402 (the body's `reason` field), if this is one.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::BadSecret { problem } => Some(problem.as_str()),
            Self::Expired { .. } => Some("channel_expired"),
            Self::Closed { .. } => Some("channel_closed"),
            Self::InsufficientBalance { .. } => Some("insufficient_balance"),
            Self::DepositRejected { .. } => Some("deposit_not_verified"),
            Self::AuthorizationRequired { .. } => Some("payment_authorization_required"),
            _ => None,
        }
    }
}

/// `.field` after `payment_authorization`, unless the field is the object itself.
fn field_path(field: &str) -> String {
    if field == "payment_authorization" {
        String::new()
    } else {
        format!(".{field}")
    }
}

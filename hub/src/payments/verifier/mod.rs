//! Deposit verification: a [`PaymentVerifier`] decides whether a channel's funding
//! transaction proves the deposit. Two exist: [`DemoVerifier`] (placeholder hashes, only with
//! demo payments on) and [`evm::EvmVerifier`] (an ERC-20 transfer checked over JSON-RPC).

pub mod evm;

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::PaymentError;
use super::payer_proof::PayerProof;
use crate::settings::Settings;

pub use evm::{EvmConfig, EvmVerifier};

/// The deposit a channel open claims.
#[derive(Debug, Clone, PartialEq)]
pub struct DepositClaim {
    /// Deposit, micro-dollars (= token base units for 6-decimal stablecoins).
    pub deposit_micros: i64,
    /// The deposit as the opener sent it: the payer proof signs `round(usd × 100)` of this
    /// very float (the extension's canonical `amount_cents`).
    pub deposit_usd: f64,
    /// The paying wallet's proof, when the request carried one.
    pub payer_proof: Option<PayerProof>,
    /// The funding transaction (normalised: trimmed, `0x…` hex lower-cased), if any.
    pub tx_hash: Option<String>,
    /// Token label.
    pub token: String,
    /// Chain label.
    pub chain: String,
}

/// A verifier's verdict on an accepted deposit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDeposit {
    /// Which verifier accepted it (stored with the channel).
    pub verifier: &'static str,
    /// Whether debits must present the channel secret: true for real money.
    pub secret_required: bool,
    /// The proven sender of the deposit (`0x…` lower-case), where refunds go back to.
    pub payer: Option<String>,
}

/// Decides whether a deposit claim is funded.
pub trait PaymentVerifier: Send + Sync + fmt::Debug {
    /// Short name stored with the channel (`demo`, `evm`).
    fn name(&self) -> &'static str;

    /// Whether this verifier is the one to judge `claim` (by the shape of its tx hash).
    fn accepts(&self, claim: &DepositClaim) -> bool;

    /// Checks the claim; `Err(DepositRejected)` when the proof does not hold,
    /// `Err(VerifierUnavailable)` when it could not be checked.
    fn verify<'a>(
        &'a self,
        claim: &'a DepositClaim,
    ) -> BoxFuture<'a, Result<VerifiedDeposit, PaymentError>>;

    /// What this verifier accepts, for the message when none does.
    fn describe(&self) -> &'static str;
}

/// Accepts placeholder deposits: a missing tx hash (the Rust/TS/Dart SDKs send none) or one
/// starting `demo`, `0xdemo` or `agent-` (the Python agent sends `agent-<unix>`). Only ever
/// installed when demo payments are on; its channels need no secret to debit.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoVerifier;

/// Prefixes of placeholder transaction hashes (compared case-insensitively).
pub const DEMO_TX_PREFIXES: [&str; 3] = ["demo", "0xdemo", "agent-"];

impl PaymentVerifier for DemoVerifier {
    fn name(&self) -> &'static str {
        "demo"
    }

    fn accepts(&self, claim: &DepositClaim) -> bool {
        match &claim.tx_hash {
            None => true,
            Some(hash) => DEMO_TX_PREFIXES.iter().any(|p| {
                hash.get(..p.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(p))
            }),
        }
    }

    fn verify<'a>(
        &'a self,
        _claim: &'a DepositClaim,
    ) -> BoxFuture<'a, Result<VerifiedDeposit, PaymentError>> {
        Box::pin(async {
            Ok(VerifiedDeposit {
                verifier: "demo",
                secret_required: false,
                payer: None,
            })
        })
    }

    fn describe(&self) -> &'static str {
        "demo payments accept no tx_hash or one starting with demo, 0xdemo or agent-"
    }
}

/// The configured verifiers, asked in order; the first that accepts a claim judges it.
#[derive(Debug, Clone, Default)]
pub struct Verifiers {
    list: Vec<Arc<dyn PaymentVerifier>>,
}

impl Verifiers {
    /// No verifier: channel open answers `payments_unavailable`.
    pub fn none() -> Self {
        Self::default()
    }

    /// These verifiers, asked in this order.
    pub fn new(list: Vec<Arc<dyn PaymentVerifier>>) -> Self {
        Self { list }
    }

    /// Demo first (when `demo_payments` is on), then EVM (when its three settings are set).
    pub fn from_settings(settings: &Settings) -> Result<Self, PaymentError> {
        let mut list: Vec<Arc<dyn PaymentVerifier>> = Vec::new();
        if settings.demo_payments {
            list.push(Arc::new(DemoVerifier));
        }
        if let Some(config) = EvmConfig::from_settings(&settings.payments) {
            list.push(Arc::new(EvmVerifier::new(config)?));
        }
        Ok(Self { list })
    }

    /// Whether no verifier is configured.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Names of the configured verifiers, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.list.iter().map(|v| v.name()).collect()
    }

    /// Judges `claim` with the first verifier that accepts it.
    pub async fn verify(&self, claim: &DepositClaim) -> Result<VerifiedDeposit, PaymentError> {
        if self.list.is_empty() {
            return Err(PaymentError::PaymentsUnavailable);
        }
        if let Some(verifier) = self.list.iter().find(|v| v.accepts(claim)) {
            return verifier.verify(claim).await;
        }
        match &claim.tx_hash {
            None => Err(PaymentError::TxHashRequired),
            Some(hash) => Err(PaymentError::DepositRejected {
                reason: format!(
                    "tx_hash `{hash}` is not accepted here ({})",
                    self.list
                        .iter()
                        .map(|v| v.describe())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            }),
        }
    }
}

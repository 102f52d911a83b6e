//! Payment channels, holds, receipts, invocation records and idempotency records: the ledger.
//!
//! Money is `i64` micro-dollars everywhere inside ([`usd_to_micros`] at the edge,
//! [`micros_to_usd`] on the way out); balances never touch a float. USDC/USDT have six
//! decimals, so one token base unit is one micro-dollar.
//!
//! A channel row carries `deposit`, `used` (captured) and `held` (reserved by calls in
//! flight); the available balance is `deposit − used − held`, and every change to it is one
//! guarded SQL statement (`… WHERE deposit - used - held >= $amount`), so concurrent holds
//! can never overdraw a channel on either engine: PostgreSQL re-checks the guard under the
//! row lock, SQLite serialises writers (the store's writer slot plus `BEGIN IMMEDIATE`). A
//! `CHECK (used + held <= deposit)` in both schemas backs the guard up.
//!
//! The call lifecycle is [`Ledger::hold`] before forwarding, which returns a [`HoldGuard`]
//! consumed by exactly one of [`HoldGuard::capture`] (one transaction: hold captured, channel
//! debited, receipt stored) or [`HoldGuard::release`]; a guard dropped unsettled is released
//! from a spawned task and counted. Holds carry a lease; holds left behind by a dead process are released
//! by [`Ledger::recover_on_startup`] and by the periodic [`Ledger::release_expired_holds`].
//!
//! Channel secrets: the secret is returned once at open and only its SHA-256 is stored. A
//! channel funded by a verified on-chain deposit requires the secret for every debit; a demo
//! channel accepts a debit without one (the Python agent's CLI path sends none, CLIENTS.md
//! §7.1) but refuses a wrong one. Closing needs no secret: the refund can only go back to the
//! depositor.

pub mod chain;
mod channels;
mod error;
pub mod escrow;
mod hold_guard;
mod holds;
mod idempotency;
pub mod payer_proof;
mod records;
pub mod refunds;
pub mod verifier;
pub mod verify;
pub mod x402;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use channels::{Channel, ChannelSecret, ChannelStatus, OpenChannel, Settlement};
pub use error::{PaymentError, SecretProblem};
pub use hold_guard::{HoldGuard, ReleaseReason};
pub use holds::{Hold, HoldState};
pub use idempotency::{IdemState, StoredResponse};
pub use records::{InvocationRecord, PeerStats};
pub use verifier::{DepositClaim, PaymentVerifier, VerifiedDeposit, Verifiers};

use crate::settings::Settings;
use crate::store::Store;

/// Micro-dollars per dollar.
pub const MICROS_PER_USD: i64 = 1_000_000;
/// Largest amount [`usd_to_micros`] accepts, in USD (far above any real call or deposit, far
/// below `i64::MAX` micros, so sums of many amounts cannot overflow).
pub const MAX_AMOUNT_USD: f64 = 1e9;
/// Largest channel deposit accepted, in USD.
pub const MAX_DEPOSIT_USD: f64 = 1_000_000.0;
/// How long a hold outlives the provider timeout before it counts as abandoned.
pub const HOLD_LEASE_MARGIN: Duration = Duration::from_secs(60);
/// How often a running hub releases abandoned holds.
pub const HOLD_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Converts a USD amount to micro-dollars, rounding to the nearest micro-dollar (so that
/// `0.001` becomes exactly 1000 although its binary value is a hair below).
///
/// Refuses NaN, infinities, negative amounts and amounts above [`MAX_AMOUNT_USD`].
pub fn usd_to_micros(usd: f64) -> Result<i64, PaymentError> {
    let invalid = |reason: &str| PaymentError::InvalidAmount {
        what: "amount",
        reason: reason.to_owned(),
    };
    if usd.is_nan() {
        return Err(invalid("not a number"));
    }
    if usd.is_infinite() {
        return Err(invalid("not finite"));
    }
    if usd < 0.0 {
        return Err(invalid("must not be negative"));
    }
    if usd > MAX_AMOUNT_USD {
        return Err(invalid(
            "above the largest amount this hub handles (1e9 USD)",
        ));
    }
    // In range and finite, so the cast cannot saturate.
    Ok((usd * MICROS_PER_USD as f64).round() as i64)
}

/// Converts micro-dollars to USD for display on the wire (never for arithmetic).
pub fn micros_to_usd(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_USD as f64
}

/// Tunables of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Lifetime of a new channel (`AIMARKET_CHANNEL_TTL_S`, spec §6.1: 24 h).
    pub channel_ttl: Duration,
    /// How long a hold may stay open before it counts as abandoned (released by the sweep
    /// and, on PostgreSQL where other replicas may be mid-call, by startup recovery).
    /// Must exceed the longest provider call.
    pub hold_lease: Duration,
}

impl LedgerConfig {
    /// The configured channel lifetime; holds lease the provider timeout plus a margin.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            channel_ttl: Duration::from_secs(settings.payments.channel_ttl_s),
            hold_lease: Duration::from_secs(settings.invoke.provider_timeout_s) + HOLD_LEASE_MARGIN,
        }
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            channel_ttl: Duration::from_secs(24 * 3600),
            hold_lease: Duration::from_secs(30) + HOLD_LEASE_MARGIN,
        }
    }
}

/// The payment ledger: channels, holds, receipts, invocation records and idempotency
/// records, on the hub's [`Store`]. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Ledger {
    store: Store,
    verifiers: Arc<Verifiers>,
    config: LedgerConfig,
    /// Where each stored invocation record is announced (live stats).
    live: crate::stats::LiveFeed,
    /// The hub's wallet, when configured: refunds on close, x402 settlement.
    payout: Option<Arc<refunds::Payout>>,
    /// The escrow contract of non-custodial channels, when configured.
    escrow: Option<Arc<escrow::Escrow>>,
    /// Hold guards dropped unsettled (each one a bug in a settlement path).
    holds_dropped: Arc<AtomicU64>,
    /// What never changes about the channels seen (see `holds::ChannelKeys`).
    channel_keys: moka::sync::Cache<String, Arc<holds::ChannelKeys>>,
}

impl Ledger {
    /// A ledger on `store` that verifies deposits with `verifiers`.
    pub fn new(store: Store, verifiers: Verifiers, config: LedgerConfig) -> Self {
        Self {
            store,
            verifiers: Arc::new(verifiers),
            config,
            live: crate::stats::LiveFeed::default(),
            payout: None,
            escrow: None,
            holds_dropped: Arc::default(),
            channel_keys: moka::sync::Cache::new(holds::CACHED_CHANNELS),
        }
    }

    /// This ledger paying refunds (and x402 settlements) from `payout`.
    pub fn with_payout(mut self, payout: Arc<refunds::Payout>) -> Self {
        self.payout = Some(payout);
        self
    }

    /// The hub's wallet and token, when configured.
    pub fn payout(&self) -> Option<&Arc<refunds::Payout>> {
        self.payout.as_ref()
    }

    /// A ledger configured from the hub settings (demo switch, EVM verifier, TTLs).
    pub fn from_settings(store: Store, settings: &Settings) -> Result<Self, PaymentError> {
        Ok(Self::new(
            store,
            Verifiers::from_settings(settings)?,
            LedgerConfig::from_settings(settings),
        ))
    }

    /// The store the ledger writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The live feed every stored invocation record is published to.
    pub fn live(&self) -> &crate::stats::LiveFeed {
        &self.live
    }

    /// The tunables in force.
    pub fn config(&self) -> LedgerConfig {
        self.config
    }

    /// How many hold guards were dropped unsettled (and released from a spawned task):
    /// `aimarket_ledger_holds_dropped_total`.
    pub fn holds_dropped(&self) -> u64 {
        self.holds_dropped.load(Ordering::Relaxed)
    }

    fn count_dropped_hold(&self) {
        self.holds_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether any deposit verifier is configured (channels can be opened at all).
    pub fn payments_available(&self) -> bool {
        !self.verifiers.is_empty()
    }

    /// Releases abandoned holds (and purges expired idempotency records) every
    /// [`HOLD_SWEEP_INTERVAL`] until the store is closed or the returned task is aborted.
    /// Other errors are logged and retried on the next tick.
    pub fn spawn_hold_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let ledger = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HOLD_SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match ledger.release_expired_holds().await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(released = n, "released abandoned channel holds"),
                    // The hub is shutting down and closed its pools.
                    Err(PaymentError::Store(e)) if e.is_closed() => break,
                    Err(e) => tracing::error!(error = %e, "releasing abandoned holds failed"),
                }
                if let Err(e) = ledger.reconcile_sends().await {
                    tracing::warn!(error = %e, "reconciling the wallet's sends failed");
                }
                if let Err(e) = ledger.collect_debits().await {
                    tracing::warn!(error = %e, "collecting escrow debits failed");
                }
                if let Err(e) = ledger.settle_expired_escrow().await {
                    tracing::warn!(error = %e, "settling expired escrow channels failed");
                }
                if let Err(e) = ledger.purge_idempotency().await {
                    tracing::error!(error = %e, "purging expired idempotency records failed");
                }
            }
        })
    }
}

/// True when `id` (a channel id, hold id or nonce from a request) can name a stored row:
/// 1 to `max` bytes and no NUL. PostgreSQL refuses text containing U+0000 outright, so a
/// lookup with one would fail as a database error (a 500) instead of finding nothing.
fn is_lookup_key(id: &str, max: usize) -> bool {
    !id.is_empty() && id.len() <= max && !id.contains('\0')
}

/// Milliseconds of a duration as stored (saturating; durations here are small).
fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

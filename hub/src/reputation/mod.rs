//! Reputation (spec §5): a trust score per admitted (active) peer from measured inputs,
//! per-capability adjustments, and signed reputation events from other hubs. Pending peers are
//! not scored: admission comes before trust (§2.4).
//!
//! **The score** (§5.1) is `0.2·age + 0.3·bond + 0.35·success_rate + 0.15·volume`:
//!
//! - `age` = days since the peer's first successful crawl / 365, capped at 1;
//! - `bond` = `min(log10(bond_usd) / 4, 1)`, 0 below $1; the bond is what the operator
//!   configured for the peer (`[reputation.peer_bonds]`, `AIMARKET_PEER_BONDS`), 0 otherwise;
//! - `success_rate` = observed successes / observations with a prior: [`PRIOR_CALLS`]
//!   pseudo-observations at [`PRIOR_RATE`], so a peer with no calls scores 0.5 and a single
//!   failure cannot sink a new peer (1 failure of 1 call gives 0.42, 20 of 20 gives 0.92);
//! - `volume` = `min(log10(volume_usd_30d) / 5, 1)`, 0 below $1.
//!
//! Observations are the invocations routed through this hub over the last 30 days (the
//! ledger's invocation records, attributed to the peer whose catalog listed the capability)
//! plus signed events from other admitted hubs, each counting [`EVENT_WEIGHT`] of an own
//! observation (`invocation_success`/`verify_passed` as a success,
//! `invocation_failure`/`invocation_failed`/`invocation_error`/`verify_failed` as a failure,
//! `price_mismatch` (this hub's own `price-guard` findings, or another hub's) as a failure,
//! other types recorded but neutral; event prices, except a mismatch's asked amount, add to
//! volume with the same weight). This hub's own events count like an admitted peer's. A
//! single reporting hub counts for at most [`EVENT_CAP_PER_CONSUMER`] events per provider in
//! the window, so one peer cannot flood the score.
//!
//! **A capability's trust** is its listing peer's score, except once it has
//! [`MIN_CAPABILITY_CALLS`] calls of its own in the window: then the peer's success
//! component is replaced by the capability's own (prior-smoothed) success rate. The catalog
//! reads it through `catalog::trust::capability_trust`.
//!
//! **When**: [`spawn`] recomputes every `reputation.recompute_interval_s`, after every
//! published catalog change (crawls, operator actions) and when woken, always off the request
//! path. Scores are stored rounded to 1/1000, and only changes are written; a change bumps
//! the catalog version and publishes the affected capability keys, so search (`trust_score`,
//! `min_trust`), the manifest's `by_hub` and the well-known `peers` follow.

pub mod events;
pub mod mismatch;
mod query;
mod recompute;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

pub use events::{EventBatchOutcome, MAX_EVENTS, MAX_SKEW, ingest_events};
pub use mismatch::{MismatchQueue, MismatchSink, mismatch_channel, spawn_recorder};
pub use query::report;
pub use recompute::{RecomputeOutcome, recompute};

use crate::payments::PaymentError;
use crate::state::AppState;
use crate::store::StoreError;

/// The §5.1 weights.
pub const WEIGHTS: Weights = Weights {
    age: 0.2,
    bond: 0.3,
    success_rate: 0.35,
    volume: 0.15,
};
/// The observation window.
pub const WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// Pseudo-observations of the success-rate prior.
pub const PRIOR_CALLS: f64 = 5.0;
/// Success rate of the prior.
pub const PRIOR_RATE: f64 = 0.5;
/// Weight of one signed event relative to one call routed through this hub.
pub const EVENT_WEIGHT: f64 = 0.25;
/// Events counted per (reporting hub, provider) in the window.
pub const EVENT_CAP_PER_CONSUMER: i64 = 100;
/// Calls a capability needs in the window before its own success rate counts.
pub const MIN_CAPABILITY_CALLS: i64 = 10;
/// Stored scores are rounded to 1/`SCORE_SCALE`; smaller movements are not written.
pub const SCORE_SCALE: f64 = 1000.0;

/// Weights of the four components (they sum to 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Weights {
    /// Age since the first successful crawl.
    pub age: f64,
    /// Operator-configured bond.
    pub bond: f64,
    /// Observed success rate.
    pub success_rate: f64,
    /// Observed volume.
    pub volume: f64,
}

/// The four factors of a score, each in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Components {
    /// `min(days / 365, 1)`.
    pub age: f64,
    /// `min(log10(bond_usd) / 4, 1)`, 0 below $1.
    pub bond: f64,
    /// Prior-smoothed success rate.
    pub success_rate: f64,
    /// `min(log10(volume_usd_30d) / 5, 1)`, 0 below $1.
    pub volume: f64,
}

impl Components {
    /// The weighted sum, rounded to 1/[`SCORE_SCALE`].
    pub fn trust(&self) -> f64 {
        round_score(
            WEIGHTS.age * self.age
                + WEIGHTS.bond * self.bond
                + WEIGHTS.success_rate * self.success_rate
                + WEIGHTS.volume * self.volume,
        )
    }
}

/// `x` rounded to 1/[`SCORE_SCALE`] and clamped to `[0, 1]`.
pub fn round_score(x: f64) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    ((x * SCORE_SCALE).round() / SCORE_SCALE).clamp(0.0, 1.0)
}

/// Age factor: days between `first_success_ms` and `now_ms` over 365, capped at 1; 0 for a
/// peer never crawled successfully.
pub fn age_factor(first_success_ms: Option<i64>, now_ms: i64) -> f64 {
    const DAY_MS: f64 = 86_400_000.0;
    match first_success_ms {
        Some(first) if now_ms > first => ((now_ms - first) as f64 / DAY_MS / 365.0).min(1.0),
        _ => 0.0,
    }
}

/// `min(log10(usd) / scale, 1)`, 0 below $1 (and for nonsense values).
fn log_factor(usd: f64, scale: f64) -> f64 {
    if !usd.is_finite() || usd < 1.0 {
        return 0.0;
    }
    (usd.log10() / scale).min(1.0)
}

/// Bond factor: 0 at $1, 1 at $10,000.
pub fn bond_factor(bond_usd: f64) -> f64 {
    log_factor(bond_usd, 4.0)
}

/// Volume factor: 0 at $1, 1 at $100,000 in 30 days.
pub fn volume_factor(volume_usd: f64) -> f64 {
    log_factor(volume_usd, 5.0)
}

/// Success rate of `successes` out of `observations` (both possibly fractional, events
/// being weighted), smoothed by the prior.
pub fn success_rate(successes: f64, observations: f64) -> f64 {
    let observations = observations.max(0.0);
    let successes = successes.clamp(0.0, observations);
    (successes + PRIOR_CALLS * PRIOR_RATE) / (observations + PRIOR_CALLS)
}

/// Why a reputation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReputationError {
    /// The request is malformed (batch shape, hub URL).
    #[error("{0}")]
    BadRequest(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger failed while reading invocation records.
    #[error(transparent)]
    Ledger(#[from] PaymentError),
}

impl From<sqlx::Error> for ReputationError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(e))
    }
}

/// The recompute schedule's shared handle (in `AppState`).
#[derive(Debug, Default)]
pub struct Reputation {
    wake: Notify,
    /// The catalog version this hub's last recompute published, so the schedule does not
    /// react to its own update.
    published: AtomicI64,
}

impl Reputation {
    /// Asks the schedule for a recompute soon (after events or operator actions).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn remember_published(&self, version: i64) {
        self.published.store(version, Ordering::Release);
    }

    fn published(&self) -> i64 {
        self.published.load(Ordering::Acquire)
    }
}

/// Starts the recompute schedule: now, every `reputation.recompute_interval_s`, after each
/// catalog change it did not publish itself, and when woken. Ends at shutdown.
pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    let interval = Duration::from_secs(state.settings.reputation.recompute_interval_s.max(1));
    let mut updates = state.subscribe_catalog();
    tokio::spawn(async move {
        loop {
            if state.crawl.is_shut_down() {
                return;
            }
            match recompute(&state).await {
                Ok(outcome) if outcome.peers_changed + outcome.capabilities_changed > 0 => {
                    tracing::debug!(
                        peers = outcome.peers_changed,
                        capabilities = outcome.capabilities_changed,
                        "trust scores updated"
                    );
                }
                Ok(_) => {}
                Err(ReputationError::Store(StoreError::Database(sqlx::Error::PoolClosed))) => {
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "trust score recompute failed"),
            }
            let own = state.reputation.published();
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = state.reputation.wake.notified() => {}
                changed = async {
                    loop {
                        if updates.changed().await.is_err() {
                            return false;
                        }
                        if updates.borrow_and_update().version != own {
                            return true;
                        }
                    }
                } => {
                    if !changed {
                        return;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one() {
        let sum = WEIGHTS.age + WEIGHTS.bond + WEIGHTS.success_rate + WEIGHTS.volume;
        assert!((sum - 1.0).abs() < 1e-12);
    }

    #[test]
    fn factors_follow_the_spec() {
        assert_eq!(bond_factor(0.0), 0.0);
        assert_eq!(bond_factor(0.5), 0.0);
        assert_eq!(bond_factor(1.0), 0.0);
        assert!((bond_factor(100.0) - 0.5).abs() < 1e-12);
        assert_eq!(bond_factor(10_000.0), 1.0);
        assert_eq!(bond_factor(1e9), 1.0);
        assert_eq!(bond_factor(f64::NAN), 0.0);
        assert!((volume_factor(1_000.0) - 0.6).abs() < 1e-12);
        assert_eq!(volume_factor(100_000.0), 1.0);
        let day = 86_400_000;
        assert_eq!(age_factor(None, day), 0.0);
        assert!((age_factor(Some(0), 73 * day) - 0.2).abs() < 1e-12);
        assert_eq!(age_factor(Some(0), 800 * day), 1.0);
        assert_eq!(age_factor(Some(5), 1), 0.0);
    }

    #[test]
    fn the_prior_keeps_new_peers_neutral() {
        assert_eq!(success_rate(0.0, 0.0), 0.5);
        assert!((success_rate(0.0, 1.0) - 2.5 / 6.0).abs() < 1e-12);
        assert!((success_rate(20.0, 20.0) - 22.5 / 25.0).abs() < 1e-12);
        // Garbage in stays in range.
        assert_eq!(success_rate(5.0, -1.0), 0.5);
        assert!(success_rate(9.0, 3.0) <= 1.0);
    }

    #[test]
    fn trust_is_the_weighted_sum_rounded() {
        let fresh = Components {
            success_rate: 0.5,
            ..Components::default()
        };
        assert_eq!(fresh.trust(), 0.175);
        let perfect = Components {
            age: 1.0,
            bond: 1.0,
            success_rate: 1.0,
            volume: 1.0,
        };
        assert_eq!(perfect.trust(), 1.0);
        assert_eq!(round_score(0.12345), 0.123);
        assert_eq!(round_score(f64::INFINITY), 0.0);
    }
}

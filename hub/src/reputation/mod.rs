//! Reputation (spec §5): a trust score per admitted (active) peer from measured inputs,
//! per-capability adjustments, and signed reputation events from other hubs. Pending peers are
//! not scored: admission comes before trust (§2.4).
//!
//! **The score** is the posterior mean of a Beta distribution over "a call routed to this
//! peer succeeds": an operator-admitted peer starts from an explicit prior that observed
//! calls then move.
//!
//! ```text
//! trust      = (k·m + S) / (k + N)           Beta(k·m, k·(1−m)) updated with S of N
//! m          = prior + (1 − prior)·standing  the prior mean
//! standing   = 0.2·age + 0.3·bond + 0.15·volume   (§5.1's factors other than success)
//! ```
//!
//! - `prior` (`reputation.admitted_prior`, default 0.6) is what the operator's admission is
//!   worth; it must not be below the floor for fresh peers to be visible (the defaults are
//!   0.6 over a 0.3 floor);
//! - `k` (`reputation.prior_weight`, default 10) is how many observed calls the prior is
//!   worth, so one early failure cannot sink a peer (1 failure of 1 call gives 0.545) and
//!   a peer whose calls keep failing falls below the floor (11 failures of 11: 0.286);
//! - `age` = days since the peer's first successful crawl / 365, capped at 1;
//!   `bond` = `min(log10(bond_usd) / 4, 1)`, 0 below $1 (the operator-configured
//!   `[reputation.peer_bonds]`, `AIMARKET_PEER_BONDS`); `volume` =
//!   `min(log10(volume_usd_30d) / 5, 1)`, 0 below $1: standing raises the prior mean
//!   toward 1, never lowers it;
//! - `S` and `N` are the weighted successes and observations below.
//!
//! The trust floor (`reputation.min_trust_score`, default 0.3) is published as the
//! well-known's `federation.min_trust_score` and is the floor search and the well-known
//! `peers` apply ([`TrustPolicy::passes`]).
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
//! [`MIN_CAPABILITY_CALLS`] calls of its own in the window: then it is the same posterior
//! with the peer's prior mean `m` and the capability's own calls as `S` and `N`. The
//! catalog reads it through `catalog::trust::capability_trust`.
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

use aimarket_protocol::signing::KeyPair;

use crate::catalog::CatalogFeed;
use crate::error_code::{Code, ErrorCode};
use crate::payments::{Ledger, PaymentError};
use crate::settings::{PublicUrl, ReputationSettings};
use crate::state::AppState;
use crate::store::{Store, StoreError};

/// Weights of the standing factors: §5.1's weights of the factors other than success.
pub const WEIGHTS: Weights = Weights {
    age: 0.2,
    bond: 0.3,
    volume: 0.15,
};
/// The observation window.
pub const WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// Weight of one signed event relative to one call routed through this hub.
pub const EVENT_WEIGHT: f64 = 0.25;
/// Events counted per (reporting hub, provider) in the window.
pub const EVENT_CAP_PER_CONSUMER: i64 = 100;
/// Calls a capability needs in the window before its own success rate counts.
pub const MIN_CAPABILITY_CALLS: i64 = 10;
/// Stored scores are rounded to 1/`SCORE_SCALE`; smaller movements are not written.
pub const SCORE_SCALE: f64 = 1000.0;
/// The formula, as `GET /ai-market/v2/reputation/{hub}` shows it.
pub const FORMULA: &str = "trust = (k*m + S) / (k + N); m = prior + (1 - prior)*standing; \
     standing = 0.2*age + 0.3*bond + 0.15*volume";

/// Weights of the standing factors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Weights {
    /// Age since the first successful crawl.
    pub age: f64,
    /// Operator-configured bond.
    pub bond: f64,
    /// Observed volume.
    pub volume: f64,
}

/// The operator's trust policy: the admission prior, its weight and the floor
/// (`[reputation]` settings). One value, so the recompute, the report and the filters
/// cannot disagree.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrustPolicy {
    /// Prior trust of an admitted peer with no standing and no history.
    pub prior: f64,
    /// Pseudo-observations the prior is worth (`k`).
    pub prior_weight: f64,
    /// The trust floor (the well-known's `federation.min_trust_score`).
    pub min_trust_score: f64,
}

impl TrustPolicy {
    /// The policy the settings configure.
    pub fn of(settings: &crate::settings::ReputationSettings) -> Self {
        Self {
            prior: settings.admitted_prior,
            prior_weight: settings.prior_weight,
            min_trust_score: settings.min_trust_score,
        }
    }

    /// The prior mean `m` of a peer with this standing.
    pub fn prior_mean(&self, standing: f64) -> f64 {
        let prior = self.prior.clamp(0.0, 1.0);
        prior + (1.0 - prior) * standing.clamp(0.0, 1.0)
    }

    /// The posterior mean after `successes` of `observations` (both possibly fractional,
    /// events being weighted), starting from prior mean `m`.
    pub fn posterior(&self, m: f64, successes: f64, observations: f64) -> f64 {
        let observations = if observations.is_finite() {
            observations.max(0.0)
        } else {
            0.0
        };
        let successes = if successes.is_finite() {
            successes.clamp(0.0, observations)
        } else {
            0.0
        };
        let k = self.prior_weight.max(f64::MIN_POSITIVE);
        (k * m.clamp(0.0, 1.0) + successes) / (k + observations)
    }

    /// Whether a trust score is at or above the floor. Scores are stored rounded to
    /// 1/[`SCORE_SCALE`], so the floor is compared at that precision too.
    pub fn passes(&self, trust: f64) -> bool {
        round_score(trust) + 1e-9 >= round_score(self.min_trust_score)
    }
}

/// The factors and results of one score, each in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Components {
    /// `min(days / 365, 1)`.
    pub age: f64,
    /// `min(log10(bond_usd) / 4, 1)`, 0 below $1.
    pub bond: f64,
    /// `min(log10(volume_usd_30d) / 5, 1)`, 0 below $1.
    pub volume: f64,
    /// The posterior success probability (the trust before rounding).
    pub success_rate: f64,
}

impl Components {
    /// `0.2·age + 0.3·bond + 0.15·volume`.
    pub fn standing(&self) -> f64 {
        WEIGHTS.age * self.age + WEIGHTS.bond * self.bond + WEIGHTS.volume * self.volume
    }

    /// The trust score: the posterior, rounded to 1/[`SCORE_SCALE`].
    pub fn trust(&self) -> f64 {
        round_score(self.success_rate)
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

impl ErrorCode for ReputationError {
    /// A malformed batch or hub URL 400; store and ledger errors as those areas report them.
    fn wire_code(&self) -> Code {
        match self {
            Self::BadRequest(_) => Code::BadRequest,
            Self::Store(e) => e.wire_code(),
            Self::Ledger(e) => e.wire_code(),
        }
    }

    fn passes_on(&self) -> Option<&dyn ErrorCode> {
        match self {
            Self::BadRequest(_) => None,
            Self::Store(e) => Some(e),
            Self::Ledger(e) => Some(e),
        }
    }
}

/// What the reputation services use: the tables, the hub's own call statistics, the trust
/// settings, the schedule, the catalog feed (a recompute publishes what changed), and the
/// hub's URL and key (its own events). Lent by `AppState::reputation_deps`.
#[derive(Debug, Clone, Copy)]
pub struct ReputationDeps<'a> {
    /// Peers, capabilities, events and reputation rows.
    pub store: &'a Store,
    /// This hub's own invocation statistics per peer.
    pub ledger: &'a Ledger,
    /// The trust policy, bonds and the recompute interval.
    pub settings: &'a ReputationSettings,
    /// The recompute schedule (woken by new events).
    pub schedule: &'a Reputation,
    /// Where a recompute publishes the capabilities whose trust changed.
    pub feed: &'a CatalogFeed,
    /// This hub's public URL (its origin as `consumer_hub`).
    pub public_url: &'a PublicUrl,
    /// Signs this hub's own events.
    pub signing_key: &'a KeyPair,
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
            match recompute(&state.reputation_deps()).await {
                Ok(outcome) if outcome.peers_changed + outcome.capabilities_changed > 0 => {
                    tracing::debug!(
                        peers = outcome.peers_changed,
                        capabilities = outcome.capabilities_changed,
                        "trust scores updated"
                    );
                }
                Ok(_) => {}
                Err(ReputationError::Store(e)) if e.is_closed() => return,
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

    fn policy() -> TrustPolicy {
        TrustPolicy::of(&crate::settings::ReputationSettings::default())
    }

    #[test]
    fn an_admitted_peer_starts_at_the_prior_and_calls_move_it() {
        let p = policy();
        assert_eq!(
            (p.prior, p.prior_weight, p.min_trust_score),
            (0.6, 10.0, 0.3)
        );
        let m = p.prior_mean(0.0);
        assert_eq!(m, 0.6);
        // No history: the prior itself, above the floor.
        assert_eq!(round_score(p.posterior(m, 0.0, 0.0)), 0.6);
        assert!(p.passes(p.posterior(m, 0.0, 0.0)));
        // One early failure does not sink it; eleven straight failures do.
        assert_eq!(round_score(p.posterior(m, 0.0, 1.0)), 0.545);
        assert!(p.passes(p.posterior(m, 0.0, 10.0)));
        assert_eq!(round_score(p.posterior(m, 0.0, 11.0)), 0.286);
        assert!(!p.passes(p.posterior(m, 0.0, 11.0)));
        // Successes raise it: 20 of 20 gives (6 + 20) / 30.
        assert_eq!(round_score(p.posterior(m, 20.0, 20.0)), 0.867);
        // Garbage in stays in range.
        assert_eq!(p.posterior(m, 5.0, -1.0), 0.6);
        assert!(p.posterior(m, 9.0, 3.0) <= 1.0);
        assert_eq!(p.posterior(m, f64::NAN, f64::INFINITY), 0.6);
    }

    #[test]
    fn standing_raises_the_prior_mean() {
        let p = policy();
        let c = Components {
            age: 1.0,
            bond: 1.0,
            volume: 1.0,
            success_rate: 0.0,
        };
        assert!((c.standing() - 0.65).abs() < 1e-12);
        assert!((p.prior_mean(c.standing()) - (0.6 + 0.4 * 0.65)).abs() < 1e-12);
        assert_eq!(p.prior_mean(0.0), p.prior);
        assert_eq!(
            Components {
                success_rate: 0.12345,
                ..c
            }
            .trust(),
            0.123
        );
        assert_eq!(round_score(f64::INFINITY), 0.0);
    }

    #[test]
    fn the_floor_compares_at_stored_precision() {
        let p = policy();
        assert!(p.passes(0.3));
        assert!(p.passes(0.2996));
        assert!(!p.passes(0.299));
    }
}

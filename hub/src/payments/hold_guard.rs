//! The typed end of a hold: [`Ledger::hold`] returns a [`HoldGuard`], and the only ways to
//! consume one are [`HoldGuard::capture`] (with the call's receipt) and
//! [`HoldGuard::release`] (with a reason). "Every path settles the hold" is thereby checked
//! by the compiler (`#[must_use]`, move semantics) instead of by review; a guard dropped
//! unsettled anyway (an early return, a cancelled request future) releases its hold from a
//! spawned task and is counted in `aimarket_ledger_holds_dropped_total`, so a bug shows up
//! in the metrics instead of as money held until the lease sweeper runs.

use serde_json::Value;

use super::{Hold, Ledger, PaymentError};

/// Why a hold is given back (logged with failures to release it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The call failed before a provider's answer could be billed (unreachable, timed out,
    /// refused by this hub or a plugin).
    CallFailed,
    /// The provider answered without a billable success (its 402, a 4xx, a typed failure).
    Unbilled,
    /// A plugin blocked the provider's answer.
    Blocked,
    /// The capture itself failed (its receipt could not be stored).
    CaptureFailed,
    /// The hold could not be completed (an escrow authorization could not be stored).
    Incomplete,
    /// The guard was dropped unsettled.
    Dropped,
}

impl ReleaseReason {
    /// The reason as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallFailed => "call_failed",
            Self::Unbilled => "unbilled",
            Self::Blocked => "blocked",
            Self::CaptureFailed => "capture_failed",
            Self::Incomplete => "incomplete",
            Self::Dropped => "dropped",
        }
    }
}

/// A hold that must be settled: consumed by [`HoldGuard::capture`] or
/// [`HoldGuard::release`]. Dropping it unsettled releases the hold (from a task spawned on
/// the current runtime; without one, the lease sweeper does) and counts it.
#[must_use = "a hold must be captured or released; dropping it releases it and counts it as a bug"]
#[derive(Debug)]
pub struct HoldGuard {
    hold: Hold,
    /// The ledger that settles it.
    ledger: Ledger,
    /// Still to be settled (cleared by capture and release; dropping an armed guard
    /// releases the hold).
    armed: bool,
}

impl HoldGuard {
    pub(super) fn new(ledger: &Ledger, hold: Hold) -> Self {
        Self {
            hold,
            ledger: ledger.clone(),
            armed: true,
        }
    }

    /// The reservation.
    pub fn hold(&self) -> &Hold {
        &self.hold
    }

    /// The hold's id (the receipt nonce of the call).
    pub fn id(&self) -> &str {
        &self.hold.id
    }

    /// Captures the hold with `receipt` ([`Ledger::capture`]: one transaction debits the
    /// channel and stores the receipt). When the capture fails the hold is released before
    /// the error is returned, so a failed capture never leaves money held.
    pub async fn capture(mut self, receipt: &Value) -> Result<(), PaymentError> {
        // The guard stays armed across the await: a capture whose future is dropped midway is
        // released (or found captured) by the drop.
        let captured = self.ledger.capture(&self.hold.id, receipt).await;
        self.armed = false;
        if let Err(e) = &captured {
            release_logged(&self.ledger, &self.hold.id, ReleaseReason::CaptureFailed, e).await;
        }
        captured
    }

    /// Releases the hold ([`Ledger::release`]): the amount goes back to the channel.
    pub async fn release(mut self, reason: ReleaseReason) -> Result<(), PaymentError> {
        let released = self.ledger.release(&self.hold.id).await;
        self.armed = false;
        if let Err(e) = &released {
            release_failed(&self.ledger, &self.hold.id, reason, e);
        }
        released
    }
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let ledger = self.ledger.clone();
        ledger.count_dropped_hold();
        let hold_id = std::mem::take(&mut self.hold.id);
        tracing::warn!(
            hold_id,
            "a hold guard was dropped unsettled; releasing its hold"
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = ledger.release(&hold_id).await {
                        release_failed(&ledger, &hold_id, ReleaseReason::Dropped, &e);
                    }
                });
            }
            // No runtime to release on (a process shutting down): the lease sweeper or the
            // next startup's recovery releases it.
            Err(_) => tracing::warn!(hold_id, "no runtime to release a dropped hold on"),
        }
    }
}

/// Releases `hold_id` after a failed capture (`cause`), logging a failure to do so.
async fn release_logged(
    ledger: &Ledger,
    hold_id: &str,
    reason: ReleaseReason,
    cause: &PaymentError,
) {
    match ledger.release(hold_id).await {
        Ok(()) => tracing::warn!(hold_id, error = %cause, "capture failed; hold released"),
        Err(e) => release_failed(ledger, hold_id, reason, &e),
    }
}

/// A release that failed: logged, and when the store was only unreachable (an outage, a
/// timed-out pool) retried in the background with backoff, so the buyer's money comes back
/// seconds after the store does instead of when the hold's lease runs out. Retries stop at
/// the lease: from then on the sweeper owns the hold.
fn release_failed(ledger: &Ledger, hold_id: &str, reason: ReleaseReason, error: &PaymentError) {
    // The store's own reading of the failure: an outage may pass, a closed pool (the hub is
    // shutting down) or any other error will not.
    let retryable = matches!(error, PaymentError::Store(e) if e.is_transient() && !e.is_closed());
    let runtime = tokio::runtime::Handle::try_current()
        .ok()
        .filter(|_| retryable);
    let Some(runtime) = runtime else {
        tracing::error!(hold_id, reason = reason.as_str(), error = %error,
            "cannot release a hold; the sweeper will when its lease ends");
        return;
    };
    tracing::error!(hold_id, reason = reason.as_str(), error = %error,
        "cannot release a hold; retrying in the background");
    let (ledger, hold_id) = (ledger.clone(), hold_id.to_owned());
    runtime.spawn(async move { retry_release(&ledger, &hold_id, reason).await });
}

/// First wait between release retries; doubled after each failure up to [`RETRY_MAX`].
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(250);
/// Longest wait between release retries.
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Retries releasing `hold_id` until it is released (or found settled), the store is
/// closed, or the hold's lease has run out (the sweeper's turn). Bounded by the lease.
async fn retry_release(ledger: &Ledger, hold_id: &str, reason: ReleaseReason) {
    let deadline = tokio::time::Instant::now() + ledger.config.hold_lease;
    let mut wait = RETRY_FIRST;
    while tokio::time::Instant::now() + wait < deadline {
        tokio::time::sleep(wait).await;
        match ledger.release(hold_id).await {
            Ok(()) => {
                tracing::warn!(
                    hold_id,
                    reason = reason.as_str(),
                    "hold released on a retry"
                );
                return;
            }
            Err(PaymentError::Store(e)) if e.is_transient() && !e.is_closed() => {
                wait = (wait * 2).min(RETRY_MAX);
            }
            Err(e) => {
                // Captured after all (a capture whose answer was lost), or the hub is closing.
                tracing::warn!(hold_id, error = %e, "gave up releasing a hold");
                return;
            }
        }
    }
    tracing::error!(
        hold_id,
        reason = reason.as_str(),
        "cannot release a hold; the sweeper will when its lease ends"
    );
}

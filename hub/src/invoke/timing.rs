//! What one invoke measures for the metrics: provider time, whether a provider answered and
//! succeeded, the rail, and the duration of each ledger write.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use crate::metrics::{LedgerOp, Metrics};
use crate::payments::PaymentError;
use crate::telemetry::span;

/// What one invoke measured for the metrics: time spent waiting on providers, whether one
/// answered, whether the answer was a success, and the rail. Atomics, so the borrowed
/// reference keeps the invoke future `Send`.
#[derive(Debug, Default)]
pub(super) struct Timing {
    provider_micros: AtomicU64,
    reached: AtomicBool,
    success: AtomicBool,
    rail: OnceLock<&'static str>,
}

impl Timing {
    /// Adds one provider call's duration.
    pub(super) fn provider_call(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.provider_micros.fetch_add(micros, Ordering::Relaxed);
        self.reached.store(true, Ordering::Relaxed);
    }

    /// Time spent waiting on providers.
    pub(super) fn provider(&self) -> Duration {
        Duration::from_micros(self.provider_micros.load(Ordering::Relaxed))
    }

    /// Whether a provider answered at all.
    pub(super) fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    /// Notes whether the call succeeded.
    pub(super) fn set_success(&self, success: bool) {
        self.success.store(success, Ordering::Relaxed);
    }

    /// Whether the call succeeded.
    pub(super) fn success(&self) -> bool {
        self.success.load(Ordering::Relaxed)
    }

    /// Notes the call's rail (the first one set wins).
    pub(super) fn set_rail(&self, rail: &'static str) {
        let _ = self.rail.set(rail);
    }

    /// The call's rail, `none` before one was chosen.
    pub(super) fn rail(&self) -> &'static str {
        self.rail.get().copied().unwrap_or("none")
    }
}

/// Times a ledger write into `aimarket_ledger_operation_duration_seconds` (and counts store
/// failures), inside a span named after it.
pub(super) async fn timed_ledger<T>(
    metrics: &Metrics,
    op: LedgerOp,
    write: impl Future<Output = Result<T, PaymentError>>,
) -> Result<T, PaymentError> {
    let started = Instant::now();
    let span = span!("ledger.write", operation = op.as_str());
    let result = write.instrument(span).await;
    let store_error = matches!(&result, Err(PaymentError::Store(_)));
    metrics.observe_ledger(op, started.elapsed(), store_error);
    result
}

/// Milliseconds since `started` (saturating).
pub(super) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

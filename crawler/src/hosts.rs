//! Per-host politeness: at most N requests in flight to one `host:port`, and exponential
//! backoff after the host fails (transport errors, 429, 5xx).
//!
//! Keyed by `host:port` rather than host alone so that several hubs sharing an address on
//! different ports (common in private federations and in tests) are separate hosts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::CrawlError;

/// Above this many tracked hosts, idle entries without an active backoff are dropped.
const PRUNE_ABOVE: usize = 4096;

struct HostState {
    slots: Arc<Semaphore>,
    failures: u32,
    until: Option<Instant>,
}

/// Concurrency slots and backoff state for every host contacted.
pub(crate) struct HostGate {
    per_host: usize,
    base: Duration,
    max: Duration,
    hosts: Mutex<HashMap<String, HostState>>,
}

impl HostGate {
    pub(crate) fn new(per_host: usize, base: Duration, max: Duration) -> Self {
        Self {
            per_host: per_host.max(1),
            base,
            max,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HostState>> {
        // A panic while holding this lock cannot leave the map inconsistent (every update is
        // a single assignment), so a poisoned lock is still usable.
        self.hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a slot on `host`, or fails at once if the host is backing off.
    pub(crate) async fn acquire(&self, host: &str) -> Result<OwnedSemaphorePermit, CrawlError> {
        let slots = {
            let mut hosts = self.lock();
            if hosts.len() > PRUNE_ABOVE {
                let now = Instant::now();
                let per_host = self.per_host;
                hosts.retain(|_, s| {
                    s.until.is_some_and(|u| u > now) || s.slots.available_permits() < per_host
                });
            }
            let state = hosts.entry(host.to_owned()).or_insert_with(|| HostState {
                slots: Arc::new(Semaphore::new(self.per_host)),
                failures: 0,
                until: None,
            });
            if let Some(until) = state.until {
                let now = Instant::now();
                if until > now {
                    return Err(CrawlError::Backoff {
                        host: host.to_owned(),
                        retry_in: until - now,
                    });
                }
            }
            Arc::clone(&state.slots)
        };
        slots.acquire_owned().await.map_err(|_| CrawlError::Setup {
            detail: "host semaphore closed".to_owned(),
        })
    }

    /// Records the outcome of a request to `host`: a host failure doubles its backoff (from
    /// `base` up to `max`), anything else clears it.
    pub(crate) fn record(&self, host: &str, failed: bool) {
        let mut hosts = self.lock();
        let Some(state) = hosts.get_mut(host) else {
            return;
        };
        if failed {
            state.failures = state.failures.saturating_add(1);
            let factor = 2u32.saturating_pow(state.failures.saturating_sub(1).min(20));
            let delay = self.base.saturating_mul(factor).min(self.max);
            state.until = (!delay.is_zero()).then(|| Instant::now() + delay);
        } else {
            state.failures = 0;
            state.until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_and_clears() {
        let gate = HostGate::new(2, Duration::from_secs(10), Duration::from_secs(25));
        drop(gate.acquire("h:80").await.unwrap());
        gate.record("h:80", true);
        let Err(CrawlError::Backoff { retry_in, .. }) = gate.acquire("h:80").await else {
            panic!("expected backoff");
        };
        assert_eq!(retry_in, Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(11)).await;
        drop(gate.acquire("h:80").await.unwrap());
        gate.record("h:80", true);
        let Err(CrawlError::Backoff { retry_in, .. }) = gate.acquire("h:80").await else {
            panic!("expected backoff");
        };
        assert_eq!(retry_in, Duration::from_secs(20));
        tokio::time::advance(Duration::from_secs(21)).await;
        drop(gate.acquire("h:80").await.unwrap());
        gate.record("h:80", true);
        let Err(CrawlError::Backoff { retry_in, .. }) = gate.acquire("h:80").await else {
            panic!("expected backoff");
        };
        assert_eq!(retry_in, Duration::from_secs(25), "capped at max");
        // Other hosts are unaffected.
        drop(gate.acquire("other:80").await.unwrap());
        tokio::time::advance(Duration::from_secs(26)).await;
        drop(gate.acquire("h:80").await.unwrap());
        gate.record("h:80", false);
        drop(gate.acquire("h:80").await.unwrap());
    }

    #[tokio::test]
    async fn at_most_n_slots_per_host() {
        let gate = HostGate::new(2, Duration::ZERO, Duration::ZERO);
        let a = gate.acquire("h:80").await.unwrap();
        let _b = gate.acquire("h:80").await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), gate.acquire("h:80")).await;
        assert!(third.is_err(), "third concurrent request must wait");
        let _c = gate.acquire("other:80").await.unwrap();
        drop(a);
        let third = tokio::time::timeout(Duration::from_secs(5), gate.acquire("h:80")).await;
        assert!(third.is_ok());
    }
}

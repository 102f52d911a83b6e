//! What protects a provider from the load of all buyers together: a cap on routed calls in
//! flight to it (per replica), a rate (all clients together), and a back-off learned from its
//! own 429 answers (`Retry-After`). The rate and the back-off are shared by every replica
//! through Redis when it is configured (`crate::replica::provider`); these are the
//! in-process forms, used alone in single-replica mode and as the fallback when Redis fails.
//!
//! Providers are keyed by their origin (the peer URL the hub calls). The maps grow with the
//! catalog's peers, never with anything a client sends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::rate::LocalRate;

/// Back-off used when a provider answers 429 without a usable `Retry-After`.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(5);
/// Longest back-off a provider can ask for: a mistaken `Retry-After` must not take it off
/// the market for days.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// A slot among a provider's in-flight calls; the slot frees when this is dropped (also on
/// every early return and on a cancelled task).
#[derive(Debug)]
pub struct ProviderPermit {
    _slot: Option<OwnedSemaphorePermit>,
}

/// The in-process provider limits.
#[derive(Debug)]
pub struct ProviderLimits {
    max_in_flight: usize,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    rate: LocalRate,
    backoff: Mutex<HashMap<String, Instant>>,
}

impl ProviderLimits {
    /// `max_in_flight` calls at once per provider (0 = no cap) and `rate_per_min` calls per
    /// minute per provider (0 = no rate).
    pub fn new(max_in_flight: u32, rate_per_min: u32) -> Self {
        Self {
            max_in_flight: usize::try_from(max_in_flight).unwrap_or(usize::MAX),
            slots: Mutex::default(),
            rate: LocalRate::new(rate_per_min),
            backoff: Mutex::default(),
        }
    }

    /// Whether the per-provider rate is on.
    pub fn rate_enabled(&self) -> bool {
        self.rate.enabled()
    }

    /// Takes an in-flight slot of `origin`, or `None` when all are taken.
    pub fn try_slot(&self, origin: &str) -> Option<ProviderPermit> {
        if self.max_in_flight == 0 {
            return Some(ProviderPermit { _slot: None });
        }
        let semaphore = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .entry(origin.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.max_in_flight)))
                .clone()
        };
        semaphore
            .try_acquire_owned()
            .ok()
            .map(|slot| ProviderPermit { _slot: Some(slot) })
    }

    /// Seconds `origin` is still backed off for, as this replica learned it.
    pub fn backoff_left(&self, origin: &str) -> Option<u64> {
        let now = Instant::now();
        let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        match backoff.get(origin) {
            Some(until) if *until > now => Some(whole_seconds(*until - now)),
            Some(_) => {
                backoff.remove(origin);
                None
            }
            None => None,
        }
    }

    /// Backs `origin` off for `wait` (never shortening a longer back-off already known).
    pub fn back_off(&self, origin: &str, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_BACKOFF);
        let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let entry = backoff.entry(origin.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Charges one call to `origin`'s in-process rate: `Err(seconds)` when over it.
    pub fn check_rate(&self, origin: &str) -> Result<(), u64> {
        self.rate.check(origin)
    }
}

/// A duration in whole seconds, rounded up, at least 1 (the `Retry-After` form).
pub fn whole_seconds(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// How long a provider's 429 asks the hub to wait: `Retry-After` as delta-seconds or an
/// HTTP date, else [`DEFAULT_BACKOFF`]; at most [`MAX_BACKOFF`].
pub fn retry_after(value: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> Duration {
    let Some(value) = value.map(str::trim) else {
        return DEFAULT_BACKOFF;
    };
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else if let Ok(at) = chrono::DateTime::parse_from_rfc2822(value) {
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    } else {
        DEFAULT_BACKOFF
    };
    // A zero wait still means "not now": back off for a second.
    wait.clamp(Duration::from_secs(1), MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn in_flight_slots_are_per_provider_and_free_on_drop() {
        let limits = ProviderLimits::new(2, 0);
        let a1 = limits.try_slot("https://a").unwrap();
        let _a2 = limits.try_slot("https://a").unwrap();
        assert!(limits.try_slot("https://a").is_none());
        assert!(limits.try_slot("https://b").is_some());
        drop(a1);
        assert!(limits.try_slot("https://a").is_some());
        let off = ProviderLimits::new(0, 0);
        let held: Vec<_> = (0..1000).map(|_| off.try_slot("https://a")).collect();
        assert!(held.iter().all(Option::is_some));
    }

    #[test]
    fn backoff_is_per_provider_and_never_shortened() {
        let limits = ProviderLimits::new(0, 0);
        assert_eq!(limits.backoff_left("https://a"), None);
        limits.back_off("https://a", Duration::from_secs(30));
        limits.back_off("https://a", Duration::from_secs(2));
        let left = limits.backoff_left("https://a").unwrap();
        assert!((29..=30).contains(&left), "{left}");
        assert_eq!(limits.backoff_left("https://b"), None);
        limits.back_off("https://c", Duration::from_secs(100_000));
        assert!(limits.backoff_left("https://c").unwrap() <= MAX_BACKOFF.as_secs());
    }

    #[test]
    fn retry_after_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(retry_after(Some("7"), now), Duration::from_secs(7));
        assert_eq!(retry_after(Some(" 0 "), now), Duration::from_secs(1));
        assert_eq!(retry_after(None, now), DEFAULT_BACKOFF);
        assert_eq!(retry_after(Some("soon"), now), DEFAULT_BACKOFF);
        assert_eq!(retry_after(Some("99999999"), now), MAX_BACKOFF);
        let date = retry_after(Some("Thu, 01 Jan 2026 00:00:42 GMT"), now);
        assert_eq!(date, Duration::from_secs(42));
        let past = retry_after(Some("Wed, 31 Dec 2025 23:00:00 GMT"), now);
        assert_eq!(past, Duration::from_secs(1));
    }
}

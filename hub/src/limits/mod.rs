//! The abuse limits: per-client rates for invokes, searches and MCP requests, and the
//! per-provider in-flight cap, rate and back-off. See the README's "Limits" section.
//!
//! - [`identity`]: which bucket a caller is charged to (only verified API keys and channels
//!   get their own; everything else shares its address's).
//! - [`rate`]: the in-process keyed GCRA (`governor`).
//! - [`provider`]: in-flight slots, the provider rate and the learned back-off.
//!
//! With Redis (multi-replica mode) every rate and the back-off are one budget for all
//! replicas (`crate::replica`); a Redis failure falls back to the in-process limiter of the
//! replica. The in-flight cap is always per replica: N replicas allow N times it.
//!
//! Every refusal is a [`LimitRefusal`] naming the limit ([`LimitKind`]), answered as 429
//! `rate_limited` with `Retry-After` and a `limit` field, and counted for `/metrics`.

pub mod identity;
pub mod provider;
pub mod rate;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use identity::{Caller, ClientId, Identified, Identities};
pub use provider::ProviderPermit;

use crate::replica::SharedState;
use crate::settings::Settings;
use provider::ProviderLimits;
use rate::LocalRate;

/// Which limit refused a request (the 429 body's `limit` field and the metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Invokes per client (`invoke.rate_per_min`).
    InvokeClient,
    /// Searches per client (`limits.search_rate_per_min`).
    SearchClient,
    /// MCP requests per client (`limits.mcp_rate_per_min`).
    McpClient,
    /// Routed calls in flight to one provider (`limits.provider_max_in_flight`).
    ProviderInflight,
    /// Routed calls per minute to one provider (`limits.provider_rate_per_min`).
    ProviderRate,
    /// The provider answered 429 and asked the hub to wait.
    ProviderBackoff,
}

impl LimitKind {
    /// Every kind, in metrics order.
    pub const ALL: [Self; 6] = [
        Self::InvokeClient,
        Self::SearchClient,
        Self::McpClient,
        Self::ProviderInflight,
        Self::ProviderRate,
        Self::ProviderBackoff,
    ];

    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvokeClient => "invoke_client",
            Self::SearchClient => "search_client",
            Self::McpClient => "mcp_client",
            Self::ProviderInflight => "provider_inflight",
            Self::ProviderRate => "provider_rate",
            Self::ProviderBackoff => "provider_backoff",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::InvokeClient => "too many invokes from this client",
            Self::SearchClient => "too many searches from this client",
            Self::McpClient => "too many MCP requests from this client",
            Self::ProviderInflight => "too many calls in flight to this provider",
            Self::ProviderRate => "too many calls to this provider",
            Self::ProviderBackoff => "the provider asked this hub to slow down",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::InvokeClient => 0,
            Self::SearchClient => 1,
            Self::McpClient => 2,
            Self::ProviderInflight => 3,
            Self::ProviderRate => 4,
            Self::ProviderBackoff => 5,
        }
    }
}

/// A request refused by a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} (limit {}); retry in {retry_after_s} s", limit.describe(), limit.as_str())]
pub struct LimitRefusal {
    /// The limit hit.
    pub limit: LimitKind,
    /// Seconds until a request would be admitted (at least 1).
    pub retry_after_s: u64,
    /// The provider concerned, for the provider limits.
    pub provider: Option<String>,
}

impl crate::error_code::ErrorCode for LimitRefusal {
    /// Every limit answers 429 `rate_limited` with `Retry-After`, the `limit` that was hit
    /// and, for the provider limits, the provider (`source_hub`).
    fn wire_code(&self) -> crate::error_code::Code {
        crate::error_code::Code::RateLimited
    }

    fn decorate(&self, api: crate::error_code::ApiError) -> crate::error_code::ApiError {
        let api = api
            .with_field("limit", self.limit.as_str())
            .with_field("retry_after_s", self.retry_after_s)
            .with_retry_after(self.retry_after_s);
        match &self.provider {
            Some(provider) => api.with_field("source_hub", provider.as_str()),
            None => api,
        }
    }
}

/// Every limit of one hub process.
#[derive(Debug)]
pub struct Limits {
    identities: Identities,
    invoke: LocalRate,
    search: LocalRate,
    mcp: LocalRate,
    providers: ProviderLimits,
    refusals: [AtomicU64; 6],
}

impl Limits {
    /// The limits the settings describe.
    pub fn new(settings: &Settings) -> Self {
        let limits = &settings.limits;
        Self {
            identities: Identities::new(&limits.api_keys),
            invoke: LocalRate::new(settings.invoke.rate_per_min),
            search: LocalRate::new(limits.search_rate_per_min),
            mcp: LocalRate::new(limits.mcp_rate_per_min),
            providers: ProviderLimits::new(
                limits.provider_max_in_flight,
                limits.provider_rate_per_min,
            ),
            refusals: Default::default(),
        }
    }

    /// Who callers are (API keys, channel verdicts).
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// Requests refused by `kind` since start (`/metrics`).
    pub fn refused(&self, kind: LimitKind) -> u64 {
        self.refusals[kind.index()].load(Ordering::Relaxed)
    }

    fn refuse(&self, limit: LimitKind, retry_after_s: u64, provider: Option<&str>) -> LimitRefusal {
        self.refusals[limit.index()].fetch_add(1, Ordering::Relaxed);
        LimitRefusal {
            limit,
            retry_after_s: retry_after_s.max(1),
            provider: provider.map(str::to_owned),
        }
    }

    /// Charges one request of `client` to the per-client limit `kind` (one of the three
    /// client kinds): shared by all replicas when Redis answers, else this process's own.
    pub async fn check_client(
        &self,
        shared: &SharedState,
        kind: LimitKind,
        client: &ClientId,
    ) -> Result<(), LimitRefusal> {
        let local = match kind {
            LimitKind::SearchClient => &self.search,
            LimitKind::McpClient => &self.mcp,
            _ => &self.invoke,
        };
        if !local.enabled() {
            return Ok(());
        }
        let decision = match shared.check_rate(kind, client.as_str()).await {
            Some(decision) => decision,
            None => local.check(client.as_str()),
        };
        decision.map_err(|wait| self.refuse(kind, wait, None))
    }

    /// Admits one routed call to provider `origin`: an in-flight slot (held by the returned
    /// permit until the answer is read), then the back-off and the provider rate (shared when
    /// Redis answers). A refusal leaves nothing taken.
    pub async fn admit_provider(
        &self,
        shared: &SharedState,
        origin: &str,
    ) -> Result<ProviderPermit, LimitRefusal> {
        if let Some(left) = self.providers.backoff_left(origin) {
            return Err(self.refuse(LimitKind::ProviderBackoff, left, Some(origin)));
        }
        let Some(permit) = self.providers.try_slot(origin) else {
            return Err(self.refuse(LimitKind::ProviderInflight, 1, Some(origin)));
        };
        let rate = self.providers.rate_enabled();
        let decision = match shared.check_provider(origin).await {
            Some(decision) => decision,
            None if rate => self
                .providers
                .check_rate(origin)
                .map_err(|wait| (LimitKind::ProviderRate, wait)),
            None => Ok(()),
        };
        match decision {
            Ok(()) => Ok(permit),
            Err((kind, wait)) => Err(self.refuse(kind, wait, Some(origin))),
        }
    }

    /// Records that provider `origin` answered 429 asking for `wait`: every replica stops
    /// routing to it for that long (other providers are unaffected). Returns the refusal the
    /// buyer of this call gets.
    pub async fn provider_refused(
        &self,
        shared: &SharedState,
        origin: &str,
        wait: Duration,
    ) -> LimitRefusal {
        self.providers.back_off(origin, wait);
        shared.back_off_provider(origin, wait).await;
        tracing::info!(
            provider = origin,
            wait_s = wait.as_secs(),
            "provider answered 429; backing off"
        );
        self.refuse(
            LimitKind::ProviderBackoff,
            provider::whole_seconds(wait),
            Some(origin),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits(change: impl FnOnce(&mut Settings)) -> Limits {
        let mut settings = Settings::for_test("/tmp/unused");
        change(&mut settings);
        Limits::new(&settings)
    }

    #[tokio::test]
    async fn client_limits_are_separate_per_kind_and_counted() {
        let shared = SharedState::disabled();
        let limits = limits(|s| {
            s.invoke.rate_per_min = 2;
            s.limits.search_rate_per_min = 1;
            s.limits.mcp_rate_per_min = 0;
        });
        let client = ClientId::named("c");
        for _ in 0..2 {
            limits
                .check_client(&shared, LimitKind::InvokeClient, &client)
                .await
                .unwrap();
        }
        let refused = limits
            .check_client(&shared, LimitKind::InvokeClient, &client)
            .await
            .unwrap_err();
        assert_eq!(refused.limit, LimitKind::InvokeClient);
        assert!(refused.to_string().contains("invoke_client"), "{refused}");
        limits
            .check_client(&shared, LimitKind::SearchClient, &client)
            .await
            .unwrap();
        assert!(
            limits
                .check_client(&shared, LimitKind::SearchClient, &client)
                .await
                .is_err()
        );
        for _ in 0..100 {
            limits
                .check_client(&shared, LimitKind::McpClient, &client)
                .await
                .unwrap();
        }
        assert_eq!(limits.refused(LimitKind::InvokeClient), 1);
        assert_eq!(limits.refused(LimitKind::SearchClient), 1);
        assert_eq!(limits.refused(LimitKind::McpClient), 0);
    }

    #[tokio::test]
    async fn provider_admission_in_flight_rate_and_backoff() {
        let shared = SharedState::disabled();
        let limits = limits(|s| {
            s.limits.provider_max_in_flight = 1;
            s.limits.provider_rate_per_min = 2;
        });
        let first = limits.admit_provider(&shared, "https://a").await.unwrap();
        let busy = limits
            .admit_provider(&shared, "https://a")
            .await
            .unwrap_err();
        assert_eq!(busy.limit, LimitKind::ProviderInflight);
        drop(first);
        // The refused attempt took no rate: the second call is still admitted.
        drop(limits.admit_provider(&shared, "https://a").await.unwrap());
        let over = limits
            .admit_provider(&shared, "https://a")
            .await
            .unwrap_err();
        assert_eq!(over.limit, LimitKind::ProviderRate);
        assert_eq!(over.provider.as_deref(), Some("https://a"));

        let refusal = limits
            .provider_refused(&shared, "https://b", Duration::from_secs(9))
            .await;
        assert_eq!(
            (refusal.limit, refusal.retry_after_s),
            (LimitKind::ProviderBackoff, 9)
        );
        let backed = limits
            .admit_provider(&shared, "https://b")
            .await
            .unwrap_err();
        assert_eq!(backed.limit, LimitKind::ProviderBackoff);
        assert!((8..=9).contains(&backed.retry_after_s));
        assert!(limits.admit_provider(&shared, "https://c").await.is_ok());
        assert_eq!(limits.refused(LimitKind::ProviderBackoff), 2);
    }
}

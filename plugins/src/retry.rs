//! The failover retry rule the hub applies between providers.

use serde::Serialize;

use crate::view::UpstreamPayment;

/// How one upstream attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptFailure {
    /// The connection (DNS, TCP connect, TLS handshake) failed before any byte of the request
    /// was written: the provider never saw the call.
    Connect,
    /// The request was sent but no complete answer came within the provider timeout.
    Timeout,
    /// The provider answered with this status.
    Status(u16),
}

/// Retry information a routing plugin contributes ([`crate::Plugin::retry_policy`]); the
/// registry exposes the first one in configured order, or [`RetryPolicy::none`].
///
/// # The rule
/// After a failed attempt the hub calls the **next provider in route order, at most once per
/// invoke** (`max_retries` = 1), and only when all of these hold:
/// 1. the failure is [`AttemptFailure::Connect`], [`AttemptFailure::Timeout`] or a 5xx
///    status (never 402, other 4xx or 2xx);
/// 2. the call cannot have been charged:
///    * [`UpstreamPayment::None`] — no payment credential went upstream, so nothing can have
///      been charged: retry on connect failure, timeout or 5xx;
///    * [`UpstreamPayment::HubCredential`] — the hub pays with its own per-peer credential:
///      retry **only on connect failure** (the request never left); a timeout or 5xx may
///      have debited the hub at the provider;
///    * [`UpstreamPayment::BuyerCredential`] — the buyer's `X-Payment` / `PAYMENT-SIGNATURE`
///      is bound to the first provider's payee and may have been accepted: **never retry**;
/// 3. there is a next provider.
///
/// The buyer's hold at this hub is taken once per invoke and captured at most once, so a
/// retry never charges the buyer twice. `before_invoke` runs again for the retry attempt
/// (with `attempt = 1` and the new provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// Extra attempts after the first (0 disables failover; the built-in uses 1).
    pub max_retries: u32,
}

impl RetryPolicy {
    /// No retries.
    pub const fn none() -> Self {
        Self { max_retries: 0 }
    }

    /// One retry on the next provider.
    pub const fn once() -> Self {
        Self { max_retries: 1 }
    }

    /// Applies the rule above. `attempt` is the index of the attempt that just failed
    /// (0 for the first).
    pub fn should_retry(
        &self,
        attempt: u32,
        failure: AttemptFailure,
        payment: UpstreamPayment,
        has_next_provider: bool,
    ) -> bool {
        if attempt >= self.max_retries || !has_next_provider {
            return false;
        }
        let retryable = match failure {
            AttemptFailure::Connect | AttemptFailure::Timeout => true,
            AttemptFailure::Status(s) => (500..600).contains(&s),
        };
        retryable
            && match payment {
                UpstreamPayment::None => true,
                UpstreamPayment::HubCredential => failure == AttemptFailure::Connect,
                UpstreamPayment::BuyerCredential => false,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttemptFailure::{Connect, Status, Timeout};
    use UpstreamPayment::{BuyerCredential, HubCredential, None as Unpaid};

    #[test]
    fn unpaid_calls_retry_on_5xx_timeout_and_connect() {
        let p = RetryPolicy::once();
        for f in [Connect, Timeout, Status(500), Status(503), Status(599)] {
            assert!(p.should_retry(0, f, Unpaid, true), "{f:?}");
        }
        for f in [Status(402), Status(404), Status(200), Status(600)] {
            assert!(!p.should_retry(0, f, Unpaid, true), "{f:?}");
        }
    }

    #[test]
    fn paid_calls_never_retry_when_they_may_have_been_charged() {
        let p = RetryPolicy::once();
        assert!(p.should_retry(0, Connect, HubCredential, true));
        assert!(!p.should_retry(0, Timeout, HubCredential, true));
        assert!(!p.should_retry(0, Status(502), HubCredential, true));
        for f in [Connect, Timeout, Status(500)] {
            assert!(!p.should_retry(0, f, BuyerCredential, true));
        }
    }

    #[test]
    fn at_most_once_and_only_with_a_next_provider() {
        let p = RetryPolicy::once();
        assert!(!p.should_retry(1, Connect, Unpaid, true));
        assert!(!p.should_retry(0, Connect, Unpaid, false));
        assert!(!RetryPolicy::none().should_retry(0, Connect, Unpaid, true));
    }
}

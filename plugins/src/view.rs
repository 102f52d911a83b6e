//! What hooks see: read-only views of a search or an invoke, and the mutable candidate and
//! provider lists that `rank` and `route` reorder.
//!
//! String fields are `Arc<str>` so the registry's copy-before-run (a plugin that fails or
//! times out must leave the list untouched) costs reference-count bumps, not allocations.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::payment::{self, RequestedAmount};

/// The parsed search request, as the hub validated it (`GET /ai-market/v2/search`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchQueryView {
    /// Free-text intent; empty when browsing.
    pub intent: String,
    /// `budget`: maximum routed price per call, USD.
    pub budget_usd: Option<f64>,
    /// `max_latency_ms`.
    pub max_latency_ms: Option<u64>,
    /// `min_trust`.
    pub min_trust: Option<f64>,
    /// `hub`: `None` for `any`, else the hub URL asked for.
    pub hub: Option<String>,
    /// `category`.
    pub category: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Page offset.
    pub offset: u32,
}

/// One search candidate. The hub fills it from the index; `rank` plugins rescore, reorder or
/// drop candidates. After the chain, the list order is the result order and `score` is the
/// score the hub reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Stable unique key of this candidate in this result set (the hub uses
    /// `<origin>|<product_id>|<capability_id>`); webhook replies refer to candidates by it.
    pub key: Arc<str>,
    /// Product id.
    pub product_id: Arc<str>,
    /// Capability id (`name@version`).
    pub capability_id: Arc<str>,
    /// The owning origin (the provider's own URL, the match's `source_hub`).
    pub origin: Arc<str>,
    /// Display name of the owning hub (`source_hub_name`).
    pub source_hub_name: Arc<str>,
    /// The peer hub this capability is known through, when not indexed from its origin.
    pub via: Option<Arc<str>>,
    /// Raw BM25 score from the index (0 when browsing).
    pub bm25: f32,
    /// Current score; the hub seeds it with `bm25` and reports it after ranking.
    pub score: f64,
    /// Provider list price per call, USD.
    pub price_usd: f64,
    /// Price through this hub: `price × (1 + bps/10000)`, micro-dollar rounded.
    pub routed_price_usd: f64,
    /// Median latency, ms.
    pub p50_latency_ms: u64,
    /// Trust score of the owning peer, 0..=1.
    pub trust_score: f64,
    /// Success rate over 30 days, 0..=1.
    pub success_rate: f64,
    /// The tool JSON as indexed (name, description, input_schema, ...).
    pub tool: Arc<Value>,
}

/// The capability an invoke targets, before a provider is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityRef {
    /// Product id.
    pub product_id: Arc<str>,
    /// Capability id.
    pub capability_id: Arc<str>,
    /// `source_hub` as the buyer sent it (`None` for absent or `"local"`).
    pub source_hub: Option<Arc<str>>,
}

/// One peer able to serve an invoke. `route` plugins order and filter the list; the hub
/// calls the first provider, and on a retryable failure (see [`crate::RetryPolicy`]) the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    /// The owning origin of the capability.
    pub origin: Arc<str>,
    /// The peer hub relaying it, if not called at its origin.
    pub via: Option<Arc<str>>,
    /// The peer actually called (`via` when present, else `origin`).
    pub peer_url: Arc<str>,
    /// List price, USD.
    pub price_usd: f64,
    /// Routed price this hub charges, USD.
    pub routed_price_usd: f64,
    /// Median latency, ms.
    pub p50_latency_ms: u64,
    /// Trust score, 0..=1.
    pub trust_score: f64,
    /// Success rate, 0..=1.
    pub success_rate: f64,
    /// The exact URL the hub will POST to.
    pub target_url: Arc<str>,
}

impl Provider {
    /// The hubs on this provider's path: the origin, then the relaying peer if any.
    pub fn hubs(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&*self.origin).chain(self.via.as_deref())
    }
}

/// What payment credential the upstream request of an attempt carries. Decides whether a
/// failed attempt may be retried (see [`crate::RetryPolicy::should_retry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamPayment {
    /// No payment credential is sent upstream (free capability, or an unpaid first call that
    /// will get a 402).
    None,
    /// The hub pays the provider with its own credential for that peer (channel-funded buyer).
    HubCredential,
    /// The buyer's own credential (`X-Payment`, `PAYMENT-SIGNATURE`, ...) is forwarded verbatim.
    BuyerCredential,
}

/// An invoke about to be (or just) forwarded to one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokeView {
    /// Product id.
    pub product_id: Arc<str>,
    /// Capability id.
    pub capability_id: Arc<str>,
    /// `source_hub` as the buyer sent it (`None` for absent or `"local"`).
    pub source_hub: Option<Arc<str>>,
    /// The buyer's `input` (already validated against the input schema).
    pub input: Arc<Value>,
    /// The buyer's `max_price_usd`.
    pub max_price_usd: Option<f64>,
    /// The provider of this attempt (the first after `route`, or the next on a retry).
    pub provider: Provider,
    /// 0 for the first attempt, 1 for a failover retry.
    pub attempt: u32,
    /// Payment credential carried upstream.
    pub upstream_payment: UpstreamPayment,
}

impl InvokeView {
    /// True when the provider is reached through another hub.
    pub fn is_federated(&self) -> bool {
        self.provider.via.is_some()
    }
}

/// The provider's answer, as the hub is about to relay it. `after_invoke` runs only when the
/// provider produced an HTTP response (transport failures and timeouts never reach it).
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeOutcomeView {
    /// Upstream HTTP status.
    pub status: u16,
    /// Upstream body, parsed; `Value::Null` when it was not JSON.
    pub body: Arc<Value>,
    /// Wall time of the upstream call, ms.
    pub latency_ms: u64,
    /// Raw `X-Payment-Required` header (v1 JSON), if any.
    pub x_payment_required: Option<String>,
    /// Raw `PAYMENT-REQUIRED` header (x402 v2, base64 JSON), if any.
    pub payment_required: Option<String>,
}

impl InvokeOutcomeView {
    /// An outcome without payment headers (a 200, a 4xx, ...).
    pub fn new(status: u16, body: impl Into<Arc<Value>>, latency_ms: u64) -> Self {
        Self {
            status,
            body: body.into(),
            latency_ms,
            x_payment_required: None,
            payment_required: None,
        }
    }

    /// Attaches the raw payment headers of a 402.
    #[must_use]
    pub fn with_payment_headers(
        mut self,
        x_payment_required: Option<String>,
        payment_required: Option<String>,
    ) -> Self {
        self.x_payment_required = x_payment_required;
        self.payment_required = payment_required;
        self
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// 402.
    pub fn is_payment_required(&self) -> bool {
        self.status == 402
    }

    /// Every amount the 402 asks for, one per challenge shape found (v1 `X-Payment-Required`
    /// `amount`, x402 v1 body `accepts[0].maxAmountRequired`, x402 v2 `PAYMENT-REQUIRED`
    /// `accepts[0].amount`), with token base units read at 6 decimals.
    pub fn requested_amounts(&self) -> Vec<RequestedAmount> {
        payment::requested_amounts(
            self.x_payment_required.as_deref(),
            self.payment_required.as_deref(),
            &self.body,
            payment::DEFAULT_TOKEN_DECIMALS,
        )
    }

    /// The largest amount, in USD, the 402 asks for across all shapes it carries (the buyer
    /// may pay through any of them, so the largest is what the price must be checked
    /// against). `None` when the response is not a 402 or no shape could be read.
    pub fn requested_amount_usd(&self) -> Option<f64> {
        if !self.is_payment_required() {
            return None;
        }
        payment::max_usd(&self.requested_amounts())
    }
}

/// A before/after-invoke verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Let the request continue.
    Allow,
    /// Refuse it. Before the call nothing is charged; after it the hold is released and the
    /// buyer gets a signed rejection receipt carrying `category` and `reason`.
    Block {
        /// Machine-readable category, e.g. `price_mismatch`, `policy_denied`.
        category: String,
        /// Human-readable reason.
        reason: String,
    },
}

impl Decision {
    /// Shorthand for [`Decision::Block`].
    pub fn block(category: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Block {
            category: category.into(),
            reason: reason.into(),
        }
    }

    /// True for a block.
    pub fn is_block(&self) -> bool {
        matches!(self, Self::Block { .. })
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Shared builders for unit tests.
    use super::*;

    pub fn candidate(key: &str, bm25: f32) -> Candidate {
        Candidate {
            key: key.into(),
            product_id: format!("prod-{key}").into(),
            capability_id: format!("{key}.run@v1").into(),
            origin: "https://a.example".into(),
            source_hub_name: "A".into(),
            via: None,
            bm25,
            score: f64::from(bm25),
            price_usd: 0.01,
            routed_price_usd: 0.0101,
            p50_latency_ms: 200,
            trust_score: 0.5,
            success_rate: 0.9,
            tool: Arc::new(Value::Null),
        }
    }

    pub fn provider(origin: &str) -> Provider {
        Provider {
            origin: origin.into(),
            via: None,
            peer_url: origin.into(),
            price_usd: 0.10,
            routed_price_usd: 0.101,
            p50_latency_ms: 100,
            trust_score: 0.5,
            success_rate: 0.9,
            target_url: format!("{origin}/ai-market/v2/invoke").into(),
        }
    }

    pub fn invoke(provider: Provider) -> InvokeView {
        InvokeView {
            product_id: "prod-1".into(),
            capability_id: "translate.multi@v2".into(),
            source_hub: None,
            input: Arc::new(serde_json::json!({"text": "hi"})),
            max_price_usd: None,
            provider,
            attempt: 0,
            upstream_payment: UpstreamPayment::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_serializes_as_the_webhook_shape() {
        let block = Decision::block("unsafe", "no");
        assert_eq!(
            serde_json::to_value(&block).ok(),
            Some(serde_json::json!({"decision": "block", "category": "unsafe", "reason": "no"}))
        );
        assert!(block.is_block());
        assert!(!Decision::Allow.is_block());
    }

    #[test]
    fn requested_amount_only_for_402() {
        let ok = InvokeOutcomeView::new(
            200,
            serde_json::json!({"x402Version": 1,
            "accepts": [{"maxAmountRequired": "1000"}]}),
            5,
        );
        assert!(ok.is_success());
        assert_eq!(ok.requested_amount_usd(), None);
        let mut pay = ok.clone();
        pay.status = 402;
        assert_eq!(pay.requested_amount_usd(), Some(0.001));
    }

    #[test]
    fn provider_hubs_lists_origin_then_via() {
        let mut p = fixtures::provider("https://a.example");
        p.via = Some("https://b.example".into());
        assert_eq!(
            p.hubs().collect::<Vec<_>>(),
            vec!["https://a.example", "https://b.example"]
        );
    }
}

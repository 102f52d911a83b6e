//! The hub's Prometheus series (`GET /metrics`).
//!
//! One [`Metrics`] per [`AppState`](crate::state::AppState), with its own registry, so two
//! hubs in one process (tests) never mix their numbers. Recording is a label lookup and an
//! atomic add; gauges that describe stored state (peers, open channels, index lag) are read
//! when Prometheus scrapes, not kept in step on every write.
//!
//! Conventions: base units (`_seconds`, `_usd`), counters end in `_total`, and every label has
//! a closed set of values (route templates, outcome and rail names, reason classes): never a
//! capability id, a buyer, a peer URL or free text.

pub mod otlp;
mod render;

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

pub use render::render;

/// Latency buckets (seconds) for request-sized work: 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets (seconds) for crawl runs: 10 ms to 10 min.
const CRAWL_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// What became of a routed invoke (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokeOutcome {
    /// 2xx.
    Ok,
    /// 402: the buyer must pay (the provider's challenge or this hub's).
    PaymentRequired,
    /// The provider failed: unreachable, 5xx, an unusable or refused answer.
    ProviderError,
    /// The provider did not answer within the timeout.
    Timeout,
    /// This hub refused the call before (or instead of) forwarding it: bad input, limits,
    /// unknown capability, price, plugins.
    Rejected,
}

impl InvokeOutcome {
    /// Every outcome, in exposition order.
    pub const ALL: [Self; 5] = [
        Self::Ok,
        Self::PaymentRequired,
        Self::ProviderError,
        Self::Timeout,
        Self::Rejected,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::PaymentRequired => "payment_required",
            Self::ProviderError => "provider_error",
            Self::Timeout => "timeout",
            Self::Rejected => "rejected",
        }
    }

    /// Classifies a finished invoke by its status, whether the provider's answer was a
    /// success (a 2xx with `success: false` is the provider failing) and whether a provider
    /// answered at all.
    pub fn classify(status: u16, succeeded: bool, reached_provider: bool) -> Self {
        match status {
            200..=299 if succeeded => Self::Ok,
            200..=299 => Self::ProviderError,
            402 => Self::PaymentRequired,
            504 => Self::Timeout,
            500..=599 => Self::ProviderError,
            _ if reached_provider => Self::ProviderError,
            _ => Self::Rejected,
        }
    }
}

/// A ledger operation timed by [`Metrics::ledger_seconds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerOp {
    /// Reserving the routed price on a channel.
    Hold,
    /// Charging a hold with the routing receipt.
    Capture,
    /// Giving a hold back.
    Release,
}

impl LedgerOp {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Capture => "capture",
            Self::Release => "release",
        }
    }
}

/// The recorded series (see the module docs). Fields are public for the recording sites;
/// use the helpers where they exist, they keep labels in their closed sets.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `aimarket_http_request_duration_seconds{route,method,status_class}`.
    pub http_seconds: HistogramVec,
    /// `aimarket_search_duration_seconds{stage}`: `total` per search, `index` for the
    /// index query, `plugins` for the rank hooks.
    pub search_seconds: HistogramVec,
    /// `aimarket_invoke_added_latency_seconds{outcome}`: the hub's own time per invoke.
    pub invoke_added_seconds: HistogramVec,
    /// `aimarket_invoke_provider_duration_seconds{outcome}`: time waiting on providers.
    pub invoke_provider_seconds: HistogramVec,
    /// `aimarket_invokes_total{outcome,rail}`.
    pub invokes: IntCounterVec,
    /// `aimarket_invoke_routed_usd_total{rail}`: what buyers were charged for successful
    /// routed calls.
    pub routed_usd: CounterVec,
    /// `aimarket_invoke_fees_earned_usd_total{rail}`: the routing fee part of it.
    pub fees_usd: CounterVec,
    /// `aimarket_crawl_run_duration_seconds{result}`.
    pub crawl_seconds: HistogramVec,
    /// `aimarket_crawl_runs_total{result}`: `completed` or `failed`.
    pub crawl_runs: IntCounterVec,
    /// `aimarket_crawl_peers_total{result}`: per peer per run: `updated`, `not_modified`,
    /// or the crawler's error code (a closed set).
    pub crawl_peers: IntCounterVec,
    /// `aimarket_crawl_rejected_tools_total{reason}`: tools dropped from verified manifests
    /// by reason class.
    pub rejected_tools: IntCounterVec,
    /// `aimarket_ledger_operation_duration_seconds{operation}`.
    pub ledger_seconds: HistogramVec,
    /// `aimarket_ledger_errors_total{operation}`: ledger writes that failed for a reason
    /// other than the buyer's (store errors).
    pub ledger_errors: IntCounterVec,
    /// The OTLP exporter, once started ([`otlp::start`]): histograms are recorded into its
    /// mirror too.
    otel: OnceLock<otlp::Export>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let h = HistogramVec::new(opts, labels).expect("static histogram definition");
    registry
        .register(Box::new(h.clone()))
        .expect("each name is registered once");
    h
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static counter definition");
    registry
        .register(Box::new(c.clone()))
        .expect("each name is registered once");
    c
}

fn float_counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let c = CounterVec::new(Opts::new(name, help), labels).expect("static counter definition");
    registry
        .register(Box::new(c.clone()))
        .expect("each name is registered once");
    c
}

impl Metrics {
    /// A fresh set of series, zero everywhere.
    pub fn new() -> Self {
        let r = Registry::new();
        let m = Self {
            http_seconds: histogram(
                &r,
                "aimarket_http_request_duration_seconds",
                "HTTP request latency by route template, method and status class.",
                &["route", "method", "status_class"],
                LATENCY_BUCKETS,
            ),
            search_seconds: histogram(
                &r,
                "aimarket_search_duration_seconds",
                "Search latency: total, index query and ranking plugins.",
                &["stage"],
                LATENCY_BUCKETS,
            ),
            invoke_added_seconds: histogram(
                &r,
                "aimarket_invoke_added_latency_seconds",
                "Time a routed invoke spends in the hub (total minus provider time).",
                &["outcome"],
                LATENCY_BUCKETS,
            ),
            invoke_provider_seconds: histogram(
                &r,
                "aimarket_invoke_provider_duration_seconds",
                "Time a routed invoke waits on providers.",
                &["outcome"],
                LATENCY_BUCKETS,
            ),
            invokes: counter(
                &r,
                "aimarket_invokes_total",
                "Routed invokes by outcome and payment rail.",
                &["outcome", "rail"],
            ),
            routed_usd: float_counter(
                &r,
                "aimarket_invoke_routed_usd_total",
                "USD charged to buyers for successful routed invokes.",
                &["rail"],
            ),
            fees_usd: float_counter(
                &r,
                "aimarket_invoke_fees_earned_usd_total",
                "Routing fees earned on successful routed invokes, USD.",
                &["rail"],
            ),
            crawl_seconds: histogram(
                &r,
                "aimarket_crawl_run_duration_seconds",
                "Crawl run duration by result.",
                &["result"],
                CRAWL_BUCKETS,
            ),
            crawl_runs: counter(
                &r,
                "aimarket_crawl_runs_total",
                "Crawl runs by result (completed, failed).",
                &["result"],
            ),
            crawl_peers: counter(
                &r,
                "aimarket_crawl_peers_total",
                "Peers crawled, by result (updated, not_modified or the crawler's error code).",
                &["result"],
            ),
            rejected_tools: counter(
                &r,
                "aimarket_crawl_rejected_tools_total",
                "Tools dropped from verified manifests, by reason class.",
                &["reason"],
            ),
            ledger_seconds: histogram(
                &r,
                "aimarket_ledger_operation_duration_seconds",
                "Ledger write latency by operation (hold, capture, release).",
                &["operation"],
                LATENCY_BUCKETS,
            ),
            ledger_errors: counter(
                &r,
                "aimarket_ledger_errors_total",
                "Ledger writes that failed in the store, by operation.",
                &["operation"],
            ),
            registry: r,
            otel: OnceLock::new(),
        };
        // Series a dashboard or alert divides by exist from the start (at zero), so a quiet
        // hub shows 0 rather than "no data".
        for outcome in InvokeOutcome::ALL {
            let _ = m
                .invoke_added_seconds
                .with_label_values(&[outcome.as_str()]);
            let _ = m
                .invoke_provider_seconds
                .with_label_values(&[outcome.as_str()]);
        }
        for op in [LedgerOp::Hold, LedgerOp::Capture, LedgerOp::Release] {
            let _ = m.ledger_errors.with_label_values(&[op.as_str()]);
            let _ = m.ledger_seconds.with_label_values(&[op.as_str()]);
        }
        for result in ["completed", "failed"] {
            let _ = m.crawl_runs.with_label_values(&[result]);
        }
        let _ = m.search_seconds.with_label_values(&["total"]);
        for reason in REJECTION_CLASSES {
            let _ = m.rejected_tools.with_label_values(&[reason]);
        }
        for result in ["updated", "not_modified"] {
            let _ = m.crawl_peers.with_label_values(&[result]);
        }
        m
    }

    /// Records one HTTP request. `route` is the matched route template (bounded) or
    /// `"unmatched"`; methods outside the standard set are `"other"`.
    pub fn observe_http(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let method = match method {
            "GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH" => method,
            _ => "other",
        };
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_seconds
            .with_label_values(&[route, method, class])
            .observe(elapsed.as_secs_f64());
        if let Some(otel) = self.otel.get() {
            otel.mirror.http.record(
                elapsed.as_secs_f64(),
                &otlp::attributes(&[
                    ("route", route),
                    ("method", method),
                    ("status_class", class),
                ]),
            );
        }
    }

    /// Records one search: its total time, the index query and the ranking plugins.
    pub fn observe_search(&self, outcome: &crate::catalog::SearchOutcome, total: Duration) {
        for (stage, time) in [
            ("total", total),
            ("index", outcome.index_time),
            ("plugins", outcome.plugin_time),
        ] {
            self.search_seconds
                .with_label_values(&[stage])
                .observe(time.as_secs_f64());
            if let Some(otel) = self.otel.get() {
                otel.mirror
                    .search
                    .record(time.as_secs_f64(), &otlp::attributes(&[("stage", stage)]));
            }
        }
    }

    /// Records one finished routed invoke.
    pub fn observe_invoke(
        &self,
        outcome: InvokeOutcome,
        rail: &str,
        total: Duration,
        provider: Duration,
    ) {
        let label = [outcome.as_str()];
        let added = total.saturating_sub(provider).as_secs_f64();
        self.invoke_added_seconds
            .with_label_values(&label)
            .observe(added);
        if !provider.is_zero() {
            self.invoke_provider_seconds
                .with_label_values(&label)
                .observe(provider.as_secs_f64());
        }
        if let Some(otel) = self.otel.get() {
            let attributes = otlp::attributes(&[("outcome", outcome.as_str())]);
            otel.mirror.invoke_added.record(added, &attributes);
            if !provider.is_zero() {
                otel.mirror
                    .invoke_provider
                    .record(provider.as_secs_f64(), &attributes);
            }
        }
        self.invokes
            .with_label_values(&[outcome.as_str(), rail])
            .inc();
    }

    /// Records the money of a successful routed invoke: `charged` to the buyer, of which
    /// `fee` is this hub's routing fee (USD).
    pub fn observe_revenue(&self, rail: &str, charged: f64, fee: f64) {
        if charged > 0.0 {
            self.routed_usd.with_label_values(&[rail]).inc_by(charged);
        }
        if fee > 0.0 {
            self.fees_usd.with_label_values(&[rail]).inc_by(fee);
        }
    }

    /// Times a ledger operation; an `Err` that `is_store_error` says is the store's fault
    /// is also counted in `aimarket_ledger_errors_total`.
    pub fn observe_ledger(&self, op: LedgerOp, elapsed: Duration, store_error: bool) {
        self.ledger_seconds
            .with_label_values(&[op.as_str()])
            .observe(elapsed.as_secs_f64());
        if let Some(otel) = self.otel.get() {
            otel.mirror.ledger.record(
                elapsed.as_secs_f64(),
                &otlp::attributes(&[("operation", op.as_str())]),
            );
        }
        if store_error {
            self.ledger_errors.with_label_values(&[op.as_str()]).inc();
        }
    }

    /// Records a crawl run: its duration and result, each peer's result and the rejected
    /// tools by reason class.
    pub fn observe_crawl(&self, summary: Option<&crate::crawl::CrawlSummary>, elapsed: Duration) {
        let result = if summary.is_some() {
            "completed"
        } else {
            "failed"
        };
        self.crawl_runs.with_label_values(&[result]).inc();
        self.crawl_seconds
            .with_label_values(&[result])
            .observe(elapsed.as_secs_f64());
        if let Some(otel) = self.otel.get() {
            otel.mirror.crawl.record(
                elapsed.as_secs_f64(),
                &otlp::attributes(&[("result", result)]),
            );
        }
        let Some(summary) = summary else { return };
        for peer in &summary.peers {
            self.crawl_peers
                .with_label_values(&[peer_result(&peer.status)])
                .inc();
            let mut classified = 0;
            for rejection in &peer.rejected {
                self.rejected_tools
                    .with_label_values(&[rejection_class(&rejection.reason)])
                    .inc();
                classified += 1;
            }
            // Only a sample of each peer's rejections keeps its reason; the rest are counted
            // without one.
            let rest = peer.rejected_tools.saturating_sub(classified) as u64;
            if rest > 0 {
                self.rejected_tools
                    .with_label_values(&["unsampled"])
                    .inc_by(rest);
            }
        }
    }

    /// Sends the OTLP metrics recorded so far now (no-op when not exporting). Blocks up to
    /// the export timeout: call it from a blocking context.
    pub fn flush_export(&self) {
        if let Some(otel) = self.otel.get() {
            otel.flush();
        }
    }

    /// Final OTLP export and stop (no-op when not exporting). Blocks like
    /// [`Metrics::flush_export`].
    pub fn shutdown_export(&self) {
        if let Some(otel) = self.otel.get() {
            otel.shutdown();
        }
    }

    /// The registry (for rendering).
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// A peer's crawl status as a bounded label: the crawler's codes are a closed set of short
/// snake_case words; anything else (which would be a bug) becomes `other`.
fn peer_result(status: &str) -> &str {
    let plausible = !status.is_empty()
        && status.len() <= 32
        && status.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if plausible { status } else { "other" }
}

/// Every value of the `reason` label of `aimarket_crawl_rejected_tools_total`.
pub const REJECTION_CLASSES: [&str; 7] = [
    "duplicate",
    "price",
    "reexport",
    "identity",
    "fields",
    "other",
    "unsampled",
];

/// The class of a tool rejection's reason (the reasons themselves carry names and values).
pub fn rejection_class(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.contains("duplicate") {
        "duplicate"
    } else if r.contains("price") {
        "price"
    } else if r.contains("re-export") || r.contains("source_hub") || r.contains("hop") {
        "reexport"
    } else if r.contains("name") || r.contains("product_id") || r.contains("capability_id") {
        "identity"
    } else if r.contains("schema") || r.contains("not a") || r.contains("latency") {
        "fields"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn outcomes_are_classified_by_status_and_provider() {
        use InvokeOutcome as O;
        assert_eq!(O::classify(200, true, true), O::Ok);
        assert_eq!(O::classify(200, false, true), O::ProviderError);
        assert_eq!(O::classify(402, false, false), O::PaymentRequired);
        assert_eq!(O::classify(504, false, true), O::Timeout);
        assert_eq!(O::classify(502, false, true), O::ProviderError);
        assert_eq!(O::classify(400, false, true), O::ProviderError);
        assert_eq!(O::classify(422, false, false), O::Rejected);
        assert_eq!(O::classify(429, false, false), O::Rejected);
    }

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(peer_result("not_modified"), "not_modified");
        assert_eq!(peer_result("http://evil/\"x"), "other");
        assert_eq!(rejection_class("duplicate name `x`"), "duplicate");
        assert_eq!(rejection_class("something unheard of"), "other");
        let m = Metrics::new();
        m.observe_http("/x/{id}", "BREW", 200, Duration::from_millis(1));
        let text = render::encode(&m);
        assert!(text.contains("method=\"other\""), "{text}");
        assert!(!text.contains("BREW"));
    }
}

//! OpenTelemetry traces: the OTLP/HTTP exporter, the sampler and resource from
//! [`TelemetrySettings`], W3C trace-context propagation, and the drop counters.
//!
//! The path from a finished span to the collector never blocks a request: `on_end` checks a
//! bound (spans queued and not yet exported, at most `queue_size`) and either hands the span
//! to the SDK's batch processor, whose channel it can never overfill, or drops and counts it
//! (`queue_full`). The batch processor exports from its own thread with a blocking HTTP
//! client, each attempt bounded by [`EXPORT_TIMEOUT`]; spans of a failed export are counted
//! too (`export_failed`). So an unreachable or stuck collector costs requests nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::{Layer, Registry};

use super::TelemetryError;
use crate::settings::TelemetrySettings;
use crate::settings::telemetry::resource_pairs;

/// Bound on one export attempt.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often queued spans are sent.
pub const EXPORT_INTERVAL: Duration = Duration::from_secs(1);

static QUEUE_FULL: AtomicU64 = AtomicU64::new(0);
static EXPORT_FAILED: AtomicU64 = AtomicU64::new(0);
static EXPORTED: AtomicU64 = AtomicU64::new(0);

/// What became of finished spans since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// Dropped because `queue_size` spans were already waiting.
    pub queue_full: u64,
    /// Dropped because their export failed (collector down, refused, timed out).
    pub export_failed: u64,
    /// Delivered.
    pub exported: u64,
}

/// The counters (`aimarket_otel_spans_dropped_total`, `aimarket_otel_spans_exported_total`).
pub fn drops() -> Drops {
    Drops {
        queue_full: QUEUE_FULL.load(Ordering::Relaxed),
        export_failed: EXPORT_FAILED.load(Ordering::Relaxed),
        exported: EXPORTED.load(Ordering::Relaxed),
    }
}

/// Keeps the exporter alive; flushes and stops it when dropped.
#[derive(Debug)]
pub struct TracesGuard {
    provider: SdkTracerProvider,
}

impl TracesGuard {
    /// Sends what is queued now (bounded by the export timeout); for tests and shutdown.
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::debug!(error = %e, "trace flush failed");
        }
    }
}

impl Drop for TracesGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown_with_timeout(EXPORT_TIMEOUT) {
            tracing::debug!(error = %e, "trace exporter shutdown");
        }
    }
}

/// The subscriber layer exporting spans at info level and above, and its guard.
pub(super) fn layer(
    settings: &TelemetrySettings,
) -> Result<(Box<dyn Layer<Registry> + Send + Sync>, TracesGuard), TelemetryError> {
    let provider = provider(settings)?;
    let tracer = provider.tracer("aimarket-hub");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(LevelFilter::INFO)
        .boxed();
    Ok((layer, TracesGuard { provider }))
}

fn provider(settings: &TelemetrySettings) -> Result<SdkTracerProvider, TelemetryError> {
    let base = settings
        .otlp_endpoint
        .as_deref()
        .ok_or_else(|| TelemetryError::Exporter("no endpoint".into()))?;
    // The exporter's HTTP client needs a TLS provider for https endpoints.
    crate::startup::install_crypto_provider();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", base.trim().trim_end_matches('/')))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let queued = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(CountingExporter {
        inner: exporter,
        queued: queued.clone(),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(settings.queue_size)
            .with_max_export_batch_size(settings.queue_size.min(512))
            .with_scheduled_delay(EXPORT_INTERVAL)
            .build(),
    )
    .build();
    let resource = resource(settings).map_err(TelemetryError::Exporter)?;
    Ok(SdkTracerProvider::builder()
        .with_span_processor(BoundedQueue {
            inner: batch,
            queued,
            limit: settings.queue_size,
        })
        .with_sampler(sampler(settings))
        .with_resource(resource)
        .build())
}

/// The resource of every export (traces and metrics): `service.name`, `service.version` and
/// `OTEL_RESOURCE_ATTRIBUTES`.
pub(crate) fn resource(settings: &TelemetrySettings) -> Result<Resource, String> {
    let attributes = resource_pairs(&settings.resource_attributes)?
        .into_iter()
        .map(|(k, v)| KeyValue::new(k, v));
    Ok(Resource::builder_empty()
        .with_attributes(attributes)
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build())
}

/// The configured sampler (names checked by the settings).
fn sampler(settings: &TelemetrySettings) -> Sampler {
    let ratio = settings.ratio();
    match settings.sampler.as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
        _ => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
    }
}

/// Drops (and counts) spans beyond the bound instead of handing them to the batch
/// processor; see the module docs.
#[derive(Debug)]
struct BoundedQueue {
    inner: BatchSpanProcessor,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

impl SpanProcessor for BoundedQueue {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            self.inner.on_end(span);
        } else {
            QUEUE_FULL.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
}

/// Counts each batch's spans as exported or failed and frees their places in the queue.
#[derive(Debug)]
struct CountingExporter {
    inner: opentelemetry_otlp::SpanExporter,
    queued: Arc<AtomicUsize>,
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.queued.fetch_sub(
            spans.min(self.queued.load(Ordering::Acquire)),
            Ordering::AcqRel,
        );
        let counter = if result.is_ok() {
            &EXPORTED
        } else {
            &EXPORT_FAILED
        };
        counter.fetch_add(spans as u64, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Reads `traceparent`/`tracestate` from request headers.
struct HeaderExtractor<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Collects injected headers.
struct PairInjector(Vec<(&'static str, String)>);

impl Injector for PairInjector {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes exactly these two names.
        let name = match key {
            "traceparent" => "traceparent",
            "tracestate" => "tracestate",
            _ => return,
        };
        self.0.push((name, value));
    }
}

/// Makes `span` a child of the W3C trace context in `headers` (a client's `traceparent` and
/// `tracestate`), when there is a valid one.
pub fn set_remote_parent(span: &tracing::Span, headers: &actix_web::http::header::HeaderMap) {
    if span.is_none() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// `traceparent` (and `tracestate`, when there is one) for an outgoing request made inside
/// `span`; empty when `span` is disabled.
pub fn context_headers(span: &tracing::Span) -> Vec<(&'static str, String)> {
    if span.is_none() {
        return Vec::new();
    }
    let mut injector = PairInjector(Vec::with_capacity(2));
    TraceContextPropagator::new().inject_context(&span.context(), &mut injector);
    injector.0
}

/// [`context_headers`] of the current span: the crawler's per-request header hook.
pub fn current_context_headers() -> Vec<(&'static str, String)> {
    if !super::traces_on() {
        return Vec::new();
    }
    context_headers(&tracing::Span::current())
}

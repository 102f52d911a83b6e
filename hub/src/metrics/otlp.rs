//! The same series as `GET /metrics`, pushed over OTLP/HTTP when an exporter is configured
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, unless `OTEL_METRICS_EXPORTER=none`).
//!
//! One source of truth: the OpenTelemetry SDK's periodic reader collects and the official
//! OTLP exporter sends (to `<endpoint>/v1/metrics`, every `OTEL_METRIC_EXPORT_INTERVAL` ms,
//! cumulative temporality), from two feeds:
//! - **histograms** are recorded twice by the [`Metrics`](super::Metrics) helpers, into the
//!   Prometheus family and into an OpenTelemetry histogram with the same name, buckets and
//!   labels. Off, that second record costs one `OnceLock` read;
//! - **counters and gauges** are observable instruments reading a snapshot of the rendered
//!   exposition (everything `/metrics` shows, stored-state gauges and plugin counters
//!   included), refreshed by a task at least every [`MAX_REFRESH`]. So an OTLP point is at
//!   most that much older than the scrape it mirrors.
//!
//! A family is registered when it first shows in a rendering (a labelled counter has no
//! series before its first record); label sets are bounded by construction (parent module).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, MeterProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use super::{CRAWL_BUCKETS, LATENCY_BUCKETS};
use crate::settings::TelemetrySettings;
use crate::state::AppState;

/// Longest time between two refreshes of the counter and gauge snapshot.
pub const MAX_REFRESH: Duration = Duration::from_secs(5);
/// Bound on one export attempt (and on the final flush at shutdown).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the metric exporter could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP metric exporter: {0}")]
pub struct ExportError(String);

/// The OpenTelemetry twins of the Prometheus histograms (same names, buckets and labels).
#[derive(Debug)]
pub(super) struct Mirror {
    pub(super) http: Histogram<f64>,
    pub(super) search: Histogram<f64>,
    pub(super) invoke_added: Histogram<f64>,
    pub(super) invoke_provider: Histogram<f64>,
    pub(super) crawl: Histogram<f64>,
    pub(super) ledger: Histogram<f64>,
}

/// A running exporter: the SDK provider (its reader thread exports) and the mirror.
#[derive(Debug)]
pub(super) struct Export {
    provider: SdkMeterProvider,
    pub(super) mirror: Mirror,
}

impl Export {
    /// Sends what is recorded now (bounded by the export timeout). Blocks: call it off the
    /// async workers.
    pub(super) fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::debug!(error = %e, "metric flush failed");
        }
    }

    /// Final export and stop. Blocks like [`Export::flush`].
    pub(super) fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown_with_timeout(EXPORT_TIMEOUT) {
            tracing::debug!(error = %e, "metric exporter shutdown");
        }
    }
}

/// Label sets and values of one counter or gauge family.
type Points = Vec<(Vec<KeyValue>, f64)>;
/// The latest rendering, by family name.
type Snapshot = Arc<RwLock<HashMap<String, Points>>>;

/// Starts exporting `state`'s metrics when the settings ask for it (no-op otherwise).
pub async fn start(state: &Arc<AppState>) -> Result<(), ExportError> {
    let settings = &state.settings.telemetry;
    if !settings.metrics_enabled() {
        return Ok(());
    }
    let provider = provider(settings)?;
    let meter = provider.meter("aimarket-hub");
    let mut feed = Feed {
        meter: meter.clone(),
        snapshot: Arc::new(RwLock::new(HashMap::new())),
        known: HashSet::new(),
    };
    feed.absorb(scrape(state).await);
    let mirror = mirror(&meter);
    let export = Export { provider, mirror };
    if state.metrics.otel.set(export).is_err() {
        return Err(ExportError("already started for this hub".into()));
    }
    let refresh = settings.metric_interval().min(MAX_REFRESH);
    tokio::spawn(refresh_loop(Arc::downgrade(state), feed, refresh));
    tracing::info!(
        interval_ms = settings.metric_export_interval_ms,
        "exporting metrics over OTLP"
    );
    Ok(())
}

fn provider(settings: &TelemetrySettings) -> Result<SdkMeterProvider, ExportError> {
    let base = settings
        .otlp_endpoint
        .as_deref()
        .ok_or_else(|| ExportError("no endpoint".into()))?;
    crate::startup::install_crypto_provider();
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/metrics", base.trim().trim_end_matches('/')))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| ExportError(e.to_string()))?;
    let reader = PeriodicReader::builder(exporter)
        .with_interval(settings.metric_interval())
        .build();
    let resource = crate::telemetry::otel::resource(settings).map_err(ExportError)?;
    Ok(SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build())
}

fn mirror(meter: &Meter) -> Mirror {
    let histogram = |name: &'static str, help: &'static str, buckets: &[f64]| {
        meter
            .f64_histogram(name)
            .with_description(help)
            .with_unit("s")
            .with_boundaries(buckets.to_vec())
            .build()
    };
    Mirror {
        http: histogram(
            "aimarket_http_request_duration_seconds",
            "HTTP request latency by route template, method and status class.",
            LATENCY_BUCKETS,
        ),
        search: histogram(
            "aimarket_search_duration_seconds",
            "Search latency: total, index query and ranking plugins.",
            LATENCY_BUCKETS,
        ),
        invoke_added: histogram(
            "aimarket_invoke_added_latency_seconds",
            "Time a routed invoke spends in the hub (total minus provider time).",
            LATENCY_BUCKETS,
        ),
        invoke_provider: histogram(
            "aimarket_invoke_provider_duration_seconds",
            "Time a routed invoke waits on providers.",
            LATENCY_BUCKETS,
        ),
        crawl: histogram(
            "aimarket_crawl_run_duration_seconds",
            "Crawl run duration by result.",
            CRAWL_BUCKETS,
        ),
        ledger: histogram(
            "aimarket_ledger_operation_duration_seconds",
            "Ledger write latency by operation (hold, capture, release).",
            LATENCY_BUCKETS,
        ),
    }
}

/// Labels as attributes (for the mirror's records).
pub(super) fn attributes(pairs: &[(&'static str, &str)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| KeyValue::new(*k, (*v).to_owned()))
        .collect()
}

/// A counter or gauge family seen in the exposition.
#[derive(Debug, Clone, PartialEq)]
struct Family {
    name: String,
    help: String,
    counter: bool,
}

/// One parsed rendering: the families (histograms left out: the mirror has them) and their
/// points.
#[derive(Debug, Default)]
struct Scrape {
    families: Vec<Family>,
    points: HashMap<String, Points>,
}

async fn scrape(state: &AppState) -> Scrape {
    parse(&super::render(state).await)
}

/// Parses the text exposition with `prometheus-parse`.
fn parse(text: &str) -> Scrape {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let parsed = match prometheus_parse::Scrape::parse(lines) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot parse the exposition for OTLP");
            return Scrape::default();
        }
    };
    // `prometheus-parse` folds buckets into one histogram sample but reports the `_sum` and
    // `_count` lines as untyped samples of their own: leave those out too.
    let histograms: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" histogram"))
        .collect();
    let of_histogram = |metric: &str| {
        histograms.iter().any(|h| {
            metric
                .strip_prefix(h)
                .is_some_and(|rest| rest == "_sum" || rest == "_count")
        })
    };
    let mut out = Scrape::default();
    for sample in parsed.samples {
        if of_histogram(&sample.metric) {
            continue;
        }
        let (value, counter) = match sample.value {
            prometheus_parse::Value::Counter(v) => (v, true),
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => (v, false),
            // Histograms come from the mirror; the hub renders no summaries.
            _ => continue,
        };
        let labels: Vec<KeyValue> = sample
            .labels
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        let points = out.points.entry(sample.metric.clone()).or_insert_with(|| {
            out.families.push(Family {
                help: parsed.docs.get(&sample.metric).cloned().unwrap_or_default(),
                name: sample.metric.clone(),
                counter,
            });
            Vec::new()
        });
        points.push((labels, value));
    }
    out
}

/// The counter and gauge side: the snapshot the instruments read and the families
/// registered so far (a labelled family appears once its first series is recorded).
struct Feed {
    meter: Meter,
    snapshot: Snapshot,
    known: HashSet<String>,
}

impl Feed {
    /// Registers the families seen for the first time and stores the points.
    fn absorb(&mut self, scrape: Scrape) {
        for family in &scrape.families {
            if self.known.insert(family.name.clone()) {
                observe(&self.meter, family, self.snapshot.clone());
            }
        }
        if let Ok(mut current) = self.snapshot.write() {
            // A family that failed to render this time (a store error) keeps its last points.
            current.extend(scrape.points);
        }
    }
}

/// Registers one observable instrument reading `family` from the snapshot.
fn observe(meter: &Meter, family: &Family, snapshot: Snapshot) {
    let name = family.name.clone();
    let read = move |observe: &dyn Fn(f64, &[KeyValue])| {
        if let Ok(current) = snapshot.read()
            && let Some(points) = current.get(&name)
        {
            for (labels, value) in points {
                observe(*value, labels);
            }
        }
    };
    if family.counter {
        meter
            .f64_observable_counter(family.name.clone())
            .with_description(family.help.clone())
            .with_callback(move |o| read(&|v, l| o.observe(v, l)))
            .build();
    } else {
        meter
            .f64_observable_gauge(family.name.clone())
            .with_description(family.help.clone())
            .with_callback(move |o| read(&|v, l| o.observe(v, l)))
            .build();
    }
}

async fn refresh_loop(state: Weak<AppState>, mut feed: Feed, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        // The hub is gone: so is the exporter.
        let Some(state) = state.upgrade() else { return };
        let scrape = scrape(&state).await;
        drop(state);
        feed.absorb(scrape);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_exposition_parses_into_counter_and_gauge_families() {
        let text = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n\
                    a_total{x=\"2\"} 4\n# HELP g A gauge.\n# TYPE g gauge\ng 7\n\
                    # HELP h_seconds H.\n# TYPE h_seconds histogram\n\
                    h_seconds_bucket{le=\"1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 1\n\
                    h_seconds_sum 0.5\nh_seconds_count 1\n";
        let scrape = parse(text);
        let names: Vec<_> = scrape
            .families
            .iter()
            .map(|f| (f.name.as_str(), f.counter))
            .collect();
        assert_eq!(names, vec![("a_total", true), ("g", false)]);
        assert_eq!(scrape.families[0].help, "Things.");
        assert_eq!(scrape.points["a_total"].len(), 2);
        assert_eq!(scrape.points["g"], vec![(vec![], 7.0)]);
    }
}

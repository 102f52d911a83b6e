//! The `GET /metrics` body: the recorded series, the gauges read at scrape time, the
//! catalog and limit counters, the exporter's drop counters and the plugins' hook counters.

use std::fmt::Write as _;

use prometheus::{Encoder as _, TextEncoder};

use super::Metrics;
use crate::catalog::Catalog;
use crate::payments::Ledger;
use crate::replica::SharedState;
use crate::state::AppState;
use crate::store::{PeerState, Store};

/// The recorded series in the text format.
pub(super) fn encode(metrics: &Metrics) -> String {
    let mut buffer = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&metrics.registry().gather(), &mut buffer) {
        tracing::warn!(error = %e, "cannot encode the metrics");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// Appends one unlabelled series with its `HELP` and `TYPE` lines.
fn series(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
}

/// Appends a family header.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// The whole exposition for `state`. It reads every part of the hub that has series (the
/// recorded metrics, catalog, store, ledger, limits, invoker, plugins, replica mode), so it
/// takes the state that holds them all; the helpers take only their parts.
pub async fn render(state: &AppState) -> String {
    let mut out = encode(&state.metrics);
    catalog_series(&state.catalog, &state.shared, &mut out);
    stored_state_series(&state.store, &state.catalog, &state.ledger, &mut out).await;
    series(
        &mut out,
        "aimarket_ledger_holds_dropped_total",
        "counter",
        "Channel holds whose guard was dropped unsettled and released from a background task.",
        state.ledger.holds_dropped(),
    );

    // One labelled series per limit, zeros included, so dashboards see every limit.
    let name = "aimarket_limit_refusals_total";
    family(
        &mut out,
        name,
        "counter",
        "Requests refused with 429 by a client or provider limit.",
    );
    for kind in crate::limits::LimitKind::ALL {
        let _ = writeln!(
            out,
            "{name}{{limit=\"{}\"}} {}",
            kind.as_str(),
            state.limits.refused(kind)
        );
    }
    series(
        &mut out,
        "aimarket_ssrf_refusals_total",
        "counter",
        "URLs refused by the address rules of spec 7.4 (process-wide).",
        aimarket_crawler::url_safety::refusals_total(),
    );
    let name = "aimarket_otel_spans_dropped_total";
    family(
        &mut out,
        name,
        "counter",
        "Trace spans dropped by the OTLP exporter (queue full or export failed).",
    );
    let drops = crate::telemetry::otel::drops();
    let _ = writeln!(out, "{name}{{reason=\"queue_full\"}} {}", drops.queue_full);
    let _ = writeln!(
        out,
        "{name}{{reason=\"export_failed\"}} {}",
        drops.export_failed
    );
    series(
        &mut out,
        "aimarket_otel_spans_exported_total",
        "counter",
        "Trace spans the OTLP exporter delivered.",
        drops.exported,
    );
    let name = "aimarket_invoke_records_dropped_total";
    family(
        &mut out,
        name,
        "counter",
        "Background invocation records and receipts lost: the write queue was full \
         (queue_full) or their batch's transaction failed (write_failed).",
    );
    let records = state.invoker.dropped_records();
    let _ = writeln!(
        out,
        "{name}{{reason=\"queue_full\"}} {}",
        records.queue_full
    );
    let _ = writeln!(
        out,
        "{name}{{reason=\"write_failed\"}} {}",
        records.write_failed
    );
    out.push_str(&aimarket_plugins::render_prometheus(
        &state.plugins.metrics(),
    ));
    out
}

fn catalog_series(catalog: &Catalog, shared: &SharedState, out: &mut String) {
    let stats = &catalog.stats;
    let index = catalog.index().ok();
    let manifest = catalog.manifest().get();
    let counters = [
        (
            "aimarket_search_requests_total",
            "Searches served.",
            stats.searches.get(),
        ),
        (
            "aimarket_index_rebuilds_total",
            "Full search index rebuilds from the store.",
            stats.rebuilds.get(),
        ),
        (
            "aimarket_index_applies_total",
            "Incremental search index updates.",
            stats.applies.get(),
        ),
        (
            "aimarket_index_sync_errors_total",
            "Failed search index syncs (retried).",
            stats.sync_errors.get(),
        ),
        (
            "aimarket_manifest_builds_total",
            "Manifest documents built.",
            stats.manifest_builds.get(),
        ),
    ];
    for (name, help, value) in counters {
        series(out, name, "counter", help, value);
    }
    series(
        out,
        "aimarket_index_documents",
        "gauge",
        "Capabilities in the search index.",
        index.as_ref().map_or(0, |i| i.num_docs()),
    );
    series(
        out,
        "aimarket_index_catalog_version",
        "gauge",
        "Catalog version the search index was built at.",
        index.and_then(|i| i.indexed_version()).unwrap_or(0),
    );
    series(
        out,
        "aimarket_manifest_capabilities",
        "gauge",
        "Tools in the served manifest.",
        manifest.map_or(0, |m| m.capabilities as u64),
    );
    let name = "aimarket_replica_mode";
    family(
        out,
        name,
        "gauge",
        "1 for the mode this replica runs in (single-replica, multi-replica).",
    );
    let mode = shared.mode();
    for candidate in ["single-replica", "multi-replica"] {
        let _ = writeln!(
            out,
            "{name}{{mode=\"{candidate}\"}} {}",
            u8::from(candidate == mode)
        );
    }
}

/// Gauges read from the store at scrape time; a store error leaves them out (and says so in
/// `aimarket_metrics_store_errors_total`-free form: a warning), never fails the scrape.
async fn stored_state_series(store: &Store, catalog: &Catalog, ledger: &Ledger, out: &mut String) {
    match store.catalog_version().await {
        Ok(version) => {
            series(
                out,
                "aimarket_catalog_version",
                "gauge",
                "The store's catalog version.",
                version,
            );
            let indexed = catalog
                .index()
                .ok()
                .and_then(|i| i.indexed_version())
                .unwrap_or(0);
            let indexed = i64::try_from(indexed).unwrap_or(i64::MAX);
            series(
                out,
                "aimarket_index_lag",
                "gauge",
                "Catalog versions the search index is behind the store.",
                version.saturating_sub(indexed).max(0),
            );
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the catalog version"),
    }
    match store.list_peers(None).await {
        Ok(peers) => {
            let name = "aimarket_peers";
            family(out, name, "gauge", "Known peers by status.");
            for status in [PeerState::Active, PeerState::Pending] {
                let count = peers.iter().filter(|p| p.state == status).count();
                let _ = writeln!(out, "{name}{{status=\"{}\"}} {count}", status.as_str());
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot list peers"),
    }
    match ledger.open_channels().await {
        Ok(open) => series(
            out,
            "aimarket_channels_open",
            "gauge",
            "Payment channels open and not expired.",
            open,
        ),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count open channels"),
    }
}

//! Metrics over OTLP/HTTP (issue #16): with an exporter configured, the series of `/metrics`
//! arrive at `<endpoint>/v1/metrics` as OTLP protobuf, decoded here with the OpenTelemetry
//! protobuf types: histograms with the same buckets and labels, cumulative monotonic sums
//! equal to the scraped counters, gauges read from stored state, and the configured resource.
//! With the collector gone, requests are unaffected.

use std::sync::Mutex;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use aimarket_e2e::wait_until;
use aimarket_hub::settings::TelemetrySettings;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, Metric};
use prost::Message as _;
use reqwest::StatusCode;

use crate::observability::{loaded_hub_with, scrape};
use crate::otlp::collector;

/// Every export received, in order.
#[derive(Default)]
struct Received {
    exports: Mutex<Vec<ExportMetricsServiceRequest>>,
}

impl Received {
    /// The newest point set of metric `name` (exports are cumulative: the last one holds it
    /// all), with the resource's `service.name`.
    fn latest(&self, name: &str) -> Option<(Metric, String)> {
        let exports = self.exports.lock().unwrap();
        exports.iter().rev().find_map(|request| {
            request.resource_metrics.iter().find_map(|resource| {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| attribute(&r.attributes, "service.name"))
                    .unwrap_or_default();
                resource
                    .scope_metrics
                    .iter()
                    .flat_map(|scope| &scope.metrics)
                    .find(|m| m.name == name)
                    .map(|m| (m.clone(), service))
            })
        })
    }
}

impl Received {
    /// What arrived, for failure messages: exports and the metric names of the last one.
    fn names(&self) -> String {
        let exports = self.exports.lock().unwrap();
        let names: Vec<&str> = exports
            .last()
            .into_iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| m.name.as_str())
            .collect();
        format!("{} exports, last: {names:?}", exports.len())
    }
}

async fn export(body: web::Bytes, received: web::Data<Received>) -> HttpResponse {
    let Ok(request) = ExportMetricsServiceRequest::decode(body.as_ref()) else {
        return HttpResponse::BadRequest().finish();
    };
    received.exports.lock().unwrap().push(request);
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .finish()
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        }
    })
}

/// The count and bucket bounds of the histogram point of `metric` with every attribute in
/// `labels`.
fn histogram_count(metric: &Metric, labels: &[(&str, &str)]) -> Option<(u64, Vec<f64>)> {
    let Some(Data::Histogram(h)) = &metric.data else {
        return None;
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    h.data_points
        .iter()
        .find(|p| {
            labels
                .iter()
                .all(|(k, v)| attribute(&p.attributes, k).as_deref() == Some(*v))
        })
        .map(|p| (p.count, p.explicit_bounds.clone()))
}

/// The value of the sum or gauge point of `metric` with every attribute in `labels`.
fn point_value(metric: &Metric, labels: &[(&str, &str)]) -> Option<f64> {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    let points = match &metric.data {
        Some(Data::Sum(s)) => {
            assert!(s.is_monotonic, "{} is a counter", metric.name);
            &s.data_points
        }
        Some(Data::Gauge(g)) => &g.data_points,
        _ => return None,
    };
    points
        .iter()
        .find(|p| {
            labels
                .iter()
                .all(|(k, v)| attribute(&p.attributes, k).as_deref() == Some(*v))
        })
        .and_then(|p| match p.value {
            Some(Value::AsDouble(d)) => Some(d),
            Some(Value::AsInt(i)) => Some(i as f64),
            None => None,
        })
}

/// The value of the scraped series `name` carrying every label in `labels` (any order) and
/// no other.
fn scraped_series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(labelled) => labelled.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let pairs: Vec<&str> = set.split(',').filter(|p| !p.is_empty()).collect();
        let all = labels
            .iter()
            .all(|(k, v)| pairs.contains(&format!("{k}=\"{v}\"").as_str()));
        (all && pairs.len() == labels.len())
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_of_a_loaded_hub_arrive_over_otlp_like_the_scrape_shows_them() {
    let received = web::Data::new(Received::default());
    let data = received.clone();
    let (receiver_addr, receiver) = collector(move |c| {
        c.app_data(data.clone())
            .route("/v1/metrics", web::post().to(export));
    });

    let loaded = loaded_hub_with(|s| {
        s.telemetry = TelemetrySettings {
            otlp_endpoint: Some(format!("http://{receiver_addr}")),
            service_name: "metrics-under-test".into(),
            metric_export_interval_ms: 200,
            ..TelemetrySettings::default()
        };
    })
    .await;
    let hub = &loaded.hub;

    // Everything the load did is exported once the counter snapshot has caught up with it.
    let series = "aimarket_invokes_total";
    let ok_channel: &[(&str, &str)] = &[("outcome", "ok"), ("rail", "hub_channel")];
    let caught_up = wait_until(Duration::from_secs(30), || {
        let received = received.clone();
        async move {
            let text = scrape(hub).await;
            let Some(scraped) = scraped_series(&text, series, ok_channel) else {
                return false;
            };
            received
                .latest("aimarket_invokes_total")
                .and_then(|(m, _)| point_value(&m, ok_channel))
                == Some(scraped)
        }
    })
    .await;
    let text = scrape(hub).await;
    assert!(
        caught_up,
        "the exported aimarket_invokes_total never matched the scrape ({:?}; {}):\n{text}",
        received.latest("aimarket_invokes_total"),
        received.names()
    );
    // Two paid calls on the channel rail.
    assert_eq!(
        scraped_series(&text, series, ok_channel),
        Some(2.0),
        "{text}"
    );

    // Histograms: same name, buckets and labels as the Prometheus families.
    let (_, service) = received
        .latest("aimarket_http_request_duration_seconds")
        .expect("the HTTP latency histogram");
    assert_eq!(service, "metrics-under-test");
    // Each histogram's count equals the scraped `_count` of the same labels.
    let checks: [(&str, &[(&str, &str)]); 6] = [
        (
            "aimarket_http_request_duration_seconds",
            &[
                ("route", "/ai-market/v2/invoke"),
                ("method", "POST"),
                ("status_class", "2xx"),
            ],
        ),
        (
            "aimarket_invoke_added_latency_seconds",
            &[("outcome", "ok")],
        ),
        (
            "aimarket_invoke_provider_duration_seconds",
            &[("outcome", "ok")],
        ),
        (
            "aimarket_ledger_operation_duration_seconds",
            &[("operation", "hold")],
        ),
        ("aimarket_search_duration_seconds", &[("stage", "total")]),
        (
            "aimarket_crawl_run_duration_seconds",
            &[("result", "completed")],
        ),
    ];
    for (name, labels) in checks {
        let (metric, _) = received
            .latest(name)
            .unwrap_or_else(|| panic!("no {name}: {}", received.names()));
        let (count, bounds) = histogram_count(&metric, labels)
            .unwrap_or_else(|| panic!("no {name} point {labels:?}: {metric:?}"));
        let scraped = scraped_series(&text, &format!("{name}_count"), labels)
            .unwrap_or_else(|| panic!("{name}_count{labels:?} not scraped:\n{text}"));
        assert_eq!(count as f64, scraped, "{name}{labels:?}");
        assert!(count >= 1, "{name}{labels:?}");
        let buckets = if name.contains("crawl") { 13 } else { 15 };
        assert_eq!(bounds.len(), buckets, "{name}: {bounds:?}");
    }
    // 3 free and 2 paid calls succeeded.
    let (added, _) = received
        .latest("aimarket_invoke_added_latency_seconds")
        .unwrap();
    assert_eq!(histogram_count(&added, &[("outcome", "ok")]).unwrap().0, 5);

    // Gauges read from stored state and counters rendered outside the registry.
    let (channels, _) = received.latest("aimarket_channels_open").unwrap();
    assert_eq!(point_value(&channels, &[]), Some(1.0));
    let (peers, _) = received.latest("aimarket_peers").unwrap();
    assert!(point_value(&peers, &[("status", "active")]).unwrap() >= 1.0);
    let (searches, _) = received.latest("aimarket_search_requests_total").unwrap();
    assert!(point_value(&searches, &[]).unwrap() >= 4.0);
    let (mode, _) = received.latest("aimarket_replica_mode").unwrap();
    assert_eq!(point_value(&mode, &[("mode", "single-replica")]), Some(1.0));

    // The collector goes away: the hub keeps answering.
    receiver.stop(false).await;
    for _ in 0..5 {
        let (status, body) = hub.get("/ai-market/v2/search?intent=echo").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = hub.get("/ai-market/v2/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

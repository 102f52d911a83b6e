//! Traces over OTLP/HTTP (issue #16), received by a collector stand-in inside the test that
//! decodes `ExportTraceServiceRequest` with the OpenTelemetry protobuf types.
//!
//! One paid routed invoke sent with a client `traceparent` yields one trace: the hub's
//! server span is a child of the client's span, the provider call is a descendant of it,
//! and the provider received that call's span id as its parent in `traceparent`. A crawl's
//! fetches carry the crawl's trace context too, and JSON log lines carry `trace_id`. With
//! the receiver gone, invokes still succeed and the lost spans are counted in `/metrics`.
//!
//! Trace export is process-global (one subscriber per process), so the test re-runs this
//! test binary as a child process for just itself, with the exporter installed there.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use aimarket_e2e::catalog_server::{CatalogServer, tool};
use aimarket_e2e::provider::{FakeProvider, seed_provider};
use aimarket_e2e::wait_until;
use aimarket_hub::settings::TelemetrySettings;
use aimarket_hub::telemetry::{LogFormat, init_with_traces};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::invoke_payments::{call_body, hub_paying, open_channel, paid_tool};
use crate::observability::scrape;

/// Set in the child process: it runs the scenario instead of spawning itself.
const CHILD: &str = "AIMARKET_OTLP_CHILD";
/// The client's trace and span ids.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[test]
fn one_paid_invoke_is_one_trace_from_client_through_hub_to_provider() {
    if std::env::var_os(CHILD).is_some() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(scenario());
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "otlp::one_paid_invoke_is_one_trace_from_client_through_hub_to_provider",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: the scenario takes seconds; a hang is a failure, not a stuck suite.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the traced child run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OTLP/HTTP collector stand-in on loopback (one worker); `configure` adds its routes and
/// their data. Stop it with the handle.
pub(crate) fn collector<F>(configure: F) -> (std::net::SocketAddr, actix_web::dev::ServerHandle)
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .configure(configure.clone())
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (addr, handle)
}

/// Spans received, by trace id (hex).
#[derive(Default)]
struct Received {
    spans: Mutex<Vec<Span>>,
}

impl Received {
    fn of_trace(&self, trace_id: &str) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex::encode(&s.trace_id) == trace_id)
            .cloned()
            .collect()
    }
}

async fn export(body: web::Bytes, received: web::Data<Received>) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut spans = received.spans.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            spans.extend(scope.spans);
        }
    }
    // An empty ExportTraceServiceResponse.
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .finish()
}

/// Log lines, for the JSON-format check.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Names, ids and parents, for failure messages.
fn summary(spans: &[Span]) -> Vec<String> {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {} <- {} kind={}",
                s.name,
                hex::encode(&s.span_id),
                hex::encode(&s.parent_span_id),
                s.kind
            )
        })
        .collect()
}

fn name_of(spans: &[Span], name: &str) -> Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no span {name:?} among {:?}", summary(spans)))
}

async fn scenario() {
    let received = web::Data::new(Received::default());
    let data = received.clone();
    let (receiver_addr, receiver) = collector(move |c| {
        c.app_data(data.clone())
            .route("/v1/traces", web::post().to(export));
    });

    let lines = Lines::default();
    let writer = lines.clone();
    let settings = TelemetrySettings {
        otlp_endpoint: Some(format!("http://{receiver_addr}")),
        service_name: "hub-under-test".into(),
        resource_attributes: "deployment.environment=e2e".into(),
        ..TelemetrySettings::default()
    };
    let guard = init_with_traces(
        LogFormat::Json,
        Some("aimarket_hub=debug"),
        move || writer.clone(),
        Some(&settings),
    )
    .unwrap()
    .expect("an exporter for a configured endpoint");

    let paid = paid_tool("traced@v1", 0.3);
    let provider = FakeProvider::builder().tool(paid.clone()).start().await;
    let catalog = CatalogServer::with_tools(vec![tool("prod-traced", "crawled@v1", 0.1)]).await;
    let seed = catalog.url.parse().unwrap();
    let hub = hub_paying(&provider.url, |s| s.seeds = vec![seed]).await;
    seed_provider(&hub, &provider).await;
    let channel = open_channel(&hub, 5.0).await;

    // The client's span: its trace continues through the hub to the provider.
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let (status, _, body) = hub
        .send(
            hub.request(Method::POST, "/ai-market/v2/invoke")
                .header("traceparent", &traceparent)
                .header("tracestate", "vendor=client")
                .header("X-Payment-Channel", &channel.0)
                .header("X-Payment-Channel-Secret", &channel.1)
                .json(&call_body(&paid, json!({"text": "trace me"}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let complete = wait_until(Duration::from_secs(30), || {
        guard.flush();
        let spans = received.of_trace(CLIENT_TRACE);
        async move {
            [
                "POST /ai-market/v2/invoke",
                "invoke.route",
                "invoke.provider",
                "invoke.settle",
            ]
            .iter()
            .all(|name| spans.iter().any(|s| s.name == *name))
        }
    })
    .await;
    let spans = received.of_trace(CLIENT_TRACE);
    assert!(
        complete,
        "incomplete trace: {:?}\nall: {:?}",
        summary(&spans),
        summary(&received.spans.lock().unwrap())
    );

    // client → hub: the server span's parent is the client's span.
    let server_span = name_of(&spans, "POST /ai-market/v2/invoke");
    assert_eq!(hex::encode(&server_span.parent_span_id), CLIENT_SPAN);
    assert_eq!(server_span.kind, SpanKind::Server as i32);
    // hub → provider: the provider call descends from the server span…
    let by_id: HashMap<Vec<u8>, &Span> = spans.iter().map(|s| (s.span_id.clone(), s)).collect();
    let provider_span = name_of(&spans, "invoke.provider");
    assert_eq!(provider_span.kind, SpanKind::Client as i32);
    let mut ancestor = provider_span.parent_span_id.clone();
    let mut hops = 0;
    while ancestor != server_span.span_id {
        ancestor = by_id
            .get(&ancestor)
            .unwrap_or_else(|| panic!("broken parent chain: {:?}", summary(&spans)))
            .parent_span_id
            .clone();
        hops += 1;
        assert!(hops < 10, "{:?}", summary(&spans));
    }
    // …and the provider saw that call as its parent, in the same trace.
    let seen = provider.seen();
    let sent = seen[0].one("traceparent").unwrap();
    assert_eq!(
        sent,
        format!(
            "00-{CLIENT_TRACE}-{}-01",
            hex::encode(&provider_span.span_id)
        )
    );
    assert_eq!(seen[0].one("tracestate"), Some("vendor=client"));
    // The steps in between are spans of the same trace.
    for step in [
        "invoke.resolve",
        "invoke.validate",
        "invoke.relay",
        "ledger.write",
    ] {
        name_of(&spans, step);
    }
    let writes = spans.iter().filter(|s| s.name == "ledger.write").count();
    assert!(writes >= 2, "hold and capture: {:?}", summary(&spans));

    // JSON logs written inside the request carry its trace id.
    let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let traced = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["trace_id"] == CLIENT_TRACE && l["message"] == "request")
        .unwrap_or_else(|| panic!("no request log line with the trace id:\n{logged}"));
    assert_eq!(traced["span_id"].as_str().unwrap().len(), 16, "{traced}");

    // A crawl is a trace of its own, and its fetches carry it to the peer.
    crate::crawl::crawl(&hub).await;
    let fetch_parent = catalog
        .seen()
        .iter()
        .find_map(|r| r.headers.get("traceparent").cloned())
        .expect("the crawler sent traceparent");
    let crawl_trace = fetch_parent.split('-').nth(1).unwrap().to_owned();
    let crawled = wait_until(Duration::from_secs(30), || {
        guard.flush();
        let spans = received.of_trace(&crawl_trace);
        async move { spans.iter().any(|s| s.name == "crawl.run") }
    })
    .await;
    let crawl_spans = received.of_trace(&crawl_trace);
    assert!(
        crawled,
        "no crawl trace {crawl_trace}: {:?}",
        summary(&crawl_spans)
    );
    for name in ["crawl.peer", "crawl.fetch", "crawl.store"] {
        name_of(&crawl_spans, name);
    }
    let fetch_span = fetch_parent.split('-').nth(2).unwrap();
    assert!(
        crawl_spans
            .iter()
            .any(|s| s.name == "crawl.fetch" && hex::encode(&s.span_id) == fetch_span),
        "{fetch_parent}: {:?}",
        summary(&crawl_spans)
    );

    // The collector goes away: invokes are unaffected, lost spans are counted.
    receiver.stop(false).await;
    let before = aimarket_hub::telemetry::otel::drops();
    for _ in 0..3 {
        let (status, _, body) = hub
            .send(
                hub.request(Method::POST, "/ai-market/v2/invoke")
                    .header("X-Payment-Channel", &channel.0)
                    .header("X-Payment-Channel-Secret", &channel.1)
                    .json(&call_body(&paid, json!({"text": "no collector"}))),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    guard.flush();
    let after = aimarket_hub::telemetry::otel::drops();
    assert!(
        after.export_failed > before.export_failed,
        "{before:?} -> {after:?}"
    );
    let metrics = scrape(&hub).await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("aimarket_otel_spans_dropped_total{reason=\"export_failed\"}"))
        .unwrap();
    let dropped: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(dropped >= after.export_failed, "{line}");
    let _ = std::io::stdout().flush();
}

//! Routed invoke overhead: what `POST /ai-market/v2/invoke` adds over calling a loopback
//! provider directly, and invokes per second through the hub.
//!
//! Run with `cargo bench -p aimarket-hub --bench invoke_bench`. Starts, in this process, a
//! provider (actix-web on 127.0.0.1, signing every answer with the request-bound
//! `X-Provider-Signature`) and the real hub on SQLite with the provider seeded in its
//! catalog, then measures with keep-alive clients:
//!
//! 1. sequential latency, direct vs through the hub, free capability (p50/p99 and their
//!    difference: the hub's added latency);
//! 2. the same for a channel-funded call (hold, forward with the hub's API key, capture with
//!    a signed receipt stored in the same transaction);
//! 3. throughput: free invokes/s through the hub with 32 concurrent keep-alive clients.
//!
//! Environment: `INVOKE_BENCH_N` (sequential calls per series, default 5000),
//! `INVOKE_BENCH_SECS` (throughput duration, default 5), `AIMARKET_BENCH_TRACES` (`off`, or
//! a sample ratio: trace export on, to a loopback collector stand-in).

#[path = "support/traces.rs"]
mod traces;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use aimarket_hub::payments::OpenChannel;
use aimarket_hub::settings::Settings;
use aimarket_hub::startup::{Application, install_crypto_provider};
use aimarket_protocol::capability::Capability;
use aimarket_protocol::signing::{KeyPair, sign_provider_response};
use serde_json::{Value, json};

const FREE: &str = "echo.free@v1";
const PAID: &str = "echo.paid@v1";
/// Answers without `X-Provider-Signature` (isolates the cost of verifying it).
const UNSIGNED: &str = "echo.unsigned@v1";
const PRODUCT: &str = "bench";
const API_KEY: &str = "bench-hub-key";
const CONCURRENCY: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The provider: the `create-aimarket-agent` contract, signed answers; the paid capability
/// wants the hub's API key.
async fn provider_invoke(
    req: HttpRequest,
    body: web::Json<Value>,
    key: web::Data<KeyPair>,
) -> HttpResponse {
    let cid = body["capability_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if cid == PAID && req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY)
    {
        return HttpResponse::PaymentRequired().json(json!({"error": "payment_required"}));
    }
    let input = body["input"].clone();
    let result = json!({"echo": input});
    let mut response = HttpResponse::Ok();
    if cid != UNSIGNED {
        let signature = sign_provider_response(&cid, PRODUCT, &input, &result, &key);
        response.insert_header(("X-Provider-Signature", signature));
    }
    response.json(json!({"success": true, "result": result}))
}

fn tool(origin: &str, cid: &str, price: f64) -> Capability {
    let schema = json!({"type": "object", "required": ["text"],
        "properties": {"text": {"type": "string", "maxLength": 10000}}});
    let invoke_url = format!("{origin}/invoke");
    let tool = json!({"name": cid, "product_id": PRODUCT, "capability_id": cid,
        "description": "bench echo", "input_schema": schema, "price_per_call_usd": price,
        "invoke_url": invoke_url});
    Capability {
        origin: origin.to_owned(),
        via: None,
        product_id: PRODUCT.to_owned(),
        capability_id: cid.to_owned(),
        name: cid.to_owned(),
        description: "bench echo".to_owned(),
        input_schema: schema.to_string(),
        output_schema: None,
        price_usd: price,
        p50_latency_ms: Some(1),
        success_rate: Some(1.0),
        invoke_url: Some(invoke_url),
        tool_json: tool.to_string(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Series {
    p50: Duration,
    p99: Duration,
}

async fn series(n: usize, request: impl Fn() -> reqwest::RequestBuilder) -> Series {
    // Warm-up: connections, caches, the provider kind and schema caches.
    for _ in 0..200 {
        let r = request().send().await.expect("warm-up request");
        assert!(r.status().is_success(), "warm-up got {}", r.status());
        r.bytes().await.expect("warm-up body");
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let r = request().send().await.expect("request");
        let status = r.status();
        r.bytes().await.expect("body");
        samples.push(started.elapsed());
        assert!(status.is_success(), "got {status}");
    }
    samples.sort();
    Series {
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    install_crypto_provider();
    let (tracing_mode, _traces) = traces::from_env();
    let n = env_usize("INVOKE_BENCH_N", 5000);
    let secs = env_usize("INVOKE_BENCH_SECS", 5) as u64;

    // Provider.
    let key = web::Data::new(KeyPair::from_seed(&[42; 32]));
    let provider_key = key.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(provider_key.clone())
            .route("/invoke", web::post().to(provider_invoke))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind the provider");
    let provider_url = format!("http://{}", server.addrs()[0]);
    tokio::spawn(server.run());

    // Hub: SQLite in a temp dir, rate limit and provider cap off (the bench measures the
    // hub's overhead, not its limits), the hub's key at the provider.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::for_test(dir.path());
    settings.invoke.rate_per_min = 0;
    settings.limits.provider_max_in_flight = 0;
    settings.demo_payments = true;
    settings.invoke.peer_credentials = format!("{provider_url}=apikey:{API_KEY}")
        .parse()
        .expect("credential");
    let app = Application::build(settings).await.expect("hub starts");
    let hub_url = format!("http://{}", app.local_addr());
    let state = app.state();
    tokio::spawn(app.into_server());
    let peer = state
        .store
        .upsert_seed_peer(&provider_url, Some(&key.public_key().to_b64()))
        .await
        .expect("seed peer");
    state
        .store
        .replace_peer_catalog(
            peer.id,
            vec![
                tool(&provider_url, FREE, 0.0),
                tool(&provider_url, PAID, 0.001),
                tool(&provider_url, UNSIGNED, 0.0),
            ],
        )
        .await
        .expect("seed catalog");
    state.catalog_changed();
    let channel = state
        .ledger
        .open_channel(OpenChannel {
            deposit_usd: 1_000_000.0,
            tx_hash: Some("demo-bench".into()),
            ..OpenChannel::default()
        })
        .await
        .expect("open channel");
    let channel_id = channel.id.clone();
    let channel_secret = channel.secret.as_ref().expect("secret").expose().to_owned();

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let input = json!({"text": "benchmark input of a realistic size, one sentence long"});
    let direct_body = json!({"input": input, "product_id": PRODUCT, "capability_id": FREE});
    let hub_body = json!({"input": input, "product_id": PRODUCT, "capability_id": FREE});
    let paid_direct_body = json!({"input": input, "product_id": PRODUCT, "capability_id": PAID});
    let paid_hub_body = json!({"input": input, "product_id": PRODUCT, "capability_id": PAID});
    let invoke_url = format!("{hub_url}/ai-market/v2/invoke");
    let provider_invoke_url = format!("{provider_url}/invoke");

    // Lets the background writer catch up, so one series does not pay for the last.
    let drain = || async {
        for _ in 0..600 {
            if state.invoker.pending_records() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let direct = series(n, || client.post(&provider_invoke_url).json(&direct_body)).await;
    let routed = series(n, || client.post(&invoke_url).json(&hub_body)).await;
    let unsigned_body = json!({"input": input, "product_id": PRODUCT, "capability_id": UNSIGNED});
    let unsigned_direct =
        series(n, || client.post(&provider_invoke_url).json(&unsigned_body)).await;
    let unsigned = series(n, || client.post(&invoke_url).json(&unsigned_body)).await;
    drain().await;
    let paid_direct = series(n, || {
        client
            .post(&provider_invoke_url)
            .header("x-api-key", API_KEY)
            .json(&paid_direct_body)
    })
    .await;
    let paid = series(n, || {
        client
            .post(&invoke_url)
            .header("X-Payment-Channel", &channel_id)
            .header("X-Payment-Channel-Secret", &channel_secret)
            .json(&paid_hub_body)
    })
    .await;

    drain().await;

    // The ledger's share of the paid path: hold + capture (with a signed receipt) alone.
    let mut ledger_samples = Vec::with_capacity(n);
    let mut hold_samples = Vec::with_capacity(n);
    let mut capture_samples = Vec::with_capacity(n);
    for i in 0..n {
        let nonce = format!("rcpt_bench_{i}");
        let started = Instant::now();
        let held = state
            .ledger
            .hold(&channel_id, Some(&channel_secret), 1010, &nonce)
            .await
            .expect("hold");
        hold_samples.push(started.elapsed());
        let mut receipt = json!({"nonce": nonce, "product_id": PRODUCT, "capability_id": PAID,
            "price_usd": 0.00101, "timestamp": "2026-01-01T00:00:00.000Z", "success": true,
            "latency_ms": 1});
        aimarket_protocol::signing::sign_receipt(
            &mut receipt,
            &state.signing_key,
            aimarket_protocol::signing::ReceiptVersion::V1,
        )
        .expect("sign");
        let capture_started = Instant::now();
        held.capture(&receipt).await.expect("capture");
        capture_samples.push(capture_started.elapsed());
        ledger_samples.push(started.elapsed());
    }
    let summarize = |mut samples: Vec<Duration>| {
        samples.sort();
        Series {
            p50: percentile(&samples, 0.50),
            p99: percentile(&samples, 0.99),
        }
    };
    let ledger = summarize(ledger_samples);
    let hold = summarize(hold_samples);
    let capture = summarize(capture_samples);

    // Throughput through the hub.
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..CONCURRENCY {
        let client = client.clone();
        let url = invoke_url.clone();
        let body = hub_body.clone();
        let done = done.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client.post(&url).json(&body).send().await.expect("request");
                let ok = r.status().is_success();
                r.bytes().await.expect("body");
                assert!(ok);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let throughput = done.load(Ordering::Relaxed) as f64 / elapsed;

    let used = state
        .ledger
        .get_channel(&channel_id)
        .await
        .expect("channel")
        .used_micros;
    println!(
        "invoke_bench: {n} sequential calls per series, keep-alive, loopback, SQLite, {tracing_mode}"
    );
    println!(
        "  free   direct  p50 {:>8.1} µs  p99 {:>8.1} µs",
        micros(direct.p50),
        micros(direct.p99)
    );
    println!(
        "  free   via hub p50 {:>8.1} µs  p99 {:>8.1} µs   added: p50 {:>7.1} µs  p99 {:>7.1} µs",
        micros(routed.p50),
        micros(routed.p99),
        micros(routed.p50) - micros(direct.p50),
        micros(routed.p99) - micros(direct.p99)
    );
    println!(
        "  free, unsigned answer (no signature to verify): added p50 {:>7.1} µs  p99 {:>7.1} µs",
        micros(unsigned.p50) - micros(unsigned_direct.p50),
        micros(unsigned.p99) - micros(unsigned_direct.p99)
    );
    println!(
        "  paid   direct  p50 {:>8.1} µs  p99 {:>8.1} µs",
        micros(paid_direct.p50),
        micros(paid_direct.p99)
    );
    println!(
        "  paid   via hub p50 {:>8.1} µs  p99 {:>8.1} µs   added: p50 {:>7.1} µs  p99 {:>7.1} µs (channel hold + capture on SQLite)",
        micros(paid.p50),
        micros(paid.p99),
        micros(paid.p50) - micros(paid_direct.p50),
        micros(paid.p99) - micros(paid_direct.p99)
    );
    println!(
        "  ledger alone: hold + sign + capture p50 {:>8.1} µs  p99 {:>8.1} µs",
        micros(ledger.p50),
        micros(ledger.p99)
    );
    println!(
        "    hold p50 {:>8.1} µs  p99 {:>8.1} µs; capture (with the receipt row) p50 {:>8.1} µs  p99 {:>8.1} µs",
        micros(hold.p50),
        micros(hold.p99),
        micros(capture.p50),
        micros(capture.p99)
    );
    println!(
        "  throughput via hub: {throughput:.0} invokes/s ({CONCURRENCY} concurrent clients, {secs} s)"
    );
    println!(
        "  channel debited {used} µUSD for {} paid calls (+warm-up) and {n} ledger-only holds; \
         background writes dropped: {} (queue full), {} (failed batches)",
        n,
        state.invoker.dropped_records().queue_full,
        state.invoker.dropped_records().write_failed
    );
}

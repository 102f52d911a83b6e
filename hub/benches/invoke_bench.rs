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
//! Two baselines put the hub's added latency in proportion: a bare relay (an actix handler
//! that posts the body to the provider with a pooled reqwest client and returns its answer:
//! the cost of the extra socket hop alone, on the same stack, with no hub logic) and the two
//! Ed25519 operations the protocol puts on every call, timed alone. A counting allocator
//! reports heap allocations per call (client, hub and provider share this process, so the
//! hub's own share is the routed figure minus the direct one).
//!
//! Environment: `INVOKE_BENCH_N` (sequential calls per series, default 5000),
//! `INVOKE_BENCH_SECS` (throughput duration, default 5), `AIMARKET_BENCH_TRACES` (`off`, or
//! a sample ratio: trace export on, to a loopback collector stand-in),
//! `INVOKE_BENCH_POSTGRES_URL` (run the hub on PostgreSQL instead of SQLite: a fresh schema
//! `invoke_bench_<pid>` in that database, dropped at the end).

#[path = "support/traces.rs"]
mod traces;

use std::alloc::System;
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
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

const FREE: &str = "echo.free@v1";
const PAID: &str = "echo.paid@v1";
/// Answers without `X-Provider-Signature` (isolates the cost of verifying it).
const UNSIGNED: &str = "echo.unsigned@v1";
const PRODUCT: &str = "bench";
const API_KEY: &str = "bench-hub-key";
const CONCURRENCY: usize = 32;

/// The system allocator, counting allocations (see the module docs).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations so far, every thread (fresh blocks and reallocations).
fn allocations() -> u64 {
    let stats = GLOBAL.stats();
    (stats.allocations + stats.reallocations) as u64
}

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
    /// Heap allocations per call in the measured loop (every thread of this process).
    allocs: f64,
}

/// The bare relay: what any proxy on this stack pays for the extra hop.
async fn relay(
    body: web::Bytes,
    client: web::Data<reqwest::Client>,
    target: web::Data<String>,
) -> HttpResponse {
    let answer = client
        .post(target.as_str())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("relay: provider call");
    let status = answer.status().as_u16();
    let body = answer.bytes().await.expect("relay: provider body");
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
        .content_type("application/json")
        .body(body)
}

/// p50 of `n` runs of `op` (warmed up first), single thread.
fn time_op(n: usize, mut op: impl FnMut()) -> Duration {
    for _ in 0..100 {
        op();
    }
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let started = Instant::now();
            op();
            started.elapsed()
        })
        .collect();
    samples.sort();
    percentile(&samples, 0.50)
}

async fn series(n: usize, request: impl Fn() -> reqwest::RequestBuilder) -> Series {
    // Warm-up: connections, caches, the provider kind and schema caches.
    for _ in 0..200 {
        let r = request().send().await.expect("warm-up request");
        assert!(r.status().is_success(), "warm-up got {}", r.status());
        r.bytes().await.expect("warm-up body");
    }
    let mut samples = Vec::with_capacity(n);
    let allocs_before = allocations();
    for _ in 0..n {
        let started = Instant::now();
        let r = request().send().await.expect("request");
        let status = r.status();
        r.bytes().await.expect("body");
        samples.push(started.elapsed());
        assert!(status.is_success(), "got {status}");
    }
    let allocs = (allocations() - allocs_before) as f64 / n as f64;
    samples.sort();
    Series {
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
        allocs,
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

    // The bare relay, with the hub's worker count (actix's default) and a client built like
    // the hub's forwarder (keep-alive pool, no delay).
    let relay_client = web::Data::new(
        reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .build()
            .expect("relay client"),
    );
    let relay_target = web::Data::new(format!("{provider_url}/invoke"));
    let relay_server = HttpServer::new(move || {
        App::new()
            .app_data(relay_client.clone())
            .app_data(relay_target.clone())
            .route("/invoke", web::post().to(relay))
    })
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind the relay");
    let relay_url = format!("http://{}/invoke", relay_server.addrs()[0]);
    tokio::spawn(relay_server.run());

    // Hub: SQLite in a temp dir, rate limit and provider cap off (the bench measures the
    // hub's overhead, not its limits), the hub's key at the provider.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::for_test(dir.path());
    let postgres = match std::env::var("INVOKE_BENCH_POSTGRES_URL") {
        Ok(url) => Some(postgres_schema(&url).await),
        Err(_) => None,
    };
    if let Some((schema_url, _, _)) = &postgres {
        settings.database_url = Some(schema_url.parse().expect("a PostgreSQL URL"));
    }
    let engine = if postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
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
    let relayed = series(n, || client.post(&relay_url).json(&direct_body)).await;
    let routed = series(n, || client.post(&invoke_url).json(&hub_body)).await;
    // Interleaved once more, so a drift of the machine shows as a difference between the two
    // direct series.
    let direct_again = series(n, || client.post(&provider_invoke_url).json(&direct_body)).await;

    // The protocol's two Ed25519 operations per call, alone: verifying the provider's
    // request-bound signature and signing the routing receipt.
    let result = json!({"echo": input});
    let signature = sign_provider_response(FREE, PRODUCT, &input, &result, &key);
    let public = key.public_key();
    let verify = time_op(n, || {
        aimarket_protocol::signing::verify_provider_response(
            FREE, PRODUCT, &input, &result, &signature, &public,
        )
        .expect("verifies");
    });
    let receipt_template = json!({"nonce": "rcpt_x", "product_id": PRODUCT, "capability_id": FREE,
        "price_usd": 0.0, "timestamp": "2026-01-01T00:00:00.000Z", "success": true,
        "latency_ms": 1, "routing_hub": hub_url});
    let sign = time_op(n, || {
        let mut receipt = receipt_template.clone();
        aimarket_protocol::signing::sign_receipt(
            &mut receipt,
            &state.signing_key,
            aimarket_protocol::signing::ReceiptVersion::V2,
        )
        .expect("sign");
    });
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
            allocs: 0.0,
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
        "invoke_bench: {n} sequential calls per series, keep-alive, loopback, {engine}, {tracing_mode}"
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
        "  free   direct again p50 {:>8.1} µs  p99 {:>8.1} µs",
        micros(direct_again.p50),
        micros(direct_again.p99)
    );
    println!(
        "  floor: bare relay (one extra hop, no hub logic) p50 {:>8.1} µs  p99 {:>8.1} µs   added: p50 {:>7.1} µs  p99 {:>7.1} µs",
        micros(relayed.p50),
        micros(relayed.p99),
        micros(relayed.p50) - micros(direct.p50),
        micros(relayed.p99) - micros(direct.p99)
    );
    println!(
        "  hub added / direct round trip: p50 {:.2}x  p99 {:.2}x (bare relay: p50 {:.2}x  p99 {:.2}x)",
        (micros(routed.p50) - micros(direct.p50)) / micros(direct.p50),
        (micros(routed.p99) - micros(direct.p99)) / micros(direct.p99),
        (micros(relayed.p50) - micros(direct.p50)) / micros(direct.p50),
        (micros(relayed.p99) - micros(direct.p99)) / micros(direct.p99)
    );
    println!(
        "  Ed25519 alone, one thread: verify the provider signature p50 {:>6.1} µs; sign the routing receipt p50 {:>6.1} µs",
        micros(verify),
        micros(sign)
    );
    println!(
        "  heap allocations per call (whole process): direct {:.0}, bare relay {:.0}, via hub {:.0} (hub's own ≈ {:.0})",
        direct.allocs,
        relayed.allocs,
        routed.allocs,
        routed.allocs - direct.allocs
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
        "  paid   via hub p50 {:>8.1} µs  p99 {:>8.1} µs   added: p50 {:>7.1} µs  p99 {:>7.1} µs (channel hold + capture on {engine})",
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
    if let Some((_, base_url, schema)) = postgres {
        state.store.close().await;
        drop_schema(&base_url, &schema).await;
    }
}

/// A fresh schema `invoke_bench_<pid>` in the database at `url`: the hub's URL (with that
/// schema as its search path), the base URL and the schema's name.
async fn postgres_schema(url: &str) -> (String, String, String) {
    use sqlx::Connection as _;
    let schema = format!("invoke_bench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("INVOKE_BENCH_POSTGRES_URL: cannot connect");
    for statement in [
        format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
        format!("CREATE SCHEMA \"{schema}\""),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .expect("prepare the bench schema");
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    (
        format!("{url}{separator}options[search_path]={schema}"),
        url.to_owned(),
        schema,
    )
}

async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection as _;
    if let Ok(mut conn) = sqlx::PgConnection::connect(url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&mut conn)
        .await;
    }
}

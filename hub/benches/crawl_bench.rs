//! Crawl benchmark: real signed providers on loopback, the hub's crawl orchestration, SQLite.
//!
//! Run with `cargo bench -p aimarket-hub --bench crawl_bench`.
//!
//! (a) 20 providers × 1,000-tool signed manifests: fetch + verify (five-field Ed25519 over
//!     the canonical manifest) + schema-validate every tool + store, in capabilities per
//!     second (target ≥ 20,000/s). Also the fetch + verify + validate part alone.
//! (b) A re-crawl of 100 unchanged peers: requests seen by the providers (target 100, all
//!     conditional, all answered 304) and database writes (target none: catalog version,
//!     row timestamps and counts, and SQLite WAL frames written during the run, of which
//!     the only ones expected are the run's own `crawl_runs` row).
//!
//! All providers are one actix server listening on many loopback ports; each port is a
//! different peer origin with its own key and catalog.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use aimarket_crawler::SeedSpec;
use aimarket_hub::crawl::CrawlContext;
use aimarket_hub::settings::Settings;
use aimarket_hub::store::Store;
use aimarket_protocol::signing::{KeyPair, sign_manifest};
use serde_json::{Value, json};

/// One peer's documents.
struct Catalog {
    well_known: Vec<u8>,
    manifest: Vec<u8>,
    manifest_etag: String,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    conditional: AtomicU64,
    not_modified: AtomicU64,
}

impl Counters {
    fn reset(&self) {
        self.requests.store(0, Ordering::SeqCst);
        self.conditional.store(0, Ordering::SeqCst);
        self.not_modified.store(0, Ordering::SeqCst);
    }
}

struct Shared {
    catalogs: HashMap<u16, Catalog>,
    counters: Counters,
}

fn tool(peer: usize, i: usize) -> Value {
    json!({
        "name": format!("product-{:02}.capability-{i:04}", i % 50),
        "product_id": format!("product-{:02}", i % 50),
        "capability_id": format!("capability-{i:04}"),
        "description": format!(
            "Translates, summarises and classifies text for agents; returns structured JSON \
             with confidence scores. Tool {i} of provider {peer}."
        ),
        "input_schema": {
            "type": "object",
            "required": ["text"],
            "properties": {
                "text": {"type": "string", "description": "Input text to process"},
                "target_language": {"type": "string", "description": "ISO 639-1 code"},
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096}
            }
        },
        "output_schema": {"type": "object", "properties": {"result": {"type": "string"}}},
        "price_per_call_usd": 0.0005 * (1 + i % 20) as f64,
        "p50_latency_ms": 150 + i % 300,
        "success_rate_30d": 0.98,
    })
}

fn catalog(port: u16, peer: usize, tools: usize) -> Catalog {
    let key = KeyPair::from_seed(&[u8::try_from(peer % 250).unwrap_or(0) + 1; 32]);
    let origin = format!("http://127.0.0.1:{port}");
    let well_known = json!({
        "name": format!("Bench provider {peer}"),
        "protocol_versions": ["v1", "v2"],
        "manifest_url": format!("{origin}/ai-market/manifest"),
        "signer_public_key": key.public_key().to_b64(),
    });
    let mut manifest = json!({
        "protocol_version": "v2",
        "generated_at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "capabilities_count": tools,
        "tools": (0..tools).map(|i| tool(peer, i)).collect::<Vec<_>>(),
        "by_hub": {},
    });
    sign_manifest(&mut manifest, &key).expect("sign");
    Catalog {
        well_known: serde_json::to_vec(&well_known).expect("json"),
        manifest: serde_json::to_vec(&manifest).expect("json"),
        manifest_etag: format!("\"m-{peer}\""),
    }
}

async fn answer(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let counters = &shared.counters;
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let port = req.app_config().local_addr().port();
    let Some(catalog) = shared.catalogs.get(&port) else {
        return HttpResponse::NotFound().finish();
    };
    let if_none_match = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok());
    if if_none_match.is_some() {
        counters.conditional.fetch_add(1, Ordering::Relaxed);
    }
    let (body, etag) = match req.path() {
        "/.well-known/ai-market.json" => (&catalog.well_known, "\"wk\""),
        "/ai-market/manifest" => (&catalog.manifest, catalog.manifest_etag.as_str()),
        _ => return HttpResponse::NotFound().finish(),
    };
    if if_none_match == Some(etag) {
        counters.not_modified.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::NotModified()
            .insert_header(("ETag", etag))
            .finish();
    }
    HttpResponse::Ok()
        .insert_header(("ETag", etag))
        .content_type("application/json")
        .body(body.clone())
}

/// Starts `peers` providers of `tools` tools each; returns their origins and the counters.
fn start_providers(peers: usize, tools: usize) -> (Vec<String>, Arc<Shared>) {
    let listeners: Vec<TcpListener> = (0..peers)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect();
    let catalogs = ports
        .iter()
        .enumerate()
        .map(|(peer, &port)| (port, catalog(port, peer, tools)))
        .collect();
    let shared = Arc::new(Shared {
        catalogs,
        counters: Counters::default(),
    });
    let data = web::Data::from(Arc::clone(&shared));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let mut server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .default_service(web::to(answer))
            })
            .workers(2)
            .disable_signals();
            for listener in listeners {
                server = server.listen(listener).expect("listen");
            }
            let server = server.run();
            tx.send(()).expect("report start");
            let _ = server.await;
        });
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("providers started");
    let origins = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    (origins, shared)
}

fn settings(dir: &std::path::Path, origins: &[String]) -> Settings {
    let mut settings = Settings::for_test(dir);
    settings.seeds = origins.iter().map(|o| o.parse().expect("seed")).collect();
    settings
}

async fn context(dir: &std::path::Path, origins: &[String]) -> CrawlContext {
    let store = Store::connect(None, dir).await.expect("store");
    CrawlContext::new(store, &settings(dir, origins), "http://bench.hub.test").expect("context")
}

async fn throughput(origins: &[String], tools_total: usize) {
    println!(
        "(a) {} providers × {} tools",
        origins.len(),
        tools_total / origins.len()
    );
    let mut best_full = f64::MAX;
    let mut best_verify = f64::MAX;
    for round in 1..=3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = context(dir.path(), origins).await;
        // Fetch + verify + validate only (the crawler, no store).
        let seeds: Vec<SeedSpec> = ctx.seeds().to_vec();
        let crawler_only = {
            let fresh = context(&dir.path().join("crawler-only"), origins).await;
            let started = Instant::now();
            let report = fresh
                .crawler()
                .crawl(
                    seeds,
                    &HashMap::<String, aimarket_crawler::KnownPeer>::new(),
                )
                .await;
            assert_eq!(report.capabilities(), tools_total, "every tool verifies");
            started.elapsed()
        };
        let started = Instant::now();
        let summary = ctx.run_once(&|_| {}).await.expect("crawl");
        let elapsed = started.elapsed();
        assert_eq!(summary.capabilities_indexed as usize, tools_total);
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        let stored = ctx.store().count_capabilities().await.expect("count");
        assert_eq!(stored as usize, tools_total);
        let full = tools_total as f64 / elapsed.as_secs_f64();
        let verify = tools_total as f64 / crawler_only.as_secs_f64();
        println!(
            "    round {round}: crawl+verify+validate+store {:>8.0} capabilities/s ({:.3}s); \
             crawl+verify+validate alone {:>8.0}/s ({:.3}s)",
            full,
            elapsed.as_secs_f64(),
            verify,
            crawler_only.as_secs_f64()
        );
        best_full = best_full.min(elapsed.as_secs_f64());
        best_verify = best_verify.min(crawler_only.as_secs_f64());
        ctx.store().close().await;
    }
    println!(
        "    best: {:.0} capabilities/s end to end (target ≥ 20,000), {:.0}/s without the store",
        tools_total as f64 / best_full,
        tools_total as f64 / best_verify
    );
}

/// What the database looks like, for "nothing was written".
#[derive(Debug, PartialEq)]
struct DbState {
    catalog_version: i64,
    peers_max_updated_at: Option<i64>,
    capabilities_max_last_seen: Option<i64>,
    capabilities: i64,
    peers: i64,
}

async fn db_state(store: &Store) -> DbState {
    let Store::Sqlite(db) = store else {
        unreachable!("the bench runs on SQLite")
    };
    let pool = db.pool();
    let scalar = |sql: &'static str| async move {
        sqlx::query_scalar::<_, Option<i64>>(sql)
            .fetch_one(pool)
            .await
            .expect("query")
    };
    DbState {
        catalog_version: store.catalog_version().await.expect("version"),
        peers_max_updated_at: scalar("SELECT MAX(updated_at) FROM peers").await,
        capabilities_max_last_seen: scalar("SELECT MAX(last_seen) FROM capabilities").await,
        capabilities: scalar("SELECT COUNT(*) FROM capabilities")
            .await
            .unwrap_or(0),
        peers: scalar("SELECT COUNT(*) FROM peers").await.unwrap_or(0),
    }
}

/// Checkpoints and empties the WAL; returns the frames it held.
async fn wal_frames(store: &Store, mode: &'static str) -> i64 {
    let Store::Sqlite(db) = store else {
        unreachable!("the bench runs on SQLite")
    };
    let row: (i64, i64, i64) = sqlx::query_as(mode)
        .fetch_one(db.pool())
        .await
        .expect("checkpoint");
    row.1
}

async fn unchanged_recrawl(origins: &[String], shared: &Shared) {
    println!("(b) re-crawl of {} unchanged peers", origins.len());
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path(), origins).await;
    let first = ctx.run_once(&|_| {}).await.expect("first crawl");
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let store = ctx.store();
    let before = db_state(store).await;
    wal_frames(store, "PRAGMA wal_checkpoint(TRUNCATE)").await;
    shared.counters.reset();
    let started = Instant::now();
    let summary = ctx.run_once(&|_| {}).await.expect("re-crawl");
    let elapsed = started.elapsed();
    let frames = wal_frames(store, "PRAGMA wal_checkpoint(PASSIVE)").await;
    let after = db_state(store).await;
    let c = &shared.counters;
    println!(
        "    same process: {} requests ({} conditional, {} answered 304), {} peers not \
         modified, {:.3}s",
        c.requests.load(Ordering::SeqCst),
        c.conditional.load(Ordering::SeqCst),
        c.not_modified.load(Ordering::SeqCst),
        summary.not_modified,
        elapsed.as_secs_f64()
    );
    println!(
        "    database: catalog_version {} -> {}, peers/capabilities rows and timestamps {}, \
         WAL frames written during the run: {frames} (the run's own crawl_runs row: insert + \
         finish)",
        before.catalog_version,
        after.catalog_version,
        if before == after {
            "unchanged"
        } else {
            "CHANGED"
        },
    );
    assert_eq!(
        before, after,
        "an unchanged re-crawl must not write catalog rows"
    );

    // A new process (CLI `crawl --once` again) remembers no well-known checks: one extra
    // conditional request per peer, still nothing written.
    let again = context(dir.path(), origins).await;
    shared.counters.reset();
    let summary = again
        .run_once(&|_| {})
        .await
        .expect("fresh-process re-crawl");
    println!(
        "    fresh process: {} requests ({} conditional, {} answered 304), {} not modified; \
         catalog rows {}",
        c.requests.load(Ordering::SeqCst),
        c.conditional.load(Ordering::SeqCst),
        c.not_modified.load(Ordering::SeqCst),
        summary.not_modified,
        if db_state(again.store()).await == after {
            "unchanged"
        } else {
            "CHANGED"
        },
    );
    ctx.store().close().await;
}

fn main() {
    aimarket_hub::startup::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (origins, _throughput_shared) = start_providers(20, 1_000);
    runtime.block_on(throughput(&origins, 20_000));
    let (origins, shared) = start_providers(100, 10);
    runtime.block_on(unchanged_recrawl(&origins, &shared));
}

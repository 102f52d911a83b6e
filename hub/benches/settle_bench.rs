//! Read-your-writes latency (issue #15): the time from a write's last store commit to
//! "searchable + published" (search index and manifest of the hub both at the write's
//! catalog version), the wait every crawl and operator answer now includes.
//!
//! ```text
//! cargo bench -p aimarket-hub --bench settle_bench
//! AIMARKET_BENCH_SIZES=10000,100000 cargo bench -p aimarket-hub --bench settle_bench
//! ```
//!
//! A hub in process over SQLite seeded with `n` synthetic capabilities (one catalog per
//! synthetic hub); each round rewrites one peer's catalog with one capability changed (what a
//! crawl of a changed peer writes), publishes the diff as a crawl does, and times
//! `AppState::settle_catalog` from the moment the store write returned. Index and manifest
//! times are reported apart. The peer a round rewrites is the first one, so its changed tool
//! sits at the front of the manifest: the `tools` digest is re-hashed over the whole
//! catalog, the worst case of an incremental update.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aimarket_hub::crawl::CatalogUpdate;
use aimarket_hub::settings::Settings;
use aimarket_hub::startup::Application;
use aimarket_hub::store::{NewPeer, PeerState, Store};
use aimarket_indexer::IndexedCapability;
use aimarket_indexer::synthetic::catalog;
use aimarket_protocol::capability::Capability;
use serde_json::json;

const ROUNDS: usize = 20;

fn to_row(cap: IndexedCapability, origin: &str) -> Capability {
    let tool = json!({
        "name": cap.name, "description": cap.description, "input_schema": cap.input_schema,
        "price_per_call_usd": cap.price_usd, "p50_latency_ms": cap.p50_latency_ms,
        "success_rate_30d": cap.success_rate, "product_id": cap.product_id,
        "capability_id": cap.capability_id, "categories": cap.categories,
    });
    Capability {
        origin: origin.to_owned(),
        via: None,
        product_id: cap.product_id,
        capability_id: cap.capability_id,
        name: cap.name,
        description: cap.description,
        input_schema: cap.input_schema.to_string(),
        output_schema: None,
        price_usd: cap.price_usd,
        p50_latency_ms: Some(cap.p50_latency_ms),
        success_rate: Some(cap.success_rate),
        invoke_url: None,
        tool_json: tool.to_string(),
    }
}

/// Seeds `n` capabilities; returns one peer's id and catalog (the one the rounds rewrite).
async fn seed(store: &Store, n: usize) -> (i64, Vec<Capability>) {
    let mut by_hub: BTreeMap<String, Vec<IndexedCapability>> = BTreeMap::new();
    for cap in catalog(n, 42) {
        by_hub.entry(cap.origin.clone()).or_default().push(cap);
    }
    let mut chosen = None;
    for (i, (_, caps)) in by_hub.into_iter().enumerate() {
        let origin = format!("http://127.0.0.1:{}", 20_000 + i);
        let rows: Vec<Capability> = caps.into_iter().map(|c| to_row(c, &origin)).collect();
        let (peer, _) = store
            .insert_peer_if_absent(&NewPeer {
                url: origin.clone(),
                well_known_url: None,
                name: None,
                state: PeerState::Active,
                trusted: true,
                depth: 0,
                pinned_key: None,
            })
            .await
            .unwrap();
        store
            .replace_peer_catalog(peer.id, rows.clone())
            .await
            .unwrap();
        chosen.get_or_insert((peer.id, rows));
    }
    chosen.expect("at least one peer")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn run(n: usize) {
    println!("== {n} capabilities ==");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(None, dir.path()).await.unwrap();
    let (peer, mut rows) = seed(&store, n).await;
    store.close().await;
    let mut settings = Settings::for_test(dir.path());
    settings.auto_crawl = false;
    let app = Application::build(settings).await.unwrap();
    let state = app.state();
    let handle = app.handle();
    let server = tokio::spawn(app.into_server());
    let started = Instant::now();
    // Bounded: the initial index build and manifest at 100k take seconds.
    while !state.settle_catalog().await.unwrap().caught_up {
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "never settled"
        );
    }
    println!(
        "startup build settled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The first trust recompute after startup rescores every seeded capability: one catalog
    // version whose update carries every key. Let it land (bounded) before timing, so each
    // round measures its own write and not that one.
    let rescored = Instant::now();
    for _ in 0..10 {
        let outcome = aimarket_hub::reputation::recompute(&state.reputation_deps())
            .await
            .unwrap();
        if outcome.peers_changed + outcome.capabilities_changed == 0 {
            break;
        }
    }
    while !state.settle_catalog().await.unwrap().caught_up {
        assert!(
            rescored.elapsed() < Duration::from_secs(1800),
            "never settled"
        );
    }
    println!(
        "first trust recompute settled in {:.1} s",
        rescored.elapsed().as_secs_f64()
    );

    let (mut index, mut manifest, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // The stored tool document is what a crawl compares: change it as a peer would.
        let description = format!("changed in round {round}");
        let mut tool: serde_json::Value = serde_json::from_str(&rows[0].tool_json).unwrap();
        tool["description"] = json!(description);
        rows[0].tool_json = tool.to_string();
        rows[0].description = description;
        let diff = state
            .store
            .replace_peer_catalog(peer, rows.clone())
            .await
            .unwrap();
        let written = Instant::now();
        let version = diff.version;
        assert_eq!(
            diff.changed.len(),
            1,
            "round {round}: one capability changed"
        );
        state.publish_catalog_update(CatalogUpdate {
            version,
            since: Some(version - 1),
            added: diff.added,
            changed: diff.changed,
            removed: diff.removed,
        });
        // Index and manifest apart (each polled), then both (the answer's wait).
        let (mut index_at, mut manifest_at) = (None, None);
        while index_at.is_none() || manifest_at.is_none() {
            if index_at.is_none() && state.catalog.index_version().is_some_and(|v| v >= version) {
                index_at = Some(written.elapsed());
            }
            if manifest_at.is_none()
                && state
                    .catalog
                    .manifest_version()
                    .is_some_and(|v| v >= version)
            {
                manifest_at = Some(written.elapsed());
            }
            tokio::time::sleep(Duration::from_micros(100)).await;
            assert!(
                written.elapsed() < Duration::from_secs(120),
                "never caught up"
            );
        }
        let settled = state.settle_catalog().await.unwrap();
        assert!(settled.caught_up && settled.catalog_version >= Some(version));
        let total = written.elapsed();
        // Per round, so a slow one can be told apart from the rest (and from a concurrent
        // writer: the version the hub settled at is past ours when something else wrote).
        println!(
            "  round {round:2}: searchable {}, published {}, both {} (v{version} -> settled at v{})",
            ms(index_at.unwrap_or_default()),
            ms(manifest_at.unwrap_or_default()),
            ms(total),
            settled.catalog_version.unwrap_or_default()
        );
        index.push(index_at.unwrap_or_default());
        manifest.push(manifest_at.unwrap_or_default());
        both.push(total);
    }
    index.sort();
    manifest.sort();
    both.sort();
    let p = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "last store write -> searchable: p50 {}, max {}",
        ms(p(&index, 0.5)),
        ms(p(&index, 1.0))
    );
    println!(
        "last store write -> published (manifest): p50 {}, max {}",
        ms(p(&manifest, 0.5)),
        ms(p(&manifest, 1.0))
    );
    println!(
        "last store write -> searchable + published: p50 {}, max {} ({ROUNDS} rounds)",
        ms(p(&both, 0.5)),
        ms(p(&both, 1.0))
    );
    handle.stop(true).await;
    let _ = server.await;
    state.catalog.close();
    state.store.close().await;
}

fn main() {
    let sizes: Vec<usize> = std::env::var("AIMARKET_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![10_000]);
    aimarket_hub::startup::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for n in sizes {
        runtime.block_on(run(n));
    }
}

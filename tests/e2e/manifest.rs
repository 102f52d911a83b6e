//! The signed catalog documents: `GET /ai-market/v2/manifest` (and the v1 path) lists every
//! indexed capability (here 1,200, past the reference hub's 1,000-row cap), verifies with the
//! hub key, validates against the schema, answers 304 and gzip; the well-known carries real
//! counts and active peers only; and another hub of ours crawls both documents.

use std::io::Read as _;

use aimarket_e2e::TestHub;
use aimarket_e2e::catalog_server::{CatalogServer, tool};
use aimarket_hub::crawl::CatalogUpdate;
use aimarket_hub::store::{NewPeer, PeerState};
use aimarket_protocol::capability::Capability;
use aimarket_protocol::document::verify_any;
use aimarket_protocol::schema::{SchemaKind, validate};
use aimarket_protocol::signing::{PublicKey, verify_document, verify_manifest};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, ETAG, IF_NONE_MATCH};
use serde_json::Value;

use crate::search::{SYNC_WAIT, crawl, hub_crawling, product_tools, search, wait_for_total};

const MANIFEST: &str = "/ai-market/v2/manifest";
const WELL_KNOWN: &str = "/.well-known/ai-market.json";

/// Seeds `n` capabilities of one active peer straight into the store and publishes the
/// change (the same update a crawl publishes).
async fn seed(hub: &TestHub, origin: &str, n: usize) {
    let store = &hub.state.store;
    let peer = store.upsert_seed_peer(origin, None).await.unwrap();
    let before = store.catalog_version().await.unwrap();
    let caps: Vec<Capability> = (0..n)
        .map(|i| {
            let t = tool("bulk", &format!("cap-{i:04}@v1"), 0.001);
            Capability {
                origin: origin.to_owned(),
                via: None,
                product_id: "bulk".into(),
                capability_id: format!("cap-{i:04}@v1"),
                name: format!("bulk.cap-{i:04}@v1"),
                description: format!("Bulk capability number {i}"),
                input_schema: t["input_schema"].to_string(),
                output_schema: Some(t["output_schema"].to_string()),
                price_usd: 0.001,
                p50_latency_ms: Some(100),
                success_rate: Some(0.99),
                invoke_url: None,
                tool_json: t.to_string(),
            }
        })
        .collect();
    let diff = store.replace_peer_catalog(peer.id, caps).await.unwrap();
    hub.state.publish_catalog_update(CatalogUpdate {
        version: diff.version,
        since: Some(before),
        added: diff.added,
        changed: diff.changed,
        removed: diff.removed,
    });
}

/// The trust of the tools of `origin` in `manifest` (all equal until calls are measured).
fn tool_trust(manifest: &Value, origin: &str) -> f64 {
    let trusts: Vec<f64> = manifest["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["source_hub"] == origin)
        .map(|t| t["trust_score"].as_f64().unwrap())
        .collect();
    assert!(
        trusts.windows(2).all(|w| w[0] == w[1]),
        "one peer, one trust"
    );
    trusts[0]
}

/// The hub key from the well-known.
async fn hub_key(hub: &TestHub) -> PublicKey {
    let (_, doc) = hub.get(WELL_KNOWN).await;
    PublicKey::from_b64(doc["signer_public_key"].as_str().unwrap()).unwrap()
}

/// Waits until the served manifest lists `n` tools, and returns it.
async fn manifest_with(hub: &TestHub, n: usize) -> Value {
    let reached = aimarket_e2e::wait_until(SYNC_WAIT, || async {
        let (status, body) = hub.get(MANIFEST).await;
        status == StatusCode::OK && body["tools"].as_array().map(Vec::len) == Some(n)
    })
    .await;
    let (_, body) = hub.get(MANIFEST).await;
    assert!(
        reached,
        "manifest never listed {n} tools: {}",
        body["total_capabilities"]
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_lists_every_capability_signed_and_schema_valid() {
    let hub = TestHub::start().await;
    seed(&hub, "https://bulk.example", 1200).await;
    let manifest = manifest_with(&hub, 1200).await;

    let key = hub_key(&hub).await;
    verify_manifest(&manifest, &key).unwrap();
    validate(SchemaKind::Manifest, &manifest).unwrap();
    // What `aimarket-hub verify` runs on a file.
    let report = verify_any(&manifest, Some(&key));
    assert!(report.valid, "{report:?}");

    assert_eq!(manifest["protocol_version"], "v2");
    assert_eq!(manifest["capabilities_count"], 1200);
    assert_eq!(manifest["total_capabilities"], 1200);
    assert_eq!(manifest["local_capabilities"], 0);
    assert_eq!(manifest["federated_capabilities"], 1200);
    assert_eq!(manifest["hubs_indexed"], 1);
    assert!(manifest["generated_at"].as_str().unwrap().ends_with('Z'));
    let by_hub = &manifest["by_hub"]["https://bulk.example"];
    assert_eq!(by_hub["capabilities_count"], 1200);
    let trust = tool_trust(&manifest, "https://bulk.example");
    assert_eq!(by_hub["trust_score"], trust, "mean of its tools' trust");
    assert!(by_hub["last_crawl"].is_string());
    let invoke_url = hub.url("/ai-market/v2/invoke");
    let tool = manifest["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["capability_id"] == "cap-0042@v1")
        .unwrap();
    assert_eq!(tool["name"], "bulk.cap-0042@v1");
    assert_eq!(tool["product_id"], "bulk");
    assert_eq!(tool["description"], "Bulk capability number 42");
    assert!(tool["input_schema"].is_object() && tool["output_schema"].is_object());
    assert_eq!(tool["price_per_call_usd"], 0.001);
    assert_eq!(tool["routed_price_usd"], 0.00101);
    assert_eq!(tool["routing_fee_bps"], 100);
    assert_eq!(tool["trust_score"], trust);
    assert!((0.0..=1.0).contains(&trust));
    assert_eq!(tool["success_rate_30d"], 0.99);
    assert_eq!(tool["p50_latency_ms"], 100);
    assert_eq!(tool["source_hub"], "https://bulk.example");
    assert_eq!(tool["invoke_url"], invoke_url.as_str());
    assert!(tool.get("via").is_none());

    // The v1 path serves the same document (compared back to back: a reputation update may
    // rebuild it meanwhile).
    let (status, _) = hub.get("/ai-market/manifest").await;
    assert_eq!(status, StatusCode::OK);
    let same = aimarket_e2e::wait_until(SYNC_WAIT, || async {
        let (_, v2) = hub.get(MANIFEST).await;
        let (_, v1) = hub.get("/ai-market/manifest").await;
        v1 == v2
    })
    .await;
    assert!(
        same,
        "/ai-market/manifest differs from /ai-market/v2/manifest"
    );

    // The well-known counts the same catalog.
    let (_, well_known) = hub.get(WELL_KNOWN).await;
    assert_eq!(well_known["federated_capabilities_count"], 1200);
    assert_eq!(well_known["manifest_url"], hub.url(MANIFEST).as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_documents_answer_304_and_gzip_when_asked() {
    let hub = TestHub::start().await;
    seed(&hub, "https://small.example", 30).await;
    manifest_with(&hub, 30).await;
    let plain = reqwest::Client::builder().no_gzip().build().unwrap();

    for path in [MANIFEST, WELL_KNOWN] {
        let first = plain.get(hub.url(path)).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK, "{path}");
        let etag = first.headers()[ETAG].to_str().unwrap().to_owned();
        assert!(first.headers().contains_key("cache-control"), "{path}");
        let again = plain
            .get(hub.url(path))
            .header(IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()[ETAG].to_str().unwrap(), etag);
        assert!(again.bytes().await.unwrap().is_empty());
        let other = plain
            .get(hub.url(path))
            .header(IF_NONE_MATCH, "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::OK, "{path}");
    }

    let identity = plain.get(hub.url(MANIFEST)).send().await.unwrap();
    assert!(identity.headers().get(CONTENT_ENCODING).is_none());
    let identity_body = identity.bytes().await.unwrap();
    let gz = plain
        .get(hub.url(MANIFEST))
        .header(ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.status(), StatusCode::OK);
    assert_eq!(gz.headers()[CONTENT_ENCODING], "gzip");
    assert_eq!(gz.headers()["vary"], "Accept-Encoding");
    let gz_etag = gz.headers()[ETAG].to_str().unwrap().to_owned();
    let compressed = gz.bytes().await.unwrap();
    assert!(compressed.len() < identity_body.len());
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, identity_body);
    // The gzip representation's tag also revalidates.
    let revalidated = plain
        .get(hub.url(MANIFEST))
        .header(ACCEPT_ENCODING, "gzip")
        .header(IF_NONE_MATCH, &gz_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

    // A catalog change makes a new document with a new tag.
    seed(&hub, "https://small.example", 31).await;
    manifest_with(&hub, 31).await;
    let changed = plain.get(hub.url(MANIFEST)).send().await.unwrap();
    assert_ne!(changed.headers()[ETAG].to_str().unwrap(), gz_etag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_known_lists_active_peers_only_with_real_counts() {
    let provider = CatalogServer::with_tools(product_tools(
        "doc",
        &[
            ("ocr.scan@v1", 0.01, "Read text from scanned pages", 400),
            ("pdf.split@v1", 0.002, "Split a PDF into pages", 150),
        ],
    ))
    .await;
    let hub = hub_crawling(&provider, 2).await;
    // A pending peer (as an announce would create) must not be published.
    hub.state
        .store
        .insert_peer_if_absent(&NewPeer {
            url: "https://pending.example".into(),
            well_known_url: None,
            name: Some("Pending".into()),
            state: PeerState::Pending,
            trusted: false,
            depth: 1,
            pinned_key: None,
        })
        .await
        .unwrap();
    hub.state.catalog_changed();

    let (status, doc) = hub.get(WELL_KNOWN).await;
    assert_eq!(status, StatusCode::OK);
    validate(SchemaKind::WellKnown, &doc).unwrap();
    let key = PublicKey::from_b64(doc["signer_public_key"].as_str().unwrap()).unwrap();
    verify_document(&doc, &key).unwrap();
    assert_eq!(doc["protocol_versions"][1], "v2");
    assert_eq!(doc["federated_capabilities_count"], 2);
    assert_eq!(doc["capabilities_count"], 0);
    assert_eq!(doc["federation"]["routing_fee_bps"], 100);
    assert!(doc["federation"]["seed_list"].is_array());
    let peers = doc["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{doc}");
    assert_eq!(peers[0]["url"], provider.url.as_str());
    assert_eq!(peers[0]["capabilities_count"], 2);
    assert_eq!(
        peers[0]["trust_score"],
        crate::search::peer_trust(&hub, &provider.url).await
    );
    assert!(peers[0]["last_crawl"].is_string());
    assert!(peers[0]["name"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_hub_crawls_this_hubs_documents() {
    let provider = CatalogServer::with_tools(product_tools(
        "wx",
        &[
            ("weather.now@v1", 0.005, "Current weather for a city", 250),
            (
                "weather.forecast@v1",
                0.01,
                "Seven day weather forecast",
                400,
            ),
        ],
    ))
    .await;
    let hub_a = hub_crawling(&provider, 2).await;
    manifest_with(&hub_a, 2).await;
    let key_a = hub_key(&hub_a).await;

    let seed_a = format!("{}={}", hub_a.base_url, key_a.to_b64());
    let hub_b = TestHub::builder()
        .settings(|s| s.seeds = vec![seed_a.parse().unwrap()])
        .start()
        .await;
    let report = crawl(&hub_b).await;
    assert_eq!(report["stats"]["rejected"], 0, "{report}");
    wait_for_total(&hub_b, 2).await;

    // B routes to the provider through A: the owning origin is still the provider.
    let found = search(&hub_b, "intent=weather+forecast").await;
    assert_eq!(
        found["matches"][0]["capability_id"], "weather.forecast@v1",
        "{found}"
    );
    assert_eq!(found["matches"][0]["source_hub"], provider.url.as_str());
    // B's own manifest re-exports them, marked as learned through A.
    let manifest_b = manifest_with(&hub_b, 2).await;
    verify_manifest(&manifest_b, &hub_key(&hub_b).await).unwrap();
    for tool in manifest_b["tools"].as_array().unwrap() {
        assert_eq!(tool["source_hub"], provider.url.as_str());
        assert_eq!(tool["via"], hub_a.base_url.as_str());
    }
}

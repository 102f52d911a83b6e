//! The breadth-first crawl over several fake providers.

use std::collections::HashMap;
use std::sync::Mutex;

use aimarket_crawler::{
    CrawlConfig, CrawlError, CrawlEvent, KnownPeer, PeerOutcome, SeedSpec, UrlPolicy,
};
use aimarket_protocol::signing::KeyPair;
use serde_json::json;

use crate::support::*;

fn seed(p: &Provider) -> SeedSpec {
    SeedSpec {
        url: p.base.clone(),
        pinned_key: None,
        operator: true,
    }
}

fn none() -> HashMap<String, KnownPeer> {
    HashMap::new()
}

#[tokio::test]
async fn breadth_first_to_depth_three() {
    // a -> b -> c -> d -> e: e is beyond depth 3.
    let hubs: Vec<Provider> = (0..5).map(|_| Provider::start()).collect();
    let keys: Vec<KeyPair> = (0..5).map(|_| KeyPair::generate()).collect();
    for i in 0..5 {
        let next: Vec<&str> = hubs
            .get(i + 1)
            .map(|h| h.base.as_str())
            .into_iter()
            .collect();
        hubs[i].serve_hub(&keys[i], vec![tool(&format!("p{i}"), "c@v1", 1.0)], &next);
    }
    // b also lists a (already visited) and a seed-list URL for d's well-known (dup of c's).
    let mut wk = well_known(&hubs[1], &keys[1], &[&hubs[2].base, &hubs[0].base]);
    wk["federation"]["seed_list"] = json!([hubs[3].url(WK)]);
    hubs[1].json(WK, &wk);

    let events = Mutex::new(Vec::new());
    let report = crawler()
        .crawl_with_progress(vec![seed(&hubs[0])], &none(), &|e| {
            events.lock().expect("lock").push(e)
        })
        .await;
    let depths: Vec<(String, u8)> = report
        .peers
        .iter()
        .map(|p| (p.url.clone(), p.depth))
        .collect();
    assert_eq!(
        depths,
        vec![
            (hubs[0].base.clone(), 0),
            (hubs[1].base.clone(), 1),
            (hubs[2].base.clone(), 2),
            (hubs[3].base.clone(), 2),
            (hubs[4].base.clone(), 3),
        ],
        "d is reached at depth 2 through b's seed list, so e is within depth 3"
    );
    assert_eq!(report.updated(), 5);
    assert_eq!(
        hubs[0].hits(WK),
        1,
        "b listing a again does not re-crawl it"
    );
    assert_eq!(
        report.peers[1].discovered_from.as_deref(),
        Some(hubs[0].base.as_str())
    );
    assert!(report.peers[0].operator && !report.peers[1].operator);
    let events = events.into_inner().expect("lock");
    let started = events
        .iter()
        .filter(|e| matches!(e, CrawlEvent::PeerStarted { .. }))
        .count();
    assert_eq!(started, report.peers.len());
}

#[tokio::test]
async fn depth_limit_is_enforced() {
    let hubs: Vec<Provider> = (0..6).map(|_| Provider::start()).collect();
    let key = KeyPair::generate();
    for i in 0..6 {
        let next: Vec<&str> = hubs
            .get(i + 1)
            .map(|h| h.base.as_str())
            .into_iter()
            .collect();
        hubs[i].serve_hub(&key, vec![tool(&format!("p{i}"), "c@v1", 1.0)], &next);
    }
    let report = crawler().crawl(vec![seed(&hubs[0])], &none()).await;
    let depths: Vec<u8> = report.peers.iter().map(|p| p.depth).collect();
    assert_eq!(depths, [0, 1, 2, 3]);
    assert_eq!(report.beyond_depth, 1);
    assert_eq!(hubs[4].seen().len(), 0, "depth 4 is never contacted");
    assert_eq!(report.capabilities(), 4);
}

#[tokio::test]
async fn a_peer_listing_itself_and_us_is_crawled_once() {
    let p = Provider::start();
    let key = KeyPair::generate();
    let own = format!("{}/", p.base);
    p.serve_hub(
        &key,
        vec![tool("p", "c", 1.0)],
        &[&own, &p.base, "https://me.example.com"],
    );
    let mut config = CrawlConfig::default();
    config.verify.self_origin = Some("https://me.example.com".into());
    let c = crawler_with(fetch_config(PRIVATE_OK), config);
    let report = c.crawl(vec![seed(&p), seed(&p)], &none()).await;
    assert_eq!(report.peers.len(), 1);
    assert_eq!(p.hits(WK), 1);
}

#[tokio::test]
async fn thousands_of_peers_are_bounded() {
    let p = Provider::start();
    let key = KeyPair::generate();
    // 3,000 distinct (unreachable) peers.
    let peers: Vec<String> = (0..3000)
        .map(|i| format!("http://127.0.0.{}:{}", 2 + i / 1000, 20000 + i % 1000))
        .collect();
    let refs: Vec<&str> = peers.iter().map(String::as_str).collect();
    p.serve_hub(&key, vec![tool("p", "c", 1.0)], &refs);
    let config = CrawlConfig {
        max_peers: 20,
        ..CrawlConfig::default()
    };
    let c = crawler_with(fetch_config(PRIVATE_OK), config);
    let report = c.crawl(vec![seed(&p)], &none()).await;
    assert_eq!(report.peers.len(), 20, "the total cap");
    // At most 256 taken from one well-known; of those, 19 fit under the cap.
    assert_eq!(report.dropped_by_cap, 256 - 19);
    assert_eq!(report.updated(), 1);
    assert_eq!(report.failed(), 19);
}

#[tokio::test]
async fn gossip_urls_face_the_full_policy() {
    let a = Provider::start();
    let b = Provider::start();
    let key = KeyPair::generate();
    b.serve_hub(&key, vec![tool("b", "c", 1.0)], &[]);
    a.serve_hub(
        &key,
        vec![tool("a", "c", 1.0)],
        &[
            &b.base,
            "http://169.254.169.254",
            "http://localhost:1",
            "ftp://x.example",
        ],
    );
    let c = crawler_with(fetch_config(UrlPolicy::STRICT), CrawlConfig::default());
    let report = c.crawl(vec![seed(&a)], &none()).await;
    // The operator seed on loopback is crawled; the loopback peer it lists is a stranger's
    // URL and is refused without being contacted.
    assert_eq!(report.peers.len(), 1);
    assert!(matches!(report.peers[0].outcome, PeerOutcome::Updated(..)));
    assert_eq!(b.seen().len(), 0);

    // A seed that is not the operator's (a stored gossip peer) faces the range rule too.
    let report = c
        .crawl(
            vec![SeedSpec {
                operator: false,
                ..seed(&b)
            }],
            &none(),
        )
        .await;
    assert!(matches!(
        &report.peers[0].outcome,
        PeerOutcome::Failed(CrawlError::UnsafeUrl { .. })
    ));
    assert_eq!(b.seen().len(), 0);
}

/// Issue #13: an operator seed's `manifest_url` on another port of the same host is not
/// covered by the seed's exemption: the crawl fails with `unsafe_url` and the other service
/// is never contacted.
#[tokio::test]
async fn operator_seed_manifest_on_another_port_is_refused() {
    let a = Provider::start();
    let other = Provider::start();
    let key = KeyPair::generate();
    other.serve_hub(&key, vec![tool("o", "c", 1.0)], &[]);
    let mut wk = well_known(&a, &key, &[]);
    wk["manifest_url"] = json!(other.url(MANIFEST));
    a.json(WK, &wk);
    let c = crawler_with(fetch_config(UrlPolicy::STRICT), CrawlConfig::default());
    let report = c.crawl(vec![seed(&a)], &none()).await;
    assert_eq!(report.peers.len(), 1);
    assert!(
        matches!(
            &report.peers[0].outcome,
            PeerOutcome::Failed(CrawlError::UnsafeUrl { .. })
        ),
        "{:?}",
        report.peers[0].outcome
    );
    assert_eq!(a.hits(WK), 1);
    assert!(
        other.seen().is_empty(),
        "the other port must not be contacted"
    );
    // The same document with the manifest on the seed's own origin is crawled.
    a.serve_hub(&key, vec![tool("a", "c", 1.0)], &[]);
    let report = c.crawl(vec![seed(&a)], &none()).await;
    assert!(matches!(report.peers[0].outcome, PeerOutcome::Updated(..)));
}

#[tokio::test]
async fn failed_peers_are_not_expanded_and_pins_come_from_known() {
    let a = Provider::start();
    let b = Provider::start();
    let key = KeyPair::generate();
    let impostor = KeyPair::generate();
    b.serve_hub(&key, vec![tool("b", "c", 1.0)], &[]);
    a.serve_hub(&impostor, vec![tool("a", "c", 1.0)], &[&b.base]);
    let known = HashMap::from([(
        a.base.clone(),
        KnownPeer {
            pinned_key: Some(key.public_key().to_b64()),
            ..KnownPeer::default()
        },
    )]);
    let report = crawler().crawl(vec![seed(&a)], &known).await;
    assert_eq!(report.peers.len(), 1);
    let PeerOutcome::Failed(err) = &report.peers[0].outcome else {
        panic!("expected a key mismatch");
    };
    assert_eq!(err.code(), "key_mismatch");
    assert_eq!(
        b.seen().len(),
        0,
        "an unverified peer's gossip is not followed"
    );

    // A seed pin overrides the stored one.
    let report = crawler()
        .crawl(
            vec![SeedSpec {
                pinned_key: Some(impostor.public_key().to_b64()),
                ..seed(&a)
            }],
            &known,
        )
        .await;
    assert_eq!(report.updated(), 2);
}

#[test]
fn operator_seed_syntax() {
    let key = KeyPair::generate().public_key().to_b64();
    let s = SeedSpec::parse_operator(&format!("https://hub.example.com={key}"));
    assert_eq!(s.url, "https://hub.example.com");
    assert_eq!(s.pinned_key.as_deref(), Some(key.as_str()));
    assert!(s.operator);
    let s = SeedSpec::parse_operator("https://hub.example.com/x?a=b");
    assert_eq!(s.url, "https://hub.example.com/x?a=b");
    assert_eq!(s.pinned_key, None);
    let s = SeedSpec::parse_operator(&format!("https://hub.example.com/x?a=b={key}"));
    assert_eq!(s.url, "https://hub.example.com/x?a=b");
    assert_eq!(s.pinned_key.as_deref(), Some(key.as_str()));
}

/// Serves `tools` signed by `key`, with fixed ETags on both documents.
fn serve_tagged(p: &Provider, key: &KeyPair, tools: Vec<serde_json::Value>, manifest_tag: &str) {
    p.set(
        WK,
        Route::Json {
            body: serde_json::to_vec(&well_known(p, key, &[])).expect("json"),
            etag: Some("\"wk\"".into()),
            last_modified: None,
        },
    );
    p.set(
        MANIFEST,
        Route::Json {
            body: serde_json::to_vec(&signed_manifest(key, tools, chrono::Utc::now()))
                .expect("json"),
            etag: Some(manifest_tag.into()),
            last_modified: None,
        },
    );
}

#[tokio::test]
async fn a_recently_checked_peer_costs_one_conditional_request() {
    let p = Provider::start();
    let key = KeyPair::generate();
    serve_tagged(&p, &key, vec![tool("p", "a", 1.0)], "\"m1\"");
    let first = crawler().crawl(vec![seed(&p)], &none()).await;
    assert!(first.peers[0].well_known_checked);
    let PeerOutcome::Updated(cat, validators) = &first.peers[0].outcome else {
        panic!("expected a catalog: {:?}", first.peers[0].outcome);
    };
    let mut known = KnownPeer {
        pinned_key: Some(cat.peer.public_key.clone()),
        well_known: validators.well_known.clone(),
        manifest: validators.manifest.clone(),
        manifest_url: Some(cat.peer.manifest_url.to_string()),
        well_known_checked_at: Some(chrono::Utc::now()),
    };

    // Within the refresh window: the manifest alone, conditionally.
    let before = p.seen().len();
    let map = HashMap::from([(p.base.clone(), known.clone())]);
    let report = crawler().crawl(vec![seed(&p)], &map).await;
    assert!(matches!(
        report.peers[0].outcome,
        PeerOutcome::NotModified(_)
    ));
    assert!(!report.peers[0].well_known_checked);
    let seen = p.seen()[before..].to_vec();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, MANIFEST);
    assert_eq!(seen[0].headers["if-none-match"], "\"m1\"");

    // The window has passed: the well-known is checked again, conditionally too.
    known.well_known_checked_at = Some(chrono::Utc::now() - chrono::Duration::hours(7));
    let before = p.seen().len();
    let map = HashMap::from([(p.base.clone(), known.clone())]);
    let report = crawler().crawl(vec![seed(&p)], &map).await;
    assert!(matches!(
        report.peers[0].outcome,
        PeerOutcome::NotModified(_)
    ));
    assert!(report.peers[0].well_known_checked);
    let seen = p.seen()[before..].to_vec();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].path, WK);
    assert_eq!(seen[0].headers["if-none-match"], "\"wk\"");
    assert_eq!(seen[1].headers["if-none-match"], "\"m1\"");

    // A window of zero always checks the well-known.
    known.well_known_checked_at = Some(chrono::Utc::now());
    let zero = crawler_with(
        fetch_config(PRIVATE_OK),
        CrawlConfig {
            well_known_refresh: std::time::Duration::ZERO,
            ..CrawlConfig::default()
        },
    );
    let before = p.seen().len();
    let map = HashMap::from([(p.base.clone(), known.clone())]);
    let report = zero.crawl(vec![seed(&p)], &map).await;
    assert!(report.peers[0].well_known_checked);
    assert_eq!(p.seen().len() - before, 2);

    // The manifest changed within the window: the well-known is fetched in full after it,
    // and the new catalog verifies.
    serve_tagged(
        &p,
        &key,
        vec![tool("p", "a", 1.0), tool("p", "b", 2.0)],
        "\"m2\"",
    );
    let before = p.seen().len();
    let map = HashMap::from([(p.base.clone(), known)]);
    let report = crawler().crawl(vec![seed(&p)], &map).await;
    let PeerOutcome::Updated(cat, validators) = &report.peers[0].outcome else {
        panic!("expected a new catalog: {:?}", report.peers[0].outcome);
    };
    assert_eq!(cat.tools.len(), 2);
    assert_eq!(validators.manifest.etag.as_deref(), Some("\"m2\""));
    assert_eq!(validators.well_known.etag.as_deref(), Some("\"wk\""));
    assert!(report.peers[0].well_known_checked);
    let seen = p.seen()[before..].to_vec();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].path.as_str(), seen[1].path.as_str()),
        (MANIFEST, WK)
    );
    assert!(!seen[1].headers.contains_key("if-none-match"));
}

#[test]
fn rejections_are_told_apart_from_unreachable_peers() {
    assert!(CrawlError::Unsigned.is_rejection());
    assert!(
        CrawlError::KeyMismatch {
            pinned: "a".into(),
            presented: "b".into()
        }
        .is_rejection()
    );
    assert!(
        !CrawlError::Http {
            status: 500,
            url: "http://x".into()
        }
        .is_rejection()
    );
    assert!(
        !CrawlError::Timeout {
            url: "http://x".into(),
            after: std::time::Duration::from_secs(1)
        }
        .is_rejection()
    );
}

#[tokio::test]
async fn streaming_delivers_each_peer_and_stops_when_nobody_listens() {
    let hubs: Vec<Provider> = (0..3).map(|_| Provider::start()).collect();
    let key = KeyPair::generate();
    hubs[2].serve_hub(&key, vec![tool("c", "x", 1.0)], &[]);
    hubs[1].serve_hub(&key, vec![tool("b", "x", 1.0)], &[&hubs[2].base]);
    hubs[0].serve_hub(&key, vec![tool("a", "x", 1.0)], &[&hubs[1].base]);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let crawler = crawler();
    let known = none();
    let crawl = crawler.crawl_streaming(vec![seed(&hubs[0])], &known, &|_| {}, &tx);
    let collect = async {
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(rx.recv().await.expect("a result"));
        }
        got
    };
    let (report, got) = tokio::join!(crawl, collect);
    assert!(report.peers.is_empty(), "streamed, not collected");
    let depths: Vec<u8> = got.iter().map(|r| r.depth).collect();
    assert_eq!(depths, [0, 1, 2]);
    assert!(
        got.iter()
            .all(|r| matches!(r.outcome, PeerOutcome::Updated(..)))
    );

    // A receiver that is gone ends the crawl after the first peer.
    drop(rx);
    let before: usize = hubs.iter().map(|h| h.seen().len()).sum();
    let report = crawler
        .crawl_streaming(vec![seed(&hubs[0])], &known, &|_| {}, &tx)
        .await;
    assert!(report.peers.is_empty());
    let after: usize = hubs.iter().map(|h| h.seen().len()).sum();
    assert_eq!(
        hubs[1].seen().len() + hubs[2].seen().len(),
        4,
        "level 1 and 2 not crawled again"
    );
    assert_eq!(after - before, 2, "only the seed was fetched");
}

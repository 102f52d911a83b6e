//! One peer end to end (well-known, manifest, verification) against signed fake providers.

use std::time::Duration;

use aimarket_crawler::{
    CrawlConfig, CrawlError, Document, KeySource, KnownPeer, PeerOutcome, PeerValidators,
    VerifiedCatalog,
};
use aimarket_protocol::signing::{KeyPair, legacy_manifest_canonical};
use chrono::Utc;
use serde_json::{Value, json};

use crate::support::*;

async fn crawl_one(p: &Provider, known: Option<KnownPeer>) -> PeerOutcome {
    crawler().crawl_peer(&p.safe("/"), false, known).await
}

fn updated(outcome: PeerOutcome) -> (VerifiedCatalog, PeerValidators) {
    match outcome {
        PeerOutcome::Updated(c, v) => (*c, v),
        other => panic!("expected Updated, got {other:?}"),
    }
}

fn failed(outcome: PeerOutcome) -> CrawlError {
    match outcome {
        PeerOutcome::Failed(e) => e,
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn pinned(key: &KeyPair) -> Option<KnownPeer> {
    Some(KnownPeer {
        pinned_key: Some(key.public_key().to_b64()),
        ..KnownPeer::default()
    })
}

#[tokio::test]
async fn a_signed_catalog_verifies() {
    let p = Provider::start();
    let key = KeyPair::generate();
    p.serve_hub(
        &key,
        vec![
            tool("prod-1", "translate@v1", 0.4),
            tool("prod-1", "summarise@v1", 0.0),
        ],
        &[],
    );
    let (cat, v) = updated(crawl_one(&p, None).await);
    assert_eq!(cat.peer.url, p.base);
    assert_eq!(cat.peer.name, format!("Hub at {}", p.base));
    assert_eq!(cat.peer.public_key, key.public_key().to_b64());
    assert_eq!(
        cat.peer.key_source,
        KeySource::Presented,
        "a TOFU candidate"
    );
    assert_eq!(cat.peer.manifest_url, p.safe(MANIFEST));
    assert_eq!(cat.peer.routing_fee_bps, Some(100));
    assert_eq!(cat.tools.len(), 2);
    assert!(cat.rejected_tools.is_empty());
    let t = &cat.tools[0];
    assert_eq!(
        (t.product_id.as_str(), t.capability_id.as_str()),
        ("prod-1", "translate@v1")
    );
    assert_eq!(t.origin, p.base);
    assert_eq!(t.via, None);
    assert_eq!(t.price_usd, 0.4);
    assert_eq!(t.p50_latency_ms, Some(800));
    assert_eq!(t.success_rate, Some(0.97));
    assert_eq!(t.tool_str("name").as_deref(), Some("prod-1.translate@v1"));
    assert_eq!(
        v,
        PeerValidators::default(),
        "the provider sent no validators"
    );

    let (cat, _) = updated(crawl_one(&p, pinned(&key)).await);
    assert_eq!(cat.peer.key_source, KeySource::Pinned);
}

#[tokio::test]
async fn unsigned_manifest_is_refused() {
    let p = Provider::start();
    let key = KeyPair::generate();
    p.json(WK, &well_known(&p, &key, &[]));
    p.json(
        MANIFEST,
        &unsigned_manifest(vec![tool("p", "c", 1.0)], Utc::now()),
    );
    assert_eq!(failed(crawl_one(&p, None).await), CrawlError::Unsigned);
}

#[tokio::test]
async fn wrongly_signed_tampered_and_legacy_signatures_fail() {
    let key = KeyPair::generate();
    let other = KeyPair::generate();
    let tools = || vec![tool("p", "c", 1.0), tool("p", "d", 2.0)];
    let mut cases: Vec<(&str, Value)> = Vec::new();

    // Signed by another key, but claiming ours.
    let mut m = signed_manifest(&other, tools(), Utc::now());
    m["signature"]["public_key"] = json!(key.public_key().to_b64());
    cases.push(("wrong signer", m));

    let mut m = signed_manifest(&key, tools(), Utc::now());
    m["tools"][1]["price_per_call_usd"] = json!(0.01);
    cases.push(("tampered price", m));

    let mut m = unsigned_manifest(tools(), Utc::now());
    m["by_hub"] = json!({"https://hub.example.com": {"capabilities_count": 2, "trust_score": 0.5}});
    aimarket_protocol::signing::sign_manifest(&mut m, &key).expect("sign");
    m["by_hub"]["https://hub.example.com"]["trust_score"] = json!(0.99);
    cases.push(("tampered by_hub", m));

    let mut m = unsigned_manifest(tools(), Utc::now());
    let legacy = key.sign_b64(legacy_manifest_canonical(&m).as_bytes());
    m["signature"] =
        json!({"algorithm": "ed25519", "public_key": key.public_key().to_b64(), "value": legacy});
    cases.push(("legacy three-field", m));

    let mut m = signed_manifest(&key, tools(), Utc::now());
    m["signature"]["value"] = json!("not base64!");
    cases.push(("garbage signature", m));

    for (what, manifest) in cases {
        let p = Provider::start();
        p.json(WK, &well_known(&p, &key, &[]));
        p.json(MANIFEST, &manifest);
        for known in [None, pinned(&key)] {
            let err = failed(crawl_one(&p, known).await);
            assert!(matches!(err, CrawlError::Signature { .. }), "{what}: {err}");
            assert_eq!(err.code(), "signature");
        }
    }
}

#[tokio::test]
async fn key_changes_and_disagreements() {
    let old = KeyPair::generate();
    let new = KeyPair::generate();
    let p = Provider::start();
    // The peer rotated to a new key and signs correctly with it: still refused against the pin.
    p.serve_hub(&new, vec![tool("p", "c", 1.0)], &[]);
    let err = failed(crawl_one(&p, pinned(&old)).await);
    assert_eq!(
        err,
        CrawlError::KeyMismatch {
            pinned: old.public_key().to_b64(),
            presented: new.public_key().to_b64(),
        }
    );
    assert!(err.to_string().contains(&old.public_key().to_b64()));

    // The well-known presents one key, the manifest is signed by (and presents) another.
    let q = Provider::start();
    q.json(WK, &well_known(&q, &old, &[]));
    q.json(
        MANIFEST,
        &signed_manifest(&new, vec![tool("p", "c", 1.0)], Utc::now()),
    );
    assert!(matches!(
        failed(crawl_one(&q, None).await),
        CrawlError::KeyMismatch { .. }
    ));

    // A key that is not a key.
    let r = Provider::start();
    let mut wk = well_known(&r, &old, &[]);
    wk["signer_public_key"] = json!("AAAA");
    r.json(WK, &wk);
    r.json(MANIFEST, &signed_manifest(&old, vec![], Utc::now()));
    assert_eq!(failed(crawl_one(&r, None).await).code(), "invalid_key");
}

#[tokio::test]
async fn stale_and_future_manifests() {
    let key = KeyPair::generate();
    let p = Provider::start();
    p.json(WK, &well_known(&p, &key, &[]));
    let eight_days_ago = Utc::now() - chrono::Duration::days(8);
    p.json(
        MANIFEST,
        &signed_manifest(&key, vec![tool("p", "c", 1.0)], eight_days_ago),
    );
    assert!(matches!(
        failed(crawl_one(&p, None).await),
        CrawlError::Stale { .. }
    ));

    // The window is configurable.
    let mut config = CrawlConfig::default();
    config.verify.max_age = Duration::from_secs(30 * 24 * 3600);
    let lenient = crawler_with(fetch_config(PRIVATE_OK), config);
    updated(lenient.crawl_peer(&p.safe("/"), false, None).await);

    let in_two_hours = Utc::now() + chrono::Duration::hours(2);
    p.json(
        MANIFEST,
        &signed_manifest(&key, vec![tool("p", "c", 1.0)], in_two_hours),
    );
    assert!(matches!(
        failed(crawl_one(&p, None).await),
        CrawlError::Future { .. }
    ));

    let mut m = unsigned_manifest(vec![], Utc::now());
    m["generated_at"] = json!("yesterday");
    aimarket_protocol::signing::sign_manifest(&mut m, &key).expect("sign");
    p.json(MANIFEST, &m);
    assert_eq!(failed(crawl_one(&p, None).await).code(), "bad_timestamp");
}

#[tokio::test]
async fn schema_invalid_tools_are_dropped_only_under_a_valid_signature() {
    let key = KeyPair::generate();
    let tools = vec![
        tool("p", "good@v1", 1.0),
        json!({"name": "p.no-description", "input_schema": {}, "price_per_call_usd": 1.0}),
        tool("p", "negative@v1", -1.0),
        json!({"name": "p.bad-schema", "description": "d", "input_schema": "not an object", "price_per_call_usd": 1.0}),
        tool("p", "good2@v1", 2.0),
        tool("p", "too-dear@v1", 5000.0),
        json!({"name": "p.free-lunch", "description": "no price", "input_schema": {}}),
    ];
    let p = Provider::start();
    p.json(WK, &well_known(&p, &key, &[]));
    p.json(MANIFEST, &signed_manifest(&key, tools.clone(), Utc::now()));
    let (cat, _) = updated(crawl_one(&p, None).await);
    let kept: Vec<&str> = cat.tools.iter().map(|t| t.capability_id.as_str()).collect();
    assert_eq!(kept, ["good@v1", "good2@v1"]);
    let rejected: Vec<usize> = cat.rejected_tools.iter().map(|r| r.index).collect();
    assert_eq!(rejected, [1, 2, 3, 5, 6]);
    assert!(
        cat.rejected_tools[0].reason.contains("description"),
        "{:?}",
        cat.rejected_tools[0]
    );
    assert!(cat.rejected_tools[4].reason.contains("no price"));

    // Same tools, signature broken: nothing counts.
    let mut m = signed_manifest(&key, tools, Utc::now());
    m["tools"][0]["description"] = json!("changed in transit");
    p.json(MANIFEST, &m);
    assert!(matches!(
        failed(crawl_one(&p, None).await),
        CrawlError::Signature { .. }
    ));

    // An envelope that fails the manifest schema is refused as a whole.
    let mut m = unsigned_manifest(vec![], Utc::now());
    m["protocol_version"] = json!("v9");
    aimarket_protocol::signing::sign_manifest(&mut m, &key).expect("sign");
    p.json(MANIFEST, &m);
    let err = failed(crawl_one(&p, None).await);
    assert!(
        matches!(&err, CrawlError::Schema { document: Document::Manifest, errors } if errors[0].contains("protocol_version")),
        "{err}"
    );
}

#[tokio::test]
async fn duplicate_capability_ids_keep_the_last() {
    let key = KeyPair::generate();
    let p = Provider::start();
    p.serve_hub(
        &key,
        vec![
            tool("p", "dup@v1", 1.0),
            tool("p", "other@v1", 1.0),
            tool("p", "dup@v1", 3.0),
        ],
        &[],
    );
    let (cat, _) = updated(crawl_one(&p, None).await);
    assert_eq!(cat.tools.len(), 2);
    let dup = cat
        .tools
        .iter()
        .find(|t| t.capability_id == "dup@v1")
        .expect("kept");
    assert_eq!(dup.price_usd, 3.0);
    assert_eq!(cat.rejected_tools.len(), 1);
    assert_eq!(cat.rejected_tools[0].index, 0);
    assert!(cat.rejected_tools[0].reason.contains("duplicate"));
}

#[tokio::test]
async fn non_json_and_html_documents() {
    let key = KeyPair::generate();
    let raw = |ct: &'static str, body: &[u8]| Route::Raw {
        status: 200,
        content_type: Some(ct),
        body: body.to_vec(),
    };
    let p = Provider::start();
    p.json(WK, &well_known(&p, &key, &[]));
    for (route, code) in [
        (raw("application/json", b"this is not json {"), "not_json"),
        (raw("application/json", b"[1, 2, 3]"), "not_json"),
        (raw("application/json", b"{\"tools\": [1, 2"), "not_json"),
        (
            raw("text/html", b"<html><h1>502 Bad Gateway</h1></html>"),
            "content_type",
        ),
        (raw("text/plain", b"{}"), "content_type"),
    ] {
        p.set(MANIFEST, route.clone());
        let err = failed(crawl_one(&p, None).await);
        assert_eq!(err.code(), code, "manifest: {err}");
        p.set(WK, route);
        let err = failed(crawl_one(&p, None).await);
        assert_eq!(err.code(), code, "well-known: {err}");
        p.json(WK, &well_known(&p, &key, &[]));
    }
    // A well-known that is JSON but not a hub's.
    p.json(WK, &json!({"hello": "world"}));
    let err = failed(crawl_one(&p, None).await);
    assert!(
        matches!(
            err,
            CrawlError::Schema {
                document: Document::WellKnown,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn v1_manifest_path_falls_back_to_v2() {
    let key = KeyPair::generate();
    let p = Provider::start();
    let mut wk = well_known(&p, &key, &[]);
    wk.as_object_mut().expect("object").remove("manifest_url");
    p.json(WK, &wk);
    p.json(
        "/ai-market/v2/manifest",
        &signed_manifest(&key, vec![tool("p", "c", 1.0)], Utc::now()),
    );
    let (cat, _) = updated(crawl_one(&p, None).await);
    assert_eq!(cat.peer.manifest_url, p.safe("/ai-market/v2/manifest"));
    assert_eq!(p.hits(MANIFEST), 1, "the v1 default was tried first");
}

#[tokio::test]
async fn re_exported_tools_record_origin_and_via() {
    let key = KeyPair::generate();
    let p = Provider::start();
    let mut re = tool("far", "cap@v1", 1.0);
    re["source_hub"] = json!("https://far.example.com/");
    re["invoke_url"] = json!("https://far.example.com/ai-market/v2/invoke");
    let mut local = tool("near", "cap@v1", 1.0);
    local["source_hub"] = json!(p.base);
    let mut unsafe_origin = tool("evil", "cap@v1", 1.0);
    unsafe_origin["source_hub"] = json!("http://10.1.2.3/");
    p.serve_hub(&key, vec![re, local, unsafe_origin], &[]);
    // Strict policy for URLs inside documents, but the operator-exempt seed on loopback.
    let c = crawler_with(
        fetch_config(aimarket_crawler::UrlPolicy::STRICT),
        CrawlConfig::default(),
    );
    let (cat, _) = updated(c.crawl_peer(&p.safe("/"), true, None).await);
    assert_eq!(cat.tools.len(), 2, "{:?}", cat.rejected_tools);
    assert_eq!(cat.tools[0].origin, "https://far.example.com");
    assert_eq!(cat.tools[0].via.as_deref(), Some(p.base.as_str()));
    assert!(cat.tools[0].invoke_url.is_some());
    assert_eq!(cat.tools[1].origin, p.base);
    assert_eq!(cat.tools[1].via, None);
    assert!(cat.rejected_tools[0].reason.contains("unsafe"));
}

#[tokio::test]
async fn conditional_recrawl_costs_two_requests_and_nothing_more() {
    let key = KeyPair::generate();
    let p = Provider::start();
    let serve = |manifest_etag: &str, tools: Vec<Value>| {
        p.set(
            WK,
            Route::Json {
                body: serde_json::to_vec(&well_known(&p, &key, &[])).expect("json"),
                etag: Some("\"wk-1\"".into()),
                last_modified: None,
            },
        );
        p.set(
            MANIFEST,
            Route::Json {
                body: serde_json::to_vec(&signed_manifest(&key, tools, Utc::now())).expect("json"),
                etag: None,
                last_modified: Some(manifest_etag.to_owned()),
            },
        );
    };
    serve("Mon, 01 Jun 2026 10:00:00 GMT", vec![tool("p", "c", 1.0)]);
    let (cat, validators) = updated(crawl_one(&p, None).await);
    assert_eq!(validators.well_known.etag.as_deref(), Some("\"wk-1\""));
    assert_eq!(
        validators.manifest.last_modified.as_deref(),
        Some("Mon, 01 Jun 2026 10:00:00 GMT")
    );
    let known = KnownPeer {
        pinned_key: Some(cat.peer.public_key.clone()),
        well_known: validators.well_known.clone(),
        manifest: validators.manifest.clone(),
        manifest_url: Some(cat.peer.manifest_url.to_string()),
        well_known_checked_at: None,
    };

    let before = p.seen().len();
    let outcome = crawl_one(&p, Some(known.clone())).await;
    assert_eq!(outcome, PeerOutcome::NotModified(validators.clone()));
    let seen = p.seen();
    assert_eq!(
        seen.len() - before,
        2,
        "one conditional request per document"
    );
    assert_eq!(seen[before].headers["if-none-match"], "\"wk-1\"");
    assert_eq!(
        seen[before + 1].headers["if-modified-since"],
        "Mon, 01 Jun 2026 10:00:00 GMT"
    );

    // The manifest changes, the well-known does not: fetched again in full.
    serve(
        "Tue, 02 Jun 2026 10:00:00 GMT",
        vec![tool("p", "c", 1.0), tool("p", "new@v1", 2.0)],
    );
    let before = p.seen().len();
    let (cat, v) = updated(crawl_one(&p, Some(known)).await);
    assert_eq!(cat.tools.len(), 2);
    assert_eq!(
        v.manifest.last_modified.as_deref(),
        Some("Tue, 02 Jun 2026 10:00:00 GMT")
    );
    assert_eq!(
        p.hits(WK),
        4,
        "304, then one unconditional well-known fetch"
    );
    assert_eq!(p.seen().len() - before, 3);

    // Well-known unchanged but no manifest URL remembered: it is fetched again in full, and
    // the manifest validators (which belong to a URL we no longer know) are not sent.
    let forgetful = KnownPeer {
        pinned_key: None,
        well_known: v.well_known.clone(),
        manifest: v.manifest.clone(),
        manifest_url: None,
        well_known_checked_at: None,
    };
    let (cat, _) = updated(crawl_one(&p, Some(forgetful)).await);
    assert_eq!(cat.tools.len(), 2);
    assert_eq!(p.hits(WK), 6);
    let last = p.seen().pop().expect("requests");
    assert_eq!(last.path, MANIFEST);
    assert!(!last.headers.contains_key("if-modified-since"));
}

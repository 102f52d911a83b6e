#![allow(clippy::unwrap_used)]

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn opts() -> VerifyOptions {
    VerifyOptions::default()
}

fn wk_url() -> SafeUrl {
    SafeUrl::parse("https://peer.example.com/.well-known/ai-market.json").unwrap()
}

fn wk_doc(extra: Value) -> Vec<u8> {
    let mut doc = json!({"name": "Peer", "protocol_versions": ["v2"],
        "manifest_url": "https://peer.example.com/ai-market/v2/manifest",
        "signer_public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="});
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    serde_json::to_vec(&doc).unwrap()
}

#[test]
fn freshness_window_edges() {
    let now = Utc.with_ymd_and_hms(2026, 6, 10, 12, 0, 0).unwrap();
    let o = opts();
    assert!(
        check_freshness("2026-06-03T12:00:00Z", &o, now).is_ok(),
        "exactly 7 days"
    );
    assert!(matches!(
        check_freshness("2026-06-03T11:59:59Z", &o, now),
        Err(CrawlError::Stale { .. })
    ));
    assert!(
        check_freshness("2026-06-10T13:00:00Z", &o, now).is_ok(),
        "exactly 1 h ahead"
    );
    assert!(matches!(
        check_freshness("2026-06-10T13:00:01Z", &o, now),
        Err(CrawlError::Future { .. })
    ));
    // Offsets are honoured; naive timestamps are UTC.
    assert!(check_freshness("2026-06-10T14:30:00+02:00", &o, now).is_ok());
    assert!(check_freshness("2026-06-10T12:00:00.123456", &o, now).is_ok());
    for bad in ["", "yesterday", "2026-06-10", "2026-13-40T00:00:00Z"] {
        assert!(
            matches!(
                check_freshness(bad, &o, now),
                Err(CrawlError::BadTimestamp { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn well_known_fields_and_discovery() {
    let doc = wk_doc(json!({
        "hub_version": "2.0.0",
        "categories": ["legal", "nlp"],
        "federation": {"routing_fee_bps": 150, "seed_list": [
            "https://seed.example.org/.well-known/ai-market.json",
            "http://192.168.1.10/.well-known/ai-market.json"
        ]},
        "peers": [
            {"url": "https://hub2.example.com", "name": "a"},
            {"url": "https://hub2.example.com", "name": "dup"},
            {"url": "https://peer.example.com/", "name": "itself"},
            {"url": "http://127.0.0.1:8080", "name": "loop"},
            {"url": "https://x.example.com/\ttab", "name": "ctl"}
        ]
    }));
    let wk = parse_well_known(&doc, &wk_url(), false, &opts()).unwrap();
    assert_eq!(wk.name, "Peer");
    assert_eq!(wk.origin.origin(), "https://peer.example.com");
    assert_eq!(
        wk.manifest_url.as_str(),
        "https://peer.example.com/ai-market/v2/manifest"
    );
    assert_eq!(wk.routing_fee_bps, Some(150));
    assert_eq!(wk.categories, ["legal", "nlp"]);
    let peers: Vec<&str> = wk.peers.iter().map(SafeUrl::as_str).collect();
    assert_eq!(peers, ["https://hub2.example.com/"]);
    let seeds: Vec<&str> = wk.seed_list.iter().map(SafeUrl::as_str).collect();
    assert_eq!(
        seeds,
        ["https://seed.example.org/.well-known/ai-market.json"]
    );
    assert_eq!(wk.rejected_urls.len(), 3, "{:?}", wk.rejected_urls);
}

#[test]
fn discovery_is_capped_per_document() {
    let peers: Vec<Value> = (0..1000)
        .map(|i| json!({"url": format!("https://h{i}.example.com"), "name": "p"}))
        .collect();
    let doc = wk_doc(json!({"peers": peers}));
    let o = VerifyOptions {
        max_discovered: 10,
        ..opts()
    };
    let wk = parse_well_known(&doc, &wk_url(), false, &o).unwrap();
    assert_eq!(wk.peers.len(), 10);
    assert_eq!(wk.dropped_urls, 990);
}

#[test]
fn manifest_url_faces_the_policy() {
    let doc = wk_doc(json!({"manifest_url": "http://10.0.0.7/ai-market/manifest"}));
    let err = parse_well_known(&doc, &wk_url(), false, &opts()).unwrap_err();
    assert!(matches!(err, CrawlError::UnsafeUrl { .. }), "{err}");
    // Operator exemption covers the operator's origin only (scheme, host and port).
    let op = SafeUrl::parse("http://10.0.0.7/.well-known/ai-market.json").unwrap();
    parse_well_known(&doc, &op, true, &opts()).unwrap();
    for other in [
        "http://10.0.0.8/.well-known/ai-market.json",
        // Same host, another service (issue #13).
        "http://10.0.0.7:8080/.well-known/ai-market.json",
        "https://10.0.0.7/.well-known/ai-market.json",
    ] {
        let other = SafeUrl::parse(other).unwrap();
        let err = parse_well_known(&doc, &other, true, &opts()).unwrap_err();
        assert!(
            matches!(err, CrawlError::UnsafeUrl { .. }),
            "{other:?}: {err}"
        );
    }
    // Missing manifest_url: the v1 default on the peer's origin.
    let mut v: Value = serde_json::from_slice(&wk_doc(json!({}))).unwrap();
    v.as_object_mut().unwrap().remove("manifest_url");
    let wk = parse_well_known(&serde_json::to_vec(&v).unwrap(), &wk_url(), false, &opts()).unwrap();
    assert_eq!(
        wk.manifest_url.as_str(),
        "https://peer.example.com/ai-market/manifest"
    );
}

#[test]
fn key_resolution() {
    let wk = parse_well_known(&wk_doc(json!({})), &wk_url(), false, &opts()).unwrap();
    let presented = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let (_, b64, source) = resolve_key(&wk, &json!({}), None).unwrap();
    assert_eq!((b64.as_str(), source), (presented, KeySource::Presented));
    let (_, _, source) = resolve_key(&wk, &json!({}), Some(presented)).unwrap();
    assert_eq!(source, KeySource::Pinned);
    let other = aimarket_protocol::signing::KeyPair::from_seed(&[9; 32])
        .public_key()
        .to_b64();
    assert!(matches!(
        resolve_key(&wk, &json!({}), Some(&other)),
        Err(CrawlError::KeyMismatch { .. })
    ));
    let m = json!({"signature": {"public_key": other}});
    assert!(matches!(
        resolve_key(&wk, &m, None),
        Err(CrawlError::KeyMismatch { .. })
    ));
    let mut bare = wk.clone();
    bare.signer_public_key = None;
    assert_eq!(
        resolve_key(&bare, &json!({}), None).unwrap_err(),
        CrawlError::NoKey
    );
    assert_eq!(
        resolve_key(&bare, &json!({}), Some("bm90IGEga2V5"))
            .unwrap_err()
            .code(),
        "invalid_key"
    );
}

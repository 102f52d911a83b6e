//! Every bad input of issue 3, served by real loopback providers to the running hub (on
//! SQLite and PostgreSQL): the crawl completes, the hub keeps serving, each peer's
//! `last_error` says what was wrong, and the good provider's catalog is stored.
//!
//! The hub runs with the strict address policy (private peers not allowed: the operator
//! seeds themselves are exempt, redirects to other hosts are not) and a 2 s request timeout
//! for the trickling body. The assertions read the hub's first run (the startup crawl), so
//! no host is in backoff when it is judged.

use std::time::Duration;

use aimarket_e2e::catalog_server::{
    CatalogServer, MANIFEST, Route, WELL_KNOWN, legacy_signed_manifest, raw_tcp_server,
    signed_manifest, tool, tools, unsigned_manifest,
};
use aimarket_e2e::{TestHub, wait_until};
use aimarket_hub::store::CrawlRunRow;
use aimarket_protocol::signing::{KeyPair, sign_manifest};
use chrono::Utc;
use serde_json::{Value, json};

use crate::crawl::{CRAWL, assert_healthy, on_both_engines, peer, peers, row, start_hub};

on_both_engines!(bad_inputs_are_survived_and_explained);

/// What the hub should say about one provider.
struct Case {
    what: &'static str,
    seed: String,
    url: String,
    /// A fragment of `last_error`; `None` for providers that must crawl cleanly.
    error: Option<&'static str>,
    server: Option<CatalogServer>,
}

fn case(what: &'static str, server: CatalogServer, error: Option<&'static str>) -> Case {
    Case {
        what,
        seed: server.url.clone(),
        url: server.url.clone(),
        error,
        server: Some(server),
    }
}

/// A provider with a valid well-known and the given manifest.
async fn serving(manifest: impl FnOnce(&CatalogServer) -> Value) -> CatalogServer {
    let server = CatalogServer::start().await;
    server.json(WELL_KNOWN, &server.well_known(&[]));
    let manifest = manifest(&server);
    server.json(MANIFEST, &manifest);
    server
}

/// A provider with a valid well-known and `route` at the manifest path.
async fn routing(route: Route) -> CatalogServer {
    let server = CatalogServer::start().await;
    server.json(WELL_KNOWN, &server.well_known(&[]));
    server.set(MANIFEST, route);
    server
}

/// Waits for the first crawl run (the startup crawl) to finish.
async fn first_run(hub: &TestHub) -> CrawlRunRow {
    let store = hub.state.store.clone();
    let done = wait_until(Duration::from_secs(120), || {
        let store = store.clone();
        async move {
            store
                .last_runs(10)
                .await
                .unwrap()
                .iter()
                .any(|r| r.finished_at.is_some())
        }
    })
    .await;
    assert!(done, "the startup crawl did not finish");
    let runs = hub.state.store.last_runs(10).await.unwrap();
    runs.into_iter()
        .rev()
        .find(|r| r.finished_at.is_some())
        .unwrap()
}

async fn build_cases() -> Vec<Case> {
    let now = Utc::now();
    let two = || tools("prod", 2);
    let mut cases = vec![
        case("good", CatalogServer::with_tools(two()).await, None),
        case(
            "unsigned",
            serving(|_| unsigned_manifest(two(), now)).await,
            Some("manifest is unsigned"),
        ),
        case(
            "wrongly signed",
            serving(|s| {
                let mut m = signed_manifest(&KeyPair::generate(), two(), now);
                m["signature"]["public_key"] = json!(s.key.public_key().to_b64());
                m
            })
            .await,
            Some("manifest signature invalid"),
        ),
        case(
            "tampered price",
            serving(|s| {
                let mut m = s.signed_manifest(two());
                m["tools"][0]["price_per_call_usd"] = json!(0.0001);
                m
            })
            .await,
            Some("manifest signature invalid"),
        ),
        case(
            "tampered by_hub",
            serving(|s| {
                let mut m = unsigned_manifest(two(), now);
                m["by_hub"] = json!({"https://hub.example.com": {"capabilities_count": 2, "trust_score": 0.5}});
                sign_manifest(&mut m, &s.key).unwrap();
                m["by_hub"]["https://hub.example.com"]["trust_score"] = json!(0.99);
                m
            })
            .await,
            Some("manifest signature invalid"),
        ),
        case(
            "legacy three-field signature",
            serving(|s| legacy_signed_manifest(&s.key, two())).await,
            Some("manifest signature invalid"),
        ),
        case(
            "stale",
            serving(|s| signed_manifest(&s.key, two(), now - chrono::Duration::days(8))).await,
            Some("manifest is stale"),
        ),
        case(
            "future",
            serving(|s| signed_manifest(&s.key, two(), now + chrono::Duration::hours(2))).await,
            Some("in the future"),
        ),
        case(
            "schema-invalid tool among valid ones",
            serving(|s| {
                let mut bad = tool("prod", "bad@v1", 1.0);
                bad["price_per_call_usd"] = json!("free");
                s.signed_manifest(vec![tool("prod", "a@v1", 1.0), bad, tool("prod", "b@v1", 1.0)])
            })
            .await,
            None,
        ),
        case(
            "duplicate capability ids",
            serving(|s| {
                let mut second = tool("prod", "dup@v1", 2.0);
                second["description"] = json!("the later listing");
                s.signed_manifest(vec![tool("prod", "dup@v1", 1.0), second])
            })
            .await,
            None,
        ),
        case(
            "non-JSON",
            routing(Route::Raw {
                status: 200,
                content_type: Some("application/json"),
                body: "this is not json".into(),
            })
            .await,
            Some("is not a JSON object"),
        ),
        case(
            "HTML page served as 200",
            routing(Route::Raw {
                status: 200,
                content_type: Some("text/html"),
                body: "<html><body>Welcome!</body></html>".into(),
            })
            .await,
            Some("not JSON"),
        ),
        case(
            "HTML error page",
            routing(Route::Raw {
                status: 502,
                content_type: Some("text/html"),
                body: "<html><body>502 Bad Gateway</body></html>".into(),
            })
            .await,
            Some("HTTP 502"),
        ),
        case(
            "50 MB body",
            routing(Route::Huge {
                total: 50 * 1024 * 1024,
            })
            .await,
            Some("body exceeds 4194304 bytes"),
        ),
        case(
            "trickle",
            routing(Route::Trickle { bytes: 600 }).await,
            Some("timed out"),
        ),
        case(
            "redirect to a private address",
            routing(Route::Redirect {
                status: 302,
                location: "http://10.0.0.1/ai-market/manifest".into(),
            })
            .await,
            Some("unsafe URL http://10.0.0.1/ai-market/manifest"),
        ),
    ];

    let looping = routing(Route::Redirect {
        status: 302,
        location: "/loop".into(),
    })
    .await;
    looping.set(
        "/loop",
        Route::Redirect {
            status: 307,
            location: MANIFEST.into(),
        },
    );
    cases.push(case("redirect loop", looping, Some("redirect loop")));

    let impostor = CatalogServer::with_tools(two()).await;
    let pinned_elsewhere = KeyPair::generate().public_key().to_b64();
    cases.push(Case {
        seed: format!("{}={pinned_elsewhere}", impostor.url),
        ..case("wrong key", impostor, Some("signer key mismatch"))
    });

    // Thousands of peers (all loopback: refused by the strict policy, never followed).
    let crowded = CatalogServer::with_tools(two()).await;
    let many: Vec<String> = (0..3000)
        .map(|i| format!("http://127.0.0.1:{}/hub-{i}", 1 + i % 1000))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    crowded.json(WELL_KNOWN, &crowded.well_known(&refs));
    cases.push(case("thousands of peers", crowded, None));

    // Lists itself and this hub (the hub's public URL is http://hub.self.test).
    let narcissist = CatalogServer::with_tools(two()).await;
    narcissist.json(
        WELL_KNOWN,
        &narcissist.well_known(&[&narcissist.url, "http://hub.self.test"]),
    );
    cases.push(case("lists itself", narcissist, None));

    let truncated = raw_tcp_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\":",
    )
    .await;
    cases.push(Case {
        what: "truncated body",
        seed: truncated.clone(),
        url: truncated,
        error: Some("body truncated"),
        server: None,
    });
    cases
}

async fn bad_inputs_are_survived_and_explained(database_url: Option<String>) {
    let cases = build_cases().await;
    let seeds: Vec<String> = cases.iter().map(|c| c.seed.clone()).collect();
    let hub = start_hub(database_url.as_deref(), &seeds, |s| {
        s.allow_private_peers = false;
        s.crawl.request_timeout_s = 2;
        s.public_url = Some("http://hub.self.test".parse().unwrap());
    })
    .await;
    // Serving while the crawl runs (the trickle keeps it busy for 2 s).
    assert_healthy(&hub).await;
    let run = first_run(&hub).await;
    assert_healthy(&hub).await;

    let failing = cases.iter().filter(|c| c.error.is_some()).count();
    assert_eq!(
        run.summary.errors.len(),
        failing,
        "{:#?}",
        run.summary.errors
    );
    let listed = peers(&hub).await;
    assert_eq!(listed["count"], cases.len(), "{listed}");
    assert_eq!(
        listed["pending_count"], 0,
        "nothing discovered is safe to keep: {listed}"
    );
    for c in &cases {
        let p = peer(&listed, &c.url);
        match c.error {
            Some(fragment) => {
                let last_error = p["last_error"].as_str().unwrap_or_else(|| {
                    panic!("{}: no last_error: {p}", c.what);
                });
                assert!(last_error.contains(fragment), "{}: {last_error}", c.what);
                assert_eq!(p["capability_count"], 0, "{}: {p}", c.what);
            }
            None => assert_eq!(p["last_error"], Value::Null, "{}: {p}", c.what),
        }
    }
    let store = &hub.state.store;
    let count = |what: &str| {
        let url = &cases.iter().find(|c| c.what == what).unwrap().url;
        async move { row(store, url).await.capability_count }
    };
    assert_eq!(count("good").await, 2);
    assert_eq!(count("schema-invalid tool among valid ones").await, 2);
    assert_eq!(count("thousands of peers").await, 2);
    assert_eq!(count("lists itself").await, 2);
    assert_eq!(count("duplicate capability ids").await, 1);
    let dup = store.get_capability(None, "prod", "dup@v1").await.unwrap();
    assert_eq!(dup.len(), 1);
    assert_eq!(dup[0].capability.description, "the later listing");
    assert_eq!(dup[0].capability.price_usd, 2.0);
    // 2 + 2 + 2 + 2 + 1 capabilities, from five different origins.
    assert_eq!(store.count_capabilities().await.unwrap(), 9);
    let narcissist = &cases.iter().find(|c| c.what == "lists itself").unwrap();
    let server = narcissist.server.as_ref().unwrap();
    assert_eq!(
        server.hits(WELL_KNOWN),
        1,
        "crawled once, never as its own peer"
    );
    assert!(
        store
            .get_peer_by_url("http://hub.self.test")
            .await
            .unwrap()
            .is_none(),
        "the hub never records itself"
    );

    // Another run through the endpoint completes too, and the hub keeps serving.
    let (status, body) = hub.admin_post(CRAWL, &json!({})).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(
        body["stats"]["errors"].as_array().unwrap().len(),
        failing,
        "{body}"
    );
    assert_healthy(&hub).await;
}

//! Operator controls and reciprocal discovery: approve (searchable after the crawl, still
//! active after the next), re-pin after a key rotation, remove, runtime seeds that survive a
//! restart, the `X-AIMarket-Crawler` record (spec §2.5), and the `aimarket-hub peers` CLI
//! against a running hub.

use aimarket_e2e::catalog_server::{CatalogServer, WELL_KNOWN, tool};
use aimarket_e2e::{TEST_ADMIN_TOKEN, TestHub, assert_protocol_error, wait_until};
use aimarket_hub::cli::Cli;
use aimarket_hub::cli::peers::execute;
use aimarket_protocol::signing::KeyPair;
use clap::Parser;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::crawl::{PEERS, crawl, peer, peers};
use crate::federation::{ANNOUNCE, admin, browse, open_hub, server_with, signed, wait_for_total};
use crate::search::SYNC_WAIT;

const APPROVE: &str = "/ai-market/v2/federation/peers/approve";
const REPIN: &str = "/ai-market/v2/federation/peers/repin";
const SEEDS: &str = "/ai-market/v2/federation/seeds";
const INBOUND: &str = "/ai-market/v2/federation/inbound";

async fn send(hub: &TestHub, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let (status, _, body) = hub.send(request).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_peer_is_searchable_and_stays_active() {
    let a = server_with("prod-a").await;
    let hub = open_hub(None, |_| {}).await;
    let (status, _) = hub.post(ANNOUNCE, &signed(&a)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(browse(&hub).await["total"], 0);

    // Operator only.
    let (status, body) = hub.post(APPROVE, &json!({"url": a.url})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = hub
        .admin_post(APPROVE, &json!({"url": "http://127.0.0.1:1"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_protocol_error(&body, "peer_not_found");

    let (status, body) = hub.admin_post(APPROVE, &json!({"url": a.url})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(body["trusted"], true);
    assert_eq!(body["promoted_from_pending"], true);
    assert_eq!(body["public_key"], a.key.public_key().to_b64());

    crawl(&hub).await;
    wait_for_total(&hub, 2).await;
    let listed = peers(&hub).await;
    let p = peer(&listed, &a.url);
    assert_eq!(p["state"], "active", "{listed}");
    assert!(p.get("preview").is_none(), "the preview is gone: {p}");
    // The next crawl keeps it admitted (the reference hub demotes it here).
    crawl(&hub).await;
    crawl(&hub).await;
    let listed = peers(&hub).await;
    assert_eq!(peer(&listed, &a.url)["state"], "active", "{listed}");
    assert_eq!(listed["pending_count"], 0);
    wait_for_total(&hub, 2).await;
    let (_, doc) = hub.get(WELL_KNOWN).await;
    assert_eq!(doc["peers"][0]["url"], a.url.as_str(), "{doc}");
    // Approving again changes nothing.
    let (status, body) = hub.admin_post(APPROVE, &json!({"url": a.url})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["promoted_from_pending"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_change_is_rejected_until_repinned() {
    let mut a = CatalogServer::with_tools(vec![tool("rot", "old@v1", 0.01)]).await;
    let hub = TestHub::start().await;
    let (status, body) = hub
        .admin_post(
            SEEDS,
            &json!({"url": a.url, "public_key": a.key.public_key().to_b64()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], true);
    crawl(&hub).await;
    wait_for_total(&hub, 1).await;

    // The peer rotates its key: crawls are refused and the old catalog stays.
    a.key = KeyPair::generate();
    a.publish(vec![tool("rot", "new@v1", 0.01)], &[]);
    crawl(&hub).await;
    let listed = peers(&hub).await;
    let error = peer(&listed, &a.url)["last_error"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(error.to_lowercase().contains("key"), "{listed}");
    assert_eq!(browse(&hub).await["matches"][0]["capability_id"], "old@v1");

    let (status, body) = hub
        .admin_post(REPIN, &json!({"url": a.url, "public_key": "not a key"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = hub
        .admin_post(
            REPIN,
            &json!({"url": a.url, "public_key": a.key.public_key().to_b64()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["public_key"], a.key.public_key().to_b64());
    crawl(&hub).await;
    let moved = wait_until(SYNC_WAIT, || async {
        browse(&hub).await["matches"][0]["capability_id"] == "new@v1"
    })
    .await;
    assert!(moved, "{}", browse(&hub).await);
    let listed = peers(&hub).await;
    let p = peer(&listed, &a.url);
    assert_eq!(p["last_error"], Value::Null, "{p}");
    assert_eq!(p["key_source"], "operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_peers_leave_with_their_catalog() {
    let a = server_with("prod-a").await;
    let hub = TestHub::start().await;
    let (status, _) = hub.admin_post(SEEDS, &json!({"url": a.url})).await;
    assert_eq!(status, StatusCode::OK);
    crawl(&hub).await;
    wait_for_total(&hub, 2).await;

    let path = format!("{PEERS}?url={}", a.url);
    let (status, body) = send(&hub, hub.request(Method::DELETE, &path)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = send(&hub, admin(&hub, Method::DELETE, &path)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "removed");
    assert_eq!(body["capabilities_removed"], 2);
    wait_for_total(&hub, 0).await;
    let (_, doc) = hub.get(WELL_KNOWN).await;
    assert_eq!(doc["peers"], json!([]), "{doc}");
    assert_eq!(peers(&hub).await["count"], 0);
    let (status, body) = send(&hub, admin(&hub, Method::DELETE, &path)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_seeds_are_crawled_and_survive_a_restart() {
    let a = server_with("prod-a").await;
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::builder().data_dir(dir.path()).start().await;
    let (status, body) = hub.admin_post(SEEDS, &json!({"url": "ftp://x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = hub.admin_post(SEEDS, &json!({"url": a.url})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(body["crawl_scheduled"], true);
    // Crawled without anyone asking.
    wait_for_total(&hub, 2).await;
    hub.stop().await;

    let hub = TestHub::builder().data_dir(dir.path()).start().await;
    let listed = peers(&hub).await;
    let p = peer(&listed, &a.url);
    assert_eq!(p["state"], "active");
    assert_eq!(p["trusted"], true);
    assert_eq!(p["depth"], 0);
    assert_eq!(
        p["public_key"],
        a.key.public_key().to_b64(),
        "pinned on first use"
    );
    hub.stop().await;
}

/// Spec §2.5: hub B crawls hub A; A records B's `X-AIMarket-Crawler` off the request path,
/// and (open admission) B becomes a pending peer of A that A does not publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawlers_are_recorded_and_may_become_pending() {
    let a = open_hub(None, |_| {}).await;
    let b = TestHub::builder()
        .settings(|s| s.seeds = vec![a.base_url.parse().unwrap()])
        .start()
        .await;
    crawl(&b).await;

    let recorded = wait_until(SYNC_WAIT, || async {
        let (status, body) = send(&a, admin(&a, Method::GET, INBOUND)).await;
        status == StatusCode::OK
            && body["inbound"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["url"] == b.base_url.as_str() && r["status"] == "pending_peer")
    })
    .await;
    let (_, inbound) = send(&a, admin(&a, Method::GET, INBOUND)).await;
    assert!(recorded, "{inbound}");
    let listed = peers(&a).await;
    let p = peer(&listed, &b.base_url);
    assert_eq!(p["state"], "pending");
    assert_eq!(p["trusted"], false);
    let (_, doc) = a.get(WELL_KNOWN).await;
    assert_eq!(doc["peers"], json!([]), "{doc}");

    // Garbage in the header is validated away; the request itself is served normally.
    for junk in [
        "not a url",
        "javascript:alert(1)",
        "http://user:pw@x.example",
    ] {
        let request = a
            .request(Method::GET, WELL_KNOWN)
            .header("X-AIMarket-Crawler", junk);
        let (status, _) = send(&a, request).await;
        assert_eq!(status, StatusCode::OK);
    }
    // Operator only.
    let (status, _) = a.get(INBOUND).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Closed admission records the crawler but admits nothing.
    let closed = TestHub::start().await;
    let request = closed
        .request(Method::GET, WELL_KNOWN)
        .header("X-AIMarket-Crawler", "http://crawler.example:8080/x");
    let (status, _) = send(&closed, request).await;
    assert_eq!(status, StatusCode::OK);
    let recorded = wait_until(SYNC_WAIT, || async {
        let (_, body) = send(&closed, admin(&closed, Method::GET, INBOUND)).await;
        body["inbound"][0]["url"] == "http://crawler.example:8080"
    })
    .await;
    let (_, body) = send(&closed, admin(&closed, Method::GET, INBOUND)).await;
    assert!(recorded, "{body}");
    assert_eq!(body["count"], 1, "junk never recorded: {body}");
    assert_eq!(body["inbound"][0]["status"], "recorded");
    assert_eq!(peers(&closed).await["pending_count"], 0);
}

/// Runs `aimarket-hub peers <args…>` against `hub` through the CLI's library entry point.
async fn cli(hub: &TestHub, args: &[&str]) -> Result<String, String> {
    let mut argv = vec![
        "aimarket-hub",
        "peers",
        "--hub",
        &hub.base_url,
        "--admin-token",
        TEST_ADMIN_TOKEN,
    ];
    argv.extend_from_slice(args);
    let parsed = Cli::try_parse_from(argv).unwrap();
    let Some(aimarket_hub::cli::Command::Peers(peers_args)) = parsed.command else {
        panic!("not a peers command");
    };
    execute(&reqwest::Client::new(), &peers_args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_cli_manages_a_running_hub() {
    let a = server_with("prod-a").await;
    let b = server_with("prod-b").await;
    let hub = open_hub(None, |_| {}).await;
    let (status, _) = hub.post(ANNOUNCE, &signed(&a)).await;
    assert_eq!(status, StatusCode::OK);

    let out = cli(&hub, &["add-seed", &b.pinned_seed()]).await.unwrap();
    assert!(out.starts_with(&format!("added seed {}", b.url)), "{out}");
    wait_for_total(&hub, 2).await;
    let listed = peers(&hub).await;
    assert_eq!(peer(&listed, &b.url)["key_source"], "operator");

    let list = cli(&hub, &["list"]).await.unwrap();
    assert!(list.contains(&a.url) && list.contains(&b.url), "{list}");
    assert!(list.contains("1 active, 1 pending"), "{list}");

    let out = cli(&hub, &["approve", &a.url]).await.unwrap();
    assert!(
        out.starts_with(&format!("approved {} (status active)", a.url)),
        "{out}"
    );
    wait_for_total(&hub, 4).await;

    let rotated = KeyPair::generate().public_key().to_b64();
    let out = cli(&hub, &["repin", &a.url, &rotated]).await.unwrap();
    assert!(out.starts_with("re-pinned"), "{out}");
    assert_eq!(peer(&peers(&hub).await, &a.url)["public_key"], rotated);

    let out = cli(&hub, &["remove", &b.url]).await.unwrap();
    assert!(out.contains("2 capabilities removed"), "{out}");
    let json = cli(&hub, &["--json", "list"]).await.unwrap();
    let body: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(body["count"], 1, "{body}");

    let error = cli(&hub, &["remove", &b.url]).await.unwrap_err();
    assert!(
        error.contains("404") && error.contains("peer_not_found"),
        "{error}"
    );
    let mut argv = vec!["aimarket-hub", "peers", "--hub", &hub.base_url, "approve"];
    argv.push(&a.url);
    let parsed = Cli::try_parse_from(argv).unwrap();
    let Some(aimarket_hub::cli::Command::Peers(mut no_token)) = parsed.command else {
        panic!("not a peers command");
    };
    no_token.admin_token = None;
    let error = execute(&reqwest::Client::new(), &no_token)
        .await
        .unwrap_err();
    assert!(error.contains("401"), "{error}");
}

//! Several replicas of one hub, in process, on one PostgreSQL schema (and one Redis, with a
//! key prefix per test): a crawl on one replica reaches the other's search through the
//! catalog channel without the other crawling; simultaneous triggers make one run (the
//! crawl lease); the invoke rate limit is one budget across replicas; and without Redis the
//! catalog-version poll alone makes replicas converge.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aimarket_e2e::catalog_server::{CatalogServer, Gate, MANIFEST, Route, tools};
use aimarket_e2e::provider::{FakeProvider, FakeTool, seed_provider};
use aimarket_e2e::{TEST_ADMIN_TOKEN, TestHub, assert_protocol_error, wait_until};
use aimarket_hub::settings::{Seed, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::crawl::{CRAWL, crawl};

/// Bound on waiting for something another replica does.
const CONVERGE: Duration = Duration::from_secs(60);
/// A poll period long enough that only the catalog channel can deliver within a test.
const NO_POLL_MS: u64 = 3_600_000;

/// What the replicas of one test share.
struct Shared {
    database_url: String,
    redis_url: Option<String>,
    key_prefix: String,
}

impl Shared {
    /// A fresh schema and, with `redis`, the test Redis; `None` (SKIP) when a service is
    /// unreachable outside CI.
    async fn new(schema_prefix: &str, redis: bool) -> Option<Self> {
        let database_url = aimarket_e2e::postgres::fresh_schema_url(schema_prefix).await?;
        let redis_url = if redis {
            Some(aimarket_e2e::redis::test_redis_url().await?)
        } else {
            None
        };
        Some(Self {
            database_url,
            redis_url,
            key_prefix: aimarket_e2e::redis::unique_prefix(),
        })
    }

    /// A replica crawling `seeds`, with settings changed by `change`.
    async fn replica(&self, seeds: &[&str], change: impl FnOnce(&mut Settings)) -> TestHub {
        let seeds: Vec<Seed> = seeds.iter().map(|s| s.parse().unwrap()).collect();
        TestHub::builder()
            .settings(|s| {
                s.seeds = seeds;
                s.database_url = Some(self.database_url.parse().unwrap());
                s.redis_url = self.redis_url.as_ref().map(|u| u.parse().unwrap());
                s.replica.key_prefix = self.key_prefix.clone();
                // Trust scores only move after crawls here, never on a timer.
                s.reputation.recompute_interval_s = 86_400;
                change(s);
            })
            .start()
            .await
    }
}

/// The `product/capability` keys the replica's search returns (browse, up to 100).
async fn searchable(hub: &TestHub) -> BTreeSet<String> {
    let (status, body) = hub.get("/ai-market/v2/search?limit=100").await;
    if status != StatusCode::OK {
        // 503 while the index is (re)built.
        return BTreeSet::new();
    }
    body["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let field = |name: &str| m[name].as_str().unwrap().to_owned();
            format!("{}/{}", field("product_id"), field("capability_id"))
        })
        .collect()
}

/// The keys `searchable` reports for `tools(product, n)`.
fn ids(product: &str, n: usize) -> BTreeSet<String> {
    tools(product, n)
        .iter()
        .map(|t| {
            let field = |name: &str| t[name].as_str().unwrap().to_owned();
            format!("{}/{}", field("product_id"), field("capability_id"))
        })
        .collect()
}

/// Waits until `hub`'s search returns exactly `expected`.
async fn wait_searchable(hub: &TestHub, expected: &BTreeSet<String>) {
    let reached = wait_until(CONVERGE, || async { &searchable(hub).await == expected }).await;
    assert!(
        reached,
        "{} never served {expected:?}; it serves {:?}",
        hub.base_url,
        searchable(hub).await
    );
}

/// Waits until every crawl run in the store has finished; returns how many there are.
async fn settled_runs(hub: &TestHub) -> usize {
    let store = hub.state.store.clone();
    let settled = wait_until(CONVERGE, || {
        let store = store.clone();
        async move {
            let runs = store.last_runs(100).await.unwrap();
            !runs.is_empty() && runs.iter().all(|r| r.finished_at.is_some())
        }
    })
    .await;
    assert!(settled, "a crawl run never finished");
    store.last_runs(100).await.unwrap().len()
}

/// The `X-AIMarket-Crawler` values the catalog server has seen (the crawling replicas).
fn crawlers(server: &CatalogServer) -> BTreeSet<String> {
    server
        .seen()
        .iter()
        .filter_map(|s| s.headers.get("x-aimarket-crawler").cloned())
        .collect()
}

async fn health(hub: &TestHub) -> Value {
    let (status, body) = hub.get("/ai-market/v2/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn post_crawl(hub: &TestHub, query: &str) -> (StatusCode, Value) {
    let request = hub
        .request(Method::POST, &format!("{CRAWL}{query}"))
        .bearer_auth(TEST_ADMIN_TOKEN);
    let (status, _, body) = hub.send(request).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_crawl_through_the_catalog_channel() {
    let Some(shared) = Shared::new("rep_channel", true).await else {
        return;
    };
    let server = CatalogServer::with_tools(tools("prod-a", 2)).await;
    let no_poll = |s: &mut Settings| s.replica.catalog_poll_ms = NO_POLL_MS;
    // A's startup crawl takes this interval's scheduled slot...
    let a = shared.replica(&[&server.url], no_poll).await;
    wait_searchable(&a, &ids("prod-a", 2)).await;
    assert_eq!(settled_runs(&a).await, 1);
    // ...so B, starting within the interval, does not crawl; its index comes from the store.
    let b = shared.replica(&[&server.url], no_poll).await;
    wait_searchable(&b, &ids("prod-a", 2)).await;
    for hub in [&a, &b] {
        let body = health(hub).await;
        assert_eq!(body["mode"], "multi-replica", "{body}");
        assert_eq!(body["redis"], "ok", "{body}");
        assert_eq!(body["database_backend"], "postgres", "{body}");
    }
    assert_ne!(
        health(&a).await["replica_id"],
        health(&b).await["replica_id"]
    );

    // The provider adds capabilities; only A crawls.
    let mut grown = tools("prod-a", 2);
    grown.extend(tools("prod-b", 3));
    server.publish(grown, &[]);
    let body = crawl(&a).await;
    assert_eq!(body["joined"], false, "{body}");
    let mut expected = ids("prod-a", 2);
    expected.extend(ids("prod-b", 3));
    wait_searchable(&a, &expected).await;
    // B serves them through the channel: its poll is an hour away and it never crawled.
    wait_searchable(&b, &expected).await;
    let stats = b.state.shared.stats();
    assert!(stats.remote_updates.load(Ordering::Relaxed) >= 1);
    assert_eq!(stats.poll_heals.load(Ordering::Relaxed), 0);
    assert_eq!(crawlers(&server), BTreeSet::from([a.base_url.clone()]));
    assert_eq!(settled_runs(&b).await, 2);
    // The published documents follow too: B's manifest lists the new capabilities.
    let manifest_follows = wait_until(CONVERGE, || async {
        let (status, manifest) = b.get("/ai-market/v2/manifest").await;
        status == StatusCode::OK && manifest["tools"].as_array().is_some_and(|t| t.len() == 5)
    })
    .await;
    assert!(
        manifest_follows,
        "B's manifest never listed the five capabilities"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_triggers_on_two_replicas_make_one_run() {
    let Some(shared) = Shared::new("rep_lease", true).await else {
        return;
    };
    let server = CatalogServer::with_tools(tools("prod-a", 2)).await;
    let a = shared.replica(&[&server.url], |_| {}).await;
    assert_eq!(settled_runs(&a).await, 1);
    let b = shared.replica(&[&server.url], |_| {}).await;
    wait_searchable(&b, &ids("prod-a", 2)).await;
    let before = settled_runs(&b).await;
    assert_eq!(before, 1, "B's startup crawl was skipped");

    // The manifest is held until the test releases it, so the run is surely still going
    // when both triggers arrive.
    let gate = Gate::new();
    let manifest = server.signed_manifest(tools("prod-a", 2));
    server.set(
        MANIFEST,
        Route::Held {
            gate: gate.clone(),
            then: Box::new(Route::Json {
                body: serde_json::to_vec(&manifest).unwrap().into(),
                etag: "\"held\"".to_owned(),
            }),
        },
    );
    let ((status_a, body_a), (status_b, body_b)) =
        tokio::join!(post_crawl(&a, "?wait=false"), post_crawl(&b, "?wait=false"));
    assert_eq!(status_a, StatusCode::ACCEPTED, "{body_a}");
    assert_eq!(status_b, StatusCode::ACCEPTED, "{body_b}");
    let run_id = body_a["run_id"].as_i64().unwrap();
    assert_eq!(body_b["run_id"].as_i64(), Some(run_id), "{body_a} {body_b}");
    // Both name the replica doing the crawl: the one that did not join.
    let crawling = if body_a["joined"] == false {
        health(&a).await["replica_id"].clone()
    } else {
        health(&b).await["replica_id"].clone()
    };
    assert_eq!(body_a["replica_id"], crawling, "{body_a}");
    assert_eq!(body_b["replica_id"], crawling, "{body_b}");
    let joined = [&body_a, &body_b]
        .iter()
        .filter(|b| b["joined"] == true)
        .count();
    assert_eq!(joined, 1, "{body_a} {body_b}");
    // Whichever replica lost, a trigger there (and on the winner) joins the same run.
    let tickets = [
        aimarket_hub::crawl::trigger(&a.state.clone().into_inner())
            .await
            .unwrap(),
        aimarket_hub::crawl::trigger(&b.state.clone().into_inner())
            .await
            .unwrap(),
    ];
    assert!(tickets.iter().all(|t| t.joined && t.run_id == run_id));
    assert_eq!(
        b.state.store.last_runs(100).await.unwrap().len(),
        before + 1
    );

    gate.open();
    for ticket in tickets {
        let summary = ticket.outcome().await.unwrap();
        assert_eq!(summary.run_id, run_id);
        assert_eq!(summary.peers_reached, 1, "{summary:?}");
    }
    assert_eq!(settled_runs(&a).await, before + 1, "exactly one run");
    let (winner, loser) = if body_a["joined"] == false {
        (&a, &b)
    } else {
        (&b, &a)
    };
    // Only A (startup) and the winner ever fetched anything.
    assert_eq!(
        crawlers(&server),
        BTreeSet::from([a.base_url.clone(), winner.base_url.clone()])
    );

    // The lease was released with the run: the other replica now crawls itself.
    let (status, body) = post_crawl(loser, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["joined"], false, "{body}");
    assert_ne!(body["run_id"].as_i64(), Some(run_id));
    assert_eq!(settled_runs(&a).await, before + 2);
    assert!(crawlers(&server).contains(&loser.base_url));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invoke_rate_limit_is_one_budget_across_replicas() {
    let Some(shared) = Shared::new("rep_rate", true).await else {
        return;
    };
    // 2 per minute: one call every 30 s, so no call is refilled while the test runs.
    let limit = |s: &mut Settings| {
        s.invoke.rate_per_min = 2;
        // The two clients' keys are ones the hub issued (others are refused with 401).
        s.api_keys = "replica-client,another-client".parse().unwrap();
    };
    let a = shared.replica(&[], limit).await;
    let b = shared.replica(&[], limit).await;
    let tool = FakeTool::echo("echo@v1");
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    seed_provider(&a, &provider).await;

    let call = json!({"product_id": tool.product_id, "capability_id": tool.capability_id,
        "input": {"text": "x"}});
    let invoke = |hub: &TestHub, key: &str| {
        hub.request(Method::POST, "/ai-market/v2/invoke")
            .header("X-API-Key", key)
            .json(&call)
    };
    let (mut ok, mut limited) = (0, 0);
    // N + k = 2 + 3 calls of one client, alternating replicas.
    for i in 0..5 {
        let hub = if i % 2 == 0 { &a } else { &b };
        let (status, headers, body) = hub.send(invoke(hub, "replica-client")).await;
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert_protocol_error(&body, "rate_limited");
                let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=30).contains(&retry), "{retry}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, limited), (2, 3));
    assert_eq!(provider.invoke_count(), 2);
    // Another client has its own budget, on either replica.
    let (status, _, body) = b.send(invoke(&b, "another-client")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_replicas_on_postgres_converge_through_the_poll() {
    let Some(shared) = Shared::new("rep_poll", false).await else {
        return;
    };
    let fast_poll = |s: &mut Settings| s.replica.catalog_poll_ms = 200;
    // B starts first, on an empty catalog: its startup crawl reaches nothing.
    let b = shared.replica(&[], fast_poll).await;
    assert_eq!(settled_runs(&b).await, 1);
    let body = health(&b).await;
    assert_eq!(body["mode"], "single-replica", "{body}");
    assert_eq!(body["redis"], "disabled", "{body}");

    let server = CatalogServer::with_tools(tools("prod-a", 2)).await;
    let a = shared.replica(&[&server.url], fast_poll).await;
    wait_searchable(&a, &ids("prod-a", 2)).await;
    wait_searchable(&b, &ids("prod-a", 2)).await;

    let mut grown = tools("prod-a", 1);
    grown.extend(tools("prod-c", 2));
    server.publish(grown, &[]);
    crawl(&a).await;
    let mut expected = ids("prod-a", 1);
    expected.extend(ids("prod-c", 2));
    wait_searchable(&b, &expected).await;
    assert!(b.state.shared.stats().poll_heals.load(Ordering::Relaxed) >= 1);
    assert_eq!(crawlers(&server), BTreeSet::from([a.base_url.clone()]));
}

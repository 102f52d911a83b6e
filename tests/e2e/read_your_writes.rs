//! Read-your-writes (issue #15): a crawl or operator action answers once search and the
//! manifest show it, with the `catalog_version` it reached; search and the manifest carry
//! `X-AIMarket-Catalog-Version`; `?wait=false` answers at once. Every read below is made
//! right after the write's answer, without polling: a stale index or manifest fails it.

use aimarket_e2e::TestHub;
use aimarket_e2e::catalog_server::{CatalogServer, tools};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::crawl::{PEERS, crawl, start_hub};
use crate::federation::{ANNOUNCE, MANIFEST_PATH, SEARCH, admin, open_hub, server_with, signed};

const VERSION_HEADER: &str = "x-aimarket-catalog-version";
const APPROVE: &str = "/ai-market/v2/federation/peers/approve";

/// The browse total and the version header of a search made now.
async fn searched(hub: &TestHub) -> (u64, i64) {
    let (status, headers, body) = hub
        .send(hub.request(Method::GET, &format!("{SEARCH}?limit=100")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (body["total"].as_u64().unwrap(), header_version(&headers))
}

/// The manifest's tool count and version header now.
async fn published(hub: &TestHub) -> (u64, i64) {
    let (status, headers, body) = hub.send(hub.request(Method::GET, MANIFEST_PATH)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["total_capabilities"].as_u64().unwrap(),
        header_version(&headers),
    )
}

/// The version header; absent (`-1`) only before the hub's first index sync.
fn header_version(headers: &reqwest::header::HeaderMap) -> i64 {
    headers
        .get(VERSION_HEADER)
        .map_or(-1, |v| v.to_str().unwrap().parse().unwrap())
}

/// The answer's `catalog_version`, checked to be caught up.
fn reached(body: &Value) -> i64 {
    assert_eq!(body["catalog_caught_up"], true, "{body}");
    body["catalog_version"].as_i64().expect("catalog_version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_and_a_removal_answer_once_search_and_the_manifest_show_them() {
    let a = CatalogServer::with_tools(tools("prod-ryw", 40)).await;
    let hub = start_hub(None, &[&a.url], |_| {}).await;

    let body = crawl(&hub).await;
    assert_eq!(body["stats"]["capabilities_indexed"], 40, "{body}");
    let version = reached(&body);
    let (total, seen) = searched(&hub).await;
    assert_eq!(total, 40, "search lags the crawl's answer");
    assert!(
        seen >= version,
        "search at {seen}, crawl answered {version}"
    );
    let (tools, seen) = published(&hub).await;
    assert_eq!(tools, 40, "the manifest lags the crawl's answer");
    assert!(
        seen >= version,
        "manifest at {seen}, crawl answered {version}"
    );

    let request = admin(&hub, Method::DELETE, &format!("{PEERS}?url={}", a.url));
    let (status, headers, body) = hub.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let removed_at = reached(&body);
    assert!(removed_at > version, "{body}");
    assert_eq!(header_version(&headers), removed_at);
    assert_eq!(searched(&hub).await.0, 0, "search lags the removal");
    assert_eq!(published(&hub).await.0, 0, "the manifest lags the removal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_operator_announce_answer_once_the_peer_is_searchable() {
    let a = server_with("prod-pa").await;
    let b = server_with("prod-pb").await;
    let hub = open_hub(None, |_| {}).await;
    let (status, body) = hub.post(ANNOUNCE, &signed(&a)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A stranger's announcement waits for nothing (its peer is pending).
    assert!(body.get("catalog_version").is_none(), "{body}");
    assert_eq!(searched(&hub).await.0, 0);

    let (status, body) = hub.admin_post(APPROVE, &json!({"url": a.url})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    reached(&body);
    assert_eq!(searched(&hub).await.0, 2, "search lags the approval");
    assert_eq!(published(&hub).await.0, 2, "the manifest lags the approval");

    let request = admin(&hub, Method::POST, ANNOUNCE).json(&signed(&b));
    let (status, _, body) = hub.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    reached(&body);
    assert_eq!(
        searched(&hub).await.0,
        4,
        "search lags the operator's announce"
    );
    assert_eq!(published(&hub).await.0, 4);

    // Fire-and-forget keeps answering at once, without a version.
    let request =
        admin(&hub, Method::POST, &format!("{APPROVE}?wait=false")).json(&json!({"url": a.url}));
    let (status, _, body) = hub.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("catalog_version").is_none(), "{body}");
    let request =
        admin(&hub, Method::POST, &format!("{APPROVE}?wait=perhaps")).json(&json!({"url": a.url}));
    let (status, _, body) = hub.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

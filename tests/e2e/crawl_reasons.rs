//! Reasons are kept and shown (issue #15): tools a crawl drops are listed with their reason
//! in the crawl answer (a sample), per peer in `GET …/federation/peers` and per run in
//! `GET …/federation/crawls`, and still after a restart (they are stored); a peer's
//! admission state is `status` everywhere (`state` stays in the listing as a deprecated
//! alias).

use aimarket_e2e::TestHub;
use aimarket_e2e::catalog_server::{CatalogServer, tool, tools};
use aimarket_hub::settings::Seed;
use reqwest::StatusCode;
use serde_json::Value;

use crate::crawl::{crawl, peer, peers};

const CRAWLS: &str = "/ai-market/v2/federation/crawls";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_tools_are_listed_with_their_reasons() {
    let mut listed = tools("prod-ok", 3);
    let mut bad = tool("prod-bad", "negative@v1", 0.01);
    bad["price_per_call_usd"] = serde_json::json!(-5.0);
    listed.push(bad);
    let a = CatalogServer::with_tools(listed).await;
    let dir = tempfile::tempdir().unwrap();
    let seed: Seed = a.url.parse().unwrap();
    let start = || {
        TestHub::builder()
            .data_dir(dir.path())
            .settings(|s| s.seeds = vec![seed.clone()])
            .start()
    };
    let hub = start().await;

    // The startup crawl judges the peer first. An admin crawl joins it while it runs; once it
    // has finished, the admin crawl re-crawls an unchanged peer (304, nothing judged) instead.
    // Either way the judging run is the oldest in the history.
    crawl(&hub).await;
    let history = crawl_history(&hub).await;
    let body = history.last().expect("a run").clone();
    assert_eq!(body["capabilities_indexed"], 3, "{body}");
    assert_eq!(body["rejected_tools"], 1, "{body}");
    let sample = body["rejected_tools_sample"].as_array().expect("a sample");
    assert_eq!(sample.len(), 1, "{body}");
    assert_dropped(&sample[0], &a.url);

    let listed = peers(&hub).await;
    let p = peer(&listed, &a.url);
    assert_eq!(p["status"], "active", "{p}");
    assert_eq!(p["state"], p["status"], "the deprecated alias agrees: {p}");
    assert_eq!(p["rejected_tools"]["count"], 1, "{p}");
    assert_eq!(p["rejected_tools"]["run_id"], body["run_id"], "{p}");
    assert_dropped(&p["rejected_tools"]["tools"][0], &a.url);

    // Another run (304: nothing re-judged) keeps the peer's reasons and heads the history.
    let second = crawl(&hub).await;
    let listed = peers(&hub).await;
    assert_eq!(peer(&listed, &a.url)["rejected_tools"]["count"], 1);
    let runs = crawl_history(&hub).await;
    assert_eq!(runs.len(), history.len() + 1, "{runs:?}");
    assert_eq!(
        runs[0]["run_id"], second["run_id"],
        "newest first: {runs:?}"
    );
    assert_eq!(runs[0]["rejected_tools"], 0, "{runs:?}");
    let judged = runs.last().expect("a run");
    assert_eq!(judged["run_id"], body["run_id"], "{runs:?}");
    assert_eq!(judged["rejected_tools"], 1, "{runs:?}");
    assert_dropped(&judged["rejected_tools_sample"][0], &a.url);

    // Stored: a restarted hub (or any other replica) shows the same reasons.
    hub.stop().await;
    let hub = start().await;
    let listed = peers(&hub).await;
    let p = peer(&listed, &a.url);
    assert_eq!(p["rejected_tools"]["count"], 1, "{p}");
    assert_eq!(p["rejected_tools"]["run_id"], body["run_id"], "{p}");
    assert_dropped(&p["rejected_tools"]["tools"][0], &a.url);
    let (status, after) = hub.get(CRAWLS).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    // The restarted hub may have crawled its seed since: the earlier runs read the same.
    for run in &runs {
        let again = after["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .find(|r| r["run_id"] == run["run_id"]);
        assert_eq!(again, Some(run), "the same run after a restart: {after}");
    }
    hub.stop().await;
}

/// The crawl runs of `GET /ai-market/v2/federation/crawls`, newest first.
async fn crawl_history(hub: &TestHub) -> Vec<Value> {
    let (status, history) = hub.get(CRAWLS).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    history["runs"].as_array().expect("runs").clone()
}

fn assert_dropped(entry: &Value, url: &str) {
    assert_eq!(entry["peer"], url, "{entry}");
    assert_eq!(entry["name"], "prod-bad.negative@v1", "{entry}");
    assert_eq!(entry["index"], 3, "{entry}");
    let reason = entry["reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "a reason: {entry}");
}

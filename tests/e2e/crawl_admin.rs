//! The crawl trigger and the peers list as clients see them: admin authentication
//! (401/403/200/202), single flight (a second trigger joins the running crawl), serving
//! while a crawl runs, the peers endpoint's shape, and shutdown.

use std::time::Duration;

use aimarket_e2e::catalog_server::{CatalogServer, Gate, MANIFEST, Route, WELL_KNOWN, tools};
use aimarket_e2e::{TEST_ADMIN_TOKEN, TestHub, assert_protocol_error, wait_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::crawl::{CRAWL, PEERS, assert_healthy, crawl, peers, start_hub};

async fn post_crawl(hub: &TestHub, query: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = hub.request(Method::POST, &format!("{CRAWL}{query}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let (status, _, body) = hub.send(request).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crawl_trigger_is_for_the_operator_only() {
    let open = TestHub::builder()
        .settings(|s| s.admin_token = None)
        .start()
        .await;
    for token in [None, Some("anything")] {
        let (status, body) = post_crawl(&open, "", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_protocol_error(&body, "unauthorized");
    }

    let a = CatalogServer::with_tools(tools("prod-a", 2)).await;
    let hub = start_hub(None, &[&a.url], |_| {}).await;
    let (status, body) = post_crawl(&hub, "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_protocol_error(&body, "unauthorized");
    let (status, body) = post_crawl(&hub, "", Some("not-the-token")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_protocol_error(&body, "forbidden");
    let (status, body) = post_crawl(&hub, "?wait=maybe", Some(TEST_ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_protocol_error(&body, "bad_request");
    let (status, body) = hub.get(CRAWL).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");

    let (status, body) = post_crawl(&hub, "", Some(TEST_ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "complete");
    let stats = &body["stats"];
    for key in [
        "peers_reached",
        "capabilities_indexed",
        "not_modified",
        "rejected",
    ] {
        assert!(stats[key].is_u64(), "{key}: {body}");
    }
    assert!(stats["errors"].is_array(), "{body}");
    assert!(body["run_id"].is_i64(), "{body}");

    let (status, body) = post_crawl(&hub, "?wait=false", Some(TEST_ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "started", "{body}");
    let run_id = body["run_id"].as_i64().unwrap();
    let store = hub.state.store.clone();
    let finished = wait_until(Duration::from_secs(60), || {
        let store = store.clone();
        async move {
            store
                .last_runs(5)
                .await
                .unwrap()
                .iter()
                .any(|r| r.id == run_id && r.finished_at.is_some())
        }
    })
    .await;
    assert!(finished, "run {run_id} never finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_crawl_at_a_time_and_the_hub_serves_meanwhile() {
    let gate = Gate::new();
    let held = CatalogServer::start().await;
    held.json(WELL_KNOWN, &held.well_known(&[]));
    let manifest = held.signed_manifest(tools("prod-h", 3));
    held.json(MANIFEST, &manifest);
    // Same body, but held until the test opens the gate.
    held.set(
        MANIFEST,
        Route::Held {
            gate: gate.clone(),
            then: Box::new(Route::Json {
                body: serde_json::to_vec(&manifest).unwrap().into(),
                etag: "\"held\"".into(),
            }),
        },
    );
    let hub = start_hub(None, &[&held.url], |s| s.crawl.request_timeout_s = 120).await;

    let (status, first) = post_crawl(&hub, "?wait=false", Some(TEST_ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, second) = post_crawl(&hub, "?wait=false", Some(TEST_ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_eq!(second["joined"], true, "{second}");
    assert_eq!(first["run_id"], second["run_id"]);

    // A waiting trigger joins too, and the hub keeps answering while the crawl is held.
    let waiting = {
        let client = hub.client.clone();
        let url = hub.url(CRAWL);
        tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(TEST_ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        })
    };
    // The run records its seed before it reaches the held manifest; the hub answers all
    // along.
    let recorded = wait_until(Duration::from_secs(60), || async {
        peers(&hub).await["count"] == 1
    })
    .await;
    assert!(recorded, "the seed was never recorded");
    assert_healthy(&hub).await;
    gate.open();
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run_id"], first["run_id"], "{body}");
    assert_eq!(body["joined"], true, "{body}");
    assert_eq!(body["stats"]["capabilities_indexed"], 3, "{body}");

    // The run is over: the next trigger starts a new one.
    let next = crawl(&hub).await;
    assert_eq!(next["joined"], false, "{next}");
    assert!(next["run_id"].as_i64() > first["run_id"].as_i64(), "{next}");

    // After shutdown no crawl starts.
    hub.state.crawl.shutdown();
    let (status, body) = post_crawl(&hub, "", Some(TEST_ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_protocol_error(&body, "service_unavailable");
    assert_healthy(&hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peers_endpoint_lists_active_and_pending_peers_apart() {
    let found = CatalogServer::with_tools(tools("prod-f", 1)).await;
    let seed = CatalogServer::start().await;
    seed.publish(tools("prod-s", 2), &[&found.url]);
    let hub = start_hub(None, &[&seed.url], |_| {}).await;
    crawl(&hub).await;
    let (status, body) = hub.get(PEERS).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 1, "{body}");
    assert_eq!(body["pending_count"], 1, "{body}");
    let keys = [
        "url",
        "name",
        "state",
        "trusted",
        "depth",
        "last_crawl",
        "last_success",
        "capability_count",
        "last_error",
        "public_key",
        "well_known_url",
    ];
    for (list, url, state) in [
        ("peers", &seed.url, "active"),
        ("pending", &found.url, "pending"),
    ] {
        let entries = body[list].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{body}");
        let entry = &entries[0];
        for key in keys {
            assert!(
                entry.get(key).is_some(),
                "{list} entry lacks {key}: {entry}"
            );
        }
        assert_eq!(&entry["url"], &json!(url));
        assert_eq!(entry["state"], state);
    }
    assert_eq!(
        body["peers"][0]["public_key"],
        seed.key.public_key().to_b64()
    );
    assert_eq!(body["pending"][0]["public_key"], Value::Null);
}

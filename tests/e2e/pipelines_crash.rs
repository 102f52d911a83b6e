//! A hub that dies in the middle of a pipeline (issue #17): its runtime is torn down while a
//! node's hold is placed and its provider is still working, as `kill -9` would (no
//! settlement, no cleanup beyond what the OS does); the hub restarted on the same data dir
//! releases the abandoned hold at startup, so the channel is charged only for the node
//! captured with its receipt.

use std::time::Duration;

use aimarket_e2e::TestHub;
use aimarket_e2e::provider::{Behaviour, FakeProvider, seed_provider};
use reqwest::StatusCode;
use serde_json::json;

use crate::invoke_payments::{API_KEY, balances, open_channel, paid_tool};

/// Bound on waiting for the slow node to reach its provider.
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_hub_killed_mid_run_leaves_no_hold_captured_without_a_receipt() {
    let provider_rt = tokio::runtime::Runtime::new().unwrap();
    let provider = provider_rt.block_on(
        FakeProvider::builder()
            .tool(paid_tool("fast@v1", 0.10))
            // Priced in the catalog (so the buyer's channel holds it), answers after a minute.
            .tool(paid_tool("stuck@v1", 0.20).behaving(Behaviour::Slow(Duration::from_secs(60))))
            .start(),
    );
    let data = tempfile::tempdir().unwrap();
    let credentials = format!("{}=apikey:{API_KEY}", provider.url);
    let build = |credentials: String| {
        let dir = data.path().to_path_buf();
        async move {
            TestHub::builder()
                .data_dir(dir)
                .settings(move |s| {
                    s.demo_payments = true;
                    s.invoke.peer_credentials = credentials.parse().unwrap();
                })
                .start()
                .await
        }
    };

    // The doomed hub runs on a runtime of its own, so it can be torn down mid-call.
    let doomed_rt = tokio::runtime::Runtime::new().unwrap();
    let hub = doomed_rt.block_on(build(credentials.clone()));
    let channel = doomed_rt.block_on(async {
        seed_provider(&hub, &provider).await;
        open_channel(&hub, 1.0).await
    });
    let pipeline = json!({"nodes": [
        {"id": "a", "product_id": "prod-fake", "capability_id": "fast@v1", "input": {"text": "x"}},
        {"id": "b", "product_id": "prod-fake", "capability_id": "stuck@v1",
         "input_from": {"text": "a/echo/text"}}]});
    let request = hub
        .client
        .post(hub.url("/ai-market/v2/pipelines"))
        .header("X-Payment-Channel", &channel.0)
        .header("X-Payment-Channel-Secret", &channel.1)
        .header("Idempotency-Key", "crash-1")
        .json(&pipeline);
    let in_flight = doomed_rt.spawn(async move { request.send().await });
    // Wait until node b has reached its provider (its hold is placed before forwarding).
    let deadline = std::time::Instant::now() + WAIT;
    while provider.invoke_count() < 2 {
        assert!(std::time::Instant::now() < deadline, "node b never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = doomed_rt.block_on(balances(&hub, &channel.0));
    assert_eq!(before.1, 101_000, "node a captured: {before:?}");
    assert_eq!(before.2, 202_000, "node b held: {before:?}");
    // Like kill -9: the search index lock goes with the process, nothing else is cleaned up.
    hub.state.catalog.close();
    // A killed process's lock is gone at once; here the index goes when the doomed runtime's
    // tasks let go of it, so wait for that (bounded) instead of racing the restart.
    assert!(
        doomed_rt.block_on(hub.state.catalog.wait_released(WAIT)),
        "the search index was never released"
    );
    std::mem::forget(hub);
    doomed_rt.shutdown_background();
    drop(in_flight);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let hub = build(credentials).await;
        let (balance, used, held) = balances(&hub, &channel.0).await;
        assert_eq!((used, held), (101_000, 0), "balance {balance}");
        // One hold captured (node a) and it has its receipt; none left held.
        let aimarket_hub::store::Store::Sqlite(db) = &hub.state.store else {
            panic!("the test hub runs on SQLite");
        };
        let counts: (i64, i64, i64) = sqlx::query_as(
            "SELECT \
               (SELECT COUNT(*) FROM holds WHERE channel_id = $1 AND state = 'captured'), \
               (SELECT COUNT(*) FROM holds h WHERE channel_id = $1 AND state = 'captured' \
                  AND NOT EXISTS (SELECT 1 FROM receipts r \
                                  WHERE r.hold_id = h.id OR r.nonce = h.id)), \
               (SELECT COUNT(*) FROM holds WHERE channel_id = $1 AND state = 'held')",
        )
        .bind(&channel.0)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(counts, (1, 0, 0));
        // The run never answered, so nothing is stored under a trace id and a retry with
        // the same key is still refused while the dead run's claim lasts (no double charge).
        let retry = hub
            .client
            .post(hub.url("/ai-market/v2/pipelines"))
            .header("X-Payment-Channel", &channel.0)
            .header("X-Payment-Channel-Secret", &channel.1)
            .header("Idempotency-Key", "crash-1")
            .json(&pipeline);
        let (status, _, body) = hub.send(retry).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"], "idempotency_in_flight");
        hub.stop().await;
    });
    drop(provider_rt);
}

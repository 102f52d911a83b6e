//! Dependencies going away under load (issue #13), each on a server of its own
//! (`aimarket_e2e::services`), so the shared PostgreSQL and Redis never stop:
//!
//! - PostgreSQL stopped and started again during mixed load: answers are successes or 503
//!   `unavailable` with the protocol body (never a 500 or a dropped connection), the hub
//!   recovers without a restart, and the ledger loses or doubles nothing: the channel's
//!   debits are exactly the successful paid calls, each with its stored receipt.
//! - Redis killed under two replicas: searches and invokes go on (per-replica limits), a
//!   crawl trigger is 503, and crawls (the lease) work again once Redis is back.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aimarket_e2e::faulty::{Fault, FaultyProvider};
use aimarket_e2e::services::{OwnPostgres, OwnRedis};
use aimarket_e2e::{TestHub, wait_until};
use aimarket_hub::payments::OpenChannel;
use aimarket_hub::settings::Settings;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PAID_MICROS: i64 = 1_010;

/// A hub on `database_url` whose only peer is `fake`, with a free and a paid capability.
async fn hub_on(
    database_url: &str,
    fake: &FaultyProvider,
    change: impl FnOnce(&mut Settings),
) -> TestHub {
    let credentials = format!("{}=apikey:hub-key", fake.url);
    TestHub::builder()
        .settings(|s| {
            s.demo_payments = true;
            s.database_url = Some(database_url.parse().unwrap());
            s.invoke.peer_credentials = credentials.parse().unwrap();
            s.replica.catalog_poll_ms = 200;
            change(s);
        })
        .start()
        .await
}

async fn seed(hub: &TestHub, fake: &FaultyProvider) {
    let store = &hub.state.store;
    let peer = store.upsert_seed_peer(&fake.url, None).await.unwrap();
    let mut free = fake.capability(Fault::Ok, 0.0);
    free.capability_id = "free@v1".into();
    let paid = fake.capability(Fault::Ok, 0.001);
    store
        .replace_peer_catalog(peer.id, vec![free, paid])
        .await
        .unwrap();
    hub.state.catalog_changed();
}

fn invoke_body(cid: &str) -> Value {
    json!({"product_id": "faulty", "capability_id": cid, "input": {"x": 1}})
}

/// One round of mixed load; returns (status, body) per request, in order: search, free
/// invoke, paid invoke.
async fn mixed(hub: &TestHub, channel: &(String, String)) -> Vec<(StatusCode, Value)> {
    let search = hub.request(Method::GET, "/ai-market/v2/search?intent=provider");
    let free = hub
        .request(Method::POST, "/ai-market/v2/invoke")
        .json(&invoke_body("free@v1"));
    let paid = hub
        .request(Method::POST, "/ai-market/v2/invoke")
        .header("X-Payment-Channel", &channel.0)
        .header("X-Payment-Channel-Secret", &channel.1)
        .json(&invoke_body("ok@v1"));
    let mut out = Vec::new();
    for request in [search, free, paid] {
        let (status, _, body) = hub.send(request).await;
        out.push((status, body));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_503_and_recovers_without_losing_ledger_rows() {
    let Some(pg) = OwnPostgres::start().await else {
        return;
    };
    let fake = FaultyProvider::start().await;
    let hub = Arc::new(hub_on(&pg.url, &fake, |_| {}).await);
    seed(&hub, &fake).await;
    let opened = hub
        .state
        .ledger
        .open_channel(OpenChannel {
            deposit_usd: 100.0,
            tx_hash: Some("demo-pg-outage".into()),
            ..OpenChannel::default()
        })
        .await
        .unwrap();
    let channel = (
        opened.id.clone(),
        opened.secret.as_ref().unwrap().expose().to_owned(),
    );
    let answers = mixed(&hub, &channel).await;
    assert!(answers.iter().all(|(s, _)| s.is_success()), "{answers:?}");

    // Load in the background through the outage: every answer is judged.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (hub, stop, channel) = (hub.clone(), stop.clone(), channel.clone());
        tokio::spawn(async move {
            let (mut receipts, mut unavailable, mut rounds) = (BTreeSet::new(), 0usize, 0usize);
            while !stop.load(Ordering::Relaxed) && rounds < 100_000 {
                rounds += 1;
                for (i, (status, body)) in mixed(&hub, &channel).await.into_iter().enumerate() {
                    if status == StatusCode::SERVICE_UNAVAILABLE {
                        assert_eq!(body["success"], false, "{body}");
                        assert_eq!(body["protocol_version"], "v2", "{body}");
                        unavailable += 1;
                        continue;
                    }
                    assert!(status.is_success(), "during the outage: {status} {body}");
                    if i == 2 {
                        let nonce = body["routing_receipt"]["nonce"].as_str().unwrap();
                        assert!(receipts.insert(nonce.to_owned()), "receipt twice: {nonce}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (receipts, unavailable)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.stop();
    // Longer than the store's 10 s pool acquire timeout, so waiting requests give up (503)
    // instead of only waiting out the outage.
    tokio::time::sleep(Duration::from_secs(15)).await;
    pg.resume().await;
    // Recovery without restarting the hub: a paid call succeeds again.
    let recovered = wait_until(Duration::from_secs(60), || async {
        mixed(&hub, &channel).await[2].0.is_success()
    })
    .await;
    assert!(recovered, "paid invokes never recovered after the restart");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (receipts, unavailable) = load.await.unwrap();
    eprintln!(
        "postgres outage: {} paid calls succeeded in the background load, {unavailable} answers 503",
        receipts.len()
    );
    assert!(
        unavailable > 0,
        "the outage was never seen (the test did not test it)"
    );

    // No ledger row lost or doubled: every success of the load is one debit with its stored
    // receipt. (The warm-up call and the recovery probes succeeded too; they are counted
    // from the ledger's own receipt list for this channel.)
    // Well inside the hold lease (provider timeout + 60 s): holds whose release failed in the
    // outage are retried as soon as the store is back, not left to the lease sweeper.
    let settled = wait_until(Duration::from_secs(30), || async {
        hub.state
            .ledger
            .get_channel(&channel.0)
            .await
            .is_ok_and(|c| c.held_micros == 0)
    })
    .await;
    assert!(settled, "holds left after the outage");
    let c = hub.state.ledger.get_channel(&channel.0).await.unwrap();
    assert_eq!(c.used_micros, c.invocations * PAID_MICROS, "{c:?}");
    assert_eq!(c.balance_micros(), c.deposit_micros - c.used_micros);
    for nonce in &receipts {
        let stored = hub.state.ledger.get_receipt(nonce).await.unwrap();
        assert!(stored.is_some(), "receipt {nonce} of a success was lost");
    }
    assert!(c.invocations >= receipts.len() as i64 + 2, "{c:?}");
}

async fn redis_status(hub: &TestHub) -> String {
    let (_, body) = hub.get("/ai-market/v2/health").await;
    body["redis"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_replicas_keep_serving_and_crawls_resume_when_it_returns() {
    let Some(database_url) = aimarket_e2e::postgres::fresh_schema_url("redis_down").await else {
        return;
    };
    let Some(mut redis) = OwnRedis::start().await else {
        return;
    };
    let fake = FaultyProvider::start().await;
    let prefix = aimarket_e2e::redis::unique_prefix();
    let replica = |redis_url: String, prefix: String| {
        let database_url = database_url.clone();
        let fake = &fake;
        async move {
            hub_on(&database_url, fake, move |s| {
                s.redis_url = Some(redis_url.parse().unwrap());
                s.replica.key_prefix = prefix;
                s.replica.crawl_lease_ttl_s = 3;
                s.invoke.rate_per_min = 600;
            })
            .await
        }
    };
    let a = replica(redis.url.clone(), prefix.clone()).await;
    let b = replica(redis.url.clone(), prefix.clone()).await;
    seed(&a, &fake).await;
    let opened = a
        .state
        .ledger
        .open_channel(OpenChannel {
            deposit_usd: 10.0,
            tx_hash: Some("demo-redis-down".into()),
            ..OpenChannel::default()
        })
        .await
        .unwrap();
    let channel = (
        opened.id.clone(),
        opened.secret.as_ref().unwrap().expose().to_owned(),
    );
    for hub in [&a, &b] {
        assert_eq!(redis_status(hub).await, "ok");
        let found = wait_until(Duration::from_secs(30), || async {
            let (_, body) = hub.get("/ai-market/v2/search?intent=provider").await;
            body["matches"].as_array().is_some_and(|r| !r.is_empty())
        })
        .await;
        assert!(found, "the catalog reached both replicas");
    }

    redis.kill();
    for hub in [&a, &b] {
        let noticed = wait_until(Duration::from_secs(30), || async {
            redis_status(hub).await == "unavailable"
        })
        .await;
        assert!(noticed, "health never reported Redis unavailable");
        // Searches and invokes keep working on the per-replica limiter.
        for _ in 0..5 {
            let answers = mixed(hub, &channel).await;
            assert!(
                answers.iter().all(|(s, _)| s.is_success()),
                "without Redis: {answers:?}"
            );
        }
        // No crawl starts without the lease: 503 with the protocol body.
        let (status, body) = hub
            .admin_post("/ai-market/v2/federation/crawl?wait=true", &json!({}))
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["success"], false, "{body}");
    }

    redis.resume().await;
    for hub in [&a, &b] {
        let back = wait_until(Duration::from_secs(60), || async {
            redis_status(hub).await == "ok"
        })
        .await;
        assert!(back, "health never reported Redis back");
        let crawled = wait_until(Duration::from_secs(60), || async {
            let (status, body) = hub
                .admin_post("/ai-market/v2/federation/crawl?wait=true", &json!({}))
                .await;
            status.is_success() && body["status"] == "complete"
        })
        .await;
        assert!(crawled, "crawls (the lease) did not recover");
    }
    let c = a.state.ledger.get_channel(&channel.0).await.unwrap();
    assert_eq!(c.held_micros, 0);
    assert_eq!(c.used_micros, c.invocations * PAID_MICROS);
}

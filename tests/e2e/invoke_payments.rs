//! Channel-funded invokes: hold, capture with the routing receipt, release on failure, the
//! hub paying providers with its own credentials, idempotency, and the concurrency proof
//! (1,000 calls against a channel that can pay for 500) on SQLite and PostgreSQL.

use std::sync::Arc;

use aimarket_e2e::provider::{Behaviour, FakeProvider, FakeTool, seed_provider};
use aimarket_e2e::{TestHub, assert_protocol_error};
use aimarket_hub::payments::{OpenChannel, micros_to_usd, usd_to_micros};
use aimarket_hub::settings::Settings;
use aimarket_protocol::signing::verify_receipt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PATH: &str = "/ai-market/v2/invoke";
pub(crate) const API_KEY: &str = "hub-key-at-provider";

pub(crate) fn call_body(tool: &FakeTool, input: Value) -> Value {
    json!({"product_id": tool.product_id, "capability_id": tool.capability_id, "input": input})
}

/// A priced tool that accepts the hub's API key.
pub(crate) fn paid_tool(cid: &str, price: f64) -> FakeTool {
    FakeTool::echo(cid)
        .priced(price)
        .behaving(Behaviour::Priced {
            price_usd: price,
            api_key: Some(API_KEY.to_owned()),
        })
}

/// Demo payments on (so channels open without a chain), the hub's API key configured for
/// the provider, and `change` on top.
pub(crate) async fn hub_paying(provider_url: &str, change: impl FnOnce(&mut Settings)) -> TestHub {
    let credentials = format!("{provider_url}=apikey:{API_KEY}");
    TestHub::builder()
        .settings(|s| {
            s.demo_payments = true;
            s.invoke.peer_credentials = credentials.parse().unwrap();
            change(s);
        })
        .start()
        .await
}

pub(crate) async fn open_channel(hub: &TestHub, deposit_usd: f64) -> (String, String) {
    let channel = hub
        .state
        .ledger
        .open_channel(OpenChannel {
            deposit_usd,
            tx_hash: Some(format!("demo-{}", uuid_like())),
            ..OpenChannel::default()
        })
        .await
        .unwrap();
    let secret = channel.secret.as_ref().unwrap().expose().to_owned();
    (channel.id, secret)
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) async fn paid_call(
    hub: &TestHub,
    tool: &FakeTool,
    channel: &(String, String),
    idempotency_key: Option<&str>,
    input: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = hub
        .request(Method::POST, PATH)
        .header("X-Payment-Channel", &channel.0)
        .header("X-Payment-Channel-Secret", &channel.1)
        .json(&call_body(tool, input));
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    hub.send(request).await
}

pub(crate) async fn balances(hub: &TestHub, id: &str) -> (i64, i64, i64) {
    let c = hub.state.ledger.get_channel(id).await.unwrap();
    (c.balance_micros(), c.used_micros, c.held_micros)
}

#[tokio::test]
async fn a_channel_funded_call_debits_exactly_the_routed_price() {
    let tool = paid_tool("paid@v1", 0.4);
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let hub = hub_paying(&provider.url, |_| {}).await;
    seed_provider(&hub, &provider).await;
    let channel = open_channel(&hub, 1.0).await;

    let (status, _, body) = paid_call(&hub, &tool, &channel, None, json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["price_usd"], 0.404);
    let routing = &body["routing_receipt"];
    verify_receipt(routing, &hub.state.signing_key.public_key()).unwrap();
    assert_eq!(routing["price_usd"], 0.404);
    verify_receipt(&body["receipt"], &provider.key.public_key()).unwrap();
    assert_eq!(balances(&hub, &channel.0).await, (596_000, 404_000, 0));

    // The receipt was stored with the debit.
    let nonce = routing["nonce"].as_str().unwrap();
    let stored = hub.state.ledger.get_receipt(nonce).await.unwrap().unwrap();
    assert_eq!(&stored, routing);

    // The provider was paid with the hub's credential, never the buyer's channel.
    let seen = provider.seen();
    assert_eq!(seen[0].all("x-api-key"), [API_KEY]);
    assert!(seen[0].all("x-payment-channel").is_empty());
    assert!(seen[0].all("x-payment-channel-secret").is_empty());
}

/// Issue #14: a capability whose stored input schema does not compile (here a remote
/// `$ref`, which the hub never fetches) used to be forwarded unchecked, and charged. It is
/// refused now, 502 naming the capability, with nothing held or forwarded.
#[tokio::test]
async fn an_uncompilable_input_schema_is_refused_before_any_hold() {
    let mut tool = paid_tool("remote-schema@v1", 0.4);
    tool.input_schema = json!({"$ref": "https://schemas.example/input.json"});
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let hub = hub_paying(&provider.url, |_| {}).await;
    seed_provider(&hub, &provider).await;
    let channel = open_channel(&hub, 1.0).await;

    let (status, _, body) = paid_call(&hub, &tool, &channel, None, json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_protocol_error(&body, "input_schema_invalid");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("prod-fake/remote-schema@v1"), "{detail}");
    assert_eq!(body["capability_id"], "remote-schema@v1", "{body}");
    assert_eq!(body["source_hub"], provider.url.as_str(), "{body}");
    assert_eq!(balances(&hub, &channel.0).await, (1_000_000, 0, 0));
    assert_eq!(provider.invoke_count(), 0);
}

#[tokio::test]
async fn failures_release_the_hold() {
    let broken = FakeTool::echo("broken@v1")
        .priced(0.4)
        .behaving(Behaviour::Status(500, json!({"error": "boom"})));
    let picky = FakeTool::echo("picky@v1")
        .priced(0.4)
        .behaving(Behaviour::Status(400, json!({"error": "bad"})));
    let refusing = FakeTool::echo("refusing@v1")
        .priced(0.4)
        .behaving(Behaviour::TypedFailure);
    let provider = FakeProvider::builder()
        .tool(broken.clone())
        .tool(picky.clone())
        .tool(refusing.clone())
        .start()
        .await;
    let hub = hub_paying(&provider.url, |_| {}).await;
    seed_provider(&hub, &provider).await;
    let channel = open_channel(&hub, 1.0).await;

    let (status, _, body) = paid_call(&hub, &broken, &channel, None, json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(balances(&hub, &channel.0).await, (1_000_000, 0, 0));
    let (status, _, _) = paid_call(&hub, &picky, &channel, None, json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(balances(&hub, &channel.0).await, (1_000_000, 0, 0));
    let (status, _, body) = paid_call(&hub, &refusing, &channel, None, json!({"text": "x"})).await;
    assert_eq!((status, &body["success"]), (StatusCode::OK, &json!(false)));
    assert_eq!(balances(&hub, &channel.0).await, (1_000_000, 0, 0));
    // Invalid input is refused before anything is held.
    let (status, _, _) = paid_call(&hub, &broken, &channel, None, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(balances(&hub, &channel.0).await, (1_000_000, 0, 0));
}

#[tokio::test]
async fn a_provider_still_asking_for_payment_is_provider_payment_failed() {
    // The provider wants a key the hub does not have.
    let tool = FakeTool::echo("paid@v1")
        .priced(0.4)
        .behaving(Behaviour::Priced {
            price_usd: 0.4,
            api_key: Some("another-key".into()),
        });
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let hub = hub_paying(&provider.url, |_| {}).await;
    seed_provider(&hub, &provider).await;
    let channel = open_channel(&hub, 1.0).await;
    let (status, _, body) = paid_call(&hub, &tool, &channel, None, json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_protocol_error(&body, "provider_payment_failed");
    assert_eq!(balances(&hub, &channel.0).await, (1_000_000, 0, 0));
}

#[tokio::test]
async fn with_demo_payments_the_hub_opens_one_channel_at_the_provider_and_reuses_it() {
    let tool = FakeTool::echo("paid@v1")
        .priced(0.4)
        .behaving(Behaviour::Priced {
            price_usd: 0.4,
            api_key: None,
        });
    let provider = FakeProvider::builder()
        .tool(tool.clone())
        .with_channels()
        .start()
        .await;
    let hub = TestHub::builder()
        .settings(|s| s.demo_payments = true)
        .start()
        .await;
    seed_provider(&hub, &provider).await;
    let channel = open_channel(&hub, 2.0).await;
    for _ in 0..3 {
        let (status, _, body) = paid_call(&hub, &tool, &channel, None, json!({"text": "x"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(provider.channels_opened(), 1);
    assert_eq!(balances(&hub, &channel.0).await.1, 3 * 404_000);
    let seen = provider.seen();
    assert!(
        seen.iter()
            .all(|s| s.one("x-payment-channel") == Some("ch_fake_1"))
    );
}

#[tokio::test]
async fn channel_problems_are_402_with_a_reason() {
    let tool = paid_tool("paid@v1", 0.4);
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let hub = hub_paying(&provider.url, |_| {}).await;
    seed_provider(&hub, &provider).await;

    let poor = open_channel(&hub, 0.4).await;
    let (status, _, body) = paid_call(&hub, &tool, &poor, None, json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_protocol_error(&body, "payment_required");
    assert_eq!(body["reason"], "insufficient_balance", "{body}");

    let rich = open_channel(&hub, 5.0).await;
    let wrong = (rich.0.clone(), "chs_wrong".to_owned());
    let (status, _, body) = paid_call(&hub, &tool, &wrong, None, json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_eq!(body["reason"], "invalid_channel_secret", "{body}");

    let unknown = ("ch_does_not_exist".to_owned(), "x".to_owned());
    let (status, _, body) = paid_call(&hub, &tool, &unknown, None, json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_protocol_error(&body, "payment_required");
    assert_eq!(body["reason"], "channel_not_found", "{body}");
    assert_eq!(provider.invoke_count(), 0);
    assert_eq!(balances(&hub, &rich.0).await, (5_000_000, 0, 0));
}

#[tokio::test]
async fn an_idempotent_retry_gets_the_first_answer_and_is_charged_once() {
    let tool = paid_tool("paid@v1", 0.4);
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let hub = hub_paying(&provider.url, |_| {}).await;
    seed_provider(&hub, &provider).await;
    let channel = open_channel(&hub, 2.0).await;

    let input = json!({"text": "once"});
    let (s1, _, first) = paid_call(&hub, &tool, &channel, Some("k-1"), input.clone()).await;
    let (s2, _, second) = paid_call(&hub, &tool, &channel, Some("k-1"), input.clone()).await;
    assert_eq!(
        (s1, s2),
        (StatusCode::OK, StatusCode::OK),
        "{first} {second}"
    );
    assert_eq!(first, second);
    assert_eq!(provider.invoke_count(), 1);
    assert_eq!(balances(&hub, &channel.0).await.1, 404_000);

    // Same key, another body.
    let (status, _, body) =
        paid_call(&hub, &tool, &channel, Some("k-1"), json!({"text": "twice"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_protocol_error(&body, "idempotency_conflict");
    assert_eq!(provider.invoke_count(), 1);

    // A failed first attempt is not pinned: after a 402 the retry runs again.
    let (status, _, _) = hub
        .send(
            hub.request(Method::POST, PATH)
                .header("Idempotency-Key", "k-2")
                .json(&call_body(&tool, input.clone())),
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    let (status, _, body) = paid_call(&hub, &tool, &channel, Some("k-2"), input).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(balances(&hub, &channel.0).await.1, 2 * 404_000);
}

/// 1,000 concurrent channel-funded invokes against a channel that can pay for 500.
async fn burst(hub: TestHub, provider: &FakeProvider, tool: &FakeTool) {
    const CALLS: usize = 1000;
    const AFFORDABLE: i64 = 500;
    let routed = usd_to_micros(0.0101).unwrap();
    let channel = open_channel(&hub, micros_to_usd(routed * AFFORDABLE)).await;
    let hub = Arc::new(hub);
    let mut tasks = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let hub = hub.clone();
        let tool = tool.clone();
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            paid_call(
                &hub,
                &tool,
                &channel,
                None,
                json!({"text": format!("call {i}")}),
            )
            .await
        }));
    }
    let mut ok = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (status, _, body) = task.await.unwrap();
        match status {
            StatusCode::OK => ok.push(body),
            StatusCode::PAYMENT_REQUIRED => {
                assert_protocol_error(&body, "payment_required");
                assert_eq!(body["reason"], "insufficient_balance", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok.len() as i64, AFFORDABLE);
    assert_eq!(refused, CALLS - ok.len());
    let (balance, used, held) = balances(&hub, &channel.0).await;
    assert_eq!((balance, held), (0, 0));
    assert_eq!(used, routed * AFFORDABLE);

    // The ledger equals the sum of the signed receipts, each stored and verifiable.
    let key = hub.state.signing_key.public_key();
    let mut receipts_total = 0;
    let mut nonces = std::collections::HashSet::new();
    for body in &ok {
        let receipt = &body["routing_receipt"];
        verify_receipt(receipt, &key).unwrap();
        receipts_total += usd_to_micros(receipt["price_usd"].as_f64().unwrap()).unwrap();
        let nonce = receipt["nonce"].as_str().unwrap();
        assert!(nonces.insert(nonce.to_owned()), "duplicate nonce {nonce}");
        let stored = hub.state.ledger.get_receipt(nonce).await.unwrap();
        assert_eq!(stored.as_ref(), Some(receipt));
    }
    assert_eq!(receipts_total, used);
    assert_eq!(provider.invoke_count() as i64, AFFORDABLE);
}

async fn burst_setup() -> (FakeProvider, FakeTool) {
    let tool = paid_tool("burst@v1", 0.01);
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    (provider, tool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_spend_a_channel_exactly_sqlite() {
    let (provider, tool) = burst_setup().await;
    // The burst is about the ledger: no client or provider limit may refuse part of it.
    let hub = hub_paying(&provider.url, |s| {
        s.invoke.rate_per_min = 0;
        s.limits.provider_max_in_flight = 0;
    })
    .await;
    seed_provider(&hub, &provider).await;
    burst(hub, &provider, &tool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_spend_a_channel_exactly_postgres() {
    let Some(database_url) = aimarket_e2e::postgres::fresh_schema_url("invoke_burst").await else {
        return;
    };
    let (provider, tool) = burst_setup().await;
    let hub = hub_paying(&provider.url, |s| {
        s.invoke.rate_per_min = 0;
        s.limits.provider_max_in_flight = 0;
        s.database_url = Some(database_url.parse().unwrap());
    })
    .await;
    assert_eq!(hub.state.store.backend(), "postgres");
    seed_provider(&hub, &provider).await;
    burst(hub, &provider, &tool).await;
}

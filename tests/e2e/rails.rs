//! Payment rails of routed calls against signed fake providers (the published providers are
//! exercised in `real_providers`): seller-direct pass-through, the routing-fee policy on that
//! rail, the buyer id, the hub admission signature, the ways a 402 names, 402s counted as
//! `payment_required`, tolerant request reading and provider fields passed through.

use aimarket_e2e::provider::{Behaviour, FakeProvider, FakeTool, seed_provider};
use aimarket_e2e::{TestHub, assert_protocol_error, wait_until};
use aimarket_hub::payments::OpenChannel;
use aimarket_hub::settings::{SellerDirectFee, Settings};
use aimarket_protocol::signing::{verify_hub_request, verify_receipt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::search::SYNC_WAIT;

const PATH: &str = "/ai-market/v2/invoke";

fn body(tool: &FakeTool, input: Value) -> Value {
    json!({"product_id": tool.product_id, "capability_id": tool.capability_id, "input": input})
}

fn priced(cid: &str, price: f64, api_key: Option<&str>) -> FakeTool {
    FakeTool::echo(cid)
        .priced(price)
        .behaving(Behaviour::Priced {
            price_usd: price,
            api_key: api_key.map(str::to_owned),
        })
}

async fn hub_with(change: impl FnOnce(&mut Settings)) -> TestHub {
    TestHub::builder()
        .settings(|s| {
            s.demo_payments = true;
            change(s);
        })
        .start()
        .await
}

async fn channel(hub: &TestHub, deposit_usd: f64, tx: &str) -> (String, String) {
    let c = hub
        .state
        .ledger
        .open_channel(OpenChannel {
            deposit_usd,
            tx_hash: Some(format!("demo-rails-{tx}")),
            ..OpenChannel::default()
        })
        .await
        .unwrap();
    let secret = c.secret.as_ref().unwrap().expose().to_owned();
    (c.id, secret)
}

async fn balance(hub: &TestHub, id: &str) -> i64 {
    hub.state
        .ledger
        .get_channel(id)
        .await
        .unwrap()
        .balance_micros()
}

#[tokio::test]
async fn seller_direct_payment_passes_through_and_leaves_the_channel_alone() {
    let tool = priced("direct@v1", 0.4, Some("hub-key"));
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let credentials = format!("{}=apikey:hub-key", provider.url);
    let hub = hub_with(|s| s.invoke.peer_credentials = credentials.parse().unwrap()).await;
    seed_provider(&hub, &provider).await;
    let (id, secret) = channel(&hub, 1.0, "direct").await;

    let request = hub
        .request(Method::POST, PATH)
        .header("X-Payment-Channel", &id)
        .header("X-Payment-Channel-Secret", &secret)
        .header("X-PAYMENT", "0xfeedproof")
        .header("X-Payment-Nonce", "n-1")
        .header("X-Payment-Secret", "s-1")
        .json(&body(&tool, json!({"text": "x"})));
    let (status, headers, answer) = hub.send(request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // The buyer's payment went up verbatim, nothing of the hub's or of the channel did.
    let seen = provider.seen();
    assert_eq!(seen[0].all("x-payment"), ["0xfeedproof"]);
    assert_eq!(seen[0].all("x-payment-nonce"), ["n-1"]);
    assert_eq!(seen[0].all("x-payment-secret"), ["s-1"]);
    for absent in ["x-api-key", "x-payment-channel", "x-payment-channel-secret"] {
        assert!(seen[0].all(absent).is_empty(), "{absent} leaked upstream");
    }
    // The provider's settlement answer comes back.
    assert_eq!(
        headers
            .get("payment-response")
            .and_then(|v| v.to_str().ok()),
        Some("settled:0xfeedproof")
    );
    // Not debited; the routing receipt says how the call was paid and that no fee was taken.
    assert_eq!(balance(&hub, &id).await, 1_000_000);
    assert_eq!(answer["payment_rail"], "seller_direct");
    assert_eq!(answer["routing_fee_usd"], 0.0);
    assert_eq!(answer["price_usd"], 0.4, "what the buyer paid the provider");
    let receipt = &answer["routing_receipt"];
    verify_receipt(receipt, &hub.state.signing_key.public_key()).unwrap();
    assert_eq!(receipt["payment_rail"], "seller_direct");
    assert_eq!(receipt["routing_fee_policy"], "waived");
    assert_eq!(receipt["routing_fee_bps"], 0);
    assert_eq!(receipt["price_usd"], 0.0);
}

#[tokio::test]
async fn a_charged_seller_direct_fee_is_held_on_the_channel() {
    let tool = priced("fee@v1", 0.4, None);
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let hub = hub_with(|s| s.invoke.seller_direct_fee = SellerDirectFee::Channel).await;
    seed_provider(&hub, &provider).await;

    // Without a channel the fee cannot be collected: 402 before anything is forwarded.
    let request = hub
        .request(Method::POST, PATH)
        .header("X-Payment", "0xproof")
        .json(&body(&tool, json!({"text": "t"})));
    let (status, _, answer) = hub.send(request).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{answer}");
    assert_protocol_error(&answer, "routing_fee_required");
    assert_eq!(answer["routing_fee_usd"], 0.004);
    assert_eq!(provider.invoke_count(), 0);

    let (id, secret) = channel(&hub, 1.0, "fee").await;
    let request = hub
        .request(Method::POST, PATH)
        .header("X-Payment-Channel", &id)
        .header("X-Payment-Channel-Secret", &secret)
        .header("X-Payment", "0xproof")
        .json(&body(&tool, json!({"text": "t"})));
    let (status, _, answer) = hub.send(request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Only the fee (1% of 0.4) left the channel; the provider was paid by the buyer.
    assert_eq!(balance(&hub, &id).await, 1_000_000 - 4_000);
    assert_eq!(answer["routing_fee_usd"], 0.004);
    assert_eq!(answer["routing_receipt"]["routing_fee_policy"], "channel");
    assert_eq!(answer["routing_receipt"]["price_usd"], 0.004);
    assert!(provider.seen()[0].all("x-payment-channel").is_empty());
}

#[tokio::test]
async fn buyers_get_an_opaque_stable_id_and_sold_peers_a_signature() {
    let free = FakeTool::echo("free@v1");
    let provider = FakeProvider::builder().tool(free.clone()).start().await;
    let sold = provider.url.clone();
    let hub = hub_with(|s| s.invoke.sells_for = sold.parse().unwrap()).await;
    seed_provider(&hub, &provider).await;
    let a = channel(&hub, 1.0, "buyer-a").await;
    let b = channel(&hub, 1.0, "buyer-b").await;
    for (id, secret) in [&a, &a, &b] {
        let request = hub
            .request(Method::POST, PATH)
            .header("X-Payment-Channel", id)
            .header("X-Payment-Channel-Secret", secret)
            .json(&body(&free, json!({"text": "ü ✓"})));
        let (status, _, answer) = hub.send(request).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let seen = provider.seen();
    let ids: Vec<&str> = seen
        .iter()
        .map(|s| s.one("x-aimarket-buyer").unwrap())
        .collect();
    assert_eq!(ids[0], ids[1], "one buyer, one id");
    assert_ne!(ids[0], ids[2], "two buyers, two ids");
    assert!(!ids[0].contains(&a.0) && !ids[0].contains(&a.1));

    // A free call to a peer this hub sells for is admitted and signed by the key the hub
    // publishes in its well-known.
    let (_, well_known) = hub.get("/.well-known/ai-market.json").await;
    let key = aimarket_protocol::signing::PublicKey::from_b64(
        well_known["signer_public_key"].as_str().unwrap(),
    )
    .unwrap();
    let first = &seen[0];
    let target = format!("{}{}", provider.url, first.path);
    let input = first.json()["input"].clone();
    let lookup = |name: &str| first.one(name).map(str::to_owned);
    let now = chrono::Utc::now().timestamp();
    verify_hub_request(lookup, &target, "free@v1", &input, &key, now).unwrap();
    assert_eq!(
        first.one("x-aimarket-hub-signer"),
        Some(hub.base_url.as_str())
    );
    let nonces: std::collections::HashSet<_> = seen
        .iter()
        .map(|s| s.one("x-aimarket-hub-nonce").unwrap().to_owned())
        .collect();
    assert_eq!(nonces.len(), 3, "a fresh nonce per call");
}

#[tokio::test]
async fn a_provider_refusing_the_signature_is_502_with_the_hold_released() {
    let strict = FakeTool::echo("strict@v1")
        .priced(0.2)
        .behaving(Behaviour::Status(
            401,
            json!({"ok": false, "error": "hub signature rejected: unknown signer"}),
        ));
    let provider = FakeProvider::builder().tool(strict.clone()).start().await;
    let sold = provider.url.clone();
    let hub = hub_with(|s| {
        s.demo_payments = true;
        s.invoke.sells_for = sold.parse().unwrap();
    })
    .await;
    seed_provider(&hub, &provider).await;
    let (id, secret) = channel(&hub, 1.0, "strict").await;
    let request = hub
        .request(Method::POST, PATH)
        .header("X-Payment-Channel", &id)
        .header("X-Payment-Channel-Secret", &secret)
        .json(&body(&strict, json!({"text": "t"})));
    let (status, _, answer) = hub.send(request).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_protocol_error(&answer, "provider_payment_failed");
    let detail = answer["detail"].as_str().unwrap();
    assert!(
        detail.contains("admission signature") && detail.contains("unknown signer"),
        "{detail}"
    );
    assert_eq!(balance(&hub, &id).await, 1_000_000);
    // (The hub first tried to open a demo channel there, which this provider has not.)
    let seen = provider.seen();
    let call = seen.iter().find(|s| !s.path.contains("channel")).unwrap();
    assert!(call.one("x-aimarket-hub-signature").is_some());
}

#[tokio::test]
async fn a_402_names_only_the_ways_that_can_succeed_and_counts_as_payment_required() {
    let tool = priced("gated@v1", 0.4, None);
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    // No credential, no demo channels, no signature: the hub cannot pay this provider.
    let hub = TestHub::start().await;
    seed_provider(&hub, &provider).await;
    let (status, headers, answer) = hub
        .send(
            hub.request(Method::POST, PATH)
                .json(&body(&tool, json!({"text": "t"}))),
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{answer}");
    assert_eq!(
        headers
            .get("x-aimarket-payment-ways")
            .and_then(|v| v.to_str().ok()),
        Some("seller_direct")
    );
    // Counted as payment_required: not a success, not a failure, not the provider's fault.
    let counted = wait_until(SYNC_WAIT, || async {
        let (_, live) = hub.get("/ai-market/v2/stats/live").await;
        live["summary"]["total_invocations"] == 1
    })
    .await;
    let (_, live) = hub.get("/ai-market/v2/stats/live").await;
    assert!(counted, "{live}");
    assert_eq!(live["summary"]["payment_required"], 1);
    assert_eq!(live["summary"]["failed"], 0);
    assert_eq!(live["events"][0]["outcome"], "payment_required");
    let stats = hub.state.ledger.peer_stats(0).await.unwrap();
    assert!(stats.iter().all(|s| s.calls == 0), "{stats:?}");

    // With a credential for the peer, the hub's channel is a way too.
    let credentials = format!("{}=apikey:nope", provider.url);
    let paying = TestHub::builder()
        .settings(|s| s.invoke.peer_credentials = credentials.parse().unwrap())
        .start()
        .await;
    seed_provider(&paying, &provider).await;
    let (_, headers, _) = paying
        .send(
            paying
                .request(Method::POST, PATH)
                .json(&body(&tool, json!({"text": "t"}))),
        )
        .await;
    assert_eq!(
        headers
            .get("x-aimarket-payment-ways")
            .and_then(|v| v.to_str().ok()),
        Some("hub_channel, seller_direct")
    );
}

#[tokio::test]
async fn real_clients_requests_and_answers_are_read_tolerantly() {
    let rich = FakeTool::echo("rich@v1").behaving(Behaviour::Status(
        200,
        json!({"ok": true, "capability_id": "rich@v1", "output": {"value": 7},
            "price_usd": 0.0, "provenance": {"input_hash": "abc"},
            "signature": "tenant-sig", "provider_pubkey": "tenant-key",
            "hub_billing": {"billed": "hub"}, "novel": [1, 2]}),
    ));
    let refusing = FakeTool::echo("refusing@v1").behaving(Behaviour::Status(
        200,
        json!({"ok": false, "error": "seed too short"}),
    ));
    let provider = FakeProvider::builder()
        .tool(rich.clone())
        .tool(refusing.clone())
        .start()
        .await;
    let twin = FakeProvider::builder()
        .tool(FakeTool {
            product_id: "prod-twin".to_owned(),
            ..FakeTool::echo("rich@v1")
        })
        .start()
        .await;
    let hub = TestHub::start().await;
    seed_provider(&hub, &provider).await;

    // A gateway's own name as source_hub, and no product_id: unique capability id.
    let (status, answer) = hub
        .post(
            PATH,
            &json!({"capability_id": "rich@v1", "source_hub": "mcp-oracle-gateway", "input": {"text": "t"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["result"], json!({"value": 7}));
    for (key, value) in [
        ("provenance", json!({"input_hash": "abc"})),
        ("signature", json!("tenant-sig")),
        ("provider_pubkey", json!("tenant-key")),
        ("hub_billing", json!({"billed": "hub"})),
        ("novel", json!([1, 2])),
    ] {
        assert_eq!(answer[key], value, "{key} must pass through");
    }
    // A key that is not base64 cannot verify anything: said so, not hidden.
    assert_eq!(answer["provider_body_signature"]["signed_by"], "unknown");
    assert_eq!(answer["provider_body_signature"]["verified"], false);
    assert_eq!(answer["provider_signature"], "absent");

    // `ok: false` is a typed failure: relayed, not a success.
    let (status, answer) = hub
        .post(
            PATH,
            &json!({"capability_id": "refusing@v1", "input": {"text": "t"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["success"], false);
    assert_eq!(answer["error"], "seed too short");

    // Two products list the same capability id: 409 naming both.
    seed_provider(&hub, &twin).await;
    let (status, answer) = hub
        .post(
            PATH,
            &json!({"capability_id": "rich@v1", "input": {"text": "t"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_protocol_error(&answer, "ambiguous_capability");
    assert_eq!(answer["candidates"].as_array().unwrap().len(), 2);
    // Naming the origin resolves it again.
    let (status, answer) = hub
        .post(
            PATH,
            &json!({"capability_id": "rich@v1", "source_hub": provider.url, "input": {"text": "t"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // An unknown capability without a product is still a 404.
    let (status, answer) = hub
        .post(
            PATH,
            &json!({"capability_id": "nope@v1", "input": {"text": "t"}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
}

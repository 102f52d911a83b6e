//! The x402 rail of a routed invoke on a real chain: a buyer pays the hub with an exact
//! authorization to its wallet, the hub checks it before calling the provider, pays the
//! provider itself, and settles the buyer's authorization once the provider succeeded.

use std::time::Duration;

use aimarket_e2e::assert_protocol_error;
use aimarket_e2e::chain::dev_account;
use aimarket_e2e::provider::{Behaviour, FakeProvider, FakeTool, seed_provider};
use aimarket_hub::payments::x402::sign_exact_authorization;
use aimarket_protocol::signing::verify_receipt;
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::chain_x402::{BUYER, HUB, PROVIDER, setup, setup_with};

const PATH: &str = "/ai-market/v2/invoke";

fn body(tool: &FakeTool) -> Value {
    json!({"product_id": tool.product_id, "capability_id": tool.capability_id,
           "input": {"text": "paid on-chain"}})
}

#[tokio::test]
async fn a_buyer_pays_a_routed_call_with_x402_to_the_hub() {
    let tool = FakeTool::echo("x402rail@v1")
        .priced(0.4)
        .behaving(Behaviour::Priced {
            price_usd: 0.4,
            api_key: Some("hub-key".into()),
        });
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let credentials = format!("{}=apikey:hub-key", provider.url);
    let Some((chain, token, hub, domain)) =
        setup_with(|s| s.invoke.peer_credentials = credentials.parse().unwrap()).await
    else {
        return;
    };
    seed_provider(&hub, &provider).await;
    let (buyer_key, buyer) = dev_account(BUYER);
    let (hub_key, hub_address) = dev_account(HUB);

    // Unpaid, the hub names the routed price in base units (micro-USD, 6 decimals).
    let (status, headers, answer) = hub
        .send(hub.request(Method::POST, PATH).json(&body(&tool)))
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{answer}");
    let needed: u64 = headers["x-aimarket-hub-needed-base-units"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(needed, 404_000, "0.40 USD plus the 1% routing fee");
    let calls_before = provider.invoke_count();

    let sign = |value| {
        sign_exact_authorization(
            &buyer_key,
            &domain,
            "anvil",
            hub_key.address(),
            value,
            Duration::from_secs(120),
        )
        .unwrap()
        .to_header()
    };
    let hub_before = chain.balance(&token, &hub_address).await;

    // One base unit short: refused before the provider is called, nothing moves.
    let short = sign(needed - 1);
    let (status, _, answer) = hub
        .send(
            hub.request(Method::POST, PATH)
                .header("X-PAYMENT", &short)
                .json(&body(&tool)),
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{answer}");
    assert_protocol_error(&answer, "payment_invalid");
    assert_eq!(provider.invoke_count(), calls_before);

    // The routed price: the hub pays the provider with its own credential and settles.
    let paid = sign(needed);
    let (status, headers, answer) = hub
        .send(
            hub.request(Method::POST, PATH)
                .header("X-PAYMENT", &paid)
                .json(&body(&tool)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(provider.invoke_count(), calls_before + 1);
    let seen = provider.seen().pop().unwrap();
    assert_eq!(seen.all("x-api-key"), ["hub-key"]);
    assert!(
        seen.all("x-payment").is_empty(),
        "the buyer's authorization to the hub went upstream"
    );
    assert_eq!(seen.one("x-aimarket-hub-charged"), Some("0.404000"));
    assert_eq!(answer["payment_rail"], "x402");
    assert_eq!(answer["price_usd"], 0.404);
    let receipt = &answer["routing_receipt"];
    verify_receipt(receipt, &hub.state.signing_key.public_key()).unwrap();
    assert_eq!(receipt["payment_rail"], "x402");
    assert_eq!(receipt["price_usd"], 0.404);

    let response: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(headers["payment-response"].to_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(response["success"], true);
    assert_eq!(response["payer"], buyer.as_str());
    let tx = response["transaction"].as_str().unwrap();
    assert_eq!(chain.mined(tx).await["status"], "0x1");
    assert_eq!(
        chain.balance(&token, &hub_address).await,
        hub_before + u128::from(needed)
    );
    assert_eq!(
        chain.balance(&token, &buyer).await,
        10_000_000 - u128::from(needed)
    );

    // The routing receipt is stored (off the hot path) and can be fetched.
    let nonce = receipt["nonce"].as_str().unwrap().to_owned();
    let stored = aimarket_e2e::wait_until(Duration::from_secs(5), || async {
        hub.state
            .ledger
            .get_receipt(&nonce)
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    assert!(stored, "the routing receipt {nonce} was not stored");

    // Replayed: refused before the provider is called, and nothing moves.
    let (status, _, answer) = hub
        .send(
            hub.request(Method::POST, PATH)
                .header("PAYMENT-SIGNATURE", &paid)
                .json(&body(&tool)),
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{answer}");
    assert_protocol_error(&answer, "payment_invalid");
    assert_eq!(provider.invoke_count(), calls_before + 1);
    assert_eq!(
        chain.balance(&token, &hub_address).await,
        hub_before + u128::from(needed)
    );
}

#[tokio::test]
async fn the_hub_pays_a_providers_x402_402_from_its_wallet() {
    let Some((chain, token, hub, domain)) = setup().await else {
        return;
    };
    let provider_address = dev_account(PROVIDER).1;
    let x402 = |cid: &str, amount: u64| {
        FakeTool::echo(cid).priced(0.4).behaving(Behaviour::X402 {
            amount,
            pay_to: provider_address.clone(),
            asset: token.clone(),
            rpc_url: chain.url.clone(),
        })
    };
    // The same listed price; one asks on-chain for more than the buyer pays this hub.
    let fair = x402("x402fair@v1", 400_000);
    let greedy = x402("x402greedy@v1", 404_001);
    let provider = FakeProvider::builder()
        .tool(fair.clone())
        .tool(greedy.clone())
        .start()
        .await;
    seed_provider(&hub, &provider).await;
    let (buyer_key, buyer) = dev_account(BUYER);
    let (hub_key, hub_address) = dev_account(HUB);
    let paid = sign_exact_authorization(
        &buyer_key,
        &domain,
        "anvil",
        hub_key.address(),
        404_000,
        Duration::from_secs(120),
    )
    .unwrap()
    .to_header();
    let hub_before = chain.balance(&token, &hub_address).await;

    // Too expensive: the hub does not pay it, and the buyer is not charged.
    let (status, _, answer) = hub
        .send(
            hub.request(Method::POST, PATH)
                .header("X-PAYMENT", &paid)
                .json(&body(&greedy)),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_protocol_error(&answer, "provider_payment_failed");
    assert_eq!(provider.invoke_count(), 1, "no retry with a payment");
    assert_eq!(chain.balance(&token, &provider_address).await, 0);
    assert_eq!(chain.balance(&token, &hub_address).await, hub_before);
    assert_eq!(chain.balance(&token, &buyer).await, 10_000_000);

    // The fair one: 402, then the hub's own authorization, settled by the provider.
    let (status, headers, answer) = hub
        .send(
            hub.request(Method::POST, PATH)
                .header("X-PAYMENT", &paid)
                .json(&body(&fair)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let seen = provider.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen[1].all("x-payment").is_empty());
    let retried = aimarket_hub::payments::x402::ExactPayment::parse(
        seen[2]
            .one("x-payment")
            .expect("the retry carries X-PAYMENT"),
    )
    .unwrap();
    assert_eq!(retried.authorization.from, hub_key.address());
    assert_eq!(retried.authorization.value, 400_000);
    assert_eq!(chain.balance(&token, &provider_address).await, 400_000);
    // The hub got the buyer's 404_000 and paid the provider 400_000.
    assert_eq!(
        chain.balance(&token, &hub_address).await,
        hub_before + 404_000 - 400_000
    );
    assert_eq!(chain.balance(&token, &buyer).await, 10_000_000 - 404_000);
    // The buyer sees its own settlement, not the hub's payment to the provider.
    let response = headers["payment-response"].to_str().unwrap();
    assert!(!response.starts_with("settled:"), "{response}");
    assert_eq!(headers.get_all("payment-response").iter().count(), 1);
    assert_eq!(answer["payment_rail"], "x402");
}

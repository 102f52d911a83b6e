//! Answers a client can act on: every 402 an invoke answers carries this hub's own payment
//! option (headers on a relayed provider 402, whose body stays byte for byte the
//! provider's; headers and body fields on the hub's own), a channel the hub cannot debit is
//! a 402 `payment_required` with a `reason` (so "open a channel and retry" recovers), and an
//! `X-API-Key` the hub does not accept is 401 `invalid_api_key`.

use aimarket_e2e::provider::{FakeProvider, FakeTool, seed_provider};
use aimarket_e2e::{TestHub, assert_protocol_error};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::invoke_payments::{
    API_KEY, balances, call_body, hub_paying, open_channel, paid_call, paid_tool,
};

const PATH: &str = "/ai-market/v2/invoke";

/// The hub's payment option as the headers carry it, checked against `needed`.
fn hub_option(hub: &TestHub, headers: &HeaderMap, needed: f64, base_units: &str) -> Value {
    let get = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let open = hub.url("/ai-market/v2/channel/open");
    assert_eq!(get("x-aimarket-hub-channel-open"), open);
    assert_eq!(
        get("x-aimarket-hub-needed-usd").parse::<f64>().unwrap(),
        needed
    );
    assert_eq!(get("x-aimarket-hub-needed-base-units"), base_units);
    assert_eq!(get("x-aimarket-routing-fee"), "100");
    let exposed = get("access-control-expose-headers");
    assert!(exposed.contains("x-aimarket-hub-payment"), "{exposed}");
    let option: Value = serde_json::from_str(&get("x-aimarket-hub-payment")).unwrap();
    assert_eq!(option["rail"], "channel");
    assert_eq!(option["open"], open);
    assert_eq!(option["needed"], needed);
    assert_eq!(option["needed_base_units"], base_units);
    assert_eq!(option["decimals"], 6);
    assert_eq!(option["routing_fee_bps"], 100);
    option
}

#[tokio::test]
async fn a_relayed_402_keeps_the_provider_body_and_adds_the_hub_option() {
    let tool = paid_tool("paid@v1", 0.4);
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    // The hub pays this provider with its API key: the option names that rail.
    let hub = hub_paying(&provider.url, |_| {}).await;
    seed_provider(&hub, &provider).await;
    let response = hub
        .client
        .post(hub.url(PATH))
        .json(&call_body(&tool, json!({"text": "x"})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let headers = response.headers().clone();
    let raw = response.bytes().await.unwrap();
    // The provider's body, byte for byte (what the fake provider serialises): its own
    // `needed` is the list price, 0.4, not what this hub debits.
    let provider_body = serde_json::to_vec(&json!({"success": false,
        "error": "payment_required", "needed": 0.4, "protocol_version": "v2"}))
    .unwrap();
    assert_eq!(&raw[..], &provider_body[..]);
    let body: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(body["error"], "payment_required", "{body}");
    assert!(body.get("hub_payment").is_none(), "{body}");
    let option = hub_option(&hub, &headers, 0.404, "404000");
    assert_eq!(option["list_price_usd"], 0.4);
    assert_eq!(option["routing_fee_usd"], 0.004);
    assert_eq!(option["hub_pays_provider_via"], json!(["api_key"]));
    assert_eq!(option["available"], true);
    // The provider's own challenge headers are still relayed verbatim.
    assert_eq!(
        headers.get("x-payment-required").unwrap(),
        aimarket_e2e::provider::X_PAYMENT_REQUIRED
    );
}

#[tokio::test]
async fn unknown_closed_expired_and_poor_channels_are_recoverable_402s() {
    let tool = paid_tool("paid@v1", 0.4);
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let hub = hub_paying(&provider.url, |_| {}).await;
    seed_provider(&hub, &provider).await;

    let check = |status: StatusCode, headers: &HeaderMap, body: &Value, reason: &str| {
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
        assert_protocol_error(body, "payment_required");
        assert_eq!(body["reason"], reason, "{body}");
        assert_eq!(body["needed"], 0.404, "{body}");
        let open = hub.url("/ai-market/v2/channel/open");
        assert_eq!(body["hub_payment"]["open"], open, "{body}");
        assert_eq!(body["payment_ways"][0]["open"], open, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(&open), "{body}");
        hub_option(&hub, headers, 0.404, "404000");
    };

    // A channel id opened somewhere else (say, at the factory) is unknown here.
    let foreign = ("ch_opened_at_the_factory".to_owned(), "s".to_owned());
    let (status, headers, body) =
        paid_call(&hub, &tool, &foreign, None, json!({"text": "x"})).await;
    check(status, &headers, &body, "channel_not_found");
    assert_eq!(body["channel_id"], "ch_opened_at_the_factory");

    let poor = open_channel(&hub, 0.4).await;
    let (status, headers, body) = paid_call(&hub, &tool, &poor, None, json!({"text": "x"})).await;
    check(status, &headers, &body, "insufficient_balance");
    assert_eq!(body["balance_usd"], 0.4);

    let closed = open_channel(&hub, 5.0).await;
    hub.state
        .ledger
        .close_channel(&closed.0, None)
        .await
        .unwrap();
    let (status, headers, body) = paid_call(&hub, &tool, &closed, None, json!({"text": "x"})).await;
    check(status, &headers, &body, "channel_closed");

    // The client's recovery path: open a channel where the answer says, retry, succeed.
    let opened: Value = hub
        .client
        .post(body["hub_payment"]["open"].as_str().unwrap())
        .json(&json!({"deposit_usd": 1.0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh = (
        opened["channel"]["channel_id"].as_str().unwrap().to_owned(),
        opened["channel"]["channel_secret"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let (status, _, body) = paid_call(&hub, &tool, &fresh, None, json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(balances(&hub, &fresh.0).await.1, 404_000);
    assert_eq!(provider.invoke_count(), 1);
}

#[tokio::test]
async fn an_expired_channel_is_a_recoverable_402() {
    let tool = paid_tool("paid@v1", 0.4);
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let hub = hub_paying(&provider.url, |s| s.payments.channel_ttl_s = 1).await;
    seed_provider(&hub, &provider).await;
    let channel = open_channel(&hub, 5.0).await;
    // Bounded: the channel lives 1 s; expiry is checked against the clock at debit time.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let (status, headers, body) =
        paid_call(&hub, &tool, &channel, None, json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_protocol_error(&body, "payment_required");
    assert_eq!(body["reason"], "channel_expired", "{body}");
    assert!(headers.contains_key("x-aimarket-hub-payment"));
    assert_eq!(provider.invoke_count(), 0);
}

#[tokio::test]
async fn only_api_keys_the_hub_issued_are_accepted() {
    let tool = FakeTool::echo("echo@v1");
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let call = |hub: &TestHub, key: &str| {
        hub.request(Method::POST, PATH)
            .header("X-API-Key", key)
            .json(&call_body(&tool, json!({"text": "x"})))
    };

    // No keys configured: any X-API-Key is refused; without one the call runs.
    let closed = TestHub::start().await;
    seed_provider(&closed, &provider).await;
    let (status, _, body) = closed.send(call(&closed, API_KEY)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_protocol_error(&body, "invalid_api_key");
    let (status, _, body) = closed
        .send(
            closed
                .request(Method::POST, PATH)
                .json(&call_body(&tool, json!({"text": "x"}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Configured keys: the listed one works, another is refused before anything runs.
    let keyed = TestHub::builder()
        .settings(|s| s.limits.api_keys = "issued-1, issued-2".parse().unwrap())
        .start()
        .await;
    seed_provider(&keyed, &provider).await;
    let before = provider.invoke_count();
    let (status, _, body) = keyed.send(call(&keyed, "issued-2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = keyed.send(call(&keyed, "stolen")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_protocol_error(&body, "invalid_api_key");
    assert_eq!(provider.invoke_count(), before + 1);
}

#[tokio::test]
async fn without_product_id_the_one_product_is_used_and_several_are_named() {
    let one = FakeTool::echo("solo@v1");
    let a = FakeTool::echo("shared@v1");
    let b = FakeTool {
        product_id: "prod-other".to_owned(),
        ..FakeTool::echo("shared@v1")
    };
    let provider = FakeProvider::builder()
        .tool(one.clone())
        .tool(a)
        .tool(b)
        .start()
        .await;
    let hub = TestHub::start().await;
    seed_provider(&hub, &provider).await;
    let (status, body) = hub
        .post(
            PATH,
            &json!({"capability_id": "solo@v1", "input": {"text": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(provider.seen()[0].json()["product_id"], one.product_id);
    let (status, body) = hub
        .post(
            PATH,
            &json!({"capability_id": "shared@v1", "input": {"text": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_protocol_error(&body, "ambiguous_capability");
    let products: Vec<&str> = body["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["product_id"].as_str().unwrap())
        .collect();
    assert!(
        products.contains(&"prod-fake") && products.contains(&"prod-other"),
        "{body}"
    );
    assert_eq!(provider.invoke_count(), 1);
}

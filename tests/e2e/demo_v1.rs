//! v1 compatibility against the demo: `POST /ai-market/discover`, the pricing quote, and the
//! v1 aliases other areas serve (manifest, channel open/close, stored receipts), driven as a
//! factory-era client would.

use aimarket_protocol::signing::verify_manifest;
use reqwest::Client;
use serde_json::{Value, json};

use crate::demo::running_demo;

async fn get_json(client: &Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

async fn post(client: &Client, url: String, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_and_pricing() {
    let (demo, _data) = running_demo().await;
    let hub = demo.hub_url().to_owned();
    aimarket_hub::startup::install_crypto_provider();
    let http = Client::new();

    let (status, found) = post(&http, format!("{hub}/ai-market/discover"), json!({
        "query": "weather forecast for Berlin", "budget_usd": 1.0, "constraints": {"max_latency_ms": 5000}, "limit": 3})).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        (found["query"].as_str(), found["protocol_version"].as_str()),
        (Some("weather forecast for Berlin"), Some("v1"))
    );
    let top = &found["matches"][0];
    assert_eq!(top["capability_id"], "weather.forecast@v1", "{found}");
    // The draft input fills the required `city` with the query text.
    assert_eq!(
        top["draft_input"],
        json!({"city": "weather forecast for Berlin"})
    );
    assert!(top["why"].as_array().is_some_and(|w| !w.is_empty()));
    assert!(found["matches"].as_array().unwrap().len() <= 3);
    assert_eq!(
        found["plan"],
        json!([{"step": 1, "product_id": "atlas-weather", "capability_id": "weather.forecast@v1",
        "source_hub": top["source_hub"], "draft_input": top["draft_input"]}])
    );
    assert_eq!(found["estimated_total_usd"], top["routed_price_usd"]);

    // The budget and latency constraints filter.
    let (_, free) = post(
        &http,
        format!("{hub}/ai-market/discover"),
        json!({"query": "text", "budget_usd": 0, "limit": 20}),
    )
    .await;
    assert!(
        free["matches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["routed_price_usd"] == 0.0),
        "{free}"
    );
    let (_, fast) = post(
        &http,
        format!("{hub}/ai-market/discover"),
        json!({"query": "weather", "constraints": {"max_latency_ms": 10}}),
    )
    .await;
    assert!(
        fast["matches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["p50_latency_ms"].as_u64().unwrap() <= 10),
        "{fast}"
    );
    // The morse encoder's draft takes the query as its text.
    let (_, morse) = post(
        &http,
        format!("{hub}/ai-market/discover"),
        json!({"query": "encode SOS in morse", "limit": 10}),
    )
    .await;
    let encoder = morse["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["capability_id"] == "translate.morse@v1");
    assert_eq!(
        encoder.unwrap()["draft_input"],
        json!({"text": "encode SOS in morse"}),
        "{morse}"
    );

    for bad in [
        json!({}),
        json!({"query": 5}),
        json!({"query": "x", "budget_usd": -1}),
        json!({"query": "x", "limit": 0}),
        json!({"query": "x", "constraints": 3}),
        json!([1]),
    ] {
        let (status, body) = post(&http, format!("{hub}/ai-market/discover"), bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {body}");
        aimarket_e2e::assert_protocol_error(&body, "bad_request");
    }

    // Pricing: the quote is the routed price, by GET and POST.
    let quote: Value = get_json(
        &http,
        format!("{hub}/ai-market/pricing/polyglot-translate/translate.morse@v1?input_size=10"),
    )
    .await;
    assert_eq!(
        quote,
        json!({"product_id": "polyglot-translate", "capability_id": "translate.morse@v1", "price_usd": 0.00202,
        "routed_price_usd": 0.00202, "list_price_usd": 0.002, "routing_fee_bps": 100, "currency": "USD",
        "source_hub": demo.factories()[0].url(), "p50_latency_ms": 12, "protocol_version": "v1"})
    );
    let (status, posted) = post(
        &http,
        format!("{hub}/ai-market/pricing/polyglot-translate/translate.morse@v1"),
        json!({"input": {"text": "x"}}),
    )
    .await;
    assert_eq!((status, &posted["price_usd"]), (200, &json!(0.00202)));
    let (status, missing) = post(
        &http,
        format!("{hub}/ai-market/pricing/nope/nothing@v1"),
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    aimarket_e2e::assert_protocol_error(&missing, "capability_not_found");
    let garbage = http
        .post(format!(
            "{hub}/ai-market/pricing/polyglot-translate/translate.morse@v1"
        ))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    demo.stop().await;
}

/// The v1 paths served by other areas exist and behave as v1 clients expect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_aliases_exist() {
    let (demo, _data) = running_demo().await;
    let hub = demo.hub_url().to_owned();
    aimarket_hub::startup::install_crypto_provider();
    let http = Client::new();

    let manifest: Value = get_json(&http, format!("{hub}/ai-market/manifest")).await;
    verify_manifest(&manifest, &demo.state().signing_key.public_key()).unwrap();
    assert_eq!(manifest["tools"].as_array().unwrap().len(), 77);

    let (status, opened) = post(
        &http,
        format!("{hub}/ai-market/channel/open"),
        json!({"deposit_usd": 0.5, "tx_hash": "demo-v1-alias"}),
    )
    .await;
    assert_eq!(status, 200, "{opened}");
    let channel = opened["channel"]["channel_id"].as_str().unwrap().to_owned();
    let secret = opened["channel"]["channel_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let paid: Value = http.post(format!("{hub}/ai-market/v2/invoke"))
        .header("X-Payment-Channel", &channel).header("X-Payment-Channel-Secret", &secret)
        .json(&json!({"product_id": "pixel-image", "capability_id": "image.palette@v1", "input": {"color": "#3366cc"}}))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(paid["success"], true, "{paid}");
    let nonce = paid["routing_receipt"]["nonce"].as_str().unwrap();
    let stored: Value = get_json(&http, format!("{hub}/ai-market/receipt/{nonce}")).await;
    assert_eq!(stored["nonce"], nonce);
    let (status, closed) = post(
        &http,
        format!("{hub}/ai-market/channel/close"),
        json!({"channel_id": channel}),
    )
    .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["settlement"]["channel_id"], channel.as_str());
    demo.stop().await;
}

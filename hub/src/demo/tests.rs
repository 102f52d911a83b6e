//! A demo factory over real loopback HTTP: signed documents, 402 challenges, demo payments,
//! receipts and provider signatures.

#![allow(clippy::unwrap_used)]

use aimarket_protocol::schema::{SchemaKind, validate};
use aimarket_protocol::signing::{
    verify_document, verify_manifest, verify_provider_response, verify_receipt,
};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{DemoFactory, FactorySpec};

fn client() -> reqwest::Client {
    crate::startup::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post(
    client: &reqwest::Client,
    url: String,
    body: Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client.post(url).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn documents_are_signed_and_valid() {
    let factory = DemoFactory::start(FactorySpec::polyglot_works())
        .await
        .unwrap();
    let http = client();
    let well_known: Value = http
        .get(format!("{}/.well-known/ai-market.json", factory.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    verify_document(&well_known, factory.public_key()).unwrap();
    validate(SchemaKind::WellKnown, &well_known).unwrap();
    assert_eq!(
        well_known["manifest_url"],
        format!("{}/ai-market/v2/manifest", factory.url())
    );

    for path in ["/ai-market/manifest", "/ai-market/v2/manifest"] {
        let response = http
            .get(format!("{}{path}", factory.url()))
            .send()
            .await
            .unwrap();
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let manifest: Value = response.json().await.unwrap();
        verify_manifest(&manifest, factory.public_key()).unwrap();
        validate(SchemaKind::Manifest, &manifest).unwrap();
        let tools = manifest["tools"].as_array().unwrap();
        assert_eq!(tools.len(), factory.spec().capabilities.len());
        assert!(
            tools
                .iter()
                .all(|t| t["provider_pubkey"] == factory.public_key().to_b64())
        );
        let again = http
            .get(format!("{}{path}", factory.url()))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);
    }
}

#[tokio::test]
async fn priced_calls_need_payment_and_demo_payments_work() {
    let factory = DemoFactory::start(FactorySpec::polyglot_works())
        .await
        .unwrap();
    let http = client();
    let invoke = format!("{}/ai-market/v2/invoke", factory.url());
    let call = json!({"product_id": "polyglot-translate", "capability_id": "translate.morse@v1", "input": {"text": "SOS"}});

    let unpaid = post(&http, invoke.clone(), call.clone(), &[]).await;
    assert_eq!(unpaid.status(), 402);
    let v1: Value =
        serde_json::from_str(unpaid.headers()["x-payment-required"].to_str().unwrap()).unwrap();
    assert_eq!(v1["amount"], "0.002");
    let x402 = base64::engine::general_purpose::STANDARD
        .decode(unpaid.headers()["payment-required"].as_bytes())
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&x402).unwrap()["x402Version"],
        2
    );
    let body: Value = unpaid.json().await.unwrap();
    assert_eq!(
        (
            body["success"].as_bool(),
            body["error"].as_str(),
            body["needed"].as_f64()
        ),
        (Some(false), Some("payment_required"), Some(0.002))
    );

    let opened: Value = post(
        &http,
        format!("{}/ai-market/v2/channel/open", factory.url()),
        json!({"deposit_usd": 0.005, "tx_hash": "demo-test-1"}),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    let id = opened["channel"]["channel_id"].as_str().unwrap().to_owned();
    let secret = opened["channel"]["channel_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let pay = [
        ("X-Payment-Channel", id.as_str()),
        ("X-Payment-Channel-Secret", secret.as_str()),
    ];
    let paid = post(&http, invoke.clone(), call.clone(), &pay).await;
    assert_eq!(paid.status(), 200);
    let signature = paid.headers()["x-provider-signature"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = paid.json().await.unwrap();
    assert_eq!(body["result"]["morse"], "... --- ...");
    verify_provider_response(
        "translate.morse@v1",
        "polyglot-translate",
        &json!({"text": "SOS"}),
        &body["result"],
        &signature,
        factory.public_key(),
    )
    .unwrap();
    verify_receipt(&body["receipt"], factory.public_key()).unwrap();
    assert_eq!(body["receipt"]["price_usd"], 0.002);
    let nonce = body["receipt"]["nonce"].as_str().unwrap();
    let stored: Value = http
        .get(format!("{}/ai-market/receipt/{nonce}", factory.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored, body["receipt"]);

    // 0.005 covers two calls at 0.002; the third is refused with a reason.
    assert_eq!(
        post(&http, invoke.clone(), call.clone(), &pay)
            .await
            .status(),
        200
    );
    let broke = post(&http, invoke.clone(), call.clone(), &pay).await;
    assert_eq!(broke.status(), 402);
    assert_eq!(
        broke.json::<Value>().await.unwrap()["error"],
        "insufficient_balance"
    );
    let wrong = post(
        &http,
        invoke.clone(),
        call.clone(),
        &[
            ("X-Payment-Channel", &id),
            ("X-Payment-Channel-Secret", "nope"),
        ],
    )
    .await;
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "channel_unauthorized"
    );

    // A demo transaction hash pays once, on the v1 factory path too.
    let v1_path = format!(
        "{}/capabilities/polyglot-translate/translate.morse@v1/invoke",
        factory.url()
    );
    let tx = [("X-Payment", r#"{"tx_hash":"0xdemo-abc","chain":"base"}"#)];
    assert_eq!(
        post(
            &http,
            v1_path.clone(),
            json!({"input": {"text": "hi"}}),
            &tx
        )
        .await
        .status(),
        200
    );
    let replay = post(&http, v1_path, json!({"input": {"text": "hi"}}), &tx).await;
    assert_eq!(
        replay.json::<Value>().await.unwrap()["error"],
        "payment_replayed"
    );

    let closed: Value = post(
        &http,
        format!("{}/ai-market/v2/channel/close", factory.url()),
        json!({"channel_id": id}),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (
            closed["invocations"].as_u64(),
            closed["refund_usd"].as_f64()
        ),
        (Some(2), Some(0.001))
    );
    assert_eq!(factory.invocations(), 3);
}

#[tokio::test]
async fn free_calls_bad_input_and_unknown_capabilities() {
    let factory = DemoFactory::start(FactorySpec::atlas_data()).await.unwrap();
    let http = client();
    let invoke = format!("{}/ai-market/v2/invoke", factory.url());
    let ok = post(
        &http,
        invoke.clone(),
        json!({"product_id": "atlas-calc", "capability_id": "calc.evaluate@v1",
        "input": {"expression": "6 * 7"}}),
        &[],
    )
    .await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(
        (
            body["result"]["result"].as_f64(),
            body["price_usd"].as_f64()
        ),
        (Some(42.0), Some(0.0))
    );
    verify_receipt(&body["receipt"], factory.public_key()).unwrap();

    let missing = post(
        &http,
        invoke.clone(),
        json!({"product_id": "atlas-calc", "capability_id": "calc.evaluate@v1", "input": {}}),
        &[],
    )
    .await;
    assert_eq!(missing.status(), 400);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"],
        "input_invalid"
    );
    let nonsense = post(
        &http,
        invoke.clone(),
        json!({"product_id": "atlas-calc", "capability_id": "calc.evaluate@v1",
        "input": {"expression": "1/0"}}),
        &[],
    )
    .await;
    assert_eq!(
        nonsense.json::<Value>().await.unwrap()["detail"],
        "division by zero"
    );
    let unknown = post(
        &http,
        invoke.clone(),
        json!({"product_id": "atlas-calc", "capability_id": "nope@v1"}),
        &[],
    )
    .await;
    assert_eq!(unknown.status(), 404);
    let garbage = http.post(invoke).body("{not json").send().await.unwrap();
    assert_eq!(garbage.status(), 400);
}

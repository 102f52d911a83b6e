//! Routed invoke (`POST /ai-market/v2/invoke`): resolution, validation, targets, relays and
//! header hygiene, against real signed fake providers on loopback.

use std::time::Duration;

use aimarket_e2e::provider::{
    Behaviour, FakeProvider, FakeTool, PAYMENT_NONCE, PAYMENT_REQUIRED, WWW_AUTHENTICATE,
    X_PAYMENT_REQUIRED, seed_catalog, seed_provider,
};
use aimarket_e2e::{TestHub, assert_protocol_error};
use aimarket_hub::store::PeerState;
use aimarket_protocol::signing::verify_receipt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PATH: &str = "/ai-market/v2/invoke";

fn call_body(tool: &FakeTool, input: Value) -> Value {
    json!({"product_id": tool.product_id, "capability_id": tool.capability_id, "input": input})
}

/// Invokes `tool` and asserts a 200; returns the body.
async fn invoke_ok(hub: &TestHub, tool: &FakeTool, input: Value) -> Value {
    let (status, body) = hub.post(PATH, &call_body(tool, input)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn provider_with(tool: FakeTool) -> FakeProvider {
    FakeProvider::builder().tool(tool).start().await
}

#[tokio::test]
async fn free_invoke_returns_the_result_and_both_receipts() {
    let hub = TestHub::start().await;
    let tool = FakeTool::echo("echo@v1");
    let provider = provider_with(tool.clone()).await;
    seed_provider(&hub, &provider).await;

    let input = json!({"text": "héllo"});
    let mut request = call_body(&tool, input.clone());
    // Unknown keys are tolerated (spec §4.1: hubs ignore blocks they predate).
    request["verify"] = json!({"requested": true});
    request["subcontract"] = json!({"depth": 1});
    let (status, body) = hub.post(PATH, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["protocol_version"], "v2");
    assert_eq!(body["result"]["echo"], input);
    assert_eq!(body["source_hub"], provider.url.as_str());
    assert_eq!(body["provider_signature"], "verified");
    assert_eq!(body["price_usd"], 0.0);
    assert!(body["latency_ms"].is_u64(), "{body}");

    // The provider's receipt is passed through and verifies with the provider's key.
    verify_receipt(&body["receipt"], &provider.key.public_key()).unwrap();
    // The routing receipt is the hub's, v1 canonical, price = what the buyer paid here.
    let routing = &body["routing_receipt"];
    let check = verify_receipt(routing, &hub.state.signing_key.public_key()).unwrap();
    assert!(check.unsigned_fields.is_empty());
    assert_eq!(routing["price_usd"], 0.0);
    assert_eq!(routing["capability_id"], "echo@v1");
    assert!(verify_receipt(routing, &provider.key.public_key()).is_err());

    // The routing receipt and the invocation record reach the store (off the request path).
    let nonce = routing["nonce"].as_str().unwrap().to_owned();
    let ledger = &hub.state.ledger;
    let stored = aimarket_e2e::wait_until(Duration::from_secs(10), || async {
        ledger.get_receipt(&nonce).await.unwrap().as_ref() == Some(routing)
    })
    .await;
    assert!(stored, "routing receipt {nonce} was not stored");
    let recorded = aimarket_e2e::wait_until(Duration::from_secs(10), || async {
        let stats = ledger.peer_stats(0).await.unwrap();
        stats
            .iter()
            .any(|s| s.peer_url == provider.url && s.calls == 1 && s.successes == 1)
    })
    .await;
    assert!(recorded, "the invocation was not recorded");

    // The provider got the provider-contract body at its own invoke_url.
    let seen = provider.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/invoke");
    assert_eq!(
        seen[0].json(),
        json!({"input": input, "product_id": "prod-fake", "capability_id": "echo@v1"})
    );
}

#[tokio::test]
async fn headers_are_forwarded_once_and_private_ones_never() {
    // The buyer's key is one this hub accepts (an unknown key is refused, see below).
    let hub = TestHub::builder()
        .settings(|s| s.limits.api_keys = "buyer-key".parse().unwrap())
        .start()
        .await;
    let tool = FakeTool::echo("echo@v1");
    let provider = provider_with(tool.clone()).await;
    seed_provider(&hub, &provider).await;

    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = hub
        .request(Method::POST, PATH)
        .json(&call_body(&tool, json!({"text": "x"})))
        .header("X-Payment", r#"{"tx_hash":"0xfeed","chain":"base"}"#)
        .header("X-PAYMENT", "second-copy")
        .header("PAYMENT-SIGNATURE", "sig-payload")
        .header("X-Payment-Nonce", "nonce-1")
        .header("X-Payment-Channel", "ch_buyer")
        .header("X-Payment-Channel-Secret", "buyer-secret")
        .header("Authorization", "Bearer hub-token")
        .header("Cookie", "session=1")
        .header("X-API-Key", "buyer-key")
        .header("Idempotency-Key", "hygiene-1")
        .header("Proxy-Authorization", "Basic eA==")
        .header("TE", "trailers")
        .header("Trailer", "x-foo")
        .header("X-Request-Id", "req-123")
        .header("traceparent", trace);
    let (status, _, answer) = hub.send(request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let seen = provider.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(
        s.all("x-payment"),
        [r#"{"tx_hash":"0xfeed","chain":"base"}"#]
    );
    assert_eq!(s.all("payment-signature"), ["sig-payload"]);
    assert_eq!(s.all("x-payment-nonce"), ["nonce-1"]);
    for private in [
        "x-payment-channel",
        "x-payment-channel-secret",
        "authorization",
        "cookie",
        "x-api-key",
        "idempotency-key",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "keep-alive",
        "transfer-encoding",
    ] {
        assert!(
            s.all(private).is_empty(),
            "{private} was forwarded: {:?}",
            s.headers
        );
    }
    assert_eq!(
        s.one("content-length"),
        Some(s.body.len().to_string().as_str())
    );
    assert_eq!(s.one("x-aimarket-routing-fee"), Some("100"));
    assert_eq!(s.one("x-aimarket-routing-hub"), Some(hub.base_url.as_str()));
    assert_eq!(s.one("x-request-id"), Some("req-123"));
    let tp = s.one("traceparent").unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-01"),
        "{tp}"
    );
    assert_ne!(tp, trace, "the hub is a hop: new parent id");
}

#[tokio::test]
async fn a_new_trace_is_started_when_none_is_sent() {
    let hub = TestHub::start().await;
    let tool = FakeTool::echo("echo@v1");
    let provider = provider_with(tool.clone()).await;
    seed_provider(&hub, &provider).await;
    let (status, _) = hub
        .post(PATH, &call_body(&tool, json!({"text": "x"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let seen = provider.seen();
    let tp = seen[0].one("traceparent").unwrap();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("00", 32, 16));
    assert_eq!(seen[0].one("x-request-id").map(str::len), Some(32));
}

#[tokio::test]
async fn provider_402_is_relayed_with_every_payment_header() {
    let hub = TestHub::start().await;
    let tool = FakeTool::echo("paid@v1")
        .priced(0.4)
        .behaving(Behaviour::Priced {
            price_usd: 0.4,
            api_key: None,
        });
    let provider = provider_with(tool.clone()).await;
    seed_provider(&hub, &provider).await;

    let (status, headers, body) = hub
        .send(
            hub.request(Method::POST, PATH)
                .json(&call_body(&tool, json!({"text": "x"}))),
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_eq!(body["error"], "payment_required");
    assert_eq!(body["needed"], 0.4);
    let get = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        get("x-payment-required").as_deref(),
        Some(X_PAYMENT_REQUIRED)
    );
    assert_eq!(get("payment-required").as_deref(), Some(PAYMENT_REQUIRED));
    assert_eq!(get("x-payment-nonce").as_deref(), Some(PAYMENT_NONCE));
    assert_eq!(get("www-authenticate").as_deref(), Some(WWW_AUTHENTICATE));
    assert_eq!(get("x-aimarket-routing-fee").as_deref(), Some("100"));
}

#[tokio::test]
async fn invalid_input_is_refused_before_the_provider_is_called() {
    let hub = TestHub::start().await;
    let tool = FakeTool::echo("echo@v1");
    let provider = provider_with(tool.clone()).await;
    seed_provider(&hub, &provider).await;

    let (status, body) = hub.post(PATH, &call_body(&tool, json!({"other": 1}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_protocol_error(&body, "input_invalid");
    assert_eq!(body["paths"], json!(["/"]), "{body}");

    let (status, body) = hub.post(PATH, &call_body(&tool, json!({"text": 5}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_protocol_error(&body, "input_invalid");
    assert_eq!(body["paths"], json!(["/text"]), "{body}");
    assert_eq!(body["errors"][0]["path"], "/text");

    let (status, body) = hub.post(PATH, &call_body(&tool, json!([1, 2]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_protocol_error(&body, "input_invalid");
    assert_eq!(provider.invoke_count(), 0);
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let hub = TestHub::start().await;
    let (status, body) = hub.post_raw(PATH, "application/json", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_protocol_error(&body, "invalid_json");
    for bad in [
        json!({"product_id": "p"}),
        json!({"product_id": 5, "capability_id": "c"}),
        json!({"product_id": "p", "capability_id": "c", "max_price_usd": -1}),
        json!({"product_id": "p", "capability_id": "c", "max_price_usd": 1e300}),
        json!({"product_id": "p", "capability_id": "c", "source_hub": 7}),
        json!("just a string"),
    ] {
        let (status, body) = hub.post(PATH, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} → {body}");
        assert_protocol_error(&body, "bad_request");
    }
    // Read tolerantly, as real clients send them: no product (the capability id alone), and
    // a source_hub that is a client's own name rather than a URL. Here: nothing indexed.
    for lenient in [
        json!({"capability_id": "c"}),
        json!({"product_id": "p", "capability_id": "c", "source_hub": "mcp-oracle-gateway"}),
    ] {
        let (status, body) = hub.post(PATH, &lenient).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{lenient} → {body}");
        assert_protocol_error(&body, "capability_not_found");
    }
}

#[tokio::test]
async fn max_price_below_the_routed_price_is_409_with_both_prices() {
    let hub = TestHub::start().await;
    let tool = FakeTool::echo("paid@v1").priced(0.4);
    let provider = provider_with(tool.clone()).await;
    seed_provider(&hub, &provider).await;

    let mut request = call_body(&tool, json!({"text": "x"}));
    request["max_price_usd"] = json!(0.4);
    let (status, body) = hub.post(PATH, &request).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_protocol_error(&body, "price_limit_exceeded");
    assert_eq!(body["routed_price_usd"], 0.404);
    assert_eq!(body["max_price_usd"], 0.4);
    assert_eq!(provider.invoke_count(), 0);

    // Exactly the routed price is enough.
    request["max_price_usd"] = json!(0.404);
    let (status, body) = hub.post(PATH, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn unknown_capabilities_and_unadmitted_peers() {
    let hub = TestHub::start().await;
    let tool = FakeTool::echo("echo@v1");
    let provider = provider_with(tool.clone()).await;
    let peer_id = seed_provider(&hub, &provider).await;

    let (status, body) = hub
        .post(
            PATH,
            &json!({"product_id": "nope", "capability_id": "x@v1", "input": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_protocol_error(&body, "capability_not_found");

    let mut request = call_body(&tool, json!({"text": "x"}));
    request["source_hub"] = json!("https://elsewhere.example");
    let (status, body) = hub.post(PATH, &request).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_protocol_error(&body, "capability_not_found");

    // An explicit source_hub naming the provider works while it is active...
    request["source_hub"] = json!(format!("{}/", provider.url));
    let (status, body) = hub.post(PATH, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // ...and is refused with a reason once it is pending.
    hub.state
        .store
        .set_peer_state(peer_id, PeerState::Pending)
        .await
        .unwrap();
    hub.state.catalog_changed();
    let (status, body) = hub.post(PATH, &request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_protocol_error(&body, "peer_pending");
    assert!(body["reason"].is_string());
    // Without source_hub a pending peer's capability simply does not exist here.
    let (status, body) = hub
        .post(PATH, &call_body(&tool, json!({"text": "x"})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(provider.invoke_count(), 1);
}

#[tokio::test]
async fn provider_4xx_is_relayed_with_the_upstream_status() {
    let hub = TestHub::start().await;
    let tool = FakeTool::echo("picky@v1")
        .behaving(Behaviour::Status(422, json!({"detail": "text too poetic"})));
    let provider = provider_with(tool.clone()).await;
    seed_provider(&hub, &provider).await;
    let (status, headers, body) = hub
        .send(
            hub.request(Method::POST, PATH)
                .json(&call_body(&tool, json!({"text": "x"}))),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body, json!({"detail": "text too poetic"}));
    assert_eq!(headers.get("x-aimarket-upstream-status").unwrap(), "422");
}

#[tokio::test]
async fn unusable_provider_answers_are_502() {
    let hub = TestHub::builder()
        .settings(|s| s.invoke.max_provider_body_bytes = 4096)
        .start()
        .await;
    let tools = [
        FakeTool::echo("down@v1").behaving(Behaviour::Status(503, json!({"error": "busy"}))),
        FakeTool::echo("html@v1").behaving(Behaviour::NotJson),
        FakeTool::echo("huge@v1").behaving(Behaviour::Oversized(10_000)),
        FakeTool::echo("forged@v1").behaving(Behaviour::BadSignature),
    ];
    let mut builder = FakeProvider::builder();
    for t in &tools {
        builder = builder.tool(t.clone());
    }
    let provider = builder.start().await;
    seed_provider(&hub, &provider).await;
    for (tool, code, detail) in [
        (&tools[0], "provider_error", "503"),
        (&tools[1], "provider_error", "not JSON"),
        (&tools[2], "provider_error", "4096"),
        (
            &tools[3],
            "provider_signature_invalid",
            "X-Provider-Signature",
        ),
    ] {
        let (status, body) = hub.post(PATH, &call_body(tool, json!({"text": "x"}))).await;
        assert_eq!(
            status,
            StatusCode::BAD_GATEWAY,
            "{} → {body}",
            tool.capability_id
        );
        assert_protocol_error(&body, code);
        assert!(body["detail"].as_str().unwrap().contains(detail), "{body}");
    }

    // Connection refused: the provider is gone.
    let url = provider.url.clone();
    drop(provider);
    let gone = aimarket_e2e::wait_until(Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            reqwest::get(format!("{url}/.well-known/ai-market.json"))
                .await
                .is_err()
        }
    })
    .await;
    assert!(gone, "the fake provider did not stop");
    let (status, body) = hub
        .post(PATH, &call_body(&tools[0], json!({"text": "x"})))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_protocol_error(&body, "provider_error");
}

#[tokio::test]
async fn signatures_legacy_and_absent_are_accepted_and_flagged() {
    let hub = TestHub::start().await;
    let legacy = FakeTool::echo("legacy@v1").behaving(Behaviour::LegacySigned);
    let unsigned = FakeTool::echo("unsigned@v1").behaving(Behaviour::Unsigned);
    let provider = FakeProvider::builder()
        .tool(legacy.clone())
        .tool(unsigned.clone())
        .start()
        .await;
    seed_provider(&hub, &provider).await;
    let body = invoke_ok(&hub, &legacy, json!({"text": "x"})).await;
    assert_eq!(body["provider_signature"], "legacy");
    let body = invoke_ok(&hub, &unsigned, json!({"text": "x"})).await;
    assert_eq!(body["provider_signature"], "absent");
}

#[tokio::test]
async fn a_slow_provider_is_504() {
    let hub = TestHub::builder()
        .settings(|s| s.invoke.provider_timeout_s = 1)
        .start()
        .await;
    let tool = FakeTool::echo("slow@v1").behaving(Behaviour::Slow(Duration::from_secs(4)));
    let provider = provider_with(tool.clone()).await;
    seed_provider(&hub, &provider).await;
    let (status, body) = hub
        .post(PATH, &call_body(&tool, json!({"text": "x"})))
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_protocol_error(&body, "provider_timeout");
}

#[tokio::test]
async fn a_typed_failure_passes_through_uncharged() {
    let hub = TestHub::start().await;
    let tool = FakeTool::echo("refuses@v1").behaving(Behaviour::TypedFailure);
    let provider = provider_with(tool.clone()).await;
    seed_provider(&hub, &provider).await;
    let body = invoke_ok(&hub, &tool, json!({"text": "x"})).await;
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "model_refused");
    assert_eq!(body["price_usd"], 0.0);
    assert!(body["latency_ms"].is_u64());
    assert!(body.get("routing_receipt").is_none());
}

#[tokio::test]
async fn targets_v2_hub_v1_factory_and_relay_hub() {
    let hub = TestHub::start().await;

    // A v2 hub: its own /ai-market/v2/invoke, source_hub "local".
    let tool = FakeTool::echo("hubcap@v1").without_invoke_url();
    let v2 = FakeProvider::builder()
        .v2_hub()
        .tool(tool.clone())
        .key_seed(21)
        .start()
        .await;
    seed_provider(&hub, &v2).await;
    invoke_ok(&hub, &tool, json!({"text": "a"})).await;
    let seen = v2.seen();
    assert_eq!(seen[0].path, "/ai-market/v2/invoke");
    assert_eq!(
        seen[0].json(),
        json!({"product_id": "prod-fake", "capability_id": "hubcap@v1", "source_hub": "local",
               "input": {"text": "a"}})
    );

    // A v1 factory: /capabilities/{pid}/{cid}/invoke with {input}.
    let tool = FakeTool::echo("factorycap@v1").without_invoke_url();
    let v1 = FakeProvider::builder()
        .tool(tool.clone())
        .key_seed(22)
        .start()
        .await;
    seed_provider(&hub, &v1).await;
    invoke_ok(&hub, &tool, json!({"text": "b"})).await;
    let seen = v1.seen();
    assert_eq!(seen[0].path, "/capabilities/prod-fake/factorycap@v1/invoke");
    assert_eq!(seen[0].json(), json!({"input": {"text": "b"}}));

    // Known only through a relay hub: that hub's invoke, source_hub = the origin.
    let tool = FakeTool::echo("farcap@v1");
    let relay = FakeProvider::builder()
        .v2_hub()
        .tool(tool.clone())
        .key_seed(23)
        .start()
        .await;
    let origin = "https://origin.example";
    let listed = relay.new_capability(&tool, Some(origin));
    seed_catalog(&hub, &relay, vec![listed]).await;
    let body = invoke_ok(&hub, &tool, json!({"text": "c"})).await;
    assert_eq!(body["source_hub"], origin);
    let seen = relay.seen();
    assert_eq!(seen[0].path, "/ai-market/v2/invoke");
    assert_eq!(seen[0].json()["source_hub"], origin);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let hub = TestHub::builder()
        .settings(|s| {
            s.invoke.rate_per_min = 2;
            s.limits.api_keys = "someone-else".parse().unwrap();
        })
        .start()
        .await;
    let tool = FakeTool::echo("echo@v1");
    let provider = provider_with(tool.clone()).await;
    seed_provider(&hub, &provider).await;
    for _ in 0..2 {
        invoke_ok(&hub, &tool, json!({"text": "x"})).await;
    }
    let (status, headers, body) = hub
        .send(
            hub.request(Method::POST, PATH)
                .json(&call_body(&tool, json!({"text": "x"}))),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_protocol_error(&body, "rate_limited");
    assert_eq!(body["limit"], "invoke_client", "{body}");
    let retry: u64 = headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another client (a configured API key) is not affected.
    let (status, _, _) = hub
        .send(
            hub.request(Method::POST, PATH)
                .header("X-API-Key", "someone-else")
                .json(&call_body(&tool, json!({"text": "x"}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(provider.invoke_count(), 3);
}

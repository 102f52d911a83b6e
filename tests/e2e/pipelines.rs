//! Pipelines through the hub (issue #17): a DAG of routed invokes across two providers, one
//! channel, one budget, a signed bill of materials, refusals before any hold, a failure
//! that skips dependents, and idempotent replays.

use std::time::{Duration, Instant};

use aimarket_e2e::TestHub;
use aimarket_e2e::provider::{Behaviour, FakeProvider, FakeTool, seed_provider};
use aimarket_protocol::document::{DocumentKind, verify_any};
use aimarket_protocol::signing::verify_receipt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::invoke_payments::{API_KEY, balances, open_channel, paid_tool};

const V2: &str = "/ai-market/v2/pipelines";
const V1: &str = "/ai-market/pipelines";

struct Setup {
    hub: TestHub,
    p1: FakeProvider,
    p2: FakeProvider,
    channel: (String, String),
}

fn tool(product: &str, cid: &str, price: f64) -> FakeTool {
    let mut t = paid_tool(cid, price);
    t.product_id = product.to_owned();
    t
}

/// A free tool that answers after [`SLOW`].
fn slow(product: &str, cid: &str) -> FakeTool {
    let mut t = FakeTool::echo(cid).behaving(Behaviour::Slow(SLOW));
    t.product_id = product.to_owned();
    t
}

/// How long the slow tools take.
const SLOW: Duration = Duration::from_millis(1000);

/// Two providers paid with the hub's API key; a 1 USD channel; SQLite.
async fn setup() -> Setup {
    setup_on(None).await
}

/// [`setup`] on the given database (`None`: the embedded SQLite).
async fn setup_on(database_url: Option<String>) -> Setup {
    let p1 = FakeProvider::builder()
        .tool(tool("prod-one", "one.a@v1", 0.10))
        .tool(tool("prod-one", "one.b@v1", 0.05))
        .tool(slow("prod-one", "one.slow@v1"))
        .start()
        .await;
    let p2 = FakeProvider::builder()
        .key_seed(9)
        .tool(tool("prod-two", "two.c@v1", 0.02))
        .tool(tool("prod-two", "two.d@v1", 0.03))
        .tool(slow("prod-two", "two.slow@v1"))
        .tool(
            tool("prod-two", "two.fail@v1", 0.04)
                .behaving(Behaviour::Status(500, json!({"error": "boom"}))),
        )
        .start()
        .await;
    let credentials = format!("{}=apikey:{API_KEY},{}=apikey:{API_KEY}", p1.url, p2.url);
    let hub = TestHub::builder()
        .settings(|s| {
            s.demo_payments = true;
            s.invoke.peer_credentials = credentials.parse().unwrap();
            s.database_url = database_url.map(|u| u.parse().unwrap());
        })
        .start()
        .await;
    seed_provider(&hub, &p1).await;
    seed_provider(&hub, &p2).await;
    let channel = open_channel(&hub, 1.0).await;
    Setup {
        hub,
        p1,
        p2,
        channel,
    }
}

fn node(id: &str, product: &str, cid: &str) -> Value {
    json!({"id": id, "product_id": product, "capability_id": cid})
}

/// a → (b on provider one ∥ c on provider two) → d → e.
fn diamond() -> Value {
    let mut a = node("a", "prod-one", "one.a@v1");
    a["input"] = json!({"text": "hello"});
    let mut b = node("b", "prod-one", "one.b@v1");
    b["input_from"] = json!({"text": "a/echo/text"});
    let mut c = node("c", "prod-two", "two.c@v1");
    c["input_from"] = json!({"text": {"node": "a", "pointer": "/echo/text"}});
    let mut d = node("d", "prod-two", "two.d@v1");
    d["input_from"] = json!({"text": "b/echo/text"});
    d["depends_on"] = json!(["c"]);
    let mut e = node("e", "prod-one", "one.b@v1");
    e["input_from"] = json!({"text": "d/echo/text"});
    json!({"nodes": [a, b, c, d, e], "max_total_usd": 1.0})
}

async fn run(s: &Setup, path: &str, body: &Value, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = s
        .hub
        .request(Method::POST, path)
        .header("X-Payment-Channel", &s.channel.0)
        .header("X-Payment-Channel-Secret", &s.channel.1)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let (status, _, body) = s.hub.send(request).await;
    (status, body)
}

fn calls(s: &Setup) -> usize {
    s.p1.invoke_count() + s.p2.invoke_count()
}

#[tokio::test]
async fn a_five_node_dag_across_two_providers_returns_a_verified_bill() {
    let s = setup().await;
    let (status, body) = run(&s, V2, &diamond(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["protocol_version"], "v2");
    assert_eq!(body["final_node"], "e");
    assert_eq!(body["final_result"]["echo"]["text"], "hello", "{body}");
    assert_eq!(body["nodes"]["ran"], json!(["a", "b", "c", "d", "e"]));
    assert_eq!(calls(&s), 5);

    let bill = &body["bill_of_materials"];
    let report = verify_any(bill, Some(&s.hub.state.signing_key.public_key()));
    assert!(report.valid, "{report:?}");
    assert_eq!(report.kind, Some(DocumentKind::Bill));
    let steps = bill["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5);
    assert_eq!(steps[1]["provider"], s.p1.url.as_str());
    assert_eq!(steps[2]["provider"], s.p2.url.as_str());
    let mut sum = 0;
    for step in steps {
        assert_eq!(step["success"], true, "{step}");
        sum += step["price_micros"].as_i64().unwrap();
        assert!(step["price_micros"].as_i64().unwrap() > 0);
        verify_receipt(
            &step["routing_receipt"],
            &s.hub.state.signing_key.public_key(),
        )
        .unwrap();
        assert!(step["receipt"].is_object(), "{step}");
        assert!(step["latency_ms"].is_u64());
    }
    assert_eq!(bill["total_micros"], sum);
    // One channel paid for exactly the bill, nothing left held.
    let (_, used, held) = balances(&s.hub, &s.channel.0).await;
    assert_eq!((used, held), (sum, 0));

    // A changed bill does not verify.
    let mut forged = bill.clone();
    forged["total_usd"] = json!(0.0);
    assert!(!verify_any(&forged, Some(&s.hub.state.signing_key.public_key())).valid);

    // Stored and retrievable by trace id, on both paths.
    let trace = body["trace_id"].as_str().unwrap();
    assert!(trace.starts_with("tr_"));
    for path in [V2, V1] {
        let (status, stored) = s.hub.get(&format!("{path}/{trace}")).await;
        assert_eq!(status, StatusCode::OK, "{stored}");
        assert_eq!(stored["bill_of_materials"], *bill);
    }
    let (status, missing) = s.hub.get(&format!("{V2}/tr_nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"], "pipeline_not_found");
}

#[tokio::test]
async fn refusals_come_before_any_hold_or_call() {
    let s = setup().await;
    let mut over = diamond();
    over["max_total_usd"] = json!(0.05);
    let (status, body) = run(&s, V2, &over, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "budget_exceeded");
    assert!(body["planned_total_usd"].as_f64().unwrap() > 0.05);

    let mut cycle = diamond();
    cycle["nodes"][0]["depends_on"] = json!(["e"]);
    let mut unknown_node = diamond();
    unknown_node["nodes"][1]["depends_on"] = json!(["zz"]);
    let mut unknown_cap = diamond();
    unknown_cap["nodes"][2]["capability_id"] = json!("nope@v1");
    let mut bad_input = diamond();
    bad_input["nodes"][0]["input"] = json!({"text": 5});
    for (body, code) in [
        (cycle, "pipeline_invalid"),
        (unknown_node, "pipeline_invalid"),
        (unknown_cap, "pipeline_invalid"),
        (bad_input, "input_invalid"),
        (json!({"nodes": "x"}), "pipeline_invalid"),
    ] {
        let (status, answer) = run(&s, V2, &body, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"], code, "{answer}");
        assert_eq!(answer["success"], false);
        assert_eq!(answer["protocol_version"], "v2");
    }
    let (status, _) = s.hub.post_raw(V2, "application/json", "{nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // No channel for a priced pipeline: 402 before anything runs.
    let (status, body) = s.hub.post(V2, &diamond()).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    // A channel too small for the planned total: 402 as well.
    let small = open_channel(&s.hub, 0.01).await;
    let request = s
        .hub
        .request(Method::POST, V2)
        .header("X-Payment-Channel", &small.0)
        .json(&diamond());
    let (status, _, body) = s.hub.send(request).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");

    assert_eq!(calls(&s), 0);
    assert_eq!(balances(&s.hub, &s.channel.0).await, (1_000_000, 0, 0));
}

#[tokio::test]
async fn a_failed_node_skips_its_dependents_and_charges_only_what_ran() {
    let s = setup().await;
    let mut a = node("a", "prod-one", "one.a@v1");
    a["input"] = json!({"text": "x"});
    let mut f = node("f", "prod-two", "two.fail@v1");
    f["input_from"] = json!({"text": "a/echo/text"});
    let mut g = node("g", "prod-two", "two.c@v1");
    g["input_from"] = json!({"text": "f/echo/text"});
    // v1 form: the channel in the body.
    let body = json!({"channel_id": s.channel.0, "channel_secret": s.channel.1,
        "nodes": [a, f, g]});
    let (status, answer) = s.hub.post(V1, &body).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(answer["success"], false);
    assert_eq!(answer["error"], "pipeline_node_failed");
    assert_eq!(answer["protocol_version"], "v1");
    assert_eq!(answer["nodes"]["ran"], json!(["a"]));
    assert_eq!(answer["nodes"]["failed"], json!(["f"]));
    assert_eq!(answer["nodes"]["skipped"], json!(["g"]));
    assert_eq!(answer["final_result"], Value::Null);
    let bill = &answer["bill_of_materials"];
    assert!(verify_any(bill, Some(&s.hub.state.signing_key.public_key())).valid);
    let charged_a = bill["steps"][0]["price_micros"].as_i64().unwrap();
    assert!(charged_a > 0);
    assert_eq!(bill["steps"][1]["price_micros"], 0);
    assert_eq!(bill["steps"][1]["status"], "failed");
    assert_eq!(bill["steps"][2]["status"], "skipped");
    assert_eq!(bill["total_micros"], charged_a);
    let (_, used, held) = balances(&s.hub, &s.channel.0).await;
    assert_eq!((used, held), (charged_a, 0));
    // g was never called.
    assert!(
        s.p2.seen()
            .iter()
            .all(|seen| !seen.json().to_string().contains("two.c@v1"))
    );
}

#[tokio::test]
async fn a_replay_with_the_same_idempotency_key_charges_once() {
    let s = setup().await;
    let (status, first) = run(&s, V2, &diamond(), Some("run-1")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let after_first = balances(&s.hub, &s.channel.0).await;
    let (status, again) = run(&s, V2, &diamond(), Some("run-1")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["trace_id"], first["trace_id"]);
    assert_eq!(again["bill_of_materials"], first["bill_of_materials"]);
    assert_eq!(balances(&s.hub, &s.channel.0).await, after_first);
    assert_eq!(calls(&s), 5);
    // The same key with another pipeline is a conflict.
    let mut other = diamond();
    other["max_total_usd"] = json!(0.9);
    let (status, body) = run(&s, V2, &other, Some("run-1")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "idempotency_conflict");
}

#[tokio::test]
async fn mcp_market_pipeline_runs_the_same_service() {
    let s = setup().await;
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "market_pipeline",
        "arguments": {"nodes": diamond()["nodes"], "max_total_usd": 1.0,
            "payment_channel": s.channel.0, "payment_channel_secret": s.channel.1}}});
    let request = s
        .hub
        .request(Method::POST, "/ai-market/mcp")
        .header("accept", "application/json, text/event-stream")
        .json(&call);
    let (status, _, answer) = s.hub.send(request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let result = &answer["result"]["structuredContent"];
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(result["final_result"]["echo"]["text"], "hello");
    assert!(verify_any(&result["bill_of_materials"], None).valid);
    let (_, used, _) = balances(&s.hub, &s.channel.0).await;
    assert_eq!(used, result["bill_of_materials"]["total_micros"]);

    // A cycle is a tool error, not a protocol error, and calls nothing more.
    let mut bad = call.clone();
    bad["params"]["arguments"]["nodes"][0]["depends_on"] = json!(["e"]);
    let request = s
        .hub
        .request(Method::POST, "/ai-market/mcp")
        .header("accept", "application/json, text/event-stream")
        .json(&bad);
    let (_, _, answer) = s.hub.send(request).await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["error"],
        "pipeline_invalid"
    );
    assert_eq!(calls(&s), 5);
}

#[tokio::test]
async fn the_v1_invoke_paths_route_like_the_v2_invoke() {
    let s = setup().await;
    for path in [
        "/capabilities/prod-one/one.b@v1/invoke",
        "/ai-market/capabilities/prod-one/one.b@v1/invoke",
    ] {
        // Unpaid: the v1 402 with X-Payment-Required (this hub's own option).
        let (status, headers, body) = s
            .hub
            .send(
                s.hub
                    .request(Method::POST, path)
                    .json(&json!({"input": {"text": "v1"}})),
            )
            .await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
        let required: Value =
            serde_json::from_str(headers["x-payment-required"].to_str().unwrap()).unwrap();
        assert!(required["amount"].is_string(), "{required}");

        // With the channel: routed, charged, v1 answer.
        let request = s
            .hub
            .request(Method::POST, path)
            .header("X-Payment-Channel", &s.channel.0)
            .header("X-Payment-Channel-Secret", &s.channel.1)
            .json(&json!({"input": {"text": "v1"}}));
        let (status, _, body) = s.hub.send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["success"], true);
        assert_eq!(body["protocol_version"], "v1");
        assert_eq!(body["result"]["echo"]["text"], "v1");
        assert!(body["receipt"].is_object());
        assert!(body["continuation"]["suggested_next"].is_array());
    }
    let (_, used, held) = balances(&s.hub, &s.channel.0).await;
    assert!(used > 0 && held == 0);
    let (status, body) = s
        .hub
        .post_raw(
            "/capabilities/prod-one/one.b@v1/invoke",
            "application/json",
            "[1]",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = s
        .hub
        .post(
            "/capabilities/prod-one/nope@v1/invoke",
            &json!({"input": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The v1 live feed shows the calls.
    let (status, stats) = s.hub.get("/ai-market/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let (_, live) = s.hub.get("/ai-market/v2/stats/live").await;
    assert!(stats["summary"].is_object(), "{stats}");
    assert_eq!(stats["summary"], live["summary"], "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_stored_and_replayed_on_postgres() {
    let Some(url) = aimarket_e2e::postgres::fresh_schema_url("pipelines").await else {
        return;
    };
    let s = setup_on(Some(url)).await;
    assert_eq!(s.hub.state.store.backend(), "postgres");
    let (status, first) = run(&s, V2, &diamond(), Some("pg-run")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = run(&s, V2, &diamond(), Some("pg-run")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["trace_id"], first["trace_id"]);
    assert_eq!(calls(&s), 5);
    let trace = first["trace_id"].as_str().unwrap();
    let (status, stored) = s.hub.get(&format!("{V2}/{trace}")).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["bill_of_materials"], first["bill_of_materials"]);
    let (_, used, held) = balances(&s.hub, &s.channel.0).await;
    assert_eq!(
        (used, held),
        (
            first["bill_of_materials"]["total_micros"].as_i64().unwrap(),
            0
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_branches_run_concurrently() {
    let s = setup().await;
    let mut a = node("a", "prod-one", "one.b@v1");
    a["input"] = json!({"text": "t"});
    let mut left = node("left", "prod-one", "one.slow@v1");
    left["input_from"] = json!({"text": "a/echo/text"});
    let mut right = node("right", "prod-two", "two.slow@v1");
    right["input_from"] = json!({"text": "a/echo/text"});
    let mut z = node("z", "prod-two", "two.c@v1");
    z["input_from"] = json!({"text": "left/echo/text"});
    z["depends_on"] = json!(["right"]);
    let started = Instant::now();
    let (status, body) = run(&s, V2, &json!({"nodes": [a, left, right, z]}), None).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["final_result"]["echo"]["text"], "t");
    // One after the other the two slow branches alone would take 2 × SLOW.
    assert!(took >= SLOW, "{took:?}");
    assert!(took < SLOW * 2 - Duration::from_millis(200), "{took:?}");
}

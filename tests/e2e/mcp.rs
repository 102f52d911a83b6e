//! MCP Streamable HTTP at `/ai-market/mcp` (and `/mcp`) against the demo: the JSON-RPC
//! surface, the transport rules, and the three tools end to end (search, describe, invoke
//! free, invoke priced without payment → a 402 tool result, then paid through a channel).

use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::demo::running_demo;

struct Mcp {
    client: Client,
    url: String,
}

impl Mcp {
    fn new(hub: &str) -> Self {
        aimarket_hub::startup::install_crypto_provider();
        Self {
            client: Client::new(),
            url: format!("{hub}/ai-market/mcp"),
        }
    }

    async fn raw(&self, body: String, accept: &str) -> (StatusCode, HeaderMap, String) {
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", accept)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        (status, headers, response.text().await.unwrap())
    }

    async fn post(&self, body: Value) -> (StatusCode, HeaderMap, Value) {
        let (status, headers, text) = self
            .raw(body.to_string(), "application/json, text/event-stream")
            .await;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, headers, value)
    }

    async fn call(&self, method: &str, params: Value) -> Value {
        let (status, _, body) = self
            .post(json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["jsonrpc"].as_str(), body["id"].as_i64()),
            (Some("2.0"), Some(7)),
            "{body}"
        );
        body
    }

    async fn tool(&self, name: &str, arguments: Value) -> Value {
        let answer = self
            .call("tools/call", json!({"name": name, "arguments": arguments}))
            .await;
        let result = answer["result"].clone();
        assert!(result.is_object(), "{answer}");
        // The text content is the structured content, serialised.
        let text: Value =
            serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(text, result["structuredContent"]);
        result
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_surface_and_transport() {
    let (demo, _data) = running_demo().await;
    let mcp = Mcp::new(demo.hub_url());

    // initialize: a supported version is echoed, an unknown one gets the newest.
    let (status, headers, init) = mcp
        .post(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .await;
    assert_eq!(status, 200);
    assert!(headers.get("mcp-session-id").is_some_and(|v| !v.is_empty()));
    assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
    assert_eq!(
        init["result"]["capabilities"]["tools"]["listChanged"],
        false
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "aimarket-hub");
    assert!(
        init["result"]["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("market_search"))
    );
    let newest = mcp
        .call("initialize", json!({"protocolVersion": "2099-01-01"}))
        .await;
    assert_eq!(newest["result"]["protocolVersion"], "2025-06-18");

    // Notifications and client responses: 202, no body.
    let (status, _, body) = mcp
        .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, Value::Null));
    let (status, _, _) = mcp
        .post(json!({"jsonrpc": "2.0", "id": "s1", "result": {}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    assert_eq!(mcp.call("ping", json!({})).await["result"], json!({}));
    for (method, key) in [
        ("resources/list", "resources"),
        ("resources/templates/list", "resourceTemplates"),
        ("prompts/list", "prompts"),
    ] {
        assert_eq!(mcp.call(method, json!({})).await["result"][key], json!([]));
    }
    // Unknown methods are a JSON-RPC error on a 200, never an HTTP error.
    let discover = mcp.call("server/discover", json!({})).await;
    assert_eq!(discover["error"]["code"], -32601, "{discover}");

    let listed = mcp.call("tools/list", json!({})).await;
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "market_search",
            "market_describe",
            "market_invoke",
            "market_pipeline"
        ]
    );
    assert!(
        listed["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["inputSchema"]["type"] == "object" && t["description"].is_string())
    );

    // Errors: unknown tool and bad arguments are -32602; bad frames -32700 / -32600.
    assert_eq!(
        mcp.call("tools/call", json!({"name": "nope", "arguments": {}}))
            .await["error"]["code"],
        -32602
    );
    assert_eq!(
        mcp.call(
            "tools/call",
            json!({"name": "market_search", "arguments": [1]})
        )
        .await["error"]["code"],
        -32602
    );
    let (status, _, text) = mcp.raw("{not json".into(), "application/json").await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["code"],
        -32700
    );
    let (_, _, wrong) = mcp
        .post(json!({"jsonrpc": "1.0", "id": 3, "method": "ping"}))
        .await;
    assert_eq!(
        (wrong["error"]["code"].as_i64(), wrong["id"].as_i64()),
        (Some(-32600), Some(3))
    );
    let (status, _, empty) = mcp.post(json!([])).await;
    assert_eq!(
        (status, empty["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32600))
    );
    let too_many = Value::Array(vec![
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
        33
    ]);
    assert_eq!(mcp.post(too_many).await.0, StatusCode::BAD_REQUEST);

    // Batches: answers for requests only, in order; only notifications → 202.
    let (status, _, batch) = mcp
        .post(json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "method": "notifications/x"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}]))
        .await;
    assert_eq!(status, 200);
    let ids: Vec<i64> = batch
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(
        mcp.post(json!([{"jsonrpc": "2.0", "method": "notifications/x"}]))
            .await
            .0,
        StatusCode::ACCEPTED
    );

    // SSE framing when the client accepts only an event stream.
    let (status, headers, text) = mcp
        .raw(
            json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}).to_string(),
            "text/event-stream",
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let data = text
        .strip_prefix("event: message\ndata: ")
        .and_then(|t| t.strip_suffix("\n\n"))
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(data).unwrap()["id"], 9);

    // An unsupported MCP-Protocol-Version header is a 400.
    let bad_version = mcp
        .client
        .post(&mcp.url)
        .header("mcp-protocol-version", "1999-01-01")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_version.status(), 400);

    // GET with an event-stream Accept → 405; plain GET → the v1 list; DELETE → 204; /mcp too.
    for path in ["/ai-market/mcp", "/mcp"] {
        let url = format!("{}{path}", demo.hub_url());
        let stream = mcp
            .client
            .get(&url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 405);
        assert_eq!(stream.headers()["allow"], "POST, DELETE");
        let v1: Value = mcp
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (v1["protocol"].as_str(), v1["version"].as_str()),
            (Some("mcp"), Some("1.0"))
        );
        assert_eq!(v1["tools"].as_array().unwrap().len(), 4);
        assert!(v1["tools"][0]["inputSchema"].is_object());
        assert_eq!(mcp.client.delete(&url).send().await.unwrap().status(), 204);
        let pinged: Value = mcp
            .client
            .post(&url)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(pinged["result"], json!({}));
    }
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_search_describe_and_invoke() {
    let (demo, _data) = running_demo().await;
    let mcp = Mcp::new(demo.hub_url());
    let polyglot = demo
        .factories()
        .iter()
        .find(|f| f.name() == "Polyglot Works")
        .unwrap()
        .url()
        .to_owned();

    let found = mcp
        .tool(
            "market_search",
            json!({"intent": "convert text to morse code", "limit": 3}),
        )
        .await;
    assert_eq!(found["isError"], false);
    let top = &found["structuredContent"]["matches"][0];
    assert_eq!(
        (top["capability_id"].as_str(), top["source_hub"].as_str()),
        (Some("translate.morse@v1"), Some(polyglot.as_str()))
    );
    assert_eq!(
        top["draft_input"],
        json!({"text": "convert text to morse code"})
    );
    assert!(
        top["routed_price_usd"].as_f64().unwrap() > top["price_per_call_usd"].as_f64().unwrap()
    );
    // Filters go through the search endpoint's validation.
    let cheap = mcp
        .tool("market_search", json!({"intent": "weather", "budget": 0.0}))
        .await;
    assert!(
        cheap["structuredContent"]["matches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["routed_price_usd"] == 0.0)
    );
    let bad = mcp
        .tool("market_search", json!({"intent": "x", "min_trust": 7}))
        .await;
    assert_eq!(
        (
            bad["isError"].as_bool(),
            bad["structuredContent"]["status"].as_u64()
        ),
        (Some(true), Some(400))
    );
    assert_eq!(mcp.tool("market_search", json!({})).await["isError"], true);

    let described = mcp
        .tool(
            "market_describe",
            json!({"product_id": "atlas-weather", "capability_id": "weather.forecast@v1"}),
        )
        .await;
    let capability = &described["structuredContent"]["capability"];
    assert_eq!(capability["input_schema"]["required"], json!(["city"]));
    assert_eq!(capability["price_per_call_usd"], 0.02);
    assert_eq!(capability["routed_price_usd"], 0.0202);
    let missing = mcp
        .tool(
            "market_describe",
            json!({"product_id": "x", "capability_id": "y"}),
        )
        .await;
    assert_eq!(
        missing["structuredContent"]["error"],
        "capability_not_found"
    );

    // A free capability, invoked in process.
    let free = mcp
        .tool(
            "market_invoke",
            json!({"product_id": "atlas-calc", "capability_id": "calc.evaluate@v1",
        "input": {"expression": "2 * (3 + 4)"}}),
        )
        .await;
    assert_eq!(free["isError"], false, "{free}");
    assert_eq!(free["structuredContent"]["result"]["result"], 14.0);
    assert!(free["structuredContent"]["receipt"]["signature"].is_object());

    // Priced, unpaid: a tool result with the payment requirements and next steps.
    let call = json!({"product_id": "polyglot-translate", "capability_id": "translate.morse@v1", "input": {"text": "hi"}});
    let unpaid = mcp.tool("market_invoke", call.clone()).await;
    assert_eq!(unpaid["isError"], true);
    let s = &unpaid["structuredContent"];
    assert_eq!(
        (s["error"].as_str(), s["status"].as_u64()),
        (Some("payment_required"), Some(402)),
        "{s}"
    );
    assert_eq!(s["routed_price_usd"], 0.00202);
    let open_url = format!("{}/ai-market/v2/channel/open", demo.hub_url());
    assert_eq!(s["open_channel"]["url"], open_url.as_str());
    assert!(s["next_steps"][0].as_str().unwrap().contains(&open_url));
    // This hub's option first: its price and its channel, then the provider's own.
    assert_eq!(s["hub_payment"]["open"], open_url.as_str(), "{s}");
    assert_eq!(s["hub_payment"]["needed_base_units"], "2020", "{s}");
    assert_eq!(
        (s["needed"].as_f64(), s["provider_needed"].as_f64()),
        (Some(0.00202), Some(0.002))
    );
    assert!(
        s["detail"]
            .as_str()
            .unwrap()
            .starts_with("Pay this hub 0.00202 USD"),
        "{s}"
    );
    let text = unpaid["content"][0]["text"].as_str().unwrap();
    assert!(text.contains(&open_url));
    assert_eq!(
        s["payment_requirements"]["x_payment_required"]["amount"],
        "0.002"
    );
    assert_eq!(
        s["payment_requirements"]["payment_required_x402"]["x402Version"],
        2
    );

    // Following the next steps works.
    let opened: Value = mcp
        .client
        .post(&open_url)
        .json(
            &s["open_channel"]["body"]
                .clone()
                .as_object()
                .map(|b| {
                    let mut b = b.clone();
                    b.insert("tx_hash".into(), json!("demo-mcp-test"));
                    Value::Object(b)
                })
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut paid_call = call.clone();
    paid_call["payment_channel"] = opened["channel"]["channel_id"].clone();
    paid_call["payment_channel_secret"] = opened["channel"]["channel_secret"].clone();
    let paid = mcp.tool("market_invoke", paid_call.clone()).await;
    assert_eq!(paid["isError"], false, "{paid}");
    assert_eq!(paid["structuredContent"]["result"]["morse"], ".... ..");
    assert!(paid["structuredContent"]["routing_receipt"]["signature"].is_object());

    // A wrong secret is refused as a tool result, not a protocol error.
    paid_call["payment_channel_secret"] = json!("wrong");
    let refused = mcp.tool("market_invoke", paid_call).await;
    assert_eq!(refused["isError"], true);
    // Invalid input is reported with the failing paths.
    let invalid = mcp
        .tool(
            "market_invoke",
            json!({"product_id": "atlas-calc", "capability_id": "calc.evaluate@v1", "input": {}}),
        )
        .await;
    assert_eq!(invalid["structuredContent"]["error"], "input_invalid");
    let not_object = mcp
        .tool(
            "market_invoke",
            json!({"product_id": "atlas-calc", "capability_id": "calc.evaluate@v1", "input": 5}),
        )
        .await;
    assert_eq!(not_object["structuredContent"]["status"], 400);
    demo.stop().await;
}

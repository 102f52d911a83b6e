//! `GET /ai-market/v2/stats/live`: an SSE client receives an invocation routed through the
//! hub as it happens, and the JSON form lists recorded calls with a summary.

use std::time::Duration;

use aimarket_e2e::provider::{Behaviour, FakeProvider, FakeTool, seed_provider};
use aimarket_e2e::{TestHub, assert_protocol_error, wait_until};
use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::search::SYNC_WAIT;

const LIVE: &str = "/ai-market/v2/stats/live";

fn call(capability: &str) -> Value {
    json!({"product_id": "prod-fake", "capability_id": capability, "input": {"text": "hi"}})
}

/// Reads SSE bytes until a complete `event: invocation` frame arrives; returns its data.
async fn next_invocation(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
) -> Value {
    loop {
        if let Some(start) = buffer.find("event: invocation\n")
            && let Some(end) = buffer[start..].find("\n\n")
        {
            let frame = buffer[start..start + end].to_owned();
            buffer.drain(..start + end + 2);
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("a data line");
            return serde_json::from_str(data).unwrap();
        }
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("an event within 30 s")
            .expect("the stream is open")
            .expect("a chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_clients_see_invocations_as_they_happen() {
    let provider = FakeProvider::builder()
        .tool(FakeTool::echo("echo@v1"))
        .tool(FakeTool::echo("fail@v1").behaving(Behaviour::Status(500, json!({"error": "boom"}))))
        .start()
        .await;
    let hub = TestHub::start().await;
    seed_provider(&hub, &provider).await;

    let response = hub
        .request(Method::GET, LIVE)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    // The stream announces itself before any event, so the subscription is in place.
    while !buffer.contains(": connected") {
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }

    let (status, body) = hub.post("/ai-market/v2/invoke", &call("echo@v1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event = next_invocation(&mut stream, &mut buffer).await;
    assert_eq!(event["capability_id"], "echo@v1");
    assert_eq!(event["source_hub"], provider.url.as_str());
    assert_eq!(event["success"], true);
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["status"], 200);
    assert!(event["timestamp"].is_string());

    let (status, _) = hub.post("/ai-market/v2/invoke", &call("fail@v1")).await;
    assert!(!status.is_success());
    let event = next_invocation(&mut stream, &mut buffer).await;
    assert_eq!(event["capability_id"], "fail@v1");
    assert_eq!(event["success"], false);
    drop(stream);

    // The JSON form: newest first, with the summary.
    let summarised = wait_until(SYNC_WAIT, || async {
        let (_, body) = hub.get(LIVE).await;
        body["summary"]["total_invocations"] == 2
    })
    .await;
    let (status, body) = hub.get(LIVE).await;
    assert_eq!(status, StatusCode::OK);
    assert!(summarised, "{body}");
    let summary = &body["summary"];
    assert_eq!(summary["successful"], 1);
    assert_eq!(summary["failed"], 1);
    assert_eq!(summary["success_rate"], 0.5);
    assert!(summary["avg_latency_ms"].as_f64().unwrap() >= 0.0);
    for key in ["avg_price_usd", "volume_1h_usd", "volume_24h_usd"] {
        assert!(summary[key].is_number(), "{key}: {summary}");
    }
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["capability_id"], "fail@v1");
    assert!(events[0]["id"].as_i64() > events[1]["id"].as_i64());
    let (_, one) = hub.get(&format!("{LIVE}?limit=1")).await;
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    let (status, body) = hub.get(&format!("{LIVE}?limit=many")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_protocol_error(&body, "bad_request");
}

//! Limits a client cannot dodge and load the hub does not pass on (issue #19): who gets a
//! bucket of their own, trusted proxies, the search and MCP limits, and the provider limits
//! (back-off learned from a 429, the in-flight cap), against real fake providers on loopback.

use std::time::Duration;

use aimarket_e2e::provider::{Behaviour, FakeProvider, FakeTool, seed_provider};
use aimarket_e2e::{TestHub, assert_protocol_error};
use aimarket_hub::payments::OpenChannel;
use aimarket_hub::settings::Settings;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const INVOKE: &str = "/ai-market/v2/invoke";
const SEARCH: &str = "/ai-market/v2/search?intent=echo";

fn call_body(tool: &FakeTool) -> Value {
    json!({"product_id": tool.product_id, "capability_id": tool.capability_id,
        "input": {"text": "x"}})
}

/// A hub with `change` applied and one free echo provider seeded.
async fn hub_with_echo(change: impl FnOnce(&mut Settings)) -> (TestHub, FakeTool, FakeProvider) {
    let hub = TestHub::builder().settings(change).start().await;
    let tool = FakeTool::echo("echo@v1");
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    seed_provider(&hub, &provider).await;
    (hub, tool, provider)
}

/// Invokes `tool` with extra headers; returns status, headers and body.
async fn invoke_with(
    hub: &TestHub,
    tool: &FakeTool,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut request = hub.request(Method::POST, INVOKE).json(&call_body(tool));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    hub.send(request).await
}

/// Asserts a 429 naming `limit`, with a `Retry-After` of 1 to `max` seconds.
fn assert_limited(answer: &(StatusCode, HeaderMap, Value), limit: &str, max: u64) {
    let (status, headers, body) = answer;
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_protocol_error(body, "rate_limited");
    assert_eq!(body["limit"], limit, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=max).contains(&retry), "{retry}");
}

async fn open_channel(hub: &TestHub) -> (String, String) {
    let channel = hub
        .state
        .ledger
        .open_channel(OpenChannel {
            deposit_usd: 1.0,
            tx_hash: Some(format!("demo-limits-{}", std::process::id())),
            ..OpenChannel::default()
        })
        .await
        .unwrap();
    let secret = channel.secret.as_ref().unwrap().expose().to_owned();
    (channel.id, secret)
}

#[tokio::test]
async fn invented_keys_and_channel_ids_share_the_callers_address_bucket() {
    let (hub, tool, provider) = hub_with_echo(|s| s.invoke.rate_per_min = 3).await;
    let invented = [
        ("X-API-Key", "made-up-key-1"),
        ("X-Payment-Channel", "ch_made_up_1"),
        ("X-API-Key", "made-up-key-2"),
    ];
    for (name, value) in invented {
        let (status, _, body) = invoke_with(&hub, &tool, &[(name, value)]).await;
        // An invented key is refused (401), an invented channel id is just not an identity
        // (a free call goes through): both are charged to the caller's address.
        if name == "X-API-Key" {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            assert_protocol_error(&body, "invalid_api_key");
        } else {
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    // A fourth invented identity, of either kind, is the same client: refused.
    for (name, value) in [
        ("X-Payment-Channel", "ch_made_up_2"),
        ("X-API-Key", "made-up-key-3"),
    ] {
        let answer = invoke_with(&hub, &tool, &[(name, value)]).await;
        assert_limited(&answer, "invoke_client", 20);
    }
    let answer = invoke_with(&hub, &tool, &[]).await;
    assert_limited(&answer, "invoke_client", 20);
    // The flood did not reach the provider (only the one admitted anonymous call did).
    assert_eq!(provider.invoke_count(), 1);
}

#[tokio::test]
async fn a_real_channel_and_a_configured_key_get_their_own_buckets() {
    let (hub, tool, provider) = hub_with_echo(|s| {
        s.invoke.rate_per_min = 2;
        s.demo_payments = true;
        s.limits.api_keys = "buyer-key-1".parse().unwrap();
    })
    .await;
    let (channel, secret) = open_channel(&hub).await;
    // Spend the address's budget.
    for _ in 0..2 {
        let (status, _, body) = invoke_with(&hub, &tool, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_limited(&invoke_with(&hub, &tool, &[]).await, "invoke_client", 60);
    // The real channel with a wrong secret is not its owner: charged to the (spent)
    // address, so the channel's own budget stays whole.
    let wrong = [
        ("X-Payment-Channel", channel.as_str()),
        ("X-Payment-Channel-Secret", "not-the-secret"),
    ];
    assert_limited(&invoke_with(&hub, &tool, &wrong).await, "invoke_client", 60);
    let with_channel = [
        ("X-Payment-Channel", channel.as_str()),
        ("X-Payment-Channel-Secret", secret.as_str()),
    ];
    for _ in 0..2 {
        let (status, _, body) = invoke_with(&hub, &tool, &with_channel).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_limited(
        &invoke_with(&hub, &tool, &with_channel).await,
        "invoke_client",
        60,
    );
    // A configured key has its own budget too.
    for _ in 0..2 {
        let (status, _, body) = invoke_with(&hub, &tool, &[("X-API-Key", "buyer-key-1")]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(provider.invoke_count(), 6);
}

#[tokio::test]
async fn a_wrong_channel_secret_is_refused_before_anything_is_forwarded() {
    let (hub, tool, provider) = hub_with_echo(|s| s.demo_payments = true).await;
    let (channel, _) = open_channel(&hub).await;
    let (status, _, body) = invoke_with(
        &hub,
        &tool,
        &[
            ("X-Payment-Channel", channel.as_str()),
            ("X-Payment-Channel-Secret", "guess"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_protocol_error(&body, "channel_unauthorized");
    assert_eq!(provider.invoke_count(), 0);
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_a_trusted_proxy() {
    // The test client connects from 127.0.0.1: trusted here, so each forwarded address is
    // a client of its own; the same address twice is one client.
    let (hub, tool, _provider) = hub_with_echo(|s| {
        s.invoke.rate_per_min = 1;
        s.trusted_proxies = "127.0.0.1".parse().unwrap();
    })
    .await;
    for client in ["198.51.100.1", "198.51.100.2"] {
        let xff = format!("203.0.113.9, {client}");
        let (status, _, body) = invoke_with(&hub, &tool, &[("X-Forwarded-For", &xff)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let forwarded = [("Forwarded", "for=198.51.100.1;proto=http")];
    assert_limited(
        &invoke_with(&hub, &tool, &forwarded).await,
        "invoke_client",
        60,
    );

    // Not trusted: rotating the headers changes nothing.
    let (hub, tool, _provider) = hub_with_echo(|s| {
        s.invoke.rate_per_min = 1;
        s.trusted_proxies = "10.0.0.1".parse().unwrap();
    })
    .await;
    let (status, _, body) = invoke_with(&hub, &tool, &[("X-Forwarded-For", "198.51.100.1")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for headers in [
        [("X-Forwarded-For", "198.51.100.2")],
        [("X-Real-IP", "198.51.100.3")],
        [("Forwarded", "for=198.51.100.4")],
    ] {
        assert_limited(
            &invoke_with(&hub, &tool, &headers).await,
            "invoke_client",
            60,
        );
    }
}

#[tokio::test]
async fn searches_have_a_per_client_limit_counted_in_metrics() {
    let (hub, _tool, _provider) = hub_with_echo(|s| {
        s.limits.search_rate_per_min = 2;
        s.limits.api_keys = "search-key".parse().unwrap();
    })
    .await;
    for _ in 0..2 {
        let (status, body) = hub.get(SEARCH).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let limited = hub.send(hub.request(Method::GET, SEARCH)).await;
    assert_limited(&limited, "search_client", 30);
    // v1 discovery is a search as well.
    let discover = hub
        .request(Method::POST, "/ai-market/discover")
        .json(&json!({"query": "echo"}));
    assert_limited(&hub.send(discover).await, "search_client", 30);
    // A configured key searches on its own budget.
    let keyed = hub
        .request(Method::GET, SEARCH)
        .header("X-API-Key", "search-key");
    let (status, _, body) = hub.send(keyed).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let metrics = hub
        .client
        .get(hub.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("aimarket_limit_refusals_total{limit=\"search_client\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("aimarket_limit_refusals_total{limit=\"provider_backoff\"} 0"));
}

#[tokio::test]
async fn mcp_requests_have_a_per_client_limit() {
    let (hub, _tool, _provider) = hub_with_echo(|s| s.limits.mcp_rate_per_min = 1).await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let (status, body) = hub.post("/ai-market/mcp", &ping).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again = hub.request(Method::POST, "/mcp").json(&ping);
    assert_limited(&hub.send(again).await, "mcp_client", 60);
}

#[tokio::test]
async fn a_provider_answering_429_is_backed_off_without_failing_others() {
    let hub = TestHub::start().await;
    let busy_tool = FakeTool::echo("busy@v1").behaving(Behaviour::TooBusy("30".into()));
    let busy = FakeProvider::builder()
        .tool(busy_tool.clone())
        .key_seed(41)
        .start()
        .await;
    let ok_tool = FakeTool::echo("fine@v1");
    let fine = FakeProvider::builder()
        .tool(ok_tool.clone())
        .key_seed(42)
        .start()
        .await;
    seed_provider(&hub, &busy).await;
    seed_provider(&hub, &fine).await;

    let first = invoke_with(&hub, &busy_tool, &[]).await;
    assert_limited(&first, "provider_backoff", 30);
    assert_eq!(first.2["source_hub"], busy.url.as_str(), "{}", first.2);
    assert_eq!(first.1["retry-after"], "30");
    // Backed off: refused at the hub, the provider is not called again.
    for _ in 0..3 {
        assert_limited(
            &invoke_with(&hub, &busy_tool, &[]).await,
            "provider_backoff",
            30,
        );
    }
    assert_eq!(busy.invoke_count(), 1);
    // Another provider serves as usual.
    for _ in 0..3 {
        let (status, _, body) = invoke_with(&hub, &ok_tool, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(fine.invoke_count(), 3);
}

#[tokio::test]
async fn a_provider_back_off_ends_when_the_provider_said() {
    let hub = TestHub::start().await;
    let tool = FakeTool::echo("busy@v1").behaving(Behaviour::TooBusy("1".into()));
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    seed_provider(&hub, &provider).await;
    assert_limited(&invoke_with(&hub, &tool, &[]).await, "provider_backoff", 1);
    assert_limited(&invoke_with(&hub, &tool, &[]).await, "provider_backoff", 1);
    assert_eq!(provider.invoke_count(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The back-off is over: the provider is asked again (and backs the hub off again).
    assert_limited(&invoke_with(&hub, &tool, &[]).await, "provider_backoff", 1);
    assert_eq!(provider.invoke_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_in_flight_cap_holds_under_a_burst() {
    let hub = TestHub::builder()
        .settings(|s| s.limits.provider_max_in_flight = 2)
        .start()
        .await;
    let tool = FakeTool::echo("slow@v1").behaving(Behaviour::Slow(Duration::from_millis(1500)));
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    seed_provider(&hub, &provider).await;

    let burst = (0..8).map(|_| invoke_with(&hub, &tool, &[]));
    let answers = futures_util::future::join_all(burst).await;
    let ok = answers.iter().filter(|a| a.0 == StatusCode::OK).count();
    for answer in answers.iter().filter(|a| a.0 != StatusCode::OK) {
        assert_limited(answer, "provider_inflight", 1);
    }
    assert_eq!(ok, 2, "{answers:?}");
    assert_eq!(provider.invoke_count(), 2);
    // The slots are free again once the calls ended.
    let (status, _, body) = invoke_with(&hub, &tool, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

//! The webhook plugin against a real HTTP server on 127.0.0.1.

use std::time::Duration;

use aimarket_plugins::{Hook, RefusalKind, Registry, RegistryBuilder, RegistryConfig};
use serde_json::{Value, json};

use crate::support::{Reply, TestServer, candidate, ctx, invoke, keys, provider, query};

fn load(url: &str, fail_closed: bool, extra: Value) -> Registry {
    let mut settings = json!({
        "url": url,
        "hooks": ["rank", "before_invoke"],
        "headers": {"authorization": "Bearer hook-s3cret"},
    });
    if let (Some(s), Value::Object(extra)) = (settings.as_object_mut(), extra) {
        s.extend(extra);
    }
    let config = json!([{
        "name": "webhook",
        "fail_closed": fail_closed,
        "timeout_ms": {"rank": 1000, "before_invoke": 1000},
        "settings": settings,
    }]);
    RegistryBuilder::new()
        .build(&RegistryConfig::from_json(&config).unwrap())
        .unwrap()
}

/// Reverses the order it is sent, drops `b`, rescores the new first; blocks inputs that
/// mention "forbidden".
fn policy(body: &Value) -> Reply {
    match body["hook"].as_str() {
        Some("rank") => {
            let mut keys: Vec<String> = body["candidates"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter_map(|c| c["key"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            keys.reverse();
            let first = keys.first().cloned().unwrap_or_default();
            Reply::json(json!({"order": keys, "drop": ["b"], "scores": {first: 0.99}}))
        }
        Some("before_invoke") => {
            if body["invoke"]["input"].to_string().contains("forbidden") {
                Reply::json(json!({"decision": "block", "category": "unsafe_input",
                                   "reason": "input mentions a forbidden topic"}))
            } else {
                Reply::json(json!({"decision": "allow"}))
            }
        }
        _ => Reply {
            status: 400,
            body: json!({"error": "unknown hook"}),
            delay: Duration::ZERO,
        },
    }
}

fn abcd() -> Vec<aimarket_plugins::Candidate> {
    ["a", "b", "c", "d"]
        .iter()
        .map(|k| candidate(k, "https://a.test", "cap@v1", 1.0))
        .collect()
}

#[tokio::test]
async fn the_webhook_reranks_through_a_real_http_server() {
    let server = TestServer::start(policy).await;
    let reg = load(&server.url, false, json!({}));
    let mut list = abcd();
    reg.rank(&mut ctx(), &query("translate to german"), &mut list)
        .await
        .unwrap();
    assert_eq!(keys(&list), vec!["d", "c", "a"]);
    assert_eq!(list[0].score, 0.99);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.body["hook"], "rank");
    assert_eq!(r.body["request_id"], "req-test");
    assert_eq!(r.body["client_id"], "client-1");
    assert_eq!(r.body["hub"], "https://hub.test");
    assert_eq!(r.body["query"]["intent"], "translate to german");
    assert_eq!(r.body["candidates"].as_array().map(Vec::len), Some(4));
    assert!(r.body["candidates"][0].get("tool").is_none());
    assert_eq!(r.header("authorization"), Some("Bearer hook-s3cret"));
    assert_eq!(r.header("x-aimarket-hook"), Some("rank"));
    assert_eq!(r.header("x-request-id"), Some("req-test"));

    let described = reg.describe().to_string();
    assert!(!described.contains("hook-s3cret"), "{described}");
    assert!(described.contains(&server.url));
}

#[tokio::test]
async fn the_webhook_blocks_and_allows_before_invoke() {
    let server = TestServer::start(policy).await;
    let reg = load(&server.url, false, json!({}));
    let p = provider("https://p.test", 0.1, 0.1);
    let mut c = ctx();
    let bad = invoke("cap@v1", p.clone(), json!({"text": "something forbidden"}));
    let refusal = reg.before_invoke(&mut c, &bad).await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::Blocked);
    assert_eq!(refusal.category, "unsafe_input");
    assert_eq!(refusal.reason, "input mentions a forbidden topic");
    let good = invoke("cap@v1", p, json!({"text": "hello"}));
    reg.before_invoke(&mut c, &good).await.unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let sent = &requests[1].body["invoke"];
    assert_eq!(sent["capability_id"], "cap@v1");
    assert_eq!(sent["provider"]["origin"], "https://p.test");
    assert_eq!(sent["upstream_payment"], "none");
    assert_eq!(sent["input"], json!({"text": "hello"}));
}

#[tokio::test]
async fn a_slow_webhook_is_skipped_when_fail_open() {
    let server = TestServer::start(|body| Reply {
        delay: Duration::from_millis(500),
        ..policy(body)
    })
    .await;
    let reg = load(&server.url, false, json!({"timeout_ms": 50}));
    let mut list = abcd();
    let mut c = ctx();
    reg.rank(&mut c, &query("x"), &mut list).await.unwrap();
    assert_eq!(
        keys(&list),
        vec!["a", "b", "c", "d"],
        "unchanged on timeout"
    );
    let forbidden = invoke(
        "cap@v1",
        provider("https://p.test", 0.1, 0.1),
        json!("forbidden"),
    );
    reg.before_invoke(&mut c, &forbidden).await.unwrap();
    let m = &reg.metrics()[0];
    for hook in [Hook::Rank, Hook::BeforeInvoke] {
        let h = m.hook(hook).unwrap();
        // The HTTP timeout (an error) or the registry budget (a timeout) ends it first.
        assert_eq!((h.calls, h.errors + h.timeouts), (1, 1), "{hook:?}");
    }
}

#[tokio::test]
async fn a_slow_webhook_refuses_when_fail_closed() {
    let server = TestServer::start(|body| Reply {
        delay: Duration::from_millis(500),
        ..policy(body)
    })
    .await;
    let reg = load(&server.url, true, json!({"timeout_ms": 50}));
    let req = invoke("cap@v1", provider("https://p.test", 0.1, 0.1), json!({}));
    let refusal = reg.before_invoke(&mut ctx(), &req).await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::PluginFailed);
    assert_eq!(refusal.plugin, "webhook");
    let mut list = abcd();
    assert!(reg.rank(&mut ctx(), &query("x"), &mut list).await.is_err());
    assert_eq!(keys(&list), vec!["a", "b", "c", "d"]);
}

#[tokio::test]
async fn error_statuses_and_malformed_replies_fail_open() {
    let server = TestServer::start(|body| match body["hook"].as_str() {
        Some("rank") => Reply {
            status: 500,
            body: json!({"error": "boom"}),
            delay: Duration::ZERO,
        },
        _ => Reply::json(json!({"decision": "perhaps"})),
    })
    .await;
    let reg = load(&server.url, false, json!({}));
    let mut c = ctx();
    let mut list = abcd();
    reg.rank(&mut c, &query("x"), &mut list).await.unwrap();
    assert_eq!(keys(&list), vec!["a", "b", "c", "d"]);
    let req = invoke("cap@v1", provider("https://p.test", 0.1, 0.1), json!({}));
    reg.before_invoke(&mut c, &req).await.unwrap();
    let m = &reg.metrics()[0];
    assert_eq!(m.hook(Hook::Rank).unwrap().errors, 1);
    assert_eq!(m.hook(Hook::BeforeInvoke).unwrap().errors, 1);
}

#[tokio::test]
async fn an_unreachable_webhook_fails_open() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let reg = load(&format!("http://127.0.0.1:{port}/hook"), false, json!({}));
    let mut list = abcd();
    reg.rank(&mut ctx(), &query("x"), &mut list).await.unwrap();
    assert_eq!(keys(&list), vec!["a", "b", "c", "d"]);
    assert_eq!(reg.metrics()[0].hook(Hook::Rank).unwrap().errors, 1);
}

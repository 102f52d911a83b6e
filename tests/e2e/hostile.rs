//! Hostile input over every public endpoint (issue #13): a property test sends routes ×
//! hostile bodies, headers and query strings to a real hub on loopback, and every answer must
//! be an answer (never a dropped connection), never a 5xx, and every 4xx must carry the JSON
//! protocol error body. Plus the regression tests of what the fuzzers and the hostile run
//! found.

use aimarket_e2e::TestHub;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

/// Every public route, with a method it serves (the property also tries the wrong ones).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/ai-market/v2/health"),
    ("GET", "/ai-market/v2/search"),
    ("GET", "/ai-market/v2/manifest"),
    ("GET", "/ai-market/manifest"),
    ("GET", "/ai-market/v2/plugins"),
    ("GET", "/ai-market/v2/p/x/y"),
    ("GET", "/metrics"),
    ("GET", "/.well-known/ai-market.json"),
    ("POST", "/ai-market/v2/federation/crawl"),
    ("GET", "/ai-market/v2/federation/peers"),
    ("POST", "/ai-market/v2/federation/announce"),
    ("POST", "/ai-market/v2/federation/peers/approve"),
    ("DELETE", "/ai-market/v2/federation/peers"),
    ("POST", "/ai-market/v2/federation/peers/repin"),
    ("POST", "/ai-market/v2/federation/seeds"),
    ("GET", "/ai-market/v2/federation/inbound"),
    ("POST", "/ai-market/v2/reputation/events"),
    ("GET", "/ai-market/v2/reputation/"),
    ("GET", "/ai-market/v2/stats/live"),
    ("GET", "/ai-market/v2/verification/"),
    ("POST", "/ai-market/v2/invoke"),
    ("POST", "/ai-market/v2/channel/open"),
    ("POST", "/ai-market/channel/open"),
    ("POST", "/ai-market/v2/channel/close"),
    ("POST", "/ai-market/channel/close"),
    ("GET", "/ai-market/v2/channel/"),
    ("GET", "/ai-market/receipt/"),
    ("POST", "/ai-market/v2/receipts/verify"),
    ("POST", "/ai-market/mcp"),
    ("POST", "/mcp"),
    ("GET", "/ai-market/mcp"),
    ("POST", "/ai-market/discover"),
    ("GET", "/ai-market/pricing/"),
    ("POST", "/ai-market/pricing/"),
];

/// Strings that broke or nearly broke real parsers: multi-byte first characters (the
/// channel-open panic), surrogate neighbours, controls, overlong and numeric edge spellings.
const HOSTILE_STRINGS: &[&str] = &[
    "☃",
    "\u{d7ff}",
    "\u{e000}x",
    "😀😀",
    "é0x",
    "0x☃",
    "\u{0}",
    "\u{7f}\u{85}",
    "a\r\nb: c",
    "../../etc/passwd",
    "%00%ff",
    "http://169.254.169.254/",
    "http://127.0.0.1:1/",
    "NaN",
    "-0",
    "1e999",
    "",
    " ",
];

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(HOSTILE_STRINGS).prop_map(str::to_owned),
        any::<String>(),
        "[\\PC]{0,64}",
        (1usize..70_000).prop_map(|n| "☃".repeat(n / 3 + 1)),
    ]
}

/// Hostile strings short enough for a URL (the HTTP layer's own URI limit is not the
/// handlers' business).
fn short_string() -> impl Strategy<Value = String> {
    hostile_string().prop_map(|s| s.chars().take(600).collect())
}

fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(hostile_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The field names the handlers read, so hostile values land where they are parsed.
const FIELDS: &[&str] = &[
    "deposit_usd",
    "tx_hash",
    "token",
    "chain",
    "channel_id",
    "settle_tx_hash",
    "product_id",
    "capability_id",
    "source_hub",
    "input",
    "max_price_usd",
    "receipt",
    "hub_url",
    "well_known_url",
    "hub_name",
    "capabilities_count",
    "signature",
    "url",
    "public_key",
    "query",
    "budget_usd",
    "limit",
    "jsonrpc",
    "id",
    "method",
    "params",
    "events",
];

fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Right shape, hostile values.
        proptest::collection::btree_map(proptest::sample::select(FIELDS), hostile_value(), 0..6)
            .prop_map(|m| serde_json::to_vec(&m).unwrap_or_default()),
        hostile_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        proptest::collection::vec(any::<u8>(), 0..512),
        (1usize..20_000).prop_map(|depth| {
            let mut s = "[".repeat(depth);
            s.push_str(&"]".repeat(depth));
            s.into_bytes()
        }),
        Just(b"{\"deposit_usd\": 1e999}".to_vec()),
        Just(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"market_invoke\",\"arguments\":{\"product_id\":\"\\u2603\",\"capability_id\":\"x\",\"input\":{}}}}".to_vec()),
    ]
}

const HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "accept-encoding",
    "content-encoding",
    "authorization",
    "x-payment-channel",
    "x-payment-channel-secret",
    "x-payment",
    "payment-signature",
    "x-payment-nonce",
    "idempotency-key",
    "traceparent",
    "x-request-id",
    "x-api-key",
    "x-aimarket-crawler",
    "if-none-match",
    "mcp-protocol-version",
    "mcp-session-id",
];

/// Header values as bytes: anything a client can put on the wire (no CR, LF or NUL).
fn hostile_header() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    let value = prop_oneof![
        hostile_string().prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..300),
        Just(b"application/json".to_vec()),
        Just(b"text/event-stream".to_vec()),
        Just(b"gzip".to_vec()),
        Just(b"Bearer \xe2\x98\x83".to_vec()),
    ]
    .prop_map(|v: Vec<u8>| {
        v.into_iter()
            .filter(|b| !matches!(b, b'\r' | b'\n' | 0))
            .take(8192)
            .collect()
    });
    (proptest::sample::select(HEADERS), value)
}

#[derive(Debug, Clone)]
struct Hostile {
    route: usize,
    method: Option<&'static str>,
    tail: String,
    query: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
}

fn hostile_request() -> impl Strategy<Value = Hostile> {
    (
        0..ROUTES.len(),
        proptest::option::weighted(
            0.2,
            proptest::sample::select(&["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"][..]),
        ),
        short_string(),
        prop_oneof![
            short_string().prop_map(|s| encode(&s)),
            proptest::collection::vec(
                (
                    proptest::sample::select(
                        &[
                            "intent",
                            "q",
                            "budget",
                            "limit",
                            "offset",
                            "min_trust",
                            "hub",
                            "category",
                            "max_latency_ms",
                            "compact",
                            "url",
                            "wait",
                            "source_hub",
                        ][..]
                    ),
                    hostile_string()
                ),
                0..5
            )
            .prop_map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(k, v)| format!("{k}={}", encode(&v)))
                    .collect::<Vec<_>>()
                    .join("&")
            }),
        ],
        proptest::collection::vec(hostile_header(), 0..6),
        hostile_body(),
    )
        .prop_map(|(route, method, tail, query, headers, body)| Hostile {
            route,
            method,
            tail,
            query,
            headers,
            body,
        })
}

/// Percent-encodes everything but unreserved characters (a client must, for a valid URI).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A JSON-RPC 2.0 error answer from an MCP endpoint.
fn is_json_rpc_error(path: &str, body: &Value) -> bool {
    path.ends_with("/mcp") && body["jsonrpc"] == "2.0" && body["error"]["code"].is_i64()
}

/// Sends one hostile request; `Err` names the broken rule.
async fn check(hub: &TestHub, h: &Hostile) -> Result<(), String> {
    let (route_method, path) = ROUTES[h.route];
    let method = h.method.unwrap_or(route_method);
    let mut url = format!("{}{path}{}", hub.base_url, encode(&h.tail));
    if !h.query.is_empty() {
        url.push('?');
        url.push_str(&h.query);
    }
    let mut request = hub
        .client
        .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
        .body(h.body.clone());
    for (name, value) in &h.headers {
        if let Ok(value) = reqwest::header::HeaderValue::from_bytes(value) {
            request = request.header(*name, value);
        }
    }
    // A dropped connection (the issue's panic) is a send error: the property fails on it.
    // A request the client library refuses to build never reached the hub.
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) if e.is_builder() => return Ok(()),
        Err(e) => return Err(format!("{method} {path}: no answer: {e}")),
    };
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("{method} {path}: body cut: {e}"))?;
    if status.is_server_error() {
        let text: String = String::from_utf8_lossy(&bytes).chars().take(500).collect();
        return Err(format!("{method} {path}: {status}: {text}"));
    }
    if status.is_client_error() {
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{method} {path}: {status} without JSON ({e})"))?;
        // The MCP endpoints answer in JSON-RPC 2.0, whose error object is their protocol
        // error body (a parse error is 400 with `{"jsonrpc":"2.0","error":{code,message}}`).
        if is_json_rpc_error(path, &body) {
            return Ok(());
        }
        if body["success"] != false
            || !body["error"].is_string()
            || body["protocol_version"] != "v2"
            || body["detail"].as_str().is_none_or(str::is_empty)
        {
            return Err(format!(
                "{method} {path}: {status}: not a protocol error: {body}"
            ));
        }
    }
    Ok(())
}

/// The property. 1000 cases (bounded; each request has the client's 60 s cap), shrunk to a
/// minimal failing request when one breaks the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handler_answers_hostile_input_with_a_json_4xx() {
    let hub = TestHub::builder()
        .settings(|s| s.demo_payments = true)
        .start()
        .await;
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 1000,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    });
    // The runner's error carries the whole failing input; it is only formatted once.
    #[allow(clippy::result_large_err)]
    let result = tokio::task::block_in_place(|| {
        runner.run(&hostile_request(), |h| {
            handle
                .block_on(check(&hub, &h))
                .map_err(TestCaseError::fail)
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The hub is still serving after all of it.
    let (status, _) = hub.get("/ai-market/v2/health").await;
    assert!(status.is_success());
}

/// Regression (issue #13): a `tx_hash` whose first character is multi-byte used to panic in
/// the ledger and drop the connection. Now it is an answer: a demo hash it is not, so 400.
#[tokio::test]
async fn multi_byte_tx_hash_is_answered() {
    let hub = TestHub::builder()
        .settings(|s| s.demo_payments = true)
        .start()
        .await;
    for path in ["/ai-market/v2/channel/open", "/ai-market/channel/open"] {
        for hash in ["☃", "\u{d7ff}", "é", "0☃"] {
            let (status, body) = hub
                .post(path, &json!({"deposit_usd": 1.0, "tx_hash": hash}))
                .await;
            assert!(status.is_client_error(), "{path} {hash:?}: {status} {body}");
            assert_eq!(body["success"], false, "{body}");
        }
    }
    let (status, body) = hub
        .post(
            "/ai-market/v2/channel/close",
            &json!({"channel_id": "ch_x", "settle_tx_hash": "☃"}),
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    // Still serving, and a good open works.
    let (status, body) = hub
        .post(
            "/ai-market/v2/channel/open",
            &json!({"deposit_usd": 1.0, "tx_hash": "demo-ok"}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
}

/// Regression (issue #13, found by the property above): a body declared `Content-Encoding:
/// gzip` that does not decode was answered 400 in plain text by the framework; every error
/// must carry the protocol body.
#[tokio::test]
async fn undecodable_content_encoding_is_a_protocol_error() {
    let hub = TestHub::start().await;
    for path in [
        "/ai-market/mcp",
        "/ai-market/v2/invoke",
        "/ai-market/v2/p/x/y",
    ] {
        for encoding in ["gzip", "deflate", "br", "zstd", "x-unknown"] {
            let request = hub
                .request(Method::POST, path)
                .header("content-type", "application/json")
                .header("content-encoding", encoding)
                .body(b"PK\x03\x04 not what it says".to_vec());
            let (status, _, body) = hub.send(request).await;
            assert!(
                status.is_client_error(),
                "{path} {encoding}: {status} {body}"
            );
            if is_json_rpc_error(path, &body) {
                continue;
            }
            assert_eq!(body["success"], false, "{path} {encoding}: {body}");
            assert_eq!(body["protocol_version"], "v2", "{body}");
            assert!(
                body["error"].is_string() && body["detail"].is_string(),
                "{body}"
            );
        }
    }
}

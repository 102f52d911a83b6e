//! Bad search parameters answer 400 with the protocol error body, naming the parameter;
//! nothing a client sends in the query string makes the hub fail.

use aimarket_e2e::{TestHub, assert_protocol_error};
use reqwest::StatusCode;

use crate::search::{SEARCH, urlencode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400_with_the_protocol_body() {
    let hub = TestHub::start().await;
    let long_intent = format!("intent={}", urlencode(&"a".repeat(1001)));
    let cases: Vec<(String, &str)> = vec![
        ("budget=abc".into(), "budget"),
        ("budget=-0.5".into(), "budget"),
        ("budget=NaN".into(), "budget"),
        ("max_latency_ms=soon".into(), "max_latency_ms"),
        ("max_latency_ms=-1".into(), "max_latency_ms"),
        ("min_trust=2".into(), "min_trust"),
        ("limit=-1".into(), "limit"),
        ("limit=abc".into(), "limit"),
        ("offset=-5".into(), "offset"),
        ("offset=99999999".into(), "offset"),
        ("hub=ftp%3A%2F%2Fhub.example".into(), "hub"),
        ("hub=somewhere".into(), "hub"),
        ("fields=everything".into(), "fields"),
        ("intent=a&intent=b".into(), "intent"),
        (long_intent, "intent"),
    ];
    for (query, param) in cases {
        let (status, body) = hub.get(&format!("{SEARCH}?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_protocol_error(&body, "bad_request");
        assert_eq!(body["param"], param, "{query}: {body}");
    }

    // The edges that are accepted: an exactly 1,000-character intent, empty values, unknown
    // parameters, a limit above the maximum (clamped).
    let ok = [
        format!("intent={}", urlencode(&"é".repeat(1000))),
        "budget=&limit=&intent=".to_owned(),
        "intent=x&catalog=all&include_demo=1".to_owned(),
        "limit=1000".to_owned(),
        "hub=any&fields=compact&min_trust=0&budget=0&max_latency_ms=0".to_owned(),
    ];
    for query in ok {
        let (status, body) = hub.get(&format!("{SEARCH}?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(body["matches"], serde_json::json!([]), "{query}");
        assert!(body["query"].is_string(), "never null: {body}");
    }

    // Wrong method: the protocol body too.
    let (status, body) = hub.post(SEARCH, &serde_json::json!({})).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_protocol_error(&body, "method_not_allowed");
}

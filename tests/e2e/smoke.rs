//! First contact: the hub starts, answers health, publishes a signed well-known, and speaks
//! the protocol error shape for everything it does not serve.

use aimarket_e2e::{TestHub, assert_protocol_error};
use aimarket_protocol::schema::{SchemaKind, validate};
use aimarket_protocol::signing::{PublicKey, verify_document};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn health_answers_ok() {
    let hub = TestHub::start().await;
    let (status, body) = hub.get("/ai-market/v2/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["service"], "aimarket-hub");
    assert_eq!(body["database_backend"], "sqlite");
    assert_eq!(body["protocol_version"], "v2");
    assert!(
        body["version"].is_string() && body["uptime_seconds"].is_u64(),
        "{body}"
    );
}

#[tokio::test]
async fn well_known_is_signed_by_the_hub_and_cacheable() {
    let hub = TestHub::start().await;
    let (status, headers, doc) = hub
        .send(hub.request(Method::GET, "/.well-known/ai-market.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    validate(SchemaKind::WellKnown, &doc).unwrap();

    let signer = PublicKey::from_b64(doc["signer_public_key"].as_str().unwrap()).unwrap();
    assert_eq!(signer, hub.state.signing_key.public_key());
    verify_document(&doc, &signer).unwrap();
    assert_eq!(doc["manifest_url"], hub.url("/ai-market/v2/manifest"));
    assert_eq!(doc["mcp_endpoint"], hub.url("/ai-market/mcp"));

    let etag = headers.get("etag").unwrap().to_str().unwrap().to_owned();
    assert_eq!(headers.get("cache-control").unwrap(), "public, max-age=60");
    let conditional = hub
        .request(Method::GET, "/.well-known/ai-market.json")
        .header("if-none-match", &etag);
    let (status, headers, body) = hub.send(conditional).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers.get("etag").unwrap().to_str().unwrap(), etag);
    assert!(body.is_null());
}

#[tokio::test]
async fn unknown_paths_and_methods_get_the_protocol_error_body() {
    let hub = TestHub::start().await;
    let (status, body) = hub.get("/ai-market/v2/does-not-exist").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_protocol_error(&body, "not_found");

    let (status, body) = hub.post("/no/such/thing", &json!({"a": 1})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_protocol_error(&body, "not_found");

    let (status, body) = hub
        .post_raw("/ai-market/v2/health", "application/json", "{not json")
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_protocol_error(&body, "method_not_allowed");
}

#[tokio::test]
async fn a_restarted_hub_keeps_its_key_and_two_hubs_do_not_share_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestHub::builder().data_dir(dir.path()).start().await;
    let key = first.state.signing_key.public_key();
    let other = TestHub::start().await;
    assert_ne!(other.state.signing_key.public_key(), key);
    assert_ne!(other.addr, first.addr);
    first.stop().await;

    let again = TestHub::builder().data_dir(dir.path()).start().await;
    assert_eq!(again.state.signing_key.public_key(), key);
    let (status, doc) = again.get("/.well-known/ai-market.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["signer_public_key"], key.to_b64());
}

//! Payment channel and receipt endpoints over HTTP, as the SDKs call them: open (v2 and v1),
//! balance, close (both answer shapes), refusals, stored receipts and receipt verification.
//! On-chain deposits are tested against a real node in `chain_deposits.rs`.

use std::time::Duration;

use aimarket_e2e::{TestHub, assert_protocol_error, wait_until};
use aimarket_hub::error_code::ErrorCode;
use aimarket_protocol::signing::{KeyPair, ReceiptVersion, sign_receipt};
use reqwest::StatusCode;
use serde_json::{Value, json};

const OPEN: &str = "/ai-market/v2/channel/open";
const CLOSE: &str = "/ai-market/v2/channel/close";
const VERIFY: &str = "/ai-market/v2/receipts/verify";

async fn demo_hub() -> TestHub {
    TestHub::builder()
        .settings(|s| s.demo_payments = true)
        .start()
        .await
}

/// Checks the open answer's shape (enveloped and flat) and returns `(id, secret)`.
#[track_caller]
fn opened(body: &Value, deposit: f64) -> (String, String) {
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["protocol_version"], "v2");
    let channel = &body["channel"];
    for key in [
        "channel_id",
        "channel_secret",
        "deposit_usd",
        "balance_usd",
        "token",
        "chain",
        "expires_at",
    ] {
        assert!(!channel[key].is_null(), "channel.{key} missing: {body}");
        assert_eq!(channel[key], body[key], "flat {key} differs: {body}");
    }
    assert_eq!(channel["deposit_usd"], deposit);
    assert_eq!(channel["original_deposit_usd"], deposit);
    assert_eq!(channel["balance_usd"], deposit);
    let expires = channel["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z'), "{expires}");
    let at = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    let ttl = at.timestamp() - chrono::Utc::now().timestamp();
    assert!((86_000..=86_400).contains(&ttl), "{ttl}");
    (
        channel["channel_id"].as_str().unwrap().to_owned(),
        channel["channel_secret"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn open_balance_close_as_the_sdks_read_them() {
    let hub = demo_hub().await;
    // The Rust/TS/Dart SDKs send no tx_hash.
    let (status, body) = hub
        .post(
            OPEN,
            &json!({"deposit_usd": 1.5, "token": "USDC", "chain": "base"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (id, secret) = opened(&body, 1.5);
    assert!(id.starts_with("ch_") && secret.starts_with("chs_"));

    // Spend some of it through the ledger the invoke path uses.
    let ledger = &hub.state.ledger;
    let held = ledger
        .hold(&id, Some(&secret), 250_000, "rcpt_e2e_1")
        .await
        .unwrap();
    let mut receipt = json!({"nonce": "rcpt_e2e_1", "product_id": "p", "capability_id": "c@v1",
        "price_usd": 0.25, "timestamp": "2026-01-01T00:00:00Z", "success": true, "latency_ms": 1});
    sign_receipt(&mut receipt, &hub.state.signing_key, ReceiptVersion::V1).unwrap();
    held.capture(&receipt).await.unwrap();

    let (status, body) = hub.get(&format!("/ai-market/v2/channel/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["balance_usd"], 1.25);
    assert_eq!(body["used_usd"], 0.25);
    assert_eq!(body["invocations"], 1);
    assert_eq!(body["status"], "open");
    assert_eq!(body["channel"]["balance_usd"], 1.25);
    assert!(
        !body.to_string().contains(&secret),
        "the secret leaked: {body}"
    );

    // The Python agent closes without a secret.
    let close = json!({"channel_id": id, "settle_tx_hash": format!("agent-settle-{id}")});
    let (status, body) = hub.post(CLOSE, &close).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["settlement"]["channel_id"], id.as_str());
    assert_eq!(body["settlement"]["used_usd"], 0.25);
    assert_eq!(body["settlement"]["refund_usd"], 1.25);
    assert_eq!(body["channel_id"], id.as_str());
    assert_eq!(body["total_spent_usd"], 0.25);
    assert_eq!(body["refund_usd"], 1.25);
    assert!(body["invocations"].is_u64(), "{body}");
    assert_eq!(body["invocations"], 1);
    // A second close answers the same settlement.
    let (status, again) = hub.post(CLOSE, &close).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["settlement"], body["settlement"]);
    let (_, after) = hub.get(&format!("/ai-market/v2/channel/{id}")).await;
    assert_eq!(after["status"], "closed");

    // The v1 aliases and the Python agent's placeholder hash.
    let (status, body) = hub
        .post(
            "/ai-market/channel/open",
            &json!({"deposit_usd": 2, "tx_hash": "agent-1700000000"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (v1, _) = opened(&body, 2.0);
    let (status, body) = hub
        .post("/ai-market/channel/close", &json!({"channel_id": v1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["refund_usd"], 2.0);
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_protocol_body() {
    let hub = demo_hub().await;
    for (body, code) in [
        (json!({"deposit_usd": 0}), "invalid_amount"),
        (json!({"deposit_usd": -5}), "invalid_amount"),
        (json!({"deposit_usd": 1_000_000.5}), "invalid_amount"),
        (json!({"deposit_usd": 1e300}), "invalid_amount"),
        (json!({"deposit_usd": "NaN"}), "invalid_json"),
        (json!({"deposit_usd": null}), "invalid_json"),
        (json!({"tx_hash": "demo-1"}), "invalid_json"),
        (json!({"deposit_usd": 1, "tx_hash": 42}), "invalid_json"),
        (
            json!({"deposit_usd": 1, "tx_hash": "0xabc"}),
            "deposit_not_verified",
        ),
    ] {
        let (status, answer) = hub.post(OPEN, &body).await;
        assert_protocol_error(&answer, code);
        let want = if code == "deposit_not_verified" {
            StatusCode::PAYMENT_REQUIRED
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, want, "{body} -> {answer}");
    }
    let (status, answer) = hub
        .post_raw(OPEN, "application/json", "{\"deposit_usd\": NaN}")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_protocol_error(&answer, "invalid_json");
    let (status, answer) = hub.post_raw(CLOSE, "application/json", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_protocol_error(&answer, "invalid_json");

    // A tx hash funds one channel, ever.
    let open = json!({"deposit_usd": 1, "tx_hash": "0xdemo-replayed"});
    assert_eq!(hub.post(OPEN, &open).await.0, StatusCode::OK);
    let (status, answer) = hub.post(OPEN, &open).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_protocol_error(&answer, "tx_already_used");

    let (status, answer) = hub.get("/ai-market/v2/channel/ch_unknown").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_protocol_error(&answer, "channel_not_found");
    let (status, answer) = hub.post(CLOSE, &json!({"channel_id": "ch_unknown"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_protocol_error(&answer, "channel_not_found");
    assert_eq!(
        hub.post(CLOSE, &json!({"settle_tx_hash": "x"})).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn without_a_verifier_channels_are_unavailable() {
    let hub = TestHub::start().await;
    let (status, answer) = hub.post(OPEN, &json!({"deposit_usd": 1})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_protocol_error(&answer, "payments_unavailable");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("AIMARKET_DEMO_PAYMENTS"),
        "{answer}"
    );
}

#[tokio::test]
async fn expired_channels_show_it_and_still_settle() {
    let hub = TestHub::builder()
        .settings(|s| {
            s.demo_payments = true;
            s.payments.channel_ttl_s = 1;
        })
        .start()
        .await;
    let (_, body) = hub.post(OPEN, &json!({"deposit_usd": 1})).await;
    let id = body["channel_id"].as_str().unwrap().to_owned();
    let path = format!("/ai-market/v2/channel/{id}");
    let expired = wait_until(Duration::from_secs(10), || async {
        hub.get(&path).await.1["status"] == "expired"
    })
    .await;
    assert!(expired, "the channel never showed as expired");
    let err = hub
        .state
        .ledger
        .hold(&id, None, 1, "late")
        .await
        .unwrap_err();
    assert_eq!(err.wire_code().as_str(), "channel_expired");
    let (status, body) = hub.post(CLOSE, &json!({"channel_id": id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["refund_usd"], 1.0);
}

#[tokio::test]
async fn channels_work_the_same_on_postgres() {
    let Some(database_url) = aimarket_e2e::postgres::fresh_schema_url("channels").await else {
        return;
    };
    let hub = TestHub::builder()
        .settings(|s| {
            s.demo_payments = true;
            s.database_url = Some(database_url.parse().unwrap());
        })
        .start()
        .await;
    assert_eq!(hub.state.store.backend(), "postgres");
    let (status, body) = hub
        .post(OPEN, &json!({"deposit_usd": 0.5, "tx_hash": "demo-pg"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (id, _) = opened(&body, 0.5);
    assert_eq!(
        hub.post(OPEN, &json!({"deposit_usd": 0.5, "tx_hash": "demo-pg"}))
            .await
            .0,
        StatusCode::CONFLICT
    );
    let (_, body) = hub.get(&format!("/ai-market/v2/channel/{id}")).await;
    assert_eq!(body["balance_usd"], 0.5);
    let (status, body) = hub.post(CLOSE, &json!({"channel_id": id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["refund_usd"], 0.5);
}

#[tokio::test]
async fn receipts_are_served_and_verified() {
    let hub = demo_hub().await;
    let mut receipt = json!({"nonce": "rcpt_served", "product_id": "p", "capability_id": "c@v1",
        "price_usd": 0.00005, "timestamp": "2026-01-01T00:00:00Z", "success": true,
        "latency_ms": 12, "type": "rejection", "reason": "blocked"});
    sign_receipt(&mut receipt, &hub.state.signing_key, ReceiptVersion::V1).unwrap();
    hub.state.ledger.store_receipt(&receipt).await.unwrap();

    let (status, body) = hub.get("/ai-market/receipt/rcpt_served").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, receipt);
    let (status, body) = hub.get("/ai-market/receipt/rcpt_missing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_protocol_error(&body, "receipt_not_found");

    let (status, verdict) = hub.post(VERIFY, &json!({"receipt": receipt})).await;
    assert_eq!(status, StatusCode::OK, "{verdict}");
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["classical_valid"], true);
    assert_eq!(verdict["signer_matches_live_key"], true);
    assert_eq!(verdict["signer"], hub.base_url.as_str());
    assert_eq!(verdict["signature_version"], 1);
    // Signed at v1 while carrying v2 fields: those are reported as unsigned.
    assert_eq!(verdict["unsigned_fields"], json!(["type", "reason"]));

    let mut tampered = receipt.clone();
    tampered["price_usd"] = json!(0.0);
    let (status, verdict) = hub.post(VERIFY, &json!({"receipt": tampered})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["signer_matches_live_key"], false);
    assert_eq!(verdict["reason"], "bad_signature", "{verdict}");

    // A peer's receipt verifies once its key is pinned, and not before.
    let peer = KeyPair::from_seed(&[42; 32]);
    let mut foreign = receipt.clone();
    foreign["nonce"] = json!("rcpt_peer");
    sign_receipt(&mut foreign, &peer, ReceiptVersion::V2).unwrap();
    let (_, verdict) = hub.post(VERIFY, &json!({"receipt": foreign})).await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["reason"], "unknown_signer", "{verdict}");
    hub.state
        .store
        .upsert_seed_peer("http://127.0.0.1:1", Some(&peer.public_key().to_b64()))
        .await
        .unwrap();
    let (_, verdict) = hub.post(VERIFY, &foreign).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["signer"], "http://127.0.0.1:1");
    assert_eq!(verdict["signature_version"], 2);
    assert_eq!(verdict["unsigned_fields"], json!([]));

    let (status, body) = hub.post(VERIFY, &json!({"receipt": "nope"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_protocol_error(&body, "bad_request");
}

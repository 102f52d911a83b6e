//! Stored receipts and invocation records.

use aimarket_protocol::signing::{KeyPair, verify_receipt};
use serde_json::json;

use super::{Ctx, LedgerCtx, signed_receipt};
use crate::payments::{InvocationRecord, PaymentError, PeerStats};

pub async fn receipts_are_stored_once_and_read_back(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    let key = KeyPair::from_seed(&[9; 32]);
    let mut rejection = signed_receipt(&key, "rcpt_rej", 0.00005, "ch_x");
    rejection["type"] = json!("rejection");
    rejection["reason"] = json!("über-limit");
    aimarket_protocol::signing::sign_receipt(
        &mut rejection,
        &key,
        aimarket_protocol::signing::ReceiptVersion::V2,
    )
    .unwrap();
    ledger.store_receipt(&rejection).await.unwrap();
    let back = ledger.get_receipt("rcpt_rej").await.unwrap().unwrap();
    assert_eq!(back, rejection);
    verify_receipt(&back, &key.public_key()).unwrap();
    assert!(matches!(
        ledger.store_receipt(&rejection).await.unwrap_err(),
        PaymentError::DuplicateReceipt { .. }
    ));
    assert_eq!(ledger.get_receipt("rcpt_none").await.unwrap(), None);
    assert_eq!(ledger.get_receipt("").await.unwrap(), None);
    for bad in [json!([1]), json!({"nonce": 5}), json!({"nonce": ""})] {
        assert!(matches!(
            ledger.store_receipt(&bad).await.unwrap_err(),
            PaymentError::InvalidReceipt(_)
        ));
    }
    let signer = crate::store::on_pool!(&ctx.store, |pool| {
        sqlx::query_scalar::<_, String>("SELECT signer FROM receipts WHERE nonce = 'rcpt_rej'")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(signer, key.public_key().to_b64());
}

pub async fn invocations_are_recorded_and_summed(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    let record =
        |peer: &str, success: bool, latency_ms: u64, price_micros: i64, ts: i64| InvocationRecord {
            peer_url: peer.to_owned(),
            origin: peer.to_owned(),
            product_id: "acme".into(),
            capability_id: "echo@v1".into(),
            status: if success { 200 } else { 502 },
            success,
            latency_ms,
            price_micros,
            channel_id: success.then(|| "ch_1".to_owned()),
            ts,
        };
    for r in [
        record("https://a.example", true, 10, 1_000, 100),
        record("https://a.example", false, 30, 0, 200),
        record("https://b.example", true, 5, 2_000, 300),
        record("https://b.example", true, 5, 2_000, 50),
    ] {
        ledger.record_invocation(r).await.unwrap();
    }
    let stats = ledger.peer_stats(100).await.unwrap();
    assert_eq!(
        stats,
        vec![
            PeerStats {
                peer_url: "https://a.example".into(),
                calls: 2,
                successes: 1,
                total_latency_ms: 40,
                volume_micros: 1_000,
            },
            PeerStats {
                peer_url: "https://b.example".into(),
                calls: 1,
                successes: 1,
                total_latency_ms: 5,
                volume_micros: 2_000,
            },
        ]
    );
    assert_eq!(ctx.count("SELECT COUNT(*) FROM invocations").await, 4);
}

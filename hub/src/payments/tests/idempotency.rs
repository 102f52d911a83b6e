//! Idempotency records.

use super::Ctx;
use crate::payments::{IdemState, PaymentError, StoredResponse};

fn response() -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-request-id".into(), "r1".into()),
        ],
        body: br#"{"success":true,"price_usd":0.001}"#.to_vec(),
    }
}

pub async fn begin_replay_conflict(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    assert_eq!(
        ledger
            .idempotency_begin("k1", "client-a", "aaaa")
            .await
            .unwrap(),
        IdemState::New
    );
    assert_eq!(
        ledger
            .idempotency_begin("k1", "client-a", "aaaa")
            .await
            .unwrap(),
        IdemState::InFlight
    );
    assert_eq!(
        ledger
            .idempotency_begin("k1", "client-a", "bbbb")
            .await
            .unwrap(),
        IdemState::Conflict
    );
    // Keys are per client.
    assert_eq!(
        ledger
            .idempotency_begin("k1", "client-b", "bbbb")
            .await
            .unwrap(),
        IdemState::New
    );
    ledger
        .idempotency_finish("k1", "client-a", &response())
        .await
        .unwrap();
    assert_eq!(
        ledger
            .idempotency_begin("k1", "client-a", "aaaa")
            .await
            .unwrap(),
        IdemState::Replay(response())
    );
    assert_eq!(
        ledger
            .idempotency_begin("k1", "client-a", "bbbb")
            .await
            .unwrap(),
        IdemState::Conflict
    );
    // Abandoning forgets an in-flight claim, never a finished answer.
    ledger.idempotency_abandon("k1", "client-b").await.unwrap();
    assert_eq!(
        ledger
            .idempotency_begin("k1", "client-b", "cccc")
            .await
            .unwrap(),
        IdemState::New
    );
    ledger.idempotency_abandon("k1", "client-a").await.unwrap();
    assert!(matches!(
        ledger
            .idempotency_begin("k1", "client-a", "aaaa")
            .await
            .unwrap(),
        IdemState::Replay(_)
    ));
    for (key, client) in [("", "c"), ("k", ""), ("bad\nkey", "c")] {
        assert!(matches!(
            ledger
                .idempotency_begin(key, client, "aaaa")
                .await
                .unwrap_err(),
            PaymentError::InvalidRequest(_)
        ));
    }
    let long = "k".repeat(256);
    assert!(ledger.idempotency_begin(&long, "c", "aaaa").await.is_err());
}

pub async fn abandoned_and_expired_records_are_taken_over(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    assert_eq!(
        ledger
            .idempotency_begin("crashed", "c", "aaaa")
            .await
            .unwrap(),
        IdemState::New
    );
    // The request's process died: its claim ages past the hold lease.
    let aged = ctx
        .exec(
            "UPDATE idempotency_keys SET updated_at = updated_at - 3600000 WHERE idem_key = $1",
            "crashed",
        )
        .await;
    assert_eq!(aged, 1);
    assert_eq!(
        ledger
            .idempotency_begin("crashed", "c", "aaaa")
            .await
            .unwrap(),
        IdemState::New
    );
    assert_eq!(
        ledger
            .idempotency_begin("crashed", "c", "aaaa")
            .await
            .unwrap(),
        IdemState::InFlight
    );

    // A finished answer is replayed for 24 hours, then the key is free again.
    assert_eq!(
        ledger.idempotency_begin("old", "c", "aaaa").await.unwrap(),
        IdemState::New
    );
    ledger
        .idempotency_finish("old", "c", &response())
        .await
        .unwrap();
    ctx.exec(
        "UPDATE idempotency_keys SET created_at = created_at - 86400001 WHERE idem_key = $1",
        "old",
    )
    .await;
    assert_eq!(
        ledger.idempotency_begin("old", "c", "bbbb").await.unwrap(),
        IdemState::New
    );
    ctx.exec(
        "UPDATE idempotency_keys SET created_at = created_at - 86400001 WHERE idem_key = $1",
        "crashed",
    )
    .await;
    assert_eq!(ledger.purge_idempotency().await.unwrap(), 1);
    assert_eq!(ctx.scalar("SELECT COUNT(*) FROM idempotency_keys").await, 1);
}

//! Idempotency records.

use super::{Ctx, LedgerCtx};
use crate::payments::{IdemState, Ledger, PaymentError, StoredResponse};

async fn begin(ledger: &Ledger, key: &str, client: &str, body_sha256: &str) -> IdemState {
    ledger
        .idempotency_begin(key, client, body_sha256)
        .await
        .unwrap()
}

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
        begin(&ledger, "k1", "client-a", "aaaa").await,
        IdemState::New
    );
    assert_eq!(
        begin(&ledger, "k1", "client-a", "aaaa").await,
        IdemState::InFlight
    );
    assert_eq!(
        begin(&ledger, "k1", "client-a", "bbbb").await,
        IdemState::Conflict
    );
    // Keys are per client.
    assert_eq!(
        begin(&ledger, "k1", "client-b", "bbbb").await,
        IdemState::New
    );
    ledger
        .idempotency_finish("k1", "client-a", &response())
        .await
        .unwrap();
    assert_eq!(
        begin(&ledger, "k1", "client-a", "aaaa").await,
        IdemState::Replay(response())
    );
    assert_eq!(
        begin(&ledger, "k1", "client-a", "bbbb").await,
        IdemState::Conflict
    );
    // Abandoning forgets an in-flight claim, never a finished answer.
    ledger.idempotency_abandon("k1", "client-b").await.unwrap();
    assert_eq!(
        begin(&ledger, "k1", "client-b", "cccc").await,
        IdemState::New
    );
    ledger.idempotency_abandon("k1", "client-a").await.unwrap();
    assert!(matches!(
        begin(&ledger, "k1", "client-a", "aaaa").await,
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
    assert_eq!(begin(&ledger, "crashed", "c", "aaaa").await, IdemState::New);
    // The request's process died: its claim ages past the hold lease.
    let aged = ctx
        .exec(
            "UPDATE idempotency_keys SET updated_at = updated_at - 3600000 WHERE idem_key = $1",
            "crashed",
        )
        .await;
    assert_eq!(aged, 1);
    assert_eq!(begin(&ledger, "crashed", "c", "aaaa").await, IdemState::New);
    assert_eq!(
        begin(&ledger, "crashed", "c", "aaaa").await,
        IdemState::InFlight
    );

    // A finished answer is replayed for 24 hours, then the key is free again.
    assert_eq!(begin(&ledger, "old", "c", "aaaa").await, IdemState::New);
    ledger
        .idempotency_finish("old", "c", &response())
        .await
        .unwrap();
    ctx.exec(
        "UPDATE idempotency_keys SET created_at = created_at - 86400001 WHERE idem_key = $1",
        "old",
    )
    .await;
    assert_eq!(begin(&ledger, "old", "c", "bbbb").await, IdemState::New);
    ctx.exec(
        "UPDATE idempotency_keys SET created_at = created_at - 86400001 WHERE idem_key = $1",
        "crashed",
    )
    .await;
    assert_eq!(ledger.purge_idempotency().await.unwrap(), 1);
    assert_eq!(ctx.count("SELECT COUNT(*) FROM idempotency_keys").await, 1);
}

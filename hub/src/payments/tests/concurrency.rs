//! The money invariants under concurrency and crashes.

use std::collections::HashMap;
use std::time::Duration;

use aimarket_protocol::signing::KeyPair;
use futures_util::future::join_all;

use super::{Ctx, LedgerCtx, open_demo, signed_receipt};
use crate::payments::{
    HoldState, Ledger, LedgerConfig, OpenChannel, PaymentError, ReleaseReason, usd_to_micros,
};

/// $0.001 per call: a $0.50 channel pays for exactly 500.
const PRICE_USD: f64 = 0.001;
const PRICE: i64 = 1_000;
const CALLS: usize = 1_000;

pub async fn thousand_concurrent_holds_pay_exactly_five_hundred(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    let channel = open_demo(&ledger, 0.5).await;
    let secret = channel.secret.clone().unwrap();
    let key = KeyPair::from_seed(&[7; 32]);

    let tasks = (0..CALLS).map(|i| {
        let ledger = ledger.clone();
        let id = channel.id.clone();
        let secret = secret.clone();
        tokio::spawn(async move {
            let nonce = format!("rcpt_{i:04}");
            ledger.hold(&id, Some(secret.expose()), PRICE, &nonce).await
        })
    });
    let outcomes: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect();
    let mut held = Vec::new();
    let mut refused = 0;
    for outcome in outcomes {
        match outcome {
            Ok(guard) => held.push(guard),
            Err(PaymentError::InsufficientBalance { needed_micros, .. }) => {
                assert_eq!(needed_micros, PRICE);
                refused += 1;
            }
            Err(other) => panic!("unexpected hold error: {other:?}"),
        }
    }
    assert_eq!((held.len(), refused), (500, 500));
    let c = ledger.get_channel(&channel.id).await.unwrap();
    assert_eq!(
        (c.balance_micros(), c.held_micros, c.used_micros),
        (0, 500_000, 0)
    );

    // Capture every hold concurrently, each with its signed receipt.
    let nonces: Vec<String> = held.iter().map(|guard| guard.id().to_owned()).collect();
    let captures = held.into_iter().map(|guard| {
        let receipt = signed_receipt(&key, guard.id(), PRICE_USD, &channel.id);
        tokio::spawn(async move { guard.capture(&receipt).await })
    });
    for joined in join_all(captures).await {
        joined.unwrap().unwrap();
    }
    let c = ledger.get_channel(&channel.id).await.unwrap();
    assert_eq!(c.balance_micros(), 0);
    assert_eq!(
        (c.used_micros, c.held_micros, c.invocations),
        (500_000, 0, 500)
    );

    // The ledger equals the sum of the signed receipts' prices.
    let mut receipts_total = 0;
    for nonce in &nonces {
        let receipt = ledger.get_receipt(nonce).await.unwrap().unwrap();
        aimarket_protocol::signing::verify_receipt(&receipt, &key.public_key()).unwrap();
        receipts_total += usd_to_micros(receipt["price_usd"].as_f64().unwrap()).unwrap();
    }
    assert_eq!(receipts_total, c.used_micros);
    let charged = ctx
        .count("SELECT CAST(SUM(charged) AS BIGINT) FROM receipts")
        .await;
    assert_eq!(charged, c.used_micros);

    // Drained: one more call is refused, and the refund is zero.
    let err = ledger
        .hold(&channel.id, Some(secret.expose()), 1, "one-more")
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        PaymentError::InsufficientBalance {
            balance_micros: 0,
            ..
        }
    ));
    let settlement = ledger.close_channel(&channel.id, None).await.unwrap();
    assert_eq!(
        (settlement.used_micros, settlement.refund_micros),
        (500_000, 0)
    );
}

/// A process dies with holds open (kill -9): nothing captured is lost, nothing held stays
/// held, every balance equals deposit − captured.
pub async fn abandoned_holds_are_released_after_a_crash(ctx: Ctx) {
    // On PostgreSQL recovery only takes holds whose lease ran out; a zero lease stands in for
    // "the dead replica's calls are long past their timeout".
    let config = LedgerConfig {
        hold_lease: Duration::ZERO,
        ..LedgerConfig::default()
    };
    let ledger = ctx.ledger(super::demo(), config);
    let key = KeyPair::from_seed(&[8; 32]);
    let a = open_demo(&ledger, 1.0).await;
    let b = open_demo(&ledger, 0.25).await;
    let mut guards = HashMap::new();
    for (i, channel) in [&a, &a, &a, &b, &b, &a, &b].iter().enumerate() {
        let nonce = format!("h{i}");
        let guard = ledger
            .hold(&channel.id, None, 10_000, &nonce)
            .await
            .unwrap();
        guards.insert(nonce, guard);
    }
    // Three calls finished (two on a, one on b); four were in flight when the process died.
    for (nonce, channel) in [("h0", &a), ("h1", &a), ("h3", &b)] {
        let receipt = signed_receipt(&key, nonce, 0.01, &channel.id);
        let guard = guards.remove(nonce).unwrap();
        guard.capture(&receipt).await.unwrap();
    }
    let before = ledger.get_channel(&a.id).await.unwrap();
    assert_eq!((before.used_micros, before.held_micros), (20_000, 20_000));
    // The "process" goes away without releasing anything: no destructor runs under kill -9.
    for guard in guards.into_values() {
        std::mem::forget(guard);
    }
    drop(ledger);
    ctx.store.close().await;

    let restarted = Ledger::new(ctx.reconnect().await, super::demo(), config);
    assert_eq!(restarted.recover_on_startup().await.unwrap(), 4);
    assert_eq!(restarted.recover_on_startup().await.unwrap(), 0);
    for (channel, captured) in [(&a, 20_000), (&b, 10_000)] {
        let c = restarted.get_channel(&channel.id).await.unwrap();
        assert_eq!(c.held_micros, 0);
        assert_eq!(c.used_micros, captured);
        assert_eq!(c.balance_micros(), c.deposit_micros - captured);
    }
    for (nonce, want) in [
        ("h0", HoldState::Captured),
        ("h2", HoldState::Released),
        ("h3", HoldState::Captured),
        ("h6", HoldState::Released),
    ] {
        assert_eq!(
            restarted.hold_state(nonce).await.unwrap(),
            Some(want),
            "{nonce}"
        );
    }
    // No hold is captured without its receipt.
    let captured_without_receipt = on_count(
        &restarted,
        "SELECT COUNT(*) FROM holds h WHERE h.state = 'captured' \
         AND NOT EXISTS (SELECT 1 FROM receipts r WHERE r.hold_id = h.id)",
    )
    .await;
    assert_eq!(captured_without_receipt, 0);
    // A late capture of a released hold fails and charges nothing.
    let late = signed_receipt(&key, "h2", 0.01, &a.id);
    assert!(matches!(
        restarted.capture("h2", &late).await.unwrap_err(),
        PaymentError::HoldSettled {
            state: "released",
            ..
        }
    ));
    assert_eq!(
        restarted.get_channel(&a.id).await.unwrap().used_micros,
        20_000
    );
    restarted.store().close().await;
}

/// On PostgreSQL several replicas share the ledger: one replica's startup must not release
/// another live replica's in-flight holds. On SQLite (one process per database) it does.
pub async fn live_holds_of_other_replicas_survive_recovery(ctx: Ctx) {
    let live = ctx.demo_ledger();
    let channel = open_demo(&live, 0.1).await;
    let in_flight = live
        .hold(&channel.id, None, 5_000, "in-flight")
        .await
        .unwrap();
    let other_replica = Ledger::new(
        ctx.reconnect().await,
        super::demo(),
        LedgerConfig::default(),
    );
    let released = other_replica.recover_on_startup().await.unwrap();
    let state = live.hold_state("in-flight").await.unwrap();
    if ctx.is_postgres() {
        assert_eq!((released, state), (0, Some(HoldState::Held)));
        assert_eq!(other_replica.release_expired_holds().await.unwrap(), 0);
        in_flight
            .capture(&signed_receipt(
                &KeyPair::from_seed(&[1; 32]),
                "in-flight",
                0.005,
                &channel.id,
            ))
            .await
            .unwrap();
    } else {
        assert_eq!((released, state), (1, Some(HoldState::Released)));
        // Releasing what recovery already released is a no-op.
        in_flight.release(ReleaseReason::CallFailed).await.unwrap();
    }
    other_replica.store().close().await;
}

pub async fn concurrent_opens_with_one_tx_hash_fund_one_channel(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    let opens = (0..20).map(|_| {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            ledger
                .open_channel(OpenChannel {
                    deposit_usd: 1.0,
                    tx_hash: Some("agent-1700000000".into()),
                    ..OpenChannel::default()
                })
                .await
        })
    });
    let mut opened = 0;
    for joined in join_all(opens).await {
        match joined.unwrap() {
            Ok(_) => opened += 1,
            Err(PaymentError::TxAlreadyUsed { tx_hash }) => {
                assert_eq!(tx_hash, "agent-1700000000");
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(opened, 1);
    assert_eq!(ctx.count("SELECT COUNT(*) FROM channels").await, 1);
}

async fn on_count(ledger: &Ledger, sql: &'static str) -> i64 {
    crate::store::on_pool!(ledger.store(), |pool| {
        sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
    })
}

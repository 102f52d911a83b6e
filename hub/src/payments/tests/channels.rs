//! Channel lifecycle and the refusals of `hold`.

use std::sync::Arc;
use std::time::Duration;

use aimarket_protocol::signing::KeyPair;

use super::rpc::{FakeRpc, RECIPIENT, TOKEN, receipt, transfer_log, tx};
use super::{Ctx, LedgerCtx, demo, open_demo, signed_receipt};
use crate::payments::verifier::{DemoVerifier, EvmVerifier, PaymentVerifier, Verifiers};
use crate::payments::{
    ChannelStatus, HoldState, LedgerConfig, OpenChannel, PaymentError, ReleaseReason, SecretProblem,
};
use crate::store::now_ms;

pub async fn open_get_close_round_trip(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    let before = now_ms();
    let opened = ledger
        .open_channel(OpenChannel {
            deposit_usd: 2.5,
            tx_hash: Some("  demo-abc  ".into()),
            token: Some("USDT".into()),
            ..OpenChannel::default()
        })
        .await
        .unwrap();
    assert!(
        opened.id.starts_with("ch_") && opened.id.len() == 35,
        "{}",
        opened.id
    );
    let secret = opened.secret.clone().unwrap();
    assert!(secret.expose().starts_with("chs_"));
    assert!(!format!("{opened:?}").contains(secret.expose()));
    assert_eq!(opened.tx_hash.as_deref(), Some("demo-abc"));
    assert_eq!(
        (opened.token.as_str(), opened.chain.as_str()),
        ("USDT", "base")
    );
    assert_eq!(
        (opened.deposit_micros, opened.balance_micros()),
        (2_500_000, 2_500_000)
    );
    assert!(!opened.secret_required);
    let ttl = opened.expires_at - opened.created_at;
    assert_eq!(ttl, 24 * 3600 * 1000);
    assert!(opened.created_at >= before);

    let hold = ledger
        .hold(&opened.id, Some(secret.expose()), 400_000, "n1")
        .await
        .unwrap();
    assert_eq!(hold.hold().amount_micros, 400_000);
    let held = ledger.get_channel(&opened.id).await.unwrap();
    assert_eq!(
        (held.balance_micros(), held.held_micros, held.used_micros),
        (2_100_000, 400_000, 0)
    );
    let key = KeyPair::from_seed(&[3; 32]);
    hold.capture(&signed_receipt(&key, "n1", 0.4, &opened.id))
        .await
        .unwrap();
    let read = ledger.get_channel(&opened.id).await.unwrap();
    assert!(read.secret.is_none());
    assert_eq!((read.used_micros, read.invocations), (400_000, 1));
    assert_eq!(read.state_at(now_ms()), "open");

    let settlement = ledger
        .close_channel(&opened.id, Some("0xSETTLE".into()))
        .await
        .unwrap();
    assert_eq!(
        (
            settlement.used_micros,
            settlement.refund_micros,
            settlement.invocations
        ),
        (400_000, 2_100_000, 1)
    );
    assert_eq!(settlement.settle_tx_hash.as_deref(), Some("0xSETTLE"));
    let closed = ledger.get_channel(&opened.id).await.unwrap();
    assert_eq!(closed.status, ChannelStatus::Closed);
    assert_eq!(closed.state_at(now_ms()), "closed");

    assert!(matches!(
        ledger.get_channel("ch_nope").await.unwrap_err(),
        PaymentError::ChannelNotFound { .. }
    ));
    assert!(matches!(
        ledger.close_channel("ch_nope", None).await.unwrap_err(),
        PaymentError::ChannelNotFound { .. }
    ));
}

pub async fn replayed_tx_hash_is_refused(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    for hash in ["agent-1700000000", "0xdemo42"] {
        ledger
            .open_channel(OpenChannel {
                deposit_usd: 1.0,
                tx_hash: Some(hash.into()),
                ..OpenChannel::default()
            })
            .await
            .unwrap();
        let again = ledger
            .open_channel(OpenChannel {
                deposit_usd: 5.0,
                tx_hash: Some(format!(" {hash}")),
                ..OpenChannel::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&again, PaymentError::TxAlreadyUsed { tx_hash } if tx_hash == hash),
            "{again:?}"
        );
    }
    // Channels without a hash are not limited by it.
    open_demo(&ledger, 1.0).await;
    open_demo(&ledger, 1.0).await;

    // A real transaction, verified once; its hash in another case is the same transaction.
    let node = FakeRpc::start().await;
    node.set_receipt(
        &tx(9),
        receipt("0x1", 5, vec![transfer_log(TOKEN, RECIPIENT, 3_000_000)]),
    );
    let evm = ctx.ledger(
        Verifiers::new(vec![Arc::new(EvmVerifier::new(node.config(0)).unwrap())]),
        LedgerConfig::default(),
    );
    let open = |hash: String| super::rpc::proven_open(&hash, 3.0);
    let channel = evm.open_channel(open(tx(9))).await.unwrap();
    assert_eq!(channel.verifier, "evm");
    let calls = node.calls();
    let upper = format!("0x{}", tx(9)[2..].to_uppercase());
    assert!(matches!(
        evm.open_channel(open(upper)).await.unwrap_err(),
        PaymentError::TxAlreadyUsed { .. }
    ));
    assert_eq!(
        node.calls(),
        calls,
        "a replay is refused before asking the node"
    );
}

pub async fn secrets_are_required_for_real_deposits_only(ctx: Ctx) {
    let node = FakeRpc::start().await;
    node.set_receipt(
        &tx(1),
        receipt("0x1", 5, vec![transfer_log(TOKEN, RECIPIENT, 1_000_000)]),
    );
    let both: Vec<Arc<dyn PaymentVerifier>> = vec![
        Arc::new(DemoVerifier),
        Arc::new(EvmVerifier::new(node.config(0)).unwrap()),
    ];
    let ledger = ctx.ledger(Verifiers::new(both), LedgerConfig::default());
    let real = ledger
        .open_channel(super::rpc::proven_open(&tx(1), 1.0))
        .await
        .unwrap();
    assert!(real.secret_required);
    let secret = real.secret.clone().unwrap();
    let missing = ledger.hold(&real.id, None, 10, "a").await.unwrap_err();
    assert!(matches!(
        missing,
        PaymentError::BadSecret {
            problem: SecretProblem::Missing
        }
    ));
    assert_eq!(missing.reason(), Some("missing_channel_secret"));
    let wrong = ledger
        .hold(&real.id, Some("chs_guess"), 10, "b")
        .await
        .unwrap_err();
    assert!(matches!(
        wrong,
        PaymentError::BadSecret {
            problem: SecretProblem::Wrong
        }
    ));
    assert!(
        wrong.to_string().contains("invalid channel secret"),
        "{wrong}"
    );
    let c = ledger
        .hold(&real.id, Some(secret.expose()), 10, "c")
        .await
        .unwrap();

    // A demo channel debits without a secret but refuses a wrong one.
    let play = open_demo(&ledger, 1.0).await;
    let d = ledger.hold(&play.id, None, 10, "d").await.unwrap();
    let other_secret = real.secret.unwrap();
    assert!(matches!(
        ledger
            .hold(&play.id, Some(other_secret.expose()), 10, "e")
            .await
            .unwrap_err(),
        PaymentError::BadSecret {
            problem: SecretProblem::Wrong
        }
    ));
    // Refused holds reserved nothing.
    assert_eq!(ledger.get_channel(&real.id).await.unwrap().held_micros, 10);
    assert_eq!(ledger.get_channel(&play.id).await.unwrap().held_micros, 10);
    for guard in [c, d] {
        guard.release(ReleaseReason::CallFailed).await.unwrap();
    }
}

pub async fn expired_channels_refuse_debits_but_settle(ctx: Ctx) {
    let ledger = ctx.ledger(
        demo(),
        LedgerConfig {
            channel_ttl: Duration::ZERO,
            ..LedgerConfig::default()
        },
    );
    let channel = open_demo(&ledger, 1.0).await;
    let err = ledger.hold(&channel.id, None, 1, "x").await.unwrap_err();
    assert!(matches!(err, PaymentError::Expired { .. }), "{err:?}");
    assert_eq!(err.reason(), Some("channel_expired"));
    let read = ledger.get_channel(&channel.id).await.unwrap();
    assert_eq!(read.state_at(now_ms()), "expired");
    let settlement = ledger.close_channel(&channel.id, None).await.unwrap();
    assert_eq!(
        (settlement.used_micros, settlement.refund_micros),
        (0, 1_000_000)
    );
}

pub async fn closed_channels_refuse_debits_and_close_is_idempotent(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    let key = KeyPair::from_seed(&[4; 32]);
    let channel = open_demo(&ledger, 1.0).await;
    let done = ledger
        .hold(&channel.id, None, 250_000, "done")
        .await
        .unwrap();
    done.capture(&signed_receipt(&key, "done", 0.25, &channel.id))
        .await
        .unwrap();
    let running = ledger
        .hold(&channel.id, None, 100_000, "running")
        .await
        .unwrap();
    let busy = ledger.close_channel(&channel.id, None).await.unwrap_err();
    assert!(
        matches!(busy, PaymentError::ChannelBusy { holds: 1, .. }),
        "{busy:?}"
    );
    running.release(ReleaseReason::CallFailed).await.unwrap();

    let first = ledger
        .close_channel(&channel.id, Some("agent-settle-1".into()))
        .await
        .unwrap();
    assert_eq!(
        (first.used_micros, first.refund_micros, first.invocations),
        (250_000, 750_000, 1)
    );
    let second = ledger
        .close_channel(&channel.id, Some("other".into()))
        .await
        .unwrap();
    assert_eq!(first, second, "a second close answers the first settlement");

    let err = ledger.hold(&channel.id, None, 1, "late").await.unwrap_err();
    assert!(matches!(err, PaymentError::Closed { .. }), "{err:?}");
    assert_eq!(err.reason(), Some("channel_closed"));
}

pub async fn hold_capture_release_errors(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    let key = KeyPair::from_seed(&[5; 32]);
    let channel = open_demo(&ledger, 0.01).await;
    let receipt = |nonce: &str| signed_receipt(&key, nonce, 0.001, &channel.id);

    assert!(matches!(
        ledger.hold("ch_missing", None, 1, "x").await.unwrap_err(),
        PaymentError::ChannelNotFound { .. }
    ));
    let too_much = ledger
        .hold(&channel.id, None, 10_001, "x")
        .await
        .unwrap_err();
    assert!(matches!(
        too_much,
        PaymentError::InsufficientBalance {
            balance_micros: 10_000,
            needed_micros: 10_001
        }
    ));
    assert!(
        too_much.to_string().contains("0.01 USD available"),
        "{too_much}"
    );
    assert!(matches!(
        ledger
            .capture("nothing", &receipt("nothing"))
            .await
            .unwrap_err(),
        PaymentError::HoldNotFound { .. }
    ));
    assert!(matches!(
        ledger.release("nothing").await.unwrap_err(),
        PaymentError::HoldNotFound { .. }
    ));

    let a = ledger.hold(&channel.id, None, 1_000, "a").await.unwrap();
    a.capture(&receipt("a")).await.unwrap();
    assert!(matches!(
        ledger.capture("a", &receipt("a2")).await.unwrap_err(),
        PaymentError::HoldSettled {
            state: "captured",
            ..
        }
    ));
    assert!(matches!(
        ledger.release("a").await.unwrap_err(),
        PaymentError::HoldSettled {
            state: "captured",
            ..
        }
    ));

    let b = ledger.hold(&channel.id, None, 1_000, "b").await.unwrap();
    b.release(ReleaseReason::Unbilled).await.unwrap();
    ledger.release("b").await.unwrap();
    // A receipt whose nonce is taken rolls the whole capture back: the hold stays held.
    let held_c = ledger.hold(&channel.id, None, 1_000, "c").await.unwrap();
    assert!(matches!(
        ledger.capture("c", &receipt("a")).await.unwrap_err(),
        PaymentError::DuplicateReceipt { .. }
    ));
    assert!(matches!(
        ledger
            .capture("c", &serde_json::json!({"no": "nonce"}))
            .await
            .unwrap_err(),
        PaymentError::InvalidReceipt(_)
    ));
    let c = ledger.get_channel(&channel.id).await.unwrap();
    assert_eq!(
        (c.used_micros, c.held_micros, c.invocations),
        (1_000, 1_000, 1)
    );
    held_c.capture(&receipt("c")).await.unwrap();
    let c = ledger.get_channel(&channel.id).await.unwrap();
    assert_eq!(
        (c.used_micros, c.held_micros, c.balance_micros()),
        (2_000, 0, 8_000)
    );
    // Through the guard, a failed capture gives the hold back at once.
    let d = ledger.hold(&channel.id, None, 1_000, "d").await.unwrap();
    assert!(matches!(
        d.capture(&receipt("a")).await.unwrap_err(),
        PaymentError::DuplicateReceipt { .. }
    ));
    assert_eq!(
        ledger.hold_state("d").await.unwrap(),
        Some(HoldState::Released)
    );
    let c = ledger.get_channel(&channel.id).await.unwrap();
    assert_eq!(
        (c.used_micros, c.held_micros, c.balance_micros()),
        (2_000, 0, 8_000)
    );
    assert_eq!(ledger.holds_dropped(), 0);
}

/// A guard dropped unsettled releases its hold exactly once, from a spawned task, and is
/// counted; settled guards are not.
pub async fn dropped_hold_guard_is_released_once_and_counted(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    let key = KeyPair::from_seed(&[6; 32]);
    let channel = open_demo(&ledger, 1.0).await;
    let kept = ledger
        .hold(&channel.id, None, 100_000, "kept")
        .await
        .unwrap();
    let dropped = ledger
        .hold(&channel.id, None, 200_000, "dropped")
        .await
        .unwrap();
    assert_eq!(ledger.holds_dropped(), 0);
    drop(dropped);
    assert_eq!(ledger.holds_dropped(), 1);
    // The release runs on a spawned task: wait for it, boundedly.
    for _ in 0..250 {
        if ledger.hold_state("dropped").await.unwrap() == Some(HoldState::Released) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        ledger.hold_state("dropped").await.unwrap(),
        Some(HoldState::Released)
    );
    // Given back once: only the kept hold is still reserved.
    let c = ledger.get_channel(&channel.id).await.unwrap();
    assert_eq!(
        (c.held_micros, c.used_micros, c.balance_micros()),
        (100_000, 0, 900_000)
    );
    // A late release by id finds it released and changes nothing.
    ledger.release("dropped").await.unwrap();
    let again = ledger.get_channel(&channel.id).await.unwrap();
    assert_eq!(again.held_micros, 100_000);

    kept.capture(&signed_receipt(&key, "kept", 0.1, &channel.id))
        .await
        .unwrap();
    let released = ledger
        .hold(&channel.id, None, 50_000, "released")
        .await
        .unwrap();
    released.release(ReleaseReason::CallFailed).await.unwrap();
    assert_eq!(ledger.holds_dropped(), 1);
    let c = ledger.get_channel(&channel.id).await.unwrap();
    assert_eq!(
        (c.held_micros, c.used_micros, c.balance_micros()),
        (0, 100_000, 900_000)
    );
}

pub async fn duplicate_hold_id_changes_nothing(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    let channel = open_demo(&ledger, 1.0).await;
    let same = ledger
        .hold(&channel.id, None, 300_000, "same")
        .await
        .unwrap();
    assert!(matches!(
        ledger
            .hold(&channel.id, None, 300_000, "same")
            .await
            .unwrap_err(),
        PaymentError::DuplicateHold { .. }
    ));
    let c = ledger.get_channel(&channel.id).await.unwrap();
    assert_eq!((c.held_micros, c.balance_micros()), (300_000, 700_000));
    assert!(matches!(
        ledger.hold(&channel.id, None, 1, "").await.unwrap_err(),
        PaymentError::InvalidRequest(_)
    ));
    same.release(ReleaseReason::CallFailed).await.unwrap();
}

pub async fn without_verifiers_payments_are_unavailable(ctx: Ctx) {
    let none = ctx.ledger(Verifiers::none(), LedgerConfig::default());
    assert!(!none.payments_available());
    let err = none
        .open_channel(OpenChannel {
            deposit_usd: 1.0,
            ..OpenChannel::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::PaymentsUnavailable));
    assert!(err.to_string().contains("AIMARKET_DEMO_PAYMENTS"), "{err}");

    // Demo only: a real-looking hash is not accepted.
    let demo_only = ctx.demo_ledger();
    let err = demo_only
        .open_channel(OpenChannel {
            deposit_usd: 1.0,
            tx_hash: Some(tx(1)),
            ..OpenChannel::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, PaymentError::DepositRejected { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("agent-"), "{err}");

    // EVM only: a deposit without a hash cannot be verified.
    let node = FakeRpc::start().await;
    let evm = ctx.ledger(
        Verifiers::new(vec![Arc::new(EvmVerifier::new(node.config(0)).unwrap())]),
        LedgerConfig::default(),
    );
    let err = evm
        .open_channel(OpenChannel {
            deposit_usd: 1.0,
            ..OpenChannel::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::TxHashRequired), "{err:?}");
    assert_eq!(ctx.count("SELECT COUNT(*) FROM channels").await, 0);
}

/// Ids and nonces come straight from request paths and bodies; PostgreSQL refuses text with
/// a NUL byte, so one must be answered "not found", not surface as a database error (500).
pub async fn nul_in_ids_is_not_found(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    let channel = open_demo(&ledger, 1.0).await;
    let bad = format!("{}\0", channel.id);
    let err = ledger.get_channel(&bad).await.unwrap_err();
    assert!(
        matches!(err, PaymentError::ChannelNotFound { .. }),
        "{err:?}"
    );
    let err = ledger.close_channel(&bad, None).await.unwrap_err();
    assert!(
        matches!(err, PaymentError::ChannelNotFound { .. }),
        "{err:?}"
    );
    let err = ledger.hold(&bad, None, 1, "h1").await.unwrap_err();
    assert!(
        matches!(err, PaymentError::ChannelNotFound { .. }),
        "{err:?}"
    );
    assert_eq!(ledger.get_receipt("n\0").await.unwrap(), None);
    assert_eq!(ledger.hold_state("h\0").await.unwrap(), None);
}

//! The EVM verifier against a fake JSON-RPC node on loopback.

use serde_json::json;

use super::rpc::{FakeRpc, RECIPIENT, STRANGER, TOKEN, receipt, transfer_log, tx};
use crate::payments::verifier::{DepositClaim, EvmVerifier, PaymentVerifier};
use crate::payments::{PaymentError, VerifiedDeposit};

fn claim(hash: &str, micros: i64) -> DepositClaim {
    DepositClaim {
        deposit_micros: micros,
        tx_hash: Some(hash.to_owned()),
        token: "USDC".into(),
        chain: "base".into(),
    }
}

#[track_caller]
fn assert_rejected(result: Result<VerifiedDeposit, PaymentError>, needle: &str) {
    match result {
        Err(PaymentError::DepositRejected { reason }) => {
            assert!(reason.contains(needle), "`{reason}` lacks `{needle}`");
        }
        other => panic!("expected a rejection mentioning `{needle}`, got {other:?}"),
    }
}

#[tokio::test]
async fn good_transfer_is_accepted_and_requires_the_secret() {
    let node = FakeRpc::start().await;
    let verifier = EvmVerifier::new(node.config(0)).unwrap();
    // 5 USDC to the hub, plus noise: another token's transfer and a transfer to someone else.
    node.set_receipt(
        &tx(1),
        receipt(
            "0x1",
            10,
            vec![
                transfer_log(STRANGER, RECIPIENT, 99_000_000),
                transfer_log(TOKEN, STRANGER, 99_000_000),
                transfer_log(TOKEN, RECIPIENT, 5_000_000),
            ],
        ),
    );
    let ok = verifier.verify(&claim(&tx(1), 5_000_000)).await.unwrap();
    assert_eq!((ok.verifier, ok.secret_required), ("evm", true));
    // Two transfers to the hub in one transaction add up.
    node.set_receipt(
        &tx(2),
        receipt(
            "0x1",
            10,
            vec![
                transfer_log(TOKEN, RECIPIENT, 2_000_000),
                transfer_log(
                    &TOKEN.to_uppercase().replace("0X", "0x"),
                    RECIPIENT,
                    3_000_000,
                ),
            ],
        ),
    );
    verifier.verify(&claim(&tx(2), 5_000_000)).await.unwrap();
}

#[tokio::test]
async fn wrong_recipient_small_amount_failed_and_unknown_are_rejected() {
    let node = FakeRpc::start().await;
    let verifier = EvmVerifier::new(node.config(0)).unwrap();
    node.set_receipt(
        &tx(1),
        receipt("0x1", 1, vec![transfer_log(TOKEN, STRANGER, 9_000_000)]),
    );
    assert_rejected(
        verifier.verify(&claim(&tx(1), 1_000_000)).await,
        "transfers nothing to this hub",
    );
    node.set_receipt(
        &tx(2),
        receipt("0x1", 1, vec![transfer_log(TOKEN, RECIPIENT, 999_999)]),
    );
    assert_rejected(
        verifier.verify(&claim(&tx(2), 1_000_000)).await,
        "transfers 999999 base units; the deposit needs 1000000",
    );
    node.set_receipt(
        &tx(3),
        receipt("0x0", 1, vec![transfer_log(TOKEN, RECIPIENT, 9_000_000)]),
    );
    assert_rejected(
        verifier.verify(&claim(&tx(3), 1_000_000)).await,
        "failed (status 0x0)",
    );
    assert_rejected(
        verifier.verify(&claim(&tx(4), 1_000_000)).await,
        "not found",
    );
    node.set_receipt(
        &tx(5),
        receipt("0x1", 1, vec![transfer_log(STRANGER, RECIPIENT, 9_000_000)]),
    );
    assert_rejected(
        verifier.verify(&claim(&tx(5), 1_000_000)).await,
        "no Transfer of token",
    );
    assert_eq!(node.calls(), 5);
}

#[tokio::test]
async fn confirmations_are_counted_when_required() {
    let node = FakeRpc::start().await;
    let verifier = EvmVerifier::new(node.config(3)).unwrap();
    node.set_receipt(
        &tx(1),
        receipt("0x1", 100, vec![transfer_log(TOKEN, RECIPIENT, 1_000_000)]),
    );
    node.set_head(101);
    assert_rejected(
        verifier.verify(&claim(&tx(1), 1_000_000)).await,
        "has 2 confirmation(s); 3 required",
    );
    node.set_head(102);
    verifier.verify(&claim(&tx(1), 1_000_000)).await.unwrap();
}

#[tokio::test]
async fn node_errors_and_outages_are_unavailable_and_never_leak_the_url() {
    let node = FakeRpc::start().await;
    let verifier = EvmVerifier::new(node.config(0)).unwrap();
    node.fail_with(json!({"code": -32000, "message": "header not found"}));
    match verifier.verify(&claim(&tx(1), 1)).await {
        Err(PaymentError::VerifierUnavailable { reason }) => {
            assert!(reason.contains("header not found"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let config = node.config(0);
    drop(node);
    // Nothing listens on the port any more (or soon): a connection error, not a rejection.
    let down = EvmVerifier::new(config).unwrap();
    match down.verify(&claim(&tx(1), 1)).await {
        Err(e @ PaymentError::VerifierUnavailable { .. }) => {
            assert!(!e.to_string().contains("SECRETKEY"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_full_transaction_hashes_are_judged() {
    let config = super::rpc::tx(0);
    let verifier = EvmVerifier::new(crate::payments::verifier::EvmConfig {
        rpc_url: "http://127.0.0.1:9/rpc".parse().unwrap(),
        recipient: RECIPIENT.parse().unwrap(),
        token_contract: TOKEN.parse().unwrap(),
        min_confirmations: 0,
    })
    .unwrap();
    assert!(verifier.accepts(&claim(&config, 1)));
    for other in ["0xdemo1", "agent-1", "0x1234", &format!("{config}00")] {
        assert!(!verifier.accepts(&claim(other, 1)), "{other}");
    }
    let mut none = claim("x", 1);
    none.tx_hash = None;
    assert!(!verifier.accepts(&none));
}

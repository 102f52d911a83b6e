//! The EVM verifier's failure handling, against a fake JSON-RPC node on loopback: node
//! errors, garbage answers and outages, which a real node does not produce on demand. The
//! verdicts on real transfers (recipient, token, amount, status, confirmations, reorgs, payer)
//! are tested against anvil in `tests/e2e/chain_deposits.rs`.

use serde_json::json;

use super::rpc::{
    FakeRpc, PAYER, RECIPIENT, STRANGER, TOKEN, payer_key, receipt, transfer_log, tx,
};
use crate::payments::chain::signature_hex;
use crate::payments::payer_proof::{PayerProof, amount_cents, message};
use crate::payments::verifier::{DepositClaim, EvmVerifier, PaymentVerifier};
use crate::payments::{PaymentError, VerifiedDeposit};

/// A claim of `micros` with a valid payer proof by [`PAYER`].
fn claim(hash: &str, micros: i64) -> DepositClaim {
    let usd = micros as f64 / 1e6;
    let text = message("base", hash, PAYER, amount_cents(usd).unwrap());
    let signature = signature_hex(&payer_key().sign_message(text.as_bytes()).unwrap());
    DepositClaim {
        deposit_micros: micros,
        deposit_usd: usd,
        payer_proof: PayerProof::parse(Some(PAYER), Some(&signature)).unwrap(),
        tx_hash: Some(hash.to_owned()),
        token: "USDC".into(),
        chain: "base".into(),
    }
}

#[track_caller]
fn assert_unavailable(result: Result<VerifiedDeposit, PaymentError>, needle: &str) {
    match result {
        Err(e @ PaymentError::VerifierUnavailable { .. }) => {
            assert!(e.to_string().contains(needle), "`{e}` lacks `{needle}`");
            assert!(!e.to_string().contains("SECRETKEY"), "{e}");
        }
        other => panic!("expected unavailable mentioning `{needle}`, got {other:?}"),
    }
}

#[tokio::test]
async fn node_errors_and_outages_are_unavailable_and_never_leak_the_url() {
    let node = FakeRpc::start().await;
    let verifier = EvmVerifier::new(node.config(0)).unwrap();
    node.fail_with(json!({"code": -32000, "message": "header not found"}));
    assert_unavailable(
        verifier.verify(&claim(&tx(1), 1_000_000)).await,
        "header not found",
    );
    let config = node.config(0);
    drop(node);
    // Nothing listens on the port any more (or soon): a connection error, not a rejection.
    let down = EvmVerifier::new(config).unwrap();
    assert_unavailable(down.verify(&claim(&tx(1), 1_000_000)).await, "");
}

#[tokio::test]
async fn garbage_answers_are_unavailable_or_rejected_never_a_panic() {
    let node = FakeRpc::start().await;
    let verifier = EvmVerifier::new(node.config(2)).unwrap();
    for (raw, needle) in [
        ("not json", "non-JSON"),
        (r#"{"jsonrpc":"2.0","id":1}"#, "no result"),
        (r#"[1,2,3]"#, "no result"),
    ] {
        node.answer_raw(raw);
        assert_unavailable(verifier.verify(&claim(&tx(1), 1_000_000)).await, needle);
    }
    let fresh = FakeRpc::start().await;
    let verifier = EvmVerifier::new(fresh.config(2)).unwrap();
    // A receipt whose block number is not a quantity: the confirmations cannot be counted.
    let mut bad_block = receipt("0x1", 1, vec![transfer_log(TOKEN, RECIPIENT, 1_000_000)]);
    bad_block["blockNumber"] = json!("ten");
    fresh.set_receipt(&tx(2), bad_block);
    assert_unavailable(
        verifier.verify(&claim(&tx(2), 1_000_000)).await,
        "malformed blockNumber",
    );
    // Malformed log data and non-ASCII topics are refused, not sliced.
    let mut bad_data = transfer_log(TOKEN, RECIPIENT, 1);
    bad_data["data"] = json!("0xé");
    fresh.set_receipt(&tx(3), receipt("0x1", 1, vec![bad_data]));
    assert!(matches!(
        verifier.verify(&claim(&tx(3), 1_000_000)).await,
        Err(PaymentError::DepositRejected { .. })
    ));
    let mut bad_topic = transfer_log(TOKEN, RECIPIENT, 1_000_000);
    bad_topic["topics"][1] = json!(format!("0x{}é{}", "0".repeat(23), "a".repeat(39)));
    fresh.set_receipt(&tx(4), receipt("0x1", 1, vec![bad_topic]));
    assert!(matches!(
        verifier.verify(&claim(&tx(4), 1_000_000)).await,
        Err(PaymentError::DepositRejected { .. })
    ));
    // A transfer log from someone else's token is not this hub's money.
    fresh.set_receipt(
        &tx(5),
        receipt("0x1", 1, vec![transfer_log(STRANGER, RECIPIENT, 9_000_000)]),
    );
    assert!(matches!(
        verifier.verify(&claim(&tx(5), 1_000_000)).await,
        Err(PaymentError::DepositRejected { .. })
    ));
}

#[tokio::test]
async fn the_payer_proof_is_checked_before_the_node_is_asked() {
    let node = FakeRpc::start().await;
    let verifier = EvmVerifier::new(node.config(0)).unwrap();
    let mut missing = claim(&tx(1), 1_000_000);
    missing.payer_proof = None;
    assert!(matches!(
        verifier.verify(&missing).await,
        Err(PaymentError::PayerProofRequired)
    ));
    // Signed for another amount: the signature recovers to someone else.
    let mut other_amount = claim(&tx(1), 2_000_000);
    other_amount.deposit_micros = 1_000_000;
    other_amount.deposit_usd = 1.0;
    assert!(matches!(
        verifier.verify(&other_amount).await,
        Err(PaymentError::PayerProofInvalid { .. })
    ));
    assert_eq!(node.calls(), 0);
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

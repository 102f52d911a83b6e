//! On-chain channel deposits against a real EVM node (anvil) and a real 6-decimals ERC-20
//! (`tests/chain/TestUSDC.sol`): the verdicts an operator with real USDC would see, and the
//! payer proof that keeps anyone else from claiming a deposit seen on-chain.

use aimarket_e2e::chain::{CHAIN_ID, Chain, dev_account, open_body};
use aimarket_e2e::{TestHub, assert_protocol_error};
use aimarket_hub::payments::ReleaseReason;
use reqwest::StatusCode;
use serde_json::{Value, json};

const OPEN: &str = "/ai-market/v2/channel/open";
const OPEN_V1: &str = "/ai-market/channel/open";

/// The payer (dev account 1), a stranger (2) and the hub's address (3).
const PAYER: usize = 1;
const STRANGER: usize = 2;
const HUB: usize = 3;

/// A chain with the token deployed and 100 tokens each for the payer and the stranger, and a
/// hub verifying deposits to its address with `confirmations`.
async fn setup(confirmations: u64) -> Option<(Chain, String, TestHub)> {
    setup_with(confirmations, false).await
}

/// [`setup`], with the hub's wallet (the key of its address) when `wallet`.
async fn setup_with(confirmations: u64, wallet: bool) -> Option<(Chain, String, TestHub)> {
    let chain = Chain::start().await?;
    let token = chain.deploy_token().await;
    for who in [PAYER, STRANGER] {
        chain.mint(&token, &dev_account(who).1, 100_000_000).await;
    }
    let (rpc, hub_address, token_address) = (chain.url.clone(), dev_account(HUB).1, token.clone());
    let hub = TestHub::builder()
        .settings(move |s| {
            s.payments.evm_rpc_url = Some(rpc.parse().unwrap());
            s.payments.recipient = Some(hub_address.parse().unwrap());
            s.payments.token_contract = Some(token_address.parse().unwrap());
            s.payments.evm_confirmations = confirmations;
            if wallet {
                s.payments.wallet_key = Some(aimarket_e2e::chain::DEV_KEYS[HUB].parse().unwrap());
            }
        })
        .start()
        .await;
    Some((chain, token, hub))
}

#[track_caller]
fn assert_refused(status: StatusCode, body: &Value, want: StatusCode, code: &str, needle: &str) {
    assert_eq!(status, want, "{body}");
    assert_protocol_error(body, code);
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(needle), "`{detail}` lacks `{needle}`");
}

#[tokio::test]
async fn a_real_deposit_opens_one_channel_for_its_payer_only() {
    let Some((chain, token, hub)) = setup(0).await else {
        return;
    };
    let (payer_key, payer) = dev_account(PAYER);
    let (stranger_key, stranger) = dev_account(STRANGER);
    let hub_address = dev_account(HUB).1;
    // 2.5 tokens, as in the issue.
    let tx = chain
        .transfer(&token, &payer, &hub_address, 2_500_000, false)
        .await;
    assert_eq!(chain.mined(&tx).await["status"], "0x1");

    // No proof: refused before anything is credited.
    let (status, body) = hub
        .post(OPEN, &json!({"deposit_usd": 2.5, "tx_hash": tx}))
        .await;
    assert_refused(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "payer_proof_required",
        "personal_sign",
    );
    // Someone who saw the hash on-chain, with a valid proof of their own wallet: 403.
    let (status, body) = hub
        .post(OPEN, &open_body(&tx, 2.5, &stranger, &stranger_key))
        .await;
    assert_refused(status, &body, StatusCode::FORBIDDEN, "not_payer", &payer);
    // Naming the payer without the payer's key: the signature is not the payer's.
    let (status, body) = hub
        .post(OPEN, &open_body(&tx, 2.5, &payer, &stranger_key))
        .await;
    assert_refused(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "payer_proof_invalid",
        &stranger[2..],
    );

    // The refusals did not burn the deposit: its owner opens the channel (hash in upper case).
    let upper = format!("0x{}", tx[2..].to_uppercase());
    let (status, body) = hub
        .post(OPEN, &open_body(&upper, 2.5, &payer, &payer_key))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["channel"]["deposit_usd"], 2.5);
    assert_eq!(body["channel"]["payer"], payer.as_str());
    assert_eq!(body["channel"]["secret_required"], true);
    let id = body["channel_id"].as_str().unwrap().to_owned();
    let secret = body["channel_secret"].as_str().unwrap().to_owned();

    // Once: the same transaction never funds a second channel, even for its payer.
    let (status, body) = hub
        .post(OPEN_V1, &open_body(&tx, 1.0, &payer, &payer_key))
        .await;
    assert_refused(
        status,
        &body,
        StatusCode::CONFLICT,
        "tx_already_used",
        "already funded",
    );

    // The v1 path takes the same proof.
    let second = chain
        .transfer(&token, &payer, &hub_address, 1_000_000, false)
        .await;
    let (status, body) = hub
        .post(OPEN_V1, &open_body(&second, 1.0, &payer, &payer_key))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Real money: a debit without the secret is refused, with it accepted.
    let ledger = &hub.state.ledger;
    let missing = ledger.hold(&id, None, 1, "h1").await.unwrap_err();
    assert_eq!(missing.reason(), Some("missing_channel_secret"));
    let held = ledger.hold(&id, Some(&secret), 1, "h2").await.unwrap();
    held.release(ReleaseReason::CallFailed).await.unwrap();
}

#[tokio::test]
async fn deposits_that_do_not_pay_the_hub_are_refused_with_a_reason() {
    let Some((chain, token, hub)) = setup(0).await else {
        return;
    };
    let (key, payer) = dev_account(PAYER);
    let stranger = dev_account(STRANGER).1;
    let hub_address = dev_account(HUB).1;
    let other_token = chain.deploy_token().await;
    chain.mint(&other_token, &payer, 100_000_000).await;

    let wrong_recipient = chain
        .transfer(&token, &payer, &stranger, 2_000_000, false)
        .await;
    let wrong_token = chain
        .transfer(&other_token, &payer, &hub_address, 2_000_000, false)
        .await;
    let short = chain
        .transfer(&token, &payer, &hub_address, 1_999_999, false)
        .await;
    // More than the payer holds, with an explicit gas limit: mined, and reverted.
    let failed = chain
        .transfer(&token, &payer, &hub_address, 900_000_000, true)
        .await;
    assert_eq!(chain.mined(&failed).await["status"], "0x0");
    let unknown = format!("0x{}", "ab".repeat(32));

    for (tx, needle) in [
        (&wrong_recipient, "transfers nothing to this hub's address"),
        (&wrong_token, "has no Transfer of token"),
        (
            &short,
            "transfers 1999999 base units; the deposit needs 2000000",
        ),
        (&failed, "failed (status 0x0)"),
        (&unknown, "not found"),
    ] {
        let (status, body) = hub.post(OPEN, &open_body(tx, 2.0, &payer, &key)).await;
        assert_refused(
            status,
            &body,
            StatusCode::PAYMENT_REQUIRED,
            "deposit_not_verified",
            needle,
        );
        assert_eq!(body["reason"], "deposit_not_verified");
    }
    // None of them was used up: the short deposit still opens a smaller channel.
    let (status, body) = hub.post(OPEN, &open_body(&short, 1.5, &payer, &key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn confirmations_are_awaited_and_a_reorg_takes_the_deposit_away() {
    let Some((chain, token, hub)) = setup(3).await else {
        return;
    };
    let (key, payer) = dev_account(PAYER);
    let hub_address = dev_account(HUB).1;
    assert_eq!(
        chain.rpc("eth_chainId", json!([])).await,
        format!("0x{CHAIN_ID:x}")
    );

    let tx = chain
        .transfer(&token, &payer, &hub_address, 1_000_000, false)
        .await;
    let (status, body) = hub.post(OPEN, &open_body(&tx, 1.0, &payer, &key)).await;
    assert_refused(
        status,
        &body,
        StatusCode::PAYMENT_REQUIRED,
        "deposit_not_verified",
        "has 1 confirmation(s); 3 required",
    );
    chain.mine(1).await;
    let (status, body) = hub.post(OPEN, &open_body(&tx, 1.0, &payer, &key)).await;
    assert_refused(
        status,
        &body,
        StatusCode::PAYMENT_REQUIRED,
        "deposit_not_verified",
        "has 2",
    );
    chain.mine(1).await;
    let (status, body) = hub.post(OPEN, &open_body(&tx, 1.0, &payer, &key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A deposit seen with too few confirmations, then reorganised out of the chain.
    let doomed = chain
        .transfer(&token, &payer, &hub_address, 1_000_000, false)
        .await;
    let (status, body) = hub.post(OPEN, &open_body(&doomed, 1.0, &payer, &key)).await;
    assert_refused(
        status,
        &body,
        StatusCode::PAYMENT_REQUIRED,
        "deposit_not_verified",
        "has 1",
    );
    let head = chain.head().await;
    // Replace the last block (the one holding the deposit) with an empty one.
    chain.rpc("anvil_reorg", json!([1, []])).await;
    assert_eq!(chain.head().await, head);
    assert!(chain.receipt(&doomed).await.is_null());
    chain.mine(5).await;
    let (status, body) = hub.post(OPEN, &open_body(&doomed, 1.0, &payer, &key)).await;
    assert_refused(
        status,
        &body,
        StatusCode::PAYMENT_REQUIRED,
        "deposit_not_verified",
        "not found",
    );
    assert_eq!(chain.balance(&token, &hub_address).await, 1_000_000);
}

#[tokio::test]
async fn close_refunds_the_unused_deposit_on_chain_exactly_once() {
    let Some((chain, token, hub)) = setup_with(0, true).await else {
        return;
    };
    let (key, payer) = dev_account(PAYER);
    let hub_address = dev_account(HUB).1;
    let tx = chain
        .transfer(&token, &payer, &hub_address, 3_000_000, false)
        .await;
    let (status, body) = hub.post(OPEN, &open_body(&tx, 3.0, &payer, &key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["channel_id"].as_str().unwrap().to_owned();
    let secret = body["channel_secret"].as_str().unwrap().to_owned();
    // 1.25 tokens are captured (a paid call), 1.75 go back.
    let ledger = &hub.state.ledger;
    let held = ledger
        .hold(&id, Some(&secret), 1_250_000, "call-1")
        .await
        .unwrap();
    let receipt = json!({"nonce": "call-1", "price_usd": 1.25, "channel_id": id});
    held.capture(&receipt).await.unwrap();

    let before = chain.balance(&token, &payer).await;
    let (status, closed) = hub
        .post("/ai-market/v2/channel/close", &json!({"channel_id": id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(closed["refund_usd"], 1.75);
    let settle = closed["settle_tx_hash"]
        .as_str()
        .expect("a refund transaction")
        .to_owned();
    let mined = chain.mined(&settle).await;
    assert_eq!(mined["status"], "0x1", "{mined}");
    assert_eq!(chain.balance(&token, &payer).await, before + 1_750_000);
    // Ledger: deposit − captured = what went back.
    assert_eq!(chain.balance(&token, &hub_address).await, 1_250_000);

    // A retried close answers the same transaction and pays nothing more.
    for _ in 0..3 {
        let (status, again) = hub
            .post("/ai-market/channel/close", &json!({"channel_id": id}))
            .await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["settle_tx_hash"], settle.as_str());
    }
    assert_eq!(chain.balance(&token, &payer).await, before + 1_750_000);
}

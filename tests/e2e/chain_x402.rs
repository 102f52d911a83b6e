//! x402 "exact" (EIP-3009) on a real chain, both directions, with the hub's wallet: a buyer's
//! authorization to the hub checked and settled once; the hub's own authorization to a
//! provider settled by that provider on the node.

use std::time::Duration;

use aimarket_e2e::TestHub;
use aimarket_e2e::chain::{CHAIN_ID, Chain, DEV_KEYS, dev_account};
use aimarket_hub::payments::PaymentError;
use aimarket_hub::payments::x402::{
    ExactPayment, TokenDomain, is_payment_to_hub, payment_response, settle_calldata,
    sign_exact_authorization,
};
use aimarket_hub::settings::Settings;
use base64::Engine as _;
use serde_json::Value;

pub(crate) const BUYER: usize = 1;
pub(crate) const PROVIDER: usize = 2;
pub(crate) const HUB: usize = 3;

pub(crate) async fn setup() -> Option<(Chain, String, TestHub, TokenDomain)> {
    setup_with(|_| {}).await
}

/// Anvil with the test token (the buyer and the hub hold 10 tokens each) and a hub whose
/// wallet is dev account [`HUB`], with `change` applied to its settings.
pub(crate) async fn setup_with(
    change: impl FnOnce(&mut Settings),
) -> Option<(Chain, String, TestHub, TokenDomain)> {
    let chain = Chain::start().await?;
    let token = chain.deploy_token().await;
    chain.mint(&token, &dev_account(BUYER).1, 10_000_000).await;
    chain.mint(&token, &dev_account(HUB).1, 10_000_000).await;
    let (rpc, hub_address, token_address) = (chain.url.clone(), dev_account(HUB).1, token.clone());
    let hub = TestHub::builder()
        .settings(move |s| {
            s.payments.evm_rpc_url = Some(rpc.parse().unwrap());
            s.payments.recipient = Some(hub_address.parse().unwrap());
            s.payments.token_contract = Some(token_address.parse().unwrap());
            s.payments.wallet_key = Some(DEV_KEYS[HUB].parse().unwrap());
            change(s);
        })
        .start()
        .await;
    let domain = TokenDomain {
        name: "USD Coin".into(),
        version: "2".into(),
        chain_id: CHAIN_ID,
        token: token.parse().unwrap(),
    };
    // The settings' defaults are USDC's domain, which the test token copies.
    assert_eq!(hub.state.ledger.payout().unwrap().domain(), &domain);
    Some((chain, token, hub, domain))
}

#[track_caller]
fn assert_x402_refused<T: std::fmt::Debug>(result: Result<T, PaymentError>, needle: &str) {
    match result {
        Err(PaymentError::X402Rejected { reason }) => {
            assert!(reason.contains(needle), "`{reason}` lacks `{needle}`");
        }
        other => panic!("expected an x402 refusal mentioning `{needle}`, got {other:?}"),
    }
}

#[tokio::test]
async fn a_buyer_pays_the_hub_with_x402_once() {
    let Some((chain, token, hub, domain)) = setup().await else {
        return;
    };
    let (buyer_key, buyer) = dev_account(BUYER);
    let (hub_key, hub_address) = dev_account(HUB);
    let provider = dev_account(PROVIDER).1;
    let ledger = &hub.state.ledger;
    let minute = Duration::from_secs(60);

    let pay = sign_exact_authorization(
        &buyer_key,
        &domain,
        "anvil",
        hub_key.address(),
        500_000,
        minute,
    )
    .unwrap();
    let header = pay.to_header();
    // The invoke code's question: does this X-PAYMENT pay the hub or the provider?
    assert!(is_payment_to_hub(&header, hub_key.address()));
    let to_provider = sign_exact_authorization(
        &buyer_key,
        &domain,
        "anvil",
        provider.parse().unwrap(),
        1,
        minute,
    )
    .unwrap();
    assert!(!is_payment_to_hub(
        &to_provider.to_header(),
        hub_key.address()
    ));
    assert!(!is_payment_to_hub("0xdeadbeef", hub_key.address()));

    let parsed = ExactPayment::parse(&header).unwrap();
    assert_eq!(parsed, pay);
    // Asking more than authorized, or for another token, is refused before anything is sent.
    assert_x402_refused(
        ledger.settle_x402(&parsed, &domain, 500_001).await,
        "costs 500001",
    );
    let mut other_token = domain.clone();
    other_token.token = buyer.parse().unwrap();
    assert_x402_refused(ledger.settle_x402(&parsed, &other_token, 1).await, "token");
    // A tampered amount no longer matches the signature.
    let mut tampered = parsed.clone();
    tampered.authorization.value = 5_000_000;
    assert_x402_refused(
        ledger.settle_x402(&tampered, &domain, 1).await,
        "not the payer's",
    );
    assert_x402_refused(ledger.settle_x402(&to_provider, &domain, 1).await, "payTo");
    let expired = sign_exact_authorization(
        &buyer_key,
        &domain,
        "anvil",
        hub_key.address(),
        500_000,
        Duration::ZERO,
    )
    .unwrap();
    assert_x402_refused(ledger.settle_x402(&expired, &domain, 1).await, "valid from");

    let hub_before = chain.balance(&token, &hub_address).await;
    let tx = ledger.settle_x402(&parsed, &domain, 400_000).await.unwrap();
    assert_eq!(chain.mined(&tx).await["status"], "0x1");
    assert_eq!(
        chain.balance(&token, &hub_address).await,
        hub_before + 500_000
    );
    assert_eq!(chain.balance(&token, &buyer).await, 10_000_000 - 500_000);
    let answer: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(payment_response(&tx, "anvil", parsed.authorization.from))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(answer["transaction"], tx.as_str());

    // Replayed: refused, and nothing moves.
    assert_x402_refused(
        ledger.settle_x402(&parsed, &domain, 400_000).await,
        "already used",
    );
    assert_eq!(
        chain.balance(&token, &hub_address).await,
        hub_before + 500_000
    );
}

#[tokio::test]
async fn the_hub_pays_a_provider_with_its_own_authorization() {
    let Some((chain, token, hub, domain)) = setup().await else {
        return;
    };
    let (_, provider) = dev_account(PROVIDER);
    let hub_address = dev_account(HUB).1;
    let payout = hub.state.ledger.payout().expect("the hub wallet");
    let pay = sign_exact_authorization(
        payout.wallet().key(),
        &domain,
        "anvil",
        provider.parse().unwrap(),
        300_000,
        Duration::from_secs(60),
    )
    .unwrap();
    // What the provider receives as X-PAYMENT, decoded and settled by the provider itself.
    let received = ExactPayment::parse(&pay.to_header()).unwrap();
    let tx = chain
        .send(
            &provider,
            Some(&token),
            &settle_calldata(&received),
            Some(200_000),
        )
        .await;
    assert_eq!(chain.mined(&tx).await["status"], "0x1");
    assert_eq!(chain.balance(&token, &provider).await, 300_000);
    assert_eq!(
        chain.balance(&token, &hub_address).await,
        10_000_000 - 300_000
    );
    // The same authorization cannot be settled twice.
    let again = chain
        .send(
            &provider,
            Some(&token),
            &settle_calldata(&received),
            Some(200_000),
        )
        .await;
    assert_eq!(chain.mined(&again).await["status"], "0x0");
}

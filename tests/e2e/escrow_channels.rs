//! Non-custodial channels end to end on anvil: the depositor opens a channel on the escrow
//! contract, the hub mirrors it, paid invokes carry the depositor's signed
//! `DebitAuthorization`s (refused with 402 before the provider is called when forged,
//! replayed, of the wrong nonce or expired), the collector debits them on-chain, and the close
//! settles: every token balance equals the ledger's figures to the base unit. A hub killed
//! between an on-chain debit and its ledger record reconciles on restart.

use std::time::Duration;

use aimarket_e2e::chain::{DEV_KEYS, dev_account};
use aimarket_e2e::provider::{Behaviour, FakeProvider, FakeTool, seed_provider};
use aimarket_e2e::{TestHub, assert_protocol_error, wait_until};
use aimarket_hub::payments::chain::signature_hex;
use aimarket_hub::payments::escrow::OnChainStatus;
use aimarket_hub::payments::payer_proof::{amount_cents, message};
use aimarket_hub::settings::Settings;
use alloy_primitives::{Address, B256, U256};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::escrow_contract::{DEPOSITOR, Escrow, HUB, MINTED, OTHER};

const INVOKE: &str = "/ai-market/v2/invoke";
/// The listed price, and what the hub debits (plus its 1% routing fee), base units.
const LIST: u64 = 400_000;
const ROUTED: u64 = 404_000;
/// Bound on waiting for the collector.
const COLLECT_WAIT: Duration = Duration::from_secs(60);

/// A hub whose wallet is dev account [`HUB`] (holding 10 tokens to pay providers), taking
/// escrow channels on `e`'s contract.
async fn hub_for(e: &Escrow, change: impl FnOnce(&mut Settings) + Send + 'static) -> TestHub {
    hub_builder(e, change).start().await
}

fn hub_builder(
    e: &Escrow,
    change: impl FnOnce(&mut Settings) + Send + 'static,
) -> aimarket_e2e::TestHubBuilder {
    let (rpc, token, contract) = (e.chain.url.clone(), e.token.clone(), e.contract.clone());
    TestHub::builder().settings(move |s| {
        s.payments.evm_rpc_url = Some(rpc.parse().unwrap());
        s.payments.recipient = Some(dev_account(HUB).1.parse().unwrap());
        s.payments.token_contract = Some(token.parse().unwrap());
        s.payments.wallet_key = Some(DEV_KEYS[HUB].parse().unwrap());
        s.payments.escrow_contract = Some(contract.parse().unwrap());
        change(s);
    })
}

/// Opens `id` with `amount` on the contract and mirrors it at `hub`; the ledger channel id.
async fn open_mirrored(e: &Escrow, hub: &TestHub, id: B256, amount: u64) -> String {
    e.open(id, amount).await;
    let (status, body) = hub
        .post(
            "/ai-market/v2/channel/open",
            &open_body(id, amount, DEPOSITOR),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["channel_id"].as_str().unwrap().to_owned()
}

/// The mirror request with the payer proof signed by dev account `signer`.
fn open_body(id: B256, amount: u64, signer: usize) -> Value {
    let (key, address) = dev_account(signer);
    let tx = format!("{id:#x}");
    let text = message(
        "base",
        &tx,
        &address,
        amount_cents(amount as f64 / 1e6).unwrap(),
    );
    let signature = signature_hex(&key.sign_message(text.as_bytes()).unwrap());
    json!({"escrow_channel_id": tx, "payer": address, "payer_signature": signature})
}

/// A `payment_authorization` signed by dev account `signer`.
fn authorization(
    e: &Escrow,
    signer: usize,
    id: B256,
    amount: u64,
    receipt: u8,
    nonce: u64,
    deadline: u64,
) -> Value {
    let hub: Address = dev_account(HUB).1.parse().unwrap();
    e.sign(
        &dev_account(signer).0,
        id,
        hub,
        amount,
        receipt,
        nonce,
        deadline,
    )
    .to_json()
}

async fn invoke(
    hub: &TestHub,
    tool: &FakeTool,
    channel: &str,
    authorization: Option<Value>,
) -> (StatusCode, Value) {
    let mut body = json!({"product_id": tool.product_id, "capability_id": tool.capability_id,
        "input": {"text": "escrowed"}});
    if let Some(a) = authorization {
        body["payment_authorization"] = a;
    }
    let (status, _, answer) = hub
        .send(
            hub.request(Method::POST, INVOKE)
                .header("X-Payment-Channel", channel)
                .json(&body),
        )
        .await;
    (status, answer)
}

#[track_caller]
fn assert_refused(status: StatusCode, answer: &Value, field: &str) {
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{answer}");
    assert_protocol_error(answer, "payment_authorization_required");
    assert_eq!(answer["field"], field, "{answer}");
    let detail = answer["detail"].as_str().unwrap();
    assert!(detail.contains("payment_authorization"), "{detail}");
    if field != "payment_authorization" {
        assert!(detail.contains(&format!(".{field}")), "{detail}");
    }
}

#[tokio::test]
async fn five_paid_calls_on_an_escrow_channel_settle_to_the_base_unit() {
    let Some(e) = Escrow::start().await else {
        return;
    };
    let (hub_address, depositor, provider_address) = (
        dev_account(HUB).1,
        dev_account(DEPOSITOR).1,
        dev_account(OTHER).1,
    );
    e.chain.mint(&e.token, &hub_address, 10_000_000).await;
    let tool = FakeTool::echo("escrowed@v1")
        .priced(0.4)
        .behaving(Behaviour::X402 {
            amount: LIST,
            pay_to: provider_address.clone(),
            asset: e.token.clone(),
            rpc_url: e.chain.url.clone(),
        });
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let hub = hub_for(&e, |_| {}).await;
    seed_provider(&hub, &provider).await;
    let (_, well_known) = hub.get("/.well-known/ai-market.json").await;
    let channels = &well_known["payment_channels"];
    assert_eq!(
        channels["kinds"],
        json!(["custodial", "escrow"]),
        "{channels}"
    );
    assert_eq!(channels["escrow"]["contract"], e.contract);
    assert_eq!(channels["escrow"]["hub"], hub_address);
    assert_eq!(channels["escrow"]["chain_id"], 31337);

    // The mirror: only the depositor's proof opens it, once.
    let id = B256::repeat_byte(0x77);
    e.open(id, 3_000_000).await;
    let (status, body) = hub
        .post(
            "/ai-market/v2/channel/open",
            &open_body(id, 3_000_000, OTHER),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_protocol_error(&body, "not_payer");
    let (status, opened) = hub
        .post(
            "/ai-market/v2/channel/open",
            &open_body(id, 3_000_000, DEPOSITOR),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    assert_eq!(opened["kind"], "escrow");
    assert_eq!(opened["escrow_channel_id"], format!("{id:#x}"));
    assert_eq!(opened["deposit_usd"], 3.0);
    assert_eq!(opened["payer"], depositor);
    let channel = opened["channel_id"].as_str().unwrap().to_owned();
    let (status, again) = hub
        .post(
            "/ai-market/v2/channel/open",
            &open_body(id, 3_000_000, DEPOSITOR),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    // Refusals, each a 402 naming the field, before the provider is called.
    let now = e.now().await;
    let deadline = now + 600;
    let calls = provider.invoke_count();
    let (status, answer) = invoke(&hub, &tool, &channel, None).await;
    assert_refused(status, &answer, "payment_authorization");
    assert_eq!(answer["needed_base_units"], ROUTED.to_string());
    let kinds = &answer["hub_payment"]["channel_kinds"];
    assert_eq!(kinds, &json!(["custodial", "escrow"]), "{answer}");
    assert_eq!(answer["hub_payment"]["escrow"]["contract"], e.contract);
    for (auth, field) in [
        (
            authorization(&e, OTHER, id, ROUTED, 1, 0, deadline),
            "signature",
        ),
        (
            authorization(&e, DEPOSITOR, id, ROUTED, 1, 3, deadline),
            "nonce",
        ),
        (
            authorization(&e, DEPOSITOR, id, ROUTED, 1, 0, now - 10),
            "deadline",
        ),
        (
            authorization(&e, DEPOSITOR, id, ROUTED + 1, 1, 0, deadline),
            "amount",
        ),
        (
            authorization(&e, DEPOSITOR, B256::repeat_byte(1), ROUTED, 1, 0, deadline),
            "channelId",
        ),
    ] {
        let (status, answer) = invoke(&hub, &tool, &channel, Some(auth)).await;
        assert_refused(status, &answer, field);
    }
    assert_eq!(provider.invoke_count(), calls, "the provider was called");

    // Five paid calls, nonces 0..4, each with its own receipt id.
    let mut first = None;
    let mut paid_to_provider = 0u64;
    for n in 0..5u8 {
        let auth = authorization(&e, DEPOSITOR, id, ROUTED, 0x10 + n, u64::from(n), deadline);
        let (status, answer) = invoke(&hub, &tool, &channel, Some(auth.clone())).await;
        assert_eq!(status, StatusCode::OK, "call {n}: {answer}");
        assert_eq!(answer["payment_rail"], "hub_channel");
        assert_eq!(
            answer["routing_receipt"]["nonce"],
            format!("{:#x}", B256::repeat_byte(0x10 + n)),
            "the buyer's receiptId is the receipt nonce"
        );
        paid_to_provider += (answer["list_price_usd"].as_f64().unwrap() * 1e6).round() as u64;
        first.get_or_insert(auth);
    }
    // Replayed: refused before the provider, whether or not it reached the chain yet.
    let calls = provider.invoke_count();
    let (status, answer) = invoke(&hub, &tool, &channel, first).await;
    assert_refused(status, &answer, "receiptId");
    assert_eq!(provider.invoke_count(), calls);

    // The collector puts the five on-chain, in order.
    let on_chain = wait_until(COLLECT_WAIT, || async {
        e.channel(id).await.nonce == U256::from(5)
    })
    .await;
    assert!(on_chain, "the debits did not reach the chain");
    let mirrored = hub.state.ledger.get_channel(&channel).await.unwrap();
    assert_eq!(mirrored.used_micros, 5 * ROUTED as i64);
    assert_eq!(e.channel(id).await.used, U256::from(mirrored.used_micros));
    let hub_before = e.balance(&hub_address).await;

    // Close: settleChannel pays the hub what the ledger captured and refunds the rest.
    let (status, settled) = hub
        .post(
            "/ai-market/v2/channel/close",
            &json!({"channel_id": channel}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{settled}");
    let tx = settled["settle_tx_hash"].as_str().unwrap();
    assert_eq!(e.chain.mined(tx).await["status"], "0x1");
    assert_eq!(settled["used_usd"], 2.02);
    assert_eq!(settled["refund_usd"], 0.98);
    let used = u128::try_from(mirrored.used_micros).unwrap();
    assert_eq!(e.channel(id).await.status, OnChainStatus::Settled);
    assert_eq!(paid_to_provider, 5 * LIST);
    assert_eq!(
        e.balance(&provider_address).await,
        u128::from(paid_to_provider)
    );
    assert_eq!(e.balance(&depositor).await, u128::from(MINTED) - used);
    assert_eq!(e.balance(&hub_address).await, hub_before + used);
    // The hub paid the providers from its wallet: what it keeps is the routing fee.
    assert_eq!(
        e.balance(&hub_address).await,
        10_000_000 + used - u128::from(paid_to_provider)
    );
    assert_eq!(e.balance(&e.contract).await, 0);
    // Closing again answers the same settlement.
    let (_, again) = hub
        .post(
            "/ai-market/v2/channel/close",
            &json!({"channel_id": channel}),
        )
        .await;
    assert_eq!(again["settle_tx_hash"], tx);
}

/// The wallet's transactions waiting in the node's pool.
async fn pending(e: &Escrow, wallet: &str) -> Vec<String> {
    let pool = e.chain.rpc("txpool_content", json!([])).await;
    let mut hashes = Vec::new();
    for (sender, txs) in pool["pending"].as_object().into_iter().flatten() {
        if sender.eq_ignore_ascii_case(wallet) {
            for tx in txs.as_object().into_iter().flat_map(|m| m.values()) {
                hashes.push(tx["hash"].as_str().unwrap().to_owned());
            }
        }
    }
    hashes
}

#[test]
fn a_hub_killed_between_the_chain_and_the_ledger_reconciles_on_restart() {
    let main = tokio::runtime::Runtime::new().unwrap();
    let Some(e) = main.block_on(Escrow::start()) else {
        return;
    };
    let tool = FakeTool::echo("escrowcrash@v1")
        .priced(0.4)
        .behaving(Behaviour::Priced {
            price_usd: 0.4,
            api_key: Some("hub-key".into()),
        });
    let provider = main.block_on(FakeProvider::builder().tool(tool.clone()).start());
    let credentials = format!("{}=apikey:hub-key", provider.url);
    let data = tempfile::tempdir().unwrap();
    let builder = |credentials: String| {
        hub_builder(&e, move |s| {
            s.invoke.peer_credentials = credentials.parse().unwrap();
        })
        .data_dir(data.path().to_path_buf())
    };
    let (hub_address, depositor) = (dev_account(HUB).1, dev_account(DEPOSITOR).1);
    let id = B256::repeat_byte(0x99);

    // The doomed hub runs on a runtime of its own, torn down as kill -9 would.
    let doomed = tokio::runtime::Runtime::new().unwrap();
    let hub = doomed.block_on(builder(credentials.clone()).start());
    let channel = doomed.block_on(async {
        seed_provider(&hub, &provider).await;
        open_mirrored(&e, &hub, id, 1_000_000).await
    });
    let deadline = main.block_on(e.now()) + 600;
    let auth = authorization(&e, DEPOSITOR, id, ROUTED, 0x42, 0, deadline);
    // Blocks stop: the call is captured and its debit broadcast, then waits to be mined.
    main.block_on(e.chain.rpc("evm_setAutomine", json!([false])));
    let (status, answer) = doomed.block_on(invoke(&hub, &tool, &channel, Some(auth)));
    assert_eq!(status, StatusCode::OK, "{answer}");
    let broadcast = main.block_on(async {
        let mut seen = Vec::new();
        for _ in 0..400 {
            seen = pending(&e, &hub_address).await;
            if !seen.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    });
    assert_eq!(broadcast.len(), 1, "the debit was broadcast");

    // kill -9 (nothing cleaned up but the index lock, which goes with a process), then the
    // debit is mined while the hub is dead: on-chain, not in the ledger.
    hub.state.catalog.close();
    std::mem::forget(hub);
    doomed.shutdown_background();
    main.block_on(async {
        e.chain.rpc("evm_setAutomine", json!([true])).await;
        e.chain.mine(1).await;
        assert_eq!(e.chain.mined(&broadcast[0]).await["status"], "0x1");
        assert_eq!(e.channel(id).await.nonce, U256::from(1));
    });

    // Restart on the same data dir: the debit is recognised (usedReceipts), not sent again.
    main.block_on(async {
        let hub = builder(credentials).start().await;
        let mirrored = hub.state.ledger.get_channel(&channel).await.unwrap();
        assert_eq!(mirrored.used_micros, ROUTED as i64);
        let debits = hub.state.ledger.escrow_debits(&channel).await.unwrap();
        assert_eq!(debits.len(), 1);
        assert_eq!(debits[0].state, "debited", "{debits:?}");
        assert_eq!(debits[0].tx_hash.as_deref(), Some(broadcast[0].as_str()));
        // The next call takes nonce 1; the close settles what the ledger captured.
        let next = authorization(&e, DEPOSITOR, id, ROUTED, 0x43, 1, deadline);
        let (status, answer) = invoke(&hub, &tool, &channel, Some(next)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let hub_before = e.balance(&hub_address).await;
        let (status, settled) = hub
            .post(
                "/ai-market/v2/channel/close",
                &json!({"channel_id": channel}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{settled}");
        let tx = settled["settle_tx_hash"].as_str().unwrap();
        assert_eq!(e.chain.mined(tx).await["status"], "0x1");
        let c = e.channel(id).await;
        assert_eq!((c.nonce, c.used), (U256::from(2), U256::from(2 * ROUTED)));
        assert_eq!(
            e.balance(&hub_address).await,
            hub_before + u128::from(2 * ROUTED)
        );
        assert_eq!(
            e.balance(&depositor).await,
            u128::from(MINTED) - u128::from(2 * ROUTED)
        );
        hub.stop().await;
    });
}

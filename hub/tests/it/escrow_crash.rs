//! Kill -9 of the real binary between an escrow debit reaching the chain and the ledger
//! recording it: the hub's `debitChannel` is broadcast but not mined (anvil's automine off),
//! the process gets SIGKILL, the debit is mined while it is dead, and the restarted binary
//! (same data dir) recognises it on-chain (`usedReceipts`) without a second transaction. The
//! paid provider is `aimarket-hub demo` (as in the README walkthrough).

use std::path::Path;
use std::time::Duration;

use aimarket_hub::payments::chain::{JsonRpc, signature_hex};
use aimarket_hub::payments::escrow::{
    DebitAuthorization, EscrowDomain, OnChainChannel, approveCall, openChannelCall, read_channel,
    sign_debit,
};
use aimarket_hub::payments::payer_proof::{amount_cents, message};
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;

use super::chain::{CHAIN_ID, Chain, DEV_KEYS, dev_account};
use super::demo::start_demo;
use super::refund_crash::{pending_hashes, post};
use super::support::{Served, WAIT, client};

const DEPOSITOR: usize = 1;
const HUB: usize = 3;
const MINTED: u64 = 10_000_000;
const DEPOSIT: u64 = 1_000_000;
/// A paid capability of the demo's factories.
const CALL: (&str, &str) = ("polyglot-translate", "translate.morse@v1");

/// An invoke on escrow channel `channel`, with `authorization` when given.
async fn invoke(base: &str, channel: &str, authorization: Option<Value>) -> (StatusCode, Value) {
    let mut body = json!({"product_id": CALL.0, "capability_id": CALL.1,
        "input": {"text": "SOS help"}});
    if let Some(a) = authorization {
        body["payment_authorization"] = a;
    }
    let response = client()
        .post(format!("{base}/ai-market/v2/invoke"))
        .header("X-Payment-Channel", channel)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap_or_default())
}

/// The escrow debits the binary recorded for `channel` (state, tx hash, nonce), read from
/// its SQLite file without writing.
async fn debits(data: &Path, channel: &str) -> Vec<(String, Option<String>, i64)> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data.join("hub.db"))
        .read_only(true);
    let mut db = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let rows = sqlx::query_as(
        "SELECT state, tx_hash, nonce FROM escrow_debits WHERE channel_id = $1 ORDER BY nonce",
    )
    .bind(channel)
    .fetch_all(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();
    rows
}

/// The wallet's transaction count, pending ones included.
async fn sent(chain: &Chain, wallet: &str) -> u64 {
    let count = chain
        .rpc("eth_getTransactionCount", json!([wallet, "pending"]))
        .await;
    u64::from_str_radix(count.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[tokio::test]
async fn an_escrow_debit_survives_kill_9_of_the_binary_and_is_sent_once() {
    let Some(chain) = Chain::start().await else {
        return;
    };
    let token = chain.deploy_token().await;
    let contract = chain.deploy_escrow().await;
    let (key, depositor) = dev_account(DEPOSITOR);
    let hub_address = dev_account(HUB).1;
    chain.mint(&token, &depositor, MINTED).await;
    let domain = EscrowDomain {
        chain_id: CHAIN_ID,
        contract: contract.parse().unwrap(),
    };
    let rpc = JsonRpc::new(chain.url.parse().unwrap()).unwrap();
    let on_chain = |id| {
        let rpc = rpc.clone();
        async move { read_channel(&rpc, domain.contract, id).await.unwrap() }
    };

    // The depositor opens escrow channel `id` with 1 token.
    let id = B256::repeat_byte(0x9d);
    let approve = approveCall {
        spender: domain.contract,
        value: U256::from(DEPOSIT),
    };
    chain
        .send_ok(&depositor, &token, &approve.abi_encode())
        .await;
    let open = openChannelCall {
        channelId: id,
        token: token.parse().unwrap(),
        depositAmount: U256::from(DEPOSIT),
    };
    chain
        .send_ok(&depositor, &contract, &open.abi_encode())
        .await;

    // The demo's factories to pay, and the hub taking escrow channels on the contract.
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(dir.path(), &dir.path().join("demo-port"));
    let data = dir.path().join("data");
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let env = [
        ("AIMARKET_EVM_RPC_URL", chain.url.as_str()),
        ("AIMARKET_PAYMENT_RECIPIENT", hub_address.as_str()),
        ("AIMARKET_PAYMENT_TOKEN_CONTRACT", token.as_str()),
        ("AIMARKET_WALLET_KEY", DEV_KEYS[HUB]),
        ("AIMARKET_ESCROW_CONTRACT", contract.as_str()),
        ("AIMARKET_DEMO_PAYMENTS", "true"),
        ("AIMARKET_SEEDS", demo.hub_url.as_str()),
        ("AIMARKET_ALLOW_PRIVATE_PEERS", "true"),
    ];
    let log = dir.path().join("stderr.log");
    let hub = Served::start(&args, &env, &log);

    // Mirror it: the depositor's payer proof with the escrow channel id as tx.
    let tx = format!("{id:#x}");
    let text = message("base", &tx, &depositor, amount_cents(1.0).unwrap());
    let signature = signature_hex(&key.sign_message(text.as_bytes()).unwrap());
    let (status, opened) = post(
        &hub.base_url,
        "/ai-market/v2/channel/open",
        &json!({"escrow_channel_id": tx, "payer": depositor, "payer_signature": signature}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    assert_eq!(opened["kind"], "escrow");
    let channel = opened["channel_id"].as_str().unwrap().to_owned();

    // Once the demo's catalog is crawled, the call asks for an authorization and its price.
    let mut answer = Value::Null;
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        let (status, body) = invoke(&hub.base_url, &channel, None).await;
        answer = body;
        if status == StatusCode::PAYMENT_REQUIRED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        answer["error"], "payment_authorization_required",
        "{answer}"
    );
    let needed: u64 = answer["needed_base_units"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let block = chain
        .rpc("eth_getBlockByNumber", json!(["latest", false]))
        .await;
    let now = block["timestamp"]
        .as_str()
        .unwrap()
        .trim_start_matches("0x");
    let until = u64::from_str_radix(now, 16).unwrap() + 600;
    let authorize = |receipt: u8, nonce: u64| {
        let debit = DebitAuthorization {
            channelId: id,
            hub: hub_address.parse::<Address>().unwrap(),
            token: token.parse().unwrap(),
            amount: U256::from(needed),
            receiptId: B256::repeat_byte(receipt),
            nonce: U256::from(nonce),
            deadline: U256::from(until),
        };
        sign_debit(&key, &domain, &debit).unwrap().to_json()
    };

    // Blocks stop: the call is captured and its debit broadcast, then waits to be mined.
    chain.rpc("evm_setAutomine", json!([false])).await;
    let (status, answer) = invoke(&hub.base_url, &channel, Some(authorize(0x42, 0))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut broadcast = Vec::new();
    for _ in 0..400 {
        broadcast = pending_hashes(&chain, &hub_address).await;
        if !broadcast.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(broadcast.len(), 1, "the debit was broadcast");
    let before = debits(&data, &channel).await;
    assert_eq!(before.len(), 1);
    assert_ne!(before[0].0, "debited", "recorded before it was mined");

    // kill -9 (`Child::kill` is SIGKILL), then the debit is mined while the hub is dead:
    // on-chain, not in the ledger.
    drop(hub);
    chain.rpc("evm_setAutomine", json!([true])).await;
    chain.mine(1).await;
    assert_eq!(chain.mined(&broadcast[0]).await["status"], "0x1");
    assert_eq!(on_chain(id).await.nonce, U256::from(1));
    let wallet_sends = sent(&chain, &hub_address).await;
    assert_ne!(debits(&data, &channel).await[0].0, "debited");

    // Restart on the same data dir: the debit is recognised (usedReceipts), not sent again.
    let hub = Served::start(&args, &env, &log);
    let rows = debits(&data, &channel).await;
    assert_eq!(
        rows,
        vec![("debited".to_owned(), Some(broadcast[0].clone()), 0)],
        "stderr:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        sent(&chain, &hub_address).await,
        wallet_sends,
        "a second tx"
    );
    assert!(pending_hashes(&chain, &hub_address).await.is_empty());
    let mirrored: Value = client()
        .get(format!("{}/ai-market/v2/channel/{channel}", hub.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        mirrored["used_usd"],
        json!(needed as f64 / 1e6),
        "{mirrored}"
    );

    // The next call takes nonce 1; the close settles what the ledger captured.
    let (status, answer) = invoke(&hub.base_url, &channel, Some(authorize(0x43, 1))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let hub_before = chain.balance(&token, &hub_address).await;
    let (status, settled) = post(
        &hub.base_url,
        "/ai-market/v2/channel/close",
        &json!({"channel_id": channel}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{settled}");
    let settle = settled["settle_tx_hash"].as_str().unwrap();
    assert_eq!(chain.mined(settle).await["status"], "0x1");
    let c: OnChainChannel = on_chain(id).await;
    assert_eq!((c.nonce, c.used), (U256::from(2), U256::from(2 * needed)));
    let rows = debits(&data, &channel).await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.0 == "debited"), "{rows:?}");
    assert_eq!(rows[0].1.as_deref(), Some(broadcast[0].as_str()));
    assert_eq!(
        chain.balance(&token, &hub_address).await,
        hub_before + u128::from(2 * needed)
    );
    assert_eq!(
        chain.balance(&token, &depositor).await,
        u128::from(MINTED - 2 * needed)
    );
    assert_eq!(chain.balance(&token, &contract).await, 0);
}

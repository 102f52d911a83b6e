//! Kill -9 around channel close with the hub's wallet: the refund is written ahead, so a hub
//! killed after broadcasting (but before recording the outcome), or after recording (but
//! before the node ever saw the transaction), pays each refund exactly once after restart.
//! Runs the real binary against anvil.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::chain::{Chain, DEV_KEYS, dev_account, open_body};
use super::support::{Served, client};

const PAYER: usize = 1;
const HUB: usize = 3;

/// POSTs `body` as JSON: the status and the JSON answer (`null` when none).
pub(crate) async fn post(base: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = client()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// The wallet's transactions waiting in the node's pool, by hash.
pub(crate) async fn pending_hashes(chain: &Chain, wallet: &str) -> Vec<String> {
    let pool = chain.rpc("txpool_content", json!([])).await;
    let mut hashes = Vec::new();
    if let Some(by_sender) = pool["pending"].as_object() {
        for (sender, txs) in by_sender {
            if sender.eq_ignore_ascii_case(wallet) {
                for tx in txs.as_object().into_iter().flat_map(|m| m.values()) {
                    hashes.push(tx["hash"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    hashes
}

#[tokio::test]
async fn refunds_survive_kill_9_and_are_paid_once() {
    let Some(chain) = Chain::start().await else {
        return;
    };
    let token = chain.deploy_token().await;
    let (key, payer) = dev_account(PAYER);
    let hub_address = dev_account(HUB).1;
    chain.mint(&token, &payer, 10_000_000).await;
    let dir = tempfile::tempdir().unwrap();
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
    ];
    let log = dir.path().join("stderr.log");
    let hub = Served::start(&args, &env, &log);

    // Two channels of 2 and 3 tokens.
    let mut channels = Vec::new();
    for amount in [2_000_000u64, 3_000_000] {
        let tx = chain
            .transfer(&token, &payer, &hub_address, amount, false)
            .await;
        let usd = amount as f64 / 1e6;
        let (status, body) = post(
            &hub.base_url,
            "/ai-market/v2/channel/open",
            &open_body(&tx, usd, &payer, &key),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        channels.push(body["channel_id"].as_str().unwrap().to_owned());
    }
    let start = chain.balance(&token, &payer).await;

    // Blocks stop: both closes sign, record and broadcast their refunds, then wait.
    chain.rpc("evm_setAutomine", json!([false])).await;
    let mut closes = Vec::new();
    for id in &channels {
        let base = hub.base_url.clone();
        let id = id.clone();
        closes.push(tokio::spawn(async move {
            post(
                &base,
                "/ai-market/v2/channel/close",
                &json!({"channel_id": id}),
            )
            .await
        }));
    }
    let mut pending = Vec::new();
    for _ in 0..200 {
        pending = pending_hashes(&chain, &hub_address).await;
        if pending.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pending.len(), 2, "both refunds broadcast");

    // kill -9 while both wait for their receipts.
    drop(hub);
    for close in closes {
        close.abort();
    }
    // One refund is mined while the hub is dead (sent, never recorded); the other is lost
    // from the pool, as if the hub had died before broadcasting it.
    let (lost, sent) = (pending[1].clone(), pending[0].clone());
    chain.rpc("anvil_dropTransaction", json!([lost])).await;
    chain.rpc("evm_setAutomine", json!([true])).await;
    chain.mine(1).await;
    assert_eq!(chain.mined(&sent).await["status"], "0x1");
    assert!(chain.receipt(&lost).await.is_null());
    let paid_once = chain.balance(&token, &payer).await;
    assert!(paid_once == start + 2_000_000 || paid_once == start + 3_000_000);

    // Restart: the recorded refunds are reconciled (the lost one re-broadcast) before serving.
    let hub = Served::start(&args, &env, &log);
    assert_eq!(chain.mined(&lost).await["status"], "0x1");
    let expected = start + 5_000_000;
    assert_eq!(chain.balance(&token, &payer).await, expected);
    for id in &channels {
        let (status, body) = post(
            &hub.base_url,
            "/ai-market/v2/channel/close",
            &json!({"channel_id": id}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let settle = body["settle_tx_hash"].as_str().unwrap();
        assert!(
            pending.iter().any(|h| h == settle),
            "{settle} not in {pending:?}"
        );
    }
    // And once more after another kill -9: nothing is paid twice.
    drop(hub);
    let hub = Served::start(&args, &env, &log);
    for id in &channels {
        let (status, _) = post(
            &hub.base_url,
            "/ai-market/v2/channel/close",
            &json!({"channel_id": id}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    chain.mine(2).await;
    assert_eq!(chain.balance(&token, &payer).await, expected);
    // Ledger: the hub keeps deposit − refunds = nothing captured = 0.
    assert_eq!(chain.balance(&token, &hub_address).await, 0);
}

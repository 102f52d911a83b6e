//! A fake Ethereum JSON-RPC node on 127.0.0.1, only for faults a real node does not produce
//! (error answers, garbage, outages). Real deposits are tested against anvil in the e2e
//! suite (`tests/e2e/chain_deposits.rs`).

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::payments::chain::transfer_topic;
use crate::payments::verifier::EvmConfig;

/// The token contract the test hub accepts.
pub const TOKEN: &str = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913";
/// The hub's payment address.
pub const RECIPIENT: &str = "0x1111111111111111111111111111111111111111";
/// Somebody else.
pub const STRANGER: &str = "0x2222222222222222222222222222222222222222";
/// The depositor: the address of the key `0x42…42` ([`payer_key`]).
pub const PAYER: &str = "0x17c5185167401ed00cf5f5b2fc97d9bbfdb7d025";

/// The depositor's key (the payer-proof vectors' test key).
pub fn payer_key() -> crate::payments::chain::WalletKey {
    crate::payments::chain::WalletKey::from_hex(&"42".repeat(32)).unwrap()
}

#[derive(Default)]
struct Node {
    receipts: HashMap<String, Value>,
    error: Option<Value>,
    raw: Option<String>,
    calls: usize,
}

/// A running fake node; stopped when dropped.
pub struct FakeRpc {
    /// `http://127.0.0.1:PORT/rpc/KEY` (the path mimics a provider API key).
    pub url: String,
    node: Arc<Mutex<Node>>,
    handle: ServerHandle,
}

async fn answer(node: web::Data<Arc<Mutex<Node>>>, body: web::Json<Value>) -> HttpResponse {
    let mut node = node.lock().unwrap();
    node.calls += 1;
    let id = body.get("id").cloned().unwrap_or(Value::Null);
    if let Some(raw) = node.raw.clone() {
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(raw);
    }
    if let Some(error) = node.error.clone() {
        return HttpResponse::Ok().json(json!({"jsonrpc": "2.0", "id": id, "error": error}));
    }
    let result = match body["method"].as_str() {
        Some("eth_getTransactionReceipt") => body["params"][0]
            .as_str()
            .and_then(|h| node.receipts.get(h).cloned())
            .unwrap_or(Value::Null),
        _ => {
            return HttpResponse::Ok().json(json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": "method not found"}}));
        }
    };
    HttpResponse::Ok().json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

impl FakeRpc {
    pub async fn start() -> Self {
        crate::startup::install_crypto_provider();
        let node = Arc::new(Mutex::new(Node::default()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let data = web::Data::new(node.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/rpc/{key}", web::post().to(answer))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}/rpc/SECRETKEY"),
            node,
            handle,
        }
    }

    pub fn set_receipt(&self, hash: &str, receipt: Value) {
        self.node
            .lock()
            .unwrap()
            .receipts
            .insert(hash.to_owned(), receipt);
    }

    /// Answers every call with `body` verbatim instead (garbage, wrong shapes).
    pub fn answer_raw(&self, body: &str) {
        self.node.lock().unwrap().raw = Some(body.to_owned());
    }

    pub fn fail_with(&self, error: Value) {
        self.node.lock().unwrap().error = Some(error);
    }

    pub fn calls(&self) -> usize {
        self.node.lock().unwrap().calls
    }

    /// The verifier configuration pointing at this node.
    pub fn config(&self, min_confirmations: u64) -> EvmConfig {
        EvmConfig {
            rpc_url: self.url.parse().unwrap(),
            recipient: RECIPIENT.parse().unwrap(),
            token_contract: TOKEN.parse().unwrap(),
            min_confirmations,
        }
    }
}

impl Drop for FakeRpc {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn address_topic(address: &str) -> String {
    format!("0x{:0>64}", address.trim_start_matches("0x"))
}

/// An ERC-20 `Transfer(PAYER, to, amount)` log emitted by `token`.
pub fn transfer_log(token: &str, to: &str, amount: u128) -> Value {
    json!({
        "address": token,
        "topics": [transfer_topic(), address_topic(PAYER), address_topic(to)],
        "data": format!("0x{amount:064x}"),
    })
}

/// A transaction receipt with `status` ("0x1" success, "0x0" reverted) in block `block`.
pub fn receipt(status: &str, block: u64, logs: Vec<Value>) -> Value {
    json!({"status": status, "blockNumber": format!("0x{block:x}"), "logs": logs})
}

/// A well-formed transaction hash numbered `n`.
pub fn tx(n: u32) -> String {
    format!("0x{n:064x}")
}

/// A channel open of `usd` funded by `hash`, with [`PAYER`]'s payer proof.
pub fn proven_open(hash: &str, usd: f64) -> crate::payments::OpenChannel {
    use crate::payments::payer_proof::{amount_cents, message};
    let text = message("base", hash, PAYER, amount_cents(usd).unwrap());
    let signature = payer_key().sign_message(text.as_bytes()).unwrap();
    crate::payments::OpenChannel {
        deposit_usd: usd,
        tx_hash: Some(hash.to_owned()),
        payer: Some(PAYER.to_owned()),
        payer_signature: Some(crate::payments::chain::signature_hex(&signature)),
        ..Default::default()
    }
}

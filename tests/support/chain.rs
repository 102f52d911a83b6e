//! A real local EVM chain for the payment tests: anvil on a free loopback port, with the test
//! token `tests/chain/TestUSDC.sol` (6 decimals, EIP-3009) compiled by solcjs and deployed.
//!
//! The tools come from `.ci/chain-tools` (npm `@foundry-rs/anvil` and `solc`, pinned) in
//! `AIMARKET_CHAIN_TOOLS` (default `~/.cache/aimarket-hub/chain-tools`). Without them a test
//! is skipped with a message, except under CI (env `CI` set), where it fails.
//!
//! Accounts are anvil's well-known dev accounts (unlocked on the node, keys public), so the
//! tests send transactions with `eth_sendTransaction` and sign proofs with the keys.
//!
//! The hub's binary tests (`hub/tests/it`) include this file too (`#[path]`), for the kill -9
//! tests around channel close and escrow debits.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aimarket_hub::payments::chain::{WalletKey, balance_of_calldata, transfer_calldata};
use serde_json::{Value, json};

/// Anvil's dev account keys (from its default mnemonic), in account order.
pub const DEV_KEYS: [&str; 4] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];
/// The chain id anvil runs with.
pub const CHAIN_ID: u64 = 31337;
/// Gas for a token transfer sent with an explicit limit (so a reverting one is still mined).
const TRANSFER_GAS: u64 = 120_000;

/// A dev account: its key (for signatures) and `0x…` lower-case address.
pub fn dev_account(index: usize) -> (WalletKey, String) {
    let key = WalletKey::from_hex(DEV_KEYS[index]).expect("a dev key");
    let address = format!("{:#x}", key.address());
    (key, address)
}

/// Where `.ci/chain-tools` installs anvil and solc.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("AIMARKET_CHAIN_TOOLS").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/aimarket-hub/chain-tools"),
    }
}

fn anvil_binary() -> PathBuf {
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    tools_dir().join(format!(
        "node_modules/@foundry-rs/anvil-linux-{arch}/bin/anvil"
    ))
}

/// Whether the tools are missing; panics under CI (a chain test must not silently pass).
fn tools_missing() -> bool {
    let solc = tools_dir().join("node_modules/solc/solc.js");
    if anvil_binary().is_file() && solc.is_file() {
        return false;
    }
    let message = format!(
        "anvil/solc not found under {} (run .ci/chain-tools)",
        tools_dir().display()
    );
    assert!(std::env::var_os("CI").is_none(), "CI is set: {message}");
    eprintln!("skipping a chain test: {message}");
    true
}

/// The workspace root: the first ancestor of the compiling crate holding the token source
/// (this file is also compiled into the hub's binary tests, from another crate folder).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .take(3)
        .find(|dir| dir.join("tests/chain/TestUSDC.sol").is_file())
        .expect("tests/chain/TestUSDC.sol above the crate")
        .to_path_buf()
}

/// The workspace's `target/` (or `CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Compiles the test token once per source version (cached under `target/chain-artifacts/`)
/// and returns its creation bytecode as hex.
pub fn token_bytecode() -> String {
    compile("tests/chain", "TestUSDC.sol", "TestUSDC")
}

/// Compiles the escrow contract `contracts/AIMarketEscrow.sol` (cached like the token) and
/// returns its creation bytecode as hex.
pub fn escrow_bytecode() -> String {
    compile("contracts", "AIMarketEscrow.sol", "AIMarketEscrow")
}

/// Compiles `file` in the workspace folder `dir` with solcjs, once per source version, and
/// returns the creation bytecode of `contract` as hex.
fn compile(dir: &str, file: &str, contract: &str) -> String {
    use std::hash::{Hash, Hasher};
    let source_dir = workspace_root().join(dir);
    let source = std::fs::read_to_string(source_dir.join(file)).expect("contract source");
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut hasher);
    let out = target_dir().join(format!("chain-artifacts/{:016x}", hasher.finish()));
    let stem = file.trim_end_matches(".sol");
    let bin = out.join(format!("{stem}_sol_{contract}.bin"));
    if !bin.is_file() {
        // Compiled into a private folder, then renamed: parallel tests never read half a file.
        let scratch = out.with_extension(format!("tmp{}", std::process::id()));
        let status = Command::new("node")
            .arg(tools_dir().join("node_modules/solc/solc.js"))
            .args(["--bin", "--optimize", "-o"])
            .arg(&scratch)
            .arg(file)
            .current_dir(&source_dir)
            .status()
            .expect("run solcjs (node)");
        assert!(status.success(), "solcjs failed to compile {file}");
        std::fs::create_dir_all(out.parent().expect("a parent")).expect("artifact folder");
        if std::fs::rename(&scratch, &out).is_err() {
            // Another test got there first.
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    std::fs::read_to_string(&bin)
        .expect("compiled contract")
        .trim()
        .to_owned()
}

/// A running anvil; killed when dropped.
pub struct Chain {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
    client: reqwest::Client,
}

impl Drop for Chain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Chain {
    /// Starts anvil (one block per transaction), or `None` when the tools are missing
    /// outside CI.
    pub async fn start() -> Option<Self> {
        Self::start_with(&[]).await
    }

    /// Starts anvil with extra arguments (e.g. `--no-mining`).
    pub async fn start_with(args: &[&str]) -> Option<Self> {
        if tools_missing() {
            return None;
        }
        aimarket_hub::startup::install_crypto_provider();
        let client = reqwest::Client::new();
        // The port is free when chosen; another process may take it before anvil binds, so
        // a few attempts.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = Command::new(anvil_binary())
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--chain-id", &CHAIN_ID.to_string(), "--silent"])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn anvil");
            let mut chain = Self {
                url: format!("http://127.0.0.1:{port}"),
                child,
                client: client.clone(),
            };
            for _ in 0..100 {
                if chain.try_rpc("eth_chainId", json!([])).await.is_ok() {
                    return Some(chain);
                }
                if matches!(chain.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("anvil did not start");
    }

    async fn try_rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let body: Value = self
            .client
            .post(&self.url)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match body.get("error") {
            Some(error) => Err(error.to_string()),
            None => Ok(body["result"].clone()),
        }
    }

    /// One JSON-RPC call; panics on a node error.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Sends a transaction from an unlocked dev account; its hash.
    pub async fn send(
        &self,
        from: &str,
        to: Option<&str>,
        data: &[u8],
        gas: Option<u64>,
    ) -> String {
        let mut tx = json!({"from": from, "data": format!("0x{}", hex(data))});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        if let Some(gas) = gas {
            tx["gas"] = json!(format!("0x{gas:x}"));
        }
        self.rpc("eth_sendTransaction", json!([tx]))
            .await
            .as_str()
            .expect("a tx hash")
            .to_owned()
    }

    /// `eth_call` of `data` on `to` from `from` at the latest block: the answer's bytes, or
    /// the node's error object (a revert carries the error's ABI encoding in `data`).
    pub async fn call(&self, from: &str, to: &str, data: &[u8]) -> Result<Vec<u8>, Value> {
        let body: Value = self
            .client
            .post(&self.url)
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [
                {"from": from, "to": to, "data": format!("0x{}", hex(data))}, "latest"]}),
            )
            .send()
            .await
            .expect("eth_call")
            .json()
            .await
            .expect("eth_call answer");
        if let Some(error) = body.get("error") {
            return Err(error.clone());
        }
        let digits = body["result"]
            .as_str()
            .expect("call data")
            .trim_start_matches("0x");
        Ok((0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
            .collect())
    }

    /// Sends `data` to `to` from the unlocked `from` and waits for it; panics unless it
    /// succeeded. The receipt.
    pub async fn send_ok(&self, from: &str, to: &str, data: &[u8]) -> Value {
        let hash = self.send(from, Some(to), data, Some(500_000)).await;
        let receipt = self.mined(&hash).await;
        assert_eq!(receipt["status"], "0x1", "transaction reverted: {receipt}");
        receipt
    }

    /// The receipt of `hash` (`null` when unknown).
    pub async fn receipt(&self, hash: &str) -> Value {
        self.rpc("eth_getTransactionReceipt", json!([hash])).await
    }

    /// The receipt of `hash` once mined: anvil may answer the send a moment before the
    /// receipt is queryable. Waits at most 5 s.
    pub async fn mined(&self, hash: &str) -> Value {
        for _ in 0..100 {
            let receipt = self.receipt(hash).await;
            if !receipt.is_null() {
                return receipt;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("transaction {hash} was not mined");
    }

    /// Deploys a fresh test token from dev account 0; its address.
    pub async fn deploy_token(&self) -> String {
        self.deploy(&token_bytecode()).await
    }

    /// Deploys a fresh escrow contract from dev account 0; its address.
    pub async fn deploy_escrow(&self) -> String {
        self.deploy(&escrow_bytecode()).await
    }

    /// Deploys creation bytecode `code` (hex) from dev account 0; the contract's address.
    async fn deploy(&self, code: &str) -> String {
        let code = (0..code.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&code[i..i + 2], 16).expect("hex bytecode"))
            .collect::<Vec<u8>>();
        let (_, deployer) = dev_account(0);
        let hash = self.send(&deployer, None, &code, Some(3_000_000)).await;
        let receipt = self.mined(&hash).await;
        assert_eq!(receipt["status"], "0x1", "deployment failed: {receipt}");
        receipt["contractAddress"]
            .as_str()
            .expect("a contract address")
            .to_lowercase()
    }

    /// Mints `amount` base units of `token` to `to` (anyone may mint the test token).
    pub async fn mint(&self, token: &str, to: &str, amount: u64) {
        // mint(address,uint256): selector 0x40c10f19.
        let mut data = vec![0x40, 0xc1, 0x0f, 0x19];
        data.extend_from_slice(&[0u8; 12]);
        data.extend_from_slice(&address_bytes(to));
        data.extend_from_slice(&[0u8; 24]);
        data.extend_from_slice(&amount.to_be_bytes());
        let (_, minter) = dev_account(0);
        let hash = self.send(&minter, Some(token), &data, None).await;
        assert_eq!(self.mined(&hash).await["status"], "0x1");
    }

    /// `from` sends `amount` base units of `token` to `to`; the tx hash. With `gas` the
    /// transaction is mined even when it reverts.
    pub async fn transfer(
        &self,
        token: &str,
        from: &str,
        to: &str,
        amount: u64,
        gas: bool,
    ) -> String {
        let to = to.parse().expect("an address");
        let data = transfer_calldata(to, amount);
        let hash = self
            .send(from, Some(token), &data, gas.then_some(TRANSFER_GAS))
            .await;
        self.mined(&hash).await;
        hash
    }

    /// `owner`'s balance of `token`, base units.
    pub async fn balance(&self, token: &str, owner: &str) -> u128 {
        let data = balance_of_calldata(owner.parse().expect("an address"));
        let answer = self
            .rpc(
                "eth_call",
                json!([{"to": token, "data": format!("0x{}", hex(&data))}, "latest"]),
            )
            .await;
        let digits = answer.as_str().expect("call data").trim_start_matches("0x");
        u128::from_str_radix(&digits[digits.len() - 32..], 16).expect("a balance")
    }

    /// Mines `blocks` empty blocks.
    pub async fn mine(&self, blocks: u64) {
        self.rpc("anvil_mine", json!([format!("0x{blocks:x}")]))
            .await;
    }

    /// Current block number.
    pub async fn head(&self) -> u64 {
        let head = self.rpc("eth_blockNumber", json!([])).await;
        u64::from_str_radix(
            head.as_str().expect("a quantity").trim_start_matches("0x"),
            16,
        )
        .expect("a block number")
    }
}

/// 20 bytes of a `0x` address.
fn address_bytes(address: &str) -> Vec<u8> {
    let digits = address.trim_start_matches("0x");
    (0..40)
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex address"))
        .collect()
}

/// An open body for `tx` of `usd` by `payer`, with the payer proof signed by `signer`.
pub fn open_body(tx: &str, usd: f64, payer: &str, signer: &WalletKey) -> Value {
    use aimarket_hub::payments::chain::signature_hex;
    use aimarket_hub::payments::payer_proof::{amount_cents, message};
    let text = message("base", tx, payer, amount_cents(usd).expect("an amount"));
    let signature = signature_hex(&signer.sign_message(text.as_bytes()).expect("a signature"));
    json!({"deposit_usd": usd, "tx_hash": tx, "payer": payer, "payer_signature": signature})
}

/// Lower-case hex without `0x`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Settles an x402 exact `X-PAYMENT` value on the node at `rpc_url` the way a seller does:
/// `transferWithAuthorization` on `token`, sent from the unlocked dev account `from`. The
/// mined transaction's hash, or why it did not settle.
pub async fn settle_x402_header(
    rpc_url: &str,
    from: &str,
    token: &str,
    header: &str,
) -> Result<String, String> {
    use aimarket_hub::payments::x402::{ExactPayment, settle_calldata};
    let payment = ExactPayment::parse(header).map_err(|e| e.to_string())?;
    let client = reqwest::Client::new();
    let rpc = |method: &'static str, params: Value| {
        let client = client.clone();
        async move {
            let body: Value = client
                .post(rpc_url)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            match body.get("error") {
                Some(error) => Err(error.to_string()),
                None => Ok(body["result"].clone()),
            }
        }
    };
    let tx = json!({"from": from, "to": token, "gas": "0x30d40",
        "data": format!("0x{}", hex(&settle_calldata(&payment)))});
    let hash = rpc("eth_sendTransaction", json!([tx])).await?;
    let hash = hash.as_str().ok_or("no tx hash")?.to_owned();
    for _ in 0..100 {
        let receipt = rpc("eth_getTransactionReceipt", json!([hash])).await?;
        if !receipt.is_null() {
            return if receipt["status"] == "0x1" {
                Ok(hash)
            } else {
                Err(format!("{hash} reverted"))
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{hash} was not mined"))
}

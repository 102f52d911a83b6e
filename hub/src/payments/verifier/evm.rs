//! The EVM deposit verifier: `eth_getTransactionReceipt` over JSON-RPC, then an ERC-20
//! `Transfer(address,address,uint256)` log from the configured token contract to the hub's
//! recipient address, of at least the deposit in token base units (6 decimals, so one base
//! unit is one micro-dollar).

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{DepositClaim, PaymentVerifier, VerifiedDeposit};
use crate::payments::PaymentError;
use crate::settings::{EvmAddress, PaymentSettings, RpcUrl};

/// `keccak256("Transfer(address,address,uint256)")`, the ERC-20 Transfer event topic.
pub const TRANSFER_TOPIC: &str =
    "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c2a11628f55a4df523b3ef";
/// Whole-request bound on one JSON-RPC call.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JSON-RPC answer read (a receipt with many logs is still far smaller).
const MAX_RPC_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What the EVM verifier checks against.
#[derive(Debug, Clone, PartialEq)]
pub struct EvmConfig {
    /// JSON-RPC endpoint (operator-configured; never logged in full).
    pub rpc_url: RpcUrl,
    /// The hub's address deposits must go to.
    pub recipient: EvmAddress,
    /// The ERC-20 token contract deposits must use.
    pub token_contract: EvmAddress,
    /// Blocks required on top of the deposit, counting its own; 0 = no check.
    pub min_confirmations: u64,
}

impl EvmConfig {
    /// The configuration when all three EVM settings are present.
    pub fn from_settings(p: &PaymentSettings) -> Option<Self> {
        Some(Self {
            rpc_url: p.evm_rpc_url.clone()?,
            recipient: p.recipient.clone()?,
            token_contract: p.token_contract.clone()?,
            min_confirmations: p.evm_confirmations,
        })
    }
}

/// Verifies `0x…` 32-byte transaction hashes on an EVM chain.
#[derive(Debug, Clone)]
pub struct EvmVerifier {
    config: EvmConfig,
    client: reqwest::Client,
}

fn unavailable(reason: impl Into<String>) -> PaymentError {
    PaymentError::VerifierUnavailable {
        reason: reason.into(),
    }
}

fn rejected(reason: impl Into<String>) -> PaymentError {
    PaymentError::DepositRejected {
        reason: reason.into(),
    }
}

/// Parses a JSON-RPC quantity (`0x1a`).
fn quantity(v: Option<&Value>, what: &str) -> Result<u64, PaymentError> {
    v.and_then(Value::as_str)
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| unavailable(format!("node answered a malformed {what}")))
}

/// The 32-byte word of a log's `data` as an amount, saturating at `u128::MAX` (anything that
/// large covers every deposit).
fn word_amount(data: &str) -> Option<u128> {
    let hex = data.strip_prefix("0x")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (high, low) = hex.split_at(32);
    if high.bytes().any(|b| b != b'0') {
        return Some(u128::MAX);
    }
    u128::from_str_radix(low, 16).ok()
}

/// The address in an indexed `address` topic (`0x` + 24 zero digits + 40 address digits),
/// lower-case, without `0x`.
fn topic_address(topic: &str) -> Option<String> {
    let hex = topic.strip_prefix("0x")?;
    // ASCII first: the byte slices below must not cut a character (the node's JSON is input).
    if hex.len() != 64 || !hex.is_ascii() || !hex[..24].bytes().all(|b| b == b'0') {
        return None;
    }
    Some(hex[24..].to_ascii_lowercase())
}

impl EvmVerifier {
    /// A verifier with its own HTTP client (no redirects, [`RPC_TIMEOUT`]).
    pub fn new(config: EvmConfig) -> Result<Self, PaymentError> {
        crate::startup::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(RPC_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| unavailable(format!("cannot build the JSON-RPC client: {e}")))?;
        Ok(Self { config, client })
    }

    /// One JSON-RPC call; the `result` member (may be `null`).
    async fn rpc(&self, method: &str, params: Value) -> Result<Value, PaymentError> {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let response = self
            .client
            .post(self.config.rpc_url.url().clone())
            .json(&request)
            .send()
            .await
            .map_err(|e| unavailable(format!("{method}: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!(
                "{method}: node answered HTTP {status}"
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("{method}: {}", e.without_url())))?;
        if bytes.len() > MAX_RPC_BODY_BYTES {
            return Err(unavailable(format!("{method}: answer too large")));
        }
        let mut body: Value = serde_json::from_slice(&bytes)
            .map_err(|_| unavailable(format!("{method}: node answered non-JSON")))?;
        if let Some(error) = body.get("error").filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            let message: String = message.chars().take(200).collect();
            return Err(unavailable(format!("{method}: node error: {message}")));
        }
        match body.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(unavailable(format!("{method}: answer has no result"))),
        }
    }

    async fn check(&self, claim: &DepositClaim) -> Result<VerifiedDeposit, PaymentError> {
        let Some(hash) = &claim.tx_hash else {
            return Err(PaymentError::TxHashRequired);
        };
        let receipt = self.rpc("eth_getTransactionReceipt", json!([hash])).await?;
        if receipt.is_null() {
            return Err(rejected(format!(
                "transaction {hash} not found (unknown, or not mined yet)"
            )));
        }
        match receipt.get("status").and_then(Value::as_str) {
            Some("0x1") => {}
            Some(other) => {
                return Err(rejected(format!(
                    "transaction {hash} failed (status {other})"
                )));
            }
            None => return Err(rejected(format!("transaction {hash} has no status"))),
        }

        let logs = receipt
            .get("logs")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut transfers = 0usize;
        let mut paid: u128 = 0;
        for log in logs {
            let from_token = log
                .get("address")
                .and_then(Value::as_str)
                .is_some_and(|a| a.eq_ignore_ascii_case(self.config.token_contract.as_str()));
            let topics: Vec<&str> = log
                .get("topics")
                .and_then(Value::as_array)
                .map(|t| t.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !from_token || topics.len() != 3 || !topics[0].eq_ignore_ascii_case(TRANSFER_TOPIC) {
                continue;
            }
            transfers += 1;
            if topic_address(topics[2]).as_deref() != Some(self.config.recipient.hex_digits()) {
                continue;
            }
            let amount = log
                .get("data")
                .and_then(Value::as_str)
                .and_then(word_amount)
                .ok_or_else(|| rejected("a Transfer log has malformed data"))?;
            paid = paid.saturating_add(amount);
        }
        if transfers == 0 {
            return Err(rejected(format!(
                "transaction {hash} has no Transfer of token {}",
                self.config.token_contract
            )));
        }
        if paid == 0 {
            return Err(rejected(format!(
                "transaction {hash} transfers nothing to this hub's address {}",
                self.config.recipient
            )));
        }
        let needed = u128::try_from(claim.deposit_micros).unwrap_or(u128::MAX);
        if paid < needed {
            return Err(rejected(format!(
                "transaction {hash} transfers {paid} base units; the deposit needs {needed}"
            )));
        }

        if self.config.min_confirmations > 0 {
            let block = quantity(receipt.get("blockNumber"), "blockNumber")?;
            let head = quantity(
                Some(&self.rpc("eth_blockNumber", json!([])).await?),
                "block number",
            )?;
            let confirmations = head.saturating_sub(block).saturating_add(1);
            if head < block || confirmations < self.config.min_confirmations {
                return Err(rejected(format!(
                    "transaction {hash} has {} confirmation(s); {} required, retry later",
                    if head < block { 0 } else { confirmations },
                    self.config.min_confirmations
                )));
            }
        }
        Ok(VerifiedDeposit {
            verifier: "evm",
            secret_required: true,
        })
    }
}

impl PaymentVerifier for EvmVerifier {
    fn name(&self) -> &'static str {
        "evm"
    }

    /// Judges `0x` + 64 hex digit hashes (already lower-cased by the ledger).
    fn accepts(&self, claim: &DepositClaim) -> bool {
        claim.tx_hash.as_deref().is_some_and(|h| {
            h.len() == 66 && h.starts_with("0x") && h[2..].bytes().all(|b| b.is_ascii_hexdigit())
        })
    }

    fn verify<'a>(
        &'a self,
        claim: &'a DepositClaim,
    ) -> BoxFuture<'a, Result<VerifiedDeposit, PaymentError>> {
        Box::pin(self.check(claim))
    }

    fn describe(&self) -> &'static str {
        "on-chain deposits need a 0x-prefixed 32-byte transaction hash"
    }
}

#[cfg(test)]
mod tests {
    use super::topic_address;

    /// Topics come from the RPC node's JSON; a 64-byte value that is not ASCII must be
    /// refused, not sliced inside a character (a panic).
    #[test]
    fn topic_address_refuses_non_ascii_topics() {
        let address = "ab".repeat(20);
        assert_eq!(
            topic_address(&format!("0x{}{address}", "0".repeat(24))).as_deref(),
            Some(address.as_str())
        );
        let crossing = format!("0x{}é{}", "0".repeat(23), "a".repeat(39));
        assert_eq!(crossing.len(), 66);
        assert_eq!(topic_address(&crossing), None);
        assert_eq!(topic_address(&format!("0x{}", "0".repeat(63))), None);
    }
}

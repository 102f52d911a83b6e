//! The EVM deposit verifier: `eth_getTransactionReceipt` over JSON-RPC, then an ERC-20
//! `Transfer(address,address,uint256)` log from the configured token contract to the hub's
//! recipient address, of at least the deposit in token base units (6 decimals, so one base
//! unit is one micro-dollar), sent by the payer whose `AIMarket-Payer-Proof/v1` came with the
//! request. Transfers to the hub from anyone else do not count for this payer.

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{DepositClaim, PaymentVerifier, VerifiedDeposit};
use crate::payments::PaymentError;
use crate::payments::chain::{JsonRpc, rpc::quantity, transfer_topic};
use crate::settings::{EvmAddress, PaymentSettings, RpcUrl};

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
    rpc: JsonRpc,
    /// `Transfer(address,address,uint256)` topic, computed from the event's ABI.
    topic: String,
}

fn rejected(reason: impl Into<String>) -> PaymentError {
    PaymentError::DepositRejected {
        reason: reason.into(),
    }
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

/// What the Transfer logs of a receipt pay to the hub.
#[derive(Debug, Default)]
struct Tally {
    /// Transfer logs of the configured token (to anyone).
    transfers: usize,
    /// Of those, the ones to the hub's address.
    to_hub: usize,
    /// Base units the proven payer sent to the hub.
    paid: u128,
    /// Other senders of transfers to the hub (lower-case hex, no `0x`).
    others: Vec<String>,
}

impl EvmVerifier {
    /// A verifier with its own JSON-RPC client.
    pub fn new(config: EvmConfig) -> Result<Self, PaymentError> {
        let rpc = JsonRpc::new(config.rpc_url.clone())?;
        Ok(Self {
            config,
            rpc,
            topic: transfer_topic(),
        })
    }

    /// Adds up the token's `Transfer` logs to the hub, split by sender.
    fn tally(&self, logs: &[Value], payer: &str) -> Result<Tally, PaymentError> {
        let mut tally = Tally::default();
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
            if !from_token || topics.len() != 3 || !topics[0].eq_ignore_ascii_case(&self.topic) {
                continue;
            }
            tally.transfers += 1;
            if topic_address(topics[2]).as_deref() != Some(self.config.recipient.hex_digits()) {
                continue;
            }
            tally.to_hub += 1;
            let amount = log
                .get("data")
                .and_then(Value::as_str)
                .and_then(word_amount)
                .ok_or_else(|| rejected("a Transfer log has malformed data"))?;
            match topic_address(topics[1]) {
                Some(from) if from == payer => tally.paid = tally.paid.saturating_add(amount),
                Some(from) => tally.others.push(from),
                None => return Err(rejected("a Transfer log has a malformed sender")),
            }
        }
        Ok(tally)
    }

    async fn check(&self, claim: &DepositClaim) -> Result<VerifiedDeposit, PaymentError> {
        let Some(hash) = &claim.tx_hash else {
            return Err(PaymentError::TxHashRequired);
        };
        // The proof is checked before the node is asked: an impostor learns nothing.
        let proof = claim
            .payer_proof
            .as_ref()
            .ok_or(PaymentError::PayerProofRequired)?;
        proof.verify(&claim.chain, hash, claim.deposit_usd)?;
        let payer = format!("{:x}", proof.payer);
        let payer = payer.trim_start_matches("0x");

        let receipt = self
            .rpc
            .call("eth_getTransactionReceipt", json!([hash]))
            .await?;
        if receipt.is_null() {
            return Err(rejected(format!(
                "transaction {hash} not found (unknown, not mined yet, or removed by a reorg)"
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
        let tally = self.tally(logs, payer)?;
        if tally.transfers == 0 {
            return Err(rejected(format!(
                "transaction {hash} has no Transfer of token {}",
                self.config.token_contract
            )));
        }
        if tally.to_hub == 0 {
            return Err(rejected(format!(
                "transaction {hash} transfers nothing to this hub's address {}",
                self.config.recipient
            )));
        }
        if tally.paid == 0 {
            return Err(PaymentError::NotPayer {
                reason: format!(
                    "transaction {hash} pays this hub from 0x{}, not from payer 0x{payer}; \
                     only the sender can open a channel with it",
                    tally.others.join(", 0x")
                ),
            });
        }
        let needed = u128::try_from(claim.deposit_micros).unwrap_or(u128::MAX);
        if tally.paid < needed {
            return Err(rejected(format!(
                "transaction {hash} transfers {} base units; the deposit needs {needed}",
                tally.paid
            )));
        }

        if self.config.min_confirmations > 0 {
            let block = quantity(receipt.get("blockNumber"), "blockNumber")?;
            let head = self.rpc.block_number().await?;
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
            payer: Some(format!("0x{payer}")),
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

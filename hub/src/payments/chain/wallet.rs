//! The hub's wallet on the payment chain: signs EIP-1559 transactions calling the payment
//! token (refunds, x402 settlements) and broadcasts them. Transactions are built and signed
//! first and handed back as [`SignedSend`], so the caller can record them before they are
//! broadcast; broadcasting the same bytes again is harmless (same hash, same nonce), which
//! is what makes a send exactly-once across crashes.

use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use serde_json::{Value, json};

use super::key::WalletKey;
use super::rpc::{JsonRpc, quantity, unavailable};
use crate::payments::PaymentError;

/// Gas for one token call (an ERC-20 transfer costs ~35–52k, an EIP-3009 transfer ~80k).
pub const TOKEN_CALL_GAS: u64 = 150_000;
/// Poll interval while waiting for a receipt.
const RECEIPT_POLL: Duration = Duration::from_millis(200);

/// Fee policy: `maxFeePerGas = min(2 × base fee + tip, cap)`, tip from the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasPolicy {
    /// Highest `maxFeePerGas` the hub signs, wei (`AIMARKET_EVM_MAX_FEE_GWEI` × 10⁹).
    pub max_fee_per_gas_wei: u128,
}

/// A signed transaction, not necessarily broadcast yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSend {
    /// `0x…` transaction hash (lower-case).
    pub tx_hash: String,
    /// The sender account nonce it uses.
    pub nonce: u64,
    /// EIP-2718 bytes, `0x…` hex: what `eth_sendRawTransaction` takes.
    pub raw: String,
}

/// What the chain says about a sent transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendState {
    /// Mined and succeeded.
    Succeeded,
    /// Mined and reverted.
    Reverted,
    /// Not (or no longer) in a block.
    Unmined,
}

/// The hub's key plus the node it sends through.
#[derive(Debug, Clone)]
pub struct HubWallet {
    key: WalletKey,
    rpc: JsonRpc,
    chain_id: u64,
    gas: GasPolicy,
}

impl HubWallet {
    /// A wallet sending on `rpc`, which must be chain `chain_id`.
    pub fn new(key: WalletKey, rpc: JsonRpc, chain_id: u64, gas: GasPolicy) -> Self {
        Self {
            key,
            rpc,
            chain_id,
            gas,
        }
    }

    /// The wallet's address.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// The wallet's key (to sign x402 authorizations).
    pub fn key(&self) -> &WalletKey {
        &self.key
    }

    /// The chain id transactions are signed for.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The JSON-RPC client.
    pub fn rpc(&self) -> &JsonRpc {
        &self.rpc
    }

    /// The next nonce the node expects from this wallet (pending transactions included).
    pub async fn pending_nonce(&self) -> Result<u64, PaymentError> {
        let answer = self
            .rpc
            .call(
                "eth_getTransactionCount",
                json!([format!("{:#x}", self.address()), "pending"]),
            )
            .await?;
        quantity(Some(&answer), "transaction count")
    }

    /// Signs a token call of `input` on `to` with `nonce` ([`TOKEN_CALL_GAS`]), fees from the
    /// node under the cap.
    pub async fn sign_call(
        &self,
        to: Address,
        input: Vec<u8>,
        nonce: u64,
    ) -> Result<SignedSend, PaymentError> {
        self.sign_call_with_gas(to, input, nonce, TOKEN_CALL_GAS)
            .await
    }

    /// Signs a call of `input` on `to` with `nonce` and a gas limit of `gas`.
    pub async fn sign_call_with_gas(
        &self,
        to: Address,
        input: Vec<u8>,
        nonce: u64,
        gas: u64,
    ) -> Result<SignedSend, PaymentError> {
        let tip = quantity(
            Some(&self.rpc.call("eth_maxPriorityFeePerGas", json!([])).await?),
            "priority fee",
        )?;
        let block = self
            .rpc
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        let base = quantity(block.get("baseFeePerGas"), "base fee")?;
        let cap = self.gas.max_fee_per_gas_wei;
        let max_fee = (u128::from(base) * 2 + u128::from(tip)).min(cap);
        let tx = TxEip1559 {
            chain_id: self.chain_id,
            nonce,
            gas_limit: gas,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: u128::from(tip).min(max_fee),
            to: TxKind::Call(to),
            value: U256::ZERO,
            access_list: Default::default(),
            input: Bytes::from(input),
        };
        let signature = self
            .key
            .sign_hash(&tx.signature_hash())
            .map_err(unavailable)?;
        let signed = tx.into_signed(signature);
        let mut raw = Vec::with_capacity(256);
        signed.eip2718_encode(&mut raw);
        Ok(SignedSend {
            tx_hash: format!("{:#x}", signed.hash()),
            nonce,
            raw: format!("0x{}", hex::encode(raw)),
        })
    }

    /// Broadcasts `send`. A node that already has it (pending or mined) is success: the
    /// bytes are the same transaction.
    pub async fn broadcast(&self, send: &SignedSend) -> Result<(), PaymentError> {
        match self
            .rpc
            .call("eth_sendRawTransaction", json!([send.raw]))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = e.to_string().to_ascii_lowercase();
                if text.contains("already known") || text.contains("already imported") {
                    return Ok(());
                }
                // "nonce too low": fine only if it was this very transaction that used it.
                if self.state(&send.tx_hash).await? != SendState::Unmined {
                    return Ok(());
                }
                Err(e)
            }
        }
    }

    /// Whether `tx_hash` is mined, and how it went.
    pub async fn state(&self, tx_hash: &str) -> Result<SendState, PaymentError> {
        let receipt = self
            .rpc
            .call("eth_getTransactionReceipt", json!([tx_hash]))
            .await?;
        Ok(match receipt.get("status").and_then(Value::as_str) {
            _ if receipt.is_null() => SendState::Unmined,
            Some("0x1") => SendState::Succeeded,
            _ => SendState::Reverted,
        })
    }

    /// Waits (at most `wait`) for `tx_hash` to be mined.
    pub async fn wait_mined(
        &self,
        tx_hash: &str,
        wait: Duration,
    ) -> Result<SendState, PaymentError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let state = self.state(tx_hash).await?;
            if state != SendState::Unmined || tokio::time::Instant::now() >= deadline {
                return Ok(state);
            }
            tokio::time::sleep(RECEIPT_POLL).await;
        }
    }
}

//! On-chain refunds: closing a channel funded by a verified deposit sends `deposit − captured`
//! back to the proven payer from the hub's wallet, exactly once.
//!
//! Write-ahead: the transaction is signed with a fixed nonce and stored in `chain_sends`
//! (and its hash named as the channel's `settle_tx_hash`) before it is broadcast. A retried
//! close finds the row and re-broadcasts the same bytes; a hub killed anywhere in between
//! re-broadcasts or records the stored transaction on its next start
//! ([`Ledger::reconcile_sends`]). The same bytes are the same transaction, so the refund can
//! be sent any number of times and is paid once.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;

use super::chain::{HubWallet, SendState, SignedSend, transfer_calldata};
use super::{Channel, Ledger, PaymentError};
use crate::store::{NewChainSend, SendRow, now_ms};

/// How long a close waits for its refund to be mined before answering with the hash anyway
/// (the send is recorded; reconciliation finishes it).
pub const REFUND_WAIT: Duration = Duration::from_secs(30);

/// The hub's wallet and the token it pays in; sends are signed one at a time so that nonces
/// never collide.
#[derive(Debug)]
pub struct Payout {
    wallet: HubWallet,
    token: Address,
    domain: super::x402::TokenDomain,
    nonce_lock: tokio::sync::Mutex<()>,
}

impl Payout {
    /// Pays in `token` (EIP-712 domain `name`/`version`) from `wallet`.
    pub fn new(wallet: HubWallet, token: Address, name: &str, version: &str) -> Arc<Self> {
        let domain = super::x402::TokenDomain {
            name: name.to_owned(),
            version: version.to_owned(),
            chain_id: wallet.chain_id(),
            token,
        };
        Arc::new(Self {
            wallet,
            token,
            domain,
            nonce_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The token's EIP-712 domain (x402 authorizations).
    pub fn domain(&self) -> &super::x402::TokenDomain {
        &self.domain
    }

    /// The wallet.
    pub fn wallet(&self) -> &HubWallet {
        &self.wallet
    }

    /// The token contract.
    pub fn token(&self) -> Address {
        self.token
    }
}

/// Which contract a wallet transaction calls, with what gas limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContractCall {
    /// The contract.
    pub contract: Address,
    /// Gas limit.
    pub gas: u64,
}

impl From<SendRow> for SignedSend {
    fn from(r: SendRow) -> Self {
        SignedSend {
            tx_hash: r.tx_hash,
            nonce: u64::try_from(r.nonce).unwrap_or_default(),
            raw: r.raw_tx,
        }
    }
}

impl Ledger {
    /// Whether a send `id` is recorded.
    pub(crate) async fn has_send(&self, id: &str) -> Result<bool, PaymentError> {
        Ok(self.find_send(id).await?.is_some())
    }

    /// The stored send `id`, if any.
    pub(crate) async fn find_send(&self, id: &str) -> Result<Option<SignedSend>, PaymentError> {
        Ok(self.store.chain_send(id).await?.map(SignedSend::from))
    }

    /// The send `id` of `amount` base units to `to`: the stored one, or a new one signed with
    /// the next free nonce and stored before anything is broadcast. The flag is true when
    /// this call stored it (decided under the wallet's lock, so two concurrent callers with
    /// one id never both see `true`: the x402 settlement relies on it against replays).
    pub(crate) async fn record_send(
        &self,
        payout: &Payout,
        id: &str,
        to: Address,
        amount: i64,
        input: Vec<u8>,
    ) -> Result<(SignedSend, bool), PaymentError> {
        let call = ContractCall {
            contract: payout.token,
            gas: super::chain::wallet::TOKEN_CALL_GAS,
        };
        self.record_call(payout, id, call, to, amount, input).await
    }

    /// As [`Ledger::record_send`], for a call of `input` on any contract (the escrow's
    /// `debitChannel` and `settleChannel`); `to` and `amount` say who the call pays what.
    pub(crate) async fn record_call(
        &self,
        payout: &Payout,
        id: &str,
        call: ContractCall,
        to: Address,
        amount: i64,
        input: Vec<u8>,
    ) -> Result<(SignedSend, bool), PaymentError> {
        let _one_at_a_time = payout.nonce_lock.lock().await;
        if let Some(send) = self.find_send(id).await? {
            return Ok((send, false));
        }
        // Stored sends may not have reached the node yet (a crash before the broadcast):
        // their nonces are taken too.
        let stored = self.store.max_chain_send_nonce().await?;
        let next_stored = stored.map_or(0, |n| u64::try_from(n).unwrap_or_default() + 1);
        let nonce = payout.wallet.pending_nonce().await?.max(next_stored);
        let send = payout
            .wallet
            .sign_call_with_gas(call.contract, input, nonce, call.gas)
            .await?;
        let nonce_db = i64::try_from(nonce)
            .map_err(|_| PaymentError::Corrupt("wallet nonce out of range".into()))?;
        self.store
            .insert_chain_send(&NewChainSend {
                id,
                to_address: &format!("{to:#x}"),
                amount,
                nonce: nonce_db,
                tx_hash: &send.tx_hash,
                raw_tx: &send.raw,
                created_at: now_ms(),
            })
            .await?;
        Ok((send, true))
    }

    /// Broadcasts a recorded send and waits up to `wait` for it; records the outcome.
    pub(crate) async fn push_send(
        &self,
        payout: &Payout,
        send: &SignedSend,
        wait: Duration,
    ) -> Result<SendState, PaymentError> {
        payout.wallet.broadcast(send).await?;
        let state = payout.wallet.wait_mined(&send.tx_hash, wait).await?;
        self.mark_send(&send.tx_hash, state).await?;
        Ok(state)
    }

    async fn mark_send(&self, tx_hash: &str, state: SendState) -> Result<(), PaymentError> {
        let stored = match state {
            SendState::Unmined => return Ok(()),
            SendState::Succeeded => "succeeded",
            SendState::Reverted => {
                tracing::error!(tx_hash, "a hub wallet transaction reverted");
                "reverted"
            }
        };
        Ok(self
            .store
            .mark_chain_send(tx_hash, stored, now_ms())
            .await?)
    }

    /// Refunds a closed channel's unused deposit to its payer on-chain, once: the refund
    /// transaction's hash, or `None` when nothing goes back on-chain (demo channel, nothing
    /// left, no wallet configured).
    pub(super) async fn refund_on_chain(
        &self,
        channel: &Channel,
    ) -> Result<Option<String>, PaymentError> {
        let (Some(payout), Some(payer)) = (&self.payout, &channel.payer) else {
            return Ok(None);
        };
        let amount = channel.refund_micros();
        if amount <= 0 {
            return Ok(None);
        }
        let to: Address = payer
            .parse()
            .map_err(|_| PaymentError::Corrupt(format!("stored payer `{payer}`")))?;
        let amount_units = u64::try_from(amount)
            .map_err(|_| PaymentError::Corrupt("refund out of range".into()))?;
        let id = format!("refund:{}", channel.id);
        // A refund already stored is pushed again (it may not have reached the node).
        let (send, _) = self
            .record_send(payout, &id, to, amount, transfer_calldata(to, amount_units))
            .await?;
        self.store
            .set_channel_settle_tx(&channel.id, &send.tx_hash)
            .await?;
        match self.push_send(payout, &send, REFUND_WAIT).await {
            Ok(state) => tracing::info!(
                channel_id = %channel.id,
                tx_hash = %send.tx_hash,
                refund_micros = amount,
                ?state,
                "channel refund sent"
            ),
            // Recorded: the next close or the reconciliation broadcasts it again.
            Err(e) => tracing::warn!(
                channel_id = %channel.id,
                tx_hash = %send.tx_hash,
                error = %e,
                "channel refund recorded, broadcast pending"
            ),
        }
        Ok(Some(send.tx_hash))
    }

    /// Finishes the wallet's recorded sends that are not known mined: re-broadcasts each
    /// (the same bytes) and records those that are mined. Run at start and by the sweeper.
    pub async fn reconcile_sends(&self) -> Result<usize, PaymentError> {
        /// Sends finished per run.
        const BATCH: i64 = 100;
        let Some(payout) = &self.payout else {
            return Ok(0);
        };
        let rows = self.store.unsettled_chain_sends(BATCH).await?;
        let mut settled = 0;
        for send in rows.into_iter().map(SignedSend::from) {
            let state = match payout.wallet.state(&send.tx_hash).await? {
                SendState::Unmined => {
                    payout.wallet.broadcast(&send).await?;
                    payout
                        .wallet
                        .wait_mined(&send.tx_hash, Duration::from_secs(5))
                        .await?
                }
                mined => mined,
            };
            if state != SendState::Unmined {
                self.mark_send(&send.tx_hash, state).await?;
                settled += 1;
            }
        }
        Ok(settled)
    }
}

/// The hub's wallet from the settings, or `None` when no wallet key is configured. The chain
/// id is checked against (or, when unset, taken from) the node: a key signing for the wrong
/// chain must not start.
pub async fn payout_from_settings(
    p: &crate::settings::PaymentSettings,
) -> Result<Option<Arc<Payout>>, PaymentError> {
    use super::chain::{GasPolicy, JsonRpc, WalletKey};
    let key = match (&p.wallet_key, &p.wallet_key_path) {
        (Some(secret), _) => WalletKey::from_hex(secret.expose()),
        (None, Some(path)) => WalletKey::from_file(path),
        (None, None) => return Ok(None),
    }
    .map_err(PaymentError::InvalidRequest)?;
    let (Some(url), Some(token)) = (&p.evm_rpc_url, &p.token_contract) else {
        return Ok(None);
    };
    let rpc = JsonRpc::new(url.clone())?;
    let node_chain = rpc.chain_id().await;
    let chain_id = match (p.evm_chain_id, node_chain) {
        (Some(want), Ok(got)) if want != got => {
            return Err(PaymentError::InvalidRequest(format!(
                "AIMARKET_EVM_CHAIN_ID is {want} but the node is chain {got}"
            )));
        }
        (Some(want), _) => want,
        (None, Ok(got)) => got,
        (None, Err(e)) => return Err(e),
    };
    let token: Address = token
        .as_str()
        .parse()
        .map_err(|_| PaymentError::InvalidRequest("token_contract is not an address".into()))?;
    let gas = GasPolicy {
        max_fee_per_gas_wei: u128::from(p.evm_max_fee_gwei) * 1_000_000_000,
    };
    let wallet = HubWallet::new(key, rpc, chain_id, gas);
    tracing::info!(address = %wallet.address(), chain_id, "hub wallet ready");
    Ok(Some(Payout::new(
        wallet,
        token,
        &p.token_name,
        &p.token_version,
    )))
}

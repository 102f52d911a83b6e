//! Escrow channels in the ledger.
//!
//! - **Open** ([`Ledger::open_escrow_channel`]): the depositor names a channel opened on the
//!   escrow contract and proves it is theirs (the payer proof, with the escrow channel id in
//!   the `tx` slot); the hub reads it from the chain and mirrors it as a ledger channel of
//!   kind `escrow`.
//! - **Debit** ([`Ledger::hold_escrow`]): a paid call carries the depositor's
//!   `DebitAuthorization`; every check (signer, hub, token, amount, receipt id unused here and
//!   on-chain, nonce, deadline) runs before the hold, whose id is the buyer's `receiptId`.
//!   The authorization is stored with the hold.
//! - **Collect** ([`Ledger::collect_debits`]): once captured, authorizations go on-chain
//!   (`debitChannel`) from the hub's wallet in nonce order, written ahead in `chain_sends` so
//!   a retry or a restart re-broadcasts the same transaction; a debit already on-chain (a
//!   crash between the chain and the ledger) is recognised by `usedReceipts`.
//! - **Settle** ([`Ledger::settle_escrow`]): at close (or at expiry, by the sweeper) after
//!   every debit is on-chain, `settleChannel` pays the used amount to the hub and refunds the
//!   rest to the depositor.

use std::collections::HashSet;
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use serde_json::Value;

use super::{
    Escrow, OnChainStatus, SignedDebit, parse_bytes32, read_channel, receipt_used, refused,
    settle_calldata,
};
use crate::payments::channels::{
    Channel, ChannelSecret, ChannelStatus, DEFAULT_CHAIN, DEFAULT_TOKEN, label,
};
use crate::payments::payer_proof::PayerProof;
use crate::payments::refunds::{ContractCall, Payout};
use crate::payments::{
    HoldGuard, Ledger, MAX_DEPOSIT_USD, PaymentError, ReleaseReason, micros_to_usd,
};
pub use crate::store::EscrowDebit;
use crate::store::{NewEscrowDebit, now_ms};

/// The ledger stops taking debits this long before the on-chain expiry, so that the
/// collector gets them on-chain while the contract still accepts them.
pub const SETTLE_MARGIN: Duration = Duration::from_secs(600);
/// An authorization's deadline must be at least this far ahead (the collector's time).
pub const DEADLINE_MARGIN_S: u64 = 60;
/// Gas limit of `debitChannel` and `settleChannel` (measured ~95k and ~60k on anvil).
pub const ESCROW_CALL_GAS: u64 = 250_000;
/// How long one debit or settlement waits to be mined before the collector moves on.
const MINE_WAIT: Duration = Duration::from_secs(30);
/// Debits looked at per collector run.
const COLLECT_BATCH: i64 = 200;

/// What a depositor sends to mirror an escrow channel
/// (`POST /ai-market/v2/channel/open {"escrow_channel_id", "payer", "payer_signature"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EscrowOpen {
    /// The channel id on the contract (`0x` + 64 hex).
    pub escrow_channel_id: String,
    /// Chain label of the payer proof (default `base`).
    pub chain: Option<String>,
    /// Token label (default `USDC`).
    pub token: Option<String>,
    /// The depositor's address.
    pub payer: Option<String>,
    /// The depositor's `AIMarket-Payer-Proof/v1` signature, with the escrow channel id as
    /// `tx` and the deposit in cents.
    pub payer_signature: Option<String>,
}

fn u256_i64(v: U256, what: &str) -> Result<i64, PaymentError> {
    i64::try_from(v).map_err(|_| PaymentError::InvalidRequest(format!("{what} is out of range")))
}

fn unix_now() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap_or_default()
}

impl Ledger {
    /// This ledger taking escrow channels on `escrow` (needs the hub wallet: debits and
    /// settlements are its transactions).
    pub fn with_escrow(mut self, escrow: std::sync::Arc<Escrow>) -> Self {
        self.escrow = Some(escrow);
        self
    }

    /// The escrow, when configured.
    pub fn escrow(&self) -> Option<&std::sync::Arc<Escrow>> {
        self.escrow.as_ref()
    }

    /// The channel kinds this hub opens: `custodial` (a deposit to the hub, or demo) and
    /// `escrow` (non-custodial, on the escrow contract).
    pub fn channel_kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.payments_available() {
            kinds.push("custodial");
        }
        if self.escrow_parts().is_ok() {
            kinds.push("escrow");
        }
        kinds
    }

    /// What a client needs to pay this hub through the escrow (well-known, 402s): contract,
    /// chain id, this hub's address, token, EIP-712 domain and type. `None` without escrow.
    pub fn escrow_terms(&self) -> Option<Value> {
        let (payout, escrow) = self.escrow_parts().ok()?;
        let domain = escrow.domain();
        Some(serde_json::json!({
            "contract": format!("{:#x}", domain.contract),
            "chain_id": domain.chain_id,
            "hub": format!("{:#x}", payout.wallet().address()),
            "token": format!("{:#x}", payout.token()),
            "domain": {"name": super::DOMAIN_NAME, "version": super::DOMAIN_VERSION,
                "chainId": domain.chain_id, "verifyingContract": format!("{:#x}", domain.contract)},
            "typehash": super::DEBIT_TYPE,
            "authorization_field": "payment_authorization",
            "deadline_margin_s": DEADLINE_MARGIN_S,
        }))
    }

    fn escrow_parts(&self) -> Result<(&Payout, &Escrow), PaymentError> {
        match (&self.payout, &self.escrow) {
            (Some(payout), Some(escrow)) => Ok((payout, escrow)),
            _ => Err(PaymentError::InvalidRequest(
                "this hub takes no escrow channels (AIMARKET_ESCROW_CONTRACT and the hub \
                 wallet are not configured)"
                    .into(),
            )),
        }
    }

    /// Mirrors escrow channel `request.escrow_channel_id` as a ledger channel of kind
    /// `escrow`, after reading it from the contract: open, in this hub's token, not bound to
    /// another hub, not debited, not about to expire, and the payer proof signed by its
    /// depositor. An escrow channel is mirrored once ([`PaymentError::TxAlreadyUsed`]).
    pub async fn open_escrow_channel(&self, request: EscrowOpen) -> Result<Channel, PaymentError> {
        let (payout, escrow) = self.escrow_parts()?;
        let id = parse_bytes32(&request.escrow_channel_id).ok_or_else(|| {
            PaymentError::InvalidRequest(
                "escrow_channel_id must be 0x followed by 64 hex digits".into(),
            )
        })?;
        let id_text = format!("{id:#x}");
        if self.store.escrow_channel_mirrored(&id_text).await? {
            return Err(PaymentError::TxAlreadyUsed { tx_hash: id_text });
        }
        let chain = label(request.chain.as_deref(), DEFAULT_CHAIN, "chain")?;
        let token = label(request.token.as_deref(), DEFAULT_TOKEN, "token")?;
        let proof =
            PayerProof::parse(request.payer.as_deref(), request.payer_signature.as_deref())?
                .ok_or(PaymentError::PayerProofRequired)?;
        let on_chain = read_channel(payout.wallet().rpc(), escrow.contract(), id).await?;
        let rejected = |reason: String| PaymentError::DepositRejected { reason };
        match on_chain.status {
            OnChainStatus::Open => {}
            OnChainStatus::None => {
                return Err(rejected(format!(
                    "escrow channel {id_text} is not open on contract {:#x}",
                    escrow.contract()
                )));
            }
            other => {
                return Err(rejected(format!(
                    "escrow channel {id_text} is no longer open ({other:?})"
                )));
            }
        }
        if on_chain.token != payout.token() {
            return Err(rejected(format!(
                "escrow channel {id_text} holds token {:#x}; this hub takes {:#x}",
                on_chain.token,
                payout.token()
            )));
        }
        let hub = payout.wallet().address();
        if on_chain.hub != Address::ZERO && on_chain.hub != hub {
            return Err(rejected(format!(
                "escrow channel {id_text} is bound to hub {:#x}",
                on_chain.hub
            )));
        }
        if !on_chain.used.is_zero() {
            return Err(rejected(format!(
                "escrow channel {id_text} was already debited"
            )));
        }
        let deposit = u256_i64(on_chain.deposit, "the escrowed deposit")?;
        if deposit <= 0 || micros_to_usd(deposit) > MAX_DEPOSIT_USD {
            return Err(PaymentError::InvalidAmount {
                what: "deposit",
                reason: format!("the escrowed {deposit} base units are out of range"),
            });
        }
        let margin_ms = i64::try_from(SETTLE_MARGIN.as_millis()).unwrap_or(i64::MAX);
        let expires_at = i64::try_from(on_chain.expires_at)
            .unwrap_or(i64::MAX / 2)
            .saturating_mul(1000)
            .saturating_sub(margin_ms);
        let now = now_ms();
        if expires_at <= now {
            return Err(rejected(format!(
                "escrow channel {id_text} expires within {} s",
                SETTLE_MARGIN.as_secs()
            )));
        }
        // The proof's amount is the escrowed deposit: the depositor signs what it escrowed.
        proof.verify(&chain, &id_text, micros_to_usd(deposit))?;
        if proof.payer != on_chain.depositor {
            return Err(PaymentError::NotPayer {
                reason: format!(
                    "escrow channel {id_text} was opened by {:#x}, not by {:#x}",
                    on_chain.depositor, proof.payer
                ),
            });
        }
        let channel = Channel {
            id: format!("ch_{}", uuid::Uuid::new_v4().simple()),
            deposit_micros: deposit,
            used_micros: 0,
            held_micros: 0,
            invocations: 0,
            token,
            chain,
            tx_hash: None,
            payer: Some(format!("{:#x}", on_chain.depositor)),
            verifier: "escrow".to_owned(),
            // The signed authorization is the debit credential.
            secret_required: false,
            status: ChannelStatus::Open,
            created_at: now,
            expires_at,
            closed_at: None,
            settle_tx_hash: None,
            escrow_id: Some(id_text),
            secret: Some(ChannelSecret::generate()),
        };
        self.insert_channel(&channel).await?;
        tracing::info!(channel_id = %channel.id, escrow_id = ?channel.escrow_id,
            deposit_micros = deposit, "escrow channel mirrored");
        Ok(channel)
    }

    /// Checks the depositor's `authorization` for a debit of `micros` from escrow channel
    /// `channel`, then holds `micros` under the authorization's receipt id and stores it for
    /// the collector. The hold's id is the receipt id (`0x` + 64 hex). Every refusal is
    /// [`PaymentError::AuthorizationRequired`] naming the member, and nothing is held.
    pub async fn hold_escrow(
        &self,
        channel: &Channel,
        authorization: Option<&Value>,
        micros: i64,
    ) -> Result<HoldGuard, PaymentError> {
        let (payout, escrow) = self.escrow_parts()?;
        let escrow_id = channel.escrow_id.as_deref().unwrap_or_default();
        let object = authorization.ok_or_else(|| {
            refused(
                "payment_authorization",
                format!(
                    "required on escrow channel {}: a DebitAuthorization for {micros} base \
                     units signed by the depositor",
                    channel.id
                ),
            )
        })?;
        let debit = SignedDebit::parse(object)?;
        if format!("{:#x}", debit.channel_id) != escrow_id {
            return Err(refused(
                "channelId",
                format!("must be {escrow_id}, the escrow channel of {}", channel.id),
            ));
        }
        let hub = payout.wallet().address();
        if debit.hub != hub {
            return Err(refused(
                "hub",
                format!("must be this hub's address {hub:#x}"),
            ));
        }
        if debit.amount != U256::from(u64::try_from(micros).unwrap_or_default()) {
            return Err(refused(
                "amount",
                format!(
                    "must be {micros} base units (the routed price), got {}",
                    debit.amount
                ),
            ));
        }
        let earliest = U256::from(unix_now() + DEADLINE_MARGIN_S);
        if debit.deadline < earliest {
            return Err(refused(
                "deadline",
                format!("must be at least {DEADLINE_MARGIN_S} s ahead (>= {earliest})"),
            ));
        }
        let signer = debit.signer(&escrow.domain())?;
        let depositor = channel.payer.as_deref().unwrap_or_default();
        if format!("{signer:#x}") != depositor {
            return Err(refused(
                "signature",
                format!("recovers to {signer:#x}, not to the depositor {depositor}"),
            ));
        }
        let hold_id = format!("{:#x}", debit.receipt_id);
        if self.hold_state(&hold_id).await?.is_some() {
            return Err(refused("receiptId", "already used at this hub"));
        }
        let rpc = payout.wallet().rpc();
        let on_chain = read_channel(rpc, escrow.contract(), debit.channel_id).await?;
        if on_chain.status != OnChainStatus::Open {
            return Err(refused(
                "channelId",
                "the escrow channel is not open on-chain",
            ));
        }
        if debit.token != on_chain.token {
            return Err(refused(
                "token",
                format!("must be the escrowed token {:#x}", on_chain.token),
            ));
        }
        if receipt_used(rpc, escrow.contract(), debit.receipt_id).await? {
            return Err(refused("receiptId", "already debited on-chain"));
        }
        let captured = self.store.max_captured_debit_nonce(escrow_id).await?;
        // Debits captured here but not yet on-chain take their nonces too.
        let expected = captured
            .map(|n| U256::from(u64::try_from(n).unwrap_or_default()) + U256::from(1))
            .map_or(on_chain.nonce, |next| next.max(on_chain.nonce));
        if debit.nonce != expected {
            return Err(refused(
                "nonce",
                format!(
                    "must be {expected} (the channel's next nonce), got {}",
                    debit.nonce
                ),
            ));
        }
        let guard = self
            .hold_checked(&channel.id, None, micros, &hold_id, true)
            .await
            .map_err(|e| match e {
                PaymentError::DuplicateHold { .. } => {
                    refused("receiptId", "already used at this hub")
                }
                other => other,
            })?;
        if let Err(e) = self.store_debit(channel, &debit, &hold_id, micros).await {
            // A failure to release is logged by the guard; the sweeper takes it then.
            let _ = guard.release(ReleaseReason::Incomplete).await;
            return Err(e);
        }
        Ok(guard)
    }

    /// Stores a verified authorization under its hold; a nonce held by a call in flight is
    /// refused (its row's hold released frees it).
    async fn store_debit(
        &self,
        channel: &Channel,
        debit: &SignedDebit,
        hold_id: &str,
        micros: i64,
    ) -> Result<(), PaymentError> {
        let escrow_id = channel.escrow_id.as_deref().unwrap_or_default();
        let nonce = u256_i64(debit.nonce, "nonce")?;
        let json = debit.to_json().to_string();
        let stored = self
            .store
            .insert_escrow_debit(&NewEscrowDebit {
                hold_id,
                channel_id: &channel.id,
                escrow_id,
                nonce,
                amount: micros,
                authorization_json: &json,
                created_at: now_ms(),
            })
            .await?;
        if stored {
            Ok(())
        } else {
            Err(refused(
                "nonce",
                format!("nonce {nonce} is taken by a call in flight on this channel"),
            ))
        }
    }

    /// The stored authorizations of channel `channel_id` whose hold was captured, by nonce.
    pub async fn escrow_debits(&self, channel_id: &str) -> Result<Vec<EscrowDebit>, PaymentError> {
        Ok(self.store.escrow_debits(channel_id).await?)
    }

    async fn mark_debit(
        &self,
        hold_id: &str,
        state: &str,
        tx_hash: Option<&str>,
    ) -> Result<(), PaymentError> {
        Ok(self
            .store
            .mark_escrow_debit(hold_id, state, tx_hash, now_ms())
            .await?)
    }

    /// Puts captured authorizations on-chain, in nonce order per channel, one collector at a
    /// time: each `debitChannel` is written ahead in `chain_sends` (a retry re-broadcasts the
    /// same transaction); a receipt id the contract already marks used (a crash between the
    /// chain and the ledger) is recorded as debited without a new transaction. The number of
    /// debits recorded as on-chain by this run.
    pub async fn collect_debits(&self) -> Result<usize, PaymentError> {
        let Ok((payout, escrow)) = self.escrow_parts() else {
            return Ok(0);
        };
        let _one_at_a_time = escrow.collect_lock.lock().await;
        let rows = self.store.pending_escrow_debits(COLLECT_BATCH).await?;
        let rpc = payout.wallet().rpc();
        let mut blocked: HashSet<String> = HashSet::new();
        let mut debited = 0;
        for row in rows {
            if blocked.contains(&row.escrow_id) {
                continue;
            }
            let stored: Value = serde_json::from_str(&row.authorization_json)
                .map_err(|e| PaymentError::Corrupt(format!("stored authorization: {e}")))?;
            let debit = SignedDebit::parse(&stored)?;
            let send_id = format!("debit:{}", row.hold_id);
            if receipt_used(rpc, escrow.contract(), debit.receipt_id).await? {
                let tx = self.find_send(&send_id).await?.map(|s| s.tx_hash);
                self.mark_debit(&row.hold_id, "debited", tx.as_deref())
                    .await?;
                debited += 1;
                continue;
            }
            let on_chain = read_channel(rpc, escrow.contract(), debit.channel_id).await?;
            if on_chain.nonce > debit.nonce || on_chain.status != OnChainStatus::Open {
                // Its nonce went to another debit, or the channel was paid out: this one can
                // never go on-chain. The hub was not paid for that call.
                tracing::error!(receipt_id = %row.hold_id, escrow_id = %row.escrow_id,
                    "an escrow debit can no longer be collected");
                self.mark_debit(&row.hold_id, "failed", None).await?;
                blocked.insert(row.escrow_id);
                continue;
            }
            if on_chain.nonce < debit.nonce {
                // A lower nonce is still in flight on this channel.
                blocked.insert(row.escrow_id);
                continue;
            }
            let call = ContractCall {
                contract: escrow.contract(),
                gas: ESCROW_CALL_GAS,
            };
            let amount = u256_i64(debit.amount, "amount")?;
            let (send, _) = self
                .record_call(
                    payout,
                    &send_id,
                    call,
                    payout.wallet().address(),
                    amount,
                    debit.debit_calldata(),
                )
                .await?;
            self.store
                .set_escrow_debit_tx(&row.hold_id, &send.tx_hash)
                .await?;
            match self.push_send(payout, &send, MINE_WAIT).await {
                Ok(crate::payments::chain::SendState::Succeeded) => {
                    self.mark_debit(&row.hold_id, "debited", Some(&send.tx_hash))
                        .await?;
                    debited += 1;
                }
                Ok(crate::payments::chain::SendState::Reverted) => {
                    tracing::error!(receipt_id = %row.hold_id, tx_hash = %send.tx_hash,
                        "debitChannel reverted");
                    self.mark_debit(&row.hold_id, "failed", None).await?;
                    blocked.insert(row.escrow_id);
                }
                Ok(crate::payments::chain::SendState::Unmined) => {
                    blocked.insert(row.escrow_id);
                }
                Err(e) => {
                    tracing::warn!(receipt_id = %row.hold_id, error = %e,
                        "debitChannel recorded, broadcast pending");
                    blocked.insert(row.escrow_id);
                }
            }
        }
        Ok(debited)
    }

    /// Settles escrow channel `channel` (closed in the ledger) on-chain: after its debits are
    /// all on-chain, `settleChannel` from the hub's wallet, once (written ahead like every
    /// wallet send). Its hash, or `None` when there is nothing for the hub to settle (no
    /// debit: the depositor takes the deposit back with `refundChannel`), the channel was
    /// already paid out on-chain by someone else, or debits are still on their way (a
    /// retried close or the sweeper finishes).
    pub async fn settle_escrow(&self, channel: &Channel) -> Result<Option<String>, PaymentError> {
        let (payout, escrow) = self.escrow_parts()?;
        if channel.used_micros <= 0 {
            return Ok(None);
        }
        if let Err(e) = self.collect_debits().await {
            tracing::warn!(error = %e, "collecting escrow debits before a settlement failed");
        }
        let open = self.store.count_pending_escrow_debits(&channel.id).await?;
        if open > 0 {
            tracing::warn!(channel_id = %channel.id, pending = open,
                "escrow debits not yet on-chain; settlement deferred");
            return Ok(None);
        }
        let escrow_id = channel.escrow_id.as_deref().unwrap_or_default();
        let id: B256 = parse_bytes32(escrow_id)
            .ok_or_else(|| PaymentError::Corrupt(format!("stored escrow id `{escrow_id}`")))?;
        let send_id = format!("settle:{escrow_id}");
        if self.find_send(&send_id).await?.is_none() {
            let on_chain = read_channel(payout.wallet().rpc(), escrow.contract(), id).await?;
            if on_chain.status != OnChainStatus::Open {
                tracing::info!(channel_id = %channel.id, status = ?on_chain.status,
                    "escrow channel already paid out on-chain");
                return Ok(None);
            }
        }
        let call = ContractCall {
            contract: escrow.contract(),
            gas: ESCROW_CALL_GAS,
        };
        let (send, _) = self
            .record_call(
                payout,
                &send_id,
                call,
                payout.wallet().address(),
                channel.used_micros,
                settle_calldata(id),
            )
            .await?;
        self.store
            .set_channel_settle_tx(&channel.id, &send.tx_hash)
            .await?;
        match self.push_send(payout, &send, MINE_WAIT).await {
            Ok(state) => tracing::info!(channel_id = %channel.id, tx_hash = %send.tx_hash,
                used_micros = channel.used_micros, ?state, "escrow channel settled"),
            Err(e) => tracing::warn!(channel_id = %channel.id, tx_hash = %send.tx_hash,
                error = %e, "escrow settlement recorded, broadcast pending"),
        }
        Ok(Some(send.tx_hash))
    }

    /// Closes (and so settles) escrow channels whose ledger lifetime ended, and settles
    /// closed ones whose settlement was deferred. Run by the sweeper.
    pub async fn settle_expired_escrow(&self) -> Result<usize, PaymentError> {
        /// Channels settled per sweep.
        const BATCH: i64 = 50;
        if self.escrow_parts().is_err() {
            return Ok(0);
        }
        let due = self.store.escrow_channels_due(now_ms(), BATCH).await?;
        let mut settled = 0;
        for id in due {
            match self.close_channel(&id, None).await {
                Ok(s) if s.settle_tx_hash.is_some() => settled += 1,
                Ok(_) => {}
                Err(e) => tracing::warn!(channel_id = %id, error = %e,
                    "settling an escrow channel failed; retried on the next sweep"),
            }
        }
        Ok(settled)
    }
}

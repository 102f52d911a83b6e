//! x402 "exact" payments on an EVM chain (EIP-3009 `transferWithAuthorization`), both ways:
//!
//! - **buyer → hub**: [`is_payment_to_hub`] tells the invoke code whether an `X-PAYMENT` /
//!   `PAYMENT-SIGNATURE` header pays this hub (its `payTo` is the hub wallet) rather than the
//!   provider (seller-direct pass-through). [`Ledger::settle_x402`] checks the authorization
//!   (EIP-712 signature under the token's domain, amount, recipient, validity window, nonce
//!   unused on-chain) and settles it from the hub wallet, exactly once per nonce.
//! - **hub → provider**: [`sign_exact_authorization`] signs an authorization from the hub
//!   wallet for a provider's `payTo`, for the rail code to send as `X-PAYMENT`.
//!
//! Amounts are token base units (`u64`) end to end; nothing here touches a float.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, Signature, U256};
use alloy_sol_types::{Eip712Domain, SolCall, SolStruct, eip712_domain};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::chain::{
    HubWallet, SendState, TransferWithAuthorization, WalletKey, authorizationStateCall,
    signature_hex, transferWithAuthorizationCall,
};
use super::{Ledger, PaymentError};

/// Longest header decoded (a payload is well under 2 KB).
const MAX_HEADER_CHARS: usize = 8 * 1024;
/// How long a settlement waits to be mined.
const SETTLE_WAIT: Duration = Duration::from_secs(30);

/// The EIP-712 domain of the payment token (USDC: name "USD Coin", version "2").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDomain {
    /// `name()` of the token.
    pub name: String,
    /// `version()` of the token.
    pub version: String,
    /// Chain id.
    pub chain_id: u64,
    /// The token contract.
    pub token: Address,
}

impl TokenDomain {
    fn eip712(&self) -> Eip712Domain {
        eip712_domain! {
            name: self.name.clone(),
            version: self.version.clone(),
            chain_id: self.chain_id,
            verifying_contract: self.token,
        }
    }
}

/// An EIP-3009 authorization as x402 carries it (`payload.authorization`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactAuthorization {
    /// Payer.
    pub from: Address,
    /// Payee (`payTo`).
    pub to: Address,
    /// Base units.
    pub value: u64,
    /// Unix seconds after which it is valid.
    pub valid_after: u64,
    /// Unix seconds before which it is valid.
    pub valid_before: u64,
    /// 32 random bytes; each may be used once per payer.
    pub nonce: B256,
}

/// A decoded x402 exact payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactPayment {
    /// The authorization.
    pub authorization: ExactAuthorization,
    /// The payer's EIP-712 signature over it.
    pub signature: Signature,
    /// The `network` it names (kept for the answer).
    pub network: String,
}

fn invalid(reason: impl Into<String>) -> PaymentError {
    PaymentError::X402Rejected {
        reason: reason.into(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads a decimal-string or number field as `u64`.
fn number(v: &Value, what: &str) -> Result<u64, PaymentError> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| invalid(format!("{what} must be a non-negative integer")))
}

impl ExactAuthorization {
    fn typed(&self) -> TransferWithAuthorization {
        TransferWithAuthorization {
            from: self.from,
            to: self.to,
            value: U256::from(self.value),
            validAfter: U256::from(self.valid_after),
            validBefore: U256::from(self.valid_before),
            nonce: self.nonce,
        }
    }

    /// The EIP-712 digest signed under `domain`.
    pub fn digest(&self, domain: &TokenDomain) -> B256 {
        self.typed().eip712_signing_hash(&domain.eip712())
    }

    fn to_json(&self) -> Value {
        json!({
            "from": format!("{:#x}", self.from),
            "to": format!("{:#x}", self.to),
            "value": self.value.to_string(),
            "validAfter": self.valid_after.to_string(),
            "validBefore": self.valid_before.to_string(),
            "nonce": format!("{:#x}", self.nonce),
        })
    }
}

impl ExactPayment {
    /// Decodes an `X-PAYMENT` / `PAYMENT-SIGNATURE` value: base64 of the x402 JSON payload
    /// (plain JSON is accepted too).
    pub fn parse(header: &str) -> Result<Self, PaymentError> {
        let header = header.trim();
        if header.len() > MAX_HEADER_CHARS {
            return Err(invalid("payment header too long"));
        }
        let bytes = if header.starts_with('{') {
            header.as_bytes().to_vec()
        } else {
            STANDARD
                .decode(header)
                .map_err(|_| invalid("payment header is neither base64 nor JSON"))?
        };
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|_| invalid("payment payload is not JSON"))?;
        if v.get("scheme").and_then(Value::as_str).unwrap_or("exact") != "exact" {
            return Err(invalid("only the x402 exact scheme is accepted"));
        }
        let payload = v.get("payload").unwrap_or(&Value::Null);
        let auth = payload.get("authorization").unwrap_or(&Value::Null);
        let address = |k: &str| -> Result<Address, PaymentError> {
            auth.get(k)
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid(format!("authorization.{k} must be an address")))
        };
        let nonce: B256 = auth
            .get("nonce")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("authorization.nonce must be 32 bytes of hex"))?;
        let signature = payload
            .get("signature")
            .and_then(Value::as_str)
            .and_then(|s| alloy_primitives::hex::decode(s).ok())
            .filter(|b| b.len() == 65)
            .and_then(|b| Signature::from_raw(&b).ok())
            .ok_or_else(|| invalid("payload.signature must be 65 bytes of hex"))?;
        Ok(Self {
            authorization: ExactAuthorization {
                from: address("from")?,
                to: address("to")?,
                value: number(auth.get("value").unwrap_or(&Value::Null), "value")?,
                valid_after: number(auth.get("validAfter").unwrap_or(&json!(0)), "validAfter")?,
                valid_before: number(
                    auth.get("validBefore").unwrap_or(&Value::Null),
                    "validBefore",
                )?,
                nonce,
            },
            signature,
            network: v
                .get("network")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(64)
                .collect(),
        })
    }

    /// The x402 JSON payload (version 1, scheme exact).
    pub fn to_json(&self) -> Value {
        json!({
            "x402Version": 1,
            "scheme": "exact",
            "network": self.network,
            "payload": {
                "signature": signature_hex(&self.signature),
                "authorization": self.authorization.to_json(),
            },
        })
    }

    /// The header value: base64 of the JSON payload.
    pub fn to_header(&self) -> String {
        STANDARD.encode(self.to_json().to_string())
    }
}

/// Whether `header` is an x402 exact payment whose `payTo` is `hub` (the buyer pays the hub,
/// not the provider). Anything unreadable is not: it stays seller-direct pass-through.
pub fn is_payment_to_hub(header: &str, hub: Address) -> bool {
    ExactPayment::parse(header).is_ok_and(|p| p.authorization.to == hub)
}

/// Signs an x402 exact authorization from `key` to `pay_to` for `value` base units, valid
/// from now for `valid_for`, with a fresh random nonce (hub → provider).
pub fn sign_exact_authorization(
    key: &WalletKey,
    domain: &TokenDomain,
    network: &str,
    pay_to: Address,
    value: u64,
    valid_for: Duration,
) -> Result<ExactPayment, PaymentError> {
    let now = unix_now();
    let authorization = ExactAuthorization {
        from: key.address(),
        to: pay_to,
        value,
        // A minute of clock skew between the hub and the chain.
        valid_after: now.saturating_sub(60),
        valid_before: now.saturating_add(valid_for.as_secs()),
        nonce: B256::from(rand::random::<[u8; 32]>()),
    };
    let signature = key
        .sign_hash(&authorization.digest(domain))
        .map_err(|e| PaymentError::VerifierUnavailable { reason: e })?;
    Ok(ExactPayment {
        authorization,
        signature,
        network: network.to_owned(),
    })
}

/// Calldata submitting `payment` (`transferWithAuthorization`).
pub fn settle_calldata(payment: &ExactPayment) -> Vec<u8> {
    let a = &payment.authorization;
    let s = &payment.signature;
    transferWithAuthorizationCall {
        from: a.from,
        to: a.to,
        value: U256::from(a.value),
        validAfter: U256::from(a.valid_after),
        validBefore: U256::from(a.valid_before),
        nonce: a.nonce,
        v: 27 + u8::from(s.v()),
        r: s.r().into(),
        s: s.s().into(),
    }
    .abi_encode()
}

/// Whether `authorizer` already used `nonce` on the token (EIP-3009 `authorizationState`).
pub async fn nonce_used(
    wallet: &HubWallet,
    token: Address,
    authorizer: Address,
    nonce: B256,
) -> Result<bool, PaymentError> {
    let data = authorizationStateCall { authorizer, nonce }.abi_encode();
    let answer = wallet.rpc().eth_call(&format!("{token:#x}"), &data).await?;
    Ok(answer.iter().any(|b| *b != 0))
}

/// The `PAYMENT-RESPONSE` header value for a settlement: base64 JSON
/// `{success, transaction, network, payer}`.
pub fn payment_response(tx_hash: &str, network: &str, payer: Address) -> String {
    STANDARD.encode(
        json!({"success": true, "transaction": tx_hash, "network": network,
               "payer": format!("{payer:#x}")})
        .to_string(),
    )
}

impl Ledger {
    /// Checks an x402 exact payment of at least `price` base units to this hub and settles
    /// it on-chain from the hub wallet; the settlement transaction's hash. A nonce settles
    /// once: a replay is [`PaymentError::X402Rejected`].
    pub async fn settle_x402(
        &self,
        payment: &ExactPayment,
        domain: &TokenDomain,
        price: u64,
    ) -> Result<String, PaymentError> {
        self.verify_x402(payment, domain, price).await?;
        self.settle_verified_x402(payment).await
    }

    /// Every check of [`Ledger::settle_x402`] without moving anything: the token, `payTo`
    /// is this hub, the amount covers `price` base units, the validity window, the payer's
    /// signature, and the nonce neither settled by this hub nor used on-chain. The invoke
    /// path verifies before it calls the provider and settles only after the provider
    /// succeeded, as x402 facilitators do (verify, run, settle): a failed call never
    /// charges the buyer.
    pub async fn verify_x402(
        &self,
        payment: &ExactPayment,
        domain: &TokenDomain,
        price: u64,
    ) -> Result<(), PaymentError> {
        let payout = self.payout().ok_or(PaymentError::PaymentsUnavailable)?;
        let wallet = payout.wallet();
        let a = &payment.authorization;
        if domain.token != payout.token() {
            return Err(invalid("the authorization is not for this hub's token"));
        }
        if a.to != wallet.address() {
            return Err(invalid(format!(
                "payTo is {:#x}, not this hub's {:#x}",
                a.to,
                wallet.address()
            )));
        }
        if a.value < price {
            return Err(invalid(format!(
                "authorizes {} base units; the call costs {price}",
                a.value
            )));
        }
        let now = unix_now();
        if now <= a.valid_after || now >= a.valid_before {
            return Err(invalid(format!(
                "valid from {} to {}, now is {now}",
                a.valid_after, a.valid_before
            )));
        }
        match payment
            .signature
            .recover_address_from_prehash(&a.digest(domain))
        {
            Ok(signer) if signer == a.from => {}
            _ => return Err(invalid("the signature is not the payer's")),
        }
        // A nonce this hub already settled, or one used on-chain elsewhere: a replay.
        if self.has_send(&send_id(a)).await?
            || nonce_used(wallet, payout.token(), a.from, a.nonce).await?
        {
            return Err(invalid("this authorization was already used"));
        }
        Ok(())
    }

    /// Settles a payment [`Ledger::verify_x402`] accepted; the transaction's hash. The
    /// claim on the nonce is taken under the wallet's lock, so of two calls that verified
    /// the same authorization concurrently only one settles; the other is refused as a
    /// replay (its provider call already ran: the hub paid that one, the buyer did not).
    pub async fn settle_verified_x402(
        &self,
        payment: &ExactPayment,
    ) -> Result<String, PaymentError> {
        let payout = self.payout().ok_or(PaymentError::PaymentsUnavailable)?;
        let a = &payment.authorization;
        let amount = i64::try_from(a.value).map_err(|_| invalid("value out of range"))?;
        let (send, fresh) = self
            .record_send(payout, &send_id(a), a.to, amount, settle_calldata(payment))
            .await?;
        if !fresh {
            return Err(invalid("this authorization was already used"));
        }
        match self.push_send(payout, &send, SETTLE_WAIT).await? {
            SendState::Succeeded => Ok(send.tx_hash),
            SendState::Reverted => Err(invalid("the settlement reverted")),
            SendState::Unmined => Err(PaymentError::VerifierUnavailable {
                reason: format!("settlement {} not mined yet", send.tx_hash),
            }),
        }
    }
}

/// The chain-send id of an authorization's settlement: one per payer and nonce.
fn send_id(a: &ExactAuthorization) -> String {
    format!("x402:{:#x}:{:#x}", a.from, a.nonce)
}

//! A demo factory's own tiny payment ledger: payment channels funded with demo transaction
//! hashes, single-use demo `X-Payment` hashes, and the 402 challenge it answers with.
//!
//! Demo money only: a transaction hash is accepted when it starts with `demo`, `0xdemo` or
//! `agent-` (the placeholder the Python agent sends), and each one funds at most one
//! channel or one call. Everything lives in memory for the factory's lifetime.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use base64::Engine as _;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

/// How long a channel stays open.
const CHANNEL_LIFETIME_H: i64 = 24;
/// Largest deposit accepted, USD.
const MAX_DEPOSIT_USD: f64 = 1_000_000.0;
/// USDC on Base, the asset named in the x402 challenge.
const USDC_BASE: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
/// Most receipts kept for `GET /ai-market/receipt/{nonce}`; older ones are forgotten.
const MAX_RECEIPTS: usize = 100_000;

/// Micro-dollars of a USD amount (prices and deposits are validated finite).
pub fn micros(usd: f64) -> i64 {
    (usd * 1e6).round() as i64
}

/// Micro-dollars as USD.
pub fn usd(micros: i64) -> f64 {
    micros as f64 / 1e6
}

/// Whether `hash` is a demo transaction hash.
pub fn is_demo_tx(hash: &str) -> bool {
    let lower = hash.to_ascii_lowercase();
    (lower.starts_with("demo") || lower.starts_with("0xdemo") || lower.starts_with("agent-"))
        && hash.len() <= 256
        && hash.chars().all(|c| c.is_ascii_graphic())
}

/// A refusal, rendered by the server as `{success:false, error, detail, …}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Wire code.
    pub code: &'static str,
    /// Human detail.
    pub detail: String,
}

impl Refusal {
    fn new(status: u16, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }
}

#[derive(Debug)]
struct Channel {
    secret: String,
    deposit: i64,
    balance: i64,
    invocations: u64,
    closed: bool,
    expires_at: DateTime<Utc>,
    token: String,
    chain: String,
}

impl Channel {
    fn view(&self, id: &str) -> Value {
        json!({
            "channel_id": id,
            "deposit_usd": usd(self.deposit),
            "balance_usd": usd(self.balance),
            "token": self.token,
            "chain": self.chain,
            "expires_at": self.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "status": if self.closed { "closed" } else { "open" },
            "invocations": self.invocations,
        })
    }
}

/// How a call was paid.
#[derive(Debug, Clone, PartialEq)]
pub enum Paid {
    /// Debited from a channel; the balance left.
    Channel {
        /// Channel id.
        id: String,
        /// Balance after the debit, USD.
        remaining_usd: f64,
    },
    /// A single-use demo transaction hash.
    Transaction(String),
}

/// The payment headers of one request.
#[derive(Debug, Default, Clone)]
pub struct PaymentHeaders {
    /// `X-Payment-Channel`.
    pub channel: Option<String>,
    /// `X-Payment-Channel-Secret`.
    pub secret: Option<String>,
    /// `X-Payment` (a bare hash or `{"tx_hash": …}`), or `PAYMENT-SIGNATURE`.
    pub payment: Option<String>,
}

/// The ledger.
#[derive(Debug, Default)]
pub struct Ledger {
    channels: Mutex<HashMap<String, Channel>>,
    used_tx: Mutex<HashSet<String>>,
    receipts: Mutex<HashMap<String, Value>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps; a panic elsewhere leaves them consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The transaction hash of an `X-Payment` value: JSON `{"tx_hash": …}` or the bare hash.
fn tx_hash_of(payment: &str) -> Option<String> {
    match serde_json::from_str::<Value>(payment) {
        Ok(Value::Object(o)) => o.get("tx_hash").and_then(Value::as_str).map(str::to_owned),
        _ => Some(payment.trim().to_owned()),
    }
}

impl Ledger {
    /// Marks `tx_hash` used; false when it already was.
    fn claim_tx(&self, tx_hash: &str) -> bool {
        lock(&self.used_tx).insert(tx_hash.to_ascii_lowercase())
    }

    /// Opens a channel (`POST /ai-market/v2/channel/open`).
    pub fn open(&self, body: &Value) -> Result<Value, Refusal> {
        let deposit = body
            .get("deposit_usd")
            .and_then(Value::as_f64)
            .filter(|d| d.is_finite() && *d > 0.0 && *d <= MAX_DEPOSIT_USD)
            .ok_or_else(|| {
                Refusal::new(
                    400,
                    "invalid_amount",
                    "`deposit_usd` must be a number above 0 and at most 1000000",
                )
            })?;
        let tx_hash = body.get("tx_hash").and_then(Value::as_str).ok_or_else(|| {
            Refusal::new(
                400,
                "tx_hash_required",
                "`tx_hash` is required (a demo hash such as `demo-123`)",
            )
        })?;
        if !is_demo_tx(tx_hash) {
            return Err(Refusal::new(
                402,
                "deposit_not_verified",
                "this demo factory accepts only demo transaction hashes (`demo…`, `0xdemo…`, `agent-…`)",
            ));
        }
        if !self.claim_tx(tx_hash) {
            return Err(Refusal::new(
                409,
                "tx_already_used",
                "this transaction hash already funded a channel or a call",
            ));
        }
        let id = format!("ch_{}", uuid::Uuid::new_v4().simple());
        let channel = Channel {
            secret: format!("chs_{}", uuid::Uuid::new_v4().simple()),
            deposit: micros(deposit),
            balance: micros(deposit),
            invocations: 0,
            closed: false,
            expires_at: Utc::now() + Duration::hours(CHANNEL_LIFETIME_H),
            token: body
                .get("token")
                .and_then(Value::as_str)
                .unwrap_or("USDC")
                .to_owned(),
            chain: body
                .get("chain")
                .and_then(Value::as_str)
                .unwrap_or("base")
                .to_owned(),
        };
        let mut view = channel.view(&id);
        view["channel_secret"] = Value::from(channel.secret.as_str());
        lock(&self.channels).insert(id, channel);
        Ok(json!({"channel": view, "protocol_version": "v2"}))
    }

    /// A channel's state (`GET /ai-market/v2/channel/{id}`).
    pub fn channel(&self, id: &str) -> Option<Value> {
        lock(&self.channels).get(id).map(|c| c.view(id))
    }

    /// Closes a channel and reports the settlement in both shapes clients read.
    pub fn close(&self, body: &Value) -> Result<Value, Refusal> {
        let id = body
            .get("channel_id")
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::new(400, "bad_request", "`channel_id` is required"))?;
        let mut channels = lock(&self.channels);
        let channel = channels
            .get_mut(id)
            .ok_or_else(|| Refusal::new(404, "channel_not_found", format!("no channel {id}")))?;
        let refund = if channel.closed { 0 } else { channel.balance };
        channel.closed = true;
        channel.balance = 0;
        let used = usd(channel.deposit - refund);
        Ok(json!({
            "settlement": {"channel_id": id, "used_usd": used, "refund_usd": usd(refund)},
            "channel_id": id,
            "total_spent_usd": used,
            "refund_usd": usd(refund),
            "invocations": channel.invocations,
            "protocol_version": "v2",
        }))
    }

    /// Takes payment of `price` for one call, or says why not (always a 402).
    pub fn charge(&self, headers: &PaymentHeaders, price: f64) -> Result<Paid, Refusal> {
        let needed = micros(price);
        if let Some(id) = &headers.channel {
            let mut channels = lock(&self.channels);
            let channel = channels.get_mut(id).ok_or_else(|| {
                Refusal::new(
                    402,
                    "channel_not_found",
                    format!("no channel {id} at this factory"),
                )
            })?;
            let presented = headers.secret.as_deref().unwrap_or("");
            if !bool::from(presented.as_bytes().ct_eq(channel.secret.as_bytes())) {
                return Err(Refusal::new(
                    402,
                    "channel_unauthorized",
                    "missing or wrong X-Payment-Channel-Secret",
                ));
            }
            if channel.closed {
                return Err(Refusal::new(402, "channel_closed", "the channel is closed"));
            }
            if Utc::now() >= channel.expires_at {
                return Err(Refusal::new(402, "channel_expired", "the channel expired"));
            }
            if channel.balance < needed {
                return Err(Refusal::new(
                    402,
                    "insufficient_balance",
                    format!(
                        "the channel holds {} USD; this call costs {price} USD",
                        usd(channel.balance)
                    ),
                ));
            }
            channel.balance -= needed;
            channel.invocations += 1;
            return Ok(Paid::Channel {
                id: id.clone(),
                remaining_usd: usd(channel.balance),
            });
        }
        if let Some(payment) = &headers.payment {
            let hash = tx_hash_of(payment).unwrap_or_default();
            if !is_demo_tx(&hash) {
                return Err(Refusal::new(
                    402,
                    "payment_invalid",
                    "this demo factory accepts only demo transaction hashes (`demo…`, `0xdemo…`)",
                ));
            }
            if !self.claim_tx(&hash) {
                return Err(Refusal::new(
                    402,
                    "payment_replayed",
                    "this transaction hash was already used",
                ));
            }
            return Ok(Paid::Transaction(hash));
        }
        Err(Refusal::new(
            402,
            "payment_required",
            format!(
                "this capability costs {price} USD per call: open a channel at this factory \
             (POST /ai-market/v2/channel/open) and send X-Payment-Channel and \
             X-Payment-Channel-Secret, or send X-Payment with a demo transaction hash"
            ),
        ))
    }

    /// Returns the money of a call that failed after it was charged.
    pub fn refund(&self, paid: &Paid, price: f64) {
        if let Paid::Channel { id, .. } = paid
            && let Some(channel) = lock(&self.channels).get_mut(id)
        {
            channel.balance += micros(price);
            channel.invocations = channel.invocations.saturating_sub(1);
        }
    }

    /// Keeps a signed receipt under its nonce (and any alias, e.g. the payment nonce).
    pub fn store_receipt(&self, receipt: &Value, alias: Option<&str>) {
        let Some(nonce) = receipt.get("nonce").and_then(Value::as_str) else {
            return;
        };
        let mut receipts = lock(&self.receipts);
        if receipts.len() >= MAX_RECEIPTS {
            receipts.clear();
        }
        receipts.insert(nonce.to_owned(), receipt.clone());
        if let Some(alias) = alias {
            receipts.insert(alias.to_owned(), receipt.clone());
        }
    }

    /// A stored receipt.
    pub fn receipt(&self, nonce: &str) -> Option<Value> {
        lock(&self.receipts).get(nonce).cloned()
    }

    /// Channels opened so far.
    pub fn channels_opened(&self) -> usize {
        lock(&self.channels).len()
    }
}

/// The 402 challenge for a capability: the JSON body fields and the two headers
/// (`X-Payment-Required`, v1 JSON; `PAYMENT-REQUIRED`, x402 v2 base64).
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Extra body fields (`needed`, `payment_ways`, x402 v1 `accepts`, …).
    pub body: Value,
    /// `X-Payment-Required` value.
    pub x_payment_required: String,
    /// `PAYMENT-REQUIRED` value.
    pub payment_required: String,
    /// `X-Payment-Nonce` value.
    pub nonce: String,
}

/// Builds the challenge for a call of `price` to `resource` at a factory paid to `recipient`.
pub fn challenge(
    price: f64,
    base_url: &str,
    resource: &str,
    description: &str,
    recipient: &str,
) -> Challenge {
    let nonce = format!("pay_{}", uuid::Uuid::new_v4().simple());
    let expires_at =
        (Utc::now() + Duration::minutes(10)).to_rfc3339_opts(SecondsFormat::Secs, true);
    // Token base units (6 decimals), rounded up so the payment always covers the price.
    let base_units = ((price * 1e6).ceil() as u64).max(1).to_string();
    let v1 = json!({
        "amount": format!("{price}"),
        "token": "USDC",
        "chain": "base",
        "recipient": recipient,
        "nonce": nonce,
        "expires_at": expires_at,
        "receipt_url": format!("/ai-market/receipt/{nonce}"),
    });
    let x402 = json!({
        "x402Version": 2,
        "error": "Payment required",
        "resource": {"url": resource, "description": description, "mimeType": "application/json"},
        "accepts": [{"scheme": "exact", "network": "eip155:8453", "amount": base_units, "asset": USDC_BASE,
            "payTo": recipient, "maxTimeoutSeconds": 300,
            "extra": {"name": "USD Coin", "version": "2", "nonce": nonce}}],
        "nonce": nonce,
    });
    let body = json!({
        "needed": price,
        "price_usd": price,
        "payment_ways": [
            {"rail": "channel", "header": "X-Payment-Channel", "also": ["X-Payment-Channel-Secret"],
             "open": format!("{base_url}/ai-market/v2/channel/open")},
            {"rail": "demo_transaction", "header": "X-Payment", "example": "{\"tx_hash\":\"demo-<anything>\",\"chain\":\"base\"}"},
        ],
        "x402Version": 1,
        "accepts": [{"scheme": "exact", "network": "base", "maxAmountRequired": base_units, "asset": USDC_BASE,
            "payTo": recipient, "resource": resource, "description": description, "mimeType": "application/json",
            "maxTimeoutSeconds": 300, "extra": {"name": "USD Coin", "version": "2", "nonce": nonce}}],
        "nonce": nonce,
    });
    Challenge {
        body,
        x_payment_required: v1.to_string(),
        payment_required: base64::engine::general_purpose::STANDARD.encode(x402.to_string()),
        nonce,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn open(ledger: &Ledger, deposit: f64, tx: &str) -> (String, String) {
        let v = ledger
            .open(&json!({"deposit_usd": deposit, "tx_hash": tx}))
            .unwrap();
        let c = &v["channel"];
        (
            c["channel_id"].as_str().unwrap().into(),
            c["channel_secret"].as_str().unwrap().into(),
        )
    }

    #[test]
    fn channels_debit_and_refuse() {
        let ledger = Ledger::default();
        let (id, secret) = open(&ledger, 0.01, "demo-1");
        assert_eq!(
            ledger
                .open(&json!({"deposit_usd": 1, "tx_hash": "demo-1"}))
                .unwrap_err()
                .code,
            "tx_already_used"
        );
        assert_eq!(
            ledger
                .open(&json!({"deposit_usd": 1, "tx_hash": "0xreal"}))
                .unwrap_err()
                .status,
            402
        );
        assert_eq!(
            ledger
                .open(&json!({"deposit_usd": -1, "tx_hash": "demo-2"}))
                .unwrap_err()
                .status,
            400
        );
        let mut h = PaymentHeaders {
            channel: Some(id.clone()),
            secret: Some("wrong".into()),
            payment: None,
        };
        assert_eq!(
            ledger.charge(&h, 0.004).unwrap_err().code,
            "channel_unauthorized"
        );
        h.secret = Some(secret);
        assert!(matches!(
            ledger.charge(&h, 0.004).unwrap(),
            Paid::Channel { .. }
        ));
        let paid = ledger.charge(&h, 0.004).unwrap();
        assert_eq!(
            ledger.charge(&h, 0.004).unwrap_err().code,
            "insufficient_balance"
        );
        ledger.refund(&paid, 0.004);
        assert!(ledger.charge(&h, 0.004).is_ok());
        let closed = ledger.close(&json!({"channel_id": id})).unwrap();
        assert_eq!(closed["invocations"], 2);
        assert_eq!(closed["settlement"]["refund_usd"].as_f64(), Some(0.002));
        assert_eq!(ledger.charge(&h, 0.001).unwrap_err().code, "channel_closed");
    }

    #[test]
    fn demo_transactions_pay_once() {
        let ledger = Ledger::default();
        let h = PaymentHeaders {
            payment: Some(r#"{"tx_hash":"0xdemo42","chain":"base"}"#.into()),
            ..Default::default()
        };
        assert_eq!(
            ledger.charge(&h, 0.01).unwrap(),
            Paid::Transaction("0xdemo42".into())
        );
        assert_eq!(
            ledger.charge(&h, 0.01).unwrap_err().code,
            "payment_replayed"
        );
        let bad = PaymentHeaders {
            payment: Some("0xabc".into()),
            ..Default::default()
        };
        assert_eq!(
            ledger.charge(&bad, 0.01).unwrap_err().code,
            "payment_invalid"
        );
        assert_eq!(
            ledger
                .charge(&PaymentHeaders::default(), 0.01)
                .unwrap_err()
                .code,
            "payment_required"
        );
    }

    #[test]
    fn challenge_headers_decode() {
        let c = challenge(
            0.004,
            "http://f",
            "http://f/ai-market/v2/invoke",
            "x",
            "0xabc",
        );
        let v1: Value = serde_json::from_str(&c.x_payment_required).unwrap();
        assert_eq!(
            (v1["amount"].as_str(), v1["token"].as_str()),
            (Some("0.004"), Some("USDC"))
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&c.payment_required)
            .unwrap();
        let x402: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(x402["accepts"][0]["amount"], "4000");
        assert_eq!(c.body["needed"], 0.004);
    }
}

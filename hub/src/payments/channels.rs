//! Channels: open (after the deposit is verified), read, close.

use std::fmt;

use sha2::{Digest, Sha256};

use super::payer_proof::PayerProof;
use super::verifier::DepositClaim;
use super::{Ledger, MAX_DEPOSIT_USD, PaymentError, duration_ms, is_lookup_key, usd_to_micros};
use crate::store::{ChannelRow, NewChannelRow, now_ms};

/// Token label when the opener names none.
pub const DEFAULT_TOKEN: &str = "USDC";
/// Chain label when the opener names none.
pub const DEFAULT_CHAIN: &str = "base";
/// Longest transaction hash accepted (a 0x hash is 66; demo placeholders are short).
const MAX_TX_HASH_CHARS: usize = 200;
/// Longest token or chain label accepted.
const MAX_LABEL_CHARS: usize = 64;
/// Longest channel id looked up; anything longer cannot be one of ours.
pub(super) const MAX_CHANNEL_ID_CHARS: usize = 128;

/// What a depositor asks for (`POST /ai-market/v2/channel/open`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenChannel {
    /// Deposit in USD; must be in (0, [`MAX_DEPOSIT_USD`]].
    pub deposit_usd: f64,
    /// The funding transaction; `None` only for demo channels (the Rust/TS/Dart SDKs send
    /// none).
    pub tx_hash: Option<String>,
    /// Token label (default [`DEFAULT_TOKEN`]).
    pub token: Option<String>,
    /// Chain label (default [`DEFAULT_CHAIN`]).
    pub chain: Option<String>,
    /// The paying wallet (`0x…`), with `payer_signature` the payer proof; required for
    /// on-chain deposits.
    pub payer: Option<String>,
    /// EIP-191 signature of the `AIMarket-Payer-Proof/v1` message by `payer`.
    pub payer_signature: Option<String>,
}

/// The debit secret of a channel, shown once at open. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelSecret(String);

impl ChannelSecret {
    pub(super) fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(format!("chs_{}", hex::encode(bytes)))
    }

    /// The secret, for the one answer that hands it to the depositor.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ChannelSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelSecret(<redacted>)")
    }
}

/// Stored lifecycle of a channel. Expiry is derived from `expires_at`, not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelStatus {
    /// Accepts debits until it expires.
    Open,
    /// Settled; accepts nothing.
    Closed,
}

impl ChannelStatus {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Result<Self, PaymentError> {
        match s {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            other => Err(PaymentError::Corrupt(format!(
                "unknown channel status `{other}`"
            ))),
        }
    }
}

/// A payment channel. Amounts are micro-dollars, times unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// `ch_<32 hex>`.
    pub id: String,
    /// What was deposited.
    pub deposit_micros: i64,
    /// Captured debits.
    pub used_micros: i64,
    /// Reserved by calls in flight.
    pub held_micros: i64,
    /// Captured calls.
    pub invocations: i64,
    /// Token label.
    pub token: String,
    /// Chain label.
    pub chain: String,
    /// The funding transaction (normalised), if any.
    pub tx_hash: Option<String>,
    /// The proven sender of an on-chain deposit (`0x…` lower-case): where refunds go.
    pub payer: Option<String>,
    /// Which verifier accepted the deposit (`demo` or `evm`).
    pub verifier: String,
    /// Whether debits must present the channel secret (on-chain deposits).
    pub secret_required: bool,
    /// Stored status.
    pub status: ChannelStatus,
    /// Opened at.
    pub created_at: i64,
    /// Debits are refused from this instant on.
    pub expires_at: i64,
    /// Closed at, once closed.
    pub closed_at: Option<i64>,
    /// The settlement transaction named at close, if any.
    pub settle_tx_hash: Option<String>,
    /// The escrow channel this channel mirrors (`0x` + 64 hex), for non-custodial channels.
    pub escrow_id: Option<String>,
    /// The secret: `Some` only on the value [`Ledger::open_channel`] returns.
    pub secret: Option<ChannelSecret>,
}

impl Channel {
    /// Available balance: deposit − captured − held.
    pub fn balance_micros(&self) -> i64 {
        self.deposit_micros - self.used_micros - self.held_micros
    }

    /// What goes back to the depositor at close: deposit − captured.
    pub fn refund_micros(&self) -> i64 {
        self.deposit_micros - self.used_micros
    }

    /// `escrow` (funds on the escrow contract, debits signed by the depositor) or
    /// `custodial` (a deposit to the hub, or a demo channel).
    pub fn kind(&self) -> &'static str {
        if self.escrow_id.is_some() {
            "escrow"
        } else {
            "custodial"
        }
    }

    /// Whether the channel's lifetime has ended at `now_ms`.
    pub fn is_expired_at(&self, now_ms: i64) -> bool {
        self.expires_at <= now_ms
    }

    /// `open`, `expired` or `closed` as of `now_ms` (the channel endpoint's `status`).
    pub fn state_at(&self, now_ms: i64) -> &'static str {
        match self.status {
            ChannelStatus::Closed => "closed",
            ChannelStatus::Open if self.is_expired_at(now_ms) => "expired",
            ChannelStatus::Open => "open",
        }
    }

    fn settlement(&self) -> Settlement {
        Settlement {
            channel_id: self.id.clone(),
            used_micros: self.used_micros,
            refund_micros: self.refund_micros(),
            invocations: self.invocations,
            settle_tx_hash: self.settle_tx_hash.clone(),
            closed_at: self.closed_at.unwrap_or(self.created_at),
        }
    }
}

/// The outcome of closing a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The channel.
    pub channel_id: String,
    /// Captured debits (what the hub keeps).
    pub used_micros: i64,
    /// What goes back to the depositor.
    pub refund_micros: i64,
    /// Captured calls.
    pub invocations: i64,
    /// The settlement transaction named at (the first) close.
    pub settle_tx_hash: Option<String>,
    /// When the channel was closed.
    pub closed_at: i64,
}

impl TryFrom<ChannelRow> for Channel {
    type Error = PaymentError;
    fn try_from(r: ChannelRow) -> Result<Self, PaymentError> {
        Ok(Channel {
            status: ChannelStatus::parse(&r.status)?,
            id: r.id,
            deposit_micros: r.deposit,
            used_micros: r.used,
            held_micros: r.held,
            invocations: r.invocations,
            token: r.token,
            chain: r.chain,
            tx_hash: r.tx_hash,
            payer: r.payer,
            verifier: r.verifier,
            secret_required: r.secret_required,
            created_at: r.created_at,
            expires_at: r.expires_at,
            closed_at: r.closed_at,
            settle_tx_hash: r.settle_tx_hash,
            escrow_id: r.escrow_id,
            secret: None,
        })
    }
}

/// Hex SHA-256 of a channel secret (what the table stores and compares).
pub(super) fn secret_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Validates a deposit amount: finite, positive, at most [`MAX_DEPOSIT_USD`], at least one
/// micro-dollar.
fn deposit_micros(deposit_usd: f64) -> Result<i64, PaymentError> {
    let invalid = |reason: String| PaymentError::InvalidAmount {
        what: "deposit_usd",
        reason,
    };
    if !deposit_usd.is_finite() {
        return Err(invalid("must be a finite number".into()));
    }
    if deposit_usd <= 0.0 {
        return Err(invalid(format!(
            "must be greater than 0, got {deposit_usd}"
        )));
    }
    if deposit_usd > MAX_DEPOSIT_USD {
        return Err(invalid(format!(
            "must be at most {MAX_DEPOSIT_USD} USD, got {deposit_usd}"
        )));
    }
    match usd_to_micros(deposit_usd)? {
        0 => Err(invalid("must be at least 0.000001 USD".into())),
        micros => Ok(micros),
    }
}

/// Trims a transaction hash; hex `0x` hashes are lower-cased so that one transaction has one
/// spelling (the UNIQUE constraint must see replays in any case).
pub(super) fn normalize_tx_hash(
    raw: Option<&str>,
    what: &str,
) -> Result<Option<String>, PaymentError> {
    let Some(hash) = raw.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    if hash.chars().count() > MAX_TX_HASH_CHARS {
        return Err(PaymentError::InvalidRequest(format!(
            "{what} is longer than {MAX_TX_HASH_CHARS} characters"
        )));
    }
    if hash.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(PaymentError::InvalidRequest(format!(
            "{what} must not contain whitespace or control characters"
        )));
    }
    let is_hex = hash.len() > 2
        && hash.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x"))
        && hash.bytes().skip(2).all(|b| b.is_ascii_hexdigit());
    // A bare 32-byte hex hash is the same transaction as its 0x spelling (the payer proof's
    // canonical `tx` adds the prefix too), so it must hit the same UNIQUE row.
    let bare_hash = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    Ok(Some(if is_hex {
        hash.to_ascii_lowercase()
    } else if bare_hash {
        format!("0x{}", hash.to_ascii_lowercase())
    } else {
        hash.to_owned()
    }))
}

pub(super) fn label(raw: Option<&str>, default: &str, what: &str) -> Result<String, PaymentError> {
    let value = raw
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(default);
    if value.chars().count() > MAX_LABEL_CHARS || value.chars().any(char::is_control) {
        return Err(PaymentError::InvalidRequest(format!(
            "{what} must be at most {MAX_LABEL_CHARS} printable characters"
        )));
    }
    Ok(value.to_owned())
}

impl Ledger {
    /// Opens a channel: validates the request, verifies the deposit with the configured
    /// verifiers, and records the channel. The returned channel carries the secret (the only
    /// time it is available). A transaction hash funds one channel, ever:
    /// [`PaymentError::TxAlreadyUsed`] otherwise.
    pub async fn open_channel(&self, request: OpenChannel) -> Result<Channel, PaymentError> {
        let deposit = deposit_micros(request.deposit_usd)?;
        let token = label(request.token.as_deref(), DEFAULT_TOKEN, "token")?;
        let chain = label(request.chain.as_deref(), DEFAULT_CHAIN, "chain")?;
        let tx_hash = normalize_tx_hash(request.tx_hash.as_deref(), "tx_hash")?;
        if let Some(hash) = &tx_hash {
            // Cheap early answer that spares the RPC call; the UNIQUE constraint decides.
            if self.store.channel_tx_hash_used(hash).await? {
                return Err(PaymentError::TxAlreadyUsed {
                    tx_hash: hash.clone(),
                });
            }
        }
        let payer_proof =
            PayerProof::parse(request.payer.as_deref(), request.payer_signature.as_deref())?;
        let claim = DepositClaim {
            deposit_micros: deposit,
            deposit_usd: request.deposit_usd,
            payer_proof,
            tx_hash: tx_hash.clone(),
            token: token.clone(),
            chain: chain.clone(),
        };
        let verified = self.verifiers.verify(&claim).await?;

        let now = now_ms();
        let secret = ChannelSecret::generate();
        let channel = Channel {
            id: format!("ch_{}", uuid::Uuid::new_v4().simple()),
            deposit_micros: deposit,
            used_micros: 0,
            held_micros: 0,
            invocations: 0,
            token,
            chain,
            tx_hash,
            payer: verified.payer,
            verifier: verified.verifier.to_owned(),
            secret_required: verified.secret_required,
            status: ChannelStatus::Open,
            created_at: now,
            expires_at: now.saturating_add(duration_ms(self.config.channel_ttl)),
            closed_at: None,
            settle_tx_hash: None,
            escrow_id: None,
            secret: Some(secret),
        };
        self.insert_channel(&channel).await?;
        tracing::info!(
            channel_id = %channel.id,
            deposit_micros = deposit,
            verifier = %channel.verifier,
            "payment channel opened"
        );
        Ok(channel)
    }

    /// The settlement of a closed channel, with its on-chain refund sent (or resumed) when
    /// the hub has a wallet and the deposit a proven payer.
    async fn settle_on_chain(&self, channel: Channel) -> Result<Settlement, PaymentError> {
        let mut settlement = channel.settlement();
        // An escrow channel is paid out by the contract (settleChannel), never by a refund
        // from the hub's wallet: the hub never held the deposit.
        let sent = if channel.escrow_id.is_some() {
            self.settle_escrow(&channel).await?
        } else {
            self.refund_on_chain(&channel).await?
        };
        if let Some(tx_hash) = sent {
            settlement.settle_tx_hash = Some(tx_hash);
        }
        Ok(settlement)
    }

    pub(super) async fn insert_channel(&self, c: &Channel) -> Result<(), PaymentError> {
        let digest = hex::encode(secret_digest(
            c.secret
                .as_ref()
                .map(ChannelSecret::expose)
                .unwrap_or_default(),
        ));
        let inserted = self
            .store
            .insert_channel(&NewChannelRow {
                id: &c.id,
                secret_sha256: &digest,
                secret_required: c.secret_required,
                deposit: c.deposit_micros,
                token: &c.token,
                chain: &c.chain,
                tx_hash: c.tx_hash.as_deref(),
                verifier: &c.verifier,
                created_at: c.created_at,
                expires_at: c.expires_at,
                payer: c.payer.as_deref(),
                escrow_id: c.escrow_id.as_deref(),
            })
            .await?;
        match (inserted, c.tx_hash.as_ref().or(c.escrow_id.as_ref())) {
            (true, _) => Ok(()),
            // The funding transaction (or escrow channel) is taken: it funds one channel.
            (false, Some(funding)) => Err(PaymentError::TxAlreadyUsed {
                tx_hash: funding.clone(),
            }),
            // Only the random channel id can collide here.
            (false, None) => Err(PaymentError::Corrupt(format!(
                "channel id {} is taken",
                c.id
            ))),
        }
    }

    /// The channel `id` (without its secret), or [`PaymentError::ChannelNotFound`].
    pub async fn get_channel(&self, id: &str) -> Result<Channel, PaymentError> {
        self.find_channel(id)
            .await?
            .ok_or_else(|| PaymentError::ChannelNotFound {
                channel_id: id.to_owned(),
            })
    }

    pub(super) async fn find_channel(&self, id: &str) -> Result<Option<Channel>, PaymentError> {
        if !is_lookup_key(id, MAX_CHANNEL_ID_CHARS) {
            return Ok(None);
        }
        let row = self.store.channel(id).await?;
        row.map(Channel::try_from).transpose()
    }

    /// Closes channel `id` and settles it: the hub keeps what was captured, the rest is the
    /// depositor's refund. Needs no secret (the refund can only go back to the depositor).
    ///
    /// Refused with [`PaymentError::ChannelBusy`] while calls paid from the channel are in
    /// flight, so a settlement is final. Closing again is not an error: it answers the first
    /// settlement unchanged (the first `settle_tx_hash` is kept).
    pub async fn close_channel(
        &self,
        id: &str,
        settle_tx_hash: Option<String>,
    ) -> Result<Settlement, PaymentError> {
        let settle = normalize_tx_hash(settle_tx_hash.as_deref(), "settle_tx_hash")?;
        let closed = if !is_lookup_key(id, MAX_CHANNEL_ID_CHARS) {
            None
        } else {
            self.store
                .close_channel(id, now_ms(), settle.as_deref())
                .await?
        };
        if let Some(row) = closed {
            let channel = Channel::try_from(row)?;
            tracing::info!(
                channel_id = %channel.id,
                used_micros = channel.used_micros,
                refund_micros = channel.refund_micros(),
                "payment channel closed"
            );
            return self.settle_on_chain(channel).await;
        }
        let channel = self.get_channel(id).await?;
        if channel.status == ChannelStatus::Closed {
            // A retried close resumes the refund (same recorded transaction, never a second).
            return self.settle_on_chain(channel).await;
        }
        let holds = self.store.count_open_holds(id).await?;
        Err(PaymentError::ChannelBusy {
            channel_id: id.to_owned(),
            holds: holds.max(1),
        })
    }

    /// Channels open and not yet expired (the `aimarket_channels_open` gauge).
    pub async fn open_channels(&self) -> Result<i64, PaymentError> {
        Ok(self.store.count_open_channels(now_ms()).await?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::normalize_tx_hash;

    /// Regression (issue #13, found by the hostile-input run and the `channel_bodies` fuzz
    /// target): a hash whose first character is multi-byte used to panic in `hash[..2]`.
    #[test]
    fn multi_byte_hashes_do_not_panic() {
        for raw in ["☃", "\u{d7ff}", "é", "0☃", "☃x12", "0x☃", "😀😀😀"] {
            assert_eq!(
                normalize_tx_hash(Some(raw), "tx_hash").unwrap().as_deref(),
                Some(raw),
                "{raw:?} is kept as it came"
            );
        }
    }

    #[test]
    fn hex_hashes_are_lower_cased_and_others_kept() {
        let norm = |s| normalize_tx_hash(Some(s), "tx_hash").unwrap();
        assert_eq!(norm(" 0XAbC1 ").as_deref(), Some("0xabc1"));
        assert_eq!(norm("0x").as_deref(), Some("0x"));
        assert_eq!(norm("0xZZ").as_deref(), Some("0xZZ"));
        assert_eq!(normalize_tx_hash(Some("  "), "tx_hash").unwrap(), None);
        assert!(normalize_tx_hash(Some("a b"), "tx_hash").is_err());
    }
}

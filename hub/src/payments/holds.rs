//! Holds: reserve before forwarding, then capture (with the receipt) or release.

use std::sync::Arc;

use serde_json::Value;
use subtle::ConstantTimeEq;

use super::channels::{ChannelStatus, MAX_CHANNEL_ID_CHARS, secret_digest};
use super::error::SecretProblem;
use super::records::receipt_row;
use super::{HoldGuard, Ledger, PaymentError, duration_ms, is_lookup_key};
use crate::store::{ChannelAuthRow, HoldCapture, HoldReserve, NewHold, Store, now_ms};

/// Longest hold id accepted.
const MAX_HOLD_ID_CHARS: usize = 200;
/// Lifecycle of a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    /// Reserved; the call is in flight.
    Held,
    /// Debited; a receipt exists.
    Captured,
    /// Given back to the channel.
    Released,
}

impl HoldState {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Captured => "captured",
            Self::Released => "released",
        }
    }

    fn parse(s: &str) -> Result<Self, PaymentError> {
        match s {
            "held" => Ok(Self::Held),
            "captured" => Ok(Self::Captured),
            "released" => Ok(Self::Released),
            other => Err(PaymentError::Corrupt(format!(
                "unknown hold state `{other}`"
            ))),
        }
    }
}

/// A reservation against a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The caller's id for it (e.g. the receipt nonce).
    pub id: String,
    /// The channel it draws on.
    pub channel_id: String,
    /// Reserved micro-dollars.
    pub amount_micros: i64,
    /// When the hold counts as abandoned (unix ms).
    pub lease_until: i64,
}

/// What a hold may know about a channel without reading it: what never changes once it is
/// opened (its secret's digest, whether a debit needs it, whether it is an escrow channel,
/// when it expires) and whether it was seen closed (closing is final). Kept in memory after
/// the first read, so a hold on a known channel is one guarded write and no read, and a
/// closed or expired one is refused without taking the write slot. The balance changes with
/// every call, so the write's guard checks it (with status and expiry again), and a refused
/// write reads the channel afresh to say why.
#[derive(Debug, Clone)]
pub(crate) struct ChannelKeys {
    secret_sha256: String,
    secret_required: bool,
    escrow: bool,
    expires_at: i64,
    closed: bool,
}

impl From<&ChannelAuthRow> for ChannelKeys {
    fn from(row: &ChannelAuthRow) -> Self {
        Self {
            secret_sha256: row.secret_sha256.clone(),
            secret_required: row.secret_required,
            escrow: row.escrow,
            expires_at: row.expires_at,
            closed: row.status == ChannelStatus::Closed.as_str(),
        }
    }
}

/// Channels whose [`ChannelKeys`] are kept (a few hundred bytes each).
pub(crate) const CACHED_CHANNELS: u64 = 100_000;

/// Checks a presented secret against the stored digest in constant time.
fn check_secret(auth: &ChannelKeys, secret: Option<&str>) -> Result<(), PaymentError> {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        if auth.secret_required {
            return Err(PaymentError::BadSecret {
                problem: SecretProblem::Missing,
            });
        }
        return Ok(());
    };
    let stored = hex::decode(&auth.secret_sha256)
        .map_err(|_| PaymentError::Corrupt("channel secret digest is not hex".into()))?;
    let presented = secret_digest(secret);
    if bool::from(presented.as_slice().ct_eq(stored.as_slice())) {
        Ok(())
    } else {
        Err(PaymentError::BadSecret {
            problem: SecretProblem::Wrong,
        })
    }
}

/// An escrow channel is debited only with the depositor's authorization.
fn check_kind(
    escrow: bool,
    authorized: bool,
    channel_id: &str,
    amount_micros: i64,
) -> Result<(), PaymentError> {
    if escrow && !authorized {
        return Err(PaymentError::AuthorizationRequired {
            field: "payment_authorization",
            reason: format!(
                "required on escrow channel {channel_id}: a DebitAuthorization for \
                 {amount_micros} base units signed by the depositor"
            ),
        });
    }
    Ok(())
}

fn check_hold_id(hold_id: &str) -> Result<(), PaymentError> {
    if hold_id.is_empty() || hold_id.chars().count() > MAX_HOLD_ID_CHARS || hold_id.contains('\0') {
        return Err(PaymentError::InvalidRequest(format!(
            "hold id must be 1 to {MAX_HOLD_ID_CHARS} characters, none of them NUL"
        )));
    }
    Ok(())
}

impl Ledger {
    /// Whether channel `channel_id` authenticates with `secret` the way a hold would (same
    /// secret rule, constant-time), without reserving anything: `Ok(true)` when it is also
    /// open and unexpired, `Ok(false)` when it is closed or expired. Unknown channels are
    /// [`PaymentError::ChannelNotFound`], a missing or wrong secret
    /// [`PaymentError::BadSecret`]. One indexed read; used to decide whether the channel may
    /// be a rate-limit identity (`crate::limits`).
    pub async fn authenticate_channel(
        &self,
        channel_id: &str,
        secret: Option<&str>,
    ) -> Result<bool, PaymentError> {
        let (auth, keys) = self.channel_auth(channel_id).await?;
        check_secret(&keys, secret)?;
        Ok(auth.status != ChannelStatus::Closed.as_str() && auth.expires_at > now_ms())
    }

    /// The channel's authentication row (one indexed read, outside any write slot) and what
    /// is now kept of it, or [`PaymentError::ChannelNotFound`].
    async fn channel_auth(
        &self,
        channel_id: &str,
    ) -> Result<(ChannelAuthRow, Arc<ChannelKeys>), PaymentError> {
        let not_found = || PaymentError::ChannelNotFound {
            channel_id: channel_id.to_owned(),
        };
        if !is_lookup_key(channel_id, MAX_CHANNEL_ID_CHARS) {
            return Err(not_found());
        }
        let auth = self
            .store
            .channel_auth(channel_id)
            .await?
            .ok_or_else(not_found)?;
        let keys = Arc::new(ChannelKeys::from(&auth));
        self.channel_keys
            .insert(channel_id.to_owned(), Arc::clone(&keys));
        Ok((auth, keys))
    }

    /// Reserves `amount_micros` on channel `channel_id` for the call `hold_id` (a unique id
    /// the caller chooses, e.g. the receipt nonce).
    ///
    /// Checks, in order: the channel exists, the secret (constant time; required for on-chain
    /// channels, optional but checked when given for demo channels), not closed, not expired,
    /// balance ≥ amount: from the channel's first read, then from what is kept of it
    /// (`ChannelKeys`), the balance by the write itself. The reservation is one guarded
    /// statement with the hold row (open, unexpired, enough balance), so concurrent holds can
    /// never overdraw the channel; a refused one reads the channel afresh to say why.
    ///
    /// An escrow channel is refused with [`PaymentError::AuthorizationRequired`]: its debits
    /// go through [`Ledger::hold_escrow`], with the depositor's signed authorization.
    ///
    /// The returned guard must be captured or released (see [`HoldGuard`]).
    pub async fn hold(
        &self,
        channel_id: &str,
        secret: Option<&str>,
        amount_micros: i64,
        hold_id: &str,
    ) -> Result<HoldGuard, PaymentError> {
        self.hold_checked(channel_id, secret, amount_micros, hold_id, false)
            .await
    }

    /// [`Ledger::hold`]; `authorized` when the caller verified an escrow authorization.
    pub(super) async fn hold_checked(
        &self,
        channel_id: &str,
        secret: Option<&str>,
        amount_micros: i64,
        hold_id: &str,
        authorized: bool,
    ) -> Result<HoldGuard, PaymentError> {
        if amount_micros < 0 {
            return Err(PaymentError::InvalidAmount {
                what: "hold amount",
                reason: "must not be negative".into(),
            });
        }
        check_hold_id(hold_id)?;
        // A known channel's secret and kind are checked from memory; the reservation's guard
        // checks the rest. The first hold on a channel reads it, and refuses from that read
        // (outside the write slot) what it can.
        let now = now_ms();
        let (keys, read) = match self.channel_keys.get(channel_id) {
            Some(keys) => (keys, None),
            None => {
                let (auth, keys) = self.channel_auth(channel_id).await?;
                (keys, Some(auth))
            }
        };
        check_secret(&keys, secret)?;
        check_kind(keys.escrow, authorized, channel_id, amount_micros)?;
        if keys.closed {
            return Err(PaymentError::Closed {
                channel_id: channel_id.to_owned(),
            });
        }
        if keys.expires_at <= now {
            return Err(PaymentError::Expired {
                channel_id: channel_id.to_owned(),
            });
        }
        if let Some(auth) = read
            && auth.balance < amount_micros
        {
            return Err(PaymentError::InsufficientBalance {
                balance_micros: auth.balance,
                needed_micros: amount_micros,
            });
        }

        let lease_until = now.saturating_add(duration_ms(self.config.hold_lease));
        let reserved = self
            .store
            .reserve_hold(&NewHold {
                id: hold_id,
                channel_id,
                amount: amount_micros,
                now,
                lease_until,
            })
            .await?;
        match reserved {
            HoldReserve::Reserved => Ok(HoldGuard::new(
                self,
                Hold {
                    id: hold_id.to_owned(),
                    channel_id: channel_id.to_owned(),
                    amount_micros,
                    lease_until,
                },
            )),
            // The guard failed between the read and the write: say why, from a fresh read.
            HoldReserve::Refused => {
                let channel = self.get_channel(channel_id).await?;
                if channel.status == ChannelStatus::Closed {
                    // Final: later holds are refused from memory.
                    self.channel_keys.insert(
                        channel_id.to_owned(),
                        Arc::new(ChannelKeys {
                            closed: true,
                            ..(*keys).clone()
                        }),
                    );
                }
                Err(if channel.status == ChannelStatus::Closed {
                    PaymentError::Closed {
                        channel_id: channel.id,
                    }
                } else if channel.is_expired_at(now) {
                    PaymentError::Expired {
                        channel_id: channel.id,
                    }
                } else {
                    PaymentError::InsufficientBalance {
                        balance_micros: channel.balance_micros(),
                        needed_micros: amount_micros,
                    }
                })
            }
            HoldReserve::Duplicate => Err(PaymentError::DuplicateHold {
                hold_id: hold_id.to_owned(),
            }),
        }
    }

    /// Captures hold `hold_id` and stores `receipt` (the signed hub receipt for the call), in
    /// ONE transaction: the hold becomes `captured`, the channel's `used` grows by the held
    /// amount, `invocations` by one, and the receipt row records the amount charged. Either
    /// all of it happens or none.
    ///
    /// Calls settle through their [`HoldGuard`]; by id only for holds whose guard is gone
    /// (a previous process's).
    pub(crate) async fn capture(&self, hold_id: &str, receipt: &Value) -> Result<(), PaymentError> {
        let row = receipt_row(receipt)?;
        match self.store.capture_hold(hold_id, &row, now_ms()).await? {
            HoldCapture::Captured => Ok(()),
            HoldCapture::NotHeld => Err(self.hold_not_held(hold_id).await?),
            HoldCapture::DuplicateReceipt => {
                Err(PaymentError::DuplicateReceipt { nonce: row.nonce })
            }
        }
    }

    /// Releases hold `hold_id`: the amount goes back to the channel's balance. Releasing an
    /// already released hold is a no-op; a captured hold cannot be released
    /// ([`PaymentError::HoldSettled`]).
    pub(crate) async fn release(&self, hold_id: &str) -> Result<(), PaymentError> {
        let released = self.store.release_hold(hold_id, now_ms()).await?;
        if released {
            return Ok(());
        }
        match self.hold_not_held(hold_id).await? {
            PaymentError::HoldSettled {
                state: "released", ..
            } => Ok(()),
            other => Err(other),
        }
    }

    /// The state of hold `hold_id`, if it exists.
    pub async fn hold_state(&self, hold_id: &str) -> Result<Option<HoldState>, PaymentError> {
        if !is_lookup_key(hold_id, 4 * MAX_HOLD_ID_CHARS) {
            return Ok(None);
        }
        let state = self.store.hold_state(hold_id).await?;
        state.as_deref().map(HoldState::parse).transpose()
    }

    /// Why `hold_id` could not be captured or released: it does not exist, or it already is.
    async fn hold_not_held(&self, hold_id: &str) -> Result<PaymentError, PaymentError> {
        Ok(match self.hold_state(hold_id).await? {
            None => PaymentError::HoldNotFound {
                hold_id: hold_id.to_owned(),
            },
            Some(state) => PaymentError::HoldSettled {
                hold_id: hold_id.to_owned(),
                state: state.as_str(),
            },
        })
    }

    /// Releases the holds a dead process left behind; call once at startup, before serving.
    /// Returns how many were released.
    ///
    /// On SQLite the database belongs to this one hub process, so every hold still `held`
    /// was abandoned and all are released. On PostgreSQL other replicas may be mid-call, so
    /// only holds whose lease ran out are released (the rest follow through the periodic
    /// [`Ledger::release_expired_holds`] once their lease ends).
    pub async fn recover_on_startup(&self) -> Result<u64, PaymentError> {
        let cutoff = match &self.store {
            Store::Sqlite(_) => i64::MAX,
            Store::Postgres(_) => now_ms(),
        };
        let released = self.release_holds_before(cutoff).await?;
        if released > 0 {
            tracing::warn!(
                released,
                "released channel holds abandoned by a previous run"
            );
        }
        Ok(released)
    }

    /// Releases every hold whose lease has run out (its call outlived the provider timeout
    /// plus a margin, so its process is gone). Returns how many were released.
    pub async fn release_expired_holds(&self) -> Result<u64, PaymentError> {
        self.release_holds_before(now_ms()).await
    }

    /// Releases holds still `held` with `lease_until <= cutoff` (see
    /// [`Store::release_holds_before`]).
    async fn release_holds_before(&self, cutoff: i64) -> Result<u64, PaymentError> {
        Ok(self.store.release_holds_before(cutoff, now_ms()).await?)
    }
}

//! Holds: the reservation, its capture with the receipt, its release, and the sweep of
//! abandoned ones.

use std::collections::BTreeMap;

use super::super::{BeginWrite as _, Store, StoreError, on_pool, on_pool_write};
use super::records::ReceiptRow;
use super::unless_duplicate;

/// Returns a released hold's amount to its channel.
const GIVE_BACK: &str = "UPDATE channels SET held = held - $2 WHERE id = $1";
/// SQLite's hold: the row is inserted only when the channel can pay, and the
/// `holds_reserve` trigger reserves the amount in the same statement.
const SQLITE_HOLD: &str = "INSERT INTO holds (id, channel_id, amount, state, created_at, \
     lease_until) SELECT $1, id, $3, 'held', $4, $5 FROM channels \
     WHERE id = $2 AND status = 'open' AND expires_at > $4 AND deposit - used - held >= $3";
/// SQLite's capture: the receipt row is inserted only for a hold still `held`, and the
/// `receipts_capture` trigger marks the hold captured and debits the channel in the same
/// statement.
const SQLITE_CAPTURE: &str = "INSERT INTO receipts (nonce, receipt, signer, channel_id, \
     hold_id, charged, created_at) SELECT $1, $2, $3, channel_id, id, amount, $4 \
     FROM holds WHERE id = $5 AND state = 'held'";

/// PostgreSQL's hold in one statement (one round trip, one commit): the guarded reservation
/// and the hold row are two parts of one statement, which commits or fails whole (a
/// duplicate id rolls the reservation back).
const POSTGRES_HOLD: &str = "WITH reserved AS (UPDATE channels SET held = held + $3 \
     WHERE id = $2 AND status = 'open' AND expires_at > $4 AND deposit - used - held >= $3 \
     RETURNING id) \
     INSERT INTO holds (id, channel_id, amount, state, created_at, lease_until) \
     SELECT $1, id, $3, 'held', $4, $5 FROM reserved";
/// PostgreSQL's capture in one statement: the hold taken, the channel debited and the
/// receipt row inserted, or nothing (a data-modifying `WITH` part runs whether or not the
/// outer statement reads it; a duplicate receipt nonce rolls all three back).
const POSTGRES_CAPTURE: &str = "WITH taken AS (UPDATE holds SET state = 'captured', \
     settled_at = $4 WHERE id = $5 AND state = 'held' RETURNING id, channel_id, amount), \
     debit AS (UPDATE channels SET held = channels.held - taken.amount, \
     used = channels.used + taken.amount, invocations = channels.invocations + 1 \
     FROM taken WHERE channels.id = taken.channel_id RETURNING channels.id) \
     INSERT INTO receipts (nonce, receipt, signer, channel_id, hold_id, charged, created_at) \
     SELECT $1, $2, $3, channel_id, id, amount, $4 FROM taken";

/// A hold to reserve.
#[derive(Debug, Clone, Copy)]
pub struct NewHold<'a> {
    /// The hold's id (the call's receipt nonce).
    pub id: &'a str,
    /// The channel it draws on.
    pub channel_id: &'a str,
    /// Micro-dollars reserved.
    pub amount: i64,
    /// When (unix ms); the channel must not be expired then.
    pub now: i64,
    /// When the hold counts as abandoned (unix ms).
    pub lease_until: i64,
}

/// How a reservation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReserve {
    /// Reserved.
    Reserved,
    /// The channel's guard refused it (closed, expired or short of balance by now).
    Refused,
    /// A hold with this id exists.
    Duplicate,
}

/// How a capture went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldCapture {
    /// Captured: the channel is debited and the receipt stored.
    Captured,
    /// No hold with this id is `held` (missing, captured or released).
    NotHeld,
    /// A receipt with this nonce exists; nothing changed.
    DuplicateReceipt,
}

#[derive(sqlx::FromRow)]
struct Taken {
    channel_id: String,
    amount: i64,
}

impl Store {
    /// Reserves `hold.amount` on its channel in one guarded statement: the channel must be
    /// open, unexpired at `hold.now` and able to pay, so concurrent holds never overdraw it.
    /// (On SQLite a trigger reserves; on PostgreSQL a data-modifying `WITH` does, and a
    /// concurrent hold waits on the channel row and re-checks the guard.)
    pub async fn reserve_hold(&self, hold: &NewHold<'_>) -> Result<HoldReserve, StoreError> {
        let reserved: Result<bool, sqlx::Error> = match self {
            // One guarded INSERT; the `holds_reserve` trigger (migration 0004) reserves the
            // amount in the same statement.
            Store::Sqlite(db) => {
                let _slot = db.write_slot().await;
                sqlx::query(SQLITE_HOLD)
                    .bind(hold.id)
                    .bind(hold.channel_id)
                    .bind(hold.amount)
                    .bind(hold.now)
                    .bind(hold.lease_until)
                    .execute(db.pool())
                    .await
                    .map(|done| done.rows_affected() == 1)
            }
            Store::Postgres(pool) => sqlx::query(POSTGRES_HOLD)
                .bind(hold.id)
                .bind(hold.channel_id)
                .bind(hold.amount)
                .bind(hold.now)
                .bind(hold.lease_until)
                .execute(pool)
                .await
                .map(|done| done.rows_affected() == 1),
        };
        Ok(match unless_duplicate(reserved)? {
            Some(true) => HoldReserve::Reserved,
            Some(false) => HoldReserve::Refused,
            None => HoldReserve::Duplicate,
        })
    }

    /// Captures hold `hold_id` with `receipt` in ONE statement: the hold becomes
    /// `captured`, the channel's `used` grows by the held amount, `invocations` by one, and
    /// the receipt row records the amount charged. Either all of it happens or none.
    pub async fn capture_hold(
        &self,
        hold_id: &str,
        receipt: &ReceiptRow,
        now: i64,
    ) -> Result<HoldCapture, StoreError> {
        let outcome: Result<bool, sqlx::Error> = match self {
            Store::Sqlite(db) => {
                let _slot = db.write_slot().await;
                sqlx::query(SQLITE_CAPTURE)
                    .bind(&receipt.nonce)
                    .bind(&receipt.json)
                    .bind(&receipt.signer)
                    .bind(now)
                    .bind(hold_id)
                    .execute(db.pool())
                    .await
                    .map(|done| done.rows_affected() == 1)
            }
            Store::Postgres(pool) => sqlx::query(POSTGRES_CAPTURE)
                .bind(&receipt.nonce)
                .bind(&receipt.json)
                .bind(&receipt.signer)
                .bind(now)
                .bind(hold_id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected() == 1),
        };
        Ok(match unless_duplicate(outcome)? {
            Some(true) => HoldCapture::Captured,
            Some(false) => HoldCapture::NotHeld,
            None => HoldCapture::DuplicateReceipt,
        })
    }

    /// Releases hold `hold_id` if it is `held`: the amount goes back to its channel.
    /// Whether it was.
    pub async fn release_hold(&self, hold_id: &str, now: i64) -> Result<bool, StoreError> {
        const TAKE: &str = "UPDATE holds SET state = 'released', settled_at = $2 \
             WHERE id = $1 AND state = 'held' RETURNING channel_id, amount";
        Ok(on_pool_write!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let taken: Option<Taken> = sqlx::query_as(TAKE)
                .bind(hold_id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            match taken {
                Some(taken) => {
                    sqlx::query(GIVE_BACK)
                        .bind(&taken.channel_id)
                        .bind(taken.amount)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    true
                }
                None => false,
            }
        }))
    }

    /// The stored state of hold `hold_id` (`held`, `captured` or `released`).
    pub async fn hold_state(&self, hold_id: &str) -> Result<Option<String>, StoreError> {
        const SQL: &str = "SELECT state FROM holds WHERE id = $1";
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(SQL)
                .bind(hold_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Releases holds still `held` with `lease_until <= cutoff`, in one transaction: the hold
    /// rows are locked and flipped first, then each channel gets its sum back, so a
    /// concurrent capture of one of them either wins before (and is not released) or fails.
    /// Returns how many were released.
    pub async fn release_holds_before(&self, cutoff: i64, now: i64) -> Result<u64, StoreError> {
        const TAKE: &str = "UPDATE holds SET state = 'released', settled_at = $1 \
             WHERE state = 'held' AND lease_until <= $2 RETURNING channel_id, amount";
        Ok(on_pool_write!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let taken: Vec<Taken> = sqlx::query_as(TAKE)
                .bind(now)
                .bind(cutoff)
                .fetch_all(&mut *tx)
                .await?;
            // Sorted by channel id: concurrent sweeps lock channels in the same order.
            let mut per_channel: BTreeMap<&str, i64> = BTreeMap::new();
            for t in &taken {
                *per_channel.entry(t.channel_id.as_str()).or_default() += t.amount;
            }
            for (channel_id, amount) in per_channel {
                sqlx::query(GIVE_BACK)
                    .bind(channel_id)
                    .bind(amount)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            taken.len() as u64
        }))
    }
}

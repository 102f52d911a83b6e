//! Escrow debits: the depositors' signed authorizations, stored under their holds until the
//! collector puts them on-chain.

use super::super::{Store, StoreError, on_pool, on_pool_write};
use super::unless_duplicate;

/// One stored authorization of an escrow channel and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EscrowDebit {
    /// The receipt id (also the hold and receipt nonce).
    pub hold_id: String,
    /// The channel nonce it was signed for.
    pub nonce: i64,
    /// Base units.
    pub amount: i64,
    /// `pending` (not known on-chain), `debited` or `failed`.
    pub state: String,
    /// The `debitChannel` transaction, once signed.
    pub tx_hash: Option<String>,
}

/// A captured authorization waiting for the collector.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DebitRow {
    /// The receipt id (also the hold id).
    pub hold_id: String,
    /// The escrow channel.
    pub escrow_id: String,
    /// The signed authorization (JSON).
    pub authorization_json: String,
}

/// An authorization to store under its hold.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct NewEscrowDebit<'a> {
    pub hold_id: &'a str,
    pub channel_id: &'a str,
    pub escrow_id: &'a str,
    pub nonce: i64,
    pub amount: i64,
    pub authorization_json: &'a str,
    pub created_at: i64,
}

impl Store {
    /// The highest channel nonce of escrow channel `escrow_id` among captured debits that
    /// did not fail.
    pub async fn max_captured_debit_nonce(
        &self,
        escrow_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        const SQL: &str = "SELECT MAX(d.nonce) FROM escrow_debits d \
             JOIN holds h ON h.id = d.hold_id \
             WHERE d.escrow_id = $1 AND h.state = 'captured' AND d.state <> 'failed'";
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(SQL)
                .bind(escrow_id)
                .fetch_one(pool)
                .await?
        }))
    }

    /// Stores an authorization, first dropping one with its nonce whose hold was released;
    /// `false` when the nonce is taken by a call in flight.
    pub async fn insert_escrow_debit(&self, d: &NewEscrowDebit<'_>) -> Result<bool, StoreError> {
        const STALE: &str = "DELETE FROM escrow_debits WHERE escrow_id = $1 AND nonce = $2 \
             AND hold_id IN (SELECT id FROM holds WHERE state = 'released')";
        const INSERT: &str = "INSERT INTO escrow_debits (hold_id, channel_id, escrow_id, \
             nonce, amount, authorization_json, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)";
        let result: Result<(), sqlx::Error> = on_pool_write!(self, |pool| {
            async {
                sqlx::query(STALE)
                    .bind(d.escrow_id)
                    .bind(d.nonce)
                    .execute(pool)
                    .await?;
                sqlx::query(INSERT)
                    .bind(d.hold_id)
                    .bind(d.channel_id)
                    .bind(d.escrow_id)
                    .bind(d.nonce)
                    .bind(d.amount)
                    .bind(d.authorization_json)
                    .bind(d.created_at)
                    .execute(pool)
                    .await
                    .map(|_| ())
            }
            .await
        });
        Ok(unless_duplicate(result)?.is_some())
    }

    /// The stored authorizations of channel `channel_id` whose hold was captured, by nonce.
    pub async fn escrow_debits(&self, channel_id: &str) -> Result<Vec<EscrowDebit>, StoreError> {
        const SQL: &str = "SELECT d.hold_id, d.nonce, d.amount, d.state, d.tx_hash \
             FROM escrow_debits d JOIN holds h ON h.id = d.hold_id \
             WHERE d.channel_id = $1 AND h.state = 'captured' ORDER BY d.nonce";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).bind(channel_id).fetch_all(pool).await?
        }))
    }

    /// Up to `limit` captured authorizations not yet on-chain, by channel and nonce.
    pub async fn pending_escrow_debits(&self, limit: i64) -> Result<Vec<DebitRow>, StoreError> {
        const SQL: &str = "SELECT d.hold_id, d.escrow_id, d.authorization_json \
             FROM escrow_debits d JOIN holds h ON h.id = d.hold_id \
             WHERE d.state = 'pending' AND h.state = 'captured' \
             ORDER BY d.escrow_id, d.nonce LIMIT $1";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).bind(limit).fetch_all(pool).await?
        }))
    }

    /// Captured authorizations of channel `channel_id` not yet on-chain.
    pub async fn count_pending_escrow_debits(&self, channel_id: &str) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM escrow_debits d \
             JOIN holds h ON h.id = d.hold_id \
             WHERE d.channel_id = $1 AND d.state = 'pending' AND h.state = 'captured'";
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(SQL)
                .bind(channel_id)
                .fetch_one(pool)
                .await?
        }))
    }

    /// Names the `debitChannel` transaction of the debit under hold `hold_id`.
    pub async fn set_escrow_debit_tx(
        &self,
        hold_id: &str,
        tx_hash: &str,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE escrow_debits SET tx_hash = $2 WHERE hold_id = $1";
        on_pool_write!(self, |pool| {
            sqlx::query(SQL)
                .bind(hold_id)
                .bind(tx_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records how the debit under hold `hold_id` ended (`debited` or `failed`).
    pub async fn mark_escrow_debit(
        &self,
        hold_id: &str,
        state: &str,
        tx_hash: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE escrow_debits SET state = $2, \
             tx_hash = COALESCE($3, tx_hash), settled_at = $4 WHERE hold_id = $1";
        on_pool_write!(self, |pool| {
            sqlx::query(SQL)
                .bind(hold_id)
                .bind(state)
                .bind(tx_hash)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

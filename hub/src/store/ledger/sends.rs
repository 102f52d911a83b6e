//! The hub wallet's transactions (`chain_sends`), written ahead of every broadcast.

use super::super::{Store, StoreError, on_pool, on_pool_write};

/// A stored signed transaction.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SendRow {
    /// Its hash.
    pub tx_hash: String,
    /// The wallet nonce it uses.
    pub nonce: i64,
    /// The signed bytes (hex).
    pub raw_tx: String,
}

/// A signed transaction to record before it is broadcast.
#[derive(Debug, Clone, Copy)]
pub struct NewChainSend<'a> {
    /// The caller's id for it (`refund:…`, `debit:…`, `settle:…`, x402 ids).
    pub id: &'a str,
    /// Who it pays.
    pub to_address: &'a str,
    /// Base units it moves.
    pub amount: i64,
    /// The wallet nonce it uses.
    pub nonce: i64,
    /// Its hash.
    pub tx_hash: &'a str,
    /// The signed bytes (hex).
    pub raw_tx: &'a str,
    /// When (unix ms).
    pub created_at: i64,
}

impl Store {
    /// The recorded send `id`.
    pub async fn chain_send(&self, id: &str) -> Result<Option<SendRow>, StoreError> {
        const SQL: &str = "SELECT tx_hash, nonce, raw_tx FROM chain_sends WHERE id = $1";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).bind(id).fetch_optional(pool).await?
        }))
    }

    /// The highest wallet nonce recorded.
    pub async fn max_chain_send_nonce(&self) -> Result<Option<i64>, StoreError> {
        const SQL: &str = "SELECT MAX(nonce) FROM chain_sends";
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(SQL).fetch_one(pool).await?
        }))
    }

    /// Records a signed send (state `signed`).
    pub async fn insert_chain_send(&self, send: &NewChainSend<'_>) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO chain_sends (id, to_address, amount, nonce, tx_hash, \
             raw_tx, state, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'signed', $7)";
        on_pool_write!(self, |pool| {
            sqlx::query(SQL)
                .bind(send.id)
                .bind(send.to_address)
                .bind(send.amount)
                .bind(send.nonce)
                .bind(send.tx_hash)
                .bind(send.raw_tx)
                .bind(send.created_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records how a `signed` send ended (`succeeded` or `reverted`).
    pub async fn mark_chain_send(
        &self,
        tx_hash: &str,
        state: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE chain_sends SET state = $2, settled_at = $3 \
             WHERE tx_hash = $1 AND state = 'signed'";
        on_pool_write!(self, |pool| {
            sqlx::query(SQL)
                .bind(tx_hash)
                .bind(state)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Up to `limit` sends not known mined, by nonce.
    pub async fn unsettled_chain_sends(&self, limit: i64) -> Result<Vec<SendRow>, StoreError> {
        const SQL: &str = "SELECT tx_hash, nonce, raw_tx FROM chain_sends \
             WHERE state = 'signed' ORDER BY nonce LIMIT $1";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).bind(limit).fetch_all(pool).await?
        }))
    }
}

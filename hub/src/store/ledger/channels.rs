//! Channel rows: opening, reading, closing and counting.

use super::super::{Store, StoreError, on_pool, on_pool_write};
use super::unless_duplicate;

/// The columns [`ChannelRow`] decodes, for `SELECT`/`RETURNING` lists.
macro_rules! channel_columns {
    () => {
        "id, deposit, used, held, invocations, token, chain, tx_hash, payer, verifier, \
         secret_required, status, created_at, expires_at, closed_at, settle_tx_hash, escrow_id"
    };
}

/// A stored channel (without its secret digest).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
#[allow(missing_docs)]
pub struct ChannelRow {
    pub id: String,
    pub deposit: i64,
    pub used: i64,
    pub held: i64,
    pub invocations: i64,
    pub token: String,
    pub chain: String,
    pub tx_hash: Option<String>,
    pub payer: Option<String>,
    pub verifier: String,
    pub secret_required: bool,
    pub status: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub closed_at: Option<i64>,
    pub settle_tx_hash: Option<String>,
    pub escrow_id: Option<String>,
}

/// A channel to insert (status `open`).
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct NewChannelRow<'a> {
    pub id: &'a str,
    /// Hex SHA-256 of the channel secret.
    pub secret_sha256: &'a str,
    pub secret_required: bool,
    pub deposit: i64,
    pub token: &'a str,
    pub chain: &'a str,
    pub tx_hash: Option<&'a str>,
    pub verifier: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    pub payer: Option<&'a str>,
    pub escrow_id: Option<&'a str>,
}

/// What a debit checks before it reserves anything.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChannelAuthRow {
    /// Hex SHA-256 of the channel secret.
    pub secret_sha256: String,
    /// Whether a debit needs the secret.
    pub secret_required: bool,
    /// `open` or `closed`.
    pub status: String,
    /// When the channel expires (unix ms).
    pub expires_at: i64,
    /// `deposit - used - held`.
    pub balance: i64,
    /// An escrow channel.
    pub escrow: bool,
}

impl Store {
    /// Whether a channel was funded by transaction `tx_hash`.
    pub async fn channel_tx_hash_used(&self, tx_hash: &str) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM channels WHERE tx_hash = $1";
        let used: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar(SQL)
                .bind(tx_hash)
                .fetch_one(pool)
                .await?
        });
        Ok(used > 0)
    }

    /// Whether escrow channel `escrow_id` is mirrored already.
    pub async fn escrow_channel_mirrored(&self, escrow_id: &str) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM channels WHERE escrow_id = $1";
        let used: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar(SQL)
                .bind(escrow_id)
                .fetch_one(pool)
                .await?
        });
        Ok(used > 0)
    }

    /// Inserts an open channel; `false` when a unique column (its funding transaction or
    /// escrow id) is taken.
    pub async fn insert_channel(&self, c: &NewChannelRow<'_>) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO channels (id, secret_sha256, secret_required, deposit, \
             token, chain, tx_hash, verifier, status, created_at, expires_at, payer, escrow_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $10, $11, $12)";
        let result = on_pool_write!(self, |pool| {
            sqlx::query(SQL)
                .bind(c.id)
                .bind(c.secret_sha256)
                .bind(c.secret_required)
                .bind(c.deposit)
                .bind(c.token)
                .bind(c.chain)
                .bind(c.tx_hash)
                .bind(c.verifier)
                .bind(c.created_at)
                .bind(c.expires_at)
                .bind(c.payer)
                .bind(c.escrow_id)
                .execute(pool)
                .await
                .map(|_| ())
        });
        Ok(unless_duplicate(result)?.is_some())
    }

    /// The channel `id`.
    pub async fn channel(&self, id: &str) -> Result<Option<ChannelRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            channel_columns!(),
            " FROM channels WHERE id = $1"
        );
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).bind(id).fetch_optional(pool).await?
        }))
    }

    /// What a debit of channel `id` checks (one indexed read).
    pub async fn channel_auth(&self, id: &str) -> Result<Option<ChannelAuthRow>, StoreError> {
        const SQL: &str = "SELECT secret_sha256, secret_required, status, expires_at, \
             deposit - used - held AS balance, escrow_id IS NOT NULL AS escrow \
             FROM channels WHERE id = $1";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).bind(id).fetch_optional(pool).await?
        }))
    }

    /// Closes channel `id` when it is open with nothing held; the closed row, or `None`.
    pub async fn close_channel(
        &self,
        id: &str,
        now: i64,
        settle_tx_hash: Option<&str>,
    ) -> Result<Option<ChannelRow>, StoreError> {
        const SQL: &str = concat!(
            "UPDATE channels SET status = 'closed', closed_at = $2, settle_tx_hash = $3 \
             WHERE id = $1 AND status = 'open' AND held = 0 RETURNING ",
            channel_columns!()
        );
        Ok(on_pool_write!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(id)
                .bind(now)
                .bind(settle_tx_hash)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Names the transaction that settles channel `id` on-chain.
    pub async fn set_channel_settle_tx(&self, id: &str, tx_hash: &str) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE channels SET settle_tx_hash = $2 WHERE id = $1";
        on_pool_write!(self, |pool| {
            sqlx::query(SQL)
                .bind(id)
                .bind(tx_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Holds still `held` on channel `id`.
    pub async fn count_open_holds(&self, channel_id: &str) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM holds WHERE channel_id = $1 AND state = 'held'";
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(SQL)
                .bind(channel_id)
                .fetch_one(pool)
                .await?
        }))
    }

    /// Channels open and not expired at `now`.
    pub async fn count_open_channels(&self, now: i64) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM channels WHERE status = 'open' AND expires_at > $1";
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(SQL).bind(now).fetch_one(pool).await?
        }))
    }

    /// Escrow channels due for settlement at `now`: open past their lifetime with nothing
    /// held, or closed without a settlement transaction; at most `limit`.
    pub async fn escrow_channels_due(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT id FROM channels WHERE escrow_id IS NOT NULL AND used > 0 \
             AND ((status = 'open' AND expires_at <= $1 AND held = 0) \
             OR (status = 'closed' AND settle_tx_hash IS NULL)) LIMIT $2";
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(SQL)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }
}

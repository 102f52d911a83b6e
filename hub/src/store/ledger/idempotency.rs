//! `Idempotency-Key` records.

use super::super::{Store, StoreError, on_pool, on_pool_write};

/// A stored `(client, key)` record.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IdempotencyRow {
    /// Digest of the request body that claimed the key.
    pub body_sha256: String,
    /// `in_flight` or `done`.
    pub state: String,
    /// The answer's status, once done.
    pub status: Option<i64>,
    /// The answer's body, once done.
    pub response: Option<Vec<u8>>,
    /// The answer's replayed headers (JSON), once done.
    pub headers: Option<String>,
    /// When the key was claimed (unix ms).
    pub created_at: i64,
    /// Last change (unix ms).
    pub updated_at: i64,
}

impl Store {
    /// Claims `(client, key)` for a request with body digest `body_sha256` at `now`; `false`
    /// when a record exists.
    pub async fn claim_idempotency_key(
        &self,
        client: &str,
        key: &str,
        body_sha256: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO idempotency_keys (client, idem_key, body_sha256, \
             state, created_at, updated_at) VALUES ($1, $2, $3, 'in_flight', $4, $4) \
             ON CONFLICT (client, idem_key) DO NOTHING";
        let inserted = on_pool_write!(self, |pool| {
            sqlx::query(SQL)
                .bind(client)
                .bind(key)
                .bind(body_sha256)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// The record of `(client, key)`.
    pub async fn idempotency_record(
        &self,
        client: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRow>, StoreError> {
        const SQL: &str = "SELECT body_sha256, state, status, response, headers, created_at, \
             updated_at FROM idempotency_keys WHERE client = $1 AND idem_key = $2";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(client)
                .bind(key)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Claims `(client, key)` afresh when its record is still the one read (same
    /// `updated_at` and `state`); whether it was.
    pub async fn take_over_idempotency_key(
        &self,
        client: &str,
        key: &str,
        body_sha256: &str,
        now: i64,
        read: &IdempotencyRow,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE idempotency_keys SET body_sha256 = $3, \
             state = 'in_flight', status = NULL, response = NULL, headers = NULL, \
             created_at = $4, updated_at = $4 \
             WHERE client = $1 AND idem_key = $2 AND updated_at = $5 AND state = $6";
        let taken = on_pool_write!(self, |pool| {
            sqlx::query(SQL)
                .bind(client)
                .bind(key)
                .bind(body_sha256)
                .bind(now)
                .bind(read.updated_at)
                .bind(&read.state)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(taken == 1)
    }

    /// Records the answer of the in-flight claim `(client, key)`.
    pub async fn finish_idempotency_key(
        &self,
        client: &str,
        key: &str,
        status: u16,
        body: &[u8],
        headers_json: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE idempotency_keys SET state = 'done', status = $3, \
             response = $4, headers = $5, updated_at = $6 \
             WHERE client = $1 AND idem_key = $2 AND state = 'in_flight'";
        on_pool_write!(self, |pool| {
            sqlx::query(SQL)
                .bind(client)
                .bind(key)
                .bind(i64::from(status))
                .bind(body)
                .bind(headers_json)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Forgets the in-flight claim `(client, key)`.
    pub async fn abandon_idempotency_key(&self, client: &str, key: &str) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM idempotency_keys \
             WHERE client = $1 AND idem_key = $2 AND state = 'in_flight'";
        on_pool_write!(self, |pool| {
            sqlx::query(SQL)
                .bind(client)
                .bind(key)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Deletes records claimed at or before `cutoff` (unix ms); returns how many.
    pub async fn purge_idempotency_keys(&self, cutoff: i64) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM idempotency_keys WHERE created_at <= $1";
        Ok(on_pool_write!(self, |pool| {
            sqlx::query(SQL)
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}

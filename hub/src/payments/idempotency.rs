//! `Idempotency-Key` records: the first answer to `(client, key)` is kept for 24 hours and
//! replayed to retries with the same body; a different body is a conflict.

use std::time::Duration;

use super::{Ledger, PaymentError, duration_ms};
use crate::store::{now_ms, on_pool, on_pool_write};

/// How long a finished answer is replayed.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest key or client id accepted.
const MAX_KEY_CHARS: usize = 255;
/// Bound on the insert / take-over retries of one `idempotency_begin` (each retry means
/// another request changed the row in between).
const BEGIN_ATTEMPTS: usize = 4;

/// An answer as first sent, replayed verbatim to retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers worth replaying (name, value), in order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// What [`Ledger::idempotency_begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdemState {
    /// First use (or the old record expired, or its request died): go ahead, then call
    /// [`Ledger::idempotency_finish`] (or [`Ledger::idempotency_abandon`]).
    New,
    /// A request with this key and body already finished: answer this.
    Replay(StoredResponse),
    /// The key was used with a different body (409).
    Conflict,
    /// The first request with this key is still running.
    InFlight,
}

#[derive(sqlx::FromRow)]
struct RawIdem {
    body_sha256: String,
    state: String,
    status: Option<i64>,
    response: Option<Vec<u8>>,
    headers: Option<String>,
    created_at: i64,
    updated_at: i64,
}

fn check_key(what: &str, value: &str) -> Result<(), PaymentError> {
    if value.is_empty()
        || value.chars().count() > MAX_KEY_CHARS
        || value.chars().any(char::is_control)
    {
        return Err(PaymentError::InvalidRequest(format!(
            "{what} must be 1 to {MAX_KEY_CHARS} printable characters"
        )));
    }
    Ok(())
}

impl RawIdem {
    fn replay(self) -> Result<StoredResponse, PaymentError> {
        let corrupt = |what: &str| PaymentError::Corrupt(format!("idempotency record: {what}"));
        let status = self
            .status
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| corrupt("status"))?;
        let headers = match self.headers.as_deref() {
            None => Vec::new(),
            Some(text) => serde_json::from_str(text).map_err(|_| corrupt("headers"))?,
        };
        Ok(StoredResponse {
            status,
            headers,
            body: self.response.unwrap_or_default(),
        })
    }
}

impl Ledger {
    /// Claims `(client, key)` for a request whose body hashes to `body_sha256`.
    ///
    /// A record older than 24 h counts as absent. An in-flight record whose request has not
    /// finished within the hold lease (the provider timeout plus a margin, so its process
    /// died) can be taken over; a younger one answers [`IdemState::InFlight`].
    pub async fn idempotency_begin(
        &self,
        key: &str,
        client: &str,
        body_sha256: &str,
    ) -> Result<IdemState, PaymentError> {
        const INSERT: &str = "INSERT INTO idempotency_keys (client, idem_key, body_sha256, \
             state, created_at, updated_at) VALUES ($1, $2, $3, 'in_flight', $4, $4) \
             ON CONFLICT (client, idem_key) DO NOTHING";
        const GET: &str = "SELECT body_sha256, state, status, response, headers, created_at, \
             updated_at FROM idempotency_keys WHERE client = $1 AND idem_key = $2";
        const TAKE_OVER: &str = "UPDATE idempotency_keys SET body_sha256 = $3, \
             state = 'in_flight', status = NULL, response = NULL, headers = NULL, \
             created_at = $4, updated_at = $4 \
             WHERE client = $1 AND idem_key = $2 AND updated_at = $5 AND state = $6";
        check_key("Idempotency-Key", key)?;
        check_key("client id", client)?;
        check_key("body digest", body_sha256)?;
        for _ in 0..BEGIN_ATTEMPTS {
            let now = now_ms();
            let inserted = on_pool_write!(&self.store, |pool| {
                sqlx::query(INSERT)
                    .bind(client)
                    .bind(key)
                    .bind(body_sha256)
                    .bind(now)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
            if inserted == 1 {
                return Ok(IdemState::New);
            }
            let row: Option<RawIdem> = on_pool!(&self.store, |pool| {
                sqlx::query_as(GET)
                    .bind(client)
                    .bind(key)
                    .fetch_optional(pool)
                    .await?
            });
            // Purged in between: try the insert again.
            let Some(row) = row else { continue };
            let expired = row.created_at <= now - duration_ms(IDEMPOTENCY_TTL);
            let abandoned = row.state == "in_flight"
                && row.updated_at <= now - duration_ms(self.config.hold_lease);
            if !expired {
                if row.body_sha256 != body_sha256 {
                    return Ok(IdemState::Conflict);
                }
                if row.state == "done" {
                    return Ok(IdemState::Replay(row.replay()?));
                }
                if !abandoned {
                    return Ok(IdemState::InFlight);
                }
            }
            let taken = on_pool_write!(&self.store, |pool| {
                sqlx::query(TAKE_OVER)
                    .bind(client)
                    .bind(key)
                    .bind(body_sha256)
                    .bind(now)
                    .bind(row.updated_at)
                    .bind(&row.state)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
            if taken == 1 {
                return Ok(IdemState::New);
            }
            // Another request changed the row first: look again.
        }
        Ok(IdemState::InFlight)
    }

    /// Records the answer to the request that [`Ledger::idempotency_begin`] admitted.
    pub async fn idempotency_finish(
        &self,
        key: &str,
        client: &str,
        response: &StoredResponse,
    ) -> Result<(), PaymentError> {
        const SQL: &str = "UPDATE idempotency_keys SET state = 'done', status = $3, \
             response = $4, headers = $5, updated_at = $6 \
             WHERE client = $1 AND idem_key = $2 AND state = 'in_flight'";
        let headers = serde_json::to_string(&response.headers)
            .map_err(|e| PaymentError::InvalidRequest(format!("response headers: {e}")))?;
        on_pool_write!(&self.store, |pool| {
            sqlx::query(SQL)
                .bind(client)
                .bind(key)
                .bind(i64::from(response.status))
                .bind(&response.body)
                .bind(&headers)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Forgets an in-flight claim whose answer must not be replayed (the request failed
    /// before anything was charged), so a retry runs afresh.
    pub async fn idempotency_abandon(&self, key: &str, client: &str) -> Result<(), PaymentError> {
        const SQL: &str = "DELETE FROM idempotency_keys \
             WHERE client = $1 AND idem_key = $2 AND state = 'in_flight'";
        on_pool_write!(&self.store, |pool| {
            sqlx::query(SQL)
                .bind(client)
                .bind(key)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Deletes records older than [`IDEMPOTENCY_TTL`]; returns how many.
    pub async fn purge_idempotency(&self) -> Result<u64, PaymentError> {
        const SQL: &str = "DELETE FROM idempotency_keys WHERE created_at <= $1";
        let cutoff = now_ms() - duration_ms(IDEMPOTENCY_TTL);
        Ok(on_pool_write!(&self.store, |pool| {
            sqlx::query(SQL)
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}

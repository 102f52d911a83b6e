//! `Idempotency-Key` records: the first answer to `(client, key)` is kept for 24 hours and
//! replayed to retries with the same body; a different body is a conflict.

use std::time::Duration;

use super::{Ledger, PaymentError, duration_ms};
use crate::store::{IdempotencyRow, now_ms};

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

/// The stored answer of a finished record.
fn replay(row: IdempotencyRow) -> Result<StoredResponse, PaymentError> {
    let corrupt = |what: &str| PaymentError::Corrupt(format!("idempotency record: {what}"));
    let status = row
        .status
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| corrupt("status"))?;
    let headers = match row.headers.as_deref() {
        None => Vec::new(),
        Some(text) => serde_json::from_str(text).map_err(|_| corrupt("headers"))?,
    };
    Ok(StoredResponse {
        status,
        headers,
        body: row.response.unwrap_or_default(),
    })
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
        check_key("Idempotency-Key", key)?;
        check_key("client id", client)?;
        check_key("body digest", body_sha256)?;
        for _ in 0..BEGIN_ATTEMPTS {
            let now = now_ms();
            if self
                .store
                .claim_idempotency_key(client, key, body_sha256, now)
                .await?
            {
                return Ok(IdemState::New);
            }
            let row = self.store.idempotency_record(client, key).await?;
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
                    return Ok(IdemState::Replay(replay(row)?));
                }
                if !abandoned {
                    return Ok(IdemState::InFlight);
                }
            }
            if self
                .store
                .take_over_idempotency_key(client, key, body_sha256, now, &row)
                .await?
            {
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
        let headers = serde_json::to_string(&response.headers)
            .map_err(|e| PaymentError::InvalidRequest(format!("response headers: {e}")))?;
        self.store
            .finish_idempotency_key(
                client,
                key,
                response.status,
                &response.body,
                &headers,
                now_ms(),
            )
            .await?;
        Ok(())
    }

    /// Forgets an in-flight claim whose answer must not be replayed (the request failed
    /// before anything was charged), so a retry runs afresh.
    pub async fn idempotency_abandon(&self, key: &str, client: &str) -> Result<(), PaymentError> {
        Ok(self.store.abandon_idempotency_key(client, key).await?)
    }

    /// Deletes records older than [`IDEMPOTENCY_TTL`]; returns how many.
    pub async fn purge_idempotency(&self) -> Result<u64, PaymentError> {
        let cutoff = now_ms() - duration_ms(IDEMPOTENCY_TTL);
        Ok(self.store.purge_idempotency_keys(cutoff).await?)
    }
}

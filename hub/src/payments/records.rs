//! Stored receipts and invocation records.

use serde_json::Value;

use super::error::is_unique_violation;
use super::{Ledger, PaymentError, is_lookup_key};
use crate::store::{BeginWrite as _, now_ms, on_pool, on_pool_write};

/// Longest receipt nonce accepted.
const MAX_NONCE_CHARS: usize = 200;

pub(super) const INSERT_RECEIPT: &str = "INSERT INTO receipts (nonce, receipt, signer, channel_id, \
     hold_id, charged, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// A receipt as stored: the JSON as issued plus the columns it is looked up and audited by.
pub(super) struct ReceiptRow {
    pub nonce: String,
    pub json: String,
    pub signer: String,
    pub channel_id: Option<String>,
    pub hold_id: Option<String>,
    /// Micro-dollars debited for this receipt (set by capture).
    pub charged: Option<i64>,
}

impl ReceiptRow {
    /// Reads the nonce, signer key and channel of a signed receipt. The JSON text is the
    /// parsed value re-serialised; verification rebuilds the canonical from the parsed value,
    /// so the text's key order is irrelevant.
    pub fn from_receipt(receipt: &Value) -> Result<Self, PaymentError> {
        let obj = receipt
            .as_object()
            .ok_or_else(|| PaymentError::InvalidReceipt("not a JSON object".into()))?;
        let nonce = match obj.get("nonce") {
            Some(Value::String(n)) if !n.is_empty() && n.chars().count() <= MAX_NONCE_CHARS => {
                n.clone()
            }
            _ => {
                return Err(PaymentError::InvalidReceipt(format!(
                    "`nonce` must be a string of 1 to {MAX_NONCE_CHARS} characters"
                )));
            }
        };
        let signer = receipt
            .pointer("/signature/public_key")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let channel_id = obj
            .get("channel_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let json = serde_json::to_string(receipt)
            .map_err(|e| PaymentError::InvalidReceipt(e.to_string()))?;
        Ok(Self {
            nonce,
            json,
            signer,
            channel_id,
            hold_id: None,
            charged: None,
        })
    }
}

/// Inserts a [`ReceiptRow`] through an executor of either engine (a pool or an open
/// transaction); evaluates to `Result<_, sqlx::Error>`. A macro rather than a generic fn so
/// that each `on_pool!` arm infers its own database type.
macro_rules! insert_receipt {
    ($row:expr, $executor:expr, $now:expr) => {
        sqlx::query($crate::payments::records::INSERT_RECEIPT)
            .bind(&$row.nonce)
            .bind(&$row.json)
            .bind(&$row.signer)
            .bind(&$row.channel_id)
            .bind(&$row.hold_id)
            .bind($row.charged)
            .bind($now)
            .execute($executor)
            .await
            .map(|_| ())
    };
}
pub(super) use insert_receipt;

const INSERT_INVOCATION: &str = "INSERT INTO invocations (peer_url, origin, product_id, \
     capability_id, status, success, latency_ms, price, channel_id, ts) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Rows per multi-row insert of [`Ledger::record_batch`] (at most 10 parameters each, far
/// below both engines' parameter limits).
const BATCH_ROWS: usize = 200;

/// Inserts an [`InvocationRecord`] through an executor of either engine; evaluates to
/// `Result<_, sqlx::Error>` (a macro for the same reason as `insert_receipt!`).
macro_rules! insert_invocation {
    ($record:expr, $executor:expr) => {
        sqlx::query(INSERT_INVOCATION)
            .bind(&$record.peer_url)
            .bind(&$record.origin)
            .bind(&$record.product_id)
            .bind(&$record.capability_id)
            .bind(i64::from($record.status))
            .bind($record.success)
            .bind(i64::try_from($record.latency_ms).unwrap_or(i64::MAX))
            .bind($record.price_micros)
            .bind(&$record.channel_id)
            .bind($record.ts)
            .execute($executor)
            .await
            .map(|_| ())
    };
}

/// One routed call's outcome, for reputation and live stats.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationRecord {
    /// The peer whose catalog listed the capability (the hub it was learned from).
    pub peer_url: String,
    /// The capability's owning origin (its `source_hub`).
    pub origin: String,
    /// Product id.
    pub product_id: String,
    /// Capability id.
    pub capability_id: String,
    /// HTTP status answered to the buyer (or relayed from the provider).
    pub status: u16,
    /// Whether the provider delivered a result.
    pub success: bool,
    /// Provider round trip, milliseconds.
    pub latency_ms: u64,
    /// What the buyer was charged, micro-dollars (0 when nothing was kept).
    pub price_micros: i64,
    /// The channel that paid, if any.
    pub channel_id: Option<String>,
    /// When the call finished, unix milliseconds.
    pub ts: i64,
}

/// Per-peer totals over a window (see [`Ledger::peer_stats`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PeerStats {
    /// The peer.
    pub peer_url: String,
    /// Calls recorded.
    pub calls: i64,
    /// Calls that delivered a result.
    pub successes: i64,
    /// Sum of latencies, milliseconds (divide by `calls` for the mean).
    pub total_latency_ms: i64,
    /// Sum of charges, micro-dollars.
    pub volume_micros: i64,
}

impl Ledger {
    /// Stores a receipt this hub signed (client, routing or rejection receipt) under its
    /// nonce. A second receipt with the same nonce is refused
    /// ([`PaymentError::DuplicateReceipt`]); receipts are never overwritten.
    pub async fn store_receipt(&self, receipt: &Value) -> Result<(), PaymentError> {
        let row = ReceiptRow::from_receipt(receipt)?;
        let now = now_ms();
        let result = on_pool_write!(&self.store, |pool| insert_receipt!(row, pool, now));
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(PaymentError::DuplicateReceipt { nonce: row.nonce })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The stored receipt with this nonce, as issued.
    pub async fn get_receipt(&self, nonce: &str) -> Result<Option<Value>, PaymentError> {
        const SQL: &str = "SELECT receipt FROM receipts WHERE nonce = $1";
        if !is_lookup_key(nonce, 4 * MAX_NONCE_CHARS) || nonce.chars().count() > MAX_NONCE_CHARS {
            return Ok(None);
        }
        let text: Option<String> = on_pool!(&self.store, |pool| {
            sqlx::query_scalar(SQL)
                .bind(nonce)
                .fetch_optional(pool)
                .await?
        });
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| PaymentError::Corrupt(format!("receipt {nonce}: {e}")))
        })
        .transpose()
    }

    /// Records one call's outcome (a single insert).
    pub async fn record_invocation(&self, record: InvocationRecord) -> Result<(), PaymentError> {
        on_pool_write!(&self.store, |pool| {
            insert_invocation!(record, pool)?;
        });
        self.live.publish_records(std::slice::from_ref(&record));
        Ok(())
    }

    /// Writes invocation records and receipts of calls that moved no money, all in one
    /// transaction of multi-row inserts: the invoke path's background writer batches them so
    /// that a busy hub's thousands of calls per second cost a few statements, not thousands.
    /// A receipt whose nonce is already stored is skipped; an invalid receipt fails the batch
    /// before anything is written.
    pub async fn record_batch(
        &self,
        records: &[InvocationRecord],
        receipts: &[Value],
    ) -> Result<(), PaymentError> {
        if records.is_empty() && receipts.is_empty() {
            return Ok(());
        }
        let rows = receipts
            .iter()
            .map(ReceiptRow::from_receipt)
            .collect::<Result<Vec<_>, _>>()?;
        let now = now_ms();
        on_pool_write!(&self.store, |pool| {
            let mut tx = pool.begin_write().await?;
            for chunk in records.chunks(BATCH_ROWS) {
                let mut query = sqlx::QueryBuilder::new(
                    "INSERT INTO invocations (peer_url, origin, product_id, capability_id, \
                     status, success, latency_ms, price, channel_id, ts) ",
                );
                query.push_values(chunk, |mut row, r| {
                    row.push_bind(r.peer_url.as_str())
                        .push_bind(r.origin.as_str())
                        .push_bind(r.product_id.as_str())
                        .push_bind(r.capability_id.as_str())
                        .push_bind(i64::from(r.status))
                        .push_bind(r.success)
                        .push_bind(i64::try_from(r.latency_ms).unwrap_or(i64::MAX))
                        .push_bind(r.price_micros)
                        .push_bind(r.channel_id.as_deref())
                        .push_bind(r.ts);
                });
                query.build().execute(&mut *tx).await?;
            }
            for chunk in rows.chunks(BATCH_ROWS) {
                let mut query = sqlx::QueryBuilder::new(
                    "INSERT INTO receipts (nonce, receipt, signer, channel_id, hold_id, \
                     charged, created_at) ",
                );
                query.push_values(chunk, |mut row, r| {
                    row.push_bind(r.nonce.as_str())
                        .push_bind(r.json.as_str())
                        .push_bind(r.signer.as_str())
                        .push_bind(r.channel_id.as_deref())
                        .push_bind(r.hold_id.as_deref())
                        .push_bind(r.charged)
                        .push_bind(now);
                });
                query.push(" ON CONFLICT (nonce) DO NOTHING");
                query.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        self.live.publish_records(records);
        Ok(())
    }

    /// Per-peer call totals recorded at or after `since_ms`, ordered by peer URL. A relayed
    /// 402 (the buyer has not paid yet) is neither a success nor a provider fault, so it is
    /// not counted.
    pub async fn peer_stats(&self, since_ms: i64) -> Result<Vec<PeerStats>, PaymentError> {
        // SUM of BIGINT is NUMERIC on PostgreSQL: cast back so both engines decode i64.
        const SQL: &str = "SELECT peer_url, COUNT(*) AS calls, \
             CAST(COALESCE(SUM(CASE WHEN success THEN 1 ELSE 0 END), 0) AS BIGINT) AS successes, \
             CAST(COALESCE(SUM(latency_ms), 0) AS BIGINT) AS total_latency_ms, \
             CAST(COALESCE(SUM(price), 0) AS BIGINT) AS volume_micros \
             FROM invocations WHERE ts >= $1 AND status <> 402 GROUP BY peer_url ORDER BY peer_url";
        Ok(on_pool!(&self.store, |pool| {
            sqlx::query_as(SQL).bind(since_ms).fetch_all(pool).await?
        }))
    }
}

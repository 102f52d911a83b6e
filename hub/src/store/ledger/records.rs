//! Receipts and invocation records.

use super::super::{BeginWrite as _, Store, StoreError, on_pool, on_pool_write};
use super::unless_duplicate;

pub(super) const INSERT_RECEIPT: &str = "INSERT INTO receipts (nonce, receipt, signer, \
     channel_id, hold_id, charged, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

const INSERT_INVOCATION: &str = "INSERT INTO invocations (peer_url, origin, product_id, \
     capability_id, status, success, latency_ms, price, channel_id, ts) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Rows per multi-row insert of [`Store::record_batch`] (at most 10 parameters each, far
/// below both engines' parameter limits).
const BATCH_ROWS: usize = 200;

/// A receipt as stored: the JSON as issued plus the columns it is looked up and audited by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    /// The receipt's nonce (its key).
    pub nonce: String,
    /// The receipt as issued.
    pub json: String,
    /// The signing key.
    pub signer: String,
    /// The channel it was paid from.
    pub channel_id: Option<String>,
    /// The hold it captured.
    pub hold_id: Option<String>,
    /// Micro-dollars debited for this receipt (set by capture).
    pub charged: Option<i64>,
}

/// Inserts a [`ReceiptRow`] through an executor of either engine (a pool or an open
/// transaction); evaluates to `Result<_, sqlx::Error>`. A macro rather than a generic fn so
/// that each `on_pool!` arm infers its own database type.
macro_rules! insert_receipt {
    ($row:expr, $executor:expr, $now:expr) => {
        sqlx::query($crate::store::ledger::records::INSERT_RECEIPT)
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

/// Per-peer totals over a window (see [`Store::peer_stats`]).
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

/// Totals over every stored invocation record (the live stats' summary).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct InvocationSummaryRow {
    /// Calls recorded.
    pub total: i64,
    /// Calls that delivered a result.
    pub successful: i64,
    /// Calls answered with the provider's 402.
    pub payment_required: i64,
    /// Micro-dollars charged in total.
    pub price_sum: i64,
    /// Sum of latencies, milliseconds.
    pub latency_sum: i64,
    /// Micro-dollars charged since the first cutoff.
    pub volume_1h: i64,
    /// Micro-dollars charged since the second cutoff.
    pub volume_24h: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct InvocationRow {
    id: i64,
    peer_url: String,
    origin: String,
    product_id: String,
    capability_id: String,
    status: i64,
    success: bool,
    latency_ms: i64,
    price: i64,
    ts: i64,
}

impl Store {
    /// Totals over every stored invocation record, with the volume charged since `hour_ago`
    /// and since `day_ago` (unix ms).
    pub async fn invocation_totals(
        &self,
        hour_ago: i64,
        day_ago: i64,
    ) -> Result<InvocationSummaryRow, StoreError> {
        const SQL: &str = "SELECT COUNT(*) AS total, \
             CAST(COALESCE(SUM(CASE WHEN success THEN 1 ELSE 0 END), 0) AS BIGINT) AS successful, \
             CAST(COALESCE(SUM(CASE WHEN NOT success AND status = 402 THEN 1 ELSE 0 END), 0) \
                  AS BIGINT) AS payment_required, \
             CAST(COALESCE(SUM(price), 0) AS BIGINT) AS price_sum, \
             CAST(COALESCE(SUM(latency_ms), 0) AS BIGINT) AS latency_sum, \
             CAST(COALESCE(SUM(CASE WHEN ts >= $1 THEN price ELSE 0 END), 0) AS BIGINT) \
                  AS volume_1h, \
             CAST(COALESCE(SUM(CASE WHEN ts >= $2 THEN price ELSE 0 END), 0) AS BIGINT) \
                  AS volume_24h \
             FROM invocations";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(hour_ago)
                .bind(day_ago)
                .fetch_one(pool)
                .await?
        }))
    }

    /// The latest `limit` invocation records with their row ids, newest first (without
    /// their channel).
    pub async fn recent_invocations(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, InvocationRecord)>, StoreError> {
        const SQL: &str = "SELECT id, peer_url, origin, product_id, capability_id, status, \
             success, latency_ms, price, ts FROM invocations ORDER BY id DESC LIMIT $1";
        let rows: Vec<InvocationRow> = on_pool!(self, |pool| {
            sqlx::query_as(SQL).bind(limit).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|r| {
                let record = InvocationRecord {
                    peer_url: r.peer_url,
                    origin: r.origin,
                    product_id: r.product_id,
                    capability_id: r.capability_id,
                    status: u16::try_from(r.status).unwrap_or(0),
                    success: r.success,
                    latency_ms: u64::try_from(r.latency_ms).unwrap_or(0),
                    price_micros: r.price,
                    channel_id: None,
                    ts: r.ts,
                };
                (r.id, record)
            })
            .collect())
    }

    /// Stores a receipt under its nonce; `false` when one with this nonce exists (receipts
    /// are never overwritten).
    pub async fn insert_receipt(&self, row: &ReceiptRow, now: i64) -> Result<bool, StoreError> {
        let result = on_pool_write!(self, |pool| insert_receipt!(row, pool, now));
        Ok(unless_duplicate(result)?.is_some())
    }

    /// The stored receipt text with this nonce.
    pub async fn receipt_json(&self, nonce: &str) -> Result<Option<String>, StoreError> {
        const SQL: &str = "SELECT receipt FROM receipts WHERE nonce = $1";
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(SQL)
                .bind(nonce)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Records one call's outcome (a single insert).
    pub async fn insert_invocation(&self, record: &InvocationRecord) -> Result<(), StoreError> {
        on_pool_write!(self, |pool| {
            sqlx::query(INSERT_INVOCATION)
                .bind(&record.peer_url)
                .bind(&record.origin)
                .bind(&record.product_id)
                .bind(&record.capability_id)
                .bind(i64::from(record.status))
                .bind(record.success)
                .bind(i64::try_from(record.latency_ms).unwrap_or(i64::MAX))
                .bind(record.price_micros)
                .bind(&record.channel_id)
                .bind(record.ts)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Writes invocation records and receipts of calls that moved no money, all in one
    /// transaction of multi-row inserts (a receipt whose nonce is stored is skipped).
    pub async fn record_batch(
        &self,
        records: &[InvocationRecord],
        receipts: &[ReceiptRow],
        now: i64,
    ) -> Result<(), StoreError> {
        if let Store::Postgres(pool) = self {
            return record_batch_postgres(pool, records, receipts, now).await;
        }
        on_pool_write!(self, |pool| {
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
            for chunk in receipts.chunks(BATCH_ROWS) {
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
        Ok(())
    }

    /// Per-peer call totals recorded at or after `since_ms`, ordered by peer URL. A relayed
    /// 402 (the buyer has not paid yet) is neither a success nor a provider fault, so it is
    /// not counted.
    pub async fn peer_stats(&self, since_ms: i64) -> Result<Vec<PeerStats>, StoreError> {
        // SUM of BIGINT is NUMERIC on PostgreSQL: cast back so both engines decode i64.
        const SQL: &str = "SELECT peer_url, COUNT(*) AS calls, \
             CAST(COALESCE(SUM(CASE WHEN success THEN 1 ELSE 0 END), 0) AS BIGINT) AS successes, \
             CAST(COALESCE(SUM(latency_ms), 0) AS BIGINT) AS total_latency_ms, \
             CAST(COALESCE(SUM(price), 0) AS BIGINT) AS volume_micros \
             FROM invocations WHERE ts >= $1 AND status <> 402 GROUP BY peer_url ORDER BY peer_url";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).bind(since_ms).fetch_all(pool).await?
        }))
    }
}

/// PostgreSQL's [`Store::record_batch`]: each table's rows as one `UNNEST` of column arrays,
/// so every batch runs the same two prepared statements with ten (seven) array parameters,
/// instead of a statement of up to 2,000 scalar parameters to parse and plan per size.
async fn record_batch_postgres(
    pool: &sqlx::PgPool,
    records: &[InvocationRecord],
    receipts: &[ReceiptRow],
    now: i64,
) -> Result<(), StoreError> {
    const INVOCATIONS: &str = "INSERT INTO invocations (peer_url, origin, product_id, \
         capability_id, status, success, latency_ms, price, channel_id, ts) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
         $6::boolean[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[])";
    const RECEIPTS: &str = "INSERT INTO receipts (nonce, receipt, signer, channel_id, \
         hold_id, charged, created_at) \
         SELECT n, r, s, c, h, ch, $7 FROM UNNEST($1::text[], $2::text[], $3::text[], \
         $4::text[], $5::text[], $6::bigint[]) AS t(n, r, s, c, h, ch) \
         ON CONFLICT (nonce) DO NOTHING";
    let mut tx = pool.begin().await?;
    if !records.is_empty() {
        sqlx::query(INVOCATIONS)
            .bind(column(records, |r| r.peer_url.as_str()))
            .bind(column(records, |r| r.origin.as_str()))
            .bind(column(records, |r| r.product_id.as_str()))
            .bind(column(records, |r| r.capability_id.as_str()))
            .bind(column(records, |r| i64::from(r.status)))
            .bind(column(records, |r| r.success))
            .bind(column(records, |r| {
                i64::try_from(r.latency_ms).unwrap_or(i64::MAX)
            }))
            .bind(column(records, |r| r.price_micros))
            .bind(column(records, |r| r.channel_id.as_deref()))
            .bind(column(records, |r| r.ts))
            .execute(&mut *tx)
            .await?;
    }
    if !receipts.is_empty() {
        sqlx::query(RECEIPTS)
            .bind(column(receipts, |r| r.nonce.as_str()))
            .bind(column(receipts, |r| r.json.as_str()))
            .bind(column(receipts, |r| r.signer.as_str()))
            .bind(column(receipts, |r| r.channel_id.as_deref()))
            .bind(column(receipts, |r| r.hold_id.as_deref()))
            .bind(column(receipts, |r| r.charged))
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One column of `rows`, as the array an `UNNEST` parameter takes.
fn column<'a, T, U>(rows: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

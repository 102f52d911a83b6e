//! Stored receipts and invocation records.

use serde_json::Value;

use super::{Ledger, PaymentError, is_lookup_key};
pub use crate::store::{InvocationRecord, PeerStats};
use crate::store::{ReceiptRow, now_ms};

/// Longest receipt nonce accepted.
const MAX_NONCE_CHARS: usize = 200;

/// Reads the nonce, signer key and channel of a signed receipt into its stored row. The
/// JSON text is the parsed value re-serialised; verification rebuilds the canonical from the
/// parsed value, so the text's key order is irrelevant.
pub(super) fn receipt_row(receipt: &Value) -> Result<ReceiptRow, PaymentError> {
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
    let json =
        serde_json::to_string(receipt).map_err(|e| PaymentError::InvalidReceipt(e.to_string()))?;
    Ok(ReceiptRow {
        nonce,
        json,
        signer,
        channel_id,
        hold_id: None,
        charged: None,
    })
}

impl Ledger {
    /// Stores a receipt this hub signed (client, routing or rejection receipt) under its
    /// nonce. A second receipt with the same nonce is refused
    /// ([`PaymentError::DuplicateReceipt`]); receipts are never overwritten.
    pub async fn store_receipt(&self, receipt: &Value) -> Result<(), PaymentError> {
        let row = receipt_row(receipt)?;
        if self.store.insert_receipt(&row, now_ms()).await? {
            Ok(())
        } else {
            Err(PaymentError::DuplicateReceipt { nonce: row.nonce })
        }
    }

    /// The stored receipt with this nonce, as issued.
    pub async fn get_receipt(&self, nonce: &str) -> Result<Option<Value>, PaymentError> {
        if !is_lookup_key(nonce, 4 * MAX_NONCE_CHARS) || nonce.chars().count() > MAX_NONCE_CHARS {
            return Ok(None);
        }
        let text = self.store.receipt_json(nonce).await?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| PaymentError::Corrupt(format!("receipt {nonce}: {e}")))
        })
        .transpose()
    }

    /// Records one call's outcome (a single insert).
    pub async fn record_invocation(&self, record: InvocationRecord) -> Result<(), PaymentError> {
        self.store.insert_invocation(&record).await?;
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
            .map(receipt_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.store.record_batch(records, &rows, now_ms()).await?;
        self.live.publish_records(records);
        Ok(())
    }

    /// Per-peer call totals recorded at or after `since_ms`, ordered by peer URL. A relayed
    /// 402 (the buyer has not paid yet) is neither a success nor a provider fault, so it is
    /// not counted.
    pub async fn peer_stats(&self, since_ms: i64) -> Result<Vec<PeerStats>, PaymentError> {
        Ok(self.store.peer_stats(since_ms).await?)
    }
}

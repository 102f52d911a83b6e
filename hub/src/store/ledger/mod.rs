//! The ledger's tables: `channels`, `holds`, `receipts`, `invocations`,
//! `idempotency_keys`, `chain_sends` and `escrow_debits`.
//!
//! Money is `i64` micro-dollars. Every balance change is one guarded statement (or one
//! transaction) here; what a refusal means (closed, expired, short of balance) is decided by
//! the ledger in `crate::payments`, which only sees the outcomes below. A unique-constraint
//! violation the ledger gives a meaning to (a duplicate hold, receipt, deposit or debit
//! nonce) comes back as an outcome, never as a driver error.

mod channels;
mod escrow;
mod holds;
mod idempotency;
mod records;
mod sends;

pub use channels::{ChannelAuthRow, ChannelRow, NewChannelRow};
pub use escrow::{DebitRow, EscrowDebit, NewEscrowDebit};
pub use holds::{HoldCapture, HoldReserve, NewHold};
pub use idempotency::IdempotencyRow;
pub use records::{InvocationRecord, InvocationSummaryRow, PeerStats, ReceiptRow};
pub use sends::{NewChainSend, SendRow};

use super::StoreError;

/// `Ok(None)` for a unique-constraint violation (both engines report it the same way through
/// sqlx), the value otherwise; other failures are store errors.
fn unless_duplicate<T>(result: Result<T, sqlx::Error>) -> Result<Option<T>, StoreError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

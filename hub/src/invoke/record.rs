//! Off-the-hot-path writes: invocation outcomes (for reputation and live stats) and the
//! receipts of calls that moved no money through this hub.
//!
//! Money-bearing receipts are never written here: a channel-funded call's receipt is stored
//! by `Ledger::capture` in the same transaction as the debit. Everything here is queued to
//! one background task that writes whatever has queued in one transaction
//! (`Ledger::record_batch`); when the queue is full (the database cannot keep up), items are
//! dropped with a warning rather than slowing invokes down.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;

use super::resolve::Offer;
use super::timing::elapsed_ms;
use crate::payments::{InvocationRecord, Ledger};
use crate::state::AppState;

/// Items queued before new ones are dropped.
const QUEUE: usize = 16_384;

/// One background write.
#[derive(Debug)]
pub enum Write {
    /// An invocation outcome.
    Invocation(InvocationRecord),
    /// A signed receipt of a call that moved no money through this hub.
    Receipt(Value),
}

/// The queue to the background writer, started on first use (it needs a runtime).
#[derive(Debug, Default)]
pub struct Recorder {
    sender: OnceLock<mpsc::Sender<Write>>,
    dropped: AtomicU64,
}

impl Recorder {
    /// Queues `write`; never waits.
    pub fn send(&self, ledger: &Ledger, write: Write) {
        let sender = self.sender.get_or_init(|| spawn_writer(ledger.clone()));
        if sender.try_send(write).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "invocation record queue is full; dropping records");
            }
        }
    }

    /// Writes queued and not yet taken by the writer.
    pub fn pending(&self) -> usize {
        self.sender
            .get()
            .map_or(0, |s| s.max_capacity() - s.capacity())
    }

    /// How many writes were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Queues the invocation record of a call to `offer` (paid from `channel_id`, if any).
pub(super) fn invocation(
    state: &AppState,
    offer: &Offer,
    channel_id: Option<String>,
    status: u16,
    success: bool,
    charged_micros: i64,
    started: Instant,
) {
    let record = InvocationRecord {
        peer_url: offer.peer_url.clone(),
        origin: offer.origin.clone(),
        product_id: offer.product_id.clone(),
        capability_id: offer.capability_id.clone(),
        status,
        success,
        latency_ms: elapsed_ms(started),
        price_micros: charged_micros,
        channel_id,
        ts: crate::store::now_ms(),
    };
    state
        .invoker
        .recorder
        .send(&state.ledger, Write::Invocation(record));
}

/// Most writes committed in one transaction.
const BATCH: usize = 512;
/// How long a small batch waits for more writes before it is committed.
const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

fn spawn_writer(ledger: Ledger) -> mpsc::Sender<Write> {
    let (sender, mut receiver) = mpsc::channel::<Write>(QUEUE);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        // Whatever queued while the previous batch was written goes out in one transaction.
        while receiver.recv_many(&mut batch, BATCH).await > 0 {
            // At low rates, wait a moment for company: one transaction per call would take
            // SQLite's single write slot as often as the channel holds and captures do.
            if batch.len() < BATCH {
                tokio::time::sleep(LINGER).await;
                while batch.len() < BATCH {
                    match receiver.try_recv() {
                        Ok(write) => batch.push(write),
                        Err(_) => break,
                    }
                }
            }
            let mut records = Vec::with_capacity(batch.len());
            let mut receipts = Vec::new();
            for write in batch.drain(..) {
                match write {
                    Write::Invocation(record) => records.push(record),
                    Write::Receipt(receipt) => receipts.push(receipt),
                }
            }
            if let Err(e) = ledger.record_batch(&records, &receipts).await {
                tracing::error!(
                    error = %e,
                    records = records.len(),
                    receipts = receipts.len(),
                    "background ledger write failed"
                );
            }
        }
    });
    sender
}

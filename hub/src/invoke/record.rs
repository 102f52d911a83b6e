//! Off-the-hot-path writes: invocation outcomes (for reputation and live stats) and the
//! receipts of calls that moved no money through this hub.
//!
//! Money-bearing receipts are never written here: a channel-funded call's receipt is stored
//! by `Ledger::capture` in the same transaction as the debit. Everything here is queued to
//! one background task that writes in order; when the queue is full (the database cannot
//! keep up), items are dropped with a warning rather than slowing invokes down.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::payments::{InvocationRecord, Ledger};

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

    /// How many writes were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn spawn_writer(ledger: Ledger) -> mpsc::Sender<Write> {
    let (sender, mut receiver) = mpsc::channel::<Write>(QUEUE);
    tokio::spawn(async move {
        while let Some(write) = receiver.recv().await {
            let outcome = match write {
                Write::Invocation(record) => ledger.record_invocation(record).await,
                Write::Receipt(receipt) => ledger.store_receipt(&receipt).await,
            };
            if let Err(e) = outcome {
                tracing::error!(error = %e, "background ledger write failed");
            }
        }
    });
    sender
}

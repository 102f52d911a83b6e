//! Off-the-hot-path writes: invocation outcomes (for reputation and live stats) and the
//! receipts of calls that moved no money through this hub.
//!
//! Money-bearing receipts are never written here: a channel-funded call's receipt is stored
//! by `Ledger::capture` in the same transaction as the debit. Everything here is queued to
//! one background task that writes whatever has queued in one transaction
//! (`Ledger::record_batch`); when the queue is full (the database cannot keep up), items are
//! dropped with a warning rather than slowing invokes down. A batch whose transaction fails
//! is lost whole (up to [`BATCH`] writes). Both losses are counted ([`Dropped`]) and shown
//! in `GET /ai-market/v2/health` and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::InvokeDeps;
use super::resolve::Offer;
use super::timing::elapsed_ms;
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

/// Background writes lost, by cause (the `reason` label of
/// `aimarket_invoke_records_dropped_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Dropped {
    /// Dropped because the queue was full (the database could not keep up).
    pub queue_full: u64,
    /// Lost with a batch whose transaction failed.
    pub write_failed: u64,
}

#[derive(Debug, Default)]
struct DropCounters {
    queue_full: AtomicU64,
    write_failed: AtomicU64,
}

/// The queue to the background writer, started on first use (it needs a runtime).
#[derive(Debug, Default)]
pub struct Recorder {
    sender: OnceLock<mpsc::Sender<Write>>,
    dropped: Arc<DropCounters>,
}

impl Recorder {
    /// Queues `write`; never waits.
    pub fn send(&self, ledger: &Ledger, write: Write) {
        let sender = self
            .sender
            .get_or_init(|| spawn_writer(ledger.clone(), self.dropped.clone()));
        if sender.try_send(write).is_err() {
            let dropped = self.dropped.queue_full.fetch_add(1, Ordering::Relaxed) + 1;
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

    /// How many writes were lost so far, by cause.
    pub fn dropped(&self) -> Dropped {
        Dropped {
            queue_full: self.dropped.queue_full.load(Ordering::Relaxed),
            write_failed: self.dropped.write_failed.load(Ordering::Relaxed),
        }
    }
}

/// Queues the invocation record of a call to `offer` (paid from `channel_id`, if any).
pub(super) fn invocation(
    deps: &InvokeDeps<'_>,
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
    deps.invoker
        .recorder
        .send(deps.ledger, Write::Invocation(record));
}

/// Most writes committed in one transaction.
const BATCH: usize = 512;
/// How long a small batch waits for more writes before it is committed.
const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

fn spawn_writer(ledger: Ledger, dropped: Arc<DropCounters>) -> mpsc::Sender<Write> {
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
                let lost = u64::try_from(records.len() + receipts.len()).unwrap_or(u64::MAX);
                dropped.write_failed.fetch_add(lost, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::payments::{InvocationRecord, LedgerConfig, verifier::Verifiers};
    use crate::store::Store;

    fn record() -> InvocationRecord {
        InvocationRecord {
            peer_url: "https://p.example".into(),
            origin: "https://p.example".into(),
            product_id: "p".into(),
            capability_id: "c@v1".into(),
            status: 200,
            success: true,
            latency_ms: 1,
            price_micros: 0,
            channel_id: None,
            ts: 1,
        }
    }

    /// Issue #14: a batch whose transaction fails was lost with only a log line; its writes
    /// are counted now, apart from queue-full drops.
    #[tokio::test]
    async fn a_failed_batch_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(None, dir.path()).await.unwrap();
        let ledger = Ledger::new(store, Verifiers::new(Vec::new()), LedgerConfig::default());
        let recorder = Recorder::default();
        // A receipt without a nonce fails the whole batch, the invocation with it.
        recorder.send(&ledger, Write::Invocation(record()));
        recorder.send(&ledger, Write::Receipt(serde_json::json!({"no": "nonce"})));
        let mut waited = 0;
        while recorder.dropped().write_failed < 2 && waited < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        assert_eq!(
            recorder.dropped(),
            Dropped {
                queue_full: 0,
                write_failed: 2
            }
        );
        // A good batch afterwards is written and adds nothing.
        recorder.send(&ledger, Write::Invocation(record()));
        let mut waited = 0;
        while recorder.pending() > 0 && waited < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(recorder.dropped().write_failed, 2);
    }
}

//! When crawls run inside the hub: once at startup, then every `crawl_interval_s` (±10 %
//! jitter) unless `auto_crawl` is off, and on demand (`POST /ai-market/v2/federation/crawl`).
//!
//! **Single flight.** At most one crawl runs at a time per process. A trigger that arrives
//! while one is running *joins* it: it gets that run's id and, when it waits, that run's
//! result. (Answering 409 instead would make an operator's "crawl now" fail exactly when the
//! scheduler happens to be crawling; joining gives them a crawl that started at most one run
//! ago, which is what they asked for.) A trigger after a run finished starts a new one.
//!
//! **Shutdown.** [`CrawlService::shutdown`] stops the schedule and aborts a running crawl;
//! its `crawl_runs` row then stays `running`, which the store documents as "the process died
//! during it".

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use super::{CrawlContext, CrawlRunError, CrawlSummary};
use crate::state::AppState;

/// A finished run as every waiter sees it.
pub type RunOutcome = Result<Arc<CrawlSummary>, Arc<CrawlRunError>>;

/// The running crawl, if any.
#[derive(Debug)]
struct Running {
    run_id: i64,
    done: watch::Receiver<Option<RunOutcome>>,
    task: AbortHandle,
}

/// A claim on a crawl run: started by this trigger, or joined.
#[derive(Debug)]
pub struct CrawlTicket {
    /// The `crawl_runs` id.
    pub run_id: i64,
    /// True when the run was already going and this trigger joined it.
    pub joined: bool,
    done: watch::Receiver<Option<RunOutcome>>,
}

impl CrawlTicket {
    /// Waits for the run to end.
    pub async fn outcome(mut self) -> RunOutcome {
        match self.done.wait_for(Option::is_some).await {
            Ok(outcome) => outcome
                .clone()
                .unwrap_or_else(|| Err(Arc::new(CrawlRunError::Aborted))),
            // The run's task ended without a result: it was aborted at shutdown.
            Err(_) => Err(Arc::new(CrawlRunError::Aborted)),
        }
    }
}

/// The hub's crawl runner: the shared [`CrawlContext`], single flight, and the schedule.
#[derive(Debug)]
pub struct CrawlService {
    context: Arc<CrawlContext>,
    running: tokio::sync::Mutex<Option<Running>>,
    stop: watch::Sender<bool>,
    schedule: Mutex<Option<JoinHandle<()>>>,
}

impl CrawlService {
    /// A service over `context`, with no schedule yet (see [`spawn_scheduler`]).
    pub fn new(context: CrawlContext) -> Self {
        Self {
            context: Arc::new(context),
            running: tokio::sync::Mutex::new(None),
            stop: watch::Sender::new(false),
            schedule: Mutex::new(None),
        }
    }

    /// The shared crawl inputs (store, crawler, in-memory peer facts).
    pub fn context(&self) -> &CrawlContext {
        &self.context
    }

    /// Stops the schedule and aborts a running crawl. Idempotent.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
        if let Some(task) = self.schedule_slot().take() {
            task.abort();
        }
        // `try_lock`: shutdown must not wait; a trigger holding the lock is about to start
        // a run, which the aborted schedule or the dropping runtime ends.
        if let Ok(running) = self.running.try_lock()
            && let Some(run) = running.as_ref()
        {
            run.task.abort();
        }
    }

    /// True once [`Self::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        *self.stop.borrow()
    }

    fn schedule_slot(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts a crawl now, or joins the one running (see the module docs). The run itself goes
/// on in its own task, so a client that disconnects does not cancel it; its catalog change
/// is published through `state` when it ends.
pub async fn trigger(state: &Arc<AppState>) -> Result<CrawlTicket, CrawlRunError> {
    let service = &state.crawl;
    if service.is_shut_down() {
        return Err(CrawlRunError::Aborted);
    }
    let mut running = service.running.lock().await;
    if let Some(run) = running.as_ref()
        && run.done.borrow().is_none()
        && !run.task.is_finished()
    {
        return Ok(CrawlTicket {
            run_id: run.run_id,
            joined: true,
            done: run.done.clone(),
        });
    }
    let run_id = service.context.store.start_run().await?;
    let (tx, done) = watch::channel(None);
    let task_state = Arc::clone(state);
    let task = tokio::spawn(async move {
        let outcome = task_state
            .crawl
            .context
            .run(run_id, &|_| {})
            .await
            .map(Arc::new)
            .map_err(Arc::new);
        match &outcome {
            Ok(summary) => {
                if let Some(update) = &summary.catalog_update {
                    task_state.publish_catalog_update(update.clone());
                }
                tracing::info!(
                    run_id,
                    peers_reached = summary.peers_reached,
                    capabilities_indexed = summary.capabilities_indexed,
                    not_modified = summary.not_modified,
                    rejected = summary.rejected,
                    errors = summary.errors.len(),
                    "crawl finished"
                );
            }
            Err(e) => tracing::error!(run_id, error = %e, "crawl failed"),
        }
        tx.send_replace(Some(outcome));
    });
    *running = Some(Running {
        run_id,
        done: done.clone(),
        task: task.abort_handle(),
    });
    Ok(CrawlTicket {
        run_id,
        joined: false,
        done,
    })
}

/// `interval` ± 10 %, so replicas and neighbours do not crawl in lockstep.
pub fn jittered(interval: Duration) -> Duration {
    let factor: f64 = rand::random_range(0.9..=1.1);
    interval.mul_f64(factor)
}

/// Starts the schedule: a crawl now, then every `crawl_interval_s` with jitter while
/// `auto_crawl` is on. Call once the listener is bound; the crawl runs in the background and
/// never delays serving.
pub fn spawn_scheduler(state: Arc<AppState>) {
    let mut stop = state.crawl.stop.subscribe();
    let interval = Duration::from_secs(state.settings.crawl_interval_s);
    let auto = state.settings.auto_crawl;
    let task_state = Arc::clone(&state);
    let task = tokio::spawn(async move {
        loop {
            match trigger(&task_state).await {
                Ok(ticket) => {
                    tokio::select! {
                        _ = ticket.outcome() => {}
                        _ = stop.wait_for(|stopped| *stopped) => return,
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot start a scheduled crawl"),
            }
            if !auto {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(jittered(interval)) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    });
    *state.crawl.schedule_slot() = Some(task);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(3600);
        for _ in 0..1000 {
            let d = jittered(base);
            assert!(
                d >= Duration::from_secs(3240) && d <= Duration::from_secs(3960),
                "{d:?}"
            );
        }
    }
}

//! When crawls run inside the hub: once at startup, then every `crawl_interval_s` (±10 %
//! jitter) unless `auto_crawl` is off, and on demand (`POST /ai-market/v2/federation/crawl`).
//!
//! **Single flight.** At most one crawl runs at a time per process. A trigger that arrives
//! while one is running *joins* it: it gets that run's id and, when it waits, that run's
//! result. (Answering 409 instead would make an operator's "crawl now" fail exactly when the
//! scheduler happens to be crawling; joining gives them a crawl that started at most one run
//! ago, which is what they asked for.) A trigger after a run finished starts a new one.
//!
//! **Across replicas** (with `REDIS_URL`, see `crate::replica::lease`). A run takes the
//! crawl lease first, so one crawl runs across all replicas:
//! - a *triggered* run (admin endpoint, operator actions) that finds the lease held by
//!   another replica joins that run like a local one: it answers with that run's id at once
//!   (`joined: true`) and, when it waits, with the run's stored totals once the holder
//!   releases the lease (per-peer details and counts that are not stored are empty). If the
//!   holder dies mid-run, its lease expires and the waiting trigger answers 503.
//! - a *scheduled* run (startup and every interval) is skipped when the lease is held, and
//!   also when another replica already started a scheduled crawl within the last 90 % of the
//!   interval (`<prefix>crawl:schedule`), so N replicas crawl about once per interval
//!   together, and a restarting replica does not re-crawl what another just crawled.
//! - Redis unavailable: no crawl starts (a trigger answers 503, a scheduled run is logged
//!   and retried at the next interval); serving is unaffected.
//!
//! **Shutdown.** [`CrawlService::shutdown`] stops the schedule and aborts a running crawl;
//! its `crawl_runs` row then stays `running`, which the store documents as "the process died
//! during it".

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tracing::Instrument as _;

use super::{CrawlContext, CrawlRunError, CrawlSummary};
use crate::replica::{Acquired, Holder, LeaseGuard};
use crate::state::AppState;
use crate::store::RunStatus;

/// How long a trigger waits for the replica holding the crawl lease to record its run.
const REMOTE_RUN_ID_WAIT: Duration = Duration::from_secs(10);
/// How often a joined remote run's lease is checked.
const REMOTE_POLL: Duration = Duration::from_millis(250);
/// Consecutive Redis failures after which a joined remote run is given up.
const REMOTE_MAX_FAILURES: u32 = 40;

/// A finished run as every waiter sees it.
pub type RunOutcome = Result<Arc<CrawlSummary>, Arc<CrawlRunError>>;

/// The running crawl, if any.
#[derive(Debug)]
struct Running {
    run_id: i64,
    /// The replica doing the crawl (this one, or the lease holder this process waits on).
    replica_id: String,
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
    /// The replica running it: this process's id for local runs, another replica's when
    /// the crawl lease sent this trigger there (`crate::replica`).
    pub replica_id: String,
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

    /// True while a crawl runs in this process (or this process waits on another replica's
    /// run it joined), and while a trigger is deciding.
    pub fn is_running(&self) -> bool {
        match self.running.try_lock() {
            Ok(running) => running
                .as_ref()
                .is_some_and(|run| run.done.borrow().is_none() && !run.task.is_finished()),
            Err(_) => true,
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
///
/// With Redis, a run going on at another replica is joined too: the ticket carries that
/// run's id and, when awaited, its stored totals once that replica releases the lease.
pub async fn trigger(state: &Arc<AppState>) -> Result<CrawlTicket, CrawlRunError> {
    let service = &state.crawl;
    if service.is_shut_down() {
        return Err(CrawlRunError::Aborted);
    }
    let mut running = service.running.lock().await;
    if let Some(ticket) = join_local(&running) {
        return Ok(ticket);
    }
    let guard = match state.shared.crawl_lease() {
        None => None,
        Some(lease) => match acquire_or_find(lease).await? {
            Lease::Won(guard) => Some(guard),
            Lease::Remote(holder, run_id) => {
                return Ok(join_remote(state, &mut running, lease, holder, run_id));
            }
        },
    };
    start_local(state, &mut running, guard).await
}

/// A scheduled crawl: like [`trigger`], except that in multi-replica mode it is skipped
/// (`None`) when another replica already started this interval's scheduled crawl or holds
/// the crawl lease.
async fn scheduled(state: &Arc<AppState>) -> Result<Option<CrawlTicket>, CrawlRunError> {
    let service = &state.crawl;
    if service.is_shut_down() {
        return Err(CrawlRunError::Aborted);
    }
    let mut running = service.running.lock().await;
    if let Some(ticket) = join_local(&running) {
        return Ok(Some(ticket));
    }
    let guard = match state.shared.crawl_lease() {
        None => None,
        Some(lease) => {
            let interval = Duration::from_secs(state.settings.crawl_interval_s);
            if !state
                .shared
                .claim_schedule_slot(interval)
                .await
                .map_err(|e| CrawlRunError::Replica(e.to_string()))?
            {
                tracing::debug!("scheduled crawl skipped: another replica ran this interval's");
                return Ok(None);
            }
            match lease
                .try_acquire()
                .instrument(crate::telemetry::span!("replica.lease.acquire"))
                .await
                .map_err(replica_error)?
            {
                Acquired::Won(guard) => Some(guard),
                Acquired::Held(holder) => {
                    tracing::debug!(
                        holder = %holder.replica_id,
                        "scheduled crawl skipped: another replica is crawling"
                    );
                    return Ok(None);
                }
            }
        }
    };
    start_local(state, &mut running, guard).await.map(Some)
}

fn replica_error(e: redis::RedisError) -> CrawlRunError {
    CrawlRunError::Replica(format!("the crawl lease (Redis) is unavailable: {e}"))
}

/// The running local crawl (or the local waiter on a remote one), as a joined ticket.
fn join_local(running: &Option<Running>) -> Option<CrawlTicket> {
    let run = running.as_ref()?;
    (run.done.borrow().is_none() && !run.task.is_finished()).then(|| CrawlTicket {
        run_id: run.run_id,
        joined: true,
        replica_id: run.replica_id.clone(),
        done: run.done.clone(),
    })
}

/// Result of asking for the crawl lease on behalf of a trigger.
enum Lease {
    Won(LeaseGuard),
    /// Held by another replica's run with this id.
    Remote(Holder, i64),
}

/// Takes the lease, or finds the run of the replica holding it. The holder records its run
/// id right after taking the lease; a trigger that catches it in between waits for it (at
/// most [`REMOTE_RUN_ID_WAIT`]).
async fn acquire_or_find(lease: &crate::replica::Lease) -> Result<Lease, CrawlRunError> {
    let deadline = tokio::time::Instant::now() + REMOTE_RUN_ID_WAIT;
    let mut holder = match lease
        .try_acquire()
        .instrument(crate::telemetry::span!("replica.lease.acquire"))
        .await
        .map_err(replica_error)?
    {
        Acquired::Won(guard) => return Ok(Lease::Won(guard)),
        Acquired::Held(holder) => holder,
    };
    // Bounded by the deadline.
    loop {
        if let Some(run_id) = holder.run_id {
            return Ok(Lease::Remote(holder, run_id));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CrawlRunError::Replica(format!(
                "replica {} holds the crawl lease but has not started a run",
                holder.replica_id
            )));
        }
        tokio::time::sleep(REMOTE_POLL / 5).await;
        holder = match lease.holder().await.map_err(replica_error)? {
            Some(holder) => holder,
            // Released meanwhile: try to take it.
            None => match lease
                .try_acquire()
                .instrument(crate::telemetry::span!("replica.lease.acquire"))
                .await
                .map_err(replica_error)?
            {
                Acquired::Won(guard) => return Ok(Lease::Won(guard)),
                Acquired::Held(holder) => holder,
            },
        };
    }
}

/// Joins another replica's run: a local waiter (stored as the running crawl, so further
/// triggers here join it without asking Redis) follows the lease until that acquisition
/// ends, then reads the run's stored totals.
fn join_remote(
    state: &Arc<AppState>,
    running: &mut Option<Running>,
    lease: &crate::replica::Lease,
    holder: Holder,
    run_id: i64,
) -> CrawlTicket {
    tracing::info!(
        run_id,
        holder = %holder.replica_id,
        "a crawl is running at another replica; joining it"
    );
    let (tx, done) = watch::channel(None);
    let replica_id = holder.replica_id.clone();
    let (lease, store) = (lease.clone(), state.store.clone());
    let task = tokio::spawn(async move {
        let outcome = wait_remote(&lease, &store, &holder, run_id).await;
        tx.send_replace(Some(outcome.map(Arc::new).map_err(Arc::new)));
    });
    *running = Some(Running {
        run_id,
        replica_id: replica_id.clone(),
        done: done.clone(),
        task: task.abort_handle(),
    });
    CrawlTicket {
        run_id,
        joined: true,
        replica_id,
        done,
    }
}

/// Waits until `holder`'s acquisition of the lease ends, then reads run `run_id`.
async fn wait_remote(
    lease: &crate::replica::Lease,
    store: &crate::store::Store,
    holder: &Holder,
    run_id: i64,
) -> Result<CrawlSummary, CrawlRunError> {
    let mut failures = 0;
    // Ends when the holder releases the lease or stops renewing it (it then expires).
    loop {
        tokio::time::sleep(REMOTE_POLL).await;
        match lease.holder().await {
            Ok(Some(now)) if now.token == holder.token => failures = 0,
            Ok(_) => break,
            Err(e) => {
                failures += 1;
                if failures >= REMOTE_MAX_FAILURES {
                    return Err(replica_error(e));
                }
            }
        }
    }
    let row = store.crawl_run(run_id).await?;
    match row {
        Some(row) if row.finished_at.is_some() && row.summary.status == RunStatus::Completed => {
            Ok(CrawlSummary::from_stored(&row))
        }
        Some(row) if row.finished_at.is_some() => Err(CrawlRunError::Replica(format!(
            "crawl run {run_id} failed at replica {}",
            holder.replica_id
        ))),
        _ => Err(CrawlRunError::Replica(format!(
            "crawl run {run_id} at replica {} ended without finishing (that replica stopped)",
            holder.replica_id
        ))),
    }
}

/// Starts a run in this process (holding `guard`, the crawl lease, in multi-replica mode).
async fn start_local(
    state: &Arc<AppState>,
    running: &mut Option<Running>,
    guard: Option<LeaseGuard>,
) -> Result<CrawlTicket, CrawlRunError> {
    let service = &state.crawl;
    let run_id = match service.context.store.start_run().await {
        Ok(run_id) => run_id,
        Err(e) => {
            if let Some(guard) = guard
                && let Err(e) = guard.release().await
            {
                tracing::warn!(error = %e, "cannot release the crawl lease");
            }
            return Err(e.into());
        }
    };
    if let Some(guard) = &guard {
        match guard.attach_run(run_id).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(run_id, "the crawl lease was lost before the run began"),
            Err(e) => {
                tracing::warn!(run_id, error = %e, "cannot record the run in the crawl lease")
            }
        }
    }
    let (tx, done) = watch::channel(None);
    let task_state = Arc::clone(state);
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        // The run's trace: per-peer fetch/verify spans (from the crawler) and the store
        // writes are its children.
        let span = crate::telemetry::span!("crawl.run", run_id);
        let outcome = task_state
            .crawl
            .context
            .run(run_id, &|_| {})
            .instrument(span)
            .await
            .map(Arc::new)
            .map_err(Arc::new);
        task_state
            .metrics
            .observe_crawl(outcome.as_ref().ok().map(|s| &**s), started.elapsed());
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
        // Released before the outcome is announced, so a trigger that sees this run ended
        // finds the lease free.
        if let Some(guard) = guard
            && let Err(e) = guard.release().await
        {
            tracing::warn!(error = %e, "cannot release the crawl lease; it expires on its own");
        }
        tx.send_replace(Some(outcome));
    });
    let replica_id = state.shared.replica_id().to_owned();
    *running = Some(Running {
        run_id,
        replica_id: replica_id.clone(),
        done: done.clone(),
        task: task.abort_handle(),
    });
    Ok(CrawlTicket {
        run_id,
        joined: false,
        replica_id,
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
            match scheduled(&task_state).await {
                Ok(Some(ticket)) => {
                    tokio::select! {
                        _ = ticket.outcome() => {}
                        _ = stop.wait_for(|stopped| *stopped) => return,
                    }
                }
                Ok(None) => {}
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

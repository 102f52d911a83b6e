//! Crawl run bookkeeping: one row per crawl, started and finished by the crawl job.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, now_ms, on_pool};

/// Lifecycle of a crawl run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Started and not finished (or the process died during it).
    Running,
    /// Every peer was attempted; individual peers may still have failed (see `errors`).
    Completed,
    /// The run itself was aborted.
    Failed,
}

impl RunStatus {
    /// Stored spelling: `"running"`, `"completed"` or `"failed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "running" => Ok(Self::Running),
            "completed" => Ok(Self::Completed),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Corrupt(format!(
                "unknown crawl run status `{other}`"
            ))),
        }
    }
}

/// One peer's failure within a run (stored as JSON `{"peer": …, "error": …}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// The peer URL.
    pub peer: String,
    /// What went wrong.
    pub error: String,
}

/// Totals of a finished run, written by [`Store::finish_run`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// Final status (normally `Completed` or `Failed`).
    pub status: RunStatus,
    /// Peers that answered (200 or 304).
    pub peers_reached: i64,
    /// Capabilities stored from verified manifests in this run.
    pub capabilities_indexed: i64,
    /// Peers that answered 304 Not Modified.
    pub not_modified: i64,
    /// Peers whose documents were rejected (signature, schema, freshness, key change…).
    pub rejected: i64,
    /// Per-peer failures.
    pub errors: Vec<RunError>,
}

/// A stored crawl run. Timestamps are unix milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct CrawlRunRow {
    /// Run id.
    pub id: i64,
    /// Start time.
    pub started_at: i64,
    /// End time, once finished.
    pub finished_at: Option<i64>,
    /// Status and totals (zero while running).
    pub summary: RunSummary,
}

#[derive(sqlx::FromRow)]
struct RawRun {
    id: i64,
    started_at: i64,
    finished_at: Option<i64>,
    peers_reached: i64,
    capabilities_indexed: i64,
    not_modified: i64,
    rejected: i64,
    errors: String,
    status: String,
}

impl TryFrom<RawRun> for CrawlRunRow {
    type Error = StoreError;
    fn try_from(r: RawRun) -> Result<Self, StoreError> {
        let errors = serde_json::from_str(&r.errors)
            .map_err(|e| StoreError::Corrupt(format!("crawl run {} errors: {e}", r.id)))?;
        Ok(CrawlRunRow {
            id: r.id,
            started_at: r.started_at,
            finished_at: r.finished_at,
            summary: RunSummary {
                status: RunStatus::parse(&r.status)?,
                peers_reached: r.peers_reached,
                capabilities_indexed: r.capabilities_indexed,
                not_modified: r.not_modified,
                rejected: r.rejected,
                errors,
            },
        })
    }
}

impl Store {
    /// Records the start of a crawl run and returns its id.
    pub async fn start_run(&self) -> Result<i64, StoreError> {
        const SQL: &str = "INSERT INTO crawl_runs (started_at, status) VALUES ($1, 'running') \
                           RETURNING id";
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(SQL)
                .bind(now_ms())
                .fetch_one(pool)
                .await?
        }))
    }

    /// Records the end of run `run_id` with its totals.
    pub async fn finish_run(&self, run_id: i64, summary: &RunSummary) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE crawl_runs SET finished_at = $2, status = $3, \
             peers_reached = $4, capabilities_indexed = $5, not_modified = $6, rejected = $7, \
             errors = $8 WHERE id = $1";
        let errors = serde_json::to_string(&summary.errors)
            .map_err(|e| StoreError::Corrupt(format!("crawl run errors: {e}")))?;
        let done = on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(run_id)
                .bind(now_ms())
                .bind(summary.status.as_str())
                .bind(summary.peers_reached)
                .bind(summary.capabilities_indexed)
                .bind(summary.not_modified)
                .bind(summary.rejected)
                .bind(&errors)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::RunNotFound(run_id));
        }
        Ok(())
    }

    /// Run `run_id`, if it exists (another replica's run, when its lease is released).
    pub async fn crawl_run(&self, run_id: i64) -> Result<Option<CrawlRunRow>, StoreError> {
        const SQL: &str = "SELECT id, started_at, finished_at, peers_reached, \
             capabilities_indexed, not_modified, rejected, errors, status \
             FROM crawl_runs WHERE id = $1";
        let row: Option<RawRun> = on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(run_id)
                .fetch_optional(pool)
                .await?
        });
        row.map(CrawlRunRow::try_from).transpose()
    }

    /// The `n` most recent runs, newest first.
    pub async fn last_runs(&self, n: u32) -> Result<Vec<CrawlRunRow>, StoreError> {
        const SQL: &str = "SELECT id, started_at, finished_at, peers_reached, \
             capabilities_indexed, not_modified, rejected, errors, status \
             FROM crawl_runs ORDER BY id DESC LIMIT $1";
        let rows: Vec<RawRun> = on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(i64::from(n))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(CrawlRunRow::try_from).collect()
    }
}

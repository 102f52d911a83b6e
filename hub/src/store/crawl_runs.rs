//! Crawl run bookkeeping: one row per crawl, started and finished by the crawl job, with the
//! tools it dropped and why; and each peer's dropped tools as its last new manifest was
//! judged (`peer_rejections`). Both are stored, so every replica and a restarted hub show
//! the same reasons.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, now_ms, on_pool};

/// Peers per statement when clearing verdicts.
const CLEAR_CHUNK: usize = 300;

/// One tool of a verified manifest dropped by the crawl, and why (stored as JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRejection {
    /// The peer whose manifest held it.
    pub peer: String,
    /// Its index in the manifest's `tools` array.
    pub index: usize,
    /// Its `name`, when it was a string (stranger-provided text: escape it when shown).
    pub name: Option<String>,
    /// Why it was dropped.
    pub reason: String,
}

/// A peer's dropped tools, as its last new manifest was judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerRejections {
    /// The run that judged it.
    pub run_id: i64,
    /// When that run started.
    pub at: DateTime<Utc>,
    /// How many tools were dropped.
    pub count: i64,
    /// The first of them (at most 20) with their reasons.
    pub tools: Vec<ToolRejection>,
}

/// A peer's verdict to record: its origin, how many tools were dropped, and the kept ones.
#[derive(Debug, Clone)]
pub struct PeerVerdict {
    /// The peer's origin.
    pub url: String,
    /// How many tools its manifest had dropped.
    pub count: i64,
    /// The kept sample, with reasons.
    pub tools: Vec<ToolRejection>,
}

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
    /// Tools of verified manifests dropped one by one.
    pub rejected_tools: i64,
    /// A sample of them with their reasons (bounded by the crawl).
    pub rejected_tools_sample: Vec<ToolRejection>,
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
    rejected_tools: i64,
    rejected_tools_sample: String,
}

impl TryFrom<RawRun> for CrawlRunRow {
    type Error = StoreError;
    fn try_from(r: RawRun) -> Result<Self, StoreError> {
        let errors = serde_json::from_str(&r.errors)
            .map_err(|e| StoreError::Corrupt(format!("crawl run {} errors: {e}", r.id)))?;
        let sample = serde_json::from_str(&r.rejected_tools_sample)
            .map_err(|e| StoreError::Corrupt(format!("crawl run {} rejected tools: {e}", r.id)))?;
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
                rejected_tools: r.rejected_tools,
                rejected_tools_sample: sample,
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
             errors = $8, rejected_tools = $9, rejected_tools_sample = $10 WHERE id = $1";
        let errors = serde_json::to_string(&summary.errors)
            .map_err(|e| StoreError::Corrupt(format!("crawl run errors: {e}")))?;
        let sample = serde_json::to_string(&summary.rejected_tools_sample)
            .map_err(|e| StoreError::Corrupt(format!("crawl run rejected tools: {e}")))?;
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
                .bind(summary.rejected_tools)
                .bind(&sample)
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
             capabilities_indexed, not_modified, rejected, errors, status, rejected_tools, \
             rejected_tools_sample FROM crawl_runs WHERE id = $1";
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
             capabilities_indexed, not_modified, rejected, errors, status, rejected_tools, \
             rejected_tools_sample FROM crawl_runs ORDER BY id DESC LIMIT $1";
        let rows: Vec<RawRun> = on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(i64::from(n))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(CrawlRunRow::try_from).collect()
    }

    /// Records the verdicts of run `run_id` (started at `at`, unix ms) on the peers whose new
    /// manifest it judged: each replaces the peer's previous one; a verdict without dropped
    /// tools clears it. Peers unknown to the store are skipped.
    pub async fn record_peer_rejections(
        &self,
        run_id: i64,
        at: i64,
        verdicts: &[PeerVerdict],
    ) -> Result<(), StoreError> {
        const UPSERT: &str = "INSERT INTO peer_rejections \
             (peer_id, run_id, judged_at, rejected_tools, tools) \
             SELECT id, $2, $3, $4, $5 FROM peers WHERE url = $1 \
             ON CONFLICT (peer_id) DO UPDATE SET run_id = excluded.run_id, \
             judged_at = excluded.judged_at, rejected_tools = excluded.rejected_tools, \
             tools = excluded.tools";
        let (dropped, clean): (Vec<&PeerVerdict>, Vec<&PeerVerdict>) =
            verdicts.iter().partition(|v| v.count > 0);
        for verdict in dropped {
            let tools = serde_json::to_string(&verdict.tools)
                .map_err(|e| StoreError::Corrupt(format!("rejected tools: {e}")))?;
            on_pool!(self, |pool| {
                sqlx::query(UPSERT)
                    .bind(&verdict.url)
                    .bind(run_id)
                    .bind(at)
                    .bind(verdict.count)
                    .bind(&tools)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
        }
        for chunk in clean.chunks(CLEAR_CHUNK) {
            on_pool!(self, |pool| {
                let mut query = sqlx::QueryBuilder::new(
                    "DELETE FROM peer_rejections WHERE peer_id IN \
                     (SELECT id FROM peers WHERE url IN (",
                );
                let mut urls = query.separated(", ");
                for verdict in chunk {
                    urls.push_bind(verdict.url.as_str());
                }
                query.push("))");
                query.build().execute(pool).await?.rows_affected()
            });
        }
        Ok(())
    }

    /// Every peer's last recorded verdict with dropped tools, by peer origin.
    pub async fn peer_rejections(&self) -> Result<HashMap<String, PeerRejections>, StoreError> {
        const SQL: &str = "SELECT p.url, r.run_id, r.judged_at, r.rejected_tools, r.tools \
             FROM peer_rejections r JOIN peers p ON p.id = r.peer_id";
        let rows: Vec<(String, i64, i64, i64, String)> =
            on_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await?);
        rows.into_iter()
            .map(|(url, run_id, at, count, tools)| {
                let tools = serde_json::from_str(&tools)
                    .map_err(|e| StoreError::Corrupt(format!("rejected tools of {url}: {e}")))?;
                let at = DateTime::from_timestamp_millis(at).unwrap_or_default();
                Ok((
                    url,
                    PeerRejections {
                        run_id,
                        at,
                        count,
                        tools,
                    },
                ))
            })
            .collect()
    }
}

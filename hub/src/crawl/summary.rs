//! The result of one crawl run: [`CrawlSummary`], and its stored form.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::changes::CatalogUpdate;
use crate::store::{CrawlRunRow, RunError, RunStatus, RunSummary};

/// Most per-peer errors kept in a summary (and in the stored run row); the rest are counted
/// in [`CrawlSummary::errors_omitted`].
pub const MAX_RUN_ERRORS: usize = 1000;

/// Most dropped tools kept (with their reasons) per peer in a run.
pub const MAX_REJECTED_PER_PEER: usize = 20;
/// Most dropped tools kept (with their reasons) in a run's sample, over all peers.
pub const MAX_REJECTED_SAMPLE: usize = 50;

pub use crate::store::ToolRejection;

impl ToolRejection {
    /// The first [`MAX_REJECTED_PER_PEER`] of a catalog's dropped tools.
    pub(crate) fn of(peer: &str, rejected: &[aimarket_crawler::RejectedTool]) -> Vec<Self> {
        rejected
            .iter()
            .take(MAX_REJECTED_PER_PEER)
            .map(|r| Self {
                peer: peer.to_owned(),
                index: r.index,
                name: r.name.clone(),
                reason: r.reason.clone(),
            })
            .collect()
    }
}

/// One peer's failure in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerError {
    /// Peer origin (or the seed as configured, when it did not parse).
    pub url: String,
    /// What was wrong, as recorded in the peer's `last_error`.
    pub error: String,
}

/// What happened to one peer in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerReport {
    /// Peer origin.
    pub url: String,
    /// BFS depth (0 for operator seeds and re-crawled active peers).
    pub depth: u8,
    /// True for operator seeds and active peers (their catalogs are indexed).
    pub admitted: bool,
    /// `updated`, `not_modified`, or the crawler's error code (`signature`, `timeout`, …).
    pub status: String,
    /// Capabilities stored from this peer (admitted peers with a new catalog).
    pub capabilities: usize,
    /// Tools of a verified manifest dropped one by one (schema, price, duplicates, hops).
    pub rejected_tools: usize,
    /// The first [`MAX_REJECTED_PER_PEER`] of them, with their reasons.
    pub rejected: Vec<ToolRejection>,
    /// The error, for failed peers.
    pub error: Option<String>,
}

/// Totals and details of one crawl run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CrawlSummary {
    /// The `crawl_runs` row.
    pub run_id: i64,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Peers that answered with something we could judge: a new catalog, a 304, or a
    /// document that was rejected.
    pub peers_reached: u64,
    /// Admitted peers with a new verified catalog.
    pub peers_updated: u64,
    /// Capabilities stored from those catalogs.
    pub capabilities_indexed: u64,
    /// Peers whose manifest answered 304 Not Modified (nothing written).
    pub not_modified: u64,
    /// Peers whose documents were refused (signature, key change, schema, freshness, body,
    /// unsafe URL or redirect).
    pub rejected: u64,
    /// Individually dropped tools of verified manifests.
    pub rejected_tools: u64,
    /// A sample of them with their reasons: at most [`MAX_REJECTED_SAMPLE`], at most
    /// [`MAX_REJECTED_PER_PEER`] per peer, in crawl order.
    pub rejected_tools_sample: Vec<ToolRejection>,
    /// New pending peers recorded from discovery.
    pub pending_discovered: u64,
    /// Discovered peers not recorded because the pending bound was reached.
    pub pending_dropped: u64,
    /// Per-peer failures, at most [`MAX_RUN_ERRORS`].
    pub errors: Vec<PeerError>,
    /// Failures beyond [`MAX_RUN_ERRORS`].
    pub errors_omitted: u64,
    /// Every peer attempted, in crawl order.
    pub peers: Vec<PeerReport>,
    /// The change to the visible catalog, when there was one (already published to
    /// subscribers when the run was started through the hub).
    #[serde(skip)]
    pub catalog_update: Option<CatalogUpdate>,
}

impl CrawlSummary {
    pub(crate) fn new(run_id: i64, started_at: DateTime<Utc>) -> Self {
        Self {
            run_id,
            started_at,
            finished_at: started_at,
            peers_reached: 0,
            peers_updated: 0,
            capabilities_indexed: 0,
            not_modified: 0,
            rejected: 0,
            rejected_tools: 0,
            rejected_tools_sample: Vec::new(),
            pending_discovered: 0,
            pending_dropped: 0,
            errors: Vec::new(),
            errors_omitted: 0,
            peers: Vec::new(),
            catalog_update: None,
        }
    }

    /// Adds a peer's dropped tools to the run's sample, within its bound.
    pub(crate) fn sample_rejections(&mut self, rejected: &[ToolRejection]) {
        let room = MAX_REJECTED_SAMPLE.saturating_sub(self.rejected_tools_sample.len());
        self.rejected_tools_sample
            .extend(rejected.iter().take(room).cloned());
    }

    pub(crate) fn push_error(&mut self, url: &str, error: String) {
        if self.errors.len() < MAX_RUN_ERRORS {
            self.errors.push(PeerError {
                url: url.to_owned(),
                error,
            });
        } else {
            self.errors_omitted += 1;
        }
    }

    /// A finished run as stored (another replica's run, joined through the crawl lease):
    /// the stored totals, errors and dropped tools; what is not stored (`peers`,
    /// `peers_updated`, pending counts) is zero or empty.
    pub(crate) fn from_stored(row: &CrawlRunRow) -> Self {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
        let mut summary = Self::new(row.id, at(row.started_at));
        summary.finished_at = at(row.finished_at.unwrap_or(row.started_at));
        summary.peers_reached = count(row.summary.peers_reached);
        summary.capabilities_indexed = count(row.summary.capabilities_indexed);
        summary.not_modified = count(row.summary.not_modified);
        summary.rejected = count(row.summary.rejected);
        summary.rejected_tools = count(row.summary.rejected_tools);
        summary.rejected_tools_sample = row.summary.rejected_tools_sample.clone();
        summary.errors = row
            .summary
            .errors
            .iter()
            .map(|e| PeerError {
                url: e.peer.clone(),
                error: e.error.clone(),
            })
            .collect();
        summary
    }

    /// The row written to `crawl_runs`.
    pub fn to_run_summary(&self) -> RunSummary {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        RunSummary {
            status: RunStatus::Completed,
            peers_reached: count(self.peers_reached),
            capabilities_indexed: count(self.capabilities_indexed),
            not_modified: count(self.not_modified),
            rejected: count(self.rejected),
            errors: self
                .errors
                .iter()
                .map(|e| RunError {
                    peer: e.url.clone(),
                    error: e.error.clone(),
                })
                .collect(),
            rejected_tools: count(self.rejected_tools),
            rejected_tools_sample: self.rejected_tools_sample.clone(),
        }
    }
}

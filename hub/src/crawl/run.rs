//! One crawl run: seeds and known peers in, verified catalogs stored, one `crawl_runs` row.
//!
//! Who is crawled: the operator seeds (recorded as active, trusted, depth-0 peers, with the
//! key from `URL=KEY` pinned as `operator`), plus every active peer in the store, plus what
//! breadth-first discovery finds from them (spec §2.2).
//!
//! What each outcome writes:
//! - **new verified catalog, admitted peer** (operator seed or active): the presented key is
//!   pinned if none is (trust on first use, `tofu`), the catalog replaces the peer's rows
//!   (re-export rules in [`super::mapping`]) and the crawl is recorded (name, manifest URL,
//!   validators, `last_error` cleared);
//! - **new verified catalog, discovered peer**: recorded as `pending`, never active, never
//!   trusted, no key pinned; its catalog is **not** stored (the separate preview table is
//!   the admission work's). Its row is only written when something about it changed;
//! - **304**: nothing is written. The time is kept in memory ([`super::CrawlContext`]);
//! - **failure**: the peer's `last_error` says what was wrong and its last good catalog
//!   stays. A key different from the pinned one is such a failure. A discovered URL that
//!   failed the address check (§7.4) or never resolved is not recorded at all.

use std::collections::{BTreeMap, HashMap, HashSet};

use aimarket_crawler::{
    CrawlError, CrawlEvent, KeySource as PresentedKey, KnownPeer, PeerOutcome, PeerResult,
    PeerValidators, SeedSpec, Validators as CrawlValidators, VerifiedCatalog,
};
use chrono::Utc;
use tracing::Instrument as _;

use super::changes::ChangeLog;
use super::mapping::map_catalog;
use super::summary::{CrawlSummary, PeerReport, ToolRejection};
use super::{CrawlContext, CrawlRunError};
use crate::store::{
    CrawlSuccess, KeySource, NewPeer, PeerRow, PeerState, RunError, RunStatus, RunSummary,
    StoreError, Validators, normalize_origin,
};

/// Finished peers waiting to be stored while the crawl goes on.
const RESULTS_IN_FLIGHT: usize = 4;

/// Progress callback of a run (the CLI's progress bar).
pub type Progress<'a> = &'a (dyn Fn(CrawlEvent) + Send + Sync);

fn to_store(v: &CrawlValidators) -> Validators {
    Validators {
        etag: v.etag.clone(),
        last_modified: v.last_modified.clone(),
    }
}

fn to_crawler(v: &Validators) -> CrawlValidators {
    CrawlValidators {
        etag: v.etag.clone(),
        last_modified: v.last_modified.clone(),
    }
}

/// The peer's name from its well-known, when it gave one.
fn peer_name(catalog: &VerifiedCatalog) -> Option<String> {
    Some(catalog.peer.name.clone()).filter(|n| !n.trim().is_empty())
}

/// Mutable state of one run.
struct RunState {
    summary: CrawlSummary,
    log: ChangeLog,
    /// Stored peers by origin, kept current as the run writes.
    rows: BTreeMap<String, PeerRow>,
    /// Origins whose catalogs are indexed: operator seeds and active peers.
    admitted: HashSet<String>,
    /// Seeds whose pinned key the operator just changed: their stored catalog was verified
    /// with another key, so their validators are not used (no 304 can skip verification).
    repinned: HashSet<String>,
    pending: usize,
    well_known_checked: Vec<String>,
    confirmed: Vec<String>,
}

impl CrawlContext {
    /// Starts a run (its `crawl_runs` row), crawls, stores, and finishes the row.
    pub async fn run_once(&self, progress: Progress<'_>) -> Result<CrawlSummary, CrawlRunError> {
        let run_id = self.store.start_run().await?;
        self.run(run_id, progress).await
    }

    /// Runs the crawl for an already started run `run_id` and finishes its row: `completed`
    /// with the totals, or `failed` with the reason when the store failed under it.
    pub async fn run(
        &self,
        run_id: i64,
        progress: Progress<'_>,
    ) -> Result<CrawlSummary, CrawlRunError> {
        match self.crawl_and_store(run_id, progress).await {
            Ok(summary) => {
                self.store
                    .finish_run(run_id, &summary.to_run_summary())
                    .await?;
                Ok(summary)
            }
            Err(e) => {
                let failed = RunSummary {
                    status: RunStatus::Failed,
                    peers_reached: 0,
                    capabilities_indexed: 0,
                    not_modified: 0,
                    rejected: 0,
                    errors: vec![RunError {
                        peer: String::new(),
                        error: e.to_string(),
                    }],
                    rejected_tools: 0,
                    rejected_tools_sample: Vec::new(),
                };
                if let Err(finish) = self.store.finish_run(run_id, &failed).await {
                    tracing::warn!(run_id, error = %finish, "cannot mark the crawl run failed");
                }
                Err(e.into())
            }
        }
    }

    async fn crawl_and_store(
        &self,
        run_id: i64,
        progress: Progress<'_>,
    ) -> Result<CrawlSummary, StoreError> {
        let started = Utc::now();
        let version = self.store.catalog_version().await?;
        let rows = self
            .store
            .list_peers(None)
            .await?
            .into_iter()
            .map(|row| (row.url.clone(), row))
            .collect();
        let mut run = RunState {
            summary: CrawlSummary::new(run_id, started),
            log: ChangeLog::new(version),
            rows,
            admitted: HashSet::new(),
            repinned: HashSet::new(),
            pending: 0,
            well_known_checked: Vec::new(),
            confirmed: Vec::new(),
        };
        let seeds = self.admit_seeds(&mut run).await?;
        run.pending = run
            .rows
            .values()
            .filter(|r| r.state == PeerState::Pending)
            .count();
        let known: HashMap<String, KnownPeer> = run
            .rows
            .values()
            .map(|row| {
                let mut known = self.known_peer(row);
                if run.repinned.contains(&row.url) {
                    known = KnownPeer {
                        pinned_key: known.pinned_key,
                        ..KnownPeer::default()
                    };
                }
                (row.url.clone(), known)
            })
            .collect();
        // Each peer is stored while the next ones are fetched and verified; the bounded
        // channel keeps at most a few verified catalogs in memory.
        let (tx, mut rx) = tokio::sync::mpsc::channel(RESULTS_IN_FLIGHT);
        let crawling = async {
            let report = self
                .crawler
                .crawl_streaming(seeds, &known, progress, &tx)
                .await;
            drop(tx);
            report
        };
        let storing = async {
            while let Some(result) = rx.recv().await {
                let span = crate::telemetry::span!("crawl.store", peer = %result.url);
                self.store_result(&mut run, result).instrument(span).await?;
            }
            Ok::<(), StoreError>(())
        };
        let (report, stored) = tokio::join!(crawling, storing);
        stored?;
        if report.dropped_by_cap + report.beyond_depth > 0 {
            tracing::info!(
                dropped_by_cap = report.dropped_by_cap,
                beyond_depth = report.beyond_depth,
                "discovered peers not crawled"
            );
        }
        let known: HashSet<String> = run.rows.keys().cloned().collect();
        self.remember(started, &run.well_known_checked, &run.confirmed, &known);
        let version = self.store.catalog_version().await?;
        let mut summary = run.summary;
        summary.catalog_update = run.log.finish(version);
        summary.finished_at = Utc::now();
        self.record_rejections(&summary).await?;
        Ok(summary)
    }

    /// Records the operator seeds as active peers and returns the crawl's starting points:
    /// the seeds, then every other active peer (not operator-exempt from §7.4).
    async fn admit_seeds(&self, run: &mut RunState) -> Result<Vec<SeedSpec>, StoreError> {
        let mut seeds = Vec::new();
        for seed in &self.seeds {
            let origin = match normalize_origin(&seed.url) {
                Ok(origin) => origin,
                // Settings only admit http(s) URLs with a host; kept for robustness.
                Err(e) => {
                    run.summary.push_error(&seed.url, e.to_string());
                    continue;
                }
            };
            // Skipped when the row already says it all: even a no-op upsert costs SQLite a
            // page write, and an unchanged crawl writes nothing.
            let current = run.rows.get(&origin).filter(|row| {
                row.state == PeerState::Active
                    && row.trusted
                    && row.depth == 0
                    && (seed.pinned_key.is_none()
                        || (row.pinned_key == seed.pinned_key
                            && row.key_source == Some(KeySource::Operator)))
            });
            let row = match current {
                Some(row) => row.clone(),
                None => {
                    self.store
                        .upsert_seed_peer(&origin, seed.pinned_key.as_deref())
                        .await?
                }
            };
            match run.rows.get(&origin) {
                None => run.log.peers_changed(false),
                // A pending peer's rows become visible without a diff.
                Some(before) if before.state != PeerState::Active => {
                    run.log.peers_changed(before.capability_count > 0);
                }
                Some(_) => {}
            }
            if run
                .rows
                .get(&origin)
                .is_some_and(|before| before.pinned_key != row.pinned_key)
            {
                run.repinned.insert(origin.clone());
            }
            run.rows.insert(origin.clone(), row);
            run.admitted.insert(origin);
            seeds.push(seed.clone());
        }
        for row in run.rows.values() {
            if row.state == PeerState::Active && run.admitted.insert(row.url.clone()) {
                seeds.push(SeedSpec {
                    url: row.well_known_url.clone(),
                    pinned_key: None,
                    operator: false,
                });
            }
        }
        Ok(seeds)
    }

    fn known_peer(&self, row: &PeerRow) -> KnownPeer {
        KnownPeer {
            pinned_key: row.pinned_key.clone(),
            well_known: to_crawler(&row.well_known),
            manifest: to_crawler(&row.manifest),
            manifest_url: row.manifest_url.clone(),
            well_known_checked_at: self.well_known_checked_at(&row.url),
        }
    }

    async fn store_result(&self, run: &mut RunState, result: PeerResult) -> Result<(), StoreError> {
        let origin = normalize_origin(&result.url).unwrap_or_else(|_| result.url.clone());
        let admitted = run.admitted.contains(&origin);
        let mut report = PeerReport {
            url: origin.clone(),
            depth: result.depth,
            admitted,
            status: String::new(),
            capabilities: 0,
            rejected_tools: 0,
            rejected: Vec::new(),
            error: None,
        };
        let failure = match result.outcome {
            PeerOutcome::NotModified(_) => {
                run.summary.peers_reached += 1;
                run.summary.not_modified += 1;
                run.confirmed.push(origin.clone());
                if result.well_known_checked {
                    run.well_known_checked.push(origin.clone());
                }
                report.status = "not_modified".into();
                None
            }
            PeerOutcome::Updated(catalog, validators) if admitted => {
                report.rejected_tools = catalog.rejected_tools.len();
                report.rejected = ToolRejection::of(&origin, &catalog.rejected_tools);
                match self
                    .store_catalog(run, &origin, &catalog, &validators)
                    .await?
                {
                    Ok(stored) => {
                        run.summary.peers_reached += 1;
                        run.summary.peers_updated += 1;
                        run.summary.capabilities_indexed += stored as u64;
                        run.summary.rejected_tools += report.rejected_tools as u64;
                        run.summary.sample_rejections(&report.rejected);
                        if result.well_known_checked {
                            run.well_known_checked.push(origin.clone());
                        }
                        report.status = "updated".into();
                        report.capabilities = stored;
                        None
                    }
                    Err(e) => Some(e),
                }
            }
            PeerOutcome::Updated(catalog, _) => {
                run.summary.peers_reached += 1;
                report.status = "updated".into();
                report.rejected_tools = catalog.rejected_tools.len();
                report.rejected = ToolRejection::of(&origin, &catalog.rejected_tools);
                self.record_discovered(
                    run,
                    &origin,
                    &result.well_known_url,
                    result.depth,
                    Ok(&catalog),
                )
                .await?;
                None
            }
            PeerOutcome::Failed(e) => Some(e),
        };
        if let Some(error) = failure {
            let message = error.to_string();
            if error.is_rejection() {
                run.summary.rejected += 1;
                if !matches!(error, CrawlError::UnsafeUrl { .. }) {
                    run.summary.peers_reached += 1;
                }
            }
            run.summary.push_error(&origin, message.clone());
            report.status = error.code().into();
            report.error = Some(message.clone());
            if admitted {
                if let Some(row) = run.rows.get(&origin) {
                    self.store.record_crawl_error(row.id, &message).await?;
                }
            } else {
                self.record_discovered(
                    run,
                    &origin,
                    &result.well_known_url,
                    result.depth,
                    Err(&error),
                )
                .await?;
            }
        }
        run.summary.peers.push(report);
        Ok(())
    }

    /// Stores an admitted peer's new catalog. The inner error is a key change found while
    /// pinning (another key was pinned concurrently): the peer failed, nothing was stored.
    async fn store_catalog(
        &self,
        run: &mut RunState,
        origin: &str,
        catalog: &VerifiedCatalog,
        validators: &PeerValidators,
    ) -> Result<Result<usize, CrawlError>, StoreError> {
        let Some(row) = run.rows.get(origin) else {
            return Err(StoreError::PeerNotFound {
                peer: origin.to_owned(),
            });
        };
        let presented = &catalog.peer.public_key;
        if catalog.peer.key_source == PresentedKey::Presented {
            let pinned = self
                .store
                .pin_key_if_unpinned(row.id, presented, KeySource::Tofu)
                .await?;
            if &pinned != presented {
                return Ok(Err(CrawlError::KeyMismatch {
                    pinned,
                    presented: presented.clone(),
                }));
            }
        }
        let mapped = map_catalog(origin, &catalog.tools, &run.admitted);
        let stored = mapped.caps.len();
        if mapped.direct_wins + mapped.too_many_hops > 0 {
            tracing::debug!(
                peer = origin,
                direct_wins = mapped.direct_wins,
                too_many_hops = mapped.too_many_hops,
                "re-exported tools left out"
            );
        }
        // The catalog first, then the validators: if storing the catalog fails, the next
        // crawl must not get a 304 for a manifest we never stored.
        let diff = self.store.replace_peer_catalog(row.id, mapped.caps).await?;
        run.log.record(&diff);
        let success = CrawlSuccess {
            name: peer_name(catalog),
            manifest_url: Some(catalog.peer.manifest_url.to_string()),
            well_known: to_store(&validators.well_known),
            manifest: to_store(&validators.manifest),
            categories: catalog.peer.categories.clone(),
        };
        self.store.record_crawl_success(row.id, &success).await?;
        Ok(Ok(stored))
    }

    /// Records a peer found by discovery as `pending` (bounded by `max_pending_peers`), with
    /// its name or its error. Its catalog is never stored here, and no validators are kept,
    /// so a later preview or admission always sees the full documents.
    async fn record_discovered(
        &self,
        run: &mut RunState,
        origin: &str,
        well_known_url: &str,
        depth: u8,
        outcome: Result<&VerifiedCatalog, &CrawlError>,
    ) -> Result<(), StoreError> {
        // Failed §7.4 at connection time, or never resolved: not a URL to keep (§7.4: the
        // check applies before a URL is stored). A timeout, a backoff refusal or a setup
        // failure may have happened before the address check ran (a slow DNS answer ends
        // as a timeout), so those are not stored either.
        if let Err(
            CrawlError::UnsafeUrl { .. }
            | CrawlError::Dns { .. }
            | CrawlError::Timeout { .. }
            | CrawlError::Backoff { .. }
            | CrawlError::Setup { .. },
        ) = outcome
        {
            return Ok(());
        }
        let row = match run.rows.get(origin) {
            Some(row) => row.clone(),
            None => {
                if run.pending >= self.max_pending_peers {
                    run.summary.pending_dropped += 1;
                    return Ok(());
                }
                let new = NewPeer {
                    url: origin.to_owned(),
                    well_known_url: Some(well_known_url.to_owned()),
                    name: outcome.ok().and_then(peer_name),
                    state: PeerState::Pending,
                    trusted: false,
                    depth: i64::from(depth),
                    pinned_key: None,
                };
                let (row, inserted) = self.store.insert_peer_if_absent(&new).await?;
                if inserted {
                    run.pending += 1;
                    run.summary.pending_discovered += 1;
                }
                run.rows.insert(origin.to_owned(), row.clone());
                row
            }
        };
        if row.state != PeerState::Pending {
            return Ok(());
        }
        match outcome {
            Ok(catalog) => {
                let success = CrawlSuccess {
                    name: peer_name(catalog),
                    manifest_url: Some(catalog.peer.manifest_url.to_string()),
                    categories: catalog.peer.categories.clone(),
                    ..CrawlSuccess::default()
                };
                let unchanged = row.name == success.name
                    && row.manifest_url == success.manifest_url
                    && row.categories == success.categories
                    && row.last_error.is_none()
                    && row.last_success.is_some();
                if !unchanged {
                    self.store.record_crawl_success(row.id, &success).await?;
                }
            }
            Err(error) => {
                let message = error.to_string();
                if row.last_error.as_deref() != Some(message.as_str()) {
                    self.store.record_crawl_error(row.id, &message).await?;
                }
            }
        }
        Ok(())
    }
}

//! [`CrawlContext`]: everything one crawl run needs (store, crawler, seeds, policy), built
//! once from the settings and shared by the hub's scheduler, the admin endpoint, the CLI
//! and the benchmark.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use aimarket_crawler::{
    CrawlConfig, Crawler, FetchConfig, Fetcher, SeedSpec, UrlPolicy, VerifyOptions,
};
use chrono::{DateTime, Utc};

use super::CrawlRunError;
use super::summary::CrawlSummary;
use crate::settings::Settings;
use crate::store::{PeerVerdict, Store, StoreError, normalize_origin};

/// Per-peer facts kept in memory instead of the database, so that a crawl of unchanged
/// peers writes nothing (issue 3: "100 unchanged peers cost … no database writes").
///
/// Lost on restart, which costs one extra conditional well-known request per peer on the
/// first crawl after it, and makes the peers endpoint show the stored (older) `last_crawl`
/// until then.
#[derive(Debug, Default)]
pub(crate) struct PeerMemory {
    /// When each peer's well-known last answered (200 or 304).
    well_known_checked: HashMap<String, DateTime<Utc>>,
    /// When each peer last answered 304 (a successful crawl that wrote nothing).
    confirmed: HashMap<String, DateTime<Utc>>,
}

/// Shared inputs of crawl runs. Cheap to share behind an `Arc`; the fetcher inside keeps
/// per-host politeness state (concurrency slots, backoff) across runs.
#[derive(Debug)]
pub struct CrawlContext {
    pub(crate) store: Store,
    pub(crate) crawler: Crawler,
    pub(crate) seeds: Vec<SeedSpec>,
    pub(crate) max_pending_peers: usize,
    memory: Mutex<PeerMemory>,
}

impl CrawlContext {
    /// Builds the crawler from `settings` (operator seeds with their pinned keys, the
    /// private-address switch, timeouts, freshness, refresh window). `public_url` is this
    /// hub's address: sent as `X-AIMarket-Crawler`, and its origin is never crawled and never
    /// accepted as a re-export's origin. Must be called inside a tokio runtime.
    pub fn new(store: Store, settings: &Settings, public_url: &str) -> Result<Self, CrawlRunError> {
        let fetcher = Fetcher::new(FetchConfig {
            crawler_url: public_url.to_owned(),
            policy: UrlPolicy {
                allow_private: settings.allow_private_peers,
            },
            total_timeout: settings.crawl.request_timeout(),
            // The W3C trace context of the fetch's span, when traces are exported.
            header_hook: Some(aimarket_crawler::HeaderHook::new(
                crate::telemetry::otel::current_context_headers,
            )),
            ..FetchConfig::default()
        })?;
        let config = CrawlConfig {
            verify: VerifyOptions {
                max_age: settings.crawl.manifest_max_age(),
                max_future: settings.crawl.manifest_max_future(),
                self_origin: normalize_origin(public_url).ok(),
                ..VerifyOptions::default()
            },
            well_known_refresh: settings.crawl.well_known_refresh(),
            ..CrawlConfig::default()
        };
        let seeds = settings
            .seeds
            .iter()
            .map(|seed| SeedSpec {
                url: seed.url.to_string(),
                pinned_key: seed.pinned_key.clone(),
                operator: true,
            })
            .collect();
        Ok(Self {
            store,
            crawler: Crawler::new(Arc::new(fetcher), config),
            seeds,
            max_pending_peers: usize::try_from(settings.max_pending_peers).unwrap_or(usize::MAX),
            memory: Mutex::new(PeerMemory::default()),
        })
    }

    /// The store runs write to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The crawler (for single-peer crawls and measurements).
    pub fn crawler(&self) -> &Crawler {
        &self.crawler
    }

    /// The operator seeds, as the crawler takes them.
    pub fn seeds(&self) -> &[SeedSpec] {
        &self.seeds
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, PeerMemory> {
        // Plain maps with no invariant spanning a panic: a poisoned lock is still usable.
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When `origin`'s well-known last answered, if this process knows.
    pub(crate) fn well_known_checked_at(&self, origin: &str) -> Option<DateTime<Utc>> {
        self.memory().well_known_checked.get(origin).copied()
    }

    /// When `origin` last answered 304 in this process (its stored `last_crawl` and
    /// `last_success` are not rewritten for that). The peers endpoint shows the later of the
    /// two.
    pub fn last_confirmed(&self, origin: &str) -> Option<DateTime<Utc>> {
        self.memory().confirmed.get(origin).copied()
    }

    /// Records a run's answers and forgets peers the store no longer has.
    pub(crate) fn remember(
        &self,
        at: DateTime<Utc>,
        well_known_checked: &[String],
        confirmed: &[String],
        known: &HashSet<String>,
    ) {
        let mut memory = self.memory();
        for origin in well_known_checked {
            memory.well_known_checked.insert(origin.clone(), at);
        }
        for origin in confirmed {
            memory.confirmed.insert(origin.clone(), at);
        }
        memory.well_known_checked.retain(|o, _| known.contains(o));
        memory.confirmed.retain(|o, _| known.contains(o));
    }

    /// Stores a finished run's verdict on each peer whose new manifest it judged (a 304
    /// keeps the previous verdict: the manifest, hence the verdict, did not change). The
    /// run's own count and sample are stored with its row.
    pub(crate) async fn record_rejections(&self, summary: &CrawlSummary) -> Result<(), StoreError> {
        let verdicts: Vec<PeerVerdict> = summary
            .peers
            .iter()
            .filter(|p| p.status == "updated")
            .map(|p| PeerVerdict {
                url: p.url.clone(),
                count: i64::try_from(p.rejected_tools).unwrap_or(i64::MAX),
                tools: p.rejected.clone(),
            })
            .collect();
        self.store
            .record_peer_rejections(
                summary.run_id,
                summary.started_at.timestamp_millis(),
                &verdicts,
            )
            .await
    }
}

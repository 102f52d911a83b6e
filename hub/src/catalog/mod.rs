//! The searchable, publishable catalog: the search index kept in step with the store, the
//! search pipeline, and the signed federated manifest.
//!
//! - [`Catalog`] owns the tantivy index at `<data dir>/index` and the manifest cache.
//! - sync: at startup the index is reused when its committed catalog version equals the
//!   store's (a cold start reads nothing from the store); otherwise, and whenever an update
//!   cannot be applied incrementally, it is rebuilt from the store. Each published
//!   [`CatalogUpdate`](crate::crawl::CatalogUpdate) whose `since` is the indexed version is
//!   applied incrementally (added, changed and removed keys only). tantivy commits are
//!   atomic and carry the catalog version, so a hub killed at any point reopens a consistent
//!   index, at worst an older one, which the version check then rebuilds.
//! - [`params`]: the typed search parameters; search: running a search (index, then the
//!   plugin `rank` chain by blocks, see [`ranking`]).
//! - [`manifest`]: the signed `GET /ai-market/v2/manifest` document, updated off the request
//!   path whenever the catalog changes (only the changed parts, see `parts`) and rebuilt in
//!   full every [`manifest::REFRESH_INTERVAL`] so its `generated_at` stays fresh for crawlers.
//! - settle: read-your-writes, [`Catalog::settle`] waits (bounded) until search and the
//!   manifest both show a catalog version, so a write's answer describes what clients see.
//! - [`trust`]: THE function that says how much a capability is trusted.
//! - [`rows`]: store rows → index documents and manifest tools (one mapping).
//! - [`CatalogFeed`]: the catalog generation and the change notifications every cache and
//!   replica follows; [`well_known`]: the cache of the signed well-known document.

mod body;
mod feed;
pub mod manifest;
pub mod params;
mod parts;
pub mod ranking;
pub mod rows;
mod search;
mod settle;
mod sync;
pub mod trust;
pub mod well_known;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use aimarket_indexer::{Index, IndexError};
use aimarket_plugins::{PluginError, Refusal};
use aimarket_protocol::ProtocolError;
use aimarket_protocol::signing::KeyPair;
use tokio::sync::watch;

pub use body::ManifestBody;
pub use feed::CatalogFeed;
pub use manifest::{ManifestCache, RenderedManifest};
pub use params::{HubFilter, ParamError, SearchParams};
pub use ranking::{QualityRanker, RANK_BLOCK};
pub use search::SearchOutcome;
pub use settle::{SETTLE_TIMEOUT, Settled};

use crate::error_code::{ApiError, Code, ErrorCode};
use crate::store::{Store, StoreError};

/// Directory of the search index inside the data dir.
pub const INDEX_DIR: &str = "index";

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The hub is shutting down; the index is closed.
    #[error("the search index is closed: the hub is shutting down")]
    Closed,
    /// The search index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing or canonicalising the manifest failed.
    #[error("cannot sign the manifest: {0}")]
    Protocol(#[from] ProtocolError),
    /// A fail-closed plugin failed in the `rank` chain.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The ranking configuration (the `quality` plugin's settings) is invalid.
    #[error(transparent)]
    Plugins(#[from] PluginError),
    /// A file next to the index could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A rebuild stopped before it read the whole store (store error or shutdown); the
    /// index was marked stale so it is rebuilt again.
    #[error("the index rebuild was interrupted")]
    Interrupted,
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

impl ErrorCode for CatalogError {
    /// Search and manifest failures: a fail-closed rank plugin is 503 `plugin_unavailable`,
    /// a closed index (shutdown) 503; store errors as the store reads them; the rest are
    /// 500s.
    fn wire_code(&self) -> Code {
        match self {
            Self::Refused(_) => Code::PluginUnavailable,
            Self::Closed => Code::Unavailable,
            Self::Store(e) => e.wire_code(),
            _ => Code::InternalError,
        }
    }

    fn passes_on(&self) -> Option<&dyn ErrorCode> {
        match self {
            Self::Store(e) => Some(e),
            _ => None,
        }
    }

    fn decorate(&self, api: ApiError) -> ApiError {
        match self {
            Self::Refused(refusal) => api
                .with_field("plugin", refusal.plugin.as_str())
                .with_field("category", refusal.category.as_str())
                .with_retry_after(1),
            _ => api,
        }
    }
}

/// A monotonic counter for `/metrics`.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the catalog has done since startup (exported by `GET /metrics`).
#[derive(Debug, Default)]
pub struct CatalogStats {
    /// Searches served.
    pub searches: Counter,
    /// Full index rebuilds from the store.
    pub rebuilds: Counter,
    /// Incremental index updates.
    pub applies: Counter,
    /// Failed index syncs (retried).
    pub sync_errors: Counter,
    /// Manifest documents built.
    pub manifest_builds: Counter,
}

/// The index, the manifest cache and what both are built with.
#[derive(Debug)]
pub struct Catalog {
    store: Store,
    index: RwLock<Option<Arc<Index>>>,
    /// `<data dir>`, for the settings fingerprint next to the index; `None` in memory.
    data_dir: Option<PathBuf>,
    routing_fee_bps: u32,
    /// The trust floor every search applies (`reputation.min_trust_score`).
    min_trust_score: f64,
    /// This hub's public URL; shared, as every search hands it to the plugin context.
    public_url: Arc<str>,
    signing_key: KeyPair,
    /// Set when the index was built with other settings (or by another mapping version)
    /// and must be rebuilt whatever its version says.
    needs_rebuild: AtomicBool,
    manifest: ManifestCache,
    /// The manifest's parts as last published, for incremental updates (`None` before the
    /// first build and after a failed one).
    manifest_parts: tokio::sync::Mutex<Option<parts::Parts>>,
    /// Bumped after each index sync and manifest build, for [`Catalog::settle`].
    progress: settle::Progress,
    /// Counters.
    pub stats: CatalogStats,
    stop: watch::Sender<bool>,
    /// The index after [`Catalog::close`], to wait for its release.
    released: Mutex<Option<Weak<Index>>>,
}

/// What, besides the store and the key, the catalog is built with.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// This hub's routing fee (routed prices are indexed).
    pub routing_fee_bps: u32,
    /// This hub's public URL, without trailing slash (invoke URLs, `hub=local`).
    pub public_url: String,
    /// The trust floor (`reputation.min_trust_score`): search never returns a capability
    /// below it, whatever `min_trust` asks, so the well-known's `min_trust_score` is the
    /// value actually applied.
    pub min_trust_score: f64,
}

impl Catalog {
    /// Opens (or creates) the index in `<data_dir>/index` and sets its ranking policy.
    /// Blocking file I/O: call it from a blocking thread.
    pub fn open(
        data_dir: &Path,
        store: Store,
        signing_key: KeyPair,
        config: CatalogConfig,
        ranker: QualityRanker,
    ) -> Result<Self, CatalogError> {
        let index = Index::open_or_create_ranked(&data_dir.join(INDEX_DIR), Arc::new(ranker))?;
        let fingerprint_matches = sync::fingerprint_matches(data_dir, config.routing_fee_bps);
        Ok(Self::assemble(
            store,
            index,
            Some(data_dir.to_path_buf()),
            signing_key,
            config,
            !fingerprint_matches,
        ))
    }

    /// A catalog over an empty in-memory index (tests; nothing is written to disk).
    pub fn in_memory(
        store: Store,
        signing_key: KeyPair,
        config: CatalogConfig,
        ranker: QualityRanker,
    ) -> Result<Self, CatalogError> {
        let index = Index::in_ram()?;
        index.set_ranker(Arc::new(ranker))?;
        Ok(Self::assemble(
            store,
            index,
            None,
            signing_key,
            config,
            false,
        ))
    }

    fn assemble(
        store: Store,
        index: Index,
        data_dir: Option<PathBuf>,
        signing_key: KeyPair,
        config: CatalogConfig,
        needs_rebuild: bool,
    ) -> Self {
        Self {
            store,
            index: RwLock::new(Some(Arc::new(index))),
            data_dir,
            routing_fee_bps: config.routing_fee_bps,
            min_trust_score: config.min_trust_score,
            public_url: config.public_url.into(),
            signing_key,
            needs_rebuild: AtomicBool::new(needs_rebuild),
            manifest: ManifestCache::default(),
            manifest_parts: tokio::sync::Mutex::new(None),
            progress: settle::Progress::default(),
            stats: CatalogStats::default(),
            stop: watch::Sender::new(false),
            released: Mutex::new(None),
        }
    }

    /// The open index, or [`CatalogError::Closed`] after [`Catalog::close`].
    pub fn index(&self) -> Result<Arc<Index>, CatalogError> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(CatalogError::Closed)
    }

    /// The manifest cache.
    pub fn manifest(&self) -> &ManifestCache {
        &self.manifest
    }

    /// This hub's public URL, without trailing slash.
    pub fn hub_url(&self) -> Arc<str> {
        Arc::clone(&self.public_url)
    }

    /// The routing fee routed prices are computed with.
    pub fn routing_fee_bps(&self) -> u32 {
        self.routing_fee_bps
    }

    /// Stops the sync task and lets go of the index: its files and writer lock are freed
    /// once an update still running (if any) ends; [`Catalog::wait_released`] waits for
    /// that. Searches then answer 503. Idempotent.
    pub fn close(&self) {
        self.stop.send_replace(true);
        if let Some(index) = self.index.write().unwrap_or_else(|e| e.into_inner()).take() {
            *self.released.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&index));
        }
    }

    /// After [`Catalog::close`]: waits up to `timeout` until nothing holds the index any
    /// more (so a hub restarted on the same data dir can take its writer lock). Returns
    /// whether it was released.
    pub async fn wait_released(&self, timeout: Duration) -> bool {
        let weak = self
            .released
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(weak) = weak else {
            return self.is_closed();
        };
        let deadline = tokio::time::Instant::now() + timeout;
        while weak.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// True once [`Catalog::close`] was called.
    pub fn is_closed(&self) -> bool {
        *self.stop.borrow()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An in-memory catalog with the default ranking, for tests that need an `AppState`.
    pub(crate) fn in_memory(store: &Store, key: &KeyPair, public_url: &str) -> Arc<Catalog> {
        let ranker =
            QualityRanker::from_chain(&aimarket_plugins::RegistryConfig::default_chain()).unwrap();
        let config = CatalogConfig {
            routing_fee_bps: 100,
            public_url: public_url.to_owned(),
            min_trust_score: 0.0,
        };
        Arc::new(Catalog::in_memory(store.clone(), key.clone(), config, ranker).unwrap())
    }
}

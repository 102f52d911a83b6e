//! The state every request handler shares.
//!
//! One [`AppState`] is built by [`crate::startup::Application::build`] and handed to actix as
//! `web::Data<AppState>` (an `Arc`), so handlers take `state: web::Data<AppState>`.
//!
//! Adding a component (store, index, crawler, …): add a field here, construct it in
//! `Application::build` before the server starts, and pass it to [`AppState::new`] via
//! [`Components`]. Keep fields cheap to share (pools, `Arc`s); long-running work belongs in
//! tasks started by `startup`, not in handlers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aimarket_protocol::signing::KeyPair;
use serde_json::Value;

use crate::http::error::ApiError;
use crate::http::well_known::WellKnownCache;
use crate::settings::{PublicUrl, Settings};

/// What the catalog looks like from outside: the numbers and peers the published documents
/// (well-known, manifest) carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogSummary {
    /// Distinct products this hub serves itself.
    pub products_count: u64,
    /// Capabilities this hub serves itself.
    pub capabilities_count: u64,
    /// All capabilities in the catalog, including those of peers.
    pub federated_capabilities_count: u64,
    /// Active peers as published in the well-known `peers` array (`url`, `name`,
    /// `capabilities_count`, `last_crawl`, `trust_score`). Never pending peers (spec §2.4).
    pub peers: Vec<Value>,
}

/// The pieces `startup` builds before the state exists.
#[derive(Debug)]
pub struct Components {
    /// Validated settings.
    pub settings: Settings,
    /// The public base URL (configured, or derived from the bound address).
    pub public_url: PublicUrl,
    /// The hub's Ed25519 signing key.
    pub signing_key: KeyPair,
}

/// Shared, read-mostly state of a running hub.
#[derive(Debug)]
pub struct AppState {
    /// Validated settings (secrets inside are redacted in `Debug`).
    pub settings: Settings,
    /// The public base URL, without trailing slash.
    pub public_url: PublicUrl,
    /// The hub's signing key (well-known, manifest, receipts).
    pub signing_key: KeyPair,
    /// When this process started serving (health's `uptime_seconds`).
    pub started_at: Instant,
    /// The rendered, signed well-known document.
    pub well_known: WellKnownCache,
    /// Bumped whenever the catalog or the peer set changes; caches of published documents
    /// compare it with the generation they were rendered at.
    catalog_generation: AtomicU64,
}

impl AppState {
    /// Assembles the state from its components.
    pub fn new(components: Components) -> Self {
        let Components {
            settings,
            public_url,
            signing_key,
        } = components;
        Self {
            settings,
            public_url,
            signing_key,
            started_at: Instant::now(),
            well_known: WellKnownCache::default(),
            catalog_generation: AtomicU64::new(0),
        }
    }

    /// The current catalog generation.
    pub fn catalog_generation(&self) -> u64 {
        self.catalog_generation.load(Ordering::Acquire)
    }

    /// Records that the catalog or peer set changed, so published documents are re-rendered
    /// on their next request. Call after a crawl (or an operator action) commits changes.
    pub fn catalog_changed(&self) {
        self.catalog_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The catalog as the published documents describe it. The hub has no catalog store yet,
    /// so it is empty; the catalog work replaces this body with a store query.
    pub async fn catalog_summary(&self) -> Result<CatalogSummary, ApiError> {
        Ok(CatalogSummary::default())
    }

    /// Seconds since the hub started.
    pub fn uptime_seconds(&self) -> u64 {
        self.started_at.elapsed().as_secs()
    }
}

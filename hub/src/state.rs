//! The state every request handler shares.
//!
//! One [`AppState`] is built by [`crate::startup::Application::build`] and handed to actix as
//! `web::Data<AppState>` (an `Arc`), so handlers take `state: web::Data<AppState>`.
//!
//! Adding a component (store, index, crawler, …): add a field here, construct it in
//! `Application::build` before the server starts, and pass it to [`AppState::new`] via
//! [`Components`]. Keep fields cheap to share (pools, `Arc`s); long-running work belongs in
//! tasks started by `startup`, not in handlers.

use std::sync::Arc;
use std::time::Instant;

use aimarket_plugins::Registry;
use aimarket_protocol::signing::KeyPair;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::catalog::well_known::WellKnownCache;
use crate::catalog::{Catalog, CatalogFeed};
use crate::crawl::{CatalogUpdate, CrawlService};
use crate::invoke::{InvokeDeps, Invoker};
use crate::payments::Ledger;
use crate::replica::SharedState;
use crate::settings::{PublicUrl, Settings};
use crate::store::{PeerState, Store};

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
    /// The catalog store (migrated).
    pub store: Store,
    /// The payment ledger (on the same store), holds of a previous run already recovered.
    pub ledger: Ledger,
    /// The crawl runner (single flight, schedule).
    pub crawl: CrawlService,
    /// The store's catalog version at startup.
    pub catalog_version: i64,
    /// The search index and the manifest cache (see [`crate::catalog`]).
    pub catalog: Arc<Catalog>,
    /// The plugin chain, already started.
    pub plugins: Arc<Registry>,
    /// What replicas share through Redis (lease, limits, catalog channel); see
    /// [`crate::replica`].
    pub shared: SharedState,
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
    /// The catalog store: peers, capabilities, crawl runs (SQLite or PostgreSQL).
    pub store: Store,
    /// Runs crawls: single flight, the startup and periodic schedule, the admin trigger.
    pub crawl: CrawlService,
    /// The routed invoke: catalog snapshot, schema cache, provider clients.
    pub invoker: Invoker,
    /// Client identities and the client and provider limits (`crate::limits`).
    pub limits: crate::limits::Limits,
    /// Payment channels, holds, receipts, invocation records, idempotency records.
    pub ledger: Ledger,
    /// The search index and the signed manifest, kept in step with the store.
    pub catalog: Arc<Catalog>,
    /// The plugin chain (rank, route, invoke guards, extensions, routes), started once.
    pub plugins: Arc<Registry>,
    /// Admission queues: the `X-AIMarket-Crawler` recorder and pending-peer previews.
    pub federation: crate::federation::Federation,
    /// The trust-score recompute schedule.
    pub reputation: crate::reputation::Reputation,
    /// What replicas share through Redis (crawl lease, rate limits, catalog changes).
    pub shared: SharedState,
    /// The Prometheus series this hub records (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The catalog generation (caches of published documents compare it with the generation
    /// they were rendered at) and the latest change of the visible catalog.
    pub feed: CatalogFeed,
}

impl AppState {
    /// Assembles the state from its components.
    pub fn new(components: Components) -> Self {
        let Components {
            settings,
            public_url,
            signing_key,
            store,
            ledger,
            crawl,
            catalog_version,
            catalog,
            plugins,
            shared,
        } = components;
        let invoker = Invoker::new(&settings, public_url.as_str());
        let limits = crate::limits::Limits::new(&settings);
        let feed = CatalogFeed::new(catalog_version, shared.clone());
        Self {
            invoker,
            limits,
            ledger,
            settings,
            public_url,
            signing_key,
            started_at: Instant::now(),
            well_known: WellKnownCache::default(),
            store,
            crawl,
            catalog,
            plugins,
            federation: crate::federation::Federation::default(),
            reputation: crate::reputation::Reputation::default(),
            shared,
            metrics: crate::metrics::Metrics::new(),
            feed,
        }
    }

    /// What a routed invoke uses, borrowed from this state (HTTP handlers, the MCP tools and
    /// pipelines run invokes through it).
    pub fn invoke_deps(&self) -> InvokeDeps<'_> {
        InvokeDeps {
            invoker: &self.invoker,
            store: &self.store,
            ledger: &self.ledger,
            plugins: &self.plugins,
            limits: &self.limits,
            shared: &self.shared,
            metrics: &self.metrics,
            signing_key: &self.signing_key,
            public_url: &self.public_url,
            feed: &self.feed,
        }
    }

    /// What the MCP server uses, borrowed from this state (the MCP transport).
    pub fn mcp_deps(&self) -> crate::mcp::McpDeps<'_> {
        crate::mcp::McpDeps {
            invoke: self.invoke_deps(),
            catalog: &self.catalog,
            hub_name: &self.settings.name,
            demo_payments: self.settings.demo_payments,
        }
    }

    /// What the reputation services use, borrowed from this state.
    pub fn reputation_deps(&self) -> crate::reputation::ReputationDeps<'_> {
        crate::reputation::ReputationDeps {
            store: &self.store,
            ledger: &self.ledger,
            settings: &self.settings.reputation,
            schedule: &self.reputation,
            feed: &self.feed,
            public_url: &self.public_url,
            signing_key: &self.signing_key,
        }
    }

    /// What the federation's admission helpers use, borrowed from this state.
    pub fn federation_deps(&self) -> crate::federation::FederationDeps<'_> {
        crate::federation::FederationDeps {
            store: &self.store,
            feed: &self.feed,
            crawl: &self.crawl,
            open_admission: self.settings.open_admission,
            max_pending_peers: self.settings.max_pending_peers,
            queues: &self.federation,
            public_url: &self.public_url,
        }
    }

    /// The current catalog generation.
    pub fn catalog_generation(&self) -> u64 {
        self.feed.generation()
    }

    /// Records that the catalog or peer set changed, so published documents are re-rendered
    /// on their next request. Call after a crawl (or an operator action) commits changes.
    pub fn catalog_changed(&self) {
        self.feed.changed();
    }

    /// Subscribes to changes of the visible catalog (the search index glue, manifest caches).
    ///
    /// The value is the latest [`CatalogUpdate`]: the store's catalog version and, when
    /// `since` is set, the keys added, changed and removed since that version. A subscriber
    /// at version `since` applies the lists; any other subscriber (it missed an update, or
    /// `since` is `None`, as at startup) rebuilds from the store. A watch channel keeps only
    /// the latest value, so a slow subscriber never blocks a crawl; it just rebuilds.
    pub fn subscribe_catalog(&self) -> watch::Receiver<CatalogUpdate> {
        self.feed.subscribe()
    }

    /// Publishes a change of the visible catalog: bumps the catalog generation (so published
    /// documents are re-rendered) and notifies [`AppState::subscribe_catalog`] subscribers.
    /// Crawl runs call this when they changed something; so should operator actions that
    /// change the catalog or the set of active peers.
    pub fn publish_catalog_update(&self, update: CatalogUpdate) {
        self.feed.publish(update);
    }

    /// Hands a catalog change to this replica's subscribers without telling other replicas:
    /// for changes another replica made (`crate::replica`). Crawls and operator actions call
    /// [`AppState::publish_catalog_update`] instead.
    pub fn apply_catalog_update(&self, update: CatalogUpdate) {
        self.feed.apply(update);
    }

    /// Read-your-writes: waits (at most [`crate::catalog::SETTLE_TIMEOUT`]) until search and
    /// the manifest of this replica show the store's current catalog version, so an answer
    /// sent after a write describes what clients will see.
    pub async fn settle_catalog(
        &self,
    ) -> Result<crate::catalog::Settled, crate::store::StoreError> {
        let target = self.store.catalog_version().await?;
        Ok(self
            .catalog
            .settle(target, crate::catalog::SETTLE_TIMEOUT)
            .await)
    }

    /// The catalog version of the latest change handed to subscribers.
    pub fn published_catalog_version(&self) -> i64 {
        self.feed.published_version()
    }

    /// The catalog as the published documents describe it: this hub serves no capabilities
    /// of its own; every visible capability is federated, and `peers` lists the active
    /// peers (never pending ones, spec §2.4 rule 5).
    pub async fn catalog_summary(&self) -> Result<CatalogSummary, crate::store::StoreError> {
        let federated = self.store.count_capabilities().await?;
        let policy = crate::reputation::TrustPolicy::of(&self.settings.reputation);
        // Only peers at or above the advertised floor: listing one the floor excludes would
        // recommend a peer this hub's own search hides.
        let peers = self
            .store
            .list_peers(Some(PeerState::Active))
            .await?
            .into_iter()
            .filter(|peer| policy.passes(peer.trust_score))
            .map(|peer| {
                let mut entry = json!({
                    "url": peer.url,
                    "name": peer.name.unwrap_or_default(),
                    "capabilities_count": peer.capability_count,
                    "trust_score": peer.trust_score,
                });
                // The schema wants a date-time string or no key at all.
                if let Some(at) = peer
                    .last_crawl
                    .and_then(chrono::DateTime::from_timestamp_millis)
                {
                    entry["last_crawl"] =
                        Value::from(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                }
                entry
            })
            .collect();
        Ok(CatalogSummary {
            products_count: 0,
            capabilities_count: 0,
            federated_capabilities_count: u64::try_from(federated).unwrap_or(0),
            peers,
        })
    }

    /// Seconds since the hub started.
    pub fn uptime_seconds(&self) -> u64 {
        self.started_at.elapsed().as_secs()
    }
}

//! Finding who can serve an invoke: an in-memory snapshot of catalog lookups and
//! [`choose_providers`], the single place where offers are ordered.
//!
//! The snapshot caches, per `(product_id, capability_id)`, every active offer with what the
//! hot path needs precomputed (routed price, compiled input schema, verified `invoke_url`,
//! the key that signs provider responses). It is dropped whole when the catalog changes:
//! immediately when this process bumps [`crate::state::AppState::catalog_generation`], and
//! within [`VERSION_POLL`] when another process (a CLI crawl) bumps the store's catalog
//! version. So a hot capability costs no database read at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aimarket_crawler::SafeUrl;
use aimarket_protocol::signing::PublicKey;
use aimarket_protocol::types::routed_price_usd;
use serde_json::Value;

use super::error::InvokeError;
use super::validate::{Schema, SchemaCache};
use crate::store::{CapabilityRow, PeerRow, PeerState, Store, StoreError};

/// How often the store's catalog version is re-read to notice changes made by other
/// processes.
pub const VERSION_POLL: Duration = Duration::from_secs(1);
/// Product ids kept in the snapshot before it starts over.
const MAX_CACHED_PRODUCTS: usize = 50_000;

/// One peer able to serve a capability, with everything the invoke needs.
#[derive(Debug)]
pub struct Offer {
    /// Owning origin (the answer's `source_hub`).
    pub origin: String,
    /// The peer hub it is reached through, when not its origin.
    pub via: Option<String>,
    /// The peer that is called: `via` when set, else the origin.
    pub peer_url: String,
    /// Whether the called peer is operator-configured (exempt from the address-range rule).
    pub peer_operator: bool,
    /// The called peer's well-known URL (to learn whether it is a v2 hub).
    pub peer_well_known_url: String,
    /// Product id.
    pub product_id: String,
    /// Capability id.
    pub capability_id: String,
    /// Provider list price, USD.
    pub price_usd: f64,
    /// What this hub charges: list price plus routing fee, whole micro-dollars.
    pub routed_price_usd: f64,
    /// Declared median latency, ms (0 = unknown).
    pub p50_latency_ms: u64,
    /// Trust score of the listing peer.
    pub trust_score: f64,
    /// Declared success rate clamped to [0, 1] (unknown counts as 1).
    pub success_rate: f64,
    /// The tool's own endpoint, kept only when it is on the called peer's origin.
    pub invoke_url: Option<SafeUrl>,
    /// The key that signs `X-Provider-Signature`: the tool's `provider_pubkey`, else (for a
    /// direct peer) the peer's pinned key.
    pub provider_key: Option<PublicKey>,
    /// The `input_schema` as this hub can check it (compiled, absent, or refused).
    pub schema: Schema,
}

type Offers = Arc<[Arc<Offer>]>;

#[derive(Default)]
struct Snapshot {
    generation: u64,
    version: Option<i64>,
    by_product: HashMap<String, HashMap<String, Offers>>,
}

/// The catalog snapshot (see the module docs).
pub struct CatalogCache {
    snapshot: RwLock<Snapshot>,
    started: Instant,
    /// Milliseconds since `started` of the last version poll.
    last_poll_ms: AtomicU64,
}

impl std::fmt::Debug for CatalogCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CatalogCache")
    }
}

impl Default for CatalogCache {
    fn default() -> Self {
        Self {
            snapshot: RwLock::default(),
            started: Instant::now(),
            last_poll_ms: AtomicU64::new(0),
        }
    }
}

/// What a lookup needs besides the key.
pub struct LookupContext<'a> {
    /// The catalog.
    pub store: &'a Store,
    /// The schema cache.
    pub schemas: &'a SchemaCache,
    /// This hub's routing fee.
    pub routing_fee_bps: u32,
    /// This process's catalog generation (bumped after every local catalog write).
    pub generation: u64,
}

impl CatalogCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Snapshot> {
        self.snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops everything (the next lookups read the store).
    pub fn clear(&self) {
        let mut snap = self.write();
        snap.by_product.clear();
    }

    /// Every active offer of `product_id`/`capability_id` (possibly none).
    pub async fn offers(
        &self,
        ctx: &LookupContext<'_>,
        product_id: &str,
        capability_id: &str,
    ) -> Result<Offers, StoreError> {
        self.poll_version(ctx).await?;
        {
            let snap = self.read();
            if snap.generation == ctx.generation
                && let Some(found) = snap
                    .by_product
                    .get(product_id)
                    .and_then(|caps| caps.get(capability_id))
            {
                return Ok(found.clone());
            }
        }
        let rows = ctx
            .store
            .get_capability(None, product_id, capability_id)
            .await?;
        let mut peers: HashMap<i64, Option<PeerRow>> = HashMap::new();
        let mut offers = Vec::with_capacity(rows.len());
        for row in rows {
            if let std::collections::hash_map::Entry::Vacant(slot) = peers.entry(row.peer_id) {
                slot.insert(ctx.store.get_peer(row.peer_id).await?);
            }
            let Some(Some(peer)) = peers.get(&row.peer_id) else {
                continue;
            };
            offers.push(Arc::new(build_offer(
                row,
                peer,
                ctx.schemas,
                ctx.routing_fee_bps,
            )));
        }
        let offers: Offers = offers.into();
        let mut snap = self.write();
        if snap.generation != ctx.generation {
            snap.by_product.clear();
            snap.generation = ctx.generation;
        }
        if snap.by_product.len() >= MAX_CACHED_PRODUCTS {
            snap.by_product.clear();
        }
        snap.by_product
            .entry(product_id.to_owned())
            .or_default()
            .insert(capability_id.to_owned(), offers.clone());
        Ok(offers)
    }

    /// Re-reads the store's catalog version at most once per [`VERSION_POLL`]; a change
    /// drops the snapshot.
    async fn poll_version(&self, ctx: &LookupContext<'_>) -> Result<(), StoreError> {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_poll_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= VERSION_POLL.as_millis() as u64;
        // One request does the poll; the others use the snapshot meanwhile.
        if !due
            || self
                .last_poll_ms
                .compare_exchange(last, now_ms.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        let version = ctx.store.catalog_version().await?;
        let mut snap = self.write();
        if snap.version != Some(version) {
            snap.by_product.clear();
            snap.version = Some(version);
        }
        Ok(())
    }
}

/// The one conversion from a stored record to an [`Offer`]: the record's fields move in, and
/// what the hot path needs is computed once (routed price, compiled schema, the response key,
/// the `invoke_url` it may use).
fn build_offer(row: CapabilityRow, peer: &PeerRow, schemas: &SchemaCache, bps: u32) -> Offer {
    let trust_score = row.peer_trust_score;
    let row = row.capability;
    let tool: Value = serde_json::from_str(&row.tool_json).unwrap_or(Value::Null);
    let tool_key = tool
        .get("provider_pubkey")
        .and_then(Value::as_str)
        .and_then(|k| PublicKey::from_b64(k).ok());
    let direct = row.via.is_none();
    let provider_key = match tool_key {
        Some(key) => Some(key),
        None if direct => peer
            .pinned_key
            .as_deref()
            .and_then(|k| PublicKey::from_b64(k).ok()),
        None => None,
    };
    // The tool's own endpoint is only ever used on the called peer's own origin.
    let invoke_url = row
        .invoke_url
        .as_deref()
        .filter(|_| direct)
        .and_then(|u| SafeUrl::parse(u).ok())
        .filter(|u| u.origin() == peer.url);
    Offer {
        schema: schemas.get(&row.input_schema),
        routed_price_usd: routed_price_usd(row.price_usd, bps),
        price_usd: row.price_usd,
        p50_latency_ms: row.p50_latency_ms.unwrap_or(0),
        trust_score,
        success_rate: row.success_rate.map_or(1.0, |r| r.clamp(0.0, 1.0)),
        invoke_url,
        provider_key,
        peer_operator: peer.trusted,
        peer_well_known_url: peer.well_known_url.clone(),
        peer_url: peer.url.clone(),
        origin: row.origin,
        via: row.via,
        product_id: row.product_id,
        capability_id: row.capability_id,
    }
}

impl Offer {
    /// The origin exempt from the address-range rule for this offer: the called peer's own
    /// origin when the operator configured it, else none. Only that exact origin is exempt.
    pub fn operator_origin(&self) -> Option<&str> {
        self.peer_operator.then_some(self.peer_url.as_str())
    }

    /// Checks `input` against the offer's schema (an offer whose schema does not compile
    /// refuses every input: [`super::validate::check_offer`]).
    pub fn check_input(&self, input: &Value) -> Result<(), InvokeError> {
        super::validate::check_offer(self, input)
    }
}

/// Orders the offers that may serve one invoke, best first, and drops those that may not.
///
/// This is the routing decision point: with `source_hub` only that origin's offer remains;
/// then a peer serving its own capability beats a relay through another hub (one hop fewer,
/// and its receipt is verifiable at its origin), higher trust beats lower, a lower routed
/// price beats a higher one, and the origin URL breaks ties so the choice is deterministic.
/// The plugin `route` hook (issue 7) takes this order as its input.
pub fn choose_providers(offers: &[Arc<Offer>], source_hub: Option<&str>) -> Vec<Arc<Offer>> {
    let mut chosen: Vec<Arc<Offer>> = offers
        .iter()
        .filter(|o| source_hub.is_none_or(|hub| o.origin == hub))
        .cloned()
        .collect();
    chosen.sort_by(|a, b| {
        a.via
            .is_some()
            .cmp(&b.via.is_some())
            .then(b.trust_score.total_cmp(&a.trust_score))
            .then(a.routed_price_usd.total_cmp(&b.routed_price_usd))
            .then(b.success_rate.total_cmp(&a.success_rate))
            .then_with(|| a.origin.cmp(&b.origin))
    });
    chosen
}

/// The answer when no offer matched: 404 `capability_not_found`, or 403 `peer_pending` when
/// `source_hub` names a peer that is known but not admitted.
pub async fn not_found(
    store: &Store,
    product_id: &str,
    capability_id: &str,
    source_hub: Option<&str>,
) -> InvokeError {
    if let Some(hub) = source_hub {
        match store.get_peer_by_url(hub).await {
            Ok(Some(peer)) if peer.state == PeerState::Pending => {
                return InvokeError::PeerPending { peer: peer.url };
            }
            Ok(_) => {}
            Err(e) => return InvokeError::Store(e),
        }
    }
    InvokeError::CapabilityNotFound {
        product_id: product_id.to_owned(),
        capability_id: capability_id.to_owned(),
        source_hub: source_hub.map(str::to_owned),
    }
}

/// An offer with neutral defaults, for unit tests of the modules that consume offers.
#[cfg(test)]
pub(crate) fn test_offer(origin: &str, via: Option<&str>) -> Offer {
    Offer {
        origin: origin.into(),
        via: via.map(Into::into),
        peer_url: via.unwrap_or(origin).into(),
        peer_operator: false,
        peer_well_known_url: String::new(),
        product_id: "p".into(),
        capability_id: "c@v1".into(),
        price_usd: 0.0,
        routed_price_usd: 0.0,
        p50_latency_ms: 0,
        trust_score: 0.5,
        success_rate: 1.0,
        invoke_url: None,
        provider_key: None,
        schema: Schema::Unconstrained,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(origin: &str, via: Option<&str>, trust: f64, routed: f64) -> Arc<Offer> {
        Arc::new(Offer {
            trust_score: trust,
            routed_price_usd: routed,
            ..test_offer(origin, via)
        })
    }

    #[test]
    fn direct_then_trust_then_price_then_origin() {
        let offers = vec![
            offer("https://d", Some("https://hub"), 0.9, 0.1),
            offer("https://c", None, 0.5, 0.2),
            offer("https://b", None, 0.5, 0.1),
            offer("https://a", None, 0.8, 0.9),
            offer("https://e", None, 0.5, 0.1),
        ];
        let chosen = choose_providers(&offers, None);
        let order: Vec<&str> = chosen.iter().map(|o| &o.origin[8..]).collect();
        assert_eq!(order, ["a", "b", "e", "c", "d"]);
    }

    #[test]
    fn source_hub_filters() {
        let offers = vec![
            offer("https://a", None, 0.8, 0.9),
            offer("https://b", None, 0.1, 0.1),
        ];
        let chosen = choose_providers(&offers, Some("https://b"));
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].origin, "https://b");
        assert!(choose_providers(&offers, Some("https://z")).is_empty());
    }
}

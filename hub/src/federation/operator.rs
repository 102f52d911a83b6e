//! Operator controls (admin token): approve a pending peer, remove a peer, re-pin a peer's
//! key after a legitimate rotation, add a seed at runtime.
//!
//! Every action publishes a catalog change (so the well-known `peers`, search and the
//! manifest follow) and, where the peer should now be crawled, starts a crawl in the
//! background. An approved or runtime-added peer is stored `active` and operator-trusted; the
//! crawl never demotes an active peer, so it stays admitted across crawls.

use std::sync::Arc;

use aimarket_protocol::signing::PublicKey;
use serde::Serialize;

use super::{FederationError, crawl_soon, peer_url, publish_diff, publish_peer_change};
use crate::catalog::CatalogFeed;
use crate::state::AppState;
use crate::store::{PeerRow, PeerState, Store, normalize_origin};

/// The answer of an operator action on one peer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerAction {
    /// The peer's origin.
    pub url: String,
    /// Its admission state afterwards (`removed` after a removal).
    pub status: &'static str,
    /// Whether it is operator-trusted afterwards.
    pub trusted: bool,
    /// Its pinned key afterwards.
    pub public_key: Option<String>,
    /// Whether the action changed its state from pending to active.
    pub promoted_from_pending: bool,
    /// Whether the row was created by this action (runtime seeds).
    pub created: bool,
    /// Capabilities that left the catalog (removal).
    pub capabilities_removed: usize,
    /// Whether a crawl was started.
    pub crawl_scheduled: bool,
    /// Anything the operator should know about the result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl PeerAction {
    fn of(row: &PeerRow) -> Self {
        Self {
            url: row.url.clone(),
            status: row.state.as_str(),
            trusted: row.trusted,
            public_key: row.pinned_key.clone(),
            promoted_from_pending: false,
            created: false,
            capabilities_removed: 0,
            crawl_scheduled: false,
            note: None,
        }
    }
}

async fn find(store: &Store, url: &str) -> Result<PeerRow, FederationError> {
    let origin = normalize_origin(url)?;
    store
        .get_peer_by_url(&origin)
        .await?
        .ok_or(FederationError::PeerNotFound(origin))
}

async fn reload(store: &Store, id: i64) -> Result<PeerRow, FederationError> {
    store
        .get_peer(id)
        .await?
        .ok_or_else(|| FederationError::PeerNotFound(id.to_string()))
}

fn parse_key(key: &str) -> Result<String, FederationError> {
    PublicKey::from_b64(key)
        .map(|k| k.to_b64())
        .map_err(|e| FederationError::BadRequest(format!("public_key: {e}")))
}

/// Records `origin` as an operator peer (active, trusted, depth 0), with `key` pinned as the
/// operator's when given; a changed key also forgets the validators (the next crawl verifies
/// in full), any preview is dropped, and the peer-set change is published. Returns the row
/// before (if any) and after.
pub(super) async fn admit_as_operator(
    store: &Store,
    feed: &CatalogFeed,
    origin: &str,
    key: Option<&str>,
) -> Result<(Option<PeerRow>, PeerRow), FederationError> {
    let before = store.get_peer_by_url(origin).await?;
    let row = store.upsert_seed_peer(origin, key).await?;
    let key_changed = before
        .as_ref()
        .is_some_and(|b| b.pinned_key.is_some() && b.pinned_key != row.pinned_key);
    if let (true, Some(key)) = (key_changed, key) {
        store.repin_peer(row.id, key).await?;
    }
    store.delete_peer_preview(row.id).await?;
    match &before {
        // Stored rows of a formerly pending peer may have become visible without a diff.
        Some(b) if b.state == PeerState::Pending && b.capability_count > 0 => {
            let version = store.catalog_version().await?;
            feed.publish(crate::crawl::CatalogUpdate::initial(version));
        }
        _ => publish_peer_change(store, feed).await?,
    }
    Ok((before, row))
}

/// Admits a pending peer: `active`, trusted, its preview dropped, a crawl started. An active
/// peer is answered as it is.
pub async fn approve(state: &Arc<AppState>, url: &str) -> Result<PeerAction, FederationError> {
    let peer = find(&state.store, url).await?;
    let promoted = peer.state == PeerState::Pending;
    if promoted {
        let diff = state
            .store
            .set_peer_state(peer.id, PeerState::Active)
            .await?;
        state.store.set_peer_trusted(peer.id).await?;
        state.store.delete_peer_preview(peer.id).await?;
        publish_diff(&state.feed, diff);
        crawl_soon(state);
    } else {
        state.store.set_peer_trusted(peer.id).await?;
    }
    let mut action = PeerAction::of(&reload(&state.store, peer.id).await?);
    action.promoted_from_pending = promoted;
    action.crawl_scheduled = promoted;
    Ok(action)
}

/// Removes a peer and its catalog.
pub async fn remove(state: &Arc<AppState>, url: &str) -> Result<PeerAction, FederationError> {
    let peer = find(&state.store, url).await?;
    let diff = state.store.delete_peer(peer.id).await?;
    let mut action = PeerAction::of(&peer);
    action.status = "removed";
    action.capabilities_removed = diff.removed.len();
    let seeded = state
        .settings
        .seeds
        .iter()
        .any(|s| normalize_origin(s.url.as_str()).ok().as_deref() == Some(peer.url.as_str()));
    if seeded {
        action.note = Some(
            "this URL is a configured seed: the next crawl adds it again unless it is \
             removed from the configuration"
                .into(),
        );
    }
    publish_diff(&state.feed, diff);
    Ok(action)
}

/// Pins `public_key` (operator source) and crawls, so a peer whose crawls were refused for a
/// key change is accepted with its new key.
pub async fn repin(
    state: &Arc<AppState>,
    url: &str,
    public_key: &str,
) -> Result<PeerAction, FederationError> {
    let key = parse_key(public_key)?;
    let peer = find(&state.store, url).await?;
    if !state.store.repin_peer(peer.id, &key).await? {
        return Err(FederationError::PeerNotFound(peer.url));
    }
    let scheduled = peer.state == PeerState::Active;
    if scheduled {
        crawl_soon(state);
    }
    let mut action = PeerAction::of(&reload(&state.store, peer.id).await?);
    action.crawl_scheduled = scheduled;
    let pinned_by_config = state.settings.seeds.iter().any(|s| {
        s.pinned_key.is_some()
            && normalize_origin(s.url.as_str()).ok().as_deref() == Some(peer.url.as_str())
    });
    if pinned_by_config {
        action.note = Some(
            "this seed's key is pinned in the configuration, which every crawl re-applies: \
             change it there too"
                .into(),
        );
    }
    Ok(action)
}

/// Adds (or promotes) a seed at runtime: an active, trusted, depth-0 peer, with `public_key`
/// pinned when given, crawled now. Persisted in the store, so it survives restarts.
pub async fn add_seed(
    state: &Arc<AppState>,
    url: &str,
    public_key: Option<&str>,
) -> Result<PeerAction, FederationError> {
    let key = public_key.map(parse_key).transpose()?;
    let url = peer_url(&state.crawl, url, false).await?;
    let origin = normalize_origin(url.as_str())?;
    let (before, row) =
        admit_as_operator(&state.store, &state.feed, &origin, key.as_deref()).await?;
    crawl_soon(state);
    let mut action = PeerAction::of(&row);
    action.created = before.is_none();
    action.promoted_from_pending = before.is_some_and(|b| b.state == PeerState::Pending);
    action.crawl_scheduled = true;
    Ok(action)
}

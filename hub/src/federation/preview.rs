//! Catalog preview of pending peers (spec §2.6).
//!
//! A pending peer's well-known and manifest are fetched and verified by the crawler exactly
//! as a crawl would (§7.4 for strangers, schema, signature against the pinned key when one is
//! pinned, else the advertised one, freshness), and a summary of the first
//! [`PREVIEW_TOOLS`] tools is written to `peer_previews`. No serving path reads that table:
//! search, the manifest, invoke and the well-known read `capabilities` of active peers, so a
//! preview cannot leak by a forgotten filter. The peers endpoint shows it on pending entries,
//! marked `unapproved: true`. A verified signature only proves that the manifest was signed
//! by the key the peer advertises and was not altered in transit, nothing about whether that
//! key deserves trust.
//!
//! Work arrives from announcements (queued) and from a sweep every [`SWEEP_INTERVAL`] that
//! picks pending peers never previewed or not checked for [`REFRESH_AFTER`], at most
//! [`SWEEP_BATCH`] at a time; previews run one after another.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aimarket_crawler::{KnownPeer, PeerOutcome, SafeUrl, VerifiedCatalog};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::crawl::CrawlService;
use crate::state::AppState;
use crate::store::{NewPreview, PeerState, Store, StoreError, now_ms, rfc3339_from_ms};

/// Preview requests queued before new ones are dropped (the sweep catches up).
pub const QUEUE: usize = 256;
/// Tools kept per preview.
pub const PREVIEW_TOOLS: usize = 20;
/// How often pending peers are looked at.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Age after which a preview is fetched again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(6 * 3600);
/// Pending peers previewed per sweep.
pub const SWEEP_BATCH: i64 = 20;
/// Longest description kept in a preview.
const MAX_DESCRIPTION_CHARS: usize = 300;

/// The stored summary of a verified catalog.
fn summary(catalog: &VerifiedCatalog) -> Value {
    let tools: Vec<Value> = catalog
        .tools
        .iter()
        .take(PREVIEW_TOOLS)
        .map(|t| {
            let description: String = t.description.chars().take(MAX_DESCRIPTION_CHARS).collect();
            json!({
                "product_id": t.product_id,
                "capability_id": t.capability_id,
                "name": t.name,
                "description": description,
                "price_usd": t.price_usd,
                "category": t.tool_str("category").filter(|c| !c.is_empty()),
            })
        })
        .collect();
    Value::Array(tools)
}

/// Fetches, verifies and stores the preview of pending peer `peer_id`. Nothing happens for
/// a peer that is no longer pending.
pub async fn preview_peer(
    store: &Store,
    crawl: &CrawlService,
    peer_id: i64,
) -> Result<(), StoreError> {
    let Some(peer) = store.get_peer(peer_id).await? else {
        return Ok(());
    };
    if peer.state != PeerState::Pending {
        return Ok(());
    }
    let outcome = match SafeUrl::parse(&peer.well_known_url) {
        Ok(url) => {
            let known = KnownPeer {
                pinned_key: peer.pinned_key.clone(),
                ..KnownPeer::default()
            };
            crawl
                .context()
                .crawler()
                .crawl_peer(&url, false, Some(known))
                .await
        }
        Err(e) => {
            return write(store, peer_id, Err(&format!("invalid well-known URL: {e}"))).await;
        }
    };
    match outcome {
        PeerOutcome::Updated(catalog, _) => write(store, peer_id, Ok(&catalog)).await,
        PeerOutcome::Failed(e) => write(store, peer_id, Err(&e.to_string())).await,
        // Nothing was remembered, so no conditional request was sent.
        PeerOutcome::NotModified(_) => Ok(()),
    }
}

/// Writes a preview (or the reason there is none) for a peer that is still pending.
async fn write(
    store: &Store,
    peer_id: i64,
    outcome: Result<&VerifiedCatalog, &str>,
) -> Result<(), StoreError> {
    let now = now_ms();
    // A failed check clears what was shown: only a manifest that verifies now is displayed.
    let preview = match outcome {
        Ok(catalog) => NewPreview {
            capabilities: summary(catalog).to_string(),
            capabilities_count: i64::try_from(catalog.tools.len()).unwrap_or(i64::MAX),
            public_key: Some(catalog.peer.public_key.clone()),
            manifest_url: Some(catalog.peer.manifest_url.to_string()),
            verified_at: Some(now),
            checked_at: now,
            error: None,
        },
        Err(e) => NewPreview {
            capabilities: "[]".to_owned(),
            capabilities_count: 0,
            public_key: None,
            manifest_url: None,
            verified_at: None,
            checked_at: now,
            error: Some(e.to_owned()),
        },
    };
    store.write_peer_preview(peer_id, &preview).await
}

/// Every stored preview by peer id, as the peers endpoint shows it (`unapproved: true`).
pub async fn previews(store: &Store) -> Result<HashMap<i64, Value>, StoreError> {
    let rows = store.pending_peer_previews().await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let tools: Value = serde_json::from_str(&r.capabilities).unwrap_or(json!([]));
            let shown = json!({
                "unapproved": true,
                "verified": r.verified_at.is_some(),
                "capabilities": tools,
                "capabilities_count": r.capabilities_count,
                "signed_by": r.public_key,
                "verified_at": r.verified_at.and_then(rfc3339_from_ms),
                "checked_at": rfc3339_from_ms(r.checked_at),
                "error": r.error,
                "note": "the signature shows only that the manifest was signed by the key \
                         this peer advertises; it says nothing about whether to trust it",
            });
            (r.peer_id, shown)
        })
        .collect())
}

/// Pending peers due for a preview.
async fn due(store: &Store) -> Result<Vec<i64>, StoreError> {
    let refresh = i64::try_from(REFRESH_AFTER.as_millis()).unwrap_or(i64::MAX);
    store
        .peers_due_for_preview(now_ms() - refresh, SWEEP_BATCH)
        .await
}

/// The preview worker: queued peers as they come, the sweep on its interval.
pub(super) async fn run(state: Arc<AppState>, mut queue: mpsc::Receiver<i64>) {
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ids = tokio::select! {
            id = queue.recv() => match id {
                Some(id) => vec![id],
                None => return,
            },
            _ = sweep.tick() => match due(&state.store).await {
                Ok(ids) => ids,
                Err(e) if e.is_closed() => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list pending peers to preview");
                    Vec::new()
                }
            },
        };
        for id in ids {
            if state.crawl.is_shut_down() {
                return;
            }
            match preview_peer(&state.store, &state.crawl, id).await {
                Ok(()) => {}
                Err(e) if e.is_closed() => return,
                Err(e) => tracing::warn!(peer_id = id, error = %e, "preview failed"),
            }
        }
    }
}

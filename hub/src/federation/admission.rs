//! `POST /ai-market/v2/federation/announce` (spec §2.3, §2.4, §7.3.5).
//!
//! **Operator** (admin bearer token): the peer is recorded `active` and trusted at depth 0,
//! with `signer_public_key` pinned as the operator's key when given (the signature must then
//! verify with it), the announced well-known URL and name stored, and a crawl started. This
//! is how factory operators register their manifests.
//!
//! **Stranger** (no token; only with `AIMARKET_OPEN_ADMISSION`), in this order:
//! 1. refused with 429 when `AIMARKET_MAX_PENDING_PEERS` peers are pending (rule 3);
//! 2. `signer_public_key` and `signature` are required and the §7.3.5 canonical must verify
//!    with that key (400);
//! 3. `hub_url` and `well_known_url` must be on one origin, not this hub's, and pass every
//!    §7.4 rule including DNS resolution, before anything is stored (rule 4, 400);
//! 4. a peer this hub already knows is answered `peer_added: false` and **nothing** about it
//!    is written: not its name, key, state or well-known URL (rule 2);
//! 5. otherwise it is inserted `pending`, untrusted, with the announced key pinned (source
//!    `announce`) so that an approval admits exactly the key that was announced, and its
//!    catalog preview is queued (rule 1). It appears nowhere that serves (rule 5): the
//!    well-known `peers` array, search, the manifest and invoke read active peers only.
//!
//! The canonical binds no timestamp, so an announcement is replayable; that is harmless only
//! because an unauthenticated announcement confers nothing.

use std::sync::Arc;

use aimarket_protocol::signing::{PublicKey, verify_announce};
use aimarket_protocol::types::FederationAnnounce;
use serde::Serialize;
use serde_json::Value;

use super::operator::admit_as_operator;
use super::{FederationError, crawl_soon, peer_url};
use crate::crawl::CrawlService;
use crate::settings::PublicUrl;
use crate::state::AppState;
use crate::store::{KeySource, NewPeer, PeerState, normalize_origin};

/// Longest hub name kept from an announcement.
const MAX_NAME_CHARS: usize = 200;
/// Depth recorded for announced (not crawled-to) peers.
const ANNOUNCED_DEPTH: i64 = 1;

/// Who announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcer {
    /// The request carried the admin token.
    Operator,
    /// Anyone else.
    Stranger,
}

/// The answer `{acknowledged, peer_added, status, trusted}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnnounceOutcome {
    /// Always true: the announcement was processed.
    pub acknowledged: bool,
    /// A peer row was created.
    pub peer_added: bool,
    /// The peer's admission state after the announcement.
    pub status: &'static str,
    /// Whether the peer is operator-trusted.
    pub trusted: bool,
    /// Whether a crawl of it was started (operator announcements).
    pub crawl_scheduled: bool,
}

/// An announcement's fields after the checks common to both paths.
struct Parsed {
    origin: String,
    well_known_url: String,
    name: Option<String>,
    key: Option<PublicKey>,
}

/// A printable name without control characters, or nothing.
fn clean_name(name: Option<&str>) -> Option<String> {
    let name = name?.trim();
    (!name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(char::is_control))
    .then(|| name.to_owned())
}

/// Shape, signature and URL syntax; `strict` applies the stranger rules (key and signature
/// required, §7.4 address rule with DNS).
async fn parse(
    crawl: &CrawlService,
    public_url: &PublicUrl,
    body: &Value,
    strict: bool,
) -> Result<Parsed, FederationError> {
    let announce: FederationAnnounce = serde_json::from_value(body.clone())
        .map_err(|e| FederationError::BadRequest(format!("invalid announcement: {e}")))?;
    let key = match (&announce.signer_public_key, &announce.signature) {
        (Some(key), Some(_)) => {
            let key = PublicKey::from_b64(key).map_err(FederationError::Announce)?;
            // Canonicalised from the parsed document, never from the struct.
            verify_announce(body, &key)?;
            Some(key)
        }
        (None, None) if !strict => None,
        _ => {
            return Err(FederationError::BadRequest(
                "an announcement must carry both signer_public_key and signature".into(),
            ));
        }
    };
    let hub = peer_url(crawl, &announce.hub_url, strict).await?;
    let well_known = peer_url(crawl, &announce.well_known_url, false).await?;
    if !hub.same_origin(&well_known) {
        return Err(FederationError::BadRequest(
            "well_known_url must be on the origin of hub_url".into(),
        ));
    }
    let origin = normalize_origin(hub.as_str())?;
    if normalize_origin(public_url.as_str()).ok().as_deref() == Some(origin.as_str()) {
        return Err(FederationError::BadRequest(
            "hub_url is this hub's own address".into(),
        ));
    }
    Ok(Parsed {
        origin,
        well_known_url: well_known.as_str().to_owned(),
        name: clean_name(announce.hub_name.as_deref()),
        key,
    })
}

/// Processes an announcement (module docs).
pub async fn announce(
    state: &Arc<AppState>,
    body: &Value,
    who: Announcer,
) -> Result<AnnounceOutcome, FederationError> {
    match who {
        Announcer::Operator => operator_announce(state, body).await,
        Announcer::Stranger => stranger_announce(state, body).await,
    }
}

async fn operator_announce(
    state: &Arc<AppState>,
    body: &Value,
) -> Result<AnnounceOutcome, FederationError> {
    let parsed = parse(&state.crawl, &state.public_url, body, false).await?;
    let key = parsed.key.as_ref().map(PublicKey::to_b64);
    let (before, row) =
        admit_as_operator(&state.store, &state.feed, &parsed.origin, key.as_deref()).await?;
    state
        .store
        .set_peer_announced(row.id, &parsed.well_known_url, parsed.name.as_deref())
        .await?;
    crawl_soon(state);
    Ok(AnnounceOutcome {
        acknowledged: true,
        peer_added: before.is_none(),
        status: PeerState::Active.as_str(),
        trusted: true,
        crawl_scheduled: true,
    })
}

async fn stranger_announce(
    state: &Arc<AppState>,
    body: &Value,
) -> Result<AnnounceOutcome, FederationError> {
    if !state.settings.open_admission {
        return Err(FederationError::AdmissionClosed);
    }
    let limit = state.settings.max_pending_peers;
    let full = |pending: i64| pending >= i64::from(limit);
    if full(state.store.count_pending_peers().await?) {
        return Err(FederationError::PendingLimit { limit });
    }
    let parsed = parse(&state.crawl, &state.public_url, body, true).await?;
    let _admission = state.federation.admission.lock().await;
    if let Some(known) = state.store.get_peer_by_url(&parsed.origin).await? {
        return Ok(AnnounceOutcome {
            acknowledged: true,
            peer_added: false,
            status: known.state.as_str(),
            trusted: known.trusted,
            crawl_scheduled: false,
        });
    }
    if full(state.store.count_pending_peers().await?) {
        return Err(FederationError::PendingLimit { limit });
    }
    let new = NewPeer {
        url: parsed.origin,
        well_known_url: Some(parsed.well_known_url),
        name: parsed.name,
        state: PeerState::Pending,
        trusted: false,
        depth: ANNOUNCED_DEPTH,
        pinned_key: parsed.key.map(|k| (k.to_b64(), KeySource::Announce)),
    };
    let (row, inserted) = state.store.insert_peer_if_absent(&new).await?;
    if inserted {
        state.federation.queue_preview(row.id);
    }
    Ok(AnnounceOutcome {
        acknowledged: true,
        peer_added: inserted,
        status: row.state.as_str(),
        trusted: row.trusted,
        crawl_scheduled: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name(Some("  Hub  ")).as_deref(), Some("Hub"));
        assert_eq!(clean_name(Some("a\nb")), None);
        assert_eq!(clean_name(Some("")), None);
        assert_eq!(clean_name(Some(&"x".repeat(201))), None);
        assert_eq!(clean_name(None), None);
    }
}

//! Federation admission (spec §2.3–2.6): who may knock, and who is trusted. Kept apart on
//! purpose: nothing a stranger does here can make a peer `active` or trusted.
//!
//! - [`admission`]: `POST /ai-market/v2/federation/announce`. With the admin token it is an
//!   operator action (the peer becomes active and is crawled now); without it, and only under
//!   open admission, a verified announcement about a new, safe URL creates a `pending` peer,
//!   bounded by `AIMARKET_MAX_PENDING_PEERS`; an announcement about a known peer changes
//!   nothing.
//! - [`operator`]: approve, remove, re-pin, runtime seeds (admin only).
//! - [`preview`]: pending peers' manifests fetched and verified exactly as a crawl would,
//!   stored in `peer_previews`, a table no serving query reads (spec §2.6).
//! - [`inbound`]: the `X-AIMarket-Crawler` recorder (spec §2.5), off the request path.
//!
//! [`spawn`] starts the background workers (inbound recorder, preview worker and sweep).

pub mod admission;
pub mod inbound;
pub mod operator;
pub mod preview;

use std::sync::{Arc, Mutex};

use aimarket_crawler::{CrawlError, SafeUrl};
use aimarket_protocol::ProtocolError;
use tokio::sync::mpsc;

use crate::catalog::CatalogFeed;
use crate::crawl::{self, CatalogUpdate, CrawlService};
use crate::error_code::{ApiError, Code, ErrorCode};
use crate::settings::PublicUrl;
use crate::state::AppState;
use crate::store::{CatalogDiff, Store, StoreError};

/// Why a federation request was refused.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// Malformed request (missing or ill-typed field, bad key).
    #[error("{0}")]
    BadRequest(String),
    /// The announcement's signature does not verify (or is missing its parts).
    #[error("announcement refused: {0}")]
    Announce(#[from] ProtocolError),
    /// A URL fails spec §7.4 (syntax, address range, resolution).
    #[error("unsafe URL `{url}`: {reason}")]
    UnsafeUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// No admin token and open admission is off.
    #[error(
        "unauthenticated announcements are not accepted (open admission is off): \
         announce with Authorization: Bearer <admin token>"
    )]
    AdmissionClosed,
    /// The pending-peer bound is reached.
    #[error("this hub holds {limit} pending peers, its limit; try again later")]
    PendingLimit {
        /// `AIMARKET_MAX_PENDING_PEERS`.
        limit: u32,
    },
    /// No peer with this URL.
    #[error("no peer with URL {0}")]
    PeerNotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ErrorCode for FederationError {
    /// Admission and operator actions: bad input 400 (`invalid_document` for a signature
    /// that does not verify, `unsafe_url` for §7.4), closed admission 401, the pending bound
    /// 429, an unknown peer 404; store errors as the store reads them.
    fn wire_code(&self) -> Code {
        match self {
            Self::BadRequest(_) => Code::BadRequest,
            Self::Announce(e) => e.wire_code(),
            Self::UnsafeUrl { .. } => Code::UnsafeUrl,
            Self::AdmissionClosed => Code::AdmissionClosed,
            Self::PendingLimit { .. } => Code::PendingLimit,
            Self::PeerNotFound(_) => Code::PeerNotFound,
            Self::Store(e) => e.wire_code(),
        }
    }

    /// A refused announcement reads as the protocol error itself (its message without
    /// this enum's "announcement refused: ", and its `reason`).
    fn passes_on(&self) -> Option<&dyn ErrorCode> {
        match self {
            Self::Announce(e) => Some(e),
            Self::Store(e) => Some(e),
            _ => None,
        }
    }

    fn decorate(&self, api: ApiError) -> ApiError {
        match self {
            Self::UnsafeUrl { url, .. } => api.with_field("url", url.as_str()),
            Self::PendingLimit { limit } => api.with_field("limit", *limit).with_retry_after(3600),
            Self::PeerNotFound(url) => api.with_field("url", url.as_str()),
            _ => api,
        }
    }
}

impl FederationError {
    /// A §7.4 refusal from the crawler's check.
    fn unsafe_url(url: &str, error: &CrawlError) -> Self {
        Self::UnsafeUrl {
            url: url.to_owned(),
            reason: error.to_string(),
        }
    }
}

/// What the federation's admission helpers use (the recorder of inbound crawlers, the
/// stranger and operator admissions): the peer tables, the catalog feed, the crawler (§7.4
/// URL checks, previews), the admission settings, the queues and this hub's own URL. Lent
/// by `AppState::federation_deps`. Operator actions that start a crawl still take the
/// shared state, which the crawl scheduler needs.
#[derive(Debug, Clone, Copy)]
pub struct FederationDeps<'a> {
    /// Peers, previews and recorded crawlers.
    pub store: &'a Store,
    /// Where peer-set changes are published.
    pub feed: &'a CatalogFeed,
    /// The crawler: the §7.4 address check and peer previews.
    pub crawl: &'a CrawlService,
    /// Strangers may become pending peers (`AIMARKET_OPEN_ADMISSION`).
    pub open_admission: bool,
    /// The bound on pending peers.
    pub max_pending_peers: u32,
    /// The queues and the admission lock.
    pub queues: &'a Federation,
    /// This hub's public URL (never admitted as a peer of itself).
    pub public_url: &'a PublicUrl,
}

/// Queued background work, shared through `AppState`.
#[derive(Debug)]
pub struct Federation {
    inbound: mpsc::Sender<String>,
    previews: mpsc::Sender<i64>,
    receivers: Mutex<Option<(mpsc::Receiver<String>, mpsc::Receiver<i64>)>>,
    /// Serialises the count-then-insert of unauthenticated admissions in this process, so
    /// concurrent announcements cannot overshoot the pending bound.
    admission: tokio::sync::Mutex<()>,
    inbound_stats: inbound::InboundStats,
}

impl Default for Federation {
    fn default() -> Self {
        let (inbound, inbound_rx) = mpsc::channel(inbound::QUEUE);
        let (previews, previews_rx) = mpsc::channel(preview::QUEUE);
        Self {
            inbound,
            previews,
            receivers: Mutex::new(Some((inbound_rx, previews_rx))),
            admission: tokio::sync::Mutex::new(()),
            inbound_stats: inbound::InboundStats::default(),
        }
    }
}

impl Federation {
    /// Queues a preview of pending peer `peer_id`; dropped when the queue is full (the
    /// periodic sweep picks it up later).
    pub fn queue_preview(&self, peer_id: i64) {
        let _ = self.previews.try_send(peer_id);
    }
}

/// Starts the inbound recorder and the preview worker. Call once per state.
pub fn spawn(state: Arc<AppState>) {
    let taken = state
        .federation
        .receivers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some((inbound_rx, previews_rx)) = taken else {
        return;
    };
    tokio::spawn(inbound::run(Arc::clone(&state), inbound_rx));
    tokio::spawn(preview::run(state, previews_rx));
}

/// Parses `raw` as a URL for a peer; with `check` the address rule (and DNS) of §7.4 are
/// applied as for a stranger's URL.
async fn peer_url(
    crawl: &CrawlService,
    raw: &str,
    check: bool,
) -> Result<SafeUrl, FederationError> {
    let url = SafeUrl::parse(raw).map_err(|e| FederationError::UnsafeUrl {
        url: raw.to_owned(),
        reason: e.to_string(),
    })?;
    if check {
        crawl
            .context()
            .crawler()
            .fetcher()
            .check_url(&url)
            .await
            .map_err(|e| FederationError::unsafe_url(raw, &e))?;
    }
    Ok(url)
}

/// Tells subscribers that the set of peers changed without any capability moving (the
/// well-known `peers` array, trust scores).
async fn publish_peer_change(store: &Store, feed: &CatalogFeed) -> Result<(), StoreError> {
    let version = store.catalog_version().await?;
    feed.publish(CatalogUpdate {
        version,
        since: Some(version),
        ..CatalogUpdate::default()
    });
    Ok(())
}

/// Publishes a store diff that bumped the catalog version once.
fn publish_diff(feed: &CatalogFeed, diff: CatalogDiff) {
    feed.publish(CatalogUpdate {
        version: diff.version,
        since: Some(diff.version - 1),
        added: diff.added,
        changed: diff.changed,
        removed: diff.removed,
    });
}

/// How long an operator action's answer waits for the crawl it started: long enough for a
/// handful of peers, bounded so a peer that hangs does not hang the operator's request (the
/// crawl itself goes on).
pub const CRAWL_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Crawls soon, in the background (see [`crawl_after_change`]).
pub fn crawl_soon(state: &Arc<AppState>) {
    let state = Arc::clone(state);
    tokio::spawn(async move { crawl_after_change(&state).await });
}

/// Runs a crawl that started after the caller's change and waits for it: joins a running
/// crawl and, since that one may have started before the change, starts (or joins) another
/// after it. A failed start is logged (the scheduled crawl retries later).
pub async fn crawl_after_change(state: &Arc<AppState>) {
    for _ in 0..2 {
        match crawl::trigger(state).await {
            Ok(ticket) => {
                let joined = ticket.joined;
                let _ = ticket.outcome().await;
                if !joined {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the crawl after an operator action");
                break;
            }
        }
    }
}

/// Read-your-writes for an operator action: when it scheduled a crawl, waits for that crawl
/// (at most [`CRAWL_WAIT`]), then until search and the manifest show the result.
pub async fn settle(
    state: &Arc<AppState>,
    crawl_scheduled: bool,
) -> Result<crate::catalog::Settled, StoreError> {
    if crawl_scheduled
        && tokio::time::timeout(CRAWL_WAIT, crawl_after_change(state))
            .await
            .is_err()
    {
        tracing::warn!("the crawl after an operator action is still running; answering");
    }
    state.settle_catalog().await
}

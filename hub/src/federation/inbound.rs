//! Reciprocal discovery (spec §2.5): who reads this hub.
//!
//! Every request carrying `X-AIMarket-Crawler` has the header value handed to
//! [`record`], which only does a non-blocking `try_send` into a bounded queue (a full queue
//! drops the value): the request path does no parsing, no DNS and no database work. One
//! background task then:
//!
//! 1. validates the value syntactically ([`SafeUrl`]: no control characters or whitespace,
//!    http(s), no credentials) and reduces it to its origin; this hub's own origin is
//!    ignored;
//! 2. dedupes: each origin is written at most once per [`WRITE_EVERY`] (hits in between are
//!    counted and flushed with the next write);
//! 3. bounds the set at [`MAX_RECORDED`] origins: new origins beyond it are counted and
//!    dropped (hits of recorded ones are still counted);
//! 4. on an origin's first record, under open admission only, applies §7.4 in full
//!    (address ranges with DNS) and, if it passes and the pending bound allows, records the
//!    crawler as a `pending` peer (never active, never trusted) and queues its preview.
//!
//! The value is an unauthenticated claim: it confers nothing. The operator sees the record
//! at `GET /ai-market/v2/federation/inbound`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aimarket_crawler::SafeUrl;
use tokio::sync::mpsc;

use super::{Federation, FederationDeps};
use crate::state::AppState;
pub use crate::store::InboundCrawler;
use crate::store::{NewPeer, PeerState, Store, StoreError, normalize_origin, now_ms};

/// Header values queued before new ones are dropped.
pub const QUEUE: usize = 1024;
/// Origins recorded at most.
pub const MAX_RECORDED: usize = 10_000;
/// Shortest interval between two writes for one origin.
pub const WRITE_EVERY: Duration = Duration::from_secs(600);
/// Longest header value looked at.
const MAX_VALUE_BYTES: usize = 2048;
/// Rows listed by the operator endpoint.
pub const LIST_LIMIT: i64 = 1000;

/// Counters of the recorder.
#[derive(Debug, Default)]
pub struct InboundStats {
    /// Values dropped because the queue was full.
    pub queue_full: AtomicU64,
    /// Values that were not a valid URL.
    pub invalid: AtomicU64,
    /// New origins dropped because the set is full.
    pub set_full: AtomicU64,
}

/// Hands a header value to the recorder; never waits (the request path calls this).
pub fn record(federation: &Federation, value: &[u8]) {
    if value.is_empty() || value.len() > MAX_VALUE_BYTES {
        federation
            .inbound_stats
            .invalid
            .fetch_add(1, Ordering::Relaxed);
        return;
    }
    let text = String::from_utf8_lossy(value).into_owned();
    if federation.inbound.try_send(text).is_err() {
        federation
            .inbound_stats
            .queue_full
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// Per-origin memory of the task.
struct Seen {
    last_write: Instant,
    unwritten_hits: i64,
}

/// The recorder task.
pub(super) async fn run(state: Arc<AppState>, mut queue: mpsc::Receiver<String>) {
    let deps = state.federation_deps();
    let own = normalize_origin(deps.public_url.as_str()).ok();
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut stored = match deps.store.count_inbound_crawlers().await {
        Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
        Err(e) => {
            tracing::warn!(error = %e, "cannot count recorded crawlers; assuming none");
            0
        }
    };
    while let Some(value) = queue.recv().await {
        let Some(origin) = SafeUrl::parse(value.trim())
            .ok()
            .and_then(|u| normalize_origin(u.as_str()).ok())
        else {
            deps.queues
                .inbound_stats
                .invalid
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if own.as_deref() == Some(origin.as_str()) {
            continue;
        }
        let entry = match seen.get_mut(&origin) {
            Some(entry) => {
                entry.unwritten_hits += 1;
                if entry.last_write.elapsed() < WRITE_EVERY {
                    continue;
                }
                entry
            }
            None => {
                if seen.len() >= MAX_RECORDED {
                    deps.queues
                        .inbound_stats
                        .set_full
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                seen.entry(origin.clone()).or_insert(Seen {
                    last_write: Instant::now(),
                    unwritten_hits: 1,
                })
            }
        };
        let hits = std::mem::take(&mut entry.unwritten_hits);
        entry.last_write = Instant::now();
        match write(&deps, &origin, hits, stored < MAX_RECORDED).await {
            Ok(true) => stored += 1,
            Ok(false) => {}
            Err(e) if e.is_closed() => return,
            Err(e) => tracing::warn!(crawler = origin, error = %e, "cannot record a crawler"),
        }
    }
}

/// Records `hits` for `origin`; returns true when the origin was new and stored (only with
/// `room`: a full set still counts hits of the origins it holds).
async fn write(
    deps: &FederationDeps<'_>,
    origin: &str,
    hits: i64,
    room: bool,
) -> Result<bool, StoreError> {
    let now = now_ms();
    if deps.store.count_inbound_hits(origin, hits, now).await? {
        return Ok(false);
    }
    if !room {
        deps.queues
            .inbound_stats
            .set_full
            .fetch_add(1, Ordering::Relaxed);
        return Ok(false);
    }
    let (status, detail) = admit(deps, origin).await?;
    deps.store
        .insert_inbound_crawler(origin, now, hits, status, detail.as_deref())
        .await?;
    Ok(true)
}

/// What the first record of `origin` does about it: `(status, detail)`.
async fn admit(
    deps: &FederationDeps<'_>,
    origin: &str,
) -> Result<(&'static str, Option<String>), StoreError> {
    if let Some(peer) = deps.store.get_peer_by_url(origin).await? {
        return Ok(("known_peer", Some(format!("a {} peer", peer.state))));
    }
    if !deps.open_admission {
        return Ok(("recorded", None));
    }
    let Ok(url) = SafeUrl::parse(origin) else {
        return Ok(("refused", Some("not a valid URL".into())));
    };
    let fetcher = deps.crawl.context().crawler().fetcher();
    if let Err(e) = fetcher.check_url(&url).await {
        return Ok(("refused", Some(e.to_string())));
    }
    let _admission = deps.queues.admission.lock().await;
    let limit = i64::from(deps.max_pending_peers);
    if deps.store.count_pending_peers().await? >= limit {
        return Ok(("recorded", Some("pending-peer limit reached".into())));
    }
    let new = NewPeer {
        url: origin.to_owned(),
        well_known_url: None,
        name: None,
        state: PeerState::Pending,
        trusted: false,
        depth: 1,
        pinned_key: None,
    };
    let (row, inserted) = deps.store.insert_peer_if_absent(&new).await?;
    if inserted {
        deps.queues.queue_preview(row.id);
        Ok(("pending_peer", None))
    } else {
        Ok(("known_peer", Some(format!("a {} peer", row.state))))
    }
}

/// The recorded crawlers, most recent first (at most [`LIST_LIMIT`]).
pub async fn list(store: &Store) -> Result<Vec<InboundCrawler>, StoreError> {
    store.list_inbound_crawlers(LIST_LIMIT).await
}

/// The recorder's counters `(queue_full, invalid, set_full)`.
pub fn counters(federation: &Federation) -> (u64, u64, u64) {
    let s = &federation.inbound_stats;
    (
        s.queue_full.load(Ordering::Relaxed),
        s.invalid.load(Ordering::Relaxed),
        s.set_full.load(Ordering::Relaxed),
    )
}

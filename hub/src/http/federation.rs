//! Federation endpoints of the crawl work:
//!
//! - `POST /ai-market/v2/federation/crawl` (admin): runs a crawl now and answers with its
//!   stats once it ended and search and the manifest show its result (`http::consistency`),
//!   `{status: "complete", run_id, joined, stats, catalog_version, catalog_caught_up}`;
//!   with `?wait=false`
//!   it answers 202 `{status: "started", run_id, joined}` at once. A crawl already running is
//!   joined, not duplicated (`joined: true`; see `crawl::scheduler`), also when another
//!   replica runs it; `replica_id` names the replica doing the crawl.
//! - `GET /ai-market/v2/federation/peers`: `{peers: [active…], count, pending: […],
//!   pending_count}`; a pending entry carries its catalog `preview` (spec §2.6, marked
//!   `unapproved`) once one was fetched. Each peer carries its admission `status` (`state`
//!   is a deprecated alias) and `rejected_tools`: the tools its last new manifest had
//!   dropped, with reasons (`{run_id, at, count, tools: [{peer, index, name, reason}]}`,
//!   at most `crawl::MAX_REJECTED_PER_PEER`; `null` when none was dropped). Stored, so every
//!   replica and a restarted hub show the same.
//! - `GET /ai-market/v2/federation/crawls`: the last 20 runs, newest first, with refused
//!   peers (`errors`) and dropped tools (`rejected_tools` and `rejected_tools_sample`, at
//!   most `crawl::MAX_REJECTED_SAMPLE`, stored with the run). `DELETE …/peers?url=` (admin)
//!   removes a peer (`http::announce`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::crawl::{self, CrawlSummary, PeerRejections};
use crate::http::admin::Admin;
use crate::http::consistency::{self, WaitQuery};
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::{PeerRow, PeerState};

/// Path of the crawl trigger.
pub const CRAWL_PATH: &str = "/ai-market/v2/federation/crawl";
/// Path of the peers list.
pub const PEERS_PATH: &str = "/ai-market/v2/federation/peers";
/// Path of the crawl history.
pub const CRAWLS_PATH: &str = "/ai-market/v2/federation/crawls";
/// Runs listed by the crawl history.
const CRAWL_HISTORY: u32 = 20;

/// Registers the crawl trigger and the peers list.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(CRAWL_PATH).route(web::post().to(crawl_now)))
        .service(web::resource(CRAWLS_PATH).route(web::get().to(list_crawls)))
        .service(
            web::resource(PEERS_PATH)
                .route(web::get().to(list_peers))
                .route(web::delete().to(crate::http::announce::remove_peer)),
        );
}

async fn crawl_now(
    _admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let ticket = crawl::trigger(&state).await?;
    let (run_id, joined) = (ticket.run_id, ticket.joined);
    let replica_id = ticket.replica_id.clone();
    if !query.wait {
        return Ok(HttpResponse::Accepted().json(json!({
            "status": "started",
            "run_id": run_id,
            "joined": joined,
            "replica_id": replica_id,
        })));
    }
    let summary = ticket.outcome().await?;
    let settled = state.settle_catalog().await?;
    let body = json!({
        "status": "complete",
        "run_id": run_id,
        "joined": joined,
        "replica_id": replica_id,
        "stats": stats(&summary),
    });
    Ok(consistency::answer(StatusCode::OK, body, Some(settled)))
}

/// The `stats` object of a finished run.
pub fn stats(summary: &CrawlSummary) -> Value {
    json!({
        "peers_reached": summary.peers_reached,
        "peers_updated": summary.peers_updated,
        "capabilities_indexed": summary.capabilities_indexed,
        "not_modified": summary.not_modified,
        "rejected": summary.rejected,
        "rejected_tools": summary.rejected_tools,
        "rejected_tools_sample": summary.rejected_tools_sample,
        "pending_discovered": summary.pending_discovered,
        "errors": summary.errors,
        "errors_omitted": summary.errors_omitted,
        "started_at": iso(summary.started_at),
        "finished_at": iso(summary.finished_at),
    })
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn iso_ms(ms: Option<i64>) -> Option<String> {
    ms.and_then(DateTime::from_timestamp_millis).map(iso)
}

/// The later of a stored time and a time kept in memory (304 answers are not written).
fn later(stored: Option<i64>, remembered: Option<DateTime<Utc>>) -> Option<i64> {
    let remembered = remembered.map(|t| t.timestamp_millis());
    stored.max(remembered)
}

/// A short, comparable name for a pinned key: `SHA256:` and the first 8 bytes, in hex, of
/// the SHA-256 of the key's base64 text (what operators compare by eye in the console).
fn key_fingerprint(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    format!("SHA256:{}", hex::encode(&digest[..8]))
}

/// One peer as the peers endpoint shows it.
fn peer_json(
    peer: &PeerRow,
    confirmed: Option<DateTime<Utc>>,
    rejections: Option<PeerRejections>,
) -> Value {
    json!({
        "url": peer.url,
        "name": peer.name,
        "status": peer.state.as_str(),
        // Deprecated alias of `status` (the name every other answer uses), kept for
        // existing clients.
        "state": peer.state.as_str(),
        "trusted": peer.trusted,
        "depth": peer.depth,
        "first_seen": iso_ms(Some(peer.first_seen)),
        "last_crawl": iso_ms(later(peer.last_crawl, confirmed)),
        "last_success": iso_ms(later(peer.last_success, confirmed)),
        "capability_count": peer.capability_count,
        "last_error": peer.last_error,
        "public_key": peer.pinned_key,
        "key_fingerprint": peer.pinned_key.as_deref().map(key_fingerprint),
        "key_source": peer.key_source.map(|k| k.as_str()),
        "well_known_url": peer.well_known_url,
        "manifest_url": peer.manifest_url,
        "categories": peer.categories,
        "trust_score": peer.trust_score,
        "rejected_tools": rejections,
    })
}

async fn list_peers(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = state.store.list_peers(None).await?;
    let context = state.crawl.context();
    let mut rejections = state.store.peer_rejections().await?;
    let (active, pending): (Vec<&PeerRow>, Vec<&PeerRow>) =
        rows.iter().partition(|p| p.state == PeerState::Active);
    let mut render = |peers: Vec<&PeerRow>| -> Vec<Value> {
        peers
            .into_iter()
            .map(|p| peer_json(p, context.last_confirmed(&p.url), rejections.remove(&p.url)))
            .collect()
    };
    let active = render(active);
    let previews = crate::federation::preview::previews(&state.store).await?;
    let pending: Vec<Value> = pending
        .into_iter()
        .map(|p| {
            let dropped = rejections.remove(&p.url);
            let mut entry = peer_json(p, context.last_confirmed(&p.url), dropped);
            // Pending peers are not scored (admission comes first, spec §2.4).
            entry["trust_score"] = Value::Null;
            if let Some(preview) = previews.get(&p.id) {
                entry["preview"] = preview.clone();
            }
            entry
        })
        .collect();
    let (count, pending_count) = (active.len(), pending.len());
    Ok(HttpResponse::Ok().json(json!({
        "peers": active,
        "count": count,
        "pending": pending,
        "pending_count": pending_count,
        "protocol_version": "v2",
    })))
}

/// The last runs, newest first, with their refused peers and (for runs of this replica
/// since it started) their dropped tools.
async fn list_crawls(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = state.store.last_runs(CRAWL_HISTORY).await?;
    let runs: Vec<Value> = rows
        .iter()
        .map(|run| {
            json!({
                "run_id": run.id,
                "status": run.summary.status.as_str(),
                "started_at": iso_ms(Some(run.started_at)),
                "finished_at": iso_ms(run.finished_at),
                "peers_reached": run.summary.peers_reached,
                "capabilities_indexed": run.summary.capabilities_indexed,
                "not_modified": run.summary.not_modified,
                "rejected": run.summary.rejected,
                "errors": run.summary.errors.iter()
                    .map(|e| json!({"url": e.peer, "error": e.error}))
                    .collect::<Vec<_>>(),
                "rejected_tools": run.summary.rejected_tools,
                "rejected_tools_sample": run.summary.rejected_tools_sample,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "runs": runs,
        "count": runs.len(),
        "protocol_version": "v2",
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_304s_move_times_forward_only() {
        let t = DateTime::from_timestamp_millis(2_000).expect("valid");
        assert_eq!(later(Some(1_000), Some(t)), Some(2_000));
        assert_eq!(later(Some(3_000), Some(t)), Some(3_000));
        assert_eq!(later(None, Some(t)), Some(2_000));
        assert_eq!(later(None, None), None);
        assert_eq!(iso_ms(Some(0)).as_deref(), Some("1970-01-01T00:00:00.000Z"));
    }
}

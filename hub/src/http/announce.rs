//! Federation admission endpoints (rules in [`crate::federation`]):
//!
//! - `POST /ai-market/v2/federation/announce`: anyone (open admission) or the operator;
//! - `POST /ai-market/v2/federation/peers/approve {url}` (admin);
//! - `DELETE /ai-market/v2/federation/peers?url=` (admin; registered on the peers resource);
//! - `POST /ai-market/v2/federation/peers/repin {url, public_key}` (admin);
//! - `POST /ai-market/v2/federation/seeds {url, public_key?}` (admin);
//!
//! The operator's writes answer once search and the manifest show them, after the crawl they
//! start (bounded; `?wait=false` answers at once): see `http::consistency`.
//!
//! - `GET /ai-market/v2/federation/inbound` (admin): hubs that identified themselves with
//!   `X-AIMarket-Crawler`, recorded by the [`record_crawler`] middleware.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::federation::admission::{self, Announcer};
use crate::federation::{self, inbound, operator};
use crate::http::admin::{Admin, admin_if_presented};
use crate::http::consistency::{self, WaitQuery};
use crate::http::error::ApiError;
use crate::state::AppState;

/// Path of the announce endpoint.
pub const ANNOUNCE_PATH: &str = "/ai-market/v2/federation/announce";
/// Path of approvals.
pub const APPROVE_PATH: &str = "/ai-market/v2/federation/peers/approve";
/// Path of key re-pins.
pub const REPIN_PATH: &str = "/ai-market/v2/federation/peers/repin";
/// Path of runtime seeds.
pub const SEEDS_PATH: &str = "/ai-market/v2/federation/seeds";
/// Path of the inbound-crawler record.
pub const INBOUND_PATH: &str = "/ai-market/v2/federation/inbound";
/// The reciprocal-discovery header (spec §2.5).
pub const CRAWLER_HEADER: &str = "x-aimarket-crawler";

/// Registers the admission routes (the DELETE on the peers path is registered by
/// `http::federation`, which owns that resource).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(ANNOUNCE_PATH).route(web::post().to(announce)))
        .service(web::resource(APPROVE_PATH).route(web::post().to(approve)))
        .service(web::resource(REPIN_PATH).route(web::post().to(repin)))
        .service(web::resource(SEEDS_PATH).route(web::post().to(add_seed)))
        .service(web::resource(INBOUND_PATH).route(web::get().to(list_inbound)));
}

/// Middleware: hands an `X-AIMarket-Crawler` value to the background recorder (a
/// non-blocking queue push) and carries on.
pub async fn record_crawler(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(value) = req.headers().get(CRAWLER_HEADER)
        && let Some(state) = req.app_data::<web::Data<AppState>>()
    {
        inbound::record(&state.federation, value.as_bytes());
    }
    next.call(req).await
}

async fn announce(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<WaitQuery>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let who = match admin_if_presented(&req)? {
        Some(_) => Announcer::Operator,
        None => Announcer::Stranger,
    };
    let state = state.into_inner();
    let outcome = admission::announce(&state, &body, who).await?;
    // A stranger's announcement changes no visible catalog (its peer is pending), and must
    // not be able to hold a connection open waiting for one.
    let settled = match who {
        Announcer::Operator if query.wait => {
            Some(federation::settle(&state, outcome.crawl_scheduled).await?)
        }
        _ => None,
    };
    let mut body = serde_json::to_value(outcome).map_err(ApiError::internal)?;
    body["protocol_version"] = json!("v2");
    Ok(consistency::answer(StatusCode::OK, body, settled))
}

/// `{url}` (body of approvals, query of removals).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerUrl {
    /// The peer's URL (any URL on its origin).
    pub url: String,
}

/// `?url=&wait=` of removals.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// The peer's URL (any URL on its origin).
    pub url: String,
    /// Wait until search and the manifest show the removal (default true).
    #[serde(default = "yes")]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

/// `{url, public_key}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Repin {
    url: String,
    public_key: String,
}

/// `{url, public_key?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seed {
    url: String,
    #[serde(default)]
    public_key: Option<String>,
}

/// The answer of an operator action, after its read-your-writes wait unless `?wait=false`
/// (`http::consistency`).
async fn answer(
    state: &Arc<AppState>,
    query: &WaitQuery,
    action: operator::PeerAction,
) -> Result<HttpResponse, ApiError> {
    let settled = if query.wait {
        Some(federation::settle(state, action.crawl_scheduled).await?)
    } else {
        None
    };
    let mut body = serde_json::to_value(action).map_err(ApiError::internal)?;
    body["protocol_version"] = json!("v2");
    Ok(consistency::answer(StatusCode::OK, body, settled))
}

async fn approve(
    _admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<WaitQuery>,
    body: web::Json<PeerUrl>,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let action = operator::approve(&state, &body.url).await?;
    answer(&state, &query, action).await
}

/// `DELETE /ai-market/v2/federation/peers?url=` (registered by `http::federation`).
pub async fn remove_peer(
    _admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<RemoveQuery>,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let action = operator::remove(&state, &query.url).await?;
    let wait = WaitQuery { wait: query.wait };
    answer(&state, &wait, action).await
}

async fn repin(
    _admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<WaitQuery>,
    body: web::Json<Repin>,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let action = operator::repin(&state, &body.url, &body.public_key).await?;
    answer(&state, &query, action).await
}

async fn add_seed(
    _admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<WaitQuery>,
    body: web::Json<Seed>,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let action = operator::add_seed(&state, &body.url, body.public_key.as_deref()).await?;
    answer(&state, &query, action).await
}

async fn list_inbound(_admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = inbound::list(&state.store).await?;
    let (queue_full, invalid, set_full) = inbound::counters(&state.federation);
    let entries: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "url": r.url,
                "first_seen": r.first_seen_iso(),
                "last_seen": r.last_seen_iso(),
                "hits": r.hits,
                "status": r.status,
                "detail": r.detail,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "inbound": entries,
        "count": entries.len(),
        "open_admission": state.settings.open_admission,
        "dropped": {"queue_full": queue_full, "invalid": invalid, "set_full": set_full},
        "protocol_version": "v2",
    })))
}

//! `GET /ai-market/v2/stats/live`: recent invocation events and a summary as JSON
//! (`?limit=` events, default 50, at most 200), or, with `Accept: text/event-stream`, a
//! Server-Sent Events stream of invocations as they are recorded: `event: invocation`
//! frames whose `data` is one event's JSON, a `: heartbeat` comment every 15 s, and the
//! stream ends when the client falls more than [`stats::CLIENT_BUFFER`] events behind (it
//! may reconnect). See [`crate::stats`].

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Interval, interval_at};

use crate::http::error::{ApiError, Code};
use crate::state::AppState;
use crate::stats::{self, LiveEvent, Subscription};

/// Path of the live stats.
pub const PATH: &str = "/ai-market/v2/stats/live";
/// Events in the JSON form unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 50;

/// The v1 factory's live feed path: the same feed (JSON, or SSE on `Accept`).
pub const V1_PATH: &str = "/ai-market/stats";

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(PATH).route(web::get().to(live)))
        .service(web::resource(V1_PATH).route(web::get().to(live)));
}

/// `?limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveQuery {
    #[serde(default)]
    limit: Option<u32>,
}

fn wants_stream(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

async fn live(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<LiveQuery>,
) -> Result<HttpResponse, ApiError> {
    let feed = state.ledger.live();
    if wants_stream(&req) {
        let subscription = feed.subscribe().ok_or_else(|| {
            ApiError::new(
                Code::TooManyStreams,
                format!(
                    "at most {} live streams are served at once",
                    stats::MAX_CLIENTS
                ),
            )
            .with_retry_after(30)
        })?;
        return Ok(HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header(("X-Accel-Buffering", "no"))
            .streaming(event_stream(subscription)));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let events = stats::recent_events(&state.store, limit).await?;
    let summary = stats::summary(&state.store, feed).await?;
    Ok(HttpResponse::Ok().json(json!({
        "events": events,
        "summary": summary,
        "protocol_version": "v2",
    })))
}

/// One client's stream state.
struct Client {
    subscription: Subscription,
    heartbeat: Interval,
    opened: bool,
}

/// One SSE frame for an event.
fn frame(event: &Arc<LiveEvent>) -> Bytes {
    let data = serde_json::to_string(event.as_ref()).unwrap_or_else(|_| "{}".to_owned());
    let id = event.id.map(|id| format!("id: {id}\n")).unwrap_or_default();
    Bytes::from(format!("{id}event: invocation\ndata: {data}\n\n"))
}

fn event_stream(
    subscription: Subscription,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    let client = Client {
        subscription,
        heartbeat: interval_at(Instant::now() + stats::HEARTBEAT, stats::HEARTBEAT),
        opened: false,
    };
    stream::unfold(client, |mut c| async move {
        if !c.opened {
            c.opened = true;
            // Tells the client the stream is live before the first event.
            return Some((Ok(Bytes::from_static(b": connected\n\n")), c));
        }
        tokio::select! {
            received = c.subscription.events.recv() => match received {
                Ok(event) => Some((Ok(frame(&event)), c)),
                // Too far behind (or the hub is going away): drop this client.
                Err(RecvError::Lagged(_) | RecvError::Closed) => None,
            },
            _ = c.heartbeat.tick() => Some((Ok(Bytes::from_static(b": heartbeat\n\n")), c)),
        }
    })
}

//! The actix layer: routing, extractor configuration, middleware. Nothing here decides
//! business rules; handlers parse input into typed values and call into the library.
//!
//! Each area has its own module with a `configure(cfg: &mut web::ServiceConfig)` that
//! registers its routes; [`configure`] composes them. To add an area: create
//! `http/<area>.rs` with `pub fn configure(cfg)`, declare it below and call it from
//! [`configure`]. Handlers return `Result<_, error::ApiError>`.
//!
//! Register routes as `web::resource(path).route(web::get().to(handler))` rather than
//! `cfg.route(path, …)`: a resource answers a wrong method with 405 (rendered in the protocol
//! shape), while `cfg.route` falls through to the 404 fallback.

pub mod admin;
pub mod announce;
pub mod channels;
pub mod client;
pub mod consistency;
pub mod console;
pub mod error;
pub mod federation;
pub mod health;
pub mod invoke;
pub mod manifest;
pub mod mcp;
pub mod pipelines;
pub mod plugins;
pub mod receipts;
pub mod reputation;
pub mod search;
pub mod stats;
pub mod v1;
pub mod v1_invoke;
pub mod well_known;

#[cfg(test)]
mod tests;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, web};
use tracing::Instrument as _;

use crate::state::AppState;

/// Registers every route, the extractor error handlers and the 404 fallback.
pub fn configure(cfg: &mut web::ServiceConfig) {
    error::configure_extractors(cfg);
    channels::configure(cfg);
    console::configure(cfg);
    receipts::configure(cfg);
    reputation::configure(cfg);
    federation::configure(cfg);
    announce::configure(cfg);
    health::configure(cfg);
    invoke::configure(cfg);
    manifest::configure(cfg);
    mcp::configure(cfg);
    pipelines::configure(cfg);
    plugins::configure(cfg);
    search::configure(cfg);
    stats::configure(cfg);
    v1::configure(cfg);
    v1_invoke::configure(cfg);
    well_known::configure(cfg);
    cfg.default_service(web::to(error::not_found));
}

/// The complete application for one worker: state, middleware and routes. Used by the real
/// server and by in-process tests (`actix_web::test::init_service(http::app(state))`).
///
/// Middleware order (outermost first): request metrics, span and log, the `X-AIMarket-Crawler` recorder (a
/// queue push, spec §2.5), then the bare-error renderer.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .wrap(error::error_handlers())
        .wrap(from_fn(announce::record_crawler))
        .wrap(from_fn(log_request))
        .configure(configure)
}

/// Times each request into `aimarket_http_request_duration_seconds` (by route template, so
/// label values stay bounded), wraps it in a server span when traces are exported (a child
/// of the client's `traceparent`), and logs it at debug level. With traces off and debug
/// logging off this is two clock reads and a histogram update.
async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let pattern = req.match_pattern();
    let route = pattern.as_deref().unwrap_or("unmatched");
    let method = req.method().clone();
    let span = crate::telemetry::span!(
        "http.request",
        otel.kind = "server",
        otel.name = %format_args!("{method} {route}"),
        http.request.method = %method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    crate::telemetry::otel::set_remote_parent(&span, req.headers());
    // The global level hint, not `tracing::enabled!`: that asks every layer's filter and,
    // with per-layer filters and no event following, leaves their verdicts behind for the
    // next span on this thread (the trace exporter would then miss it).
    let debug = tracing::level_filters::LevelFilter::current() >= tracing::Level::DEBUG;
    let path = debug.then(|| req.path().to_owned());
    let response = next.call(req).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(state) = &state {
        state
            .metrics
            .observe_http(route, method.as_str(), status, elapsed);
    }
    if !span.is_none() {
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
    }
    if let Some(path) = path {
        // Inside the span, so a JSON log line carries the request's trace id.
        span.in_scope(|| {
            tracing::debug!(
                %method,
                path,
                status,
                micros = elapsed.as_micros() as u64,
                "request"
            )
        });
    }
    Ok(response)
}

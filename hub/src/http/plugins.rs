//! The plugin surface: `GET /ai-market/v2/plugins` (`plugins`: the loaded chain, secrets
//! redacted; `available`: every built-in an operator could configure, with its hooks, settings
//! schema and defaults),
//! plugin routes under `/ai-market/v2/p/<name>/…`, and `GET /metrics` (Prometheus text;
//! see [`crate::metrics`]).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use aimarket_plugins::{MOUNT_PREFIX, Method, PluginRequest};
use bytes::Bytes;
use serde_json::json;

use crate::http::error::{ApiError, Code};
use crate::state::AppState;

/// Path of the plugin list.
pub const PATH: &str = "/ai-market/v2/plugins";
/// Path of the Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Largest request body a plugin route receives.
pub const MAX_ROUTE_BODY: usize = 1024 * 1024;

/// Registers the plugin list, the plugin routes and the metrics.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(PATH).route(web::get().to(list)))
        .service(web::resource(METRICS_PATH).route(web::get().to(metrics)))
        .service(
            web::resource([
                format!("{MOUNT_PREFIX}/{{name}}"),
                format!("{MOUNT_PREFIX}/{{name}}/{{tail:.*}}"),
            ])
            .app_data(web::PayloadConfig::new(MAX_ROUTE_BODY))
            .route(web::route().to(dispatch)),
        );
}

async fn list(state: web::Data<AppState>) -> HttpResponse {
    let plugins = state.plugins.describe();
    let count = plugins.as_array().map_or(0, Vec::len);
    HttpResponse::Ok().json(json!({
        "plugins": plugins,
        "count": count,
        "available": aimarket_plugins::builtin::available::describe(),
        "protocol_version": "v2",
    }))
}

/// Hands the request to the plugin's route (`Registry::dispatch`).
async fn dispatch(
    req: HttpRequest,
    body: Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("name").unwrap_or_default().to_owned();
    let tail = req.match_info().get("tail").unwrap_or_default();
    let method = Method::parse(req.method().as_str()).ok_or_else(|| {
        ApiError::new(
            Code::MethodNotAllowed,
            format!("plugin routes do not answer {}", req.method()),
        )
    })?;
    let request = PluginRequest {
        method,
        path: format!("/{tail}"),
        query: req.query_string().to_owned(),
        headers: req
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body,
    };
    let answer = state.plugins.dispatch(&name, request).await?;
    let status = StatusCode::from_u16(answer.status).map_err(ApiError::internal)?;
    let mut response = HttpResponse::build(status);
    for (name, value) in &answer.headers {
        // A plugin cannot set framing headers; actix computes them from the body.
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
        response.append_header((name.as_str(), value.as_str()));
    }
    Ok(response.body(answer.body))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let body = crate::metrics::render(&state).await;
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(body)
}

//! The plugin surface: `GET /ai-market/v2/plugins` (`plugins`: the loaded chain, secrets
//! redacted; `available`: every built-in an operator could configure, with its hooks, settings
//! schema and defaults),
//! plugin routes under `/ai-market/v2/p/<name>/…`, and `GET /metrics` (Prometheus text:
//! per-plugin hook counters, the hub's catalog counters and limit refusals by limit).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use aimarket_plugins::{MOUNT_PREFIX, Method, PluginRequest, render_prometheus};
use bytes::Bytes;
use serde_json::json;

use crate::http::error::{ApiError, ErrorKind, code};
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
            ErrorKind::MethodNotAllowed,
            code::METHOD_NOT_ALLOWED,
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

/// The hub's own series, in Prometheus text format.
fn hub_metrics(state: &AppState) -> String {
    let stats = &state.catalog.stats;
    let index = state.catalog.index().ok();
    let manifest = state.catalog.manifest().get();
    let lines: [(&str, &str, &str, u64); 8] = [
        (
            "aimarket_search_requests_total",
            "counter",
            "Searches served.",
            stats.searches.get(),
        ),
        (
            "aimarket_index_rebuilds_total",
            "counter",
            "Full search index rebuilds from the store.",
            stats.rebuilds.get(),
        ),
        (
            "aimarket_index_applies_total",
            "counter",
            "Incremental search index updates.",
            stats.applies.get(),
        ),
        (
            "aimarket_index_sync_errors_total",
            "counter",
            "Failed search index syncs (retried).",
            stats.sync_errors.get(),
        ),
        (
            "aimarket_manifest_builds_total",
            "counter",
            "Manifest documents built.",
            stats.manifest_builds.get(),
        ),
        (
            "aimarket_index_documents",
            "gauge",
            "Capabilities in the search index.",
            index.as_ref().map_or(0, |i| i.num_docs()),
        ),
        (
            "aimarket_index_catalog_version",
            "gauge",
            "Catalog version the search index was built at.",
            index.and_then(|i| i.indexed_version()).unwrap_or(0),
        ),
        (
            "aimarket_manifest_capabilities",
            "gauge",
            "Tools in the served manifest.",
            manifest.map_or(0, |m| m.capabilities as u64),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in lines {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    // One labelled series per limit, zeros included, so dashboards see every limit.
    let name = "aimarket_limit_refusals_total";
    out.push_str(&format!(
        "# HELP {name} Requests refused with 429 by a client or provider limit.\n# TYPE {name} counter\n"
    ));
    for kind in crate::limits::LimitKind::ALL {
        out.push_str(&format!(
            "{name}{{limit=\"{}\"}} {}\n",
            kind.as_str(),
            state.limits.refused(kind)
        ));
    }
    out
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut body = hub_metrics(&state);
    body.push_str(&render_prometheus(&state.plugins.metrics()));
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(body)
}

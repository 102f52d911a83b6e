//! `GET /ai-market/v2/search`: federated search (spec §3.2). Parameters and the response
//! are documented in [`crate::catalog::params`] and the README; ranking in
//! [`crate::catalog::ranking`].

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use aimarket_plugins::PluginContext;

use crate::catalog::SearchParams;
use crate::http::consistency::CATALOG_VERSION_HEADER;
use crate::http::error::ApiError;
use crate::limits::LimitKind;
use crate::state::AppState;

/// Path of the search endpoint.
pub const PATH: &str = "/ai-market/v2/search";
/// Longest `X-Request-Id` taken over as the plugin context's request id.
const MAX_REQUEST_ID: usize = 128;

/// Registers the search route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(PATH).route(web::get().to(search)));
}

/// The caller's `X-Request-Id` when it is short and printable, else `search-<n>` from a
/// process-wide counter (unique per process, and free: no random bytes on the hot path).
pub fn request_id(req: &HttpRequest) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID)
        .map_or_else(
            || format!("search-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            str::to_owned,
        )
}

/// Charges one search of the caller of `req` to its search budget (a configured API key,
/// else its address): 429 with `limit: "search_client"` when it is spent.
pub async fn check_search_limit(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let caller = crate::http::client::caller(req, &state.settings.trusted_proxies);
    let client = state.limits.identities().identify_key(&caller);
    state
        .limits
        .check_client(&state.shared, LimitKind::SearchClient, &client)
        .await
        .map_err(ApiError::from)
}

async fn search(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    check_search_limit(&req, &state).await?;
    let params = SearchParams::parse(req.query_string(), state.public_url.as_str())?;
    // Read before searching: the header never claims more than the answer holds.
    let version = state.catalog.index_version();
    let mut ctx = PluginContext::new(request_id(&req), state.catalog.hub_url());
    let searching = std::time::Instant::now();
    let outcome = state
        .catalog
        .search(&params, &state.plugins, &mut ctx)
        .await?;
    state.metrics.observe_search(&outcome, searching.elapsed());
    let body = serde_json::to_vec(&outcome).map_err(ApiError::internal)?;
    let mut response = HttpResponse::Ok();
    if let Some(version) = version {
        response.insert_header((CATALOG_VERSION_HEADER, version.to_string()));
    }
    Ok(response
        .content_type("application/json")
        // Results follow the catalog, which changes under the client's feet.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}

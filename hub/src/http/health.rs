//! `GET /ai-market/v2/health`: liveness plus a few facts operators look for first.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

/// Registers the health route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ai-market/v2/health").route(web::get().to(health)));
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    // `redis`: "disabled" without REDIS_URL, else whether a PING answers now. The hub keeps
    // serving without Redis (limits fall back per replica), so this stays a 200.
    let redis = state.shared.redis_health().await;
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "service": "aimarket-hub",
        "version": env!("CARGO_PKG_VERSION"),
        "database_backend": state.settings.database().backend().as_str(),
        "uptime_seconds": state.uptime_seconds(),
        "mode": state.shared.mode(),
        "redis": redis,
        "replica_id": state.shared.replica_id(),
        // Background invocation records and receipts lost (reputation and stats miss them):
        // `queue_full` (the database could not keep up) and `write_failed` (a batch's
        // transaction failed). Counted since start; also in /metrics.
        "invoke_records_dropped": state.invoker.dropped_records(),
        "protocol_version": "v2",
    }))
}

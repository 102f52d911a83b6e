//! `GET /ai-market/v2/health`: liveness plus a few facts operators look for first.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

/// Registers the health route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ai-market/v2/health").route(web::get().to(health)));
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "service": "aimarket-hub",
        "version": env!("CARGO_PKG_VERSION"),
        "database_backend": state.settings.database().backend().as_str(),
        "uptime_seconds": state.uptime_seconds(),
        "protocol_version": "v2",
    }))
}

//! `POST /ai-market/pipelines` (v1 shape), `POST /ai-market/v2/pipelines` and
//! `GET /ai-market/v2/pipelines/{trace_id}` (also under `/ai-market/pipelines/`): parse the
//! body and buyer headers, call [`crate::pipelines::run_pipeline`], write the answer. All
//! the logic lives in [`crate::pipelines`].

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use crate::http::error::ApiError;
use crate::http::invoke::{MAX_INVOKE_BODY, buyer_headers};
use crate::pipelines::{Buyer, PipelineAnswer, PipelineError, Version};
use crate::state::AppState;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, version) in [
        ("/ai-market/pipelines", Version::V1),
        ("/ai-market/v2/pipelines", Version::V2),
    ] {
        cfg.service(
            web::resource(path)
                .app_data(web::PayloadConfig::new(MAX_INVOKE_BODY))
                .app_data(web::Data::new(version))
                .route(web::post().to(run)),
        );
        cfg.service(web::resource(format!("{path}/{{trace_id}}")).route(web::get().to(get)));
    }
}

async fn run(
    state: web::Data<AppState>,
    version: web::Data<Version>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| PipelineError::InvalidJson(e.to_string()))?;
    let buyer = Buyer {
        headers: buyer_headers(&req)?,
        caller: crate::http::client::caller(&req, &state.settings.trusted_proxies),
    };
    let version = **version;
    // On a task of its own, like an invoke: a buyer who disconnects cannot leave holds
    // behind or nodes paid for and not billed.
    let answer = actix_web::rt::spawn(async move {
        crate::pipelines::run_pipeline(&state.invoke_deps(), &body, buyer, version).await
    })
    .await
    .map_err(|e| {
        ApiError::internal(std::io::Error::other(format!("pipeline task failed: {e}")))
    })??;
    Ok(respond(answer))
}

async fn get(
    state: web::Data<AppState>,
    trace_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let answer = crate::pipelines::get_pipeline(&state.store, &trace_id).await?;
    // The run is found: 200 whatever the run's own outcome (`success` says it).
    Ok(HttpResponse::Ok().json(answer.body))
}

fn respond(answer: PipelineAnswer) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    HttpResponse::build(status).json(answer.body)
}

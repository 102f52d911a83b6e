//! MCP Streamable HTTP at `/ai-market/mcp` (alias `/mcp`); the protocol logic is in
//! [`crate::mcp`].
//!
//! - `POST`: a JSON-RPC message or batch. Answers are `application/json`, or one SSE event
//!   (`event: message`) when the client's `Accept` lists `text/event-stream` but not
//!   `application/json`. Only notifications/responses → 202 with no body. A body that is not
//!   JSON-RPC at all → 400 with a JSON-RPC error (`-32700` / `-32600`). `initialize` answers
//!   carry `Mcp-Session-Id`.
//! - `GET` with `Accept: text/event-stream` → 405 (`Allow: POST, DELETE`): this server never
//!   pushes messages, which the spec lets it say this way.
//! - plain `GET` → the v1 JSON tools list `{protocol: "mcp", version: "1.0", tools}`.
//! - `DELETE` (session end) → 204.
//! - An `MCP-Protocol-Version` header naming a version this server does not speak → 400.
//! - Over `limits.mcp_rate_per_min` POSTs per client → 429 with the protocol error body
//!   (`limit: "mcp_client"`) and `Retry-After`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::Value;

use crate::http::error::{ApiError, Code};
use crate::limits::LimitKind;
use crate::mcp::{self, McpContext, PROTOCOL_VERSIONS, Reply};
use crate::state::AppState;

/// The MCP endpoint the well-known advertises.
pub const PATH: &str = "/ai-market/mcp";
/// The short alias.
pub const ALIAS: &str = "/mcp";
/// Largest POST body.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Registers both paths.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for path in [PATH, ALIAS] {
        cfg.service(
            web::resource(path)
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .route(web::post().to(post))
                .route(web::get().to(get))
                .route(web::delete().to(delete)),
        );
    }
}

/// The media types of `Accept`, lower-cased, parameters dropped.
fn accepts(req: &HttpRequest) -> Vec<String> {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether answers go out as one SSE event rather than plain JSON.
fn wants_sse(req: &HttpRequest) -> bool {
    let types = accepts(req);
    let json = types
        .iter()
        .any(|t| t == "application/json" || t == "application/*" || t == "*/*");
    !json && types.iter().any(|t| t == "text/event-stream")
}

fn unsupported_version(req: &HttpRequest) -> Option<String> {
    let version = req
        .headers()
        .get("mcp-protocol-version")?
        .to_str()
        .ok()?
        .trim();
    (!PROTOCOL_VERSIONS.contains(&version)).then(|| version.to_owned())
}

fn json_rpc_response(status: StatusCode, body: &Value, sse: bool) -> HttpResponse {
    let text = body.to_string();
    if sse {
        HttpResponse::build(status)
            .content_type("text/event-stream")
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(format!("event: message\ndata: {text}\n\n"))
    } else {
        HttpResponse::build(status)
            .content_type("application/json")
            .body(text)
    }
}

async fn post(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let sse = wants_sse(&req);
    if let Some(version) = unsupported_version(&req) {
        let answer = mcp::jsonrpc::error(
            Value::Null,
            mcp::jsonrpc::INVALID_REQUEST,
            format!(
                "Unsupported MCP-Protocol-Version {version:?}; supported: {}",
                PROTOCOL_VERSIONS.join(", ")
            ),
        );
        return json_rpc_response(StatusCode::BAD_REQUEST, &answer, sse);
    }
    let caller = crate::http::client::caller(&req, &state.settings.trusted_proxies);
    // One charge per POST, before any work: a batch is bounded (`jsonrpc::MAX_BATCH`), and
    // a `market_invoke` inside it is charged to the invoke limit as well.
    let client = state.limits.identities().identify_key(&caller);
    if let Err(refusal) = state
        .limits
        .check_client(&state.shared, LimitKind::McpClient, &client)
        .await
    {
        return ApiError::from(refusal).error_response();
    }
    let ctx = McpContext {
        caller,
        request_id: crate::http::search::request_id(&req),
    };
    // Its own task, like the invoke endpoint: a client that disconnects mid-call must not
    // cancel a paid invoke between hold and capture.
    let span = crate::telemetry::current_span();
    let reply = actix_web::rt::spawn(tracing::Instrument::instrument(
        async move { mcp::handle(&state.mcp_deps(), &body, &ctx).await },
        span,
    ))
    .await;
    match reply {
        Ok(Reply::Accepted) => HttpResponse::Accepted().finish(),
        Ok(Reply::Rejected(answer)) => json_rpc_response(StatusCode::BAD_REQUEST, &answer, sse),
        Ok(Reply::Answer { body, session_id }) => {
            let mut response = json_rpc_response(StatusCode::OK, &body, sse);
            if let Some(id) = session_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
                response
                    .headers_mut()
                    .insert(header::HeaderName::from_static("mcp-session-id"), id);
            }
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "mcp task failed");
            let answer =
                mcp::jsonrpc::error(Value::Null, mcp::jsonrpc::INTERNAL_ERROR, "Internal error");
            json_rpc_response(StatusCode::INTERNAL_SERVER_ERROR, &answer, sse)
        }
    }
}

async fn get(req: HttpRequest) -> HttpResponse {
    if accepts(&req).iter().any(|t| t == "text/event-stream") {
        let error = ApiError::new(
            Code::MethodNotAllowed,
            "this MCP server does not open a server-to-client stream; POST JSON-RPC messages",
        );
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "POST, DELETE"))
            .json(error.body());
    }
    HttpResponse::Ok().json(mcp::v1_tools_list())
}

async fn delete() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

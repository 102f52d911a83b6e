//! The v1 factory invoke on the hub: `POST /capabilities/{pid}/{cid}/invoke` and
//! `POST /ai-market/capabilities/{pid}/{cid}/invoke` with `{input, max_price_usd?}`, routed
//! exactly like `POST /ai-market/v2/invoke` (the same [`crate::invoke::invoke`], so
//! `X-Payment` goes to the provider and `X-Payment-Channel` pays from a channel here).
//!
//! The answer is the v2 one with `protocol_version: "v1"` and an empty
//! `continuation.suggested_next` (v1 clients read `success`, `result`, `receipt`,
//! `price_usd`, `latency_ms`). A 402 always carries `X-Payment-Required` (CLIENTS.md §1.2):
//! the provider's when it sent one, else this hub's own option in the v1 format.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

use crate::http::error::ApiError;
use crate::http::invoke::{MAX_INVOKE_BODY, buyer_headers, into_response};
use crate::invoke::{InvokeCall, InvokeError, InvokeRequest, InvokeResult};
use crate::state::AppState;

/// Registers both paths.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for path in [
        "/capabilities/{product_id}/{capability_id}/invoke",
        "/ai-market/capabilities/{product_id}/{capability_id}/invoke",
    ] {
        cfg.service(
            web::resource(path)
                .app_data(web::PayloadConfig::new(MAX_INVOKE_BODY))
                .route(web::post().to(invoke)),
        );
    }
}

async fn invoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (product_id, capability_id) = path.into_inner();
    let parsed: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| InvokeError::InvalidJson(e.to_string()))?
    };
    let Value::Object(v1) = parsed else {
        return Err(
            InvokeError::BadRequest("the request body must be a JSON object".into()).into(),
        );
    };
    let mut v2 = Map::new();
    v2.insert("product_id".into(), Value::from(product_id));
    v2.insert("capability_id".into(), Value::from(capability_id));
    for key in ["input", "max_price_usd"] {
        if let Some(v) = v1.get(key) {
            v2.insert(key.to_owned(), v.clone());
        }
    }
    let request = InvokeRequest::from_value(Value::Object(v2), state.invoker.own_origin())?;
    let headers = buyer_headers(&req)?;
    let caller = crate::http::client::caller(&req, &state.settings.trusted_proxies);
    let call = InvokeCall::new(request, headers, caller);
    let span = crate::telemetry::current_span();
    let result = actix_web::rt::spawn(tracing::Instrument::instrument(
        async move { crate::invoke::invoke(&state.invoke_deps(), call).await },
        span,
    ))
    .await
    .map_err(|e| ApiError::internal(std::io::Error::other(format!("invoke task failed: {e}"))))?;
    Ok(into_response(as_v1(result)))
}

/// The v2 answer in v1 clothes (see the module docs).
fn as_v1(mut result: InvokeResult) -> InvokeResult {
    if result.status == 402 && result.header("x-payment-required").is_none() {
        let option = result
            .header(crate::invoke::hub_payment::names::HUB_PAYMENT)
            .and_then(|v| serde_json::from_str::<Value>(v).ok());
        if let Some(option) = option {
            let required = json!({
                "amount": option["needed"].as_f64().map(|n| n.to_string()),
                "token": "USD",
                "chain": "channel",
                "recipient": option["hub"],
                "channel_open": option["open"],
                "nonce": format!("pay_{}", uuid::Uuid::new_v4().simple()),
            });
            result
                .headers
                .push(("x-payment-required".to_owned(), required.to_string()));
        }
    }
    if (200..300).contains(&result.status)
        && let Value::Object(mut body) = result.json()
    {
        body.insert("protocol_version".into(), Value::from("v1"));
        body.entry("continuation")
            .or_insert_with(|| json!({"suggested_next": []}));
        if let Ok(bytes) = serde_json::to_vec(&body) {
            result.body = bytes.into();
        }
    }
    result
}

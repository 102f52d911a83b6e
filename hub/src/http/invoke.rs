//! `POST /ai-market/v2/invoke`: parses the body and headers into an
//! [`InvokeCall`](crate::invoke::InvokeCall) and writes the [`InvokeResult`] back. All the
//! logic lives in [`crate::invoke`].

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use tracing::Instrument as _;

use crate::http::error::ApiError;
use crate::invoke::{BuyerHeaders, InvokeCall, InvokeError, InvokeRequest, InvokeResult};
use crate::state::AppState;

/// Largest invoke body accepted (the provider scaffold itself refuses more than 1 MiB).
pub const MAX_INVOKE_BODY: usize = 4 * 1024 * 1024;

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/ai-market/v2/invoke")
            .app_data(web::PayloadConfig::new(MAX_INVOKE_BODY))
            .route(web::post().to(invoke)),
    );
}

async fn invoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let request = InvokeRequest::from_slice(&body, state.invoker.own_origin())?;
    let headers = buyer_headers(&req)?;
    let caller = crate::http::client::caller(&req, &state.settings.trusted_proxies);
    let call = InvokeCall::new(request, headers, caller);
    // Run on a task of its own: if the buyer disconnects, the call still settles (capture or
    // release) instead of leaving a hold for the sweeper, and the hub is never left having
    // paid a provider for a call it did not bill.
    // The task carries the request's span (a no-op span when traces are off).
    let span = crate::telemetry::current_span();
    let result = actix_web::rt::spawn(
        async move { crate::invoke::invoke(&state.invoke_deps(), call).await }.instrument(span),
    )
    .await
    .map_err(|e| ApiError::internal(std::io::Error::other(format!("invoke task failed: {e}"))))?;
    Ok(into_response(result))
}

/// The single value of header `name`: absent is `None`, text outside visible ASCII is a 400
/// (payment headers are forwarded byte for byte, so they must be valid header text).
fn header(req: &HttpRequest, name: &str) -> Result<Option<String>, ApiError> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim().to_owned()).filter(|v| !v.is_empty()))
            .map_err(|_| {
                InvokeError::BadRequest(format!("header `{name}` is not valid visible ASCII"))
                    .into()
            }),
    }
}

pub(crate) fn buyer_headers(req: &HttpRequest) -> Result<BuyerHeaders, ApiError> {
    Ok(BuyerHeaders {
        channel_id: header(req, "x-payment-channel")?,
        channel_secret: header(req, "x-payment-channel-secret")?,
        // Header names are case-insensitive: `X-PAYMENT` is the same header.
        x_payment: header(req, "x-payment")?,
        payment_signature: header(req, "payment-signature")?,
        x_payment_nonce: header(req, "x-payment-nonce")?,
        x_payment_secret: header(req, "x-payment-secret")?,
        idempotency_key: header(req, "idempotency-key")?,
        api_key: header(req, "x-api-key")?,
        traceparent: header(req, "traceparent").ok().flatten(),
        request_id: header(req, "x-request-id").ok().flatten(),
    })
}

pub(crate) fn into_response(result: InvokeResult) -> HttpResponse {
    let status = StatusCode::from_u16(result.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = HttpResponse::build(status);
    for (name, value) in &result.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.append_header((name, value));
        }
    }
    response.body(result.body)
}

//! The actix glue of the hub's errors: an [`ApiError`] (built below HTTP, in
//! [`crate::error_code`], where each area's error picks its code and the code its status)
//! becomes a response here, and actix's own extractor and routing errors become the same
//! protocol error body. No status is chosen in this module except the framework's own
//! (a 408 or 431 actix produced keeps its status).

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

pub use crate::error_code::{ApiError, Code, ErrorKind};

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        self.log_if_internal();
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(self.body())
    }
}

/// Turns actix's JSON body errors into the protocol body: 413/415 when the transport is wrong,
/// 400 `invalid_json` otherwise. Never a 500 for bad input.
fn json_error(error: actix_web::error::JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match &error {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => {
            ApiError::new(Code::PayloadTooLarge, error.to_string())
        }
        E::ContentType => ApiError::new(
            Code::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        _ => ApiError::new(Code::InvalidJson, error.to_string()),
    };
    api.into()
}

/// Bad query strings become 400 `bad_request` naming the problem.
fn query_error(error: actix_web::error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("invalid query parameters: {error}")).into()
}

/// Bad path segments become 400 `bad_request`.
fn path_error(error: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("invalid path parameter: {error}")).into()
}

/// Default JSON body limit for endpoints that do not set their own.
pub const DEFAULT_JSON_LIMIT: usize = 1024 * 1024;

/// Registers the extractor error handlers above as app data.
pub fn configure_extractors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(DEFAULT_JSON_LIMIT)
            .error_handler(json_error),
    )
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .app_data(web::PathConfig::default().error_handler(path_error));
}

/// The answer for unknown paths.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        Code::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

/// Middleware that gives actix's own bare error responses (a 405 from a resource with no
/// matching method, say) the protocol body. Only responses with an empty body and no
/// `Content-Type` are rewritten, so relayed upstream errors pass through verbatim.
pub fn error_handlers<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(render_bare_error)
}

fn render_bare_error<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let bare = !res.headers().contains_key(header::CONTENT_TYPE)
        && matches!(
            res.response().body().size(),
            BodySize::None | BodySize::Sized(0)
        );
    // An error actix rendered itself (e.g. a `Content-Encoding: gzip` body that does not
    // decode, read by a `Bytes` extractor) comes as `text/plain`; ours are always JSON.
    // Issue #13: these reached clients without the protocol body.
    let foreign = res.response().error().is_some()
        && !res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
    if !bare && !foreign {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    // The framework's own message says what was wrong with the request (never internals of
    // ours); for a server error only the status is told.
    let message = res
        .response()
        .error()
        .filter(|_| status.is_client_error())
        .map(ToString::to_string)
        .filter(|m| !m.is_empty());
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
        s if s.is_client_error() => Code::BadRequest,
        _ => Code::InternalError,
    };
    let detail = match (message, status.canonical_reason()) {
        (Some(message), _) => message,
        (None, Some(reason)) => reason.to_owned(),
        (None, None) => status.to_string(),
    };
    let api = ApiError::new(code, detail);
    let (req, _) = res.into_parts();
    let mut response = api.error_response();
    // Keep the real status (e.g. 408, 431) when it is not one of our kinds.
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body(),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn retry_after_header_and_status() {
        let e = ApiError::new(Code::RateLimited, "slow down").with_retry_after(7);
        let r = e.error_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "7");
    }

    /// Every kind's status is one actix knows, so the glue never falls back to a 500.
    #[test]
    fn every_code_has_a_valid_status() {
        for code in Code::ALL {
            let e = ApiError::new(*code, "x");
            assert_eq!(e.status_code().as_u16(), code.kind().status(), "{code}");
        }
    }
}

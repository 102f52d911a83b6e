//! THE single place where errors become HTTP responses.
//!
//! Every handler returns `Result<_, ApiError>`. An [`ApiError`] carries an [`ErrorKind`] (a
//! deliberately small set, the only thing that decides the HTTP status), a stable snake_case
//! wire code (the body's `error` field, e.g. `capability_not_found`) and a human `detail`.
//! Every error renders the protocol error body:
//!
//! ```json
//! {"success": false, "error": "<code>", "detail": "...", "protocol_version": "v2"}
//! ```
//!
//! plus any extra fields the caller attached (`with_field`). Lower crates' error enums are
//! converted in the child module `from` (`impl From<…> for ApiError`), next to the mapping,
//! so no other module chooses a status code. Please introduce new kinds thoughtfully; new wire codes go in
//! [`code`].

use std::fmt;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::{Map, Value};

mod from;
mod pipeline;

/// Stable wire codes (the body's `error` field). Clients switch on these; never rename one.
pub mod code {
    /// Generic malformed request (bad query or path parameter, invalid value).
    pub const BAD_REQUEST: &str = "bad_request";
    /// The request body is not valid JSON or does not have the expected shape.
    pub const INVALID_JSON: &str = "invalid_json";
    /// No such route or resource.
    pub const NOT_FOUND: &str = "not_found";
    /// The route exists but not for this method.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// The body is larger than this endpoint accepts.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// The body's content type is not accepted here.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// No or unknown credentials (admin endpoints without a configured/presented token).
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// Credentials presented but not sufficient.
    pub const FORBIDDEN: &str = "forbidden";
    /// Too many requests; see `Retry-After`.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// A bug or an infrastructure failure on this hub; details are logged, not returned.
    pub const INTERNAL_ERROR: &str = "internal_error";
    /// A dependency of this hub (database, Redis) is temporarily unavailable.
    pub const UNAVAILABLE: &str = "service_unavailable";
    /// A protocol document (manifest, receipt, announce, …) is invalid or badly signed.
    pub const INVALID_DOCUMENT: &str = "invalid_document";
    /// No peer with this URL or id.
    pub const PEER_NOT_FOUND: &str = "peer_not_found";
    /// No active peer offers the invoked capability.
    pub const CAPABILITY_NOT_FOUND: &str = "capability_not_found";
    /// An invoke without `product_id` whose capability id several products list.
    pub const AMBIGUOUS_CAPABILITY: &str = "ambiguous_capability";
    /// A seller-direct call when this hub charges its routing fee on a channel and none was
    /// presented.
    pub const ROUTING_FEE_REQUIRED: &str = "routing_fee_required";
    /// The invoke's `source_hub` is a peer that has not been admitted.
    pub const PEER_PENDING: &str = "peer_pending";
    /// The invoke's `input` does not match the capability's input schema.
    pub const INPUT_INVALID: &str = "input_invalid";
    /// The invoke's `max_price_usd` is below the routed price.
    pub const PRICE_LIMIT_EXCEEDED: &str = "price_limit_exceeded";
    /// An `Idempotency-Key` reused with a different request.
    pub const IDEMPOTENCY_CONFLICT: &str = "idempotency_conflict";
    /// An `Idempotency-Key` whose first request is still running.
    pub const IDEMPOTENCY_IN_FLIGHT: &str = "idempotency_in_flight";
    /// The provider did not answer in time.
    pub const PROVIDER_TIMEOUT: &str = "provider_timeout";
    /// The provider was unreachable or answered unusably.
    pub const PROVIDER_ERROR: &str = "provider_error";
    /// The provider's `X-Provider-Signature` does not verify.
    pub const PROVIDER_SIGNATURE_INVALID: &str = "provider_signature_invalid";
    /// 402 on invoke: the call needs payment; `reason` says why (`channel_not_found`,
    /// `channel_closed`, `channel_expired`, `insufficient_balance`, …) and `hub_payment`
    /// how to pay this hub.
    pub const PAYMENT_REQUIRED: &str = "payment_required";
    /// 401 on invoke: an `X-API-Key` this hub does not accept.
    pub const INVALID_API_KEY: &str = "invalid_api_key";
    /// The hub could not pay the provider for a channel-funded call.
    pub const PROVIDER_PAYMENT_FAILED: &str = "provider_payment_failed";
    /// A money amount that is negative, not a number or absurd.
    pub const INVALID_AMOUNT: &str = "invalid_amount";
    /// Channel open without `tx_hash` where only on-chain deposits are accepted.
    pub const TX_HASH_REQUIRED: &str = "tx_hash_required";
    /// Neither demo payments nor an on-chain verifier is configured.
    pub const PAYMENTS_UNAVAILABLE: &str = "payments_unavailable";
    /// The deposit transaction does not prove the deposit.
    pub const DEPOSIT_NOT_VERIFIED: &str = "deposit_not_verified";
    /// The chain node that verifies deposits could not be asked.
    pub const PAYMENT_VERIFIER_UNAVAILABLE: &str = "payment_verifier_unavailable";
    /// An on-chain deposit without the payer proof (400).
    pub const PAYER_PROOF_REQUIRED: &str = "payer_proof_required";
    /// A payer proof whose signature is not the payer's (403).
    pub const PAYER_PROOF_INVALID: &str = "payer_proof_invalid";
    /// A channel open by someone other than the deposit's sender (403).
    pub const NOT_PAYER: &str = "not_payer";
    /// An x402 payment to the hub that does not pay (402).
    pub const PAYMENT_INVALID: &str = "payment_invalid";
    /// 402: a paid call on an escrow channel without a valid `payment_authorization`.
    pub const PAYMENT_AUTHORIZATION_REQUIRED: &str = "payment_authorization_required";
    /// The transaction already funded a channel.
    pub const TX_ALREADY_USED: &str = "tx_already_used";
    /// No payment channel with this id.
    pub const CHANNEL_NOT_FOUND: &str = "channel_not_found";
    /// Missing or wrong `X-Payment-Channel-Secret`.
    pub const CHANNEL_UNAUTHORIZED: &str = "channel_unauthorized";
    /// The channel's lifetime ended.
    pub const CHANNEL_EXPIRED: &str = "channel_expired";
    /// The channel was closed.
    pub const CHANNEL_CLOSED: &str = "channel_closed";
    /// The channel's balance does not cover the call.
    pub const INSUFFICIENT_BALANCE: &str = "insufficient_balance";
    /// Close refused while calls paid from the channel are in flight.
    pub const CHANNEL_BUSY: &str = "channel_busy";
    /// No stored receipt with this nonce.
    pub const RECEIPT_NOT_FOUND: &str = "receipt_not_found";
    /// A fail-closed plugin failed while ranking (search) or routing.
    pub const PLUGIN_UNAVAILABLE: &str = "plugin_unavailable";
    /// 403: a plugin blocked the invoke (before the call, or its answer after it).
    pub const BLOCKED: &str = "blocked";
    /// 403: route plugins left no provider that may serve the call.
    pub const NO_PROVIDER: &str = "no_provider";
    /// A URL fails spec §7.4 (syntax, address range or resolution).
    pub const UNSAFE_URL: &str = "unsafe_url";
    /// Unauthenticated announcements are refused: open admission is off.
    pub const ADMISSION_CLOSED: &str = "admission_closed";
    /// The bound on pending peers is reached (spec §2.4 rule 3).
    pub const PENDING_LIMIT: &str = "pending_peers_full";
    /// The live stats stream has as many clients as it serves.
    pub const TOO_MANY_STREAMS: &str = "too_many_streams";
    /// No Pay-on-Verified verdict for this receipt nonce.
    pub const VERIFICATION_NOT_FOUND: &str = "verification_not_found";
    /// A pipeline that cannot run: shape, unknown or cyclic nodes, unknown capabilities.
    pub const PIPELINE_INVALID: &str = "pipeline_invalid";
    /// A pipeline whose routed prices add up to more than its `max_total_usd`.
    pub const BUDGET_EXCEEDED: &str = "budget_exceeded";
    /// No stored pipeline run with this trace id.
    pub const PIPELINE_NOT_FOUND: &str = "pipeline_not_found";
}

/// The restricted set of error classes; each maps to exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or a value is invalid.
    BadRequest,
    /// 401: authentication missing or unknown.
    Unauthorized,
    /// 402: payment required or insufficient.
    PaymentRequired,
    /// 403: authenticated/understood but not allowed.
    Forbidden,
    /// 404: no such resource.
    NotFound,
    /// 405: wrong method for an existing route.
    MethodNotAllowed,
    /// 409: conflicts with the current state (idempotency key reuse, price limit, …).
    Conflict,
    /// 413: body too large.
    PayloadTooLarge,
    /// 415: unsupported content type.
    UnsupportedMediaType,
    /// 429: rate limited or a bound reached.
    TooManyRequests,
    /// 500: a bug or unexpected failure inside this hub.
    Internal,
    /// 502: an upstream (provider, peer) answered badly.
    BadGateway,
    /// 503: a dependency of this hub is unavailable.
    Unavailable,
    /// 504: an upstream did not answer in time.
    GatewayTimeout,
}

impl ErrorKind {
    /// The HTTP status of this kind: the only kind → status mapping in the hub.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::PaymentRequired => StatusCode::PAYMENT_REQUIRED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// An error on its way to the client. Build with [`ApiError::new`] or a shortcut, optionally
/// add fields or `Retry-After`, and return it from a handler.
pub struct ApiError {
    kind: ErrorKind,
    code: &'static str,
    detail: String,
    extra: Map<String, Value>,
    retry_after_s: Option<u64>,
    /// What really happened, for logs only (internal errors hide it from clients).
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    /// An error of `kind` with wire `code` and a human `detail`.
    pub fn new(kind: ErrorKind, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            detail: detail.into(),
            extra: Map::new(),
            retry_after_s: None,
            source: None,
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code::BAD_REQUEST, detail)
    }

    /// 404 with the given code (`not_found`, `capability_not_found`, …).
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, detail)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, code::UNAUTHORIZED, detail)
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code::FORBIDDEN, detail)
    }

    /// 500 `internal_error`. The client sees only a generic detail; `source` is logged with
    /// its whole cause chain when the response is rendered.
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let mut error = Self::new(ErrorKind::Internal, code::INTERNAL_ERROR, "internal error");
        error.source = Some(source.into());
        error
    }

    /// Adds a field to the body (e.g. both prices of a `price_limit_exceeded`). The four
    /// standard fields cannot be overridden.
    pub fn with_field(mut self, key: &str, value: impl Into<Value>) -> Self {
        if !matches!(key, "success" | "error" | "detail" | "protocol_version") {
            self.extra.insert(key.to_owned(), value.into());
        }
        self
    }

    /// Adds a `Retry-After` header (seconds), for 429 and 503.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The wire code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The human detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The `Retry-After` seconds, if set.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after_s
    }

    /// The protocol error body.
    pub fn body(&self) -> Value {
        let mut body = self.extra.clone();
        body.insert("success".into(), Value::Bool(false));
        body.insert("error".into(), Value::from(self.code));
        body.insert("detail".into(), Value::from(self.detail.as_str()));
        body.insert("protocol_version".into(), Value::from("v2"));
        Value::Object(body)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl fmt::Debug for ApiError {
    /// Prints the whole cause chain, so a logged internal error says what really failed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = match &self.source {
            Some(source) => Some(source.as_ref()),
            None => None,
        };
        while let Some(c) = cause {
            write!(f, "\n  caused by: {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(source) => Some(source.as_ref()),
            None => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind.status()
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        if self.kind == ErrorKind::Internal {
            tracing::error!(error = ?self, "request failed with an internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after_s {
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
        E::OverflowKnownLength { .. } | E::Overflow { .. } => ApiError::new(
            ErrorKind::PayloadTooLarge,
            code::PAYLOAD_TOO_LARGE,
            error.to_string(),
        ),
        E::ContentType => ApiError::new(
            ErrorKind::UnsupportedMediaType,
            code::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        ),
        _ => ApiError::new(ErrorKind::BadRequest, code::INVALID_JSON, error.to_string()),
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
    Err(ApiError::not_found(
        code::NOT_FOUND,
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
    let (kind, code) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (ErrorKind::MethodNotAllowed, code::METHOD_NOT_ALLOWED),
        StatusCode::NOT_FOUND => (ErrorKind::NotFound, code::NOT_FOUND),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorKind::PayloadTooLarge, code::PAYLOAD_TOO_LARGE),
        s if s.is_client_error() => (ErrorKind::BadRequest, code::BAD_REQUEST),
        _ => (ErrorKind::Internal, code::INTERNAL_ERROR),
    };
    let detail = match (message, status.canonical_reason()) {
        (Some(message), _) => message,
        (None, Some(reason)) => reason.to_owned(),
        (None, None) => status.to_string(),
    };
    let api = ApiError::new(kind, code, detail);
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
    use crate::store::StoreError;
    use aimarket_protocol::error::ProtocolError;

    #[test]
    fn body_has_the_protocol_shape() {
        let e = ApiError::new(ErrorKind::Conflict, "price_limit_exceeded", "too dear")
            .with_field("routed_price_usd", 0.404)
            .with_field("success", true);
        assert_eq!(e.status_code(), StatusCode::CONFLICT);
        let body = e.body();
        assert_eq!(body["success"], false);
        assert_eq!(body["error"], "price_limit_exceeded");
        assert_eq!(body["detail"], "too dear");
        assert_eq!(body["protocol_version"], "v2");
        assert_eq!(body["routed_price_usd"], 0.404);
    }

    #[test]
    fn internal_errors_hide_the_cause_but_debug_shows_it() {
        let io = std::io::Error::other("disk on fire");
        let e = ApiError::internal(io);
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.body().to_string().contains("disk on fire"));
        assert!(format!("{e:?}").contains("disk on fire"));
    }

    #[test]
    fn retry_after_header() {
        let e = ApiError::new(ErrorKind::TooManyRequests, code::RATE_LIMITED, "slow down")
            .with_retry_after(7);
        let r = e.error_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "7");
    }

    #[test]
    fn protocol_errors_are_bad_requests_with_their_reason() {
        let e = ApiError::from(ProtocolError::MissingField("nonce"));
        assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
        assert_eq!(e.body()["reason"], "missing_field");
        assert!(e.detail().contains("nonce"));
    }

    #[test]
    fn payment_errors_map_to_402_404_409_with_the_ledger_code() {
        use crate::payments::{PaymentError as P, SecretProblem};
        let cases = [
            (
                P::InsufficientBalance {
                    balance_micros: 500,
                    needed_micros: 1_000,
                },
                StatusCode::PAYMENT_REQUIRED,
            ),
            (
                P::BadSecret {
                    problem: SecretProblem::Missing,
                },
                StatusCode::PAYMENT_REQUIRED,
            ),
            (
                P::Expired {
                    channel_id: "c".into(),
                },
                StatusCode::PAYMENT_REQUIRED,
            ),
            (
                P::Closed {
                    channel_id: "c".into(),
                },
                StatusCode::PAYMENT_REQUIRED,
            ),
            (
                P::ChannelNotFound {
                    channel_id: "c".into(),
                },
                StatusCode::NOT_FOUND,
            ),
            (
                P::TxAlreadyUsed {
                    tx_hash: "t".into(),
                },
                StatusCode::CONFLICT,
            ),
            (P::PaymentsUnavailable, StatusCode::SERVICE_UNAVAILABLE),
            (P::TxHashRequired, StatusCode::BAD_REQUEST),
            (
                P::InvalidAmount {
                    what: "deposit_usd",
                    reason: "must be greater than 0".into(),
                },
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (error, status) in cases {
            let ledger_code = error.code();
            let reason = error.reason();
            let api = ApiError::from(error);
            assert_eq!((api.status_code(), api.code()), (status, ledger_code));
            if let Some(reason) = reason {
                assert_eq!(api.body()["reason"], reason);
                assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
            }
        }
        let body = ApiError::from(P::InsufficientBalance {
            balance_micros: 500,
            needed_micros: 1_000,
        })
        .body();
        assert_eq!(
            (body["balance_usd"].as_f64(), body["needed"].as_f64()),
            (Some(0.0005), Some(0.001))
        );
        let api = ApiError::from(P::HoldNotFound {
            hold_id: "h".into(),
        });
        assert_eq!(api.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// A one-connection pool on the test PostgreSQL; `None` (skipped, said so) when it is
    /// unreachable and `CI` is not set, a failure when it is.
    async fn test_pool() -> Option<sqlx::PgPool> {
        let url = std::env::var("AIMARKET_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        match sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(&url)
            .await
        {
            Ok(pool) => Some(pool),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIP: PostgreSQL error-mapping test, {url} unreachable: {e}");
                None
            }
            Err(e) => panic!("PostgreSQL at {url} unreachable and CI is set: {e}"),
        }
    }

    /// A NUL byte reaching PostgreSQL is the request's fault: 400, never a 500.
    #[tokio::test]
    async fn text_postgres_cannot_store_is_a_bad_request() {
        let Some(pool) = test_pool().await else {
            return;
        };
        let error = sqlx::query("SELECT $1::text")
            .bind("ch_\u{0}x")
            .execute(&pool)
            .await
            .expect_err("PostgreSQL refuses a NUL byte in text");
        let api = ApiError::from(StoreError::Database(error));
        assert_eq!(api.status_code(), StatusCode::BAD_REQUEST);
        assert_eq!(api.code(), code::BAD_REQUEST);
    }

    /// Issue #13: a PostgreSQL restart terminates open connections (SQLSTATE 57P01); the
    /// query that was running is 503 `unavailable`, never a 500.
    #[tokio::test]
    async fn a_terminated_postgres_connection_is_unavailable() {
        let Some(pool) = test_pool().await else {
            return;
        };
        let error = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
            .execute(&pool)
            .await
            .expect_err("a backend terminating itself fails the query");
        let api = ApiError::from(StoreError::Database(error));
        assert_eq!(
            api.status_code(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{api:?}"
        );
        assert_eq!(api.code(), code::UNAVAILABLE);
    }
}

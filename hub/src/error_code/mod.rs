//! Errors as the API reports them, below any transport.
//!
//! Every area has one error enum (invoke, payments, catalog, federation, reputation, store,
//! pipelines, crawl, MCP lookups) and implements [`ErrorCode`] next to it: the area picks a
//! [`Code`] for each failure and adds the body fields only it knows. A [`Code`] belongs to
//! exactly one [`ErrorKind`], and [`ErrorKind::status`] is the only kind → HTTP status
//! mapping in the hub. [`ApiError`] is the rendered result (code, detail, extra fields,
//! `Retry-After`) and [`ApiError::body`] the one renderer of the protocol error body:
//!
//! ```json
//! {"success": false, "error": "<code>", "detail": "...", "protocol_version": "v2"}
//! ```
//!
//! The HTTP layer (`http::error`) only turns an [`ApiError`] into an actix response; the
//! in-process callers (the MCP tools, `InvokeResult`) read the same status and body.

use std::fmt;

use serde_json::{Map, Value};

mod code;
mod external;

pub use code::Code;

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
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::PaymentRequired => 402,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::TooManyRequests => 429,
            Self::Internal => 500,
            Self::BadGateway => 502,
            Self::Unavailable => 503,
            Self::GatewayTimeout => 504,
        }
    }
}

/// A domain error that knows how the API reports it. Implemented next to each area's error
/// enum, so the area decides the code and the transport decides nothing.
pub trait ErrorCode: std::error::Error + Send + Sync + 'static {
    /// The wire code; its kind decides the status. [`Code::InternalError`] hides the
    /// detail from the client and logs the error instead.
    fn wire_code(&self) -> Code;

    /// The wrapped error this one only passes on (a store error inside a catalog error):
    /// the client then reads the wrapped error's detail and fields, as if it had been
    /// returned directly. `None` by default.
    fn passes_on(&self) -> Option<&dyn ErrorCode> {
        None
    }

    /// The body's `detail`: by default the error's message.
    fn detail(&self) -> String {
        self.to_string()
    }

    /// Adds the fields only this error knows (and `Retry-After`) to its rendering.
    fn decorate(&self, api: ApiError) -> ApiError {
        api
    }
}

/// The error that `error` passes on, through any number of wrappers.
fn innermost(error: &dyn ErrorCode) -> &dyn ErrorCode {
    let mut shown = error;
    while let Some(inner) = shown.passes_on() {
        shown = inner;
    }
    shown
}

/// An error on its way to a client (HTTP or MCP). Built from a domain error through
/// [`ErrorCode`] (`?` converts), or directly with [`ApiError::new`] for refusals of the
/// transport itself.
pub struct ApiError {
    code: Code,
    detail: String,
    extra: Map<String, Value>,
    retry_after_s: Option<u64>,
    /// What really happened, for logs only (internal errors hide it from clients).
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl<E: ErrorCode> From<E> for ApiError {
    fn from(error: E) -> Self {
        let code = error.wire_code();
        if code == Code::InternalError {
            return Self::internal(error);
        }
        let shown = innermost(&error);
        shown.decorate(Self::new(code, shown.detail()))
    }
}

impl ApiError {
    /// An error with wire `code` and a human `detail`.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            extra: Map::new(),
            retry_after_s: None,
            source: None,
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, detail)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(Code::Unauthorized, detail)
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, detail)
    }

    /// 500 `internal_error`. The client sees only a generic detail; `source` is logged with
    /// its whole cause chain when the response is rendered.
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let mut error = Self::new(Code::InternalError, "internal error");
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
        self.code.kind()
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.kind().status()
    }

    /// The wire code.
    pub fn code(&self) -> Code {
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
        body.insert("error".into(), Value::from(self.code.as_str()));
        body.insert("detail".into(), Value::from(self.detail.as_str()));
        body.insert("protocol_version".into(), Value::from("v2"));
        Value::Object(body)
    }

    /// Logs an internal error with its cause chain (clients only see "internal error").
    pub fn log_if_internal(&self) {
        if self.kind() == ErrorKind::Internal {
            tracing::error!(error = ?self, "request failed with an internal error");
        }
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

#[cfg(test)]
mod tests;

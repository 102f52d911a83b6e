//! The crawler's one error type. Each variant names exactly what was wrong with a peer, so the
//! hub can store `to_string()` as the peer's `last_error` and `code()` as a stable tag.

use std::time::Duration;

use crate::url_safety::UrlError;

/// Which document of a peer an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// `/.well-known/ai-market.json`.
    WellKnown,
    /// The manifest named by the well-known's `manifest_url`.
    Manifest,
}

impl std::fmt::Display for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Document::WellKnown => "well-known",
            Document::Manifest => "manifest",
        })
    }
}

/// Everything that can go wrong fetching or verifying a peer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CrawlError {
    /// A URL failed spec §7.4 (syntax, address range, or resolved address).
    #[error("unsafe URL {url}: {reason}")]
    UnsafeUrl {
        /// The URL as given (or as far as it could be rendered).
        url: String,
        /// Which rule it broke.
        reason: UrlError,
    },
    /// The host name did not resolve.
    #[error("DNS lookup failed for {host}: {detail}")]
    Dns {
        /// Host that failed.
        host: String,
        /// Resolver message.
        detail: String,
    },
    /// TCP/TLS connection could not be established.
    #[error("cannot connect to {url}: {detail}")]
    Connect {
        /// URL being fetched.
        url: String,
        /// Transport message.
        detail: String,
    },
    /// Any other transport failure (reset, protocol error, bad TLS, ...).
    #[error("transport error fetching {url}: {detail}")]
    Transport {
        /// URL being fetched.
        url: String,
        /// Transport message.
        detail: String,
    },
    /// The request did not complete within the total time limit (rule 4 of §7.4).
    #[error("request to {url} timed out after {}s", after.as_secs_f64())]
    Timeout {
        /// URL being fetched.
        url: String,
        /// The limit that was hit.
        after: Duration,
    },
    /// Unexpected HTTP status.
    #[error("HTTP {status} from {url}")]
    Http {
        /// The status code.
        status: u16,
        /// URL that answered.
        url: String,
    },
    /// The body exceeded its cap (declared in `Content-Length`, or while streaming).
    #[error("{document} body exceeds {limit} bytes")]
    TooLarge {
        /// Which document.
        document: Document,
        /// The cap in bytes.
        limit: usize,
    },
    /// The connection closed before `Content-Length` bytes arrived.
    #[error("body truncated: {received} of {expected} bytes received")]
    Truncated {
        /// Declared length.
        expected: u64,
        /// Bytes actually received.
        received: u64,
    },
    /// `Content-Type` declared something other than JSON (e.g. an HTML error page).
    #[error("{document} has content type {content_type:?}, not JSON")]
    ContentType {
        /// Which document.
        document: Document,
        /// The declared type.
        content_type: String,
    },
    /// The body is not valid JSON, or not a JSON object.
    #[error("{document} is not a JSON object: {detail}")]
    NotJson {
        /// Which document.
        document: Document,
        /// Parser message.
        detail: String,
    },
    /// More than the allowed number of redirect hops.
    #[error("more than {limit} redirects")]
    TooManyRedirects {
        /// The hop limit.
        limit: usize,
    },
    /// A redirect chain came back to a URL it had already visited.
    #[error("redirect loop at {url}")]
    RedirectLoop {
        /// The repeated URL.
        url: String,
    },
    /// A 3xx answer without a usable `Location`.
    #[error("HTTP {status} redirect without a Location header")]
    RedirectWithoutLocation {
        /// The status code.
        status: u16,
    },
    /// The host is cooling down after recent failures; not contacted.
    #[error("host {host} is backing off after errors; retry in {}s", retry_in.as_secs())]
    Backoff {
        /// `host:port`.
        host: String,
        /// Time until the host may be contacted again.
        retry_in: Duration,
    },
    /// The document does not satisfy its JSON Schema.
    #[error("{document} fails its schema: {}", errors.join("; "))]
    Schema {
        /// Which document.
        document: Document,
        /// Validator messages (capped).
        errors: Vec<String>,
    },
    /// The manifest has no `signature` object.
    #[error("manifest is unsigned")]
    Unsigned,
    /// No key to verify with: nothing pinned and none presented.
    #[error("no signer public key: none pinned and none presented")]
    NoKey,
    /// A presented or pinned key is not a valid Ed25519 public key.
    #[error("invalid signer public key {key:?}: {detail}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why it is invalid.
        detail: String,
    },
    /// The signature does not verify over the five-field canonical (spec §7.3.2). Covers
    /// wrong signatures, tampered documents and legacy three-field signatures alike.
    #[error("manifest signature invalid: {detail}")]
    Signature {
        /// Verifier message.
        detail: String,
    },
    /// The peer presents a different key from the one pinned for it (or its well-known and
    /// manifest disagree about the key).
    #[error("signer key mismatch: pinned {pinned}, presented {presented}")]
    KeyMismatch {
        /// The key we hold.
        pinned: String,
        /// The key the peer presented.
        presented: String,
    },
    /// `generated_at` is older than the freshness window.
    #[error("manifest is stale: generated_at {generated_at}")]
    Stale {
        /// The value as served.
        generated_at: String,
    },
    /// `generated_at` is further in the future than the allowed clock skew.
    #[error("manifest generated_at {generated_at} is in the future")]
    Future {
        /// The value as served.
        generated_at: String,
    },
    /// `generated_at` is not an RFC 3339 timestamp.
    #[error("manifest generated_at {generated_at:?} is not an RFC 3339 timestamp")]
    BadTimestamp {
        /// The value as served.
        generated_at: String,
    },
    /// The HTTP client could not be built (TLS or resolver set-up).
    #[error("crawler set-up failed: {detail}")]
    Setup {
        /// What failed.
        detail: String,
    },
}

impl CrawlError {
    /// Stable machine-readable tag, e.g. for metrics and the peers endpoint.
    pub fn code(&self) -> &'static str {
        match self {
            CrawlError::UnsafeUrl { .. } => "unsafe_url",
            CrawlError::Dns { .. } => "dns",
            CrawlError::Connect { .. } => "connect",
            CrawlError::Transport { .. } => "transport",
            CrawlError::Timeout { .. } => "timeout",
            CrawlError::Http { .. } => "http_status",
            CrawlError::TooLarge { .. } => "too_large",
            CrawlError::Truncated { .. } => "truncated",
            CrawlError::ContentType { .. } => "content_type",
            CrawlError::NotJson { .. } => "not_json",
            CrawlError::TooManyRedirects { .. } => "too_many_redirects",
            CrawlError::RedirectLoop { .. } => "redirect_loop",
            CrawlError::RedirectWithoutLocation { .. } => "redirect_without_location",
            CrawlError::Backoff { .. } => "backoff",
            CrawlError::Schema { .. } => "schema",
            CrawlError::Unsigned => "unsigned",
            CrawlError::NoKey => "no_key",
            CrawlError::InvalidKey { .. } => "invalid_key",
            CrawlError::Signature { .. } => "signature",
            CrawlError::KeyMismatch { .. } => "key_mismatch",
            CrawlError::Stale { .. } => "stale",
            CrawlError::Future { .. } => "future",
            CrawlError::BadTimestamp { .. } => "bad_timestamp",
            CrawlError::Setup { .. } => "setup",
        }
    }

    /// True when the peer answered and what it served was refused: unsafe URLs (including
    /// redirects to forbidden addresses), redirect loops, oversized or non-JSON bodies,
    /// schema, signature, key and freshness failures. False for trouble reaching the peer
    /// (DNS, connection, timeouts, truncation, HTTP errors, backoff) and for set-up failures.
    pub fn is_rejection(&self) -> bool {
        !matches!(
            self,
            CrawlError::Dns { .. }
                | CrawlError::Connect { .. }
                | CrawlError::Transport { .. }
                | CrawlError::Timeout { .. }
                | CrawlError::Http { .. }
                | CrawlError::Truncated { .. }
                | CrawlError::Backoff { .. }
                | CrawlError::Setup { .. }
        )
    }

    /// True for failures that say something about the host's health (transport trouble,
    /// 429, 5xx): these start or extend the host's backoff. Content problems do not.
    pub fn is_host_failure(&self) -> bool {
        match self {
            CrawlError::Connect { .. }
            | CrawlError::Transport { .. }
            | CrawlError::Timeout { .. }
            | CrawlError::Truncated { .. } => true,
            CrawlError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

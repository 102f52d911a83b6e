//! The upstream HTTP side: pooled keep-alive clients, the headers sent to a provider, and
//! bounded reading of its answer.
//!
//! Header hygiene is by construction: the outgoing request starts from an empty header map
//! and gets only what is listed in [`OutgoingHeaders`]. Nothing the buyer sent is copied
//! wholesale, so hop-by-hop headers (`Connection`, `Keep-Alive`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`, `Proxy-*`) and hub-private ones (`X-Payment-Channel`,
//! `X-Payment-Channel-Secret`, `Authorization`, `Cookie`, `X-API-Key`, `Idempotency-Key`)
//! can never leak. The body is a buffer of known length, so it is sent with
//! `Content-Length`, never chunked (the provider scaffold refuses chunked bodies).

use std::sync::Arc;
use std::time::Duration;

use aimarket_crawler::url_safety::PinnedResolver;
use aimarket_crawler::{SafeUrl, UrlPolicy};
use bytes::{Bytes, BytesMut};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use url::Url;

/// `User-Agent` of routed calls.
pub const USER_AGENT: &str = concat!(
    "AIMarketHub/2.0.0 (aimarket-hub-rs ",
    env!("CARGO_PKG_VERSION"),
    ")"
);
/// Bound on establishing a connection (the whole call has the provider timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle keep-alive connections kept per provider host.
const POOL_IDLE_PER_HOST: usize = 256;
/// Cap on small documents the hub fetches for itself (well-known probes, channel opens).
pub const SMALL_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Names of the headers this module writes or relays.
pub mod names {
    /// Routing fee in basis points (spec §4.1).
    pub const ROUTING_FEE: &str = "x-aimarket-routing-fee";
    /// This hub's public URL (spec §4.1).
    pub const ROUTING_HUB: &str = "x-aimarket-routing-hub";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// Request correlation id.
    pub const REQUEST_ID: &str = "x-request-id";
    /// Buyer's direct payment (v1 JSON or x402 payload).
    pub const X_PAYMENT: &str = "x-payment";
    /// x402 v2 payment payload.
    pub const PAYMENT_SIGNATURE: &str = "payment-signature";
    /// Payment nonce.
    pub const X_PAYMENT_NONCE: &str = "x-payment-nonce";
    /// The secret an x402 challenge handed the buyer.
    pub const X_PAYMENT_SECRET: &str = "x-payment-secret";
    /// x402 settlement answer (v2 spelling).
    pub const PAYMENT_RESPONSE: &str = "payment-response";
    /// x402 settlement answer (v1 spelling).
    pub const X_PAYMENT_RESPONSE: &str = "x-payment-response";
    /// The opaque, stable id of the buyer toward providers.
    pub const X_AIMARKET_BUYER: &str = "x-aimarket-buyer";
    /// What the buyer paid this hub for the call (6 decimals), on the hub-pays rail.
    pub const X_AIMARKET_HUB_CHARGED: &str = "x-aimarket-hub-charged";
    /// v1 402 challenge.
    pub const X_PAYMENT_REQUIRED: &str = "x-payment-required";
    /// x402 v2 402 challenge.
    pub const PAYMENT_REQUIRED: &str = "payment-required";
    /// Channel id (the hub's own, when it pays the provider).
    pub const X_PAYMENT_CHANNEL: &str = "x-payment-channel";
    /// Channel secret (the hub's own, when it pays the provider).
    pub const X_PAYMENT_CHANNEL_SECRET: &str = "x-payment-channel-secret";
    /// API key (the hub's own, when it pays the provider).
    pub const X_API_KEY: &str = "x-api-key";
    /// The provider's request-bound response signature (spec §7.1).
    pub const X_PROVIDER_SIGNATURE: &str = "x-provider-signature";
    /// Status of a relayed upstream answer.
    pub const UPSTREAM_STATUS: &str = "x-aimarket-upstream-status";
}

/// Why an upstream call produced no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The whole call took longer than the provider timeout.
    #[error("no answer within the timeout")]
    Timeout,
    /// The target's address is not allowed (spec §7.4).
    #[error("target refused by URL policy: {0}")]
    Refused(String),
    /// Connecting or sending failed.
    #[error("cannot reach the provider: {0}")]
    Connect(String),
    /// The answer is larger than the cap.
    #[error("answer larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// Reading the answer failed midway.
    #[error("reading the answer failed: {0}")]
    Read(String),
}

/// An upstream answer, body buffered.
#[derive(Debug)]
pub struct Upstream {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body (decompressed), at most the cap.
    pub body: Bytes,
}

impl Upstream {
    /// A header as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The headers of one forwarded call (see the module docs for what is never sent).
#[derive(Debug, Default)]
pub struct OutgoingHeaders {
    map: HeaderMap,
}

impl OutgoingHeaders {
    /// The routing headers every forwarded call carries.
    pub fn new(
        routing_fee_bps: u32,
        routing_hub: &str,
        traceparent: &str,
        request_id: &str,
    ) -> Self {
        let mut map = HeaderMap::with_capacity(10);
        map.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        map.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        map.insert(names::ROUTING_FEE, HeaderValue::from(routing_fee_bps));
        let mut out = Self { map };
        out.set(names::ROUTING_HUB, routing_hub);
        out.set(names::TRACEPARENT, traceparent);
        out.set(names::REQUEST_ID, request_id);
        out
    }

    /// Sets `name` to `value` exactly once (replacing any earlier value). Values that are not
    /// valid header text were refused at the edge; one that slips through is dropped.
    pub fn set(&mut self, name: &'static str, value: &str) {
        match HeaderValue::from_str(value) {
            Ok(v) => {
                self.map.insert(HeaderName::from_static(name), v);
            }
            Err(_) => tracing::warn!(header = name, "dropping an invalid header value"),
        }
    }

    /// The header map.
    pub fn into_map(self) -> HeaderMap {
        self.map
    }
}

/// The two pooled clients: one whose resolver enforces the address-range rule (peers a
/// stranger introduced), one exempt (operator-configured peers). Redirects are never
/// followed and environment proxies are ignored.
pub struct Forwarder {
    strangers: reqwest::Client,
    operator: reqwest::Client,
    policy: UrlPolicy,
    max_body: usize,
    timeout: Duration,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("policy", &self.policy)
            .field("max_body", &self.max_body)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Builds both clients. Must run inside a tokio runtime (the resolver spawns on it).
    pub fn new(policy: UrlPolicy, timeout: Duration, max_body: usize) -> Result<Self, String> {
        crate::startup::install_crypto_provider();
        let build = |operator: bool| -> Result<reqwest::Client, String> {
            let resolver = PinnedResolver::new(policy, operator).map_err(|e| e.to_string())?;
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(timeout)
                .connect_timeout(CONNECT_TIMEOUT.min(timeout))
                .tcp_nodelay(true)
                .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
                .pool_idle_timeout(Duration::from_secs(90))
                .dns_resolver(Arc::new(resolver))
                .build()
                .map_err(|e| format!("cannot build the provider HTTP client: {e}"))
        };
        Ok(Self {
            strangers: build(false)?,
            operator: build(true)?,
            policy,
            max_body,
            timeout,
        })
    }

    /// The configured whole-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The client for `url`. `operator_origin` is the origin of an operator-configured peer;
    /// the exemption from the address-range rule covers exactly that origin (scheme, host and
    /// port), so a URL on another origin, even another port of the same host, gets the
    /// strict client and the full §7.4 check (issue #13).
    fn client(
        &self,
        url: &Url,
        operator_origin: Option<&str>,
    ) -> Result<&reqwest::Client, ForwardError> {
        let operator =
            operator_origin.is_some_and(|origin| url.origin().ascii_serialization() == origin);
        if self.policy.applies(operator) {
            let safe =
                SafeUrl::parse(url.as_str()).map_err(|e| ForwardError::Refused(e.to_string()))?;
            self.policy
                .check(&safe, operator)
                .map_err(|e| ForwardError::Refused(e.to_string()))?;
        }
        Ok(if operator {
            &self.operator
        } else {
            &self.strangers
        })
    }

    /// POSTs `body` to `url` with exactly `headers`, and buffers the answer up to the cap.
    pub async fn post(
        &self,
        url: &Url,
        operator_origin: Option<&str>,
        headers: OutgoingHeaders,
        body: Vec<u8>,
    ) -> Result<Upstream, ForwardError> {
        let request = self
            .client(url, operator_origin)?
            .post(url.clone())
            .headers(headers.into_map())
            .body(body);
        self.execute(request, self.max_body).await
    }

    /// GETs a small JSON document (a peer's well-known) with its own short timeout.
    pub async fn get_json(
        &self,
        url: &Url,
        operator_origin: Option<&str>,
        timeout: Duration,
    ) -> Result<Value, ForwardError> {
        let request = self
            .client(url, operator_origin)?
            .get(url.clone())
            .header(header::ACCEPT, "application/json")
            .timeout(timeout.min(self.timeout));
        let answer = self.execute(request, SMALL_DOCUMENT_BYTES).await?;
        if !(200..300).contains(&answer.status) {
            return Err(ForwardError::Read(format!("HTTP {}", answer.status)));
        }
        serde_json::from_slice(&answer.body).map_err(|e| ForwardError::Read(e.to_string()))
    }

    /// POSTs a small JSON document and returns the status and the parsed answer (`Null` when
    /// it is not JSON); for the hub's own calls (opening a channel at a provider).
    pub async fn post_small_json(
        &self,
        url: &Url,
        operator_origin: Option<&str>,
        body: &Value,
    ) -> Result<(u16, Value), ForwardError> {
        let request = self
            .client(url, operator_origin)?
            .post(url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(body.to_string());
        let answer = self.execute(request, SMALL_DOCUMENT_BYTES).await?;
        let parsed = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        Ok((answer.status, parsed))
    }

    async fn execute(
        &self,
        request: reqwest::RequestBuilder,
        limit: usize,
    ) -> Result<Upstream, ForwardError> {
        let mut response = request.send().await.map_err(classify)?;
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(ForwardError::TooLarge { limit });
        }
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        let mut body = BytesMut::with_capacity(
            response
                .content_length()
                .map_or(8 * 1024, |n| usize::try_from(n).unwrap_or(limit).min(limit)),
        );
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > limit {
                return Err(ForwardError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Upstream {
            status,
            headers,
            body: body.freeze(),
        })
    }
}

/// Maps a reqwest failure onto the answer the buyer gets (timeout or not).
fn classify(e: reqwest::Error) -> ForwardError {
    if e.is_timeout() {
        return ForwardError::Timeout;
    }
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    if e.is_connect() || e.is_request() {
        ForwardError::Connect(detail)
    } else {
        ForwardError::Read(detail)
    }
}

/// The trace headers of one invoke (the same for every attempt).
pub(super) struct Trace {
    /// The upstream `traceparent`.
    pub traceparent: String,
    /// The upstream `X-Request-Id`.
    pub request_id: String,
}

/// A W3C `traceparent` for the upstream call: the buyer's trace id and flags with a fresh
/// parent (span) id when the buyer sent a valid one, else a new trace.
pub fn traceparent(incoming: Option<&str>) -> String {
    let span: [u8; 8] = rand::random();
    let span = hex::encode(span);
    if let Some((trace_id, flags)) = incoming.and_then(parse_traceparent) {
        return format!("00-{trace_id}-{span}-{flags}");
    }
    let trace: [u8; 16] = rand::random();
    format!("00-{}-{span}-01", hex::encode(trace))
}

/// `(trace_id, flags)` of a valid version-00 `traceparent`.
fn parse_traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex_of = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = version == "00"
        && parts.next().is_none()
        && hex_of(trace, 32)
        && hex_of(parent, 16)
        && hex_of(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    ok.then_some((trace, flags))
}

/// The buyer's `X-Request-Id` when it is short visible ASCII, else a new one.
pub fn request_id(incoming: Option<&str>) -> String {
    match incoming {
        Some(id)
            if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            id.to_owned()
        }
        _ => uuid::Uuid::new_v4().simple().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_propagates_trace_and_flags() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let out = traceparent(Some(incoming));
        assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(out.ends_with("-01"));
        assert_ne!(out, incoming);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            let fresh = traceparent(Some(bad));
            assert!(parse_traceparent(&fresh).is_some(), "{fresh}");
            assert!(!fresh.contains("4bf92f"));
        }
    }

    #[test]
    fn request_ids() {
        assert_eq!(request_id(Some("abc-1")), "abc-1");
        assert_eq!(request_id(None).len(), 32);
        assert_eq!(request_id(Some("has space")).len(), 32);
    }

    #[test]
    fn outgoing_headers_are_set_once() {
        let mut h = OutgoingHeaders::new(100, "http://hub", "tp", "rid");
        h.set(names::X_PAYMENT, "a");
        h.set(names::X_PAYMENT, "b");
        let map = h.into_map();
        assert_eq!(map.get_all(names::X_PAYMENT).iter().count(), 1);
        assert_eq!(
            map.get(names::X_PAYMENT).map(|v| v.to_str().ok()),
            Some(Some("b"))
        );
        assert_eq!(
            map.get(names::ROUTING_FEE).map(|v| v.to_str().ok()),
            Some(Some("100"))
        );
    }

    /// Issue #13: an operator peer's exemption covers its own origin only; another port or
    /// scheme on the same host is refused before anything is dialled.
    #[tokio::test]
    async fn operator_exemption_covers_exactly_its_origin() {
        let fwd = Forwarder::new(UrlPolicy::STRICT, Duration::from_secs(1), 1024)
            .unwrap_or_else(|e| panic!("{e}"));
        let origin = Some("http://127.0.0.1:5000");
        let url = |s: &str| Url::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert!(fwd.client(&url("http://127.0.0.1:5000/x"), origin).is_ok());
        for other in [
            "http://127.0.0.1:5001/x",
            "https://127.0.0.1:5000/x",
            "http://127.0.0.2:5000/x",
            "http://[::1]:5000/x",
        ] {
            assert!(
                matches!(
                    fwd.client(&url(other), origin),
                    Err(ForwardError::Refused(_))
                ),
                "{other} must not inherit the exemption"
            );
        }
        assert!(matches!(
            fwd.client(&url("http://127.0.0.1:5000/x"), None),
            Err(ForwardError::Refused(_))
        ));
    }
}

//! Polite, bounded HTTP GET of peer documents (spec §2.2 headers, §2.5, §7.4 rules 2–4).

use std::collections::HashSet;
use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};

use crate::error::{CrawlError, Document};
use crate::hosts::HostGate;
use crate::url_safety::resolver::{ResolveError, resolver_lookup_failure, resolver_refusal};
use crate::url_safety::{PinnedResolver, SafeUrl, UrlPolicy};

/// `User-Agent` of every crawler request.
pub const USER_AGENT: &str = concat!(
    "AIMarketHub/2.0.0 (aimarket-hub-rs ",
    env!("CARGO_PKG_VERSION"),
    ")"
);

/// Default cap for a well-known document.
pub const WELL_KNOWN_LIMIT: usize = 256 * 1024;
/// Default cap for a manifest.
pub const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;

/// Conditional-request validators remembered from a previous answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// `ETag` of the previous answer, sent back as `If-None-Match`.
    pub etag: Option<String>,
    /// `Last-Modified` of the previous answer, sent back as `If-Modified-Since`.
    pub last_modified: Option<String>,
}

impl Validators {
    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// Result of a successful fetch.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// `304 Not Modified`: the caller's copy is current.
    NotModified,
    /// `200 OK` with a body within the cap.
    Body {
        /// The body (already decompressed).
        bytes: Bytes,
        /// `ETag` of this answer.
        etag: Option<String>,
        /// `Last-Modified` of this answer.
        last_modified: Option<String>,
        /// The URL that finally answered, after explicit redirects.
        final_url: SafeUrl,
    },
}

impl Fetched {
    /// Validators to store for the next conditional request (empty for `NotModified`).
    pub fn validators(&self) -> Validators {
        match self {
            Fetched::NotModified => Validators::default(),
            Fetched::Body {
                etag,
                last_modified,
                ..
            } => Validators {
                etag: etag.clone(),
                last_modified: last_modified.clone(),
            },
        }
    }
}

/// What to fetch and how.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Which document this is (for caps and error messages).
    pub document: Document,
    /// Body cap in bytes.
    pub max_bytes: usize,
    /// Validators for a conditional request.
    pub validators: Validators,
    /// The URL was configured by the operator: exempt from the address-range rule. The
    /// exemption carries over to redirect hops only while they stay on the same origin
    /// (scheme, host and port): the operator vouched for one service, not for every port of
    /// its machine.
    pub operator: bool,
}

impl FetchOptions {
    /// Options for `document` with its default cap, unconditional, not operator-exempt.
    pub fn new(document: Document) -> Self {
        let max_bytes = match document {
            Document::WellKnown => WELL_KNOWN_LIMIT,
            Document::Manifest => MANIFEST_LIMIT,
        };
        Self {
            document,
            max_bytes,
            validators: Validators::default(),
            operator: false,
        }
    }
}

/// Extra headers for every peer request, asked for at send time: how the hub adds W3C trace
/// context (`traceparent`, `tracestate`) of the span the fetch runs in without this crate
/// knowing anything of tracing backends. Names must be lower-case; pairs that are not valid
/// header text are skipped.
#[derive(Clone)]
pub struct HeaderHook(Arc<dyn Fn() -> Vec<(&'static str, String)> + Send + Sync>);

impl HeaderHook {
    /// Wraps the closure.
    pub fn new(hook: impl Fn() -> Vec<(&'static str, String)> + Send + Sync + 'static) -> Self {
        Self(Arc::new(hook))
    }

    /// The headers for a request about to be sent.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        (self.0)()
    }
}

impl std::fmt::Debug for HeaderHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderHook")
    }
}

/// Fetcher configuration.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// This hub's public URL, sent as `X-AIMarket-Crawler` (spec §2.5). Omitted when empty.
    pub crawler_url: String,
    /// Address-range policy for strangers' URLs.
    pub policy: UrlPolicy,
    /// Total time for one request, connection to last body byte. Default 20 s.
    pub total_timeout: Duration,
    /// Time to establish a connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Redirect hops followed explicitly. Default 3.
    pub max_redirects: usize,
    /// Requests in flight per `host:port`. Default 2.
    pub per_host_concurrency: usize,
    /// First backoff after a host failure; doubles per consecutive failure. Default 30 s.
    pub backoff_base: Duration,
    /// Longest backoff. Default 30 min.
    pub backoff_max: Duration,
    /// Extra headers per request (trace context); none by default.
    pub header_hook: Option<HeaderHook>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            crawler_url: String::new(),
            policy: UrlPolicy::STRICT,
            total_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            max_redirects: 3,
            per_host_concurrency: 2,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(30 * 60),
            header_hook: None,
        }
    }
}

/// A pooled HTTP client for peer documents. Cheap to share (`Arc`); keeps per-host state
/// (concurrency slots, backoff) across crawls.
pub struct Fetcher {
    strangers: reqwest::Client,
    operator: reqwest::Client,
    strangers_resolver: PinnedResolver,
    config: FetchConfig,
    hosts: HostGate,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Installs ring as rustls' process-wide crypto provider, once. Losing the race to another
/// installer is fine: any provider will do, and reqwest reads whichever is installed.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

enum Step {
    Done(Fetched),
    Redirect(String),
}

impl Fetcher {
    /// Builds the two HTTP clients (one whose resolver enforces the range rule, one exempt
    /// for operator URLs). Must be called inside a tokio runtime.
    pub fn new(config: FetchConfig) -> Result<Self, CrawlError> {
        install_crypto_provider();
        let setup = |e: &dyn std::fmt::Display| CrawlError::Setup {
            detail: e.to_string(),
        };
        let strangers_resolver =
            PinnedResolver::new(config.policy, false).map_err(|e| setup(&e))?;
        let operator_resolver = PinnedResolver::new(config.policy, true).map_err(|e| setup(&e))?;
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if !config.crawler_url.is_empty() {
            let value = HeaderValue::from_str(&config.crawler_url).map_err(|e| setup(&e))?;
            headers.insert("x-aimarket-crawler", value);
        }
        let build = |resolver: PinnedResolver| {
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .default_headers(headers.clone())
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(config.total_timeout)
                .connect_timeout(config.connect_timeout)
                .pool_max_idle_per_host(config.per_host_concurrency.max(1))
                .pool_idle_timeout(Duration::from_secs(90))
                .dns_resolver(Arc::new(resolver))
                .build()
                .map_err(|e| setup(&error_chain(&e)))
        };
        Ok(Self {
            strangers: build(strangers_resolver.clone())?,
            operator: build(operator_resolver)?,
            strangers_resolver,
            hosts: HostGate::new(
                config.per_host_concurrency,
                config.backoff_base,
                config.backoff_max,
            ),
            config,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Full spec §7.4 rule-1 check of a stranger's URL without fetching it: the literal host
    /// check, then DNS resolution with every address checked. For URLs that are about to be
    /// stored (announcements, `X-AIMarket-Crawler` values).
    pub async fn check_url(&self, url: &SafeUrl) -> Result<(), CrawlError> {
        let unsafe_url = |reason| CrawlError::UnsafeUrl {
            url: url.to_string(),
            reason,
        };
        self.config.policy.check(url, false).map_err(unsafe_url)?;
        if url.ip().is_some() || !self.config.policy.applies(false) {
            return Ok(());
        }
        match self
            .strangers_resolver
            .resolve_checked(url.host_str())
            .await
        {
            Ok(_) => Ok(()),
            Err(ResolveError::Refused(reason)) => Err(unsafe_url(reason)),
            Err(ResolveError::Lookup(detail)) => Err(CrawlError::Dns {
                host: url.host_str().to_owned(),
                detail,
            }),
        }
    }

    /// GETs `url`, following up to `max_redirects` redirects explicitly (each target
    /// re-checked by the URL policy), within the per-host limits, with the body capped.
    pub async fn fetch(&self, url: &SafeUrl, opts: &FetchOptions) -> Result<Fetched, CrawlError> {
        let mut current = url.clone();
        let mut seen = HashSet::from([current.as_str().to_owned()]);
        for hop in 0..=self.config.max_redirects {
            // The operator vouched for one origin, not for wherever that origin points us:
            // another port on the same host is another service (issue #13).
            let operator = opts.operator && current.same_origin(url);
            self.config
                .policy
                .check(&current, operator)
                .map_err(|reason| CrawlError::UnsafeUrl {
                    url: current.to_string(),
                    reason,
                })?;
            match self.fetch_once(&current, opts, operator).await? {
                Step::Done(fetched) => return Ok(fetched),
                Step::Redirect(_) if hop == self.config.max_redirects => break,
                Step::Redirect(location) => {
                    let next = current
                        .join(&location)
                        .map_err(|reason| CrawlError::UnsafeUrl {
                            url: location.clone(),
                            reason,
                        })?;
                    if !seen.insert(next.as_str().to_owned()) {
                        return Err(CrawlError::RedirectLoop {
                            url: next.to_string(),
                        });
                    }
                    tracing::debug!(from = %current, to = %next, "following redirect");
                    current = next;
                }
            }
        }
        Err(CrawlError::TooManyRedirects {
            limit: self.config.max_redirects,
        })
    }

    async fn fetch_once(
        &self,
        url: &SafeUrl,
        opts: &FetchOptions,
        operator: bool,
    ) -> Result<Step, CrawlError> {
        let host = url.authority();
        let _slot = self.hosts.acquire(&host).await?;
        let limit = self.config.total_timeout;
        // reqwest's own timeout covers the same span; this one also bounds our body loop.
        let result = tokio::time::timeout(limit, self.request(url, opts, operator))
            .await
            .unwrap_or_else(|_| {
                Err(CrawlError::Timeout {
                    url: url.to_string(),
                    after: limit,
                })
            });
        self.hosts.record(
            &host,
            result.as_ref().is_err_and(CrawlError::is_host_failure),
        );
        result
    }

    async fn request(
        &self,
        url: &SafeUrl,
        opts: &FetchOptions,
        operator: bool,
    ) -> Result<Step, CrawlError> {
        let client = if operator {
            &self.operator
        } else {
            &self.strangers
        };
        let mut request = client.get(url.as_str());
        // Stored validators come from a database; a value that is not a valid header is
        // simply not sent (the request becomes unconditional).
        let conditional = [
            (header::IF_NONE_MATCH, &opts.validators.etag),
            (header::IF_MODIFIED_SINCE, &opts.validators.last_modified),
        ];
        if let Some(hook) = &self.config.header_hook {
            for (name, value) in hook.headers() {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    request = request.header(name, value);
                }
            }
        }
        let mut sent_conditional = false;
        for (name, value) in conditional {
            if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                request = request.header(name, value);
                sent_conditional = true;
            }
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&e, url, self.config.total_timeout))?;
        let status = response.status();
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_MODIFIED if sent_conditional => {
                return Ok(Step::Done(Fetched::NotModified));
            }
            StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT => {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(CrawlError::RedirectWithoutLocation {
                        status: status.as_u16(),
                    })?;
                return Ok(Step::Redirect(location.to_owned()));
            }
            _ => {
                return Err(CrawlError::Http {
                    status: status.as_u16(),
                    url: url.to_string(),
                });
            }
        }
        check_content_type(response.headers(), opts.document)?;
        let too_large = CrawlError::TooLarge {
            document: opts.document,
            limit: opts.max_bytes,
        };
        let declared = response.content_length();
        if declared.is_some_and(|len| len > opts.max_bytes as u64) {
            return Err(too_large);
        }
        let header_text = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header_text(header::ETAG);
        let last_modified = header_text(header::LAST_MODIFIED);
        let capacity = declared.map_or(16 * 1024, |len| len as usize);
        let mut body = BytesMut::with_capacity(capacity.min(opts.max_bytes));
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| match declared {
                Some(expected) if !e.is_timeout() && (body.len() as u64) < expected => {
                    CrawlError::Truncated {
                        expected,
                        received: body.len() as u64,
                    }
                }
                _ => transport_error(&e, url, self.config.total_timeout),
            })?;
            // Stop at the limit rather than after it: never buffer past the cap.
            if body.len() + chunk.len() > opts.max_bytes {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Step::Done(Fetched::Body {
            bytes: body.freeze(),
            etag,
            last_modified,
            final_url: url.clone(),
        }))
    }
}

/// A declared content type must be JSON (`application/json`, `*/*+json`, `text/json`). An
/// HTML error page served with 200 fails here, with a message that says so.
fn check_content_type(headers: &HeaderMap, document: Document) -> Result<(), CrawlError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let raw = String::from_utf8_lossy(value.as_bytes()).into_owned();
    let essence = raw
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence == "text/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(CrawlError::ContentType {
            document,
            content_type: raw,
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn transport_error(e: &reqwest::Error, url: &SafeUrl, limit: Duration) -> CrawlError {
    if let Some(reason) = resolver_refusal(e) {
        return CrawlError::UnsafeUrl {
            url: url.to_string(),
            reason,
        };
    }
    if let Some(detail) = resolver_lookup_failure(e) {
        return CrawlError::Dns {
            host: url.host_str().to_owned(),
            detail,
        };
    }
    if e.is_timeout() {
        return CrawlError::Timeout {
            url: url.to_string(),
            after: limit,
        };
    }
    let detail = error_chain(e);
    if e.is_connect() {
        CrawlError::Connect {
            url: url.to_string(),
            detail,
        }
    } else {
        CrawlError::Transport {
            url: url.to_string(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A name that resolves into a forbidden range is refused by the client's own resolver,
    /// so the connection is never attempted, and the refusal surfaces as `UnsafeUrl`.
    /// (`UrlPolicy::check` would refuse `localhost` first; calling `request` directly skips
    /// it to prove the second line of defence.)
    #[tokio::test]
    async fn resolver_refusal_surfaces_as_unsafe_url() {
        let fetcher = Fetcher::new(FetchConfig::default()).unwrap();
        let url = SafeUrl::parse("http://localhost:9/").unwrap();
        let result = fetcher
            .request(&url, &FetchOptions::new(Document::WellKnown), false)
            .await;
        let Err(err) = result else {
            panic!("localhost must be refused");
        };
        assert!(
            matches!(
                &err,
                CrawlError::UnsafeUrl {
                    reason: crate::url_safety::UrlError::ResolvesToForbidden { .. },
                    ..
                }
            ),
            "{err}"
        );
        // The operator client resolves the same name (and then finds nothing listening).
        let result = fetcher
            .request(&url, &FetchOptions::new(Document::WellKnown), true)
            .await;
        assert!(
            matches!(result, Err(CrawlError::Connect { .. })),
            "{:?}",
            result.err()
        );
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(check_content_type(&h, Document::Manifest).is_ok());
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/ld+json",
            "text/json",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(check_content_type(&h, Document::Manifest).is_ok(), "{ok}");
        }
        for bad in [
            "text/html",
            "text/plain",
            "application/octet-stream",
            "application/jsonx",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(bad));
            assert!(check_content_type(&h, Document::Manifest).is_err(), "{bad}");
        }
    }
}

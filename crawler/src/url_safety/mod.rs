//! URL safety, spec §7.4: every URL a stranger gave us is parsed into a [`SafeUrl`] and checked
//! by a [`UrlPolicy`] before it is fetched or stored.
//!
//! How the five rules are covered:
//! 1. *Address ranges*: [`UrlPolicy::check`] refuses hosts spelled as forbidden IP literals
//!    (the `url` crate normalises decimal, hex, octal and short IPv4 spellings first) and names
//!    that are loopback by definition; names are resolved by [`PinnedResolver`], which refuses
//!    a name if any of its addresses is forbidden.
//! 2. *Check-to-use window*: the resolver is the one the HTTP client connects with, so the
//!    addresses checked are the addresses dialled. IP literals never reach a resolver, which
//!    is why [`UrlPolicy::check`] must see every URL.
//! 3. *Redirects*: the fetcher never follows them automatically (see `fetch`).
//! 4. *Bounds*: body cap and total timeout live in the fetcher.
//! 5. *Control characters*: [`SafeUrl::parse`] refuses them before anything else, because the
//!    WHATWG parser would otherwise silently strip tabs and newlines.
//!
//! `AIMARKET_ALLOW_PRIVATE_PEERS` maps to [`UrlPolicy::allow_private`] and lifts only rule 1.
//! URLs configured by the operator are exempt from rule 1 as well (the `operator` flag), and
//! only on exactly the configured origin (scheme, host and port): a `manifest_url` or a
//! redirect to another origin, even another port of the same host, is checked in full.

mod ip;
pub(crate) mod resolver;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

pub use ip::{forbidden_range, is_forbidden};
pub use resolver::{PinnedResolver, ResolveError};
use url::{Host, Url};

/// URLs and resolved addresses refused by the range rule since the process started.
static REFUSALS: AtomicU64 = AtomicU64::new(0);

/// How many URLs (or resolved addresses) the address rules refused in this process: the
/// hub's `aimarket_ssrf_refusals_total`. Process-wide because the rule is a pure function
/// used by every client the process builds.
pub fn refusals_total() -> u64 {
    REFUSALS.load(Ordering::Relaxed)
}

fn refused<T>(error: UrlError) -> Result<T, UrlError> {
    REFUSALS.fetch_add(1, Ordering::Relaxed);
    Err(error)
}

/// Longest URL accepted. Real peer URLs are short; a long one is an attack or a mistake.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Longer than [`MAX_URL_LEN`].
    #[error("URL is {len} bytes long (limit {max})")]
    TooLong {
        /// Length of the refused URL.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A control character (C0, DEL or C1) anywhere in the URL.
    #[error("URL contains control character U+{code:04X} at byte {position}")]
    ControlCharacter {
        /// Code point of the character.
        code: u32,
        /// Byte offset in the raw URL.
        position: usize,
    },
    /// Whitespace anywhere in the URL (including leading and trailing).
    #[error("URL contains whitespace at byte {position}")]
    Whitespace {
        /// Byte offset in the raw URL.
        position: usize,
    },
    /// Not a URL at all.
    #[error("not a valid absolute URL: {0}")]
    Parse(String),
    /// Scheme other than `http` / `https`.
    #[error("scheme {0:?} is not allowed (http or https only)")]
    Scheme(String),
    /// `user:password@` in the authority.
    #[error("URL carries userinfo credentials")]
    Credentials,
    /// No host, or an empty one.
    #[error("URL has no host")]
    NoHost,
    /// Host is an IP literal in a forbidden range.
    #[error("host {addr} is in a forbidden range: {range}")]
    ForbiddenAddress {
        /// The (normalised) address.
        addr: IpAddr,
        /// Name of the range it falls in.
        range: &'static str,
    },
    /// Host is a name that can only mean this machine or its local network
    /// (`localhost`, `*.localhost`, a single-label name).
    #[error("host {host:?} is a local name")]
    LocalName {
        /// The host as normalised by the parser.
        host: String,
    },
    /// The host's name resolved to a forbidden address.
    #[error("host {host:?} resolves to {addr}, which is in a forbidden range: {range}")]
    ResolvesToForbidden {
        /// The name that was resolved.
        host: String,
        /// The offending address.
        addr: IpAddr,
        /// Name of the range it falls in.
        range: &'static str,
    },
}

/// An absolute `http`/`https` URL that passed the syntactic rules of spec §7.4: no control
/// characters or whitespace, no credentials, a non-empty host, no fragment. IP hosts are stored
/// normalised (`http://0x7f.1/` becomes `http://127.0.0.1/`).
///
/// Passing [`SafeUrl::parse`] says nothing about the address range: that is
/// [`UrlPolicy::check`]'s job (and the resolver's, for names).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SafeUrl(Url);

impl SafeUrl {
    /// Parses and syntactically checks `raw`.
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        check_raw(raw)?;
        let url = Url::parse(raw).map_err(|e| UrlError::Parse(e.to_string()))?;
        Self::from_url(url)
    }

    /// Resolves `reference` (e.g. a `Location` header) against this URL and checks the result.
    pub fn join(&self, reference: &str) -> Result<Self, UrlError> {
        check_raw(reference)?;
        let url = self
            .0
            .join(reference)
            .map_err(|e| UrlError::Parse(e.to_string()))?;
        Self::from_url(url)
    }

    fn from_url(mut url: Url) -> Result<Self, UrlError> {
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(UrlError::Scheme(other.to_owned())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        match url.host() {
            None => return Err(UrlError::NoHost),
            Some(Host::Domain(d)) if d.is_empty() || d == "." => return Err(UrlError::NoHost),
            Some(_) => {}
        }
        if url.as_str().len() > MAX_URL_LEN {
            return Err(UrlError::TooLong {
                len: url.as_str().len(),
                max: MAX_URL_LEN,
            });
        }
        url.set_fragment(None);
        Ok(Self(url))
    }

    /// The full URL as a string.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The underlying parsed URL.
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// `scheme://host[:port]` with no trailing slash; default ports are omitted. This is a
    /// peer's identity throughout the crawler and the hub.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }

    /// This URL reduced to its origin (path `/`, no query).
    pub fn origin_url(&self) -> SafeUrl {
        let mut url = self.0.clone();
        url.set_path("/");
        url.set_query(None);
        SafeUrl(url)
    }

    /// True when both URLs have the same scheme, host and port.
    pub fn same_origin(&self, other: &SafeUrl) -> bool {
        self.0.origin() == other.0.origin()
    }

    /// The host as normalised by the parser (IPv6 in brackets).
    pub fn host_str(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    /// `host:port` (port always explicit): the key for per-host politeness limits.
    pub fn authority(&self) -> String {
        let port = self.0.port_or_known_default().unwrap_or_default();
        format!("{}:{port}", self.host_str())
    }

    /// The host when it is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.0.host()? {
            Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            Host::Domain(_) => None,
        }
    }

    /// True when the path is empty or `/` and there is no query: the URL names a hub rather
    /// than a document on it.
    pub fn is_bare_origin(&self) -> bool {
        self.0.path() == "/" && self.0.query().is_none()
    }
}

fn check_raw(raw: &str) -> Result<(), UrlError> {
    if raw.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong {
            len: raw.len(),
            max: MAX_URL_LEN,
        });
    }
    for (position, c) in raw.char_indices() {
        if c.is_control() {
            return Err(UrlError::ControlCharacter {
                code: u32::from(c),
                position,
            });
        }
        if c.is_whitespace() {
            return Err(UrlError::Whitespace { position });
        }
    }
    Ok(())
}

impl fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl fmt::Debug for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafeUrl({})", self.0.as_str())
    }
}

impl FromStr for SafeUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for SafeUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The address-range policy (spec §7.4 rule 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// `AIMARKET_ALLOW_PRIVATE_PEERS=1`: allow private, loopback and other special ranges
    /// (tests, private federations). Lifts only the range rule: control characters, schemes,
    /// credentials, redirects and bounds are enforced regardless.
    pub allow_private: bool,
}

impl UrlPolicy {
    /// The default policy: strangers' URLs may only reach public addresses.
    pub const STRICT: UrlPolicy = UrlPolicy {
        allow_private: false,
    };

    /// True when the range rule applies to a URL of this provenance.
    pub fn applies(&self, operator: bool) -> bool {
        !(self.allow_private || operator)
    }

    /// Checks what can be checked without DNS: a host spelled as an IP literal must not be in
    /// a forbidden range, and names that are local by definition are refused. Names are
    /// checked again, against their resolved addresses, when they are dialled.
    ///
    /// `operator` is true for URLs the operator configured (exempt from the range rule).
    pub fn check(&self, url: &SafeUrl, operator: bool) -> Result<(), UrlError> {
        if !self.applies(operator) {
            return Ok(());
        }
        if let Some(addr) = url.ip() {
            return match forbidden_range(addr) {
                Some(range) => refused(UrlError::ForbiddenAddress { addr, range }),
                None => Ok(()),
            };
        }
        let host = url.host_str().trim_end_matches('.');
        // `localhost` is loopback by RFC 6761 whatever DNS says; a single-label name is
        // completed by resolv.conf search domains, i.e. it names something on our network.
        if host == "localhost" || host.ends_with(".localhost") || !host.contains('.') {
            return refused(UrlError::LocalName {
                host: url.host_str().to_owned(),
            });
        }
        Ok(())
    }

    /// [`SafeUrl::parse`] followed by [`UrlPolicy::check`].
    pub fn parse(&self, raw: &str, operator: bool) -> Result<SafeUrl, UrlError> {
        let url = SafeUrl::parse(raw)?;
        self.check(&url, operator)?;
        Ok(url)
    }

    /// Checks one resolved address of `host` against the range rule.
    pub fn check_resolved(&self, host: &str, addr: IpAddr, operator: bool) -> Result<(), UrlError> {
        if !self.applies(operator) {
            return Ok(());
        }
        match forbidden_range(addr) {
            Some(range) => refused(UrlError::ResolvesToForbidden {
                host: host.to_owned(),
                addr,
                range,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;

//! DNS resolution that is also the address check (spec §7.4 rules 1 and 2).
//!
//! The HTTP client connects to exactly the addresses this resolver returns, so an answer that
//! passed the check cannot be swapped for a different one between check and use (DNS
//! rebinding). A name with *any* forbidden address is refused outright: a mixed answer is
//! what a rebinding attack looks like.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolverConfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{UrlError, UrlPolicy};

/// A [`reqwest::dns::Resolve`] backed by hickory that refuses names resolving into forbidden
/// ranges. Build one per policy/provenance (a strict one for strangers' URLs, an exempt one
/// for operator URLs) and give each its own `reqwest::Client`.
#[derive(Clone)]
pub struct PinnedResolver {
    inner: Arc<TokioResolver>,
    policy: UrlPolicy,
    operator: bool,
}

/// Error handed to reqwest when a name is refused; the fetcher finds it again in the error's
/// source chain and reports the [`UrlError`] inside.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct RefusedName(pub(crate) UrlError);

impl PinnedResolver {
    /// A resolver using the system configuration (`/etc/resolv.conf`); when that cannot be
    /// read, one with no upstream servers (hosts file and IP literals only) and a warning.
    ///
    /// `operator` exempts every answer from the range rule (for operator-configured URLs).
    pub fn new(policy: UrlPolicy, operator: bool) -> Result<Self, ResolveError> {
        let builder = TokioResolver::builder_tokio().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read system DNS configuration; names will not resolve");
            TokioResolver::builder_with_config(
                ResolverConfig::default(),
                TokioRuntimeProvider::default(),
            )
        });
        let inner = builder
            .build()
            .map_err(|e| ResolveError::Lookup(format!("cannot build DNS resolver: {e}")))?;
        Ok(Self {
            inner: Arc::new(inner),
            policy,
            operator,
        })
    }

    /// Resolves `host` and checks every address. Used by the HTTP client, and directly by
    /// callers that must vet a URL before storing it (spec §7.4: announced URLs).
    pub async fn resolve_checked(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        // IP literals never reach reqwest's resolver, but a caller may pass one here.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(addr) = bare.parse::<IpAddr>() {
            self.policy
                .check_resolved(host, addr, self.operator)
                .map_err(ResolveError::Refused)?;
            return Ok(vec![addr]);
        }
        let lookup = self
            .inner
            .lookup_ip(host)
            .await
            .map_err(|e| ResolveError::Lookup(e.to_string()))?;
        let addrs: Vec<IpAddr> = lookup.iter().collect();
        if addrs.is_empty() {
            return Err(ResolveError::Lookup(format!("{host}: no addresses")));
        }
        for addr in &addrs {
            self.policy
                .check_resolved(host, *addr, self.operator)
                .map_err(ResolveError::Refused)?;
        }
        Ok(addrs)
    }
}

/// Failure of [`PinnedResolver::resolve_checked`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name does not resolve.
    #[error("DNS lookup failed: {0}")]
    Lookup(String),
    /// The name resolves into a forbidden range.
    #[error(transparent)]
    Refused(UrlError),
}

impl Resolve for PinnedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            match this.resolve_checked(name.as_str()).await {
                Ok(addrs) => {
                    // Port 0 is replaced by reqwest with the URL's port.
                    let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
                    Ok(addrs)
                }
                Err(ResolveError::Refused(e)) => Err(Box::new(RefusedName(e)) as _),
                Err(e @ ResolveError::Lookup(_)) => Err(Box::new(e) as _),
            }
        })
    }
}

/// Finds a name refusal from [`PinnedResolver`] in a client error's source chain.
pub(crate) fn resolver_refusal(e: &(dyn std::error::Error + 'static)) -> Option<UrlError> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(RefusedName(reason)) = s.downcast_ref::<RefusedName>() {
            return Some(reason.clone());
        }
        source = s.source();
    }
    None
}

/// Finds a lookup failure from [`PinnedResolver`] in a client error's source chain.
pub(crate) fn resolver_lookup_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(ResolveError::Lookup(detail)) = s.downcast_ref::<ResolveError>() {
            return Some(detail.clone());
        }
        source = s.source();
    }
    None
}

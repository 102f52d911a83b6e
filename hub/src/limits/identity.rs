//! Who is calling, for the per-client limits and the idempotency scope.
//!
//! Only identities the hub can check get a bucket of their own:
//!
//! - an `X-API-Key` that is one of the configured buyer keys (`limits.api_keys`);
//! - a payment channel at this hub that exists, is open and unexpired, and whose debit
//!   authenticates (the secret matches; a demo channel may omit it, as its holds may).
//!
//! Anything else (an invented key, an invented channel id, a closed channel) is limited by
//! the caller's address, so inventing header values never buys a fresh bucket. A real
//! channel presented with a wrong (or, where required, missing) secret is charged to the
//! address too and then refused, so nobody can spend another buyer's budget.
//!
//! Channel checks are cached for [`VERDICT_TTL`] under a digest of (channel id, secret), so a
//! free invoke costs at most one indexed read per channel and secret per TTL, and none
//! after that. The cost of the cache: a channel closed meanwhile keeps its own bucket for up
//! to the TTL (its holds are refused at once regardless).

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::payments::{Ledger, PaymentError};
use crate::settings::ApiKeys;

/// How long a channel verdict is trusted.
pub const VERDICT_TTL: Duration = Duration::from_secs(30);
/// Most verdicts cached; beyond it the least useful ones are evicted.
pub const MAX_VERDICTS: u64 = 100_000;
/// Longest channel id that can name a channel (ids the ledger issues are far shorter).
const MAX_CHANNEL_ID_BYTES: usize = 128;

/// The key of one client's limit buckets (and its idempotency scope).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    /// A client identified by a configured API key (only a digest prefix is kept).
    fn api_key(digest: &[u8; 32]) -> Self {
        Self(format!("key:{}", hex::encode(&digest[..12])))
    }

    /// A client identified by a verified payment channel at this hub.
    fn channel(id: &str) -> Self {
        Self(format!("ch:{id}"))
    }

    /// A client identified by its IP address.
    pub fn ip(addr: IpAddr) -> Self {
        Self(format!("ip:{}", addr.to_canonical()))
    }

    /// Any other caller (in-process tools name themselves).
    pub fn named(name: &str) -> Self {
        Self(format!("id:{name}"))
    }

    /// The key string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a caller presented, as the transport saw it; nothing here is verified yet.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The client address (the peer, or what a trusted proxy says); `None` in process.
    pub address: Option<IpAddr>,
    /// `X-API-Key`, when sent.
    pub api_key: Option<String>,
}

impl Caller {
    /// The identity every unverified credential falls back to.
    pub fn address_id(&self) -> ClientId {
        match self.address {
            Some(addr) => ClientId::ip(addr),
            None => ClientId::named("unknown"),
        }
    }
}

/// The outcome of [`Identities::identify`].
#[derive(Debug)]
pub struct Identified {
    /// The bucket to charge.
    pub client: ClientId,
    /// When set, the call is refused with this error once the bucket admitted it (a real
    /// channel with a wrong secret).
    pub refusal: Option<PaymentError>,
    /// An `X-API-Key` was sent that is not a configured key: charged to the address, then
    /// refused (401 `invalid_api_key`).
    pub unknown_key: bool,
}

/// What a channel check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Exists, open, unexpired, the secret authenticates.
    Verified,
    /// Unknown, closed or expired: not an identity.
    Unverified,
    /// Exists, but the secret is missing (where required) or wrong.
    BadSecret(crate::payments::SecretProblem),
}

/// The configured API keys and the channel verdict cache.
pub struct Identities {
    /// SHA-256 of every configured key. Lookups hash the presented key first, so the set's
    /// timing says nothing about the keys themselves.
    api_keys: HashSet<[u8; 32]>,
    verdicts: moka::sync::Cache<[u8; 32], Verdict>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("api_keys", &self.api_keys.len())
            .field("cached_verdicts", &self.verdicts.entry_count())
            .finish()
    }
}

impl Identities {
    /// Hashes the configured keys.
    pub fn new(keys: &ApiKeys) -> Self {
        Self {
            api_keys: keys
                .0
                .iter()
                .map(|k| Sha256::digest(k.expose().as_bytes()).into())
                .collect(),
            verdicts: moka::sync::Cache::builder()
                .max_capacity(MAX_VERDICTS)
                .time_to_live(VERDICT_TTL)
                .build(),
        }
    }

    /// The identity of a caller that may present an API key but no channel (search, MCP).
    pub fn identify_key(&self, caller: &Caller) -> ClientId {
        caller
            .api_key
            .as_deref()
            .and_then(|key| self.configured_key(key))
            .unwrap_or_else(|| caller.address_id())
    }

    /// The identity of an invoke: a configured API key, else a verified channel, else the
    /// address (see the module docs).
    pub async fn identify(
        &self,
        ledger: &Ledger,
        caller: &Caller,
        channel_id: Option<&str>,
        secret: Option<&str>,
    ) -> Identified {
        let unknown_key = caller.api_key.is_some();
        let address = || Identified {
            client: caller.address_id(),
            refusal: None,
            unknown_key,
        };
        if let Some(client) = caller
            .api_key
            .as_deref()
            .and_then(|key| self.configured_key(key))
        {
            return Identified {
                client,
                refusal: None,
                unknown_key: false,
            };
        }
        let Some(channel_id) = channel_id.filter(|id| id.len() <= MAX_CHANNEL_ID_BYTES) else {
            return address();
        };
        match self.channel_verdict(ledger, channel_id, secret).await {
            Verdict::Verified => Identified {
                client: ClientId::channel(channel_id),
                refusal: None,
                unknown_key,
            },
            Verdict::Unverified => address(),
            Verdict::BadSecret(problem) => Identified {
                client: caller.address_id(),
                refusal: Some(PaymentError::BadSecret { problem }),
                unknown_key,
            },
        }
    }

    /// Whether `key` is one of the configured buyer API keys.
    pub fn accepts_key(&self, key: &str) -> bool {
        self.configured_key(key).is_some()
    }

    fn configured_key(&self, key: &str) -> Option<ClientId> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.api_keys
            .contains(&digest)
            .then(|| ClientId::api_key(&digest))
    }

    async fn channel_verdict(
        &self,
        ledger: &Ledger,
        channel_id: &str,
        secret: Option<&str>,
    ) -> Verdict {
        // One fixed-size key per (id, secret): invented ids of any length cost the cache
        // the same few bytes.
        let mut hasher = Sha256::new();
        hasher.update(channel_id.as_bytes());
        hasher.update([0]);
        hasher.update(secret.unwrap_or("").as_bytes());
        let key: [u8; 32] = hasher.finalize().into();
        if let Some(verdict) = self.verdicts.get(&key) {
            return verdict;
        }
        let verdict = match ledger.authenticate_channel(channel_id, secret).await {
            Ok(true) => Verdict::Verified,
            Ok(false) | Err(PaymentError::ChannelNotFound { .. }) => Verdict::Unverified,
            Err(PaymentError::BadSecret { problem }) => Verdict::BadSecret(problem),
            Err(e) => {
                // Not cached: the next call asks again. The address limits this one, and a
                // paid call meets the same failure at its hold.
                tracing::warn!(error = %e, "cannot check a channel for the rate limit");
                return Verdict::Unverified;
            }
        };
        self.verdicts.insert(key, verdict);
        verdict
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn caller(key: Option<&str>) -> Caller {
        Caller {
            address: Some("192.0.2.7".parse().unwrap()),
            api_key: key.map(str::to_owned),
        }
    }

    #[test]
    fn only_configured_keys_are_identities() {
        let ids = Identities::new(&"good-key".parse().unwrap());
        let good = ids.identify_key(&caller(Some("good-key")));
        assert!(good.as_str().starts_with("key:"), "{good:?}");
        assert!(!good.as_str().contains("good-key"));
        assert_eq!(
            ids.identify_key(&caller(Some("made-up"))).as_str(),
            "ip:192.0.2.7"
        );
        assert_eq!(ids.identify_key(&caller(None)).as_str(), "ip:192.0.2.7");
        assert_eq!(Caller::default().address_id().as_str(), "id:unknown");
        // IPv4-mapped IPv6 peers share the IPv4 bucket.
        let mapped = ClientId::ip("::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(mapped.as_str(), "ip:192.0.2.7");
    }
}

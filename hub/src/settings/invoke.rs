//! Settings of the routed invoke (`[invoke]` in the TOML file).
//!
//! | TOML key (`[invoke]`)     | env                                | default  |
//! |---------------------------|------------------------------------|----------|
//! | `provider_timeout_s`      | `AIMARKET_PROVIDER_TIMEOUT_S`      | 30       |
//! | `max_provider_body_bytes` | `AIMARKET_MAX_PROVIDER_BODY_BYTES` | 16 MiB   |
//! | `rate_per_min`            | `AIMARKET_INVOKE_RATE_PER_MIN`     | 600 (0 = off) |
//! | `peer_credentials`        | `AIMARKET_PEER_CREDENTIALS`        | none     |
//! | `sells_for`               | `AIMARKET_SELLS_FOR`               | none     |
//! | `sign_all_peers`          | `AIMARKET_SIGN_ALL_PEERS`          | false    |
//! | `seller_direct_fee`       | `AIMARKET_SELLER_DIRECT_FEE`       | `waived` |
//!
//! `sells_for` lists the peers this hub is the seller of record for (comma-separated URLs,
//! prefix match on scheme, host, port and path): admitted calls to them carry the hub's
//! `aimarket-hub-request/v1` signature; `sign_all_peers` signs admitted calls to every peer.
//! `seller_direct_fee` is the routing-fee policy when the buyer pays the provider directly
//! (`X-Payment`): `waived`, or `channel` (the fee is held on the buyer's `X-Payment-Channel`).
//!
//! Peer credentials are the hub's own means of paying a provider for channel-funded calls
//! (spec §6.3). Env form: comma-separated `URL=channel:ID[:SECRET]` or `URL=apikey:KEY`;
//! TOML form: a table `[invoke.peer_credentials]` mapping the peer URL to the same
//! `channel:…` / `apikey:…` string.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use url::Url;

use super::values::Secret;

/// Default provider timeout, seconds.
pub const DEFAULT_PROVIDER_TIMEOUT_S: u64 = 30;
/// Longest provider timeout accepted (ten minutes).
pub const MAX_PROVIDER_TIMEOUT_S: u64 = 600;
/// Default cap on a provider's response body.
pub const DEFAULT_MAX_PROVIDER_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// Smallest body cap accepted: below this even an error document would not fit.
pub const MIN_MAX_PROVIDER_BODY_BYTES: u64 = 1024;
/// Largest body cap accepted (256 MiB): answers are buffered in memory.
pub const MAX_MAX_PROVIDER_BODY_BYTES: u64 = 256 * 1024 * 1024;
/// Default per-client invoke rate, per minute.
pub const DEFAULT_INVOKE_RATE_PER_MIN: u32 = 600;

/// The `[invoke]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InvokeSettings {
    /// Whole-call bound on a provider request, seconds (`AIMARKET_PROVIDER_TIMEOUT_S`).
    pub provider_timeout_s: u64,
    /// Largest provider response body read (`AIMARKET_MAX_PROVIDER_BODY_BYTES`).
    pub max_provider_body_bytes: u64,
    /// Invokes per minute per client; 0 turns the limit off (`AIMARKET_INVOKE_RATE_PER_MIN`).
    pub rate_per_min: u32,
    /// The hub's own credentials at peers (`AIMARKET_PEER_CREDENTIALS`).
    pub peer_credentials: PeerCredentials,
    /// Peers this hub sells for: admitted calls are signed (`AIMARKET_SELLS_FOR`).
    pub sells_for: SellsFor,
    /// Sign admitted calls to every peer (`AIMARKET_SIGN_ALL_PEERS`).
    pub sign_all_peers: bool,
    /// Routing-fee policy on the seller-direct rail (`AIMARKET_SELLER_DIRECT_FEE`).
    pub seller_direct_fee: SellerDirectFee,
}

impl Default for InvokeSettings {
    fn default() -> Self {
        Self {
            provider_timeout_s: DEFAULT_PROVIDER_TIMEOUT_S,
            max_provider_body_bytes: DEFAULT_MAX_PROVIDER_BODY_BYTES,
            rate_per_min: DEFAULT_INVOKE_RATE_PER_MIN,
            peer_credentials: PeerCredentials::default(),
            sells_for: SellsFor::default(),
            sign_all_peers: false,
            seller_direct_fee: SellerDirectFee::Waived,
        }
    }
}

impl InvokeSettings {
    /// Checks the ranges; the error names the TOML key, the value and the reason.
    pub fn check(&self) -> Result<(), (&'static str, String, String)> {
        check_provider_timeout(self.provider_timeout_s).map_err(|r| {
            (
                "invoke.provider_timeout_s",
                self.provider_timeout_s.to_string(),
                r,
            )
        })?;
        check_max_body(self.max_provider_body_bytes).map_err(|r| {
            (
                "invoke.max_provider_body_bytes",
                self.max_provider_body_bytes.to_string(),
                r,
            )
        })?;
        Ok(())
    }
}

/// Range rule of `provider_timeout_s`.
pub fn check_provider_timeout(seconds: u64) -> Result<(), String> {
    if !(1..=MAX_PROVIDER_TIMEOUT_S).contains(&seconds) {
        return Err(format!(
            "must be between 1 and {MAX_PROVIDER_TIMEOUT_S} seconds"
        ));
    }
    Ok(())
}

/// Range rule of `max_provider_body_bytes`.
pub fn check_max_body(bytes: u64) -> Result<(), String> {
    if !(MIN_MAX_PROVIDER_BODY_BYTES..=MAX_MAX_PROVIDER_BODY_BYTES).contains(&bytes) {
        return Err(format!(
            "must be between {MIN_MAX_PROVIDER_BODY_BYTES} and {MAX_MAX_PROVIDER_BODY_BYTES} bytes"
        ));
    }
    Ok(())
}

/// The routing-fee policy when the buyer pays the provider directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SellerDirectFee {
    /// No fee: the hub only routes (the reference hub's behaviour).
    Waived,
    /// The routing fee is held on the buyer's hub channel (`X-Payment-Channel`) and captured
    /// when the call succeeds; without a channel the call is refused with 402.
    Channel,
}

impl SellerDirectFee {
    /// Wire spelling (routing receipts, README).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waived => "waived",
            Self::Channel => "channel",
        }
    }
}

impl FromStr for SellerDirectFee {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "waived" => Ok(Self::Waived),
            "channel" => Ok(Self::Channel),
            _ => Err("expected `waived` or `channel`".into()),
        }
    }
}

/// Peers this hub is the seller of record for, as normalised URL prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SellsFor(pub Vec<String>);

impl SellsFor {
    /// Whether `url` (a peer or invoke URL) falls under one of the prefixes: same scheme,
    /// host and port, and a path equal to the prefix's or below it.
    pub fn covers(&self, url: &str) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let Ok(url) = aimarket_protocol::signing::normalize_url(url) else {
            return false;
        };
        self.0.iter().any(|prefix| {
            url.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

impl FromStr for SellsFor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                aimarket_protocol::signing::normalize_url(p)
                    .map_err(|_| format!("`{p}` is not an http(s) URL"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl<'de> Deserialize<'de> for SellsFor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        list.join(",").parse().map_err(serde::de::Error::custom)
    }
}

/// How the hub pays one peer.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialKind {
    /// A payment channel the operator opened at the peer: sent as `X-Payment-Channel` and,
    /// when known, `X-Payment-Channel-Secret`.
    Channel {
        /// Channel id at the peer.
        id: String,
        /// The channel's debit secret.
        secret: Option<Secret>,
    },
    /// An API key (credits account) at the peer, sent as `X-API-Key`.
    ApiKey(Secret),
}

impl fmt::Debug for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Channel { id, secret } => f
                .debug_struct("Channel")
                .field("id", id)
                .field("secret", &secret.as_ref().map(|_| "<redacted>"))
                .finish(),
            Self::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
        }
    }
}

impl FromStr for CredentialKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("channel:") {
            let (id, secret) = match rest.split_once(':') {
                Some((id, secret)) => (id, Some(secret.parse::<Secret>()?)),
                None => (rest, None),
            };
            if id.trim().is_empty() {
                return Err("channel id must not be empty".into());
            }
            return Ok(Self::Channel {
                id: id.trim().to_owned(),
                secret,
            });
        }
        if let Some(key) = s.strip_prefix("apikey:") {
            return Ok(Self::ApiKey(key.parse()?));
        }
        Err("expected `channel:ID[:SECRET]` or `apikey:KEY`".into())
    }
}

/// The hub's credential at one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCredential {
    /// The peer's origin (`scheme://host[:port]`).
    pub origin: String,
    /// What to send.
    pub kind: CredentialKind,
}

/// Reduces a URL to its origin, the form peers are keyed by.
fn origin_of(url: &str) -> Result<String, String> {
    let parsed = Url::parse(url.trim()).map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("`{url}` is not an http(s) URL with a host"));
    }
    Ok(parsed.origin().ascii_serialization())
}

impl FromStr for PeerCredential {
    type Err = String;
    /// `URL=channel:ID[:SECRET]` or `URL=apikey:KEY`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (url, spec) = s
            .split_once('=')
            .ok_or_else(|| "expected URL=channel:ID[:SECRET] or URL=apikey:KEY".to_owned())?;
        Ok(Self {
            origin: origin_of(url)?,
            kind: spec.parse()?,
        })
    }
}

/// All configured peer credentials, at most one per origin (a later entry replaces an
/// earlier one for the same origin).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCredentials(pub Vec<PeerCredential>);

impl PeerCredentials {
    /// The credential for a peer origin, if any.
    pub fn get(&self, origin: &str) -> Option<&PeerCredential> {
        self.0.iter().rev().find(|c| c.origin == origin)
    }
}

impl FromStr for PeerCredentials {
    type Err = String;
    /// The env form: comma-separated `URL=…` entries.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<PeerCredential>().map_err(|e| {
                    let url = item.split_once('=').map_or(item, |(u, _)| u);
                    format!("entry for `{url}`: {e}")
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl<'de> Deserialize<'de> for PeerCredentials {
    /// The TOML form: a table from peer URL to `channel:…` / `apikey:…`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = BTreeMap::<String, String>::deserialize(d)?;
        table
            .into_iter()
            .map(|(url, spec)| {
                Ok(PeerCredential {
                    origin: origin_of(&url)?,
                    kind: spec
                        .parse()
                        .map_err(|e| format!("entry for `{url}`: {e}"))?,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn env_form_parses_both_kinds() {
        let creds: PeerCredentials =
            "https://a.example/x=channel:ch_1:s3cret, http://127.0.0.1:9000=apikey:K"
                .parse()
                .unwrap();
        assert_eq!(creds.0.len(), 2);
        let a = creds.get("https://a.example").unwrap();
        assert!(
            matches!(&a.kind, CredentialKind::Channel { id, secret: Some(s) }
            if id == "ch_1" && s.expose() == "s3cret")
        );
        let b = creds.get("http://127.0.0.1:9000").unwrap();
        assert!(matches!(&b.kind, CredentialKind::ApiKey(k) if k.expose() == "K"));
        assert!(!format!("{creds:?}").contains("s3cret"));
    }

    #[test]
    fn channel_without_secret_and_bad_entries() {
        let c: PeerCredential = "https://a.example=channel:ch_9".parse().unwrap();
        assert_eq!(
            c.kind,
            CredentialKind::Channel {
                id: "ch_9".into(),
                secret: None
            }
        );
        assert!(
            "https://a.example=token:x"
                .parse::<PeerCredential>()
                .is_err()
        );
        assert!("https://a.example".parse::<PeerCredential>().is_err());
        assert!(
            "ftp://a.example=apikey:k"
                .parse::<PeerCredential>()
                .is_err()
        );
        assert!(
            "https://a.example=apikey: "
                .parse::<PeerCredential>()
                .is_err()
        );
        let err = "https://a.example=apikey:k,https://b.example=nope"
            .parse::<PeerCredentials>()
            .unwrap_err();
        assert!(err.contains("https://b.example"), "{err}");
    }

    #[test]
    fn toml_table_and_env_names() {
        let s = crate::settings::Settings::from_toml_str(
            "[invoke]\nprovider_timeout_s = 5\nrate_per_min = 0\n\
             [invoke.peer_credentials]\n\"https://p.example/\" = \"channel:ch_1:s\"\n",
        )
        .unwrap();
        assert_eq!(s.invoke.provider_timeout_s, 5);
        assert_eq!(s.invoke.rate_per_min, 0);
        assert_eq!(
            s.invoke.max_provider_body_bytes,
            DEFAULT_MAX_PROVIDER_BODY_BYTES
        );
        assert!(s.invoke.peer_credentials.get("https://p.example").is_some());
        assert!(
            crate::settings::Settings::from_toml_str("[invoke]\ntimeout = 1\n")
                .unwrap_err()
                .contains("timeout")
        );
        let env: Vec<&str> = crate::settings::env_names().collect();
        for name in [
            "AIMARKET_PROVIDER_TIMEOUT_S",
            "AIMARKET_MAX_PROVIDER_BODY_BYTES",
            "AIMARKET_INVOKE_RATE_PER_MIN",
            "AIMARKET_PEER_CREDENTIALS",
            "AIMARKET_SELLS_FOR",
            "AIMARKET_SIGN_ALL_PEERS",
            "AIMARKET_SELLER_DIRECT_FEE",
        ] {
            assert!(env.contains(&name), "{name}");
        }
        let bad = crate::settings::Settings::load(
            None,
            &|k| (k == "AIMARKET_PROVIDER_TIMEOUT_S").then(|| "0".to_owned()),
            crate::settings::Overrides::default(),
        );
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("AIMARKET_PROVIDER_TIMEOUT_S")
        );
    }

    #[test]
    fn sells_for_is_a_path_prefix_on_one_origin() {
        let s: SellsFor = "https://Oracles.example/chronos/, http://127.0.0.1:9301"
            .parse()
            .unwrap();
        assert!(s.covers("https://oracles.example/chronos"));
        assert!(s.covers("https://oracles.example:443/chronos/ai-market/v2/invoke"));
        assert!(!s.covers("https://oracles.example/chronos2"));
        assert!(!s.covers("https://oracles.example/lumen"));
        assert!(!s.covers("http://oracles.example/chronos"));
        assert!(s.covers("http://127.0.0.1:9301/ai-market/v2/invoke"));
        assert!(!s.covers("http://127.0.0.1:9302/ai-market/v2/invoke"));
        assert!("ftp://x".parse::<SellsFor>().is_err());
        assert_eq!("".parse::<SellsFor>().unwrap(), SellsFor::default());
        let t = crate::settings::Settings::from_toml_str(
            "[invoke]\nsells_for = [\"https://a.example/x\"]\nsign_all_peers = true\n\
             seller_direct_fee = \"channel\"\n",
        )
        .unwrap();
        assert!(t.invoke.sells_for.covers("https://a.example/x/y"));
        assert!(t.invoke.sign_all_peers);
        assert_eq!(t.invoke.seller_direct_fee, SellerDirectFee::Channel);
        assert_eq!("Waived".parse(), Ok(SellerDirectFee::Waived));
        assert!("half".parse::<SellerDirectFee>().is_err());
    }

    #[test]
    fn ranges() {
        assert!(check_provider_timeout(0).is_err());
        assert!(check_provider_timeout(30).is_ok());
        assert!(check_max_body(10).is_err());
        assert!(check_max_body(DEFAULT_MAX_PROVIDER_BODY_BYTES).is_ok());
    }
}

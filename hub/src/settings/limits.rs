//! Settings of the abuse limits (`[limits]` in the TOML file) and the trusted proxies (the
//! top-level `trusted_proxies` key).
//!
//! | TOML key                        | env                                | default |
//! |---------------------------------|------------------------------------|---------|
//! | `trusted_proxies`               | `AIMARKET_TRUSTED_PROXIES`         | none    |
//! | `limits.api_keys`               | `AIMARKET_API_KEYS`                | none    |
//! | `limits.search_rate_per_min`    | `AIMARKET_SEARCH_RATE_PER_MIN`     | 1200 (0 = off) |
//! | `limits.mcp_rate_per_min`       | `AIMARKET_MCP_RATE_PER_MIN`        | 1200 (0 = off) |
//! | `limits.provider_max_in_flight` | `AIMARKET_PROVIDER_MAX_IN_FLIGHT`  | 256 (0 = off) |
//! | `limits.provider_rate_per_min`  | `AIMARKET_PROVIDER_RATE_PER_MIN`   | 0 (off) |
//!
//! The env forms of the two lists are comma-separated; the TOML forms are arrays of strings.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;

use super::values::Secret;
use super::{EnvBinding, parse, redact};

/// Default per-client searches per minute.
pub const DEFAULT_SEARCH_RATE_PER_MIN: u32 = 1200;
/// Default per-client MCP requests per minute.
pub const DEFAULT_MCP_RATE_PER_MIN: u32 = 1200;
/// Default cap on routed calls in flight to one provider, per replica.
pub const DEFAULT_PROVIDER_MAX_IN_FLIGHT: u32 = 256;
/// Most entries a list setting may hold: a configuration, not a database.
pub const MAX_LIST_ENTRIES: usize = 10_000;

/// The `[limits]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Buyer API keys this hub accepts as client identities (`AIMARKET_API_KEYS`). A request
    /// whose `X-API-Key` is not one of them is limited by its address. Never logged.
    pub api_keys: ApiKeys,
    /// Searches per minute per client; 0 turns the limit off (`AIMARKET_SEARCH_RATE_PER_MIN`).
    pub search_rate_per_min: u32,
    /// MCP requests per minute per client; 0 = off (`AIMARKET_MCP_RATE_PER_MIN`).
    pub mcp_rate_per_min: u32,
    /// Routed calls in flight to one provider at once, per replica; 0 = off
    /// (`AIMARKET_PROVIDER_MAX_IN_FLIGHT`).
    pub provider_max_in_flight: u32,
    /// Routed calls per minute to one provider, all clients together; 0 = off
    /// (`AIMARKET_PROVIDER_RATE_PER_MIN`).
    pub provider_rate_per_min: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            api_keys: ApiKeys::default(),
            search_rate_per_min: DEFAULT_SEARCH_RATE_PER_MIN,
            mcp_rate_per_min: DEFAULT_MCP_RATE_PER_MIN,
            provider_max_in_flight: DEFAULT_PROVIDER_MAX_IN_FLIGHT,
            provider_rate_per_min: 0,
        }
    }
}

/// The buyer API keys, as configured (hashed by `crate::limits` before use).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct ApiKeys(pub Vec<Secret>);

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys(<{} redacted>)", self.0.len())
    }
}

impl TryFrom<Vec<String>> for ApiKeys {
    type Error = String;
    fn try_from(items: Vec<String>) -> Result<Self, Self::Error> {
        if items.len() > MAX_LIST_ENTRIES {
            return Err(format!("at most {MAX_LIST_ENTRIES} keys"));
        }
        let keys = items
            .iter()
            .map(|k| k.trim().parse::<Secret>())
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(bad) = keys
            .iter()
            .find(|k| !k.expose().bytes().all(|b| b.is_ascii_graphic()))
        {
            // Header values are visible ASCII; a key with anything else could never match.
            return Err(format!(
                "an API key ({} characters) contains a character outside visible ASCII",
                bad.expose().chars().count()
            ));
        }
        Ok(Self(keys))
    }
}

impl FromStr for ApiKeys {
    type Err = String;
    /// Comma-separated keys.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        split_list(s).try_into()
    }
}

/// Addresses and networks of the proxies whose forwarding headers the hub believes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Whether `addr` is one of the trusted proxies. An IPv4-mapped IPv6 address counts as
    /// its IPv4 form (a dual-stack listener reports IPv4 peers that way).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// True when no proxy is trusted (forwarding headers are ignored).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = String;
    fn try_from(items: Vec<String>) -> Result<Self, Self::Error> {
        if items.len() > MAX_LIST_ENTRIES {
            return Err(format!("at most {MAX_LIST_ENTRIES} entries"));
        }
        items
            .iter()
            .map(|item| parse_net(item.trim()))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl FromStr for TrustedProxies {
    type Err = String;
    /// Comma-separated addresses (`10.0.0.7`, `::1`) and networks (`10.0.0.0/8`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        split_list(s).try_into()
    }
}

/// One address (a host network) or CIDR network.
fn parse_net(item: &str) -> Result<IpNet, String> {
    if let Ok(net) = item.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    item.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{item}` is neither an IP address nor a CIDR network"))
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The environment variables of this area (applied after the core ones).
pub(super) const ENV_BINDINGS: &[EnvBinding] = &[
    EnvBinding {
        env: "AIMARKET_TRUSTED_PROXIES",
        setting: "trusted_proxies",
        shown: str::to_owned,
        apply: |s, v| {
            s.trusted_proxies = v.parse()?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_API_KEYS",
        setting: "limits.api_keys",
        shown: redact,
        apply: |s, v| {
            s.limits.api_keys = v.parse()?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_SEARCH_RATE_PER_MIN",
        setting: "limits.search_rate_per_min",
        shown: str::to_owned,
        apply: |s, v| {
            s.limits.search_rate_per_min = parse(v)?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_MCP_RATE_PER_MIN",
        setting: "limits.mcp_rate_per_min",
        shown: str::to_owned,
        apply: |s, v| {
            s.limits.mcp_rate_per_min = parse(v)?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_PROVIDER_MAX_IN_FLIGHT",
        setting: "limits.provider_max_in_flight",
        shown: str::to_owned,
        apply: |s, v| {
            s.limits.provider_max_in_flight = parse(v)?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_PROVIDER_RATE_PER_MIN",
        setting: "limits.provider_rate_per_min",
        shown: str::to_owned,
        apply: |s, v| {
            s.limits.provider_rate_per_min = parse(v)?;
            Ok(())
        },
    },
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn trusted_proxies_parse_addresses_and_networks() {
        let proxies: TrustedProxies = " 10.0.0.0/8, 127.0.0.1 ,::1,2001:db8::/32".parse().unwrap();
        assert!(proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(proxies.contains("127.0.0.1".parse().unwrap()));
        assert!(proxies.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(proxies.contains("2001:db8::5".parse().unwrap()));
        assert!(!proxies.contains("127.0.0.2".parse().unwrap()));
        assert!(!proxies.contains("11.0.0.1".parse().unwrap()));
        assert!(TrustedProxies::default().is_empty());
        let bad = "10.0.0.0/8,proxy.example".parse::<TrustedProxies>();
        assert!(bad.unwrap_err().contains("proxy.example"));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn api_keys_are_redacted_and_checked() {
        let keys: ApiKeys = "k-one, k-two".parse().unwrap();
        assert_eq!(keys.0.len(), 2);
        assert!(!format!("{keys:?}").contains("k-one"));
        assert!(ApiKeys::try_from(vec!["has space".to_owned()]).is_err());
        assert!(ApiKeys::try_from(vec![" ".to_owned()]).is_err());
    }
}

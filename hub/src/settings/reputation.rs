//! Settings of reputation (`[reputation]` in the TOML file).
//!
//! | TOML key (`[reputation]`) | env                               | default |
//! |---------------------------|-----------------------------------|---------|
//! | `recompute_interval_s`    | `AIMARKET_REPUTATION_INTERVAL_S`  | 300     |
//! | `peer_bonds`              | `AIMARKET_PEER_BONDS`             | none    |
//!
//! Peer bonds are the operator's record of what each peer has staked (spec §5.3); the hub
//! does not verify them on chain. Env form: comma-separated `URL=USD`; TOML form: a table
//! `[reputation.peer_bonds]` mapping the peer URL to a number of USD.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use url::Url;

/// Default seconds between trust-score recomputations.
pub const DEFAULT_RECOMPUTE_INTERVAL_S: u64 = 300;
/// Longest recompute interval accepted: a day.
pub const MAX_RECOMPUTE_INTERVAL_S: u64 = 24 * 3600;
/// Largest bond accepted, USD (the bond factor saturates at $10,000 anyway).
pub const MAX_BOND_USD: f64 = 1e12;

/// The `[reputation]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReputationSettings {
    /// Seconds between recomputations of every peer's trust score
    /// (`AIMARKET_REPUTATION_INTERVAL_S`), at least 1. Scores are also recomputed after
    /// each crawl run.
    pub recompute_interval_s: u64,
    /// Operator-configured bond per peer (`AIMARKET_PEER_BONDS`).
    pub peer_bonds: PeerBonds,
}

impl Default for ReputationSettings {
    fn default() -> Self {
        Self {
            recompute_interval_s: DEFAULT_RECOMPUTE_INTERVAL_S,
            peer_bonds: PeerBonds::default(),
        }
    }
}

impl ReputationSettings {
    /// Checks the ranges; the error names the TOML key, the value and the reason.
    pub fn check(&self) -> Result<(), (&'static str, String, String)> {
        check_recompute_interval(self.recompute_interval_s).map_err(|r| {
            (
                "reputation.recompute_interval_s",
                self.recompute_interval_s.to_string(),
                r,
            )
        })
    }
}

/// Range rule of `recompute_interval_s`.
pub fn check_recompute_interval(seconds: u64) -> Result<(), String> {
    if seconds == 0 {
        return Err("must be at least 1 second".into());
    }
    if seconds > MAX_RECOMPUTE_INTERVAL_S {
        return Err(format!(
            "must be at most {MAX_RECOMPUTE_INTERVAL_S} seconds"
        ));
    }
    Ok(())
}

/// Bonds by peer origin (`scheme://host[:port]`), in USD.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerBonds(BTreeMap<String, f64>);

impl PeerBonds {
    /// The bond configured for `origin`, 0 when none.
    pub fn get(&self, origin: &str) -> f64 {
        self.0.get(origin).copied().unwrap_or(0.0)
    }

    /// Every configured bond, by origin.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(origin, usd)| (origin.as_str(), *usd))
    }

    fn insert(&mut self, url: &str, usd: f64) -> Result<(), String> {
        if !(0.0..=MAX_BOND_USD).contains(&usd) {
            return Err(format!(
                "bond for `{url}` must be a number of USD between 0 and {MAX_BOND_USD}"
            ));
        }
        self.0.insert(origin_of(url)?, usd);
        Ok(())
    }
}

/// Reduces a URL to its origin, the form peers are keyed by.
fn origin_of(url: &str) -> Result<String, String> {
    let parsed = Url::parse(url.trim()).map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("`{url}` is not an http(s) URL with a host"));
    }
    Ok(parsed.origin().ascii_serialization())
}

impl FromStr for PeerBonds {
    type Err = String;
    /// The env form: comma-separated `URL=USD` entries (the split is at the last `=`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bonds = Self::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (url, usd) = item
                .rsplit_once('=')
                .ok_or_else(|| format!("`{item}`: expected URL=USD"))?;
            let usd: f64 = usd
                .trim()
                .parse()
                .map_err(|_| format!("`{item}`: `{usd}` is not a number of USD"))?;
            bonds.insert(url, usd)?;
        }
        Ok(bonds)
    }
}

impl<'de> Deserialize<'de> for PeerBonds {
    /// The TOML form: a table from peer URL to USD.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = BTreeMap::<String, f64>::deserialize(d)?;
        let mut bonds = Self::default();
        for (url, usd) in table {
            bonds.insert(&url, usd).map_err(serde::de::Error::custom)?;
        }
        Ok(bonds)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn env_form_keys_bonds_by_origin() {
        let bonds: PeerBonds = "https://a.example/x=1000, http://127.0.0.1:9000=2.5"
            .parse()
            .unwrap();
        assert_eq!(bonds.get("https://a.example"), 1000.0);
        assert_eq!(bonds.get("http://127.0.0.1:9000"), 2.5);
        assert_eq!(bonds.get("https://b.example"), 0.0);
        assert_eq!(bonds.iter().count(), 2);
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "https://a.example",
            "https://a.example=lots",
            "ftp://x=1",
            "https://a.example=-1",
        ] {
            let error = bad.parse::<PeerBonds>().unwrap_err();
            assert!(error.contains('`'), "{bad}: {error}");
        }
    }

    #[test]
    fn toml_table_form() {
        #[derive(Deserialize)]
        struct Doc {
            reputation: ReputationSettings,
        }
        let doc: Doc = toml::from_str(
            "[reputation]\nrecompute_interval_s = 5\n[reputation.peer_bonds]\n\"https://a.example\" = 100.0\n",
        )
        .unwrap();
        assert_eq!(doc.reputation.recompute_interval_s, 5);
        assert_eq!(doc.reputation.peer_bonds.get("https://a.example"), 100.0);
        assert!(check_recompute_interval(0).is_err());
        assert!(check_recompute_interval(MAX_RECOMPUTE_INTERVAL_S + 1).is_err());
    }
}

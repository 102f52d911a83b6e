//! Settings of reputation (`[reputation]` in the TOML file).
//!
//! | TOML key (`[reputation]`) | env                               | default |
//! |---------------------------|-----------------------------------|---------|
//! | `recompute_interval_s`    | `AIMARKET_REPUTATION_INTERVAL_S`  | 300     |
//! | `peer_bonds`              | `AIMARKET_PEER_BONDS`             | none    |
//! | `min_trust_score`         | `AIMARKET_MIN_TRUST_SCORE`        | 0.3     |
//! | `admitted_prior`          | `AIMARKET_TRUST_PRIOR`            | 0.6     |
//! | `prior_weight`            | `AIMARKET_TRUST_PRIOR_WEIGHT`     | 10      |
//!
//! `min_trust_score` is the trust floor: published as the well-known's
//! `federation.min_trust_score` and applied by search and the well-known `peers`.
//! `admitted_prior` is the trust an operator-admitted peer starts with (the mean of the
//! Beta prior that observed calls update, `crate::reputation`), `prior_weight` how many
//! observed calls that prior is worth. The defaults put a freshly admitted peer at 0.6,
//! above the 0.3 floor, so a new hub's peers are searchable, and take 11 straight failures
//! to push a peer with no other standing below it.
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
/// Default trust floor (the well-known's `federation.min_trust_score`).
pub const DEFAULT_MIN_TRUST_SCORE: f64 = 0.3;
/// Default prior trust of an operator-admitted peer; at or above the default floor.
pub const DEFAULT_ADMITTED_PRIOR: f64 = 0.6;
/// Default weight of the prior, in observed calls.
pub const DEFAULT_PRIOR_WEIGHT: f64 = 10.0;
/// Largest prior weight accepted: beyond it no realistic traffic could move a score.
pub const MAX_PRIOR_WEIGHT: f64 = 1_000_000.0;

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
    /// The trust floor (`AIMARKET_MIN_TRUST_SCORE`), 0 to 1: published in the well-known
    /// and applied by search and the well-known `peers`.
    pub min_trust_score: f64,
    /// Prior trust of an operator-admitted peer with no history (`AIMARKET_TRUST_PRIOR`),
    /// 0 to 1.
    pub admitted_prior: f64,
    /// Pseudo-observations the prior is worth (`AIMARKET_TRUST_PRIOR_WEIGHT`), above 0.
    pub prior_weight: f64,
}

impl Default for ReputationSettings {
    fn default() -> Self {
        Self {
            recompute_interval_s: DEFAULT_RECOMPUTE_INTERVAL_S,
            peer_bonds: PeerBonds::default(),
            min_trust_score: DEFAULT_MIN_TRUST_SCORE,
            admitted_prior: DEFAULT_ADMITTED_PRIOR,
            prior_weight: DEFAULT_PRIOR_WEIGHT,
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
        })?;
        check_unit(self.min_trust_score).map_err(|r| {
            (
                "reputation.min_trust_score",
                self.min_trust_score.to_string(),
                r,
            )
        })?;
        check_unit(self.admitted_prior).map_err(|r| {
            (
                "reputation.admitted_prior",
                self.admitted_prior.to_string(),
                r,
            )
        })?;
        check_prior_weight(self.prior_weight)
            .map_err(|r| ("reputation.prior_weight", self.prior_weight.to_string(), r))
    }
}

/// Range rule of a score-like setting: a finite number in `[0, 1]`.
pub fn check_unit(x: f64) -> Result<(), String> {
    if !(x.is_finite() && (0.0..=1.0).contains(&x)) {
        return Err("must be a number between 0 and 1".into());
    }
    Ok(())
}

/// Range rule of `prior_weight`: above 0 (a prior of weight 0 would let one call decide a
/// peer's trust) and at most [`MAX_PRIOR_WEIGHT`].
pub fn check_prior_weight(x: f64) -> Result<(), String> {
    if !(x.is_finite() && x > 0.0 && x <= MAX_PRIOR_WEIGHT) {
        return Err(format!(
            "must be a number above 0 and at most {MAX_PRIOR_WEIGHT}"
        ));
    }
    Ok(())
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
        assert_eq!(doc.reputation.min_trust_score, DEFAULT_MIN_TRUST_SCORE);
        const { assert!(DEFAULT_ADMITTED_PRIOR >= DEFAULT_MIN_TRUST_SCORE) };
        for bad in [-0.1, 1.5, f64::NAN] {
            assert!(check_unit(bad).is_err(), "{bad}");
        }
        for bad in [0.0, -1.0, f64::INFINITY, MAX_PRIOR_WEIGHT * 2.0] {
            assert!(check_prior_weight(bad).is_err(), "{bad}");
        }
        let set: Doc = toml::from_str(
            "[reputation]\nmin_trust_score = 0.4\nadmitted_prior = 0.7\nprior_weight = 4.0\n",
        )
        .unwrap();
        assert_eq!(
            (
                set.reputation.min_trust_score,
                set.reputation.admitted_prior,
                set.reputation.prior_weight
            ),
            (0.4, 0.7, 4.0)
        );
        assert!(set.reputation.check().is_ok());
        assert!(check_recompute_interval(MAX_RECOMPUTE_INTERVAL_S + 1).is_err());
    }
}

//! Buyer API keys the hub accepts on `POST /ai-market/v2/invoke` (`api_keys` in the TOML
//! file, `AIMARKET_API_KEYS` comma-separated in the environment).
//!
//! The hub has no credit accounts: an accepted key pays for nothing, it only names the
//! client (rate limit and idempotency scope). What the list is for is refusing keys the
//! operator never issued: an SDK configured with a key for another hub (the Rust SDK's
//! credits rail sends `X-API-Key` instead of a channel) would otherwise be silently treated
//! as anonymous and fail later with a confusing 402. With the list empty, every
//! `X-API-Key` is refused, because no key can be one the operator issued.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Settings;

/// Longest key accepted in the list (keys are header values).
pub const MAX_API_KEY_CHARS: usize = 256;

/// The accepted keys. Only SHA-256 digests are kept, so neither `Debug` nor a heap dump
/// shows a key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys(Vec<[u8; 32]>);

impl ApiKeys {
    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `presented` is one of the keys. Compares digests in constant time and looks
    /// at every entry, so the answer's timing says nothing about which key came close.
    pub fn contains(&self, presented: &str) -> bool {
        let digest = Sha256::digest(presented.trim().as_bytes());
        self.0
            .iter()
            .fold(false, |found, key| found | bool::from(key.ct_eq(&digest)))
    }

    fn push(&mut self, key: &str) -> Result<(), String> {
        let key = key.trim();
        if key.chars().count() > MAX_API_KEY_CHARS {
            return Err(format!(
                "an API key is longer than {MAX_API_KEY_CHARS} characters"
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) || key.contains(',') {
            return Err("an API key must be visible ASCII without commas".into());
        }
        if !key.is_empty() {
            self.0.push(Sha256::digest(key.as_bytes()).into());
        }
        Ok(())
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys(<{} redacted>)", self.0.len())
    }
}

impl FromStr for ApiKeys {
    type Err = String;
    /// The env form: comma-separated keys; blank entries are skipped.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut keys = Self::default();
        for key in s.split(',') {
            keys.push(key)?;
        }
        Ok(keys)
    }
}

impl<'de> Deserialize<'de> for ApiKeys {
    /// The TOML form: an array of strings, or one comma-separated string like the env form.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            List(Vec<String>),
            Text(String),
        }
        let mut keys = Self::default();
        match Wire::deserialize(d)? {
            Wire::List(list) => {
                for key in &list {
                    keys.push(key).map_err(serde::de::Error::custom)?;
                }
            }
            Wire::Text(text) => keys = text.parse().map_err(serde::de::Error::custom)?,
        }
        Ok(keys)
    }
}

impl Settings {
    /// Whether invoke accepts `key` as an `X-API-Key`: only a key in `api_keys`
    /// (`AIMARKET_API_KEYS`). With none configured, no key is accepted.
    pub fn api_key_accepted(&self, key: &str) -> bool {
        self.api_keys.contains(key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn env_form_accepts_listed_keys_only() {
        let keys: ApiKeys = " k-one ,k-two,, ".parse().unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains("k-one"));
        assert!(keys.contains("k-two"));
        assert!(!keys.contains("k-three"));
        assert!(!keys.contains(""));
        assert!(!format!("{keys:?}").contains("k-one"));
    }

    #[test]
    fn empty_accepts_nothing() {
        let settings = Settings::default();
        assert!(settings.api_keys.is_empty());
        assert!(!settings.api_key_accepted("anything"));
        assert!(!settings.api_key_accepted(""));
    }

    #[test]
    fn toml_list_and_string_forms() {
        let list = Settings::from_toml_str("api_keys = [\"a\", \"b\"]").unwrap();
        assert!(list.api_key_accepted("a") && list.api_key_accepted("b"));
        let text = Settings::from_toml_str("api_keys = \"a,b\"").unwrap();
        assert_eq!(text.api_keys, list.api_keys);
        assert!(Settings::from_toml_str("api_keys = [\"a b\"]").is_err());
        assert!(
            "x".repeat(MAX_API_KEY_CHARS + 1)
                .parse::<ApiKeys>()
                .is_err()
        );
    }
}

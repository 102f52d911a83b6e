//! Settings of running several replicas (`[replica]` in the TOML file). They only matter
//! with `REDIS_URL` (shared lease, limits, catalog channel) or a PostgreSQL store (the
//! catalog-version poll); see `crate::replica`.
//!
//! | TOML key (`[replica]`) | env                          | default       |
//! |------------------------|------------------------------|---------------|
//! | `key_prefix`           | `AIMARKET_REDIS_KEY_PREFIX`  | `aimarket:`   |
//! | `catalog_poll_ms`      | `AIMARKET_CATALOG_POLL_MS`   | 10000         |
//! | `crawl_lease_ttl_s`    | `AIMARKET_CRAWL_LEASE_TTL_S` | 30            |

use std::time::Duration;

use serde::Deserialize;

/// Default prefix of every Redis key and channel the hub uses.
pub const DEFAULT_KEY_PREFIX: &str = "aimarket:";
/// Longest key prefix accepted.
pub const MAX_KEY_PREFIX_LEN: usize = 100;
/// Default period of the catalog-version poll, milliseconds.
pub const DEFAULT_CATALOG_POLL_MS: u64 = 10_000;
/// Shortest poll period accepted (tests use it; one cheap single-row read each time).
pub const MIN_CATALOG_POLL_MS: u64 = 100;
/// Longest poll period accepted: an hour.
pub const MAX_CATALOG_POLL_MS: u64 = 3_600_000;
/// Default lifetime of the crawl lease without renewal, seconds.
pub const DEFAULT_CRAWL_LEASE_TTL_S: u64 = 30;
/// Shortest lease lifetime accepted (it is renewed every third of it).
pub const MIN_CRAWL_LEASE_TTL_S: u64 = 3;
/// Longest lease lifetime accepted: how long a dead replica can block crawls.
pub const MAX_CRAWL_LEASE_TTL_S: u64 = 3600;

/// The `[replica]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicaSettings {
    /// Prefix of every Redis key and channel (`AIMARKET_REDIS_KEY_PREFIX`): the crawl lease
    /// is `<prefix>crawl:lease`, the catalog channel `<prefix>catalog`. Replicas of one hub
    /// must share it; different hubs on one Redis must not.
    pub key_prefix: String,
    /// How often each replica compares the store's catalog version with its index,
    /// milliseconds (`AIMARKET_CATALOG_POLL_MS`). Heals a missed catalog message; without
    /// Redis it is how replicas on one PostgreSQL converge.
    pub catalog_poll_ms: u64,
    /// Lifetime of the crawl lease, seconds (`AIMARKET_CRAWL_LEASE_TTL_S`); the running
    /// replica renews it every third of that, so a replica that dies mid-crawl blocks others
    /// for at most this long.
    pub crawl_lease_ttl_s: u64,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        Self {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            catalog_poll_ms: DEFAULT_CATALOG_POLL_MS,
            crawl_lease_ttl_s: DEFAULT_CRAWL_LEASE_TTL_S,
        }
    }
}

impl ReplicaSettings {
    /// Checks the values; the error names the TOML key, the value and the reason.
    pub fn check(&self) -> Result<(), (&'static str, String, String)> {
        check_key_prefix(&self.key_prefix)
            .map_err(|r| ("replica.key_prefix", self.key_prefix.clone(), r))?;
        check_catalog_poll(self.catalog_poll_ms).map_err(|r| {
            (
                "replica.catalog_poll_ms",
                self.catalog_poll_ms.to_string(),
                r,
            )
        })?;
        check_lease_ttl(self.crawl_lease_ttl_s).map_err(|r| {
            (
                "replica.crawl_lease_ttl_s",
                self.crawl_lease_ttl_s.to_string(),
                r,
            )
        })
    }

    /// The poll period.
    pub fn catalog_poll(&self) -> Duration {
        Duration::from_millis(self.catalog_poll_ms)
    }

    /// The lease lifetime.
    pub fn crawl_lease_ttl(&self) -> Duration {
        Duration::from_secs(self.crawl_lease_ttl_s)
    }
}

/// Rule of `key_prefix`: non-empty, at most [`MAX_KEY_PREFIX_LEN`] characters, no whitespace
/// or control characters (it becomes part of every key).
pub fn check_key_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty".into());
    }
    if prefix.chars().count() > MAX_KEY_PREFIX_LEN {
        return Err(format!("must be at most {MAX_KEY_PREFIX_LEN} characters"));
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    Ok(())
}

/// Range rule of `catalog_poll_ms`.
pub fn check_catalog_poll(ms: u64) -> Result<(), String> {
    if !(MIN_CATALOG_POLL_MS..=MAX_CATALOG_POLL_MS).contains(&ms) {
        return Err(format!(
            "must be between {MIN_CATALOG_POLL_MS} and {MAX_CATALOG_POLL_MS} milliseconds"
        ));
    }
    Ok(())
}

/// Range rule of `crawl_lease_ttl_s`.
pub fn check_lease_ttl(seconds: u64) -> Result<(), String> {
    if !(MIN_CRAWL_LEASE_TTL_S..=MAX_CRAWL_LEASE_TTL_S).contains(&seconds) {
        return Err(format!(
            "must be between {MIN_CRAWL_LEASE_TTL_S} and {MAX_CRAWL_LEASE_TTL_S} seconds"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn replica_settings_defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(ReplicaSettings::default().check(), Ok(()));
        let bad = ReplicaSettings {
            key_prefix: "has space:".into(),
            ..ReplicaSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "replica.key_prefix");
        let bad = ReplicaSettings {
            key_prefix: String::new(),
            ..ReplicaSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "replica.key_prefix");
        let bad = ReplicaSettings {
            catalog_poll_ms: 10,
            ..ReplicaSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "replica.catalog_poll_ms");
        let bad = ReplicaSettings {
            crawl_lease_ttl_s: 1,
            ..ReplicaSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "replica.crawl_lease_ttl_s");
    }
}

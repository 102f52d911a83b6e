//! Settings of the federation crawler (`[crawl]` in the TOML file).
//!
//! | TOML key (`[crawl]`)    | env                              | default          |
//! |-------------------------|----------------------------------|------------------|
//! | `well_known_refresh_s`  | `AIMARKET_WELL_KNOWN_REFRESH_S`  | 21600 (6 hours)  |
//! | `request_timeout_s`     | `AIMARKET_CRAWL_TIMEOUT_S`       | 20               |
//! | `manifest_max_age_s`    | `AIMARKET_MANIFEST_MAX_AGE_S`    | 604800 (7 days)  |
//! | `manifest_max_future_s` | `AIMARKET_MANIFEST_MAX_FUTURE_S` | 3600 (1 hour)    |
//!
//! The crawl interval and the auto-crawl switch stay top-level (`crawl_interval_s`,
//! `auto_crawl`) because the well-known document publishes the interval.

use std::time::Duration;

use serde::Deserialize;

/// Default `well_known_refresh_s`: 6 hours.
pub const DEFAULT_WELL_KNOWN_REFRESH_S: u64 = 6 * 3600;
/// Longest well-known refresh window accepted: a week.
pub const MAX_WELL_KNOWN_REFRESH_S: u64 = 7 * 24 * 3600;
/// Default per-request time limit of the crawler, seconds.
pub const DEFAULT_CRAWL_TIMEOUT_S: u64 = 20;
/// Longest per-request time limit accepted: five minutes.
pub const MAX_CRAWL_TIMEOUT_S: u64 = 300;
/// Default oldest acceptable manifest `generated_at`: 7 days.
pub const DEFAULT_MANIFEST_MAX_AGE_S: u64 = 7 * 24 * 3600;
/// Default clock-skew allowance for a manifest `generated_at` in the future: 1 hour.
pub const DEFAULT_MANIFEST_MAX_FUTURE_S: u64 = 3600;
/// Upper bound of both freshness settings: a year.
pub const MAX_FRESHNESS_S: u64 = 365 * 24 * 3600;

/// The `[crawl]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrawlSettings {
    /// How long an unchanged peer's well-known may go unchecked, seconds
    /// (`AIMARKET_WELL_KNOWN_REFRESH_S`). Within it a known peer costs one conditional
    /// manifest request per crawl; the trade-off is that peers listed by an unchanged peer
    /// are discovered up to this much later. 0 checks the well-known on every crawl.
    pub well_known_refresh_s: u64,
    /// Total time for one crawler request, connection to last body byte, seconds
    /// (`AIMARKET_CRAWL_TIMEOUT_S`).
    pub request_timeout_s: u64,
    /// Oldest acceptable manifest `generated_at`, seconds (`AIMARKET_MANIFEST_MAX_AGE_S`).
    pub manifest_max_age_s: u64,
    /// Furthest in the future a manifest `generated_at` may be, seconds
    /// (`AIMARKET_MANIFEST_MAX_FUTURE_S`).
    pub manifest_max_future_s: u64,
}

impl Default for CrawlSettings {
    fn default() -> Self {
        Self {
            well_known_refresh_s: DEFAULT_WELL_KNOWN_REFRESH_S,
            request_timeout_s: DEFAULT_CRAWL_TIMEOUT_S,
            manifest_max_age_s: DEFAULT_MANIFEST_MAX_AGE_S,
            manifest_max_future_s: DEFAULT_MANIFEST_MAX_FUTURE_S,
        }
    }
}

impl CrawlSettings {
    /// Checks the ranges; the error names the TOML key, the value and the reason.
    pub fn check(&self) -> Result<(), (&'static str, String, String)> {
        let fields = [
            (
                "crawl.well_known_refresh_s",
                self.well_known_refresh_s,
                check_well_known_refresh as fn(u64) -> Result<(), String>,
            ),
            (
                "crawl.request_timeout_s",
                self.request_timeout_s,
                check_request_timeout,
            ),
            (
                "crawl.manifest_max_age_s",
                self.manifest_max_age_s,
                check_freshness,
            ),
            (
                "crawl.manifest_max_future_s",
                self.manifest_max_future_s,
                check_freshness,
            ),
        ];
        for (key, value, check) in fields {
            check(value).map_err(|reason| (key, value.to_string(), reason))?;
        }
        Ok(())
    }

    /// [`Self::well_known_refresh_s`] as a duration.
    pub fn well_known_refresh(&self) -> Duration {
        Duration::from_secs(self.well_known_refresh_s)
    }

    /// [`Self::request_timeout_s`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_s)
    }

    /// [`Self::manifest_max_age_s`] as a duration.
    pub fn manifest_max_age(&self) -> Duration {
        Duration::from_secs(self.manifest_max_age_s)
    }

    /// [`Self::manifest_max_future_s`] as a duration.
    pub fn manifest_max_future(&self) -> Duration {
        Duration::from_secs(self.manifest_max_future_s)
    }
}

/// Range rule of `well_known_refresh_s`.
pub fn check_well_known_refresh(seconds: u64) -> Result<(), String> {
    if seconds > MAX_WELL_KNOWN_REFRESH_S {
        return Err(format!(
            "must be at most {MAX_WELL_KNOWN_REFRESH_S} seconds"
        ));
    }
    Ok(())
}

/// Range rule of `request_timeout_s`.
pub fn check_request_timeout(seconds: u64) -> Result<(), String> {
    if !(1..=MAX_CRAWL_TIMEOUT_S).contains(&seconds) {
        return Err(format!(
            "must be between 1 and {MAX_CRAWL_TIMEOUT_S} seconds"
        ));
    }
    Ok(())
}

/// Range rule of the two freshness settings.
pub fn check_freshness(seconds: u64) -> Result<(), String> {
    if !(1..=MAX_FRESHNESS_S).contains(&seconds) {
        return Err(format!("must be between 1 and {MAX_FRESHNESS_S} seconds"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_pass_and_ranges_are_enforced() {
        assert_eq!(CrawlSettings::default().check(), Ok(()));
        let zero_timeout = CrawlSettings {
            request_timeout_s: 0,
            ..CrawlSettings::default()
        };
        let (key, value, _) = zero_timeout.check().unwrap_err();
        assert_eq!((key, value.as_str()), ("crawl.request_timeout_s", "0"));
        let long_refresh = CrawlSettings {
            well_known_refresh_s: MAX_WELL_KNOWN_REFRESH_S + 1,
            ..CrawlSettings::default()
        };
        assert_eq!(
            long_refresh.check().unwrap_err().0,
            "crawl.well_known_refresh_s"
        );
        let zero_refresh = CrawlSettings {
            well_known_refresh_s: 0,
            ..CrawlSettings::default()
        };
        assert_eq!(zero_refresh.check(), Ok(()));
        let no_age = CrawlSettings {
            manifest_max_age_s: 0,
            ..CrawlSettings::default()
        };
        assert_eq!(no_age.check().unwrap_err().0, "crawl.manifest_max_age_s");
    }
}

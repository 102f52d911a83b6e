//! `failover`: order the providers of a capability for failover, and declare the retry rule.
//!
//! `route` drops providers below `min_trust`, then sorts the rest by:
//! 1. position of the first matching `prefer` pattern (preferred hubs first, in list order);
//! 2. trust, in buckets of `trust_bucket` (default 0.1), higher first: small trust
//!    differences do not override a large latency difference;
//! 3. p50 latency, lower first;
//! 4. routed price, lower first;
//! 5. success rate, higher first; then origin, for a deterministic order.
//!
//! With `retry = true` (default) it declares [`RetryPolicy::once`]: the hub retries the next
//! provider once under the rule documented on [`RetryPolicy`] (never when a paid call may
//! have been charged).
//!
//! ```toml
//! settings = { min_trust = 0.2, trust_bucket = 0.1, prefer = ["https://eu.example"], retry = true }
//! ```

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::unit;
use crate::config::PluginSettings;
use crate::context::PluginContext;
use crate::error::PluginError;
use crate::glob::Glob;
use crate::plugin::{DynPlugin, Hook, HookResult, Hooks, Plugin};
use crate::registry::PluginServices;
use crate::retry::RetryPolicy;
use crate::view::{CapabilityRef, Provider};

/// Registered name.
pub const NAME: &str = "failover";

/// `failover` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverSettings {
    /// Providers below this trust score are dropped.
    pub min_trust: f64,
    /// Width of the trust buckets, in 0 < x ≤ 1.
    pub trust_bucket: f64,
    /// Hub patterns (origin or relaying peer) to try first, in order.
    pub prefer: Vec<String>,
    /// Declare the one-retry failover rule.
    pub retry: bool,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        Self {
            min_trust: 0.0,
            trust_bucket: 0.1,
            prefer: Vec::new(),
            retry: true,
        }
    }
}

/// The plugin.
#[derive(Debug, Clone)]
pub struct Failover {
    settings: FailoverSettings,
    prefer: Vec<Glob>,
}

impl Failover {
    /// Validates settings; `Err((field, message))`.
    pub fn new(settings: FailoverSettings) -> Result<Self, (String, String)> {
        if !(0.0..=1.0).contains(&settings.min_trust) {
            return Err(("min_trust".into(), "must be in 0..=1".into()));
        }
        if !(settings.trust_bucket > 0.0 && settings.trust_bucket <= 1.0) {
            return Err(("trust_bucket".into(), "must be in 0 < x ≤ 1".into()));
        }
        let prefer = settings
            .prefer
            .iter()
            .map(|p| Glob::new(&p.trim_end_matches('/').to_ascii_lowercase()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ("prefer".to_owned(), "patterns must not be empty".to_owned()))?;
        Ok(Self { settings, prefer })
    }

    fn preference(&self, p: &Provider) -> usize {
        let hubs: Vec<String> = p
            .hubs()
            .map(|h| h.trim_end_matches('/').to_ascii_lowercase())
            .collect();
        self.prefer
            .iter()
            .position(|g| hubs.iter().any(|h| g.matches(h)))
            .unwrap_or(usize::MAX)
    }

    fn bucket(&self, p: &Provider) -> i64 {
        // 0..=1 / bucket ≥ 0.0…: at most 1/min-bucket, far inside i64.
        #[allow(clippy::cast_possible_truncation)]
        let b = (unit(p.trust_score) / self.settings.trust_bucket).floor() as i64;
        b
    }

    /// Filters and orders in place (the hook body).
    pub fn order(&self, providers: &mut Vec<Provider>) {
        providers.retain(|p| unit(p.trust_score) >= self.settings.min_trust);
        providers.sort_by(|a, b| {
            self.preference(a)
                .cmp(&self.preference(b))
                .then_with(|| self.bucket(b).cmp(&self.bucket(a)))
                .then_with(|| a.p50_latency_ms.cmp(&b.p50_latency_ms))
                .then_with(|| a.routed_price_usd.total_cmp(&b.routed_price_usd))
                .then_with(|| unit(b.success_rate).total_cmp(&unit(a.success_rate)))
                .then_with(|| a.origin.cmp(&b.origin))
        });
    }
}

/// Factory for the registry.
pub fn factory(
    settings: &PluginSettings,
    _services: &PluginServices,
) -> Result<DynPlugin, PluginError> {
    super::build(settings, Failover::new)
}

#[async_trait]
impl Plugin for Failover {
    fn name(&self) -> &str {
        NAME
    }

    fn hooks(&self) -> Hooks {
        Hooks::of(&[Hook::Route])
    }

    fn settings(&self) -> Option<Value> {
        serde_json::to_value(&self.settings).ok()
    }

    fn retry_policy(&self) -> Option<RetryPolicy> {
        self.settings.retry.then_some(RetryPolicy::once())
    }

    async fn route(
        &self,
        _ctx: &mut PluginContext,
        _capability: &CapabilityRef,
        providers: &mut Vec<Provider>,
    ) -> HookResult {
        self.order(providers);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::view::fixtures::provider;
    use serde_json::json;

    fn p(origin: &str, trust: f64, p50: u64) -> Provider {
        let mut p = provider(origin);
        p.trust_score = trust;
        p.p50_latency_ms = p50;
        p
    }

    fn origins(list: &[Provider]) -> Vec<&str> {
        list.iter().map(|p| &*p.origin).collect()
    }

    #[test]
    fn trust_buckets_then_latency() {
        let f = Failover::new(FailoverSettings::default()).unwrap();
        let mut list = vec![
            p("https://slow-trusted", 0.91, 900),
            p("https://fast-trusted", 0.95, 50),
            p("https://fast-untrusted", 0.3, 10),
        ];
        f.order(&mut list);
        assert_eq!(
            origins(&list),
            vec![
                "https://fast-trusted",
                "https://slow-trusted",
                "https://fast-untrusted"
            ]
        );
    }

    #[test]
    fn min_trust_and_prefer() {
        let f = Failover::new(FailoverSettings {
            min_trust: 0.2,
            prefer: vec!["https://eu.example/".into()],
            ..FailoverSettings::default()
        })
        .unwrap();
        let mut relayed = p("https://x.example", 0.4, 500);
        relayed.via = Some("https://EU.example".into());
        let mut list = vec![
            p("https://best", 0.99, 1),
            relayed,
            p("https://junk", 0.1, 1),
        ];
        f.order(&mut list);
        assert_eq!(origins(&list), vec!["https://x.example", "https://best"]);
    }

    #[test]
    fn retry_policy_follows_settings() {
        let on = Failover::new(FailoverSettings::default()).unwrap();
        assert_eq!(on.retry_policy(), Some(RetryPolicy::once()));
        let off = factory(
            &PluginSettings::new(NAME, json!({"retry": false})),
            &PluginServices::default(),
        )
        .unwrap();
        assert_eq!(off.retry_policy(), None);
        assert!(
            factory(
                &PluginSettings::new(NAME, json!({"trust_bucket": 0})),
                &PluginServices::default()
            )
            .is_err()
        );
    }
}

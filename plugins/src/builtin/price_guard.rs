//! `price-guard`: refuse to relay a provider's 402 that asks more than the price the
//! provider advertised, and report the mismatch against the peer's reputation.
//!
//! On every upstream **402**, `after_invoke` reads the amount asked in each challenge shape
//! the answer carries (see [`crate::payment`]) and takes the largest. With
//! `advertised = max(routed_price_usd, price_usd)` of the provider:
//!
//! ```text
//! requested > advertised × (1 + tolerance) + slack_usd   →   Block { category: "price_mismatch" }
//! ```
//!
//! and a [`PriceMismatch`] goes to the hub's [`ReputationSink`]. Anything else passes. A 402
//! whose amount cannot be read passes when `on_unreadable = "allow"` (default) and is
//! blocked with category `price_unreadable` when `"block"`.
//!
//! Settings: `tolerance` (default 0.05 = 5 %), `slack_usd` (default 0.000001, one base unit
//! of a 6-decimal token: x402 amounts are rounded up), `on_unreadable` (`allow` | `block`).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::PluginSettings;
use crate::context::PluginContext;
use crate::error::PluginError;
use crate::payment::RequestedAmount;
use crate::plugin::{DynPlugin, Hook, HookResult, Hooks, Plugin};
use crate::registry::PluginServices;
use crate::reputation::{PriceMismatch, ReputationSink};
use crate::view::{Decision, InvokeOutcomeView, InvokeView};

/// Registered name.
pub const NAME: &str = "price-guard";
/// Block category for a 402 above the advertised price.
pub const PRICE_MISMATCH: &str = "price_mismatch";
/// Block category for an unreadable 402 (with `on_unreadable = "block"`).
pub const PRICE_UNREADABLE: &str = "price_unreadable";

/// What to do with a 402 whose amount cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnreadable {
    /// Relay it.
    Allow,
    /// Block it.
    Block,
}

/// `price-guard` settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceGuardSettings {
    /// Allowed excess over the advertised price, as a fraction.
    pub tolerance: f64,
    /// Absolute allowance for rounding, USD.
    pub slack_usd: f64,
    /// Unreadable 402s.
    pub on_unreadable: OnUnreadable,
}

impl Default for PriceGuardSettings {
    fn default() -> Self {
        Self {
            tolerance: 0.05,
            slack_usd: 0.000_001,
            on_unreadable: OnUnreadable::Allow,
        }
    }
}

/// The plugin.
pub struct PriceGuard {
    settings: PriceGuardSettings,
    sink: Arc<dyn ReputationSink>,
}

impl std::fmt::Debug for PriceGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriceGuard")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PriceGuard {
    /// A guard reporting to `sink`.
    pub fn new(settings: PriceGuardSettings, sink: Arc<dyn ReputationSink>) -> Self {
        Self { settings, sink }
    }

    /// The verdict on one 402 (pure; `after_invoke` adds the reporting).
    fn check(&self, req: &InvokeView, resp: &InvokeOutcomeView) -> Verdict {
        let amounts = resp.requested_amounts();
        let Some(worst) = amounts
            .iter()
            .copied()
            .reduce(|a, b| if b.usd > a.usd { b } else { a })
        else {
            return Verdict::Unreadable;
        };
        let advertised = req.provider.routed_price_usd.max(req.provider.price_usd);
        let limit = advertised * (1.0 + self.settings.tolerance) + self.settings.slack_usd;
        if worst.usd > limit || !advertised.is_finite() {
            Verdict::Mismatch { worst, advertised }
        } else {
            Verdict::Ok
        }
    }
}

enum Verdict {
    Ok,
    Unreadable,
    Mismatch {
        worst: RequestedAmount,
        advertised: f64,
    },
}

/// Factory for the registry.
pub fn factory(
    settings: &PluginSettings,
    services: &PluginServices,
) -> Result<DynPlugin, PluginError> {
    super::build(settings, |parsed: PriceGuardSettings| {
        for (field, v) in [
            ("tolerance", parsed.tolerance),
            ("slack_usd", parsed.slack_usd),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err((field.to_owned(), "must be a finite number ≥ 0".to_owned()));
            }
        }
        Ok(PriceGuard::new(parsed, Arc::clone(&services.reputation)))
    })
}

#[async_trait]
impl Plugin for PriceGuard {
    fn name(&self) -> &str {
        NAME
    }

    fn hooks(&self) -> Hooks {
        Hooks::of(&[Hook::AfterInvoke])
    }

    fn settings(&self) -> Option<Value> {
        serde_json::to_value(self.settings).ok()
    }

    async fn after_invoke(
        &self,
        ctx: &mut PluginContext,
        req: &InvokeView,
        resp: &InvokeOutcomeView,
    ) -> HookResult<Decision> {
        if !resp.is_payment_required() {
            return Ok(Decision::Allow);
        }
        Ok(match self.check(req, resp) {
            Verdict::Ok => Decision::Allow,
            Verdict::Unreadable => match self.settings.on_unreadable {
                OnUnreadable::Allow => Decision::Allow,
                OnUnreadable::Block => Decision::block(
                    PRICE_UNREADABLE,
                    "the provider's 402 carries no readable amount",
                ),
            },
            Verdict::Mismatch { worst, advertised } => {
                self.sink.price_mismatch(&PriceMismatch {
                    request_id: ctx.request_id.clone(),
                    origin: Arc::clone(&req.provider.origin),
                    via: req.provider.via.clone(),
                    peer_url: Arc::clone(&req.provider.peer_url),
                    product_id: Arc::clone(&req.product_id),
                    capability_id: Arc::clone(&req.capability_id),
                    advertised_usd: advertised,
                    requested_usd: worst.usd,
                    shape: worst.shape,
                });
                Decision::block(
                    PRICE_MISMATCH,
                    format!(
                        "the provider asked ${} but advertised ${advertised} (tolerance {}%)",
                        worst.usd,
                        self.settings.tolerance * 100.0
                    ),
                )
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use super::*;
    use crate::view::fixtures::{invoke, provider};
    use serde_json::json;

    #[derive(Default)]
    struct Events(Mutex<Vec<PriceMismatch>>);
    impl ReputationSink for Events {
        fn price_mismatch(&self, event: &PriceMismatch) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    fn v1(amount: &str) -> InvokeOutcomeView {
        InvokeOutcomeView::new(402, Value::Null, 3)
            .with_payment_headers(Some(format!(r#"{{"amount":"{amount}"}}"#)), None)
    }

    async fn run(guard: &PriceGuard, resp: &InvokeOutcomeView) -> Decision {
        let mut ctx = PluginContext::new("req-9", "https://hub.example");
        // provider(): price 0.10, routed 0.101
        guard
            .after_invoke(&mut ctx, &invoke(provider("https://p.example")), resp)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn tolerance_boundary_and_reporting() {
        let events = Arc::new(Events::default());
        let guard = PriceGuard::new(PriceGuardSettings::default(), events.clone());
        // limit = 0.101 × 1.05 + 0.000001 = 0.106051
        assert_eq!(run(&guard, &v1("0.106")).await, Decision::Allow);
        assert_eq!(run(&guard, &v1("0.10")).await, Decision::Allow);
        let blocked = run(&guard, &v1("0.11")).await;
        assert!(matches!(&blocked, Decision::Block { category, .. } if category == PRICE_MISMATCH));
        let events = events.0.lock().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].request_id, "req-9");
        assert_eq!(events[0].requested_usd, 0.11);
        assert_eq!(events[0].advertised_usd, 0.101);
    }

    #[tokio::test]
    async fn non_402_and_unreadable() {
        let guard = PriceGuard::new(PriceGuardSettings::default(), Arc::new(Events::default()));
        let ok = InvokeOutcomeView::new(200, json!({"amount": "99"}), 1);
        assert_eq!(run(&guard, &ok).await, Decision::Allow);
        let unreadable = InvokeOutcomeView::new(402, json!({"error": "payment_required"}), 1);
        assert_eq!(run(&guard, &unreadable).await, Decision::Allow);
        let strict = PriceGuard::new(
            PriceGuardSettings {
                on_unreadable: OnUnreadable::Block,
                ..PriceGuardSettings::default()
            },
            Arc::new(Events::default()),
        );
        assert!(matches!(run(&strict, &unreadable).await,
            Decision::Block { category, .. } if category == PRICE_UNREADABLE));
    }

    #[test]
    fn settings_are_validated() {
        let s = PluginServices::default();
        for (v, field) in [
            (json!({"tolerance": -0.1}), "tolerance"),
            (json!({"slack_usd": -1}), "slack_usd"),
            (json!({"on_unreadable": "maybe"}), "on_unreadable"),
        ] {
            match factory(&PluginSettings::new(NAME, v), &s) {
                Err(PluginError::Settings { field: f, .. }) => assert_eq!(f, field),
                _ => panic!("{field} accepted"),
            }
        }
    }
}

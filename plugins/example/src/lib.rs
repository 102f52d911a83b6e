//! `pin`: a complete example plugin for aimarket-hub, kept compiling and tested in CI.
//!
//! It exercises every kind of hook an author may need:
//! * `rank`: adds a configured boost to the score of chosen products and re-sorts;
//! * `route`: moves the provider pinned for a capability to the front;
//! * `before_invoke` / `after_invoke`: passes typed state through the request context and
//!   counts invokes (never blocks);
//! * `receipt_extension`: tells the buyer whether the call went to a pinned provider;
//! * `well_known_extension`: advertises how many pins the hub has;
//! * `routes`: `GET /ai-market/v2/p/pin/stats` returns the counters;
//! * `startup` / `shutdown`: flip a flag visible in the stats.
//!
//! ```toml
//! [[plugins]]
//! name = "pin"
//! settings = { boost = { "prod-favourite" = 0.25 },
//!              pins = { "translate.multi@v2" = "https://eu.example" } }
//! ```
//!
//! Load it by registering the factory before building the registry:
//! ```
//! let mut builder = aimarket_plugins::RegistryBuilder::new();
//! aimarket_plugin_example::register(&mut builder).expect("first registration");
//! let config = aimarket_plugins::RegistryConfig::from_toml_str(
//!     "[[plugins]]\nname = \"pin\"\nsettings = { boost = { \"prod-a\" = 0.5 } }\n",
//! ).expect("valid TOML");
//! let registry = builder.build(&config).expect("valid settings");
//! assert_eq!(registry.names(), vec!["pin"]);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aimarket_plugins::{
    Candidate, CapabilityRef, Decision, DynPlugin, Hook, HookResult, Hooks, InvokeOutcomeView,
    InvokeView, Method, Plugin, PluginContext, PluginError, PluginResponse, PluginRoute,
    PluginServices, PluginSettings, Provider, RegistryBuilder, SearchQueryView, async_trait,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The plugin's name (and factory name).
pub const NAME: &str = "pin";

/// Settings. `#[serde(default, deny_unknown_fields)]` makes omitted fields default and typos
/// errors; `PluginSettings::parse` turns errors into messages naming the field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PinSettings {
    /// Score added to candidates of these products.
    pub boost: BTreeMap<String, f64>,
    /// Capability id → origin to call first.
    pub pins: BTreeMap<String, String>,
}

/// Counters shared with the `/stats` route handler (which must be `'static`).
#[derive(Debug, Default)]
struct Stats {
    started: AtomicBool,
    invokes: AtomicU64,
    pinned_invokes: AtomicU64,
}

impl Stats {
    fn to_json(&self) -> Value {
        json!({
            "started": self.started.load(Ordering::Relaxed),
            "invokes": self.invokes.load(Ordering::Relaxed),
            "pinned_invokes": self.pinned_invokes.load(Ordering::Relaxed),
        })
    }
}

/// Request-scoped state, private to this plugin: the type itself is the key in the
/// context's extension map, so no other plugin can read or clobber it.
#[derive(Debug, Clone, Copy)]
struct PinState {
    pinned: bool,
}

/// The plugin.
#[derive(Debug)]
pub struct Pin {
    settings: PinSettings,
    stats: Arc<Stats>,
}

impl Pin {
    /// A plugin from validated settings.
    pub fn new(settings: PinSettings) -> Self {
        Self {
            settings,
            stats: Arc::default(),
        }
    }

    fn is_pinned(&self, capability_id: &str, origin: &str) -> bool {
        self.settings
            .pins
            .get(capability_id)
            .is_some_and(|pinned| pinned.trim_end_matches('/') == origin.trim_end_matches('/'))
    }
}

/// The factory: parse, validate (errors name the field), build.
pub fn factory(
    settings: &PluginSettings,
    _services: &PluginServices,
) -> Result<DynPlugin, PluginError> {
    let parsed: PinSettings = settings.parse()?;
    if let Some((product, _)) = parsed.boost.iter().find(|(_, b)| !b.is_finite()) {
        return Err(settings.invalid(&format!("boost.{product}"), "must be a finite number"));
    }
    Ok(Arc::new(Pin::new(parsed)))
}

/// Registers the `pin` factory with a builder.
pub fn register(builder: &mut RegistryBuilder) -> Result<(), PluginError> {
    builder.register_factory(NAME, factory).map(|_| ())
}

#[async_trait]
impl Plugin for Pin {
    fn name(&self) -> &str {
        NAME
    }

    fn hooks(&self) -> Hooks {
        Hooks::of(&[
            Hook::Rank,
            Hook::Route,
            Hook::BeforeInvoke,
            Hook::AfterInvoke,
            Hook::ReceiptExtension,
            Hook::WellKnownExtension,
            Hook::Routes,
            Hook::Lifecycle,
        ])
    }

    fn settings(&self) -> Option<Value> {
        serde_json::to_value(&self.settings).ok()
    }

    async fn rank(
        &self,
        _ctx: &mut PluginContext,
        _query: &SearchQueryView,
        candidates: &mut Vec<Candidate>,
    ) -> HookResult {
        if self.settings.boost.is_empty() {
            return Ok(());
        }
        for c in candidates.iter_mut() {
            if let Some(boost) = self.settings.boost.get(&*c.product_id) {
                c.score += boost;
            }
        }
        // Stable: equal scores keep the previous plugins' order.
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(())
    }

    async fn route(
        &self,
        _ctx: &mut PluginContext,
        capability: &CapabilityRef,
        providers: &mut Vec<Provider>,
    ) -> HookResult {
        if let Some(i) = providers
            .iter()
            .position(|p| self.is_pinned(&capability.capability_id, &p.origin))
        {
            let pinned = providers.remove(i);
            providers.insert(0, pinned);
        }
        Ok(())
    }

    async fn before_invoke(
        &self,
        ctx: &mut PluginContext,
        req: &InvokeView,
    ) -> HookResult<Decision> {
        let pinned = self.is_pinned(&req.capability_id, &req.provider.origin);
        ctx.extensions_mut().insert(PinState { pinned });
        Ok(Decision::Allow)
    }

    async fn after_invoke(
        &self,
        ctx: &mut PluginContext,
        _req: &InvokeView,
        _resp: &InvokeOutcomeView,
    ) -> HookResult<Decision> {
        self.stats.invokes.fetch_add(1, Ordering::Relaxed);
        if ctx.extensions().get::<PinState>().is_some_and(|s| s.pinned) {
            self.stats.pinned_invokes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Decision::Allow)
    }

    fn receipt_extension(
        &self,
        ctx: &PluginContext,
        _req: &InvokeView,
        _resp: &InvokeOutcomeView,
    ) -> Option<Value> {
        let state = ctx.extensions().get::<PinState>()?;
        Some(json!({ "pinned": state.pinned }))
    }

    fn well_known_extension(&self) -> Option<Value> {
        Some(json!({ "pins": self.settings.pins.len() }))
    }

    fn routes(&self) -> Vec<PluginRoute> {
        let stats = Arc::clone(&self.stats);
        vec![PluginRoute::new(Method::Get, "/stats", move |_req| {
            let body = stats.to_json();
            async move { PluginResponse::json(200, &body) }
        })]
    }

    async fn startup(&self) -> HookResult {
        self.stats.started.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn shutdown(&self) {
        self.stats.started.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pin() -> Pin {
        let settings: PinSettings = serde_json::from_value(json!({
            "boost": {"prod-b": 1.0},
            "pins": {"cap@v1": "https://pinned.example/"}
        }))
        .unwrap();
        Pin::new(settings)
    }

    #[test]
    fn pins_compare_without_trailing_slash() {
        let p = pin();
        assert!(p.is_pinned("cap@v1", "https://pinned.example"));
        assert!(!p.is_pinned("cap@v1", "https://other.example"));
        assert!(!p.is_pinned("other@v1", "https://pinned.example"));
    }

    #[test]
    fn bad_boost_names_the_field() {
        let err = factory(
            &PluginSettings::new(NAME, json!({"boost": {"p": "high"}})),
            &PluginServices::default(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("`boost`"), "{err}");
    }

    #[tokio::test]
    async fn state_flows_from_before_to_after_invoke() {
        let p = pin();
        let mut ctx = PluginContext::new("r", "https://hub.example");
        let provider = Provider {
            origin: "https://pinned.example".into(),
            via: None,
            peer_url: "https://pinned.example".into(),
            price_usd: 0.0,
            routed_price_usd: 0.0,
            p50_latency_ms: 1,
            trust_score: 0.5,
            success_rate: 1.0,
            target_url: "https://pinned.example/ai-market/v2/invoke".into(),
        };
        let req = InvokeView {
            product_id: "prod-b".into(),
            capability_id: "cap@v1".into(),
            source_hub: None,
            input: Arc::new(json!({})),
            max_price_usd: None,
            provider,
            attempt: 0,
            upstream_payment: aimarket_plugins::UpstreamPayment::None,
        };
        let resp = InvokeOutcomeView::new(200, json!({"success": true}), 3);
        assert_eq!(
            p.before_invoke(&mut ctx, &req).await.unwrap(),
            Decision::Allow
        );
        assert_eq!(
            p.after_invoke(&mut ctx, &req, &resp).await.unwrap(),
            Decision::Allow
        );
        assert_eq!(
            p.receipt_extension(&ctx, &req, &resp),
            Some(json!({"pinned": true}))
        );
        assert_eq!(p.stats.to_json()["pinned_invokes"], 1);
    }
}

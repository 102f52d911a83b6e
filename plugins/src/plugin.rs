//! The [`Plugin`] trait: one required method (`name`) and defaulted hooks.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::context::PluginContext;
use crate::error::HookError;
use crate::http::PluginRoute;
use crate::retry::RetryPolicy;
use crate::view::{
    Candidate, CapabilityRef, Decision, InvokeOutcomeView, InvokeView, Provider, SearchQueryView,
};

/// The result type of fallible hooks.
pub type HookResult<T = ()> = Result<T, HookError>;

/// A hub plugin. Implement `name` and the hooks you need; every other hook is a no-op.
///
/// # Order and contract
/// * **search**: `rank` runs for every plugin that declares it, in configured order, on the
///   candidate list the index produced. Each plugin sees the previous plugin's result.
/// * **invoke**: `route` (order/filter providers) → `before_invoke` (once per attempt, with
///   the provider of that attempt) → upstream call → `after_invoke` (only when the provider
///   answered with an HTTP response) → `receipt_extension` (only for a relayed success).
///   All of them run for local and federated calls alike.
/// * `rank`, `route`, `before_invoke`, `after_invoke` are async and **budgeted**: each call is
///   bounded by the plugin's `timeout_ms` for that hook; a plugin that errors, panics or runs
///   over is skipped (fail-open) unless configured `fail_closed`. `rank` and `route` work on
///   a copy that replaces the real list only when the hook succeeds within budget, so a
///   failing plugin can never leave a half-sorted list behind.
/// * Budgets can only interrupt a hook at an `.await`: never block the thread (no blocking
///   I/O, no `std::thread::sleep`). A hook that blocks past its budget still has its result
///   discarded, but it has delayed the request.
/// * The first `before_invoke`/`after_invoke` to return [`Decision::Block`] wins; later
///   plugins are not called.
/// * `startup` runs once before the hub serves; `shutdown` once at exit, in reverse order.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's name: `[a-z0-9_-]+`, unique in a registry, equal to the configured name.
    /// Used in logs, metrics, `plugin_extensions.<name>` and `/ai-market/v2/p/<name>/`.
    fn name(&self) -> &str;

    /// The hooks this plugin implements. The registry calls only these (saving the list copy
    /// for the others) and lists them in `GET /ai-market/v2/plugins`. The default claims all
    /// hooks, which is always correct but slower: declare yours.
    fn hooks(&self) -> Hooks {
        Hooks::ALL
    }

    /// Effective settings (after defaults) for `GET /ai-market/v2/plugins`; secrets are
    /// redacted by the registry. `None` shows the configured table as written.
    fn settings(&self) -> Option<Value> {
        None
    }

    /// Rescore, reorder or drop search candidates.
    async fn rank(
        &self,
        _ctx: &mut PluginContext,
        _query: &SearchQueryView,
        _candidates: &mut Vec<Candidate>,
    ) -> HookResult {
        Ok(())
    }

    /// Order or filter the providers able to serve one invoke. The hub calls the first.
    async fn route(
        &self,
        _ctx: &mut PluginContext,
        _capability: &CapabilityRef,
        _providers: &mut Vec<Provider>,
    ) -> HookResult {
        Ok(())
    }

    /// Allow or block an attempt before anything is forwarded or charged.
    async fn before_invoke(
        &self,
        _ctx: &mut PluginContext,
        _req: &InvokeView,
    ) -> HookResult<Decision> {
        Ok(Decision::Allow)
    }

    /// Allow or block the provider's answer before it is relayed. A block releases the
    /// buyer's hold; the buyer gets 403 with a rejection receipt signed by the hub.
    async fn after_invoke(
        &self,
        _ctx: &mut PluginContext,
        _req: &InvokeView,
        _resp: &InvokeOutcomeView,
    ) -> HookResult<Decision> {
        Ok(Decision::Allow)
    }

    /// Extra data for the hub's receipt of a successful call, placed under
    /// `plugin_extensions.<name>` before the hub signs it. Must be cheap and synchronous.
    fn receipt_extension(
        &self,
        _ctx: &PluginContext,
        _req: &InvokeView,
        _resp: &InvokeOutcomeView,
    ) -> Option<Value> {
        None
    }

    /// Data merged into `/.well-known/ai-market.json` under `plugin_extensions.<name>`.
    fn well_known_extension(&self) -> Option<Value> {
        None
    }

    /// HTTP routes, mounted under `/ai-market/v2/p/<name>/`. Called once at registry build.
    fn routes(&self) -> Vec<PluginRoute> {
        Vec::new()
    }

    /// The failover rule this plugin wants the hub to apply (see [`RetryPolicy`]).
    fn retry_policy(&self) -> Option<RetryPolicy> {
        None
    }

    /// Runs once before the hub serves. An error disables a fail-open plugin and aborts
    /// startup for a fail-closed one.
    async fn startup(&self) -> HookResult {
        Ok(())
    }

    /// Runs once at shutdown.
    async fn shutdown(&self) {}
}

/// A shared plugin instance.
pub type DynPlugin = Arc<dyn Plugin>;

/// A hook, for budgets, metrics, refusals and descriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// `rank`
    Rank,
    /// `route`
    Route,
    /// `before_invoke`
    BeforeInvoke,
    /// `after_invoke`
    AfterInvoke,
    /// `receipt_extension`
    ReceiptExtension,
    /// `well_known_extension`
    WellKnownExtension,
    /// `routes`
    Routes,
    /// `startup` and `shutdown`
    Lifecycle,
}

impl Hook {
    /// All hooks, in pipeline order.
    pub const ALL: [Hook; 8] = [
        Hook::Rank,
        Hook::Route,
        Hook::BeforeInvoke,
        Hook::AfterInvoke,
        Hook::ReceiptExtension,
        Hook::WellKnownExtension,
        Hook::Routes,
        Hook::Lifecycle,
    ];

    /// The four budgeted hooks.
    pub const BUDGETED: [Hook; 4] = [
        Hook::Rank,
        Hook::Route,
        Hook::BeforeInvoke,
        Hook::AfterInvoke,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rank => "rank",
            Self::Route => "route",
            Self::BeforeInvoke => "before_invoke",
            Self::AfterInvoke => "after_invoke",
            Self::ReceiptExtension => "receipt_extension",
            Self::WellKnownExtension => "well_known_extension",
            Self::Routes => "routes",
            Self::Lifecycle => "lifecycle",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of [`Hook`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hooks(u16);

impl Hooks {
    /// No hooks.
    pub const NONE: Hooks = Hooks(0);
    /// Every hook.
    pub const ALL: Hooks = Hooks(0xff);

    /// The set of the given hooks.
    pub fn of(hooks: &[Hook]) -> Self {
        Self(hooks.iter().fold(0, |acc, h| acc | h.bit()))
    }

    /// Adds a hook.
    #[must_use]
    pub fn with(self, hook: Hook) -> Self {
        Self(self.0 | hook.bit())
    }

    /// True when `hook` is in the set.
    pub fn contains(self, hook: Hook) -> bool {
        self.0 & hook.bit() != 0
    }

    /// The hooks in pipeline order.
    pub fn iter(self) -> impl Iterator<Item = Hook> {
        Hook::ALL.into_iter().filter(move |h| self.contains(*h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_sets() {
        let set = Hooks::of(&[Hook::Route, Hook::Rank]).with(Hook::Lifecycle);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Hook::Rank, Hook::Route, Hook::Lifecycle]
        );
        assert!(!set.contains(Hook::AfterInvoke));
        assert_eq!(Hooks::ALL.iter().count(), 8);
        assert_eq!(Hooks::NONE.iter().count(), 0);
    }
}

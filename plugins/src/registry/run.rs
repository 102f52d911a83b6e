//! Running the budgeted hooks: each call bounded by its budget, panics caught, failures
//! skipped (fail-open) or turned into a [`Refusal`] (fail-closed), counters updated.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::time::Instant;

use super::{Entry, LIFECYCLE_TIMEOUT, Registry};
use crate::context::PluginContext;
use crate::error::{PluginError, Refusal, RefusalKind};
use crate::metrics::CallResult;
use crate::plugin::{Hook, HookResult};
use crate::view::{
    Candidate, CapabilityRef, Decision, InvokeOutcomeView, InvokeView, Provider, SearchQueryView,
};

/// Category of a refusal caused by a failing fail-closed plugin.
pub const PLUGIN_UNAVAILABLE: &str = "plugin_unavailable";

/// Left in the request's [`PluginContext::extensions`] by [`Registry::route`] when a plugin's
/// `route` hook removed the last provider: the hub names that plugin in its `no_provider`
/// answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEmptied {
    /// The plugin whose hook left the list empty.
    pub plugin: String,
}

/// How one guarded call ended.
enum Outcome<T> {
    Done(T),
    Failed(CallResult, String),
}

/// Runs `fut` within `budget`, catching panics. A result that arrives after the budget (a
/// hook that blocked its thread, so the timer could not fire) counts as a timeout too.
async fn guarded<T>(
    budget: Duration,
    fut: impl Future<Output = HookResult<T>>,
) -> (Outcome<T>, Duration) {
    let start = Instant::now();
    let result = tokio::time::timeout(budget, AssertUnwindSafe(fut).catch_unwind()).await;
    let elapsed = start.elapsed();
    let timed_out = || {
        let ms = budget.as_millis();
        Outcome::Failed(CallResult::Timeout, format!("exceeded its {ms} ms budget"))
    };
    let outcome = match result {
        Err(_) => timed_out(),
        Ok(Err(panic)) => Outcome::Failed(
            CallResult::Panic,
            format!("panicked: {}", panic_message(panic.as_ref())),
        ),
        Ok(Ok(Err(e))) => Outcome::Failed(CallResult::Error, e.message().to_owned()),
        Ok(Ok(Ok(_))) if elapsed > budget => timed_out(),
        Ok(Ok(Ok(v))) => Outcome::Done(v),
    };
    (outcome, elapsed)
}

/// The text of a panic payload, when it is a string.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

impl Registry {
    fn chain(&self, hook: Hook) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.active(hook))
    }

    /// Records a call; for a failure, logs it and returns the refusal when fail-closed.
    fn settle<T>(
        &self,
        e: &Entry,
        hook: Hook,
        ctx: &PluginContext,
        outcome: Outcome<T>,
        elapsed: Duration,
    ) -> Result<Option<T>, Refusal> {
        match outcome {
            Outcome::Done(v) => Ok(Some(v)),
            Outcome::Failed(result, message) => {
                e.counters.record(hook, result, elapsed);
                let fail_closed = e.config.fail_closed;
                tracing::warn!(
                    plugin = e.name(),
                    hook = hook.as_str(),
                    request_id = %ctx.request_id,
                    fail_closed,
                    error = %message,
                    "plugin hook failed; {}",
                    if fail_closed { "refusing the request" } else { "skipped" }
                );
                if fail_closed {
                    Err(Refusal {
                        plugin: e.name().to_owned(),
                        hook,
                        kind: RefusalKind::PluginFailed,
                        category: PLUGIN_UNAVAILABLE.to_owned(),
                        reason: format!(
                            "plugin `{}` failed in {}: {message}",
                            e.name(),
                            hook.as_str()
                        ),
                    })
                } else {
                    Ok(None)
                }
            }
        }
    }

    fn open_budget(e: &Entry, hook: Hook, ctx: &mut PluginContext) -> Duration {
        let budget = e.config.timeout_ms.get(hook);
        ctx.set_deadline(Some(Instant::now() + budget));
        budget
    }

    /// Runs every `rank` hook in order. Each plugin works on a copy of the list that
    /// replaces `candidates` only if it succeeds within budget. `Err` only when a fail-closed
    /// plugin fails (the hub answers 503).
    pub async fn rank(
        &self,
        ctx: &mut PluginContext,
        query: &SearchQueryView,
        candidates: &mut Vec<Candidate>,
    ) -> Result<(), Refusal> {
        for e in self.chain(Hook::Rank) {
            let budget = Self::open_budget(e, Hook::Rank, ctx);
            let mut work = candidates.clone();
            let (outcome, elapsed) = guarded(budget, e.plugin.rank(ctx, query, &mut work)).await;
            ctx.set_deadline(None);
            if self.settle(e, Hook::Rank, ctx, outcome, elapsed)?.is_some() {
                e.counters.record(Hook::Rank, CallResult::Ok, elapsed);
                *candidates = work;
            }
        }
        Ok(())
    }

    /// Runs every `route` hook in order, copy-on-success like [`Registry::rank`]. The hub
    /// calls the first provider left; an empty list means no provider may serve the call.
    pub async fn route(
        &self,
        ctx: &mut PluginContext,
        capability: &CapabilityRef,
        providers: &mut Vec<Provider>,
    ) -> Result<(), Refusal> {
        for e in self.chain(Hook::Route) {
            let budget = Self::open_budget(e, Hook::Route, ctx);
            let mut work = providers.clone();
            let (outcome, elapsed) =
                guarded(budget, e.plugin.route(ctx, capability, &mut work)).await;
            ctx.set_deadline(None);
            if self
                .settle(e, Hook::Route, ctx, outcome, elapsed)?
                .is_some()
            {
                e.counters.record(Hook::Route, CallResult::Ok, elapsed);
                if work.is_empty() && !providers.is_empty() {
                    // The hub names this plugin when it answers that no provider may serve.
                    ctx.extensions_mut().insert(RouteEmptied {
                        plugin: e.name().to_owned(),
                    });
                }
                *providers = work;
            }
        }
        Ok(())
    }

    /// Runs `before_invoke` hooks in order; the first block wins. `Ok(())` means forward.
    pub async fn before_invoke(
        &self,
        ctx: &mut PluginContext,
        req: &InvokeView,
    ) -> Result<(), Refusal> {
        for e in self.chain(Hook::BeforeInvoke) {
            let budget = Self::open_budget(e, Hook::BeforeInvoke, ctx);
            let (outcome, elapsed) = guarded(budget, e.plugin.before_invoke(ctx, req)).await;
            ctx.set_deadline(None);
            let decision = self.settle(e, Hook::BeforeInvoke, ctx, outcome, elapsed)?;
            self.decide(e, Hook::BeforeInvoke, decision, elapsed)?;
        }
        Ok(())
    }

    /// Runs `after_invoke` hooks in order on the provider's answer; the first block wins.
    /// `Ok(())` means relay the answer.
    pub async fn after_invoke(
        &self,
        ctx: &mut PluginContext,
        req: &InvokeView,
        resp: &InvokeOutcomeView,
    ) -> Result<(), Refusal> {
        for e in self.chain(Hook::AfterInvoke) {
            let budget = Self::open_budget(e, Hook::AfterInvoke, ctx);
            let (outcome, elapsed) = guarded(budget, e.plugin.after_invoke(ctx, req, resp)).await;
            ctx.set_deadline(None);
            let decision = self.settle(e, Hook::AfterInvoke, ctx, outcome, elapsed)?;
            self.decide(e, Hook::AfterInvoke, decision, elapsed)?;
        }
        Ok(())
    }

    fn decide(
        &self,
        e: &Entry,
        hook: Hook,
        decision: Option<Decision>,
        elapsed: Duration,
    ) -> Result<(), Refusal> {
        match decision {
            // Skipped after a failure: already counted.
            None => Ok(()),
            Some(Decision::Allow) => {
                e.counters.record(hook, CallResult::Ok, elapsed);
                Ok(())
            }
            Some(Decision::Block { category, reason }) => {
                e.counters.record(hook, CallResult::Blocked, elapsed);
                Err(Refusal {
                    plugin: e.name().to_owned(),
                    hook,
                    kind: RefusalKind::Blocked,
                    category,
                    reason,
                })
            }
        }
    }

    /// Runs every plugin's `startup`, in order, once per registry (later calls return
    /// `Ok(())` at once). A failing fail-open plugin is disabled for the life of the
    /// registry; a failing fail-closed plugin aborts with an error (the hub must not serve).
    pub async fn startup(&self) -> Result<(), PluginError> {
        if self.started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        for e in self
            .entries
            .iter()
            .filter(|e| e.hooks.contains(Hook::Lifecycle))
        {
            let (outcome, _) = guarded(LIFECYCLE_TIMEOUT, e.plugin.startup()).await;
            match outcome {
                Outcome::Done(()) => e.started.store(true, Ordering::SeqCst),
                Outcome::Failed(_, message) => {
                    e.counters.record_other_error();
                    tracing::warn!(
                        plugin = e.name(),
                        fail_closed = e.config.fail_closed,
                        error = %message,
                        "plugin startup failed"
                    );
                    if e.config.fail_closed {
                        return Err(PluginError::Startup {
                            plugin: e.name().to_owned(),
                            message,
                        });
                    }
                    e.enabled.store(false, Ordering::SeqCst);
                }
            }
        }
        Ok(())
    }

    /// Runs `shutdown` once, in reverse order, for every plugin whose startup succeeded.
    /// Each is bounded by the lifecycle budget; failures are logged.
    pub async fn shutdown(&self) {
        if !self.started.load(Ordering::SeqCst) || self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        for e in self.entries.iter().rev() {
            if !e.started.swap(false, Ordering::SeqCst) {
                continue;
            }
            let shutdown = async {
                e.plugin.shutdown().await;
                Ok(())
            };
            if let (Outcome::Failed(_, message), _) = guarded(LIFECYCLE_TIMEOUT, shutdown).await {
                e.counters.record_other_error();
                tracing::warn!(plugin = e.name(), error = %message, "plugin shutdown failed");
            }
        }
    }
}

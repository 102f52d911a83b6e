//! Per-plugin, per-hook counters. Lock-free (relaxed atomics): they are statistics, not
//! synchronisation.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::plugin::Hook;

#[derive(Debug, Default)]
pub(crate) struct HookCounters {
    calls: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    timeouts: AtomicU64,
    blocks: AtomicU64,
    micros: AtomicU64,
}

/// Counters of every budgeted hook of one plugin.
#[derive(Debug, Default)]
pub(crate) struct PluginCounters {
    hooks: [HookCounters; 4],
    /// Startup failures and route-handler failures (panics, timeouts).
    other_errors: AtomicU64,
}

/// What happened to one hook call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallResult {
    Ok,
    Blocked,
    Error,
    Panic,
    Timeout,
}

impl PluginCounters {
    fn slot(&self, hook: Hook) -> Option<&HookCounters> {
        Hook::BUDGETED
            .iter()
            .position(|h| *h == hook)
            .map(|i| &self.hooks[i])
    }

    pub(crate) fn record(&self, hook: Hook, result: CallResult, elapsed: Duration) {
        let Some(c) = self.slot(hook) else { return };
        c.calls.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        c.micros.fetch_add(micros, Ordering::Relaxed);
        let counter = match result {
            CallResult::Ok => return,
            CallResult::Blocked => &c.blocks,
            CallResult::Error => &c.errors,
            CallResult::Panic => &c.panics,
            CallResult::Timeout => &c.timeouts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_other_error(&self) {
        self.other_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, plugin: &str) -> PluginMetrics {
        let hooks = Hook::BUDGETED
            .iter()
            .zip(&self.hooks)
            .map(|(hook, c)| HookMetrics {
                hook: *hook,
                calls: c.calls.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                panics: c.panics.load(Ordering::Relaxed),
                timeouts: c.timeouts.load(Ordering::Relaxed),
                blocks: c.blocks.load(Ordering::Relaxed),
                total_micros: c.micros.load(Ordering::Relaxed),
            })
            .collect();
        PluginMetrics {
            plugin: plugin.to_owned(),
            hooks,
            other_errors: self.other_errors.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of one plugin's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginMetrics {
    /// Plugin name.
    pub plugin: String,
    /// One entry per budgeted hook (`rank`, `route`, `before_invoke`, `after_invoke`).
    pub hooks: Vec<HookMetrics>,
    /// Failed startups and failed route handlers.
    pub other_errors: u64,
}

impl PluginMetrics {
    /// The counters of one hook.
    pub fn hook(&self, hook: Hook) -> Option<&HookMetrics> {
        self.hooks.iter().find(|h| h.hook == hook)
    }
}

/// Counters of one hook of one plugin. `calls` counts every call; the other counters are
/// the calls that ended that way (a call that ended `Ok` with `Allow` counts in none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookMetrics {
    /// The hook.
    pub hook: Hook,
    /// Calls.
    pub calls: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Calls that panicked.
    pub panics: u64,
    /// Calls that exceeded the budget.
    pub timeouts: u64,
    /// Calls that returned `Block`.
    pub blocks: u64,
    /// Total wall time spent in the hook, µs.
    pub total_micros: u64,
}

/// Renders snapshots in the Prometheus text format (`aimarket_plugin_hook_*_total` counters
/// labelled by plugin and hook), for the hub's `/metrics`.
pub fn render_prometheus(metrics: &[PluginMetrics]) -> String {
    let mut out = String::new();
    type Getter = fn(&HookMetrics) -> u64;
    let series: [(&str, &str, Getter); 6] = [
        ("calls", "Plugin hook calls.", |h| h.calls),
        ("errors", "Plugin hook calls that failed.", |h| h.errors),
        ("panics", "Plugin hook calls that panicked.", |h| h.panics),
        ("timeouts", "Plugin hook calls that timed out.", |h| {
            h.timeouts
        }),
        (
            "blocks",
            "Plugin hook calls that blocked the request.",
            |h| h.blocks,
        ),
        ("micros", "Time spent in plugin hooks, microseconds.", |h| {
            h.total_micros
        }),
    ];
    for (name, help, get) in series {
        let _ = writeln!(out, "# HELP aimarket_plugin_hook_{name}_total {help}");
        let _ = writeln!(out, "# TYPE aimarket_plugin_hook_{name}_total counter");
        for m in metrics {
            for h in &m.hooks {
                let _ = writeln!(
                    out,
                    "aimarket_plugin_hook_{name}_total{{plugin=\"{}\",hook=\"{}\"}} {}",
                    m.plugin,
                    h.hook.as_str(),
                    get(h)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP aimarket_plugin_other_errors_total Plugin failures outside hook calls."
    );
    let _ = writeln!(out, "# TYPE aimarket_plugin_other_errors_total counter");
    for m in metrics {
        let _ = writeln!(
            out,
            "aimarket_plugin_other_errors_total{{plugin=\"{}\"}} {}",
            m.plugin, m.other_errors
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_rendering() {
        let c = PluginCounters::default();
        c.record(Hook::Rank, CallResult::Ok, Duration::from_micros(3));
        c.record(Hook::Rank, CallResult::Timeout, Duration::from_micros(4));
        c.record(Hook::BeforeInvoke, CallResult::Blocked, Duration::ZERO);
        c.record(Hook::Routes, CallResult::Error, Duration::ZERO);
        c.record_other_error();
        let m = c.snapshot("q");
        let rank = m.hook(Hook::Rank).cloned();
        assert_eq!(
            rank.map(|r| (r.calls, r.timeouts, r.errors, r.total_micros)),
            Some((2, 1, 0, 7))
        );
        assert_eq!(m.hook(Hook::BeforeInvoke).map(|h| h.blocks), Some(1));
        assert_eq!(m.other_errors, 1);
        let text = render_prometheus(&[m]);
        assert!(text.contains("aimarket_plugin_hook_calls_total{plugin=\"q\",hook=\"rank\"} 2"));
        assert!(text.contains("aimarket_plugin_other_errors_total{plugin=\"q\"} 1"));
    }
}

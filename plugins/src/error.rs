//! The crate's error types: [`PluginError`] for loading and lifecycle, [`HookError`] for a
//! hook that could not do its job, [`Refusal`] for a chain that refuses a request, and
//! [`RouteError`] for plugin HTTP routes.

use serde::Serialize;

use crate::plugin::Hook;

/// Why the registry could not be built, or a plugin could not start.
///
/// Every variant names the plugin (and, for settings, the field) so an operator can fix the
/// configuration without reading code.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The configuration names a plugin no factory is registered for.
    #[error("unknown plugin `{name}` (known plugins: {known})")]
    UnknownPlugin {
        /// The configured name.
        name: String,
        /// Comma-separated registered factory names.
        known: String,
    },
    /// A plugin's settings table (or one of its per-plugin options) is invalid.
    #[error("plugin `{plugin}`: field `{field}`: {message}")]
    Settings {
        /// The plugin being configured.
        plugin: String,
        /// The offending field (dotted for nested options, e.g. `timeout_ms.rank`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The plugin list itself is malformed (not a list, entry without a name, ...).
    #[error("plugin configuration: {0}")]
    Config(String),
    /// The same plugin name appears twice in the configured order.
    #[error("plugin `{0}` is configured more than once")]
    DuplicatePlugin(String),
    /// `register_factory` was called twice with one name.
    #[error("a plugin factory named `{0}` is already registered")]
    DuplicateFactory(String),
    /// A fail-closed plugin's `startup` failed, panicked or timed out.
    #[error("plugin `{plugin}` failed to start: {message}")]
    Startup {
        /// The plugin.
        plugin: String,
        /// Why.
        message: String,
    },
}

impl PluginError {
    /// Shorthand for a [`PluginError::Settings`] error.
    pub fn settings(
        plugin: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Settings {
            plugin: plugin.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A hook could not do its job (upstream webhook down, bad state, ...).
///
/// The registry logs it, counts it, and skips the plugin for this request (fail-open) or
/// refuses the request (fail-closed). Returning an error is never the way to *block* a
/// request: use [`crate::Decision::Block`] for that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HookError {
    message: String,
}

impl HookError {
    /// An error with a human-readable message (it ends up in logs, never in a response body
    /// unless the plugin is fail-closed).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Wraps any error, keeping its `Display` text and its source chain.
    pub fn from_error(context: &str, error: &dyn std::error::Error) -> Self {
        let mut message = format!("{context}: {error}");
        let mut source = error.source();
        // Error chains are short; the bound only guards against a cyclic `source()`.
        for _ in 0..8 {
            let Some(inner) = source else { break };
            message.push_str(": ");
            message.push_str(&inner.to_string());
            source = inner.source();
        }
        Self { message }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Why a refusal happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// A plugin returned [`crate::Decision::Block`] (before/after invoke).
    Blocked,
    /// A fail-closed plugin errored, panicked or exceeded its budget.
    PluginFailed,
}

/// The chain refuses the request. Returned by the registry's hook runners.
///
/// The hub turns it into a response: for `before_invoke` a 403 that charges nothing; for
/// `after_invoke` a released hold and a 403 with a signed rejection receipt; for `rank` and
/// `route` (only possible with a fail-closed plugin) a 503.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// The plugin that refused.
    pub plugin: String,
    /// The hook it refused in.
    pub hook: Hook,
    /// Blocked on purpose, or failed while fail-closed.
    pub kind: RefusalKind,
    /// Machine-readable category (`price_mismatch`, `policy_denied`, `plugin_unavailable`, ...).
    pub category: String,
    /// Human-readable reason.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin `{}` refused in {}: {} ({})",
            self.plugin,
            self.hook.as_str(),
            self.reason,
            self.category
        )
    }
}

impl std::error::Error for Refusal {}

/// A plugin route could not answer. The hub maps each variant to an HTTP status
/// (404, 405, 500, 503) in its single error-mapping place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No loaded plugin has that name, or it declares no route for that path.
    #[error("no plugin route for `{0}`")]
    NotFound(String),
    /// The path exists but not for this method.
    #[error("method not allowed; allowed: {}", allowed.join(", "))]
    MethodNotAllowed {
        /// The methods declared for that path.
        allowed: Vec<String>,
    },
    /// The handler panicked.
    #[error("plugin `{plugin}` route handler panicked: {message}")]
    Panicked {
        /// The plugin.
        plugin: String,
        /// The panic message, if it was a string.
        message: String,
    },
    /// The handler did not answer within the route budget.
    #[error("plugin `{plugin}` route handler timed out after {timeout_ms} ms")]
    TimedOut {
        /// The plugin.
        plugin: String,
        /// The budget.
        timeout_ms: u64,
    },
}

//! The [`Registry`]: plugins loaded from configuration, in order, with their options; and the
//! [`RegistryBuilder`] holding the factories that create them.

mod run;

pub use run::RouteEmptied;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::{PluginConfig, PluginSettings, RegistryConfig, name_is_valid};
use crate::context::PluginContext;
use crate::error::{PluginError, RouteError};
use crate::http::{Method, PluginRequest, PluginResponse, PluginRoute};
use crate::metrics::{PluginCounters, PluginMetrics};
use crate::plugin::{DynPlugin, Hook, Hooks};
use crate::redact::redact;
use crate::reputation::{LogReputationSink, ReputationSink};
use crate::retry::RetryPolicy;
use crate::view::{InvokeOutcomeView, InvokeView};

/// Where the hub mounts plugin routes: `<MOUNT_PREFIX>/<name>/<sub-path>`.
pub const MOUNT_PREFIX: &str = "/ai-market/v2/p";
/// The budget of a plugin route handler.
pub const ROUTE_TIMEOUT: Duration = Duration::from_secs(30);
/// The budget of each `startup` and each `shutdown`.
pub const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates a plugin from its settings table and the hub's services.
pub type PluginFactory =
    Arc<dyn Fn(&PluginSettings, &PluginServices) -> Result<DynPlugin, PluginError> + Send + Sync>;

/// What the hub lends to plugins at construction.
#[derive(Clone)]
pub struct PluginServices {
    /// Where reputation events go (price mismatches, ...). Default: a logging sink.
    pub reputation: Arc<dyn ReputationSink>,
    /// The hub's pooled HTTP client, reused by plugins that call out (webhook). `None`: each
    /// such plugin builds its own.
    pub http: Option<reqwest::Client>,
}

impl Default for PluginServices {
    fn default() -> Self {
        Self {
            reputation: Arc::new(LogReputationSink),
            http: None,
        }
    }
}

impl std::fmt::Debug for PluginServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginServices")
            .field("http", &self.http.is_some())
            .finish_non_exhaustive()
    }
}

/// Factories by name, plus the services handed to them.
#[derive(Clone)]
pub struct RegistryBuilder {
    factories: BTreeMap<String, PluginFactory>,
    services: PluginServices,
}

impl std::fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("factories", &self.factory_names())
            .field("services", &self.services)
            .finish()
    }
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RegistryBuilder {
    /// A builder with the built-in factories (`quality`, `price-guard`, `allow-deny`,
    /// `failover`, `webhook`) and default services.
    pub fn new() -> Self {
        let mut builder = Self::empty();
        for (name, factory) in crate::builtin::factories() {
            builder.factories.insert(name.to_owned(), factory);
        }
        builder
    }

    /// A builder without any factory.
    pub fn empty() -> Self {
        Self {
            factories: BTreeMap::new(),
            services: PluginServices::default(),
        }
    }

    /// Sets the services handed to factories.
    #[must_use]
    pub fn with_services(mut self, services: PluginServices) -> Self {
        self.services = services;
        self
    }

    /// Adds a factory. Names follow the plugin name rules and must be new.
    pub fn register_factory<F>(&mut self, name: &str, factory: F) -> Result<&mut Self, PluginError>
    where
        F: Fn(&PluginSettings, &PluginServices) -> Result<DynPlugin, PluginError>
            + Send
            + Sync
            + 'static,
    {
        if !name_is_valid(name) {
            return Err(PluginError::settings(
                name,
                "name",
                "must be 1-64 characters of a-z, 0-9, `-`, `_`",
            ));
        }
        if self.factories.contains_key(name) {
            return Err(PluginError::DuplicateFactory(name.to_owned()));
        }
        self.factories.insert(name.to_owned(), Arc::new(factory));
        Ok(self)
    }

    /// Registered factory names, sorted.
    pub fn factory_names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// Creates every configured plugin, in order.
    pub fn build(&self, config: &RegistryConfig) -> Result<Registry, PluginError> {
        let mut loaded = Vec::with_capacity(config.plugins.len());
        for entry in &config.plugins {
            let factory =
                self.factories
                    .get(&entry.name)
                    .ok_or_else(|| PluginError::UnknownPlugin {
                        name: entry.name.clone(),
                        known: self.factory_names().join(", "),
                    })?;
            let settings = PluginSettings::new(&entry.name, entry.settings.clone());
            loaded.push((entry.clone(), factory(&settings, &self.services)?));
        }
        Registry::from_plugins(loaded)
    }
}

/// One loaded plugin.
struct Entry {
    plugin: DynPlugin,
    config: PluginConfig,
    hooks: Hooks,
    routes: Vec<PluginRoute>,
    enabled: AtomicBool,
    started: AtomicBool,
    counters: PluginCounters,
}

impl Entry {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn active(&self, hook: Hook) -> bool {
        self.hooks.contains(hook) && self.enabled.load(Ordering::Relaxed)
    }
}

/// A route as mounted by the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountedRoute {
    /// The plugin.
    pub plugin: String,
    /// Method.
    pub method: Method,
    /// The full path (`/ai-market/v2/p/<plugin><sub-path>`; a trailing `/*` is a prefix).
    pub path: String,
}

/// The loaded plugin chain. Share it as `Arc<Registry>`; every method takes `&self`.
pub struct Registry {
    entries: Vec<Entry>,
    retry: RetryPolicy,
    started: AtomicBool,
    stopped: AtomicBool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(Entry::name).collect();
        f.debug_struct("Registry").field("plugins", &names).finish()
    }
}

impl Registry {
    /// A registry from ready plugin instances, in order. Each plugin's `name()` must equal
    /// its config entry's name; names must be unique; route paths must be valid and unique.
    pub fn from_plugins(plugins: Vec<(PluginConfig, DynPlugin)>) -> Result<Self, PluginError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(plugins.len());
        for (config, plugin) in plugins {
            if plugin.name() != config.name {
                return Err(PluginError::settings(
                    &config.name,
                    "name",
                    format!("the factory built a plugin named `{}`", plugin.name()),
                ));
            }
            if entries.iter().any(|e| e.name() == config.name) {
                return Err(PluginError::DuplicatePlugin(config.name));
            }
            let hooks = plugin.hooks();
            let routes = if hooks.contains(Hook::Routes) {
                plugin.routes()
            } else {
                Vec::new()
            };
            check_routes(&config.name, &routes)?;
            entries.push(Entry {
                plugin,
                config,
                hooks,
                routes,
                enabled: AtomicBool::new(true),
                started: AtomicBool::new(false),
                counters: PluginCounters::default(),
            });
        }
        let retry = entries
            .iter()
            .find_map(|e| e.plugin.retry_policy())
            .unwrap_or(RetryPolicy::none());
        Ok(Self {
            entries,
            retry,
            started: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        })
    }

    /// An empty registry (no plugins: every hook passes through).
    pub fn empty() -> Self {
        Self {
            entries: Vec::new(),
            retry: RetryPolicy::none(),
            started: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    /// Loaded plugin names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(Entry::name).collect()
    }

    /// True when at least one enabled plugin implements `hook` (lets the hub skip building
    /// views nobody reads).
    pub fn has_hook(&self, hook: Hook) -> bool {
        self.entries.iter().any(|e| e.active(hook))
    }

    /// The failover rule: the first `retry_policy()` a plugin declares, in configured order,
    /// else [`RetryPolicy::none`].
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Counters of every plugin, in order.
    pub fn metrics(&self) -> Vec<PluginMetrics> {
        self.entries
            .iter()
            .map(|e| e.counters.snapshot(e.name()))
            .collect()
    }

    /// The body of `GET /ai-market/v2/plugins`'s list: for each loaded plugin, in order,
    /// `{name, position, enabled, fail_closed, hooks, timeout_ms, settings, routes}`, with
    /// secrets in settings redacted.
    pub fn describe(&self) -> Value {
        let list = self
            .entries
            .iter()
            .enumerate()
            .map(|(position, e)| {
                let settings = e
                    .plugin
                    .settings()
                    .unwrap_or_else(|| e.config.settings.clone());
                let routes: Vec<Value> = e
                    .routes
                    .iter()
                    .map(|r| json!({"method": r.method, "path": mount_path(e.name(), &r.path)}))
                    .collect();
                json!({
                    "name": e.name(),
                    "position": position,
                    "enabled": e.enabled.load(Ordering::Relaxed),
                    "fail_closed": e.config.fail_closed,
                    "hooks": e.hooks.iter().map(Hook::as_str).collect::<Vec<_>>(),
                    "timeout_ms": e.config.timeout_ms,
                    "settings": redact(&settings),
                    "routes": routes,
                })
            })
            .collect();
        Value::Array(list)
    }

    /// `{<name>: <extension>}` of every plugin with a well-known extension, for the hub to
    /// place under `plugin_extensions` in `/.well-known/ai-market.json`; `None` when empty.
    /// A panicking plugin is left out (and counted).
    pub fn well_known_extensions(&self) -> Option<Value> {
        self.collect_extensions(Hook::WellKnownExtension, |p| p.well_known_extension())
    }

    /// `{<name>: <extension>}` for a successful call's receipt, to place under
    /// `plugin_extensions` before the hub signs it; `None` when empty.
    pub fn receipt_extensions(
        &self,
        ctx: &PluginContext,
        req: &InvokeView,
        resp: &InvokeOutcomeView,
    ) -> Option<Value> {
        self.collect_extensions(Hook::ReceiptExtension, |p| {
            p.receipt_extension(ctx, req, resp)
        })
    }

    fn collect_extensions(
        &self,
        hook: Hook,
        get: impl Fn(&DynPlugin) -> Option<Value>,
    ) -> Option<Value> {
        let mut map = Map::new();
        for e in self.entries.iter().filter(|e| e.active(hook)) {
            match std::panic::catch_unwind(AssertUnwindSafe(|| get(&e.plugin))) {
                Ok(Some(v)) => {
                    map.insert(e.name().to_owned(), v);
                }
                Ok(None) => {}
                Err(_) => {
                    e.counters.record_other_error();
                    tracing::warn!(plugin = e.name(), hook = hook.as_str(), "plugin panicked");
                }
            }
        }
        (!map.is_empty()).then_some(Value::Object(map))
    }

    /// Every plugin route, with its full mounted path.
    pub fn routes(&self) -> Vec<MountedRoute> {
        self.entries
            .iter()
            .flat_map(|e| {
                e.routes.iter().map(|r| MountedRoute {
                    plugin: e.name().to_owned(),
                    method: r.method,
                    path: mount_path(e.name(), &r.path),
                })
            })
            .collect()
    }

    /// Runs the route of plugin `plugin` matching `req.method` and `req.path` (the sub-path
    /// below `/ai-market/v2/p/<plugin>`), bounded by [`ROUTE_TIMEOUT`], panics caught.
    /// The hub mounts one catch-all `/ai-market/v2/p/{name}/{tail:.*}` and calls this.
    pub async fn dispatch(
        &self,
        plugin: &str,
        req: PluginRequest,
    ) -> Result<PluginResponse, RouteError> {
        let not_found = || RouteError::NotFound(format!("{MOUNT_PREFIX}/{plugin}{}", req.path));
        let entry = self
            .entries
            .iter()
            .find(|e| e.name() == plugin && e.enabled.load(Ordering::Relaxed))
            .ok_or_else(not_found)?;
        let matching: Vec<&PluginRoute> = entry
            .routes
            .iter()
            .filter(|r| r.matches_path(&req.path))
            .collect();
        if matching.is_empty() {
            return Err(not_found());
        }
        let Some(route) = matching.iter().find(|r| r.method == req.method) else {
            return Err(RouteError::MethodNotAllowed {
                allowed: matching
                    .iter()
                    .map(|r| r.method.as_str().to_owned())
                    .collect(),
            });
        };
        let call = AssertUnwindSafe((route.handler)(req)).catch_unwind();
        match tokio::time::timeout(ROUTE_TIMEOUT, call).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(panic)) => {
                entry.counters.record_other_error();
                Err(RouteError::Panicked {
                    plugin: plugin.to_owned(),
                    message: run::panic_message(panic.as_ref()),
                })
            }
            Err(_) => {
                entry.counters.record_other_error();
                Err(RouteError::TimedOut {
                    plugin: plugin.to_owned(),
                    timeout_ms: u64::try_from(ROUTE_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
                })
            }
        }
    }
}

fn mount_path(plugin: &str, sub_path: &str) -> String {
    format!("{MOUNT_PREFIX}/{plugin}{sub_path}")
}

fn check_routes(plugin: &str, routes: &[PluginRoute]) -> Result<(), PluginError> {
    for (i, r) in routes.iter().enumerate() {
        if !PluginRoute::path_is_valid(&r.path) {
            return Err(PluginError::settings(
                plugin,
                "routes",
                format!("invalid route path `{}`", r.path),
            ));
        }
        if routes[..i]
            .iter()
            .any(|o| o.method == r.method && o.path == r.path)
        {
            return Err(PluginError::settings(
                plugin,
                "routes",
                format!("route {} {} declared twice", r.method.as_str(), r.path),
            ));
        }
    }
    Ok(())
}

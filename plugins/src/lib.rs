//! Plugins for aimarket-hub: extensible ranking, routing and invoke guards.
//!
//! Modelled on pingora's `ProxyHttp`: a [`Plugin`] trait whose hooks all default to no-ops,
//! and a typed per-request [`PluginContext`]. A [`Registry`] built from configuration runs
//! the hooks in the configured order, each within its time budget, skipping a plugin that
//! fails (fail-open) unless it is configured fail-closed.
//!
//! * Hooks: [`Plugin::rank`], [`Plugin::route`], [`Plugin::before_invoke`],
//!   [`Plugin::after_invoke`], [`Plugin::receipt_extension`],
//!   [`Plugin::well_known_extension`], [`Plugin::routes`], [`Plugin::startup`] /
//!   [`Plugin::shutdown`], plus [`Plugin::retry_policy`].
//! * Built-ins ([`builtin`]): `quality` (default ranking), `price-guard`, `allow-deny`,
//!   `failover`, `webhook`.
//! * Configuration: [`RegistryConfig`] (`[[plugins]]` entries); factories:
//!   [`RegistryBuilder::register_factory`].
//!
//! This crate knows no web framework and no database: the hub adapts its requests to the
//! views in [`view`] and mounts [`PluginRoute`]s itself. See `plugins/README.md` for authors.

pub mod builtin;
pub mod config;
pub mod context;
pub mod error;
pub mod glob;
pub mod http;
pub mod metrics;
pub mod payment;
pub mod plugin;
pub mod redact;
pub mod registry;
pub mod reputation;
pub mod retry;
pub mod view;

pub use async_trait::async_trait;
pub use config::{Budgets, PluginConfig, PluginSettings, RegistryConfig};
pub use context::{Extensions, PluginContext};
pub use error::{HookError, PluginError, Refusal, RefusalKind, RouteError};
pub use http::{Method, PluginRequest, PluginResponse, PluginRoute};
pub use metrics::{HookMetrics, PluginMetrics, render_prometheus};
pub use payment::{ChallengeShape, RequestedAmount};
pub use plugin::{DynPlugin, Hook, HookResult, Hooks, Plugin};
pub use registry::{
    MOUNT_PREFIX, MountedRoute, PluginFactory, PluginServices, Registry, RegistryBuilder,
    RouteEmptied,
};
pub use reputation::{LogReputationSink, PriceMismatch, ReputationSink};
pub use retry::{AttemptFailure, RetryPolicy};
pub use view::{
    Candidate, CapabilityRef, Decision, InvokeOutcomeView, InvokeView, Provider, SearchQueryView,
    UpstreamPayment,
};

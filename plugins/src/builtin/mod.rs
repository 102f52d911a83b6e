//! Built-in plugins. Each is small, documented in its module, and loaded by name.

pub mod allow_deny;
pub mod available;
pub mod failover;
pub mod price_guard;
pub mod quality;
pub mod webhook;

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::config::PluginSettings;
use crate::error::PluginError;
use crate::plugin::{DynPlugin, Plugin};
use crate::registry::PluginFactory;

/// `(name, factory)` of every built-in.
pub(crate) fn factories() -> Vec<(&'static str, PluginFactory)> {
    vec![
        (quality::NAME, Arc::new(quality::factory) as PluginFactory),
        (price_guard::NAME, Arc::new(price_guard::factory)),
        (allow_deny::NAME, Arc::new(allow_deny::factory)),
        (failover::NAME, Arc::new(failover::factory)),
        (webhook::NAME, Arc::new(webhook::factory)),
    ]
}

/// Clamps a ratio to 0..=1, mapping NaN to 0 (bad data must not poison a sort).
pub(crate) fn unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// The body of a built-in factory: parse the settings table into `S`, then build with `new`,
/// whose `Err((field, message))` becomes a settings error naming that field.
pub(crate) fn build<S, P>(
    settings: &PluginSettings,
    new: impl FnOnce(S) -> Result<P, (String, String)>,
) -> Result<DynPlugin, PluginError>
where
    S: DeserializeOwned,
    P: Plugin,
{
    let parsed = settings.parse::<S>()?;
    let plugin = new(parsed).map_err(|(field, msg)| settings.invalid(&field, msg))?;
    Ok(Arc::new(plugin))
}

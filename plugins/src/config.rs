//! Registry configuration: an ordered list of plugin entries, each with its options and a
//! per-plugin settings table.
//!
//! ```toml
//! [[plugins]]
//! name = "quality"                 # factory name; also the plugin's name
//! fail_closed = false              # default false: skip the plugin when it fails
//! timeout_ms = { rank = 20, route = 20, before_invoke = 200, after_invoke = 200 }
//! settings = { weights = { relevance = 0.6 } }
//! ```

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::PluginError;
use crate::plugin::Hook;

/// Budget defaults, ms: `rank`, `route`, `before_invoke`, `after_invoke`.
pub const DEFAULT_BUDGETS_MS: [u64; 4] = [20, 20, 200, 200];
/// The largest budget a hook may be given, ms.
pub const MAX_BUDGET_MS: u64 = 60_000;

/// The ordered plugin list.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RegistryConfig {
    /// Plugins in the order their hooks run.
    pub plugins: Vec<PluginConfig>,
}

impl RegistryConfig {
    /// The chain the hub runs when the operator configures none: `quality` with defaults.
    pub fn default_chain() -> Self {
        Self {
            plugins: vec![PluginConfig::named("quality")],
        }
    }

    /// Reads either a bare list of entries or a table with a `plugins` list.
    pub fn from_json(value: &Value) -> Result<Self, PluginError> {
        let list = match value {
            Value::Array(list) => list,
            Value::Object(map) => match map.get("plugins") {
                Some(Value::Array(list)) => list,
                Some(_) => return Err(PluginError::Config("`plugins` must be a list".into())),
                None => return Ok(Self::default()),
            },
            _ => {
                return Err(PluginError::Config(
                    "expected a list of plugins or a table with `plugins`".into(),
                ));
            }
        };
        let plugins = list
            .iter()
            .enumerate()
            .map(|(i, entry)| PluginConfig::from_json_at(entry, i))
            .collect::<Result<_, _>>()?;
        Ok(Self { plugins })
    }

    /// Same as [`RegistryConfig::from_json`], from a parsed TOML value.
    pub fn from_toml(value: &toml::Value) -> Result<Self, PluginError> {
        let json = serde_json::to_value(value)
            .map_err(|e| PluginError::Config(format!("TOML is not representable as JSON: {e}")))?;
        Self::from_json(&json)
    }

    /// Parses TOML text with `[[plugins]]` entries.
    pub fn from_toml_str(text: &str) -> Result<Self, PluginError> {
        let value: toml::Value =
            toml::from_str(text).map_err(|e| PluginError::Config(format!("invalid TOML: {e}")))?;
        Self::from_toml(&value)
    }
}

impl<'de> Deserialize<'de> for RegistryConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// One configured plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginConfig {
    /// Factory and plugin name.
    pub name: String,
    /// Refuse requests when this plugin fails, instead of skipping it.
    pub fail_closed: bool,
    /// Per-hook budgets.
    pub timeout_ms: Budgets,
    /// The plugin's own settings table (always a JSON object).
    pub settings: Value,
}

impl PluginConfig {
    /// An entry with default options and empty settings.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            fail_closed: false,
            timeout_ms: Budgets::default(),
            settings: Value::Object(Map::new()),
        }
    }

    /// Sets the settings table.
    #[must_use]
    pub fn with_settings(mut self, settings: Value) -> Self {
        self.settings = settings;
        self
    }

    /// Sets `fail_closed`.
    #[must_use]
    pub fn fail_closed(mut self, fail_closed: bool) -> Self {
        self.fail_closed = fail_closed;
        self
    }

    /// Sets one hook's budget.
    #[must_use]
    pub fn with_budget(mut self, hook: Hook, budget: Duration) -> Self {
        self.timeout_ms.set(hook, budget);
        self
    }

    /// Parses one entry.
    pub fn from_json(value: &Value) -> Result<Self, PluginError> {
        Self::from_json_at(value, 0)
    }

    fn from_json_at(value: &Value, index: usize) -> Result<Self, PluginError> {
        let Value::Object(map) = value else {
            return Err(PluginError::Config(format!(
                "plugin entry #{} must be a table",
                index + 1
            )));
        };
        let name = match map.get("name") {
            Some(Value::String(n)) => n.clone(),
            _ => {
                return Err(PluginError::Config(format!(
                    "plugin entry #{} needs a string `name`",
                    index + 1
                )));
            }
        };
        if !name_is_valid(&name) {
            return Err(PluginError::settings(
                &name,
                "name",
                "must be 1-64 characters of a-z, 0-9, `-`, `_`",
            ));
        }
        let mut config = Self::named(&name);
        for (key, v) in map {
            match key.as_str() {
                "name" => {}
                "fail_closed" => {
                    config.fail_closed = v.as_bool().ok_or_else(|| {
                        PluginError::settings(&name, "fail_closed", "must be true or false")
                    })?;
                }
                "timeout_ms" => config.timeout_ms = Budgets::from_json(&name, v)?,
                "settings" => {
                    if !v.is_object() {
                        return Err(PluginError::settings(&name, "settings", "must be a table"));
                    }
                    config.settings = v.clone();
                }
                other => {
                    return Err(PluginError::settings(
                        &name,
                        other,
                        "unknown option (expected name, fail_closed, timeout_ms, settings)",
                    ));
                }
            }
        }
        Ok(config)
    }
}

impl<'de> Deserialize<'de> for PluginConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// True for `[a-z0-9_-]{1,64}`.
pub fn name_is_valid(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Per-hook time budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    ms: [u64; 4],
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            ms: DEFAULT_BUDGETS_MS,
        }
    }
}

impl Budgets {
    fn slot(hook: Hook) -> Option<usize> {
        Hook::BUDGETED.iter().position(|h| *h == hook)
    }

    /// The budget of a hook (non-budgeted hooks get the `after_invoke` budget).
    pub fn get(&self, hook: Hook) -> Duration {
        let ms = Self::slot(hook).map_or(self.ms[3], |i| self.ms[i]);
        Duration::from_millis(ms)
    }

    /// Sets a budgeted hook's budget (clamped to 1..=`MAX_BUDGET_MS` ms); others are ignored.
    pub fn set(&mut self, hook: Hook, budget: Duration) {
        if let Some(i) = Self::slot(hook) {
            let ms = u64::try_from(budget.as_millis()).unwrap_or(MAX_BUDGET_MS);
            self.ms[i] = ms.clamp(1, MAX_BUDGET_MS);
        }
    }

    fn from_json(plugin: &str, value: &Value) -> Result<Self, PluginError> {
        let Value::Object(map) = value else {
            return Err(PluginError::settings(
                plugin,
                "timeout_ms",
                "must be a table like { rank = 20, before_invoke = 200 }",
            ));
        };
        let mut budgets = Self::default();
        for (key, v) in map {
            let field = format!("timeout_ms.{key}");
            let slot = Hook::BUDGETED
                .iter()
                .position(|h| h.as_str() == key)
                .ok_or_else(|| {
                    PluginError::settings(
                        plugin,
                        &field,
                        "unknown hook (expected rank, route, before_invoke, after_invoke)",
                    )
                })?;
            budgets.ms[slot] = v
                .as_u64()
                .filter(|ms| (1..=MAX_BUDGET_MS).contains(ms))
                .ok_or_else(|| {
                    PluginError::settings(
                        plugin,
                        &field,
                        format!("must be an integer number of ms in 1..={MAX_BUDGET_MS}"),
                    )
                })?;
        }
        Ok(budgets)
    }
}

impl Serialize for Budgets {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(4))?;
        for (hook, ms) in Hook::BUDGETED.iter().zip(self.ms) {
            map.serialize_entry(hook.as_str(), &ms)?;
        }
        map.end()
    }
}

/// A plugin's settings table, handed to its factory.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    plugin: String,
    value: Value,
}

impl PluginSettings {
    /// Settings for `plugin`.
    pub fn new(plugin: impl Into<String>, value: Value) -> Self {
        Self {
            plugin: plugin.into(),
            value,
        }
    }

    /// The plugin being configured.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The raw table.
    pub fn raw(&self) -> &Value {
        &self.value
    }

    /// Deserializes the table into `T`, with an error naming the plugin and the bad field.
    ///
    /// Use `#[serde(default, deny_unknown_fields)]` on `T` so typos are errors and omitted
    /// fields take defaults.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        let err = match serde_json::from_value::<T>(self.value.clone()) {
            Ok(t) => return Ok(t),
            Err(e) => e.to_string(),
        };
        Err(PluginError::settings(
            &self.plugin,
            self.culprit::<T>(&err),
            err,
        ))
    }

    /// An error for a field that deserialized but failed validation.
    pub fn invalid(&self, field: &str, message: impl Into<String>) -> PluginError {
        PluginError::settings(&self.plugin, field, message)
    }

    /// serde_json names the field for missing/unknown fields but not for type errors, so
    /// those are found by deserializing each key on its own: derived visitors report a bad
    /// value before any missing field, so the key that fails alone is the culprit.
    fn culprit<T: DeserializeOwned>(&self, message: &str) -> String {
        if let Some(named) = backticked(message) {
            return named;
        }
        if let Value::Object(map) = &self.value {
            for (key, v) in map {
                let single = Value::Object(Map::from_iter([(key.clone(), v.clone())]));
                if let Err(e) = serde_json::from_value::<T>(single)
                    && !e.to_string().starts_with("missing field")
                {
                    return key.clone();
                }
            }
        }
        "settings".into()
    }
}

/// The field serde names in "missing field `x`" / "unknown field `x`, expected ...".
fn backticked(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct S {
        tolerance: f64,
        lists: Vec<String>,
    }
    impl Default for S {
        fn default() -> Self {
            Self {
                tolerance: 0.05,
                lists: vec![],
            }
        }
    }

    #[test]
    fn toml_round_trip_with_defaults() {
        let cfg = RegistryConfig::from_toml_str(
            r#"
            [[plugins]]
            name = "quality"
            [[plugins]]
            name = "price-guard"
            fail_closed = true
            timeout_ms = { after_invoke = 50 }
            settings = { tolerance = 0.1 }
            "#,
        )
        .unwrap();
        assert_eq!(cfg.plugins.len(), 2);
        assert_eq!(cfg.plugins[0], PluginConfig::named("quality"));
        let pg = &cfg.plugins[1];
        assert!(pg.fail_closed);
        assert_eq!(
            pg.timeout_ms.get(Hook::AfterInvoke),
            Duration::from_millis(50)
        );
        assert_eq!(pg.timeout_ms.get(Hook::Rank), Duration::from_millis(20));
        assert_eq!(
            pg.timeout_ms.get(Hook::BeforeInvoke),
            Duration::from_millis(200)
        );
        assert_eq!(pg.settings, json!({"tolerance": 0.1}));
        let json = serde_json::to_value(pg.timeout_ms).unwrap();
        assert_eq!(
            json,
            json!({"rank": 20, "route": 20, "before_invoke": 200, "after_invoke": 50})
        );
    }

    #[test]
    fn option_errors_name_plugin_and_field() {
        let cases = [
            (
                json!([{"name": "q", "timeout_ms": {"rank": 0}}]),
                "timeout_ms.rank",
            ),
            (
                json!([{"name": "q", "timeout_ms": {"rnk": 5}}]),
                "timeout_ms.rnk",
            ),
            (json!([{"name": "q", "fail_closed": "yes"}]), "fail_closed"),
            (json!([{"name": "q", "settings": 5}]), "settings"),
            (json!([{"name": "q", "color": 5}]), "color"),
            (json!([{"name": "Bad Name"}]), "name"),
        ];
        for (value, field) in cases {
            match RegistryConfig::from_json(&value) {
                Err(PluginError::Settings { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{value}: {other:?}"),
            }
        }
        assert!(matches!(
            RegistryConfig::from_json(&json!([{"fail_closed": true}])),
            Err(PluginError::Config(_))
        ));
        assert!(RegistryConfig::from_json(&json!({"plugins": 3})).is_err());
        assert_eq!(
            RegistryConfig::from_json(&json!({})).unwrap().plugins.len(),
            0
        );
    }

    #[test]
    fn settings_errors_name_the_field() {
        let bad_type = PluginSettings::new("pg", json!({"tolerance": "high", "lists": []}));
        match bad_type.parse::<S>() {
            Err(PluginError::Settings { plugin, field, .. }) => {
                assert_eq!((plugin.as_str(), field.as_str()), ("pg", "tolerance"));
            }
            other => panic!("{other:?}"),
        }
        let unknown = PluginSettings::new("pg", json!({"tolerence": 0.1}));
        match unknown.parse::<S>() {
            Err(PluginError::Settings { field, .. }) => assert_eq!(field, "tolerence"),
            other => panic!("{other:?}"),
        }
        let ok = PluginSettings::new("pg", json!({"lists": ["a"]}));
        assert_eq!(
            ok.parse::<S>().unwrap(),
            S {
                tolerance: 0.05,
                lists: vec!["a".into()]
            }
        );
        let err = PluginSettings::new("pg", json!({})).invalid("tolerance", "negative");
        assert_eq!(err.to_string(), "plugin `pg`: field `tolerance`: negative");
    }

    #[test]
    fn deserialize_impl_for_embedding_in_hub_config() {
        #[derive(Deserialize)]
        struct HubCfg {
            plugins: Vec<PluginConfig>,
        }
        let cfg: HubCfg = toml::from_str("[[plugins]]\nname = \"failover\"\n").unwrap();
        assert_eq!(cfg.plugins[0].name, "failover");
        let bad: Result<HubCfg, _> = toml::from_str("[[plugins]]\nname = \"x\"\nbogus = 1\n");
        assert!(bad.err().unwrap().to_string().contains("bogus"));
    }
}

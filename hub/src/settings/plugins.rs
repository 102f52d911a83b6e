//! The plugin chain (`[[plugins]]` tables in the TOML file).
//!
//! ```toml
//! [[plugins]]
//! name = "allow-deny"
//! settings = { deny_hubs = ["https://spam.example"] }
//!
//! [[plugins]]
//! name = "quality"
//! settings = { weights = { relevance = 0.6 } }
//! ```
//!
//! Without any `[[plugins]]` table the hub runs the default chain (`quality` with its
//! defaults); `plugins = []` runs none. Entries are parsed by `aimarket-plugins` (each error
//! names the plugin and the field); unknown plugin names are reported at startup, when the
//! registry is built, because tests and embedders can register extra factories. See
//! `plugins/README.md` for every built-in and its settings.

use aimarket_plugins::{PluginConfig, RegistryConfig};
use serde::Deserialize;

/// The configured plugin entries, in the order their hooks run.
///
/// `Debug` redacts secrets in the settings tables (webhook headers, tokens), like the rest of
/// [`super::Settings`].
#[derive(Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct PluginChain(pub Vec<PluginConfig>);

impl Default for PluginChain {
    fn default() -> Self {
        Self(RegistryConfig::default_chain().plugins)
    }
}

impl PluginChain {
    /// The registry configuration these entries describe.
    pub fn registry_config(&self) -> RegistryConfig {
        RegistryConfig {
            plugins: self.0.clone(),
        }
    }
}

impl std::fmt::Debug for PluginChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|entry| {
                format!(
                    "{} (fail_closed: {}, settings: {})",
                    entry.name,
                    entry.fail_closed,
                    aimarket_plugins::redact::redact(&entry.settings)
                )
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn absent_means_the_default_chain_and_an_empty_list_means_none() {
        let settings = Settings::from_toml_str("").unwrap();
        assert_eq!(settings.plugins, PluginChain::default());
        assert_eq!(settings.plugins.0[0].name, "quality");
        let none = Settings::from_toml_str("plugins = []").unwrap();
        assert!(none.plugins.0.is_empty());
    }

    #[test]
    fn tables_parse_in_order_with_their_settings() {
        let text = r#"
            [[plugins]]
            name = "allow-deny"
            settings = { deny_hubs = ["https://spam.example"] }

            [[plugins]]
            name = "webhook"
            fail_closed = true
            timeout_ms = { rank = 50 }
            settings = { url = "http://127.0.0.1:9/hook", headers = { authorization = "Bearer s3cret" } }
        "#;
        let settings = Settings::from_toml_str(text).unwrap();
        let names: Vec<&str> = settings.plugins.0.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["allow-deny", "webhook"]);
        assert!(settings.plugins.0[1].fail_closed);
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn a_bad_entry_names_the_option() {
        let err = Settings::from_toml_str("[[plugins]]\nname = \"quality\"\nfail_closd = true")
            .unwrap_err();
        assert!(err.contains("fail_closd"), "{err}");
    }
}

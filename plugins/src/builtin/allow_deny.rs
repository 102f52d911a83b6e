//! `allow-deny`: allow and deny lists of hubs, products and capability patterns, applied to
//! search (`rank` drops candidates), routing (`route` drops providers) and invoke
//! (`before_invoke` blocks with category `policy_denied`).
//!
//! Every entry is a glob (`*` any run, `?` one character): `translate.*`,
//! `https://*.example.com`, `prod-42`. For each of the three dimensions:
//! * a value matching any `deny_*` pattern is denied;
//! * when `allow_*` is non-empty, a value matching none of its patterns is denied;
//! * otherwise it is allowed. Deny wins over allow.
//!
//! The hub dimension checks **every hub on the path**: the owning origin and, when the
//! capability is reached through another hub, that relaying hub too. Hub URLs are compared
//! lower-cased without a trailing `/` (write patterns the same way).
//!
//! ```toml
//! settings = { deny_hubs = ["https://spam.example"], allow_capabilities = ["translate.*", "ocr.*"] }
//! ```

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::PluginSettings;
use crate::context::PluginContext;
use crate::error::PluginError;
use crate::glob::Glob;
use crate::plugin::{DynPlugin, Hook, HookResult, Hooks, Plugin};
use crate::registry::PluginServices;
use crate::view::{Candidate, CapabilityRef, Decision, InvokeView, Provider, SearchQueryView};

/// Registered name.
pub const NAME: &str = "allow-deny";
/// Block category.
pub const POLICY_DENIED: &str = "policy_denied";

/// `allow-deny` settings: six optional pattern lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllowDenySettings {
    /// Hubs (origins or relaying peers) allowed; empty = all.
    pub allow_hubs: Vec<String>,
    /// Hubs denied.
    pub deny_hubs: Vec<String>,
    /// Product ids allowed; empty = all.
    pub allow_products: Vec<String>,
    /// Product ids denied.
    pub deny_products: Vec<String>,
    /// Capability id patterns allowed; empty = all.
    pub allow_capabilities: Vec<String>,
    /// Capability id patterns denied.
    pub deny_capabilities: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Lists {
    allow: Vec<Glob>,
    deny: Vec<Glob>,
}

impl Lists {
    fn permits(&self, value: &str) -> bool {
        !self.deny.iter().any(|g| g.matches(value))
            && (self.allow.is_empty() || self.allow.iter().any(|g| g.matches(value)))
    }
}

/// The plugin.
#[derive(Debug, Clone)]
pub struct AllowDeny {
    settings: AllowDenySettings,
    hubs: Lists,
    products: Lists,
    capabilities: Lists,
}

/// Lower-cases and trims a trailing `/` so `https://A.example/` equals `https://a.example`.
fn normalize_hub(url: &str) -> String {
    url.trim_end_matches('/').to_ascii_lowercase()
}

impl AllowDeny {
    /// Compiles the lists; `Err((field, message))` for an empty pattern.
    pub fn new(settings: AllowDenySettings) -> Result<Self, (String, String)> {
        fn compile(
            field: &str,
            patterns: &[String],
            hub: bool,
        ) -> Result<Vec<Glob>, (String, String)> {
            patterns
                .iter()
                .map(|p| {
                    let p = if hub { normalize_hub(p) } else { p.clone() };
                    Glob::new(&p)
                        .ok_or_else(|| (field.to_owned(), "patterns must not be empty".to_owned()))
                })
                .collect()
        }
        let s = &settings;
        Ok(Self {
            hubs: Lists {
                allow: compile("allow_hubs", &s.allow_hubs, true)?,
                deny: compile("deny_hubs", &s.deny_hubs, true)?,
            },
            products: Lists {
                allow: compile("allow_products", &s.allow_products, false)?,
                deny: compile("deny_products", &s.deny_products, false)?,
            },
            capabilities: Lists {
                allow: compile("allow_capabilities", &s.allow_capabilities, false)?,
                deny: compile("deny_capabilities", &s.deny_capabilities, false)?,
            },
            settings,
        })
    }

    /// `None` when allowed, else the reason it is denied.
    pub fn verdict<'a>(
        &self,
        hubs: impl IntoIterator<Item = &'a str>,
        product_id: &str,
        capability_id: &str,
    ) -> Option<String> {
        for hub in hubs {
            if !self.hubs.permits(&normalize_hub(hub)) {
                return Some(format!("hub `{hub}` is not allowed by {NAME}"));
            }
        }
        if !self.products.permits(product_id) {
            return Some(format!("product `{product_id}` is not allowed by {NAME}"));
        }
        if !self.capabilities.permits(capability_id) {
            return Some(format!(
                "capability `{capability_id}` is not allowed by {NAME}"
            ));
        }
        None
    }

    fn candidate_allowed(&self, c: &Candidate) -> bool {
        let hubs = std::iter::once(&*c.origin).chain(c.via.as_deref());
        self.verdict(hubs, &c.product_id, &c.capability_id)
            .is_none()
    }

    fn provider_allowed(&self, cap: &CapabilityRef, p: &Provider) -> bool {
        self.verdict(p.hubs(), &cap.product_id, &cap.capability_id)
            .is_none()
    }
}

/// Factory for the registry.
pub fn factory(
    settings: &PluginSettings,
    _services: &PluginServices,
) -> Result<DynPlugin, PluginError> {
    super::build(settings, AllowDeny::new)
}

#[async_trait]
impl Plugin for AllowDeny {
    fn name(&self) -> &str {
        NAME
    }

    fn hooks(&self) -> Hooks {
        Hooks::of(&[Hook::Rank, Hook::Route, Hook::BeforeInvoke])
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
        candidates.retain(|c| self.candidate_allowed(c));
        Ok(())
    }

    async fn route(
        &self,
        _ctx: &mut PluginContext,
        capability: &CapabilityRef,
        providers: &mut Vec<Provider>,
    ) -> HookResult {
        providers.retain(|p| self.provider_allowed(capability, p));
        Ok(())
    }

    async fn before_invoke(
        &self,
        _ctx: &mut PluginContext,
        req: &InvokeView,
    ) -> HookResult<Decision> {
        Ok(
            match self.verdict(req.provider.hubs(), &req.product_id, &req.capability_id) {
                Some(reason) => Decision::block(POLICY_DENIED, reason),
                None => Decision::Allow,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn plugin(v: Value) -> AllowDeny {
        AllowDeny::new(serde_json::from_value(v).unwrap()).unwrap()
    }

    #[test]
    fn deny_wins_and_allow_lists_restrict() {
        let p = plugin(json!({
            "allow_capabilities": ["translate.*", "ocr.*"],
            "deny_capabilities": ["translate.legacy*"],
            "deny_hubs": ["https://spam.example"],
            "deny_products": ["prod-bad"],
        }));
        let ok = ["https://a.example"];
        assert_eq!(p.verdict(ok, "prod-1", "translate.multi@v2"), None);
        assert!(p.verdict(ok, "prod-1", "translate.legacy@v1").is_some());
        assert!(p.verdict(ok, "prod-1", "summarize@v1").is_some());
        assert!(p.verdict(ok, "prod-bad", "ocr.scan@v1").is_some());
        assert!(
            p.verdict(["https://SPAM.example/"], "prod-1", "ocr.scan@v1")
                .is_some()
        );
        // A denied relaying hub denies the path even when the origin is fine.
        assert!(
            p.verdict(
                ["https://a.example", "https://spam.example"],
                "prod-1",
                "ocr.x"
            )
            .is_some()
        );
    }

    #[test]
    fn allow_hubs_require_every_hub_on_the_path() {
        let p = plugin(json!({"allow_hubs": ["https://*.trusted.example"]}));
        assert_eq!(p.verdict(["https://a.trusted.example"], "p", "c"), None);
        assert!(
            p.verdict(
                ["https://a.trusted.example", "https://relay.example"],
                "p",
                "c"
            )
            .is_some()
        );
    }

    #[test]
    fn empty_patterns_are_rejected() {
        match factory(
            &PluginSettings::new(NAME, json!({"deny_products": [""]})),
            &PluginServices::default(),
        ) {
            Err(PluginError::Settings { field, .. }) => assert_eq!(field, "deny_products"),
            _ => panic!("accepted"),
        }
    }
}

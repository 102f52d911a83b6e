//! `webhook`: delegates `rank` and/or `before_invoke` to an operator-configured HTTP service,
//! so ranking and policy plugins can be written in any language.
//!
//! The hub POSTs JSON (see [`wire`] and `plugins/README.md` for the exact shapes) and reads a
//! JSON reply. The call is bounded by `min(timeout_ms, remaining hook budget)`. A transport
//! error, a non-2xx status, an oversized or malformed reply is a hook error: the registry
//! skips the plugin (fail-open) or refuses the request when the entry is `fail_closed`.
//! Redirects are not followed. The URL is operator configuration (not subject to the
//! URL-safety rules for peer URLs), so it may point at 127.0.0.1.
//!
//! ```toml
//! [[plugins]]
//! name = "webhook"
//! fail_closed = false
//! timeout_ms = { rank = 50, before_invoke = 300 }
//! settings = { url = "http://127.0.0.1:9000/hook", hooks = ["rank", "before_invoke"],
//!              headers = { authorization = "Bearer s3cret" } }
//! ```

pub mod wire;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::PluginSettings;
use crate::context::PluginContext;
use crate::error::{HookError, PluginError};
use crate::plugin::{DynPlugin, Hook, HookResult, Hooks, Plugin};
use crate::registry::PluginServices;
use crate::view::{Candidate, Decision, InvokeView, SearchQueryView};
use wire::{
    BeforeInvokeBody, DecisionReply, Envelope, RankBody, RankReply, WireCandidate, WireInvoke,
};

/// Registered name.
pub const NAME: &str = "webhook";

/// Which hooks the webhook serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookHook {
    /// `rank`
    Rank,
    /// `before_invoke`
    BeforeInvoke,
}

/// `webhook` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// The endpoint (http or https). Required.
    pub url: String,
    /// Hooks to delegate. Required, non-empty.
    pub hooks: Vec<WebhookHook>,
    /// Upper bound of one call, ms (the hook budget bounds it too).
    pub timeout_ms: u64,
    /// Extra request headers (e.g. `authorization`); redacted in descriptions.
    pub headers: BTreeMap<String, String>,
    /// Send each candidate's tool JSON in `rank` requests.
    pub include_tool: bool,
    /// Send the buyer's input in `before_invoke` requests.
    pub include_input: bool,
    /// Send at most this many candidates (the first ones); the rest keep their order after
    /// the candidates the reply orders.
    pub max_candidates: usize,
    /// Largest accepted reply body, bytes.
    pub max_response_bytes: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            hooks: Vec::new(),
            timeout_ms: 1000,
            headers: BTreeMap::new(),
            include_tool: false,
            include_input: true,
            max_candidates: 100,
            max_response_bytes: 1 << 20,
        }
    }
}

/// The plugin.
#[derive(Debug, Clone)]
pub struct Webhook {
    settings: WebhookSettings,
    url: reqwest::Url,
    headers: HeaderMap,
    client: reqwest::Client,
    hooks: Hooks,
}

/// Builds a client for plugins when the hub lends none. reqwest is built with
/// `rustls-no-provider`, so a process-wide crypto provider must exist first; the hub installs
/// one at startup, and this installs `ring` when nothing did (a no-op otherwise).
fn default_client() -> Result<reqwest::Client, reqwest::Error> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: some provider is then installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

impl Webhook {
    /// Validates settings and prepares the client; errors name the field.
    pub fn new(
        settings: WebhookSettings,
        client: Option<reqwest::Client>,
    ) -> Result<Self, (String, String)> {
        let bad = |field: &str, msg: String| (field.to_owned(), msg);
        if settings.url.is_empty() {
            return Err(bad("url", "is required".into()));
        }
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|e| bad("url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad(
                "url",
                "must be an http:// or https:// URL with a host".into(),
            ));
        }
        if settings.hooks.is_empty() {
            return Err(bad(
                "hooks",
                "list at least one of \"rank\", \"before_invoke\"".into(),
            ));
        }
        if !(1..=60_000).contains(&settings.timeout_ms) {
            return Err(bad("timeout_ms", "must be in 1..=60000".into()));
        }
        if settings.max_candidates == 0 {
            return Err(bad("max_candidates", "must be ≥ 1".into()));
        }
        if settings.max_response_bytes < 64 {
            return Err(bad("max_response_bytes", "must be ≥ 64".into()));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &settings.headers {
            let field = format!("headers.{name}");
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(&field, "not a valid header name".into()))?;
            let mut v = HeaderValue::from_str(value)
                .map_err(|_| bad(&field, "not a valid header value".into()))?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        let client = match client {
            Some(c) => c,
            None => default_client().map_err(|e| bad("url", format!("HTTP client: {e}")))?,
        };
        let hooks = settings.hooks.iter().fold(Hooks::NONE, |h, w| {
            h.with(match w {
                WebhookHook::Rank => Hook::Rank,
                WebhookHook::BeforeInvoke => Hook::BeforeInvoke,
            })
        });
        Ok(Self {
            settings,
            url,
            headers,
            client,
            hooks,
        })
    }

    /// POSTs `body` and parses the reply as `R`.
    async fn call<B: Serialize + Sync, R: DeserializeOwned>(
        &self,
        ctx: &PluginContext,
        hook: &str,
        body: &B,
    ) -> HookResult<R> {
        let timeout = ctx
            .remaining()
            .min(Duration::from_millis(self.settings.timeout_ms));
        let mut resp = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header("x-request-id", &ctx.request_id)
            .header("x-aimarket-hook", hook)
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| HookError::from_error("webhook request failed", &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(HookError::new(format!("webhook answered HTTP {status}")));
        }
        let max = self.settings.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(HookError::new(format!("webhook reply exceeds {max} bytes")));
        }
        let mut buf = Vec::new();
        // Bounded: each chunk grows `buf`, and growth past `max` ends the loop.
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| HookError::from_error("webhook reply failed", &e))?
        {
            if buf.len() + chunk.len() > max {
                return Err(HookError::new(format!("webhook reply exceeds {max} bytes")));
            }
            buf.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&buf)
            .map_err(|e| HookError::new(format!("webhook reply is not a valid {hook} reply: {e}")))
    }
}

/// Factory for the registry.
pub fn factory(
    settings: &PluginSettings,
    services: &PluginServices,
) -> Result<DynPlugin, PluginError> {
    super::build(settings, |parsed| {
        Webhook::new(parsed, services.http.clone())
    })
}

#[async_trait]
impl Plugin for Webhook {
    fn name(&self) -> &str {
        NAME
    }

    fn hooks(&self) -> Hooks {
        self.hooks
    }

    fn settings(&self) -> Option<Value> {
        serde_json::to_value(&self.settings).ok()
    }

    async fn rank(
        &self,
        ctx: &mut PluginContext,
        query: &SearchQueryView,
        candidates: &mut Vec<Candidate>,
    ) -> HookResult {
        let body = Envelope {
            hook: "rank",
            request_id: &ctx.request_id,
            client_id: ctx.client_id.as_deref(),
            hub: &ctx.hub_url,
            body: RankBody {
                query,
                candidates: candidates
                    .iter()
                    .take(self.settings.max_candidates)
                    .map(|c| WireCandidate::new(c, self.settings.include_tool))
                    .collect(),
            },
        };
        let reply: RankReply = self.call(ctx, "rank", &body).await?;
        reply.apply(candidates);
        Ok(())
    }

    async fn before_invoke(
        &self,
        ctx: &mut PluginContext,
        req: &InvokeView,
    ) -> HookResult<Decision> {
        let body = Envelope {
            hook: "before_invoke",
            request_id: &ctx.request_id,
            client_id: ctx.client_id.as_deref(),
            hub: &ctx.hub_url,
            body: BeforeInvokeBody {
                invoke: WireInvoke::new(req, self.settings.include_input),
            },
        };
        let reply: DecisionReply = self.call(ctx, "before_invoke", &body).await?;
        reply.into_decision()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(v: Value) -> String {
        match factory(&PluginSettings::new(NAME, v), &PluginServices::default()) {
            Err(PluginError::Settings { field, .. }) => field,
            Err(other) => panic!("{other}"),
            Ok(_) => "accepted".into(),
        }
    }

    #[test]
    fn settings_validation() {
        assert_eq!(field_of(json!({"hooks": ["rank"]})), "url");
        assert_eq!(
            field_of(json!({"url": "ftp://x", "hooks": ["rank"]})),
            "url"
        );
        assert_eq!(field_of(json!({"url": "http://127.0.0.1:1/h"})), "hooks");
        assert_eq!(
            field_of(json!({"url": "http://127.0.0.1:1/h", "hooks": ["route"]})),
            "hooks"
        );
        assert_eq!(
            field_of(json!({"url": "http://127.0.0.1:1/h", "hooks": ["rank"],
                "headers": {"bad name": "x"}})),
            "headers.bad name"
        );
        assert_eq!(
            field_of(json!({"url": "http://127.0.0.1:1/h", "hooks": ["rank"], "timeout_ms": 0})),
            "timeout_ms"
        );
        assert_eq!(
            field_of(json!({"url": "http://127.0.0.1:1/h", "hooks": ["rank", "before_invoke"]})),
            "accepted"
        );
    }

    #[test]
    fn declares_only_configured_hooks() {
        let w = Webhook::new(
            WebhookSettings {
                url: "http://127.0.0.1:1/h".into(),
                hooks: vec![WebhookHook::BeforeInvoke],
                ..WebhookSettings::default()
            },
            None,
        )
        .ok();
        let hooks = w.map(|w| w.hooks().iter().collect::<Vec<_>>());
        assert_eq!(hooks, Some(vec![Hook::BeforeInvoke]));
    }
}

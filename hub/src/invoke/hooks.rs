//! The plugin hooks of one invoke (issue 7): `route` on the resolved providers,
//! `before_invoke` before each upstream attempt, `after_invoke` on the provider's answer,
//! `receipt_extension` on a success, and the v2 rejection receipt an `after_invoke` block
//! earns the buyer.
//!
//! Views are only built for hooks some enabled plugin implements, so with the default chain
//! (ranking only) an invoke creates no plugin context at all.

use std::sync::Arc;

use aimarket_plugins::{
    CapabilityRef, Hook, InvokeOutcomeView, InvokeView, PluginContext, Provider, Refusal,
    RefusalKind, Registry, RouteEmptied, UpstreamPayment,
};
use aimarket_protocol::signing::{KeyPair, ReceiptVersion, sign_receipt};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::InvokeCall;
use super::error::InvokeError;
use super::forward::{Upstream, names};
use super::resolve::Offer;

/// The plugin side of one invoke: which hooks run, and the request's context.
pub(super) struct PluginRun<'a> {
    registry: &'a Registry,
    ctx: Option<PluginContext>,
    route: bool,
    before: bool,
    after: bool,
    extend: bool,
}

impl<'a> PluginRun<'a> {
    /// Reads which invoke hooks the chain implements; creates the context only if any.
    pub fn new(registry: &'a Registry, call: &InvokeCall, request_id: &str, hub_url: &str) -> Self {
        let route = registry.has_hook(Hook::Route);
        let before = registry.has_hook(Hook::BeforeInvoke);
        let after = registry.has_hook(Hook::AfterInvoke);
        let extend = registry.has_hook(Hook::ReceiptExtension);
        let ctx = (route || before || after || extend)
            .then(|| PluginContext::new(request_id, hub_url).with_client_id(call.client.as_str()));
        Self {
            registry,
            ctx,
            route,
            before,
            after,
            extend,
        }
    }

    /// True when some hook needs an [`InvokeView`] of each attempt.
    pub fn wants_view(&self) -> bool {
        self.before || self.after || self.extend
    }

    /// True when some hook reads the provider's answer.
    pub fn wants_outcome(&self) -> bool {
        self.after || self.extend
    }

    /// Runs `route` on the providers `choose_providers` ordered. An empty result is 403
    /// `no_provider` naming the plugin that removed the last one; a failing fail-closed
    /// plugin is 503.
    pub async fn route(
        &mut self,
        call: &InvokeCall,
        offers: Vec<Arc<Offer>>,
        target_of: impl Fn(&Offer) -> String,
    ) -> Result<Vec<Arc<Offer>>, InvokeError> {
        let Some(ctx) = self.ctx.as_mut().filter(|_| self.route) else {
            return Ok(offers);
        };
        let capability = CapabilityRef {
            product_id: call
                .request
                .product_id
                .as_deref()
                .unwrap_or_default()
                .into(),
            capability_id: call.request.capability_id.as_str().into(),
            source_hub: call.request.source_hub.as_deref().map(Into::into),
        };
        let mut views: Vec<Provider> = offers
            .iter()
            .map(|o| provider_view(o, &target_of(o)))
            .collect();
        self.registry
            .route(ctx, &capability, &mut views)
            .await
            .map_err(refused)?;
        // Plugins may reorder, drop or rebuild the views: each maps back to the first unused
        // offer with the same origin and relay (an offer the hub never had is ignored).
        let mut left: Vec<Option<Arc<Offer>>> = offers.into_iter().map(Some).collect();
        let mut chosen = Vec::with_capacity(views.len());
        for view in &views {
            let found = left.iter_mut().find(|slot| {
                slot.as_ref().is_some_and(|o| {
                    *o.origin == *view.origin && o.via.as_deref() == view.via.as_deref()
                })
            });
            if let Some(offer) = found.and_then(Option::take) {
                chosen.push(offer);
            }
        }
        if chosen.is_empty() {
            let plugin = ctx
                .extensions()
                .get::<RouteEmptied>()
                .map(|e| e.plugin.clone());
            let detail = match &plugin {
                Some(p) => format!("route plugin `{p}` removed every provider of this capability"),
                None => "the route plugins removed every provider of this capability".to_owned(),
            };
            return Err(InvokeError::NoProvider { plugin, detail });
        }
        Ok(chosen)
    }

    /// Runs `before_invoke` for one attempt. A block is 403 `blocked` (nothing charged); a
    /// failing fail-closed plugin 503.
    pub async fn before_invoke(&mut self, view: Option<&InvokeView>) -> Result<(), InvokeError> {
        match (self.ctx.as_mut(), view) {
            (Some(ctx), Some(view)) if self.before => self
                .registry
                .before_invoke(ctx, view)
                .await
                .map_err(refused),
            _ => Ok(()),
        }
    }

    /// Runs `after_invoke` on the provider's answer; `Err` is the refusal to act on.
    pub async fn after_invoke(
        &mut self,
        view: Option<&InvokeView>,
        outcome: Option<&InvokeOutcomeView>,
    ) -> Result<(), Refusal> {
        match (self.ctx.as_mut(), view, outcome) {
            (Some(ctx), Some(view), Some(outcome)) if self.after => {
                self.registry.after_invoke(ctx, view, outcome).await
            }
            _ => Ok(()),
        }
    }

    /// The plugins' `{name: extension}` for a successful call's routing receipt.
    pub fn receipt_extensions(
        &self,
        view: Option<&InvokeView>,
        outcome: Option<&InvokeOutcomeView>,
    ) -> Option<Value> {
        match (&self.ctx, view, outcome) {
            (Some(ctx), Some(view), Some(outcome)) if self.extend => {
                self.registry.receipt_extensions(ctx, view, outcome)
            }
            _ => None,
        }
    }
}

/// A refusal as the invoke error it becomes: a block is 403, a failure 503.
pub(super) fn refused(refusal: Refusal) -> InvokeError {
    match refusal.kind {
        RefusalKind::Blocked => InvokeError::Blocked(refusal),
        RefusalKind::PluginFailed => InvokeError::PluginUnavailable(refusal),
    }
}

/// What `route` plugins see of one offer.
pub(super) fn provider_view(offer: &Offer, target_url: &str) -> Provider {
    Provider {
        origin: offer.origin.as_str().into(),
        via: offer.via.as_deref().map(Into::into),
        peer_url: offer.peer_url.as_str().into(),
        price_usd: offer.price_usd,
        routed_price_usd: offer.routed_price_usd,
        p50_latency_ms: offer.p50_latency_ms,
        trust_score: offer.trust_score,
        success_rate: offer.success_rate,
        target_url: target_url.into(),
    }
}

/// What `before_invoke` / `after_invoke` see of one attempt.
pub(super) fn invoke_view(
    call: &InvokeCall,
    offer: &Offer,
    target_url: &str,
    attempt: u32,
    upstream_payment: UpstreamPayment,
) -> InvokeView {
    let request = &call.request;
    InvokeView {
        product_id: request.product_id.as_deref().unwrap_or_default().into(),
        capability_id: request.capability_id.as_str().into(),
        source_hub: request.source_hub.as_deref().map(Into::into),
        input: Arc::new(request.input.clone()),
        max_price_usd: request.max_price_usd,
        provider: provider_view(offer, target_url),
        attempt,
        upstream_payment,
    }
}

/// The provider's answer as `after_invoke` sees it (body parsed, payment headers raw).
pub(super) fn outcome_view(upstream: &Upstream, latency_ms: u64) -> InvokeOutcomeView {
    let body: Value = serde_json::from_slice(&upstream.body).unwrap_or(Value::Null);
    let header = |name: &str| upstream.header(name).map(str::to_owned);
    InvokeOutcomeView::new(upstream.status, body, latency_ms).with_payment_headers(
        header(names::X_PAYMENT_REQUIRED),
        header(names::PAYMENT_REQUIRED),
    )
}

/// What a rejection receipt states.
pub(super) struct Rejection<'a> {
    /// Receipt nonce (the released hold's id for a channel-funded call).
    pub nonce: &'a str,
    /// The offer whose answer was blocked.
    pub offer: &'a Offer,
    /// The buyer's channel, for a channel-funded call.
    pub channel_id: Option<&'a str>,
    /// Whether a hold was released (the buyer's money went back to the channel).
    pub refunded: bool,
    /// The W3C trace id of the call.
    pub trace_id: &'a str,
    /// Hub-side latency, ms.
    pub latency_ms: u64,
    /// This hub's public URL.
    pub routing_hub: &'a str,
}

impl Rejection<'_> {
    /// The v2 rejection receipt (spec §7.3.4), signed by the hub: `success: false`,
    /// `price_usd: 0`, and `type`, `category`, `plugin`, `reason`, `refunded`, `channel_id`,
    /// `trace_id` bound by the v2 fields digest.
    pub fn sign(&self, refusal: &Refusal, key: &KeyPair) -> Result<Value, InvokeError> {
        let mut receipt = json!({
            "nonce": self.nonce,
            "product_id": self.offer.product_id,
            "capability_id": self.offer.capability_id,
            "price_usd": 0.0,
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "success": false,
            "latency_ms": self.latency_ms,
            "type": "rejection",
            "category": refusal.category,
            "plugin": refusal.plugin,
            "reason": refusal.reason,
            "refunded": self.refunded,
            "channel_id": self.channel_id,
            "trace_id": self.trace_id,
            "source_hub": self.offer.origin,
            "routing_hub": self.routing_hub,
        });
        sign_receipt(&mut receipt, key, ReceiptVersion::V2).map_err(|e| {
            InvokeError::Internal(format!("cannot sign the rejection receipt: {e}"))
        })?;
        Ok(receipt)
    }
}

/// The trace id of a W3C `traceparent` (`00-<trace>-<span>-<flags>`).
pub(super) fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or(traceparent)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aimarket_plugins::Hook;
    use aimarket_protocol::signing::verify_receipt;

    #[test]
    fn rejection_receipts_are_v2_and_bind_the_refusal() {
        let key = KeyPair::from_seed(&[5u8; 32]);
        let offer = crate::invoke::resolve::test_offer("https://o.example", None);
        let refusal = Refusal {
            plugin: "price-guard".into(),
            hook: Hook::AfterInvoke,
            kind: RefusalKind::Blocked,
            category: "price_mismatch".into(),
            reason: "asks 0.5, advertised 0.01".into(),
        };
        let receipt = Rejection {
            nonce: "rcpt_x",
            offer: &offer,
            channel_id: Some("ch_1"),
            refunded: true,
            trace_id: "abc",
            latency_ms: 3,
            routing_hub: "https://hub.example",
        }
        .sign(&refusal, &key)
        .unwrap();
        let check = verify_receipt(&receipt, &key.public_key()).unwrap();
        assert_eq!(check.version, ReceiptVersion::V2);
        assert!(check.unsigned_fields.is_empty());
        assert_eq!(receipt["type"], "rejection");
        let mut tampered = receipt.clone();
        tampered["refunded"] = json!(false);
        assert!(verify_receipt(&tampered, &key.public_key()).is_err());
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}

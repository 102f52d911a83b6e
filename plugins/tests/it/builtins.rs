//! The built-ins, loaded from configuration the way the hub loads them.

use std::sync::{Arc, Mutex};

use aimarket_plugins::{
    AttemptFailure, ChallengeShape, Hook, InvokeOutcomeView, PluginServices, PriceMismatch,
    RefusalKind, Registry, RegistryBuilder, RegistryConfig, ReputationSink, RetryPolicy,
    UpstreamPayment,
};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::{candidate, capability, ctx, invoke, keys, origins, provider, query};

fn load(config: Value) -> Registry {
    RegistryBuilder::new()
        .build(&RegistryConfig::from_json(&config).unwrap())
        .unwrap()
}

#[tokio::test]
async fn default_chain_is_quality_and_ranks_by_relevance_and_quality() {
    let reg = RegistryBuilder::new()
        .build(&RegistryConfig::default_chain())
        .unwrap();
    assert_eq!(reg.names(), vec!["quality"]);
    let mut weak = candidate("weak", "https://a.test", "x@v1", 1.0);
    weak.trust_score = 1.0;
    let mut list = vec![weak, candidate("strong", "https://a.test", "y@v1", 8.0)];
    reg.rank(&mut ctx(), &query("x"), &mut list).await.unwrap();
    assert_eq!(keys(&list), vec!["strong", "weak"]);
    assert!(list[0].score > list[1].score);
    assert!(reg.describe()[0]["settings"]["weights"]["relevance"].is_number());
}

#[tokio::test]
async fn allow_deny_applies_to_rank_route_and_before_invoke() {
    let reg = load(json!([{
        "name": "allow-deny",
        "settings": {
            "deny_hubs": ["https://spam.test"],
            "allow_capabilities": ["translate.*"],
            "deny_products": ["prod-banned"],
        }
    }]));
    let mut c = ctx();

    // rank: drop candidates from a denied hub, of a non-allowed capability or denied product.
    let mut via_spam = candidate("relayed", "https://ok.test", "translate.de@v1", 1.0);
    via_spam.via = Some("https://spam.test".into());
    let mut banned = candidate("banned", "https://ok.test", "translate.fr@v1", 1.0);
    banned.product_id = "prod-banned".into();
    let mut list = vec![
        candidate("good", "https://ok.test", "translate.multi@v2", 1.0),
        candidate("spam", "https://SPAM.test/", "translate.multi@v2", 1.0),
        candidate("other-cap", "https://ok.test", "summarize@v1", 1.0),
        via_spam,
        banned,
    ];
    reg.rank(&mut c, &query("translate"), &mut list)
        .await
        .unwrap();
    assert_eq!(keys(&list), vec!["good"]);

    // route: drop providers from a denied hub.
    let mut providers = vec![
        provider("https://spam.test", 0.1, 0.1),
        provider("https://ok.test", 0.1, 0.1),
    ];
    reg.route(&mut c, &capability("translate.multi@v2"), &mut providers)
        .await
        .unwrap();
    assert_eq!(origins(&providers), vec!["https://ok.test"]);

    // before_invoke: block denied hubs and capabilities, allow the rest.
    let ok = invoke(
        "translate.multi@v2",
        provider("https://ok.test", 0.1, 0.1),
        json!({}),
    );
    reg.before_invoke(&mut c, &ok).await.unwrap();
    for req in [
        invoke(
            "translate.multi@v2",
            provider("https://spam.test", 0.1, 0.1),
            json!({}),
        ),
        invoke(
            "summarize@v1",
            provider("https://ok.test", 0.1, 0.1),
            json!({}),
        ),
    ] {
        let refusal = reg.before_invoke(&mut c, &req).await.unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::Blocked);
        assert_eq!(refusal.category, "policy_denied");
    }
    assert_eq!(reg.metrics()[0].hook(Hook::BeforeInvoke).unwrap().blocks, 2);
}

#[derive(Default)]
struct Recorded(Mutex<Vec<PriceMismatch>>);

impl ReputationSink for Recorded {
    fn price_mismatch(&self, event: &PriceMismatch) {
        self.0.lock().unwrap().push(event.clone());
    }
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

fn v1_header(amount: &str) -> InvokeOutcomeView {
    InvokeOutcomeView::new(
        402,
        json!({"success": false, "error": "payment_required"}),
        5,
    )
    .with_payment_headers(
        Some(json!({"amount": amount, "token": "USDT", "chain": "base"}).to_string()),
        None,
    )
}

fn x402_v1_body(base_units: &str) -> InvokeOutcomeView {
    InvokeOutcomeView::new(
        402,
        json!({"success": false, "error": "payment_required", "x402Version": 1,
               "accepts": [{"scheme": "exact", "network": "base", "maxAmountRequired": base_units}]}),
        5,
    )
}

fn x402_v2_header(base_units: &str) -> InvokeOutcomeView {
    let challenge = json!({"x402Version": 2, "accepts": [{"scheme": "exact",
        "network": "eip155:8453", "amount": base_units}]});
    InvokeOutcomeView::new(402, json!({"success": false}), 5)
        .with_payment_headers(None, Some(b64(&challenge)))
}

#[tokio::test]
async fn price_guard_catches_an_overpriced_402_in_each_shape() {
    let sink = Arc::new(Recorded::default());
    let services = PluginServices {
        reputation: sink.clone(),
        http: None,
    };
    let reg = RegistryBuilder::new()
        .with_services(services)
        .build(&RegistryConfig::from_json(&json!([{"name": "price-guard"}])).unwrap())
        .unwrap();
    // Advertised: list $0.20, routed $0.202 (1 % fee) → limit ≈ $0.2121.
    let req = invoke("cap@v1", provider("https://p.test", 0.20, 0.202), json!({}));
    let mut c = ctx();

    let cases = [
        (
            v1_header("0.50"),
            v1_header("0.20"),
            ChallengeShape::V1Header,
        ),
        (
            x402_v1_body("500000"),
            x402_v1_body("202000"),
            ChallengeShape::X402V1Body,
        ),
        (
            x402_v2_header("500000"),
            x402_v2_header("210000"),
            ChallengeShape::X402V2Header,
        ),
    ];
    for (over, matching, shape) in cases {
        let refusal = reg.after_invoke(&mut c, &req, &over).await.unwrap_err();
        assert_eq!(refusal.category, "price_mismatch", "{shape:?}");
        assert_eq!(refusal.kind, RefusalKind::Blocked);
        reg.after_invoke(&mut c, &req, &matching)
            .await
            .unwrap_or_else(|r| panic!("{shape:?}: matching price blocked: {r}"));
        let events = sink.0.lock().unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.shape, shape);
        assert!((last.requested_usd - 0.5).abs() < 1e-9);
        assert!((last.advertised_usd - 0.202).abs() < 1e-9);
        assert_eq!(&*last.peer_url, "https://p.test");
    }
    assert_eq!(sink.0.lock().unwrap().len(), 3);
    // A 200 is never the guard's business.
    let ok = InvokeOutcomeView::new(
        200,
        json!({"accepts": [{"maxAmountRequired": "9999999"}]}),
        1,
    );
    reg.after_invoke(&mut c, &req, &ok).await.unwrap();
}

#[tokio::test]
async fn failover_orders_providers_and_declares_the_retry_rule() {
    let reg = load(json!([{"name": "failover", "settings": {"min_trust": 0.2}}]));
    let mut slow = provider("https://slow.test", 0.1, 0.1);
    slow.trust_score = 0.9;
    slow.p50_latency_ms = 800;
    let mut fast = provider("https://fast.test", 0.1, 0.1);
    fast.trust_score = 0.92;
    fast.p50_latency_ms = 40;
    let mut shady = provider("https://shady.test", 0.01, 0.01);
    shady.trust_score = 0.05;
    let mut providers = vec![slow, shady, fast];
    reg.route(&mut ctx(), &capability("cap@v1"), &mut providers)
        .await
        .unwrap();
    assert_eq!(
        origins(&providers),
        vec!["https://fast.test", "https://slow.test"]
    );

    let policy = reg.retry_policy();
    assert_eq!(policy, RetryPolicy::once());
    assert!(policy.should_retry(0, AttemptFailure::Status(503), UpstreamPayment::None, true));
    assert!(!policy.should_retry(
        0,
        AttemptFailure::Status(503),
        UpstreamPayment::BuyerCredential,
        true
    ));
    assert!(!policy.should_retry(1, AttemptFailure::Timeout, UpstreamPayment::None, true));
}

#[test]
fn unknown_plugins_and_bad_settings_name_plugin_and_field() {
    let builder = RegistryBuilder::new();
    let unknown = builder
        .build(&RegistryConfig::from_json(&json!([{"name": "qualty"}])).unwrap())
        .unwrap_err();
    let text = unknown.to_string();
    assert!(
        text.contains("`qualty`") && text.contains("quality"),
        "{text}"
    );

    let cases = [
        (
            json!([{"name": "price-guard", "settings": {"tolerance": "lots"}}]),
            "price-guard",
            "tolerance",
        ),
        (
            json!([{"name": "quality", "settings": {"weights": {"trust": -2}}}]),
            "quality",
            "weights.trust",
        ),
        (
            json!([{"name": "allow-deny", "settings": {"deny_hubs": "https://x"}}]),
            "allow-deny",
            "deny_hubs",
        ),
        (
            json!([{"name": "webhook", "settings": {"hooks": ["rank"]}}]),
            "webhook",
            "url",
        ),
        (
            json!([{"name": "failover", "settings": {"min_trust": 3}}]),
            "failover",
            "min_trust",
        ),
    ];
    for (config, plugin, field) in cases {
        let err = builder
            .build(&RegistryConfig::from_json(&config).unwrap())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("plugin `{plugin}`"))
                && text.contains(&format!("field `{field}`")),
            "{text}"
        );
    }
}

//! Invoke plugin hooks inside the hub (issue 7): a route plugin picks the provider that is
//! called, a `before_invoke` block charges nothing, an `after_invoke` block refunds and
//! answers with a verifiable v2 rejection receipt, price-guard catches a 402 above the
//! advertised price and reports it against the peer's reputation, failover retries a free
//! call once and never a channel-funded one, and a slow plugin is skipped within its budget.

use std::sync::Arc;
use std::time::Duration;

use aimarket_e2e::provider::{Behaviour, FakeProvider, FakeTool, seed_provider};
use aimarket_e2e::{TestHub, TestHubBuilder, assert_protocol_error, wait_until};
use aimarket_hub::payments::OpenChannel;
use aimarket_hub::settings::PluginChain;
use aimarket_plugins::{
    CapabilityRef, Decision, DynPlugin, Hook, HookResult, Hooks, InvokeOutcomeView, InvokeView,
    Plugin, PluginConfig, PluginContext, PluginError, PluginFactory, PluginServices,
    PluginSettings, Provider, async_trait,
};
use aimarket_protocol::signing::{ReceiptVersion, verify_receipt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PATH: &str = "/ai-market/v2/invoke";

/// Test plugins, one behaviour each, chosen by the factory name.
#[derive(Debug, Clone)]
enum Test {
    /// `route`: puts the provider whose origin is `pin` first.
    Pin(String),
    /// `route`: removes every provider.
    DropAll,
    /// `before_invoke`: blocks every call.
    Deny,
    /// `after_invoke`: blocks every successful answer.
    Censor,
    /// `before_invoke`: sleeps far beyond its budget, then allows.
    Slow,
    /// `receipt_extension`: stamps the receipt.
    Stamp,
}

struct TestPlugin {
    name: &'static str,
    kind: Test,
}

#[async_trait]
impl Plugin for TestPlugin {
    fn name(&self) -> &str {
        self.name
    }

    fn hooks(&self) -> Hooks {
        Hooks::of(&[match self.kind {
            Test::Pin(_) | Test::DropAll => Hook::Route,
            Test::Deny | Test::Slow => Hook::BeforeInvoke,
            Test::Censor => Hook::AfterInvoke,
            Test::Stamp => Hook::ReceiptExtension,
        }])
    }

    async fn route(
        &self,
        _ctx: &mut PluginContext,
        _cap: &CapabilityRef,
        providers: &mut Vec<Provider>,
    ) -> HookResult {
        match &self.kind {
            Test::Pin(origin) => providers.sort_by_key(|p| &*p.origin != origin.as_str()),
            _ => providers.clear(),
        }
        Ok(())
    }

    async fn before_invoke(
        &self,
        _ctx: &mut PluginContext,
        _req: &InvokeView,
    ) -> HookResult<Decision> {
        if let Test::Slow = self.kind {
            tokio::time::sleep(Duration::from_secs(5)).await;
            return Ok(Decision::Allow);
        }
        Ok(Decision::block("policy_denied", "calls are closed today"))
    }

    async fn after_invoke(
        &self,
        _ctx: &mut PluginContext,
        _req: &InvokeView,
        resp: &InvokeOutcomeView,
    ) -> HookResult<Decision> {
        if resp.is_success() {
            return Ok(Decision::block(
                "unsafe_output",
                "the answer mentions a secret",
            ));
        }
        Ok(Decision::Allow)
    }

    fn receipt_extension(
        &self,
        _ctx: &PluginContext,
        req: &InvokeView,
        resp: &InvokeOutcomeView,
    ) -> Option<Value> {
        Some(json!({"status": resp.status, "attempt": req.attempt}))
    }
}

fn factory(name: &'static str, kind: Test) -> PluginFactory {
    Arc::new(
        move |_s: &PluginSettings, _svc: &PluginServices| -> Result<DynPlugin, PluginError> {
            Ok(Arc::new(TestPlugin {
                name,
                kind: kind.clone(),
            }))
        },
    )
}

/// A hub with demo payments and `chain` configured, `name` registered for the test plugin.
fn hub_with(name: &'static str, kind: Test, chain: Vec<PluginConfig>) -> TestHubBuilder {
    TestHub::builder()
        .plugin_factory(name, factory(name, kind))
        .settings(move |s| {
            s.demo_payments = true;
            s.plugins = PluginChain(chain);
        })
}

fn call_body(tool: &FakeTool) -> Value {
    json!({"product_id": tool.product_id, "capability_id": tool.capability_id,
           "input": {"text": "hi"}})
}

async fn open_channel(hub: &TestHub, deposit_usd: f64, tag: &str) -> (String, String) {
    let channel = hub
        .state
        .ledger
        .open_channel(OpenChannel {
            deposit_usd,
            tx_hash: Some(format!("demo-plugins-{tag}-{}", std::process::id())),
            ..OpenChannel::default()
        })
        .await
        .unwrap();
    let secret = channel.secret.as_ref().unwrap().expose().to_owned();
    (channel.id, secret)
}

async fn paid_call(
    hub: &TestHub,
    tool: &FakeTool,
    channel: &(String, String),
) -> (StatusCode, Value) {
    let response = hub
        .request(Method::POST, PATH)
        .header("X-Payment-Channel", &channel.0)
        .header("X-Payment-Channel-Secret", &channel.1)
        .json(&call_body(tool))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn balances(hub: &TestHub, id: &str) -> (i64, i64, i64) {
    let c = hub.state.ledger.get_channel(id).await.unwrap();
    (c.balance_micros(), c.used_micros, c.held_micros)
}

/// Two providers offering the same free capability.
async fn two_providers(a: Behaviour, b: Behaviour) -> (FakeProvider, FakeProvider, FakeTool) {
    let tool = FakeTool::echo("same@v1");
    let pa = FakeProvider::builder()
        .tool(tool.clone().behaving(a))
        .start()
        .await;
    let pb = FakeProvider::builder()
        .key_seed(77)
        .tool(tool.clone().behaving(b))
        .start()
        .await;
    (pa, pb, tool)
}

#[tokio::test]
async fn the_route_plugins_choice_is_the_provider_called() {
    let (pa, pb, tool) = two_providers(Behaviour::Echo, Behaviour::Echo).await;
    // Without plugins, equal offers are ordered by origin: pin the other one.
    let (first, second) = if pa.url < pb.url {
        (&pa, &pb)
    } else {
        (&pb, &pa)
    };
    let pin = Test::Pin(second.url.clone());
    let hub = hub_with("pin", pin, vec![PluginConfig::named("pin")])
        .start()
        .await;
    seed_provider(&hub, &pa).await;
    seed_provider(&hub, &pb).await;

    let (status, body) = hub.post(PATH, &call_body(&tool)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["source_hub"], second.url.as_str());
    assert_eq!(second.invoke_count(), 1);
    assert_eq!(first.invoke_count(), 0);

    // A route plugin that removes every provider: 403 no_provider naming it.
    let hub = hub_with(
        "drop-all",
        Test::DropAll,
        vec![PluginConfig::named("drop-all")],
    )
    .start()
    .await;
    seed_provider(&hub, &pa).await;
    let calls = pa.invoke_count();
    let (status, body) = hub.post(PATH, &call_body(&tool)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_protocol_error(&body, "no_provider");
    assert_eq!(body["plugin"], "drop-all");
    assert_eq!(pa.invoke_count(), calls);
}

fn paid_tool(cid: &str) -> FakeTool {
    FakeTool::echo(cid)
        .priced(0.01)
        .behaving(Behaviour::Priced {
            price_usd: 0.01,
            api_key: Some("k".into()),
        })
}

#[tokio::test]
async fn a_before_invoke_block_charges_nothing_and_forwards_nothing() {
    let tool = paid_tool("paid@v1");
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let hub = hub_with("deny", Test::Deny, vec![PluginConfig::named("deny")])
        .start()
        .await;
    seed_provider(&hub, &provider).await;
    let channel = open_channel(&hub, 1.0, "deny").await;
    let before = balances(&hub, &channel.0).await;

    let (status, body) = paid_call(&hub, &tool, &channel).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_protocol_error(&body, "blocked");
    assert_eq!(body["category"], "policy_denied");
    assert_eq!(body["reason"], "calls are closed today");
    assert_eq!(body["plugin"], "deny");
    assert_eq!(balances(&hub, &channel.0).await, before);
    assert_eq!(provider.invoke_count(), 0);
}

#[tokio::test]
async fn an_after_invoke_block_refunds_with_a_verifiable_rejection_receipt() {
    let tool = paid_tool("paid@v1");
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let credentials = format!("{}=apikey:k", provider.url);
    let hub = hub_with("censor", Test::Censor, vec![PluginConfig::named("censor")])
        .settings(|s| s.invoke.peer_credentials = credentials.parse().unwrap())
        .start()
        .await;
    seed_provider(&hub, &provider).await;
    let channel = open_channel(&hub, 1.0, "censor").await;
    let before = balances(&hub, &channel.0).await;

    let (status, body) = paid_call(&hub, &tool, &channel).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_protocol_error(&body, "blocked");
    assert_eq!(body["category"], "unsafe_output");
    assert_eq!(body["plugin"], "censor");
    assert_eq!(body["refunded"], true);
    assert_eq!(provider.invoke_count(), 1, "the provider was called");
    assert_eq!(
        balances(&hub, &channel.0).await,
        before,
        "the hold was released"
    );

    let receipt = &body["receipt"];
    let key = hub.state.signing_key.public_key();
    let check = verify_receipt(receipt, &key).unwrap();
    assert_eq!(check.version, ReceiptVersion::V2);
    assert!(check.unsigned_fields.is_empty());
    assert_eq!(receipt["type"], "rejection");
    assert_eq!(receipt["category"], "unsafe_output");
    assert_eq!(receipt["plugin"], "censor");
    assert_eq!(receipt["refunded"], true);
    assert_eq!(receipt["channel_id"], channel.0.as_str());
    assert_eq!(receipt["success"], false);
    assert_eq!(receipt["price_usd"], 0.0);
    assert!(receipt["trace_id"].as_str().is_some_and(|t| t.len() == 32));

    // Stored under its nonce, and the hub's verify endpoint accepts it.
    let nonce = receipt["nonce"].as_str().unwrap();
    let (status, stored) = hub.get(&format!("/ai-market/receipt/{nonce}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&stored, receipt);
    let (status, verdict) = hub
        .post(
            "/ai-market/v2/receipts/verify",
            &json!({"receipt": receipt}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["signature_version"], 2, "{verdict}");
}

#[tokio::test]
async fn price_guard_refuses_a_402_above_the_advertised_price_and_reports_the_peer() {
    // The fake provider's 402 always asks 0.40 USD; one tool advertises 0.01, one 0.40.
    let cheap = FakeTool::echo("cheap@v1")
        .priced(0.01)
        .behaving(Behaviour::Priced {
            price_usd: 0.01,
            api_key: None,
        });
    let honest = FakeTool::echo("honest@v1")
        .priced(0.40)
        .behaving(Behaviour::Priced {
            price_usd: 0.40,
            api_key: None,
        });
    let provider = FakeProvider::builder()
        .tool(cheap.clone())
        .tool(honest.clone())
        .start()
        .await;
    let hub = TestHub::builder()
        .settings(|s| {
            s.plugins = PluginChain(vec![
                PluginConfig::named("price-guard").with_settings(json!({"tolerance": 0.1})),
            ]);
        })
        .start()
        .await;
    seed_provider(&hub, &provider).await;

    // An honest 402 is relayed as is.
    let (status, body) = hub.post(PATH, &call_body(&honest)).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");

    // One asking 40 times the advertised price is not: 403 with a rejection receipt.
    let (status, body) = hub.post(PATH, &call_body(&cheap)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_protocol_error(&body, "blocked");
    assert_eq!(body["category"], "price_mismatch");
    assert_eq!(body["plugin"], "price-guard");
    assert_eq!(body["refunded"], false, "nothing was held");
    let receipt = &body["receipt"];
    verify_receipt(receipt, &hub.state.signing_key.public_key()).unwrap();
    assert_eq!(receipt["category"], "price_mismatch");
    assert!(body.get("accepts").is_none() && receipt.get("accepts").is_none());

    // The mismatch is a reputation event against the peer.
    let path = format!("/ai-market/v2/reputation/{}", provider.url);
    let recorded = wait_until(Duration::from_secs(10), || async {
        let (_, report) = hub.get(&path).await;
        report["recent_events"].as_array().is_some_and(|events| {
            events.iter().any(|e| {
                e["type"] == "price_mismatch"
                    && e["capability_id"] == "cheap@v1"
                    && e["consumer_hub"] == hub.base_url.as_str()
                    && e["price_usd"] == 0.4
            })
        }) && report["observations_30d"]["events"] == 1
    })
    .await;
    let (_, report) = hub.get(&path).await;
    assert!(recorded, "{report}");
}

#[tokio::test]
async fn failover_retries_a_free_call_once_and_never_a_channel_funded_one() {
    let broken = Behaviour::Status(500, json!({"error": "down"}));
    let tool = FakeTool::echo("same@v1");
    // Both also offer a paid capability; the one tried first is down.
    let paid_up = paid_tool("paid@v1");
    let pa = FakeProvider::builder()
        .tool(tool.clone().behaving(broken.clone()))
        .tool(FakeTool::echo("paid@v1").priced(0.01).behaving(broken))
        .start()
        .await;
    let pb = FakeProvider::builder()
        .key_seed(77)
        .tool(tool.clone())
        .tool(paid_up.clone())
        .start()
        .await;
    let failover = PluginConfig::named("failover").with_settings(json!({"prefer": [pa.url]}));
    let hub = TestHub::builder()
        .settings(|s| {
            s.demo_payments = true;
            s.plugins = PluginChain(vec![failover]);
        })
        .start()
        .await;
    seed_provider(&hub, &pa).await;
    seed_provider(&hub, &pb).await;

    let (status, body) = hub.post(PATH, &call_body(&tool)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["source_hub"], pb.url.as_str());
    assert_eq!((pa.invoke_count(), pb.invoke_count()), (1, 1));

    // Channel-funded: the 5xx may have charged the hub at the provider, so no retry.
    let channel = open_channel(&hub, 1.0, "failover").await;
    let before = balances(&hub, &channel.0).await;
    let (status, body) = paid_call(&hub, &paid_up, &channel).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_protocol_error(&body, "provider_error");
    // (The hub's attempt to open a demo channel at the provider is not an invoke.)
    let invokes = |p: &FakeProvider| p.seen().iter().filter(|s| s.path == "/invoke").count();
    assert_eq!((invokes(&pa), invokes(&pb)), (2, 1));
    assert_eq!(balances(&hub, &channel.0).await, before);
}

#[tokio::test]
async fn a_slow_before_invoke_plugin_is_skipped_within_its_budget() {
    let tool = FakeTool::echo("echo@v1");
    let provider = FakeProvider::builder().tool(tool.clone()).start().await;
    let slow =
        PluginConfig::named("slow").with_budget(Hook::BeforeInvoke, Duration::from_millis(50));
    let hub = hub_with("slow", Test::Slow, vec![slow, PluginConfig::named("stamp")])
        .plugin_factory("stamp", factory("stamp", Test::Stamp))
        .start()
        .await;
    seed_provider(&hub, &provider).await;

    let (status, body) = hub.post(PATH, &call_body(&tool)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(provider.invoke_count(), 1);
    let metrics = hub.state.plugins.metrics();
    let slow = metrics.iter().find(|m| m.plugin == "slow").unwrap();
    assert_eq!(slow.hook(Hook::BeforeInvoke).unwrap().timeouts, 1);
    // The receipt extension is in the hub's routing receipt, which still verifies.
    let routing = &body["routing_receipt"];
    assert_eq!(
        routing["plugin_extensions"],
        json!({"stamp": {"status": 200, "attempt": 0}})
    );
    verify_receipt(routing, &hub.state.signing_key.public_key()).unwrap();
}

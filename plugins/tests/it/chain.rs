//! The registry's chain semantics: order, budgets, fail-open/closed, metrics, lifecycle,
//! routes and descriptions.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aimarket_plugins::{
    DynPlugin, Hook, Method, PluginConfig, PluginRequest, RefusalKind, Registry, RouteError,
};
use serde_json::json;

use crate::support::{
    Behaviour, TestPlugin, candidate, capability, ctx, invoke, keys, ok_outcome, origins, provider,
    query,
};

fn registry(plugins: Vec<(PluginConfig, DynPlugin)>) -> Registry {
    Registry::from_plugins(plugins).unwrap()
}

fn entry(plugin: &Arc<TestPlugin>, name: &str) -> (PluginConfig, DynPlugin) {
    (PluginConfig::named(name), Arc::clone(plugin) as DynPlugin)
}

fn abc() -> Vec<aimarket_plugins::Candidate> {
    ["a", "b", "c"]
        .iter()
        .map(|k| candidate(k, "https://a.test", "cap@v1", 1.0))
        .collect()
}

#[tokio::test]
async fn a_custom_rank_plugin_changes_the_order() {
    let reverse = TestPlugin::new("reverse", Behaviour::Reverse);
    let reg = registry(vec![entry(&reverse, "reverse")]);
    let mut list = abc();
    reg.rank(&mut ctx(), &query("x"), &mut list).await.unwrap();
    assert_eq!(keys(&list), vec!["c", "b", "a"]);
}

#[tokio::test]
async fn a_custom_route_plugin_chooses_the_first_provider() {
    let reverse = TestPlugin::new("reverse", Behaviour::Reverse);
    let reg = registry(vec![entry(&reverse, "reverse")]);
    let mut providers = vec![
        provider("https://one.test", 0.1, 0.1),
        provider("https://two.test", 0.1, 0.1),
    ];
    reg.route(&mut ctx(), &capability("cap@v1"), &mut providers)
        .await
        .unwrap();
    assert_eq!(origins(&providers)[0], "https://two.test");
}

#[tokio::test]
async fn a_slow_plugin_is_skipped_within_its_budget_and_the_chain_continues() {
    let slow = TestPlugin::new("slow", Behaviour::Sleep(Duration::from_millis(500)));
    let reverse = TestPlugin::new("reverse", Behaviour::Reverse);
    let reg = registry(vec![
        (
            PluginConfig::named("slow").with_budget(Hook::Rank, Duration::from_millis(20)),
            slow.clone() as DynPlugin,
        ),
        entry(&reverse, "reverse"),
    ]);
    let mut list = abc();
    reg.rank(&mut ctx(), &query("x"), &mut list).await.unwrap();
    // The slow plugin would have cleared the list: its result was discarded, and the next
    // plugin still ran on the untouched list.
    assert_eq!(keys(&list), vec!["c", "b", "a"]);
    let m = reg.metrics();
    let slow_rank = m[0].hook(Hook::Rank).unwrap();
    assert_eq!((slow_rank.calls, slow_rank.timeouts), (1, 1));
    assert_eq!(m[1].hook(Hook::Rank).unwrap().calls, 1);
}

#[tokio::test]
async fn erroring_and_panicking_plugins_are_skipped_and_counted() {
    let failing = TestPlugin::new("failing", Behaviour::Fail);
    let panicking = TestPlugin::new("panicking", Behaviour::Panic);
    let reverse = TestPlugin::new("reverse", Behaviour::Reverse);
    let reg = registry(vec![
        entry(&failing, "failing"),
        entry(&panicking, "panicking"),
        entry(&reverse, "reverse"),
    ]);
    let mut c = ctx();
    let mut list = abc();
    reg.rank(&mut c, &query("x"), &mut list).await.unwrap();
    assert_eq!(keys(&list), vec!["c", "b", "a"]);
    let req = invoke("cap@v1", provider("https://p.test", 0.1, 0.1), json!({}));
    reg.before_invoke(&mut c, &req).await.unwrap();
    reg.after_invoke(&mut c, &req, &ok_outcome()).await.unwrap();

    let m = reg.metrics();
    for hook in [Hook::Rank, Hook::BeforeInvoke, Hook::AfterInvoke] {
        let f = m[0].hook(hook).unwrap();
        assert_eq!((f.calls, f.errors, f.panics), (1, 1, 0), "{hook:?}");
        let p = m[1].hook(hook).unwrap();
        assert_eq!((p.calls, p.errors, p.panics), (1, 0, 1), "{hook:?}");
    }
    assert_eq!(m[2].hook(Hook::Rank).unwrap().errors, 0);
    assert_eq!(reverse.calls.load(Ordering::SeqCst), 3);
    let text = aimarket_plugins::render_prometheus(&m);
    assert!(text.contains("aimarket_plugin_hook_errors_total{plugin=\"failing\",hook=\"rank\"} 1"));
}

#[tokio::test]
async fn a_fail_closed_plugin_refuses_when_it_fails() {
    let failing = TestPlugin::new("guard", Behaviour::Fail);
    let after = TestPlugin::new("after", Behaviour::Allow);
    let reg = registry(vec![
        (
            PluginConfig::named("guard").fail_closed(true),
            failing.clone() as DynPlugin,
        ),
        entry(&after, "after"),
    ]);
    let mut c = ctx();
    let req = invoke("cap@v1", provider("https://p.test", 0.1, 0.1), json!({}));
    let refusal = reg.before_invoke(&mut c, &req).await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::PluginFailed);
    assert_eq!(refusal.plugin, "guard");
    assert_eq!(refusal.hook, Hook::BeforeInvoke);
    assert_eq!(refusal.category, "plugin_unavailable");
    assert_eq!(
        after.calls.load(Ordering::SeqCst),
        0,
        "the chain stops at the refusal"
    );

    let mut list = abc();
    assert!(reg.rank(&mut c, &query("x"), &mut list).await.is_err());
    assert_eq!(keys(&list), vec!["a", "b", "c"]);
}

#[tokio::test]
async fn a_fail_closed_plugin_over_budget_refuses() {
    let slow = TestPlugin::new("slow", Behaviour::Sleep(Duration::from_millis(500)));
    let reg = registry(vec![(
        PluginConfig::named("slow")
            .fail_closed(true)
            .with_budget(Hook::AfterInvoke, Duration::from_millis(20)),
        slow as DynPlugin,
    )]);
    let req = invoke("cap@v1", provider("https://p.test", 0.1, 0.1), json!({}));
    let refusal = reg
        .after_invoke(&mut ctx(), &req, &ok_outcome())
        .await
        .unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::PluginFailed);
    assert!(refusal.reason.contains("budget"), "{}", refusal.reason);
    assert_eq!(
        reg.metrics()[0].hook(Hook::AfterInvoke).unwrap().timeouts,
        1
    );
}

#[tokio::test]
async fn the_first_block_wins_and_is_counted() {
    let allow = TestPlugin::new("allow", Behaviour::Allow);
    let block = TestPlugin::new("block", Behaviour::Block("unsafe_input"));
    let never = TestPlugin::new("never", Behaviour::Block("other"));
    let reg = registry(vec![
        entry(&allow, "allow"),
        entry(&block, "block"),
        entry(&never, "never"),
    ]);
    let req = invoke("cap@v1", provider("https://p.test", 0.1, 0.1), json!({}));
    let refusal = reg.before_invoke(&mut ctx(), &req).await.unwrap_err();
    assert_eq!(
        (
            refusal.kind,
            refusal.plugin.as_str(),
            refusal.category.as_str()
        ),
        (RefusalKind::Blocked, "block", "unsafe_input")
    );
    assert_eq!(never.calls.load(Ordering::SeqCst), 0);
    let m = reg.metrics();
    assert_eq!(m[1].hook(Hook::BeforeInvoke).unwrap().blocks, 1);
    assert_eq!(m[0].hook(Hook::BeforeInvoke).unwrap().blocks, 0);
}

#[tokio::test]
async fn startup_and_shutdown_run_exactly_once() {
    let good = TestPlugin::new("good", Behaviour::Reverse);
    let broken = TestPlugin::new("broken", Behaviour::Fail);
    let reg = registry(vec![entry(&good, "good"), entry(&broken, "broken")]);
    reg.startup().await.unwrap();
    reg.startup().await.unwrap();
    assert_eq!(good.startups.load(Ordering::SeqCst), 1);
    assert_eq!(broken.startups.load(Ordering::SeqCst), 1);
    // The fail-open plugin whose startup failed is disabled: not called, shown disabled.
    let mut list = abc();
    reg.rank(&mut ctx(), &query("x"), &mut list).await.unwrap();
    assert_eq!(broken.calls.load(Ordering::SeqCst), 0);
    assert_eq!(reg.describe()[1]["enabled"], json!(false));
    reg.shutdown().await;
    reg.shutdown().await;
    assert_eq!(good.shutdowns.load(Ordering::SeqCst), 1);
    assert_eq!(broken.shutdowns.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_fail_closed_startup_failure_aborts_startup() {
    let broken = TestPlugin::new("broken", Behaviour::Fail);
    let reg = registry(vec![(
        PluginConfig::named("broken").fail_closed(true),
        broken as DynPlugin,
    )]);
    let err = reg.startup().await.unwrap_err();
    assert!(err.to_string().contains("broken"), "{err}");
}

#[tokio::test]
async fn config_errors_name_the_plugin() {
    let a = TestPlugin::new("a", Behaviour::Allow);
    let dup = Registry::from_plugins(vec![entry(&a, "a"), entry(&a, "a")]).unwrap_err();
    assert!(dup.to_string().contains("`a`"), "{dup}");
    let renamed = Registry::from_plugins(vec![entry(&a, "b")]).unwrap_err();
    assert!(renamed.to_string().contains("`b`"), "{renamed}");
}

#[tokio::test]
async fn secrets_are_redacted_in_describe() {
    let a = TestPlugin::new("a", Behaviour::Allow);
    let reg = registry(vec![(
        PluginConfig::named("a").with_settings(json!({
            "api_key": "k-123",
            "nested": {"Password": "pw", "client_secret": "s", "weight": 2},
            "webhook_url": "https://user:pw@hook.test/x?token=abc&mode=1",
            "Authorization": "Bearer t",
            "plain": "visible",
        })),
        a as DynPlugin,
    )]);
    let d = reg.describe();
    assert_eq!(d[0]["name"], "a");
    assert_eq!(
        d[0]["settings"],
        json!({
            "api_key": "***",
            "nested": {"Password": "***", "client_secret": "***", "weight": 2},
            "webhook_url": "https://***@hook.test/x?token=***&mode=1",
            "Authorization": "***",
            "plain": "visible",
        })
    );
    assert_eq!(d[0]["timeout_ms"]["rank"], 20);
    assert_eq!(d[0]["hooks"].as_array().unwrap().len(), 8);
    let text = d.to_string();
    for secret in ["k-123", "\"pw\"", "Bearer t", "abc"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[tokio::test]
async fn unknown_routes_are_typed_errors() {
    let reg = Registry::empty();
    let req = PluginRequest {
        method: Method::Get,
        path: "/stats".into(),
        query: String::new(),
        headers: vec![],
        body: bytes::Bytes::new(),
    };
    assert!(matches!(
        reg.dispatch("nobody", req).await,
        Err(RouteError::NotFound(_))
    ));
    assert!(reg.well_known_extensions().is_none());
    assert_eq!(reg.retry_policy(), aimarket_plugins::RetryPolicy::none());
    assert!(!reg.has_hook(Hook::Rank));
}

//! The plugin registry inside the hub: a test-only plugin registered through
//! `Application::build_with` and named in the `plugins` settings reorders search results,
//! publishes a well-known extension and serves a route; `GET /ai-market/v2/plugins` lists
//! the chain and `/metrics` counts its calls.

use std::sync::Arc;

use aimarket_e2e::{TestHub, assert_protocol_error};
use aimarket_plugins::{
    Candidate, DynPlugin, Hook, HookResult, Hooks, Method, Plugin, PluginConfig, PluginContext,
    PluginError, PluginFactory, PluginResponse, PluginRoute, PluginServices, PluginSettings,
    RegistryConfig, SearchQueryView, async_trait,
};
use aimarket_protocol::signing::{PublicKey, verify_document};
use reqwest::StatusCode;
use serde_json::{Value, json};

use aimarket_hub::catalog::RANK_BLOCK;

use crate::search::{Providers, crawled_hub, ids, metric, search};

/// Reverses whatever order the plugins before it produced.
struct Reverse;

#[async_trait]
impl Plugin for Reverse {
    fn name(&self) -> &str {
        "reverse"
    }

    fn hooks(&self) -> Hooks {
        Hooks::of(&[Hook::Rank, Hook::WellKnownExtension, Hook::Routes])
    }

    async fn rank(
        &self,
        _ctx: &mut PluginContext,
        _query: &SearchQueryView,
        candidates: &mut Vec<Candidate>,
    ) -> HookResult {
        candidates.reverse();
        Ok(())
    }

    fn well_known_extension(&self) -> Option<Value> {
        Some(json!({"order": "reversed"}))
    }

    fn routes(&self) -> Vec<PluginRoute> {
        vec![PluginRoute::new(Method::Get, "/hello", |req| async move {
            PluginResponse::json(200, &json!({"hello": "world", "query": req.query}))
        })]
    }
}

fn reverse_factory() -> PluginFactory {
    Arc::new(
        |_settings: &PluginSettings,
         _services: &PluginServices|
         -> Result<DynPlugin, PluginError> { Ok(Arc::new(Reverse)) },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_rank_plugin_changes_the_order() {
    let p = Providers::start().await;
    let plain = crawled_hub(TestHub::builder(), p.seeds(), 133).await;
    let chain = RegistryConfig {
        plugins: vec![
            PluginConfig::named("quality"),
            PluginConfig::named("reverse"),
        ],
    };
    let reversed = crawled_hub(
        TestHub::builder()
            .plugin_factory("reverse", reverse_factory())
            .settings(|s| s.plugins = aimarket_hub::settings::PluginChain(chain.plugins)),
        p.seeds(),
        133,
    )
    .await;

    // The chain reranks each block of RANK_BLOCK index results on its own: the reversed
    // hub's pages are the plain hub's blocks, back to front.
    let size = RANK_BLOCK;
    for offset in [0, size] {
        let q = format!("intent=bulk&limit={size}&offset={offset}");
        let block = ids(&search(&plain, &q).await);
        assert_eq!(block.len(), size);
        let page = ids(&search(&reversed, &q).await);
        let expected: Vec<String> = block.iter().rev().cloned().collect();
        assert_eq!(page, expected, "{q}");
        assert_ne!(page, block);
    }
    // A page inside a block is a slice of the reranked block.
    let block = ids(&search(&reversed, &format!("intent=bulk&limit={size}")).await);
    let inner = ids(&search(&reversed, "intent=bulk&limit=5&offset=3").await);
    assert_eq!(inner, block[3..8].to_vec());

    // The plugin list.
    let (status, listed) = reversed.get("/ai-market/v2/plugins").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["count"], 2);
    assert_eq!(listed["protocol_version"], "v2");
    let names: Vec<&str> = listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["quality", "reverse"]);
    let reverse = &listed["plugins"][1];
    assert_eq!(reverse["position"], 1);
    assert_eq!(reverse["enabled"], true);
    assert_eq!(
        reverse["hooks"],
        json!(["rank", "well_known_extension", "routes"])
    );
    assert_eq!(
        reverse["routes"][0]["path"],
        "/ai-market/v2/p/reverse/hello"
    );
    assert!(
        listed["plugins"][0]["settings"]["weights"].is_object(),
        "{listed}"
    );
    let (_, default_list) = plain.get("/ai-market/v2/plugins").await;
    assert_eq!(default_list["count"], 1);
    // Every built-in an operator could configure is listed, loaded or not, with its hooks
    // and settings schema.
    let available = default_list["available"].as_array().expect("available");
    let names: Vec<&str> = available
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for builtin in [
        "quality",
        "price-guard",
        "allow-deny",
        "failover",
        "webhook",
    ] {
        assert!(names.contains(&builtin), "{builtin}: {default_list}");
    }
    let webhook = available.iter().find(|p| p["name"] == "webhook").unwrap();
    assert_eq!(
        webhook["hooks"],
        json!(["rank", "before_invoke"]),
        "{webhook}"
    );
    assert_eq!(
        webhook["settings_schema"]["required"],
        json!(["url", "hooks"]),
        "{webhook}"
    );
    assert!(webhook["settings_schema"]["properties"]["timeout_ms"].is_object());

    // Its route, and the protocol body for what it does not serve.
    let (status, hello) = reversed.get("/ai-market/v2/p/reverse/hello?x=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hello, json!({"hello": "world", "query": "x=1"}));
    let (status, body) = reversed.get("/ai-market/v2/p/reverse/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_protocol_error(&body, "not_found");
    let (status, body) = reversed
        .post("/ai-market/v2/p/reverse/hello", &json!({}))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_protocol_error(&body, "method_not_allowed");
    let (status, _) = reversed.get("/ai-market/v2/p/unknown/x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Its well-known extension, inside the signed document.
    let (_, well_known) = reversed.get("/.well-known/ai-market.json").await;
    assert_eq!(
        well_known["plugin_extensions"],
        json!({"reverse": {"order": "reversed"}})
    );
    let key = PublicKey::from_b64(well_known["signer_public_key"].as_str().unwrap()).unwrap();
    verify_document(&well_known, &key).unwrap();
    let (_, plain_known) = plain.get("/.well-known/ai-market.json").await;
    assert!(
        plain_known.get("plugin_extensions").is_none(),
        "{plain_known}"
    );

    // Its calls are counted in the Prometheus metrics.
    let text = reversed
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("reverse"), "{text}");
    assert!(metric(&reversed, "aimarket_search_requests_total").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_plugin_stops_startup_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = aimarket_hub::settings::Settings::for_test(dir.path());
    settings.plugins = aimarket_hub::settings::PluginChain(vec![PluginConfig::named("nonesuch")]);
    let err = aimarket_hub::startup::Application::build(settings)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nonesuch"), "{err}");
}

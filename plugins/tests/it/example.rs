//! The in-tree example crate, registered through `register_factory` and loaded from a
//! configuration table exactly as the hub would.

use aimarket_plugins::{Method, PluginError, PluginRequest, RegistryBuilder, RegistryConfig};
use serde_json::{Value, json};

use crate::support::{
    candidate, capability, ctx, invoke, keys, ok_outcome, origins, provider, query,
};

const CONFIG: &str = r#"
[[plugins]]
name = "quality"

[[plugins]]
name = "pin"
timeout_ms = { rank = 20 }
settings = { boost = { "prod-low" = 1.0 }, pins = { "translate.multi@v2" = "https://pinned.test" } }
"#;

fn builder() -> RegistryBuilder {
    let mut builder = RegistryBuilder::new();
    aimarket_plugin_example::register(&mut builder).unwrap();
    builder
}

#[tokio::test]
async fn the_example_plugin_loads_from_config_and_runs_every_hook() {
    let reg = builder()
        .build(&RegistryConfig::from_toml_str(CONFIG).unwrap())
        .unwrap();
    assert_eq!(reg.names(), vec!["quality", "pin"]);
    reg.startup().await.unwrap();

    // rank: quality puts "high" first, the boost lifts "low" above it.
    let mut list = vec![
        candidate("high", "https://a.test", "x@v1", 9.0),
        candidate("low", "https://a.test", "y@v1", 1.0),
    ];
    let mut c = ctx();
    reg.rank(&mut c, &query("x"), &mut list).await.unwrap();
    assert_eq!(keys(&list), vec!["low", "high"]);

    // route: the pinned origin goes first.
    let mut providers = vec![
        provider("https://other.test", 0.1, 0.1),
        provider("https://pinned.test", 0.1, 0.1),
    ];
    reg.route(&mut c, &capability("translate.multi@v2"), &mut providers)
        .await
        .unwrap();
    assert_eq!(origins(&providers)[0], "https://pinned.test");

    // invoke hooks share typed state through the context; the receipt extension reads it.
    let req = invoke(
        "translate.multi@v2",
        providers[0].clone(),
        json!({"text": "hi"}),
    );
    reg.before_invoke(&mut c, &req).await.unwrap();
    reg.after_invoke(&mut c, &req, &ok_outcome()).await.unwrap();
    assert_eq!(
        reg.receipt_extensions(&c, &req, &ok_outcome()),
        Some(json!({"pin": {"pinned": true}}))
    );
    assert_eq!(
        reg.well_known_extensions(),
        Some(json!({"pin": {"pins": 1}}))
    );

    // routes: mounted under /ai-market/v2/p/pin/ and dispatched through the registry.
    let mounted = reg.routes();
    assert_eq!(mounted.len(), 1);
    assert_eq!(mounted[0].path, "/ai-market/v2/p/pin/stats");
    let req = PluginRequest {
        method: Method::Get,
        path: "/stats".into(),
        query: String::new(),
        headers: vec![],
        body: bytes::Bytes::new(),
    };
    let resp = reg.dispatch("pin", req.clone()).await.unwrap();
    assert_eq!(resp.status, 200);
    let stats: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        stats,
        json!({"started": true, "invokes": 1, "pinned_invokes": 1})
    );
    let post = PluginRequest {
        method: Method::Post,
        ..req
    };
    assert!(matches!(
        reg.dispatch("pin", post).await,
        Err(aimarket_plugins::RouteError::MethodNotAllowed { .. })
    ));

    let described = reg.describe();
    assert_eq!(described[1]["name"], "pin");
    assert_eq!(described[1]["timeout_ms"]["rank"], 20);
    assert_eq!(described[1]["settings"]["boost"]["prod-low"], 1.0);
    assert_eq!(
        described[1]["routes"][0]["path"],
        "/ai-market/v2/p/pin/stats"
    );
    reg.shutdown().await;
}

#[test]
fn registration_and_settings_errors() {
    let mut builder = builder();
    assert!(matches!(
        aimarket_plugin_example::register(&mut builder),
        Err(PluginError::DuplicateFactory(_))
    ));
    let bad =
        RegistryConfig::from_json(&json!([{"name": "pin", "settings": {"pinz": {}}}])).unwrap();
    let err = builder.build(&bad).unwrap_err().to_string();
    assert!(
        err.contains("plugin `pin`") && err.contains("`pinz`"),
        "{err}"
    );
    // Without registration the name is unknown.
    let err = RegistryBuilder::new()
        .build(&RegistryConfig::from_json(&json!([{"name": "pin"}])).unwrap())
        .unwrap_err();
    assert!(matches!(err, PluginError::UnknownPlugin { .. }));
}

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use super::*;

const KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

/// Loads with a fake environment built from `pairs`.
fn load_with(
    toml: Option<&str>,
    pairs: &[(&str, &str)],
    flags: Overrides,
) -> Result<Settings, SettingsError> {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.toml");
    if let Some(text) = toml {
        std::fs::write(&path, text).unwrap();
    }
    Settings::load(
        toml.map(|_| path.as_path()),
        &|k| env.get(k).cloned(),
        flags,
    )
}

fn invalid_parts(err: SettingsError) -> (&'static str, String, String) {
    match err {
        SettingsError::Invalid {
            setting,
            origin,
            value,
            ..
        } => (setting, origin, value),
        other => panic!("expected Invalid, got {other}"),
    }
}

#[test]
fn defaults_match_the_documented_table() {
    let s = load_with(None, &[], Overrides::default()).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:9083");
    assert_eq!(s.data_dir, PathBuf::from("./data"));
    assert!(s.public_url.is_none() && s.seeds.is_empty() && s.redis_url.is_none());
    assert!(s.admin_token.is_none());
    assert_eq!(s.routing_fee_bps, 100);
    assert_eq!(s.crawl_interval_s, 3600);
    assert!(s.auto_crawl);
    assert!(!s.allow_private_peers && !s.open_admission && !s.demo_payments);
    assert_eq!(s.max_pending_peers, 1000);
    assert_eq!(
        s.signing_key_path(),
        PathBuf::from("./data/hub_signing_key")
    );
    assert_eq!(s.database().backend(), DatabaseBackend::Sqlite);
    assert_eq!(s.database().expose(), "sqlite://./data/hub.db?mode=rwc");
}

#[test]
fn precedence_is_defaults_then_file_then_env_then_flags() {
    let toml = r#"
        listen = "127.0.0.1:1111"
        data_dir = "/from/file"
        routing_fee_bps = 250
        crawl_interval_s = 120
        seeds = ["https://file.example"]
    "#;
    // File over defaults.
    let s = load_with(Some(toml), &[], Overrides::default()).unwrap();
    assert_eq!(s.listen.port(), 1111);
    assert_eq!(s.routing_fee_bps, 250);
    assert_eq!(s.crawl_interval_s, 120);
    assert_eq!(s.seeds[0].url.as_str(), "https://file.example/");
    assert!(s.auto_crawl, "untouched keys keep their defaults");

    // Env over file.
    let env = [
        ("AIMARKET_LISTEN", "127.0.0.1:2222"),
        ("AIMARKET_ROUTING_FEE_BPS", "300"),
        ("AIMARKET_SEEDS", "https://a.example, https://b.example"),
    ];
    let s = load_with(Some(toml), &env, Overrides::default()).unwrap();
    assert_eq!(s.listen.port(), 2222);
    assert_eq!(s.routing_fee_bps, 300);
    assert_eq!(
        s.crawl_interval_s, 120,
        "file value survives when env is silent"
    );
    assert_eq!(s.seeds.len(), 2);
    assert_eq!(s.data_dir, PathBuf::from("/from/file"));

    // Flags over env.
    let flags = Overrides {
        listen: Some("127.0.0.1:3333".parse().unwrap()),
        data_dir: Some("/from/flag".into()),
        seeds: vec![format!("https://c.example={KEY}").parse().unwrap()],
        ..Overrides::default()
    };
    let s = load_with(Some(toml), &env, flags).unwrap();
    assert_eq!(s.listen.port(), 3333);
    assert_eq!(s.data_dir, PathBuf::from("/from/flag"));
    assert_eq!(s.seeds.len(), 1);
    assert_eq!(s.seeds[0].pinned_key.as_deref(), Some(KEY));
    assert_eq!(
        s.signing_key_path(),
        PathBuf::from("/from/flag/hub_signing_key")
    );
}

#[test]
fn every_env_binding_is_read() {
    let env = [
        ("AIMARKET_HUB_NAME", "Env Hub"),
        ("AIMARKET_DATA_DIR", "/d"),
        ("AIMARKET_PUBLIC_URL", "https://hub.example.com/"),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("AIMARKET_ADMIN_TOKEN", "s3cret-token"),
        ("AIMARKET_CRAWL_INTERVAL_S", "60"),
        ("AIMARKET_AUTO_CRAWL", "false"),
        ("AIMARKET_ALLOW_PRIVATE_PEERS", "1"),
        ("AIMARKET_OPEN_ADMISSION", "yes"),
        ("AIMARKET_MAX_PENDING_PEERS", "5"),
        ("AIMARKET_DEMO_PAYMENTS", "on"),
        ("AIMARKET_SIGNING_KEY_PATH", "/keys/hub"),
    ];
    let s = load_with(None, &env, Overrides::default()).unwrap();
    assert_eq!(s.name, "Env Hub");
    assert_eq!(
        s.public_url.as_ref().unwrap().as_str(),
        "https://hub.example.com"
    );
    assert_eq!(s.database().backend(), DatabaseBackend::Postgres);
    assert_eq!(
        s.redis_url.as_ref().unwrap().expose(),
        "redis://127.0.0.1:6379"
    );
    assert_eq!(s.admin_token.as_ref().unwrap().expose(), "s3cret-token");
    assert_eq!(s.crawl_interval_s, 60);
    assert!(!s.auto_crawl && s.allow_private_peers && s.open_admission && s.demo_payments);
    assert_eq!(s.max_pending_peers, 5);
    assert_eq!(s.signing_key_path(), PathBuf::from("/keys/hub"));
    assert_eq!(
        env_names().count(),
        ENV_BINDINGS.len() + limits::ENV_BINDINGS.len() + telemetry::ENV_BINDINGS.len()
    );
}

#[test]
fn limit_settings_from_env_and_toml() {
    let env = [
        ("AIMARKET_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
        ("AIMARKET_API_KEYS", "key-a,key-b"),
        ("AIMARKET_SEARCH_RATE_PER_MIN", "7"),
        ("AIMARKET_MCP_RATE_PER_MIN", "0"),
        ("AIMARKET_PROVIDER_MAX_IN_FLIGHT", "3"),
        ("AIMARKET_PROVIDER_RATE_PER_MIN", "90"),
    ];
    let s = load_with(None, &env, Overrides::default()).unwrap();
    assert!(s.trusted_proxies.contains("10.9.9.9".parse().unwrap()));
    assert_eq!(s.limits.api_keys.0.len(), 2);
    assert_eq!(
        (
            s.limits.search_rate_per_min,
            s.limits.mcp_rate_per_min,
            s.limits.provider_max_in_flight,
            s.limits.provider_rate_per_min
        ),
        (7, 0, 3, 90)
    );
    let defaults = load_with(None, &[], Overrides::default()).unwrap();
    assert!(defaults.trusted_proxies.is_empty());
    assert_eq!(defaults.limits.search_rate_per_min, 1200);
    assert_eq!(defaults.limits.provider_max_in_flight, 256);

    let toml = r#"
        trusted_proxies = ["192.0.2.0/24"]
        [limits]
        api_keys = ["toml-key"]
        provider_rate_per_min = 5
    "#;
    let s = load_with(Some(toml), &[], Overrides::default()).unwrap();
    assert!(s.trusted_proxies.contains("192.0.2.9".parse().unwrap()));
    assert_eq!(s.limits.api_keys.0.len(), 1);
    assert_eq!(s.limits.provider_rate_per_min, 5);

    // A bad value names the variable, and a key is never echoed.
    let bad = load_with(
        None,
        &[("AIMARKET_TRUSTED_PROXIES", "proxy.example")],
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("AIMARKET_TRUSTED_PROXIES"), "{bad}");
    let bad = load_with(
        None,
        &[("AIMARKET_API_KEYS", "ok-key,has space")],
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains("AIMARKET_API_KEYS") && !bad.contains("ok-key"),
        "{bad}"
    );
}

#[test]
fn legacy_demo_switch_only_turns_demo_payments_on() {
    let on = load_with(
        None,
        &[("AIFACTORY_AI_MARKET_DEMO_PAYMENT", "1")],
        Overrides::default(),
    );
    assert!(on.unwrap().demo_payments);
    let both = [
        ("AIMARKET_DEMO_PAYMENTS", "false"),
        ("AIFACTORY_AI_MARKET_DEMO_PAYMENT", "1"),
    ];
    assert!(
        load_with(None, &both, Overrides::default())
            .unwrap()
            .demo_payments
    );
    let off = load_with(
        None,
        &[("AIFACTORY_AI_MARKET_DEMO_PAYMENT", "0")],
        Overrides::default(),
    );
    assert!(!off.unwrap().demo_payments);
}

#[test]
fn empty_env_value_counts_as_unset() {
    let s = load_with(
        None,
        &[("AIMARKET_LISTEN", ""), ("AIMARKET_SEEDS", "")],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(s.listen, DEFAULT_LISTEN);
}

#[test]
fn invalid_env_values_name_the_variable_and_the_value() {
    let cases = [
        ("AIMARKET_CRAWL_INTERVAL_S", "30", "crawl_interval_s"),
        ("AIMARKET_CRAWL_INTERVAL_S", "hourly", "crawl_interval_s"),
        ("AIMARKET_ROUTING_FEE_BPS", "10001", "routing_fee_bps"),
        ("AIMARKET_ROUTING_FEE_BPS", "-1", "routing_fee_bps"),
        ("AIMARKET_LISTEN", "localhost", "listen"),
        ("DATABASE_URL", "mysql://db/x", "database_url"),
        ("REDIS_URL", "http://127.0.0.1", "redis_url"),
        ("AIMARKET_AUTO_CRAWL", "maybe", "auto_crawl"),
        (
            "AIMARKET_SEEDS",
            "https://ok.example,ftp://bad.example",
            "seeds",
        ),
        ("AIMARKET_PUBLIC_URL", "hub.example.com", "public_url"),
        ("AIMARKET_MAX_PENDING_PEERS", "many", "max_pending_peers"),
    ];
    for (name, value, setting) in cases {
        let err = load_with(None, &[(name, value)], Overrides::default()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(name) && message.contains(value),
            "{name}: {message}"
        );
        let (got_setting, origin, _) = invalid_parts(err);
        assert_eq!((got_setting, origin.as_str()), (setting, name));
    }
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let err = load_with(
        None,
        &[("AIMARKET_ADMIN_TOKEN", "   ")],
        Overrides::default(),
    );
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("AIMARKET_ADMIN_TOKEN")
    );

    let bad_db = [("DATABASE_URL", "mongodb://u:hunter2@db/x")];
    let message = load_with(None, &bad_db, Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("DATABASE_URL") && !message.contains("hunter2"),
        "{message}"
    );

    let env = [
        ("AIMARKET_ADMIN_TOKEN", "very-secret-admin"),
        ("DATABASE_URL", "postgres://u:hunter2@db/x"),
    ];
    let s = load_with(None, &env, Overrides::default()).unwrap();
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("very-secret-admin") && !debug.contains("hunter2"),
        "{debug}"
    );
}

#[test]
fn config_file_rules() {
    let unknown = load_with(
        Some("listen = \"127.0.0.1:1\"\nlisten_port = 3"),
        &[],
        Overrides::default(),
    );
    let message = unknown.unwrap_err().to_string();
    assert!(message.contains("listen_port"), "{message}");

    let wrong_type = load_with(
        Some("crawl_interval_s = \"soon\""),
        &[],
        Overrides::default(),
    );
    let message = wrong_type.unwrap_err().to_string();
    assert!(message.contains("crawl_interval_s"), "{message}");

    let out_of_range = load_with(Some("crawl_interval_s = 59"), &[], Overrides::default());
    let (setting, _, value) = invalid_parts(out_of_range.unwrap_err());
    assert_eq!((setting, value.as_str()), ("crawl_interval_s", "59"));

    let fee = load_with(Some("routing_fee_bps = 20000"), &[], Overrides::default());
    assert_eq!(invalid_parts(fee.unwrap_err()).0, "routing_fee_bps");

    let seed = load_with(
        Some("seeds = [\"https://h.example=nope\"]"),
        &[],
        Overrides::default(),
    );
    assert!(seed.unwrap_err().to_string().contains("nope"));

    let missing = Settings::load(
        Some(Path::new("/nonexistent/hub.toml")),
        &|_| None,
        Overrides::default(),
    );
    assert!(matches!(missing, Err(SettingsError::ConfigRead { .. })));
}

#[test]
fn the_example_config_in_deploy_parses() {
    let text = include_str!("../../../deploy/hub.example.toml");
    let s = Settings::from_toml_str(text).unwrap();
    s.validate().unwrap();
}

#[test]
fn for_test_settings_are_valid_and_use_a_free_port() {
    let s = Settings::for_test("/tmp/x");
    s.validate().unwrap();
    assert_eq!(s.listen.port(), 0);
    assert!(!s.auto_crawl && s.allow_private_peers);
}

//! `aimarket-hub serve` as an operator runs it.

use aimarket_protocol::schema::{SchemaKind, validate};
use aimarket_protocol::signing::{PublicKey, verify_document};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Served, client, run_expecting_exit, stderr};

/// Fetches the well-known and checks it against the schema and its own signer key; returns
/// that key.
async fn self_verifying_well_known(base_url: &str) -> String {
    let res = client()
        .get(format!("{base_url}/.well-known/ai-market.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("etag"));
    let doc: Value = res.json().await.unwrap();
    validate(SchemaKind::WellKnown, &doc).unwrap();
    let signer = doc["signer_public_key"].as_str().unwrap().to_owned();
    verify_document(&doc, &PublicKey::from_b64(&signer).unwrap()).unwrap();
    assert_eq!(
        doc["manifest_url"],
        format!("{base_url}/ai-market/v2/manifest")
    );
    signer
}

#[tokio::test]
async fn serve_prints_its_address_keeps_its_key_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let log = dir.path().join("stderr.log");
    let args = ["serve", "--listen", "127.0.0.1:0", "--data-dir", data];

    let first = Served::start(&args, &[], &log);
    assert!(
        first.base_url.starts_with("http://127.0.0.1:"),
        "{}",
        first.base_url
    );
    assert_ne!(first.base_url, "http://127.0.0.1:0");
    let res = client()
        .get(format!("{}/ai-market/v2/health", first.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let health: Value = res.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database_backend"], "sqlite");
    let key = self_verifying_well_known(&first.base_url).await;

    let res = client()
        .get(format!("{}/no/such/path", first.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["success"].clone(), body["error"].clone()),
        (false.into(), "not_found".into())
    );

    // SIGTERM drains and exits cleanly.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &first.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(
        first.wait_exit(),
        Some(true),
        "hub did not exit cleanly on SIGTERM"
    );

    // Same data dir, same key.
    let second = Served::start(&args, &[], &log);
    assert_eq!(self_verifying_well_known(&second.base_url).await, key);
}

#[tokio::test]
async fn serve_is_the_default_and_env_settings_reach_the_well_known() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("stderr.log");
    let env = [
        ("AIMARKET_DATA_DIR", data.to_str().unwrap()),
        ("AIMARKET_LISTEN", "127.0.0.1:0"),
        ("AIMARKET_ROUTING_FEE_BPS", "250"),
        ("AIMARKET_PUBLIC_URL", "https://hub.example.com/"),
        ("AIMARKET_SEEDS", "https://a.example,https://b.example"),
    ];
    let served = Served::start(&["--log-format", "json"], &env, &log);
    let doc: Value = client()
        .get(format!("{}/.well-known/ai-market.json", served.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["federation"]["routing_fee_bps"], 250);
    assert_eq!(doc["mcp_endpoint"], "https://hub.example.com/ai-market/mcp");
    assert_eq!(doc["federation"]["seed_list"].as_array().unwrap().len(), 2);
    assert!(data.join("hub_signing_key").is_file());
}

#[test]
fn json_logs_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let data = dir.path().join("data");
    let served = Served::start(
        &[
            "serve",
            "--log-format",
            "json",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[("RUST_LOG", "info")],
        &log,
    );
    drop(served);
    let text = std::fs::read_to_string(&log).unwrap();
    let first = text.lines().next().expect("an info line at startup");
    let line: Value = serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(line["level"].is_string(), "{line}");
}

#[test]
fn invalid_settings_stop_startup_naming_the_setting_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let cases: [(&str, &str); 6] = [
        ("AIMARKET_CRAWL_INTERVAL_S", "30"),
        ("AIMARKET_ROUTING_FEE_BPS", "10001"),
        ("AIMARKET_LISTEN", "not-an-address"),
        ("DATABASE_URL", "mysql://db/aimarket"),
        ("AIMARKET_AUTO_CRAWL", "sometimes"),
        ("AIMARKET_SEEDS", "ftp://peer.example"),
    ];
    for (name, value) in cases {
        let output = run_expecting_exit(&["serve", "--data-dir", data], &[(name, value)]);
        assert!(!output.status.success(), "{name}={value} was accepted");
        let err = stderr(&output);
        assert!(
            err.contains(name) && err.contains(value),
            "{name}={value}: {err}"
        );
        assert!(output.stdout.is_empty(), "nothing may be served: {name}");
    }

    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ncrawl_intervall_s = 60\n",
    )
    .unwrap();
    let output = run_expecting_exit(&["serve", "--config", config.to_str().unwrap()], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("crawl_intervall_s"),
        "{}",
        stderr(&output)
    );

    let output = run_expecting_exit(&["serve", "--seed", "https://h.example=notakey"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("notakey"), "{}", stderr(&output));
}

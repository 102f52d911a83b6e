//! `serve` with `REDIS_URL`: an unreachable Redis stops startup with a message naming
//! `REDIS_URL`; a reachable one puts the hub in multi-replica mode (seen in health).

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Served, client, run_expecting_exit, stderr, stdout};

#[test]
fn serve_refuses_to_start_when_redis_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // Nothing listens on loopback port 1.
    let output = run_expecting_exit(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", data],
        &[("REDIS_URL", "redis://127.0.0.1:1")],
    );
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("REDIS_URL=redis://127.0.0.1:1"), "{err}");
    assert!(
        !stdout(&output).contains("listening on"),
        "nothing may be served"
    );
}

#[tokio::test]
async fn serve_with_redis_reports_multi_replica_mode() {
    let url = std::env::var("AIMARKET_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    if let Err(reason) = aimarket_hub::replica::ping(&url).await {
        assert!(
            std::env::var_os("CI").is_none(),
            "Redis at {url} is unreachable in CI: {reason}"
        );
        println!("SKIP: Redis at {url} is unreachable ({reason})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let prefix = format!("aimarket:test:it_{}:", std::process::id());
    let served = Served::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[
            ("REDIS_URL", url.as_str()),
            ("AIMARKET_REDIS_KEY_PREFIX", prefix.as_str()),
        ],
        &dir.path().join("stderr.log"),
    );
    let res = client()
        .get(format!("{}/ai-market/v2/health", served.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let health: Value = res.json().await.unwrap();
    assert_eq!(health["mode"], "multi-replica", "{health}");
    assert_eq!(health["redis"], "ok", "{health}");
    assert!(
        health["replica_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

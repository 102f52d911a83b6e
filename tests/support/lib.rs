//! Support for the black-box end-to-end tests: a [`TestHub`] (the real hub, in process, on a
//! free loopback port, with its own temporary data dir) plus small helpers.
//!
//! Everything talks HTTP to the hub exactly as a client would; `TestHub::state` is there for
//! assertions that have no public endpoint yet, not for driving the hub.
//!
//! Later areas add their fixtures as modules here (for example a `provider` module with fake
//! signed factories on loopback) and re-export them below.

pub mod catalog_server;
pub mod chain;
pub mod faulty;
mod hub;
pub mod postgres;
pub mod provider;
pub mod pyenv;
pub mod real_providers;
pub mod redis;
pub mod services;
pub mod soak;

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use hub::{TEST_ADMIN_TOKEN, TestHub, TestHubBuilder};

/// Installs logging once per test binary: silent unless `TEST_LOG` is set, in which case
/// logs go to stderr with `RUST_LOG` (default `info`).
pub fn init_telemetry() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        use aimarket_hub::telemetry::{LogFormat, init_with_writer};
        // Another subscriber being installed already is fine for tests.
        let _ = if std::env::var_os("TEST_LOG").is_some() {
            init_with_writer(LogFormat::Text, None, std::io::stderr)
        } else {
            init_with_writer(LogFormat::Text, Some("off"), std::io::sink)
        };
    });
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes; returns whether it
/// succeeded. The bound keeps a broken hub from hanging the suite; tests assert the result,
/// never the time it took.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `body` is the protocol error body with `code`.
#[track_caller]
pub fn assert_protocol_error(body: &serde_json::Value, code: &str) {
    assert_eq!(body["success"], false, "not an error body: {body}");
    assert_eq!(body["error"], code, "wrong error code: {body}");
    assert_eq!(
        body["protocol_version"], "v2",
        "missing protocol_version: {body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "missing detail: {body}"
    );
}

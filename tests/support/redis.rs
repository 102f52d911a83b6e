//! Redis for tests that run several replicas (`AIMARKET_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`), with a key prefix per test so tests never share keys.

use std::sync::atomic::{AtomicU64, Ordering};

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The test Redis URL when it answers `PING`; `None` (after printing SKIP) when it does
/// not, unless `CI` is set, in which case it panics.
pub async fn test_redis_url() -> Option<String> {
    let url = std::env::var("AIMARKET_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    match aimarket_hub::replica::ping(&url).await {
        Ok(()) => Some(url),
        Err(reason) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "Redis at {url} is unreachable in CI: {reason}"
            );
            println!("SKIP: Redis at {url} is unreachable ({reason})");
            None
        }
    }
}

/// A Redis key prefix no other test (in this run or another) uses:
/// `aimarket:test:<pid>_<micros>_<n>:`.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "aimarket:test:{}_{}_{}:",
        std::process::id(),
        chrono::Utc::now().timestamp_micros(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

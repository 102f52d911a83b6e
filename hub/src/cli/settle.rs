//! `aimarket-hub crawl --wait-for-hub URL`: read-your-writes for the server-less crawl.
//!
//! The command writes to the store a serving hub reads; that hub's index and manifest follow
//! on its own (its catalog poll, with Redis or PostgreSQL). With the flag, each run waits
//! (bounded) until the hub's search and manifest both answer with
//! `X-AIMarket-Catalog-Version` at or past the version the run left in the store, and says
//! how long that took, or that it did not happen.

use std::time::{Duration, Instant};

use crate::http::consistency::CATALOG_VERSION_HEADER;

/// How long a run waits for the hub at most.
pub const WAIT: Duration = Duration::from_secs(30);
/// Between two looks at the hub.
const POLL: Duration = Duration::from_millis(50);

/// The catalog version `path` of `hub` answers from, if it says.
async fn version(client: &reqwest::Client, hub: &str, path: &str) -> Option<i64> {
    let answer = client.get(format!("{hub}{path}")).send().await.ok()?;
    answer
        .headers()
        .get(CATALOG_VERSION_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Waits until `hub`'s search and manifest show `target`; the line to print either way.
pub async fn wait_for_hub(client: &reqwest::Client, hub: &str, target: i64) -> String {
    let started = Instant::now();
    // Bounded by WAIT.
    while started.elapsed() < WAIT {
        let searched = version(client, hub, "/ai-market/v2/search?limit=0").await;
        if searched.is_some_and(|v| v >= target) {
            let published = version(client, hub, "/ai-market/v2/manifest").await;
            if published.is_some_and(|v| v >= target) {
                return format!(
                    "searchable and published at {hub}: catalog version {target} after {} ms",
                    started.elapsed().as_millis()
                );
            }
        }
        tokio::time::sleep(POLL).await;
    }
    format!(
        "warning: {hub} did not show catalog version {target} within {}s (a hub on SQLite \
         without Redis does not watch the store: restart it, or trigger its crawl instead)",
        WAIT.as_secs()
    )
}

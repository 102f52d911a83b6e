//! The long soak (issue #13): `cargo bench --profile dev --workspace --bench soak` runs the mixed load
//! of `aimarket_e2e::soak` for `AIMARKET_SOAK_MINUTES` (default 30) and prints RSS, open fds
//! and tasks each minute as a Markdown table. A bench, not a test: it asserts nothing; the
//! 2-minute CI version (`e2e::soak`) bounds the growth.

use std::time::Duration;

/// The shipped binary's allocator (`hub/src/main.rs`), so the soak measures what runs.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let minutes: u64 = std::env::var("AIMARKET_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let samples = runtime.block_on(aimarket_e2e::soak::run(
        Duration::from_secs(minutes * 60),
        Duration::from_secs(60),
    ));
    aimarket_e2e::soak::print_table(&samples);
}

//! The 2-minute soak (issue #13): the mixed load of `aimarket_e2e::soak` with a bound on
//! growth. The long version is the `soak` bench; its figures are in BENCHMARKS.md.

use std::time::Duration;

use aimarket_e2e::soak;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_minutes_of_mixed_load_leave_resources_flat() {
    let samples = soak::run(Duration::from_secs(120), Duration::from_secs(10)).await;
    soak::print_table(&samples);
    let last = samples.last().copied().unwrap();
    assert!(last.requests > 100, "the load ran: {last:?}");
    assert_eq!(last.errors, 0, "5xx or dropped answers: {last:?}");
    // Baseline after 30 s of warm-up (pools, caches, index readers); then the growth over
    // the remaining 90 s must stay within a small constant, not grow with the requests.
    let base = samples
        .iter()
        .find(|s| s.at >= Duration::from_secs(30))
        .copied()
        .unwrap();
    let peak = |f: fn(&soak::Sample) -> u64| {
        samples
            .iter()
            .filter(|s| s.at >= base.at)
            .map(f)
            .max()
            .unwrap()
    };
    let rss_growth_mib = peak(|s| s.rss_kib).saturating_sub(base.rss_kib) / 1024;
    let fds_growth = peak(|s| s.fds as u64).saturating_sub(base.fds as u64);
    let tasks_growth = peak(|s| s.tasks as u64).saturating_sub(base.tasks as u64);
    assert!(
        rss_growth_mib <= 64,
        "RSS grew {rss_growth_mib} MiB: {samples:?}"
    );
    assert!(fds_growth <= 16, "open fds grew {fds_growth}: {samples:?}");
    assert!(tasks_growth <= 16, "tasks grew {tasks_growth}: {samples:?}");
}

//! Crawl run bookkeeping.

use super::Ctx;
use crate::store::{RunError, RunStatus, RunSummary};

pub(super) async fn crawl_run_bookkeeping(ctx: Ctx) {
    let store = &ctx.store;
    assert!(store.last_runs(5).await.unwrap().is_empty());
    let first = store.start_run().await.unwrap();
    let second = store.start_run().await.unwrap();
    assert!(second > first);

    let summary = RunSummary {
        status: RunStatus::Completed,
        peers_reached: 7,
        capabilities_indexed: 7000,
        not_modified: 3,
        rejected: 2,
        errors: vec![
            RunError {
                peer: "https://bad.example".into(),
                error: "signature does not verify".into(),
            },
            RunError {
                peer: "https://stale.example".into(),
                error: "generated_at is 9 days old: \"quoted\" \u{2028} ünïcode".into(),
            },
        ],
    };
    store.finish_run(first, &summary).await.unwrap();

    let runs = store.last_runs(10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].id, second, "newest first");
    assert_eq!(runs[0].summary.status, RunStatus::Running);
    assert_eq!(runs[0].finished_at, None);
    assert_eq!(
        (runs[0].summary.peers_reached, runs[0].summary.errors.len()),
        (0, 0)
    );
    assert_eq!(runs[1].id, first);
    assert_eq!(runs[1].summary, summary);
    let finished = runs[1].finished_at.unwrap();
    assert!(finished >= runs[1].started_at);

    let failed = RunSummary {
        status: RunStatus::Failed,
        peers_reached: 0,
        capabilities_indexed: 0,
        not_modified: 0,
        rejected: 0,
        errors: vec![],
    };
    store.finish_run(second, &failed).await.unwrap();
    let latest = store.last_runs(1).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].summary.status, RunStatus::Failed);

    let err = store.finish_run(second + 100, &failed).await.unwrap_err();
    assert_eq!(err.code(), "crawl_run_not_found");
}

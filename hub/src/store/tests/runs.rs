//! Crawl run bookkeeping.

use super::Ctx;
use crate::store::{PeerVerdict, RunError, RunStatus, RunSummary, ToolRejection};

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
        rejected_tools: 41,
        rejected_tools_sample: vec![dropped("https://a.example", 3)],
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
        rejected_tools: 0,
        rejected_tools_sample: Vec::new(),
    };
    store.finish_run(second, &failed).await.unwrap();
    let latest = store.last_runs(1).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].summary.status, RunStatus::Failed);

    let err = store.finish_run(second + 100, &failed).await.unwrap_err();
    assert_eq!(err.code(), "crawl_run_not_found");
}

fn dropped(peer: &str, index: usize) -> ToolRejection {
    ToolRejection {
        peer: peer.to_owned(),
        index,
        name: Some(format!("prod.tool{index} «ü»")),
        reason: "source_hub: not a public address".to_owned(),
    }
}

/// Each peer's verdict is stored (replacing the previous one), cleared by a verdict without
/// dropped tools, and gone with the peer.
pub(super) async fn peer_rejections_are_stored(ctx: Ctx) {
    let store = &ctx.store;
    let a = "https://a.example";
    let b = "https://b.example";
    store.upsert_seed_peer(a, None).await.unwrap();
    let peer_b = store.upsert_seed_peer(b, None).await.unwrap();
    assert!(store.peer_rejections().await.unwrap().is_empty());
    let verdict = |url: &str, count: i64| PeerVerdict {
        url: url.to_owned(),
        count,
        tools: (0..usize::try_from(count).unwrap())
            .map(|i| dropped(url, i))
            .collect(),
    };
    let unknown = verdict("https://unknown.example", 1);
    store
        .record_peer_rejections(7, 1_000, &[verdict(a, 2), verdict(b, 1), unknown])
        .await
        .unwrap();
    let stored = store.peer_rejections().await.unwrap();
    assert_eq!(stored.len(), 2, "unknown peers are skipped: {stored:?}");
    assert_eq!(stored[a].run_id, 7);
    assert_eq!(stored[a].count, 2);
    assert_eq!(stored[a].at.timestamp_millis(), 1_000);
    assert_eq!(stored[a].tools, vec![dropped(a, 0), dropped(a, 1)]);

    // The next verdicts replace (a) and clear (b) the previous ones.
    store
        .record_peer_rejections(8, 2_000, &[verdict(a, 1), verdict(b, 0)])
        .await
        .unwrap();
    let stored = store.peer_rejections().await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!((stored[a].run_id, stored[a].count), (8, 1));

    store
        .record_peer_rejections(9, 3_000, &[verdict(b, 1)])
        .await
        .unwrap();
    store.delete_peer(peer_b.id).await.unwrap();
    assert!(!store.peer_rejections().await.unwrap().contains_key(b));
}

//! The index follows the catalog: a re-crawl that changes a provider's catalog is applied
//! incrementally (added, changed and removed tools only, no rebuild); a hub restarted on its
//! data dir serves its index at once; one whose index directory was deleted rebuilds it from
//! the store.

use aimarket_e2e::TestHub;
use aimarket_e2e::catalog_server::{CatalogServer, tool};

use crate::search::{
    SYNC_WAIT, crawl, described, hub_crawling, ids, metric, product_tools, search, wait_for_total,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_change_is_applied_incrementally() {
    let provider = CatalogServer::with_tools(product_tools(
        "geo",
        &[
            ("geocode@v1", 0.01, "Geocode a street address", 200),
            (
                "reverse.geocode@v1",
                0.01,
                "Reverse geocode coordinates",
                200,
            ),
        ],
    ))
    .await;
    let hub = hub_crawling(&provider, 2).await;
    let rebuilds = metric(&hub, "aimarket_index_rebuilds_total").await;
    let applies = metric(&hub, "aimarket_index_applies_total").await;

    // One tool changes, one goes, one arrives.
    provider.publish(
        vec![
            described(
                "geo",
                "geocode@v1",
                0.02,
                "Geocode a street address worldwide",
                200,
                None,
            ),
            described(
                "geo",
                "timezone@v1",
                0.01,
                "Time zone of a coordinate",
                200,
                None,
            ),
        ],
        &[],
    );
    crawl(&hub).await;
    let reached = aimarket_e2e::wait_until(SYNC_WAIT, || async {
        ids(&search(&hub, "intent=time+zone").await) == ["timezone@v1"]
    })
    .await;
    assert!(reached, "{}", search(&hub, "intent=time+zone").await);
    assert_eq!(search(&hub, "intent=").await["total"], 2);
    assert!(
        ids(&search(&hub, "intent=reverse+geocode").await)
            .iter()
            .all(|id| id != "reverse.geocode@v1")
    );
    let geocode = search(&hub, "intent=geocode+worldwide").await;
    assert_eq!(
        geocode["matches"][0]["price_per_call_usd"], 0.02,
        "{geocode}"
    );
    assert_eq!(geocode["matches"][0]["routed_price_usd"], 0.0202);

    assert_eq!(
        metric(&hub, "aimarket_index_rebuilds_total").await,
        rebuilds,
        "no rebuild"
    );
    assert!(metric(&hub, "aimarket_index_applies_total").await > applies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reuses_the_index_and_a_deleted_one_is_rebuilt() {
    let provider = CatalogServer::with_tools(
        (0..40)
            .map(|i| tool("ocr", &format!("ocr.page{i}@v1"), 0.003))
            .collect(),
    )
    .await;
    let data = tempfile::tempdir().unwrap();
    let seeds = vec![
        provider
            .pinned_seed()
            .parse::<aimarket_hub::settings::Seed>()
            .unwrap(),
    ];
    let start = |seeds: Vec<aimarket_hub::settings::Seed>| {
        TestHub::builder()
            .data_dir(data.path())
            .settings(move |s| s.seeds = seeds)
            .start()
    };

    let hub = start(seeds.clone()).await;
    crawl(&hub).await;
    wait_for_total(&hub, 40).await;
    hub.stop().await;

    // Same data dir: the index is current, nothing is rebuilt.
    let hub = start(seeds.clone()).await;
    assert_eq!(
        search(&hub, "intent=ocr&limit=0").await["total"],
        40,
        "served at once"
    );
    assert_eq!(metric(&hub, "aimarket_index_rebuilds_total").await, 0);
    crawl(&hub).await;
    hub.stop().await;

    std::fs::remove_dir_all(data.path().join("index")).unwrap();
    let hub = start(seeds).await;
    wait_for_total(&hub, 40).await;
    assert_eq!(
        ids(&search(&hub, "intent=ocr.page7").await)[0],
        "ocr.page7@v1"
    );
    assert!(metric(&hub, "aimarket_index_rebuilds_total").await >= 1);
    assert!(data.path().join("index").is_dir());
}

//! Crawling through the running hub, on SQLite and on PostgreSQL: a good provider's catalog
//! is verified, pinned (trust on first use) and stored; an unchanged re-crawl costs one
//! conditional request per peer and writes nothing; re-exports are indexed through the peer
//! hub with `via`, the direct entry wins, chains stop after one hop; a key change is
//! rejected and the old catalog kept; peers found by discovery are only ever pending.
//!
//! Helpers here are shared by `crawl_bad` and `crawl_admin`.

use std::collections::HashMap;

use std::time::Duration;

use aimarket_e2e::catalog_server::{
    CatalogServer, MANIFEST, WELL_KNOWN, re_exported, signed_manifest, tool, tools,
};
use aimarket_e2e::{TestHub, wait_until};
use aimarket_hub::settings::{Seed, Settings};
use aimarket_hub::store::{NewPeer, PeerRow, PeerState, Store};
use aimarket_protocol::signing::KeyPair;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub(crate) const CRAWL: &str = "/ai-market/v2/federation/crawl";
pub(crate) const PEERS: &str = "/ai-market/v2/federation/peers";

/// Instantiates each `case(database_url)` twice: `sqlite::<name>` (the default embedded
/// file) and `postgres::<name>` (a fresh schema; SKIP when PostgreSQL is unreachable unless
/// `CI` is set). Names must not be prefixes of one another: they name the schemas.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(None).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let prefix = concat!("cr_", stringify!($name));
                    if let Some(url) = aimarket_e2e::postgres::fresh_schema_url(prefix).await {
                        super::$name(Some(url)).await;
                    }
                }
            )*
        }
    };
}
pub(crate) use on_both_engines;

on_both_engines!(
    good_catalog_stored_then_rechecked_for_free,
    re_exports_via_peer_hub,
    key_change_is_rejected,
    discovered_peers_stay_pending,
);

/// A hub on `database_url` (or SQLite) crawling `seeds` (`URL` or `URL=KEY`).
pub(crate) async fn start_hub(
    database_url: Option<&str>,
    seeds: &[impl AsRef<str>],
    change: impl FnOnce(&mut Settings),
) -> TestHub {
    let seeds: Vec<Seed> = seeds.iter().map(|s| s.as_ref().parse().unwrap()).collect();
    let database_url = database_url.map(|u| u.parse().unwrap());
    TestHub::builder()
        .settings(|s| {
            s.seeds = seeds;
            s.database_url = database_url;
            change(s);
        })
        .start()
        .await
}

/// Runs a crawl through the admin endpoint and returns the `complete` body.
pub(crate) async fn crawl(hub: &TestHub) -> Value {
    let (status, body) = hub.admin_post(CRAWL, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "complete", "{body}");
    body
}

/// `GET /ai-market/v2/federation/peers`.
pub(crate) async fn peers(hub: &TestHub) -> Value {
    let (status, body) = hub.get(PEERS).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The entry for `url` in the peers body, active or pending.
pub(crate) fn peer<'a>(body: &'a Value, url: &str) -> &'a Value {
    body["peers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(body["pending"].as_array().unwrap())
        .find(|p| p["url"] == url)
        .unwrap_or_else(|| panic!("{url} not listed: {body}"))
}

/// The stored peer row.
pub(crate) async fn row(store: &Store, url: &str) -> PeerRow {
    store.get_peer_by_url(url).await.unwrap().unwrap()
}

/// Asserts the hub still answers health.
pub(crate) async fn assert_healthy(hub: &TestHub) {
    let (status, body) = hub.get("/ai-market/v2/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn good_catalog_stored_then_rechecked_for_free(database_url: Option<String>) {
    let a = CatalogServer::with_tools(tools("prod-a", 3)).await;
    // No periodic trust recomputation during the test (it reacts to catalog changes only).
    let hub = start_hub(database_url.as_deref(), &[&a.url], |s| {
        s.reputation.recompute_interval_s = 86_400;
    })
    .await;
    let store = &hub.state.store;
    let body = crawl(&hub).await;
    assert!(body["run_id"].is_i64(), "{body}");

    let listed = peers(&hub).await;
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["pending_count"], 0, "{listed}");
    let p = peer(&listed, &a.url);
    assert_eq!(p["state"], "active");
    assert_eq!(p["trusted"], true);
    assert_eq!(p["depth"], 0);
    assert_eq!(p["capability_count"], 3);
    assert_eq!(p["last_error"], Value::Null);
    assert_eq!(
        p["public_key"],
        a.key.public_key().to_b64(),
        "pinned on first use"
    );
    assert_eq!(p["key_source"], "tofu");
    assert_eq!(p["well_known_url"], a.at(WELL_KNOWN));
    assert_eq!(p["name"], format!("Catalog at {}", a.url));
    let last_crawl = p["last_crawl"].as_str().unwrap().to_owned();
    assert!(last_crawl.ends_with('Z'), "{last_crawl}");
    assert!(p["last_success"].is_string());
    let offers = store
        .get_capability(Some(&a.url), "prod-a", "cap-1@v1")
        .await
        .unwrap();
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].capability.via, None);
    assert_eq!(offers[0].capability.price_usd, 0.01);

    // The trust-score worker reacts to the new catalog on its own (it rewrites the new
    // peer's score, 0.5 at first); let it finish so that only the crawl is measured. If the
    // score stays 0.5 there was nothing for it to write.
    let settled = wait_until(Duration::from_secs(10), || async {
        row(store, &a.url).await.trust_score != 0.5
    })
    .await;
    if !settled {
        println!("trust score of the new peer stayed 0.5; nothing to wait for");
    }

    // Unchanged: one conditional manifest request, nothing written.
    let version = store.catalog_version().await.unwrap();
    let before_row = row(store, &a.url).await;
    let before_caps = store.list_capabilities(0, 100).await.unwrap();
    let before = a.seen().len();
    let body = crawl(&hub).await;
    assert_eq!(body["stats"]["not_modified"], 1, "{body}");
    assert_eq!(body["stats"]["capabilities_indexed"], 0, "{body}");
    assert_eq!(body["stats"]["peers_reached"], 1, "{body}");
    let seen = a.seen()[before..].to_vec();
    assert_eq!(seen.len(), 1, "one request per unchanged peer: {seen:?}");
    assert_eq!(seen[0].path, MANIFEST);
    assert!(seen[0].conditional());
    assert_eq!(store.catalog_version().await.unwrap(), version);
    let after_row = row(store, &a.url).await;
    assert_eq!(after_row.updated_at, before_row.updated_at, "no peer write");
    assert_eq!(after_row, before_row);
    assert_eq!(store.list_capabilities(0, 100).await.unwrap(), before_caps);
    let runs = store.last_runs(1).await.unwrap();
    assert_eq!(runs[0].id, body["run_id"].as_i64().unwrap());
    assert_eq!(runs[0].summary.not_modified, 1);
    // The endpoint still shows when the peer was last confirmed.
    let listed = peers(&hub).await;
    assert!(peer(&listed, &a.url)["last_crawl"].as_str().unwrap() >= last_crawl.as_str());

    // A changed catalog: the manifest, then the well-known for its key and peers.
    let mut updates = hub.state.subscribe_catalog();
    a.publish(tools("prod-a", 4), &[]);
    let before = a.seen().len();
    let body = crawl(&hub).await;
    assert_eq!(body["stats"]["capabilities_indexed"], 4, "{body}");
    assert_eq!(body["stats"]["peers_updated"], 1, "{body}");
    let seen = a.seen()[before..].to_vec();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, [MANIFEST, WELL_KNOWN]);
    let new_version = store.catalog_version().await.unwrap();
    assert!(new_version > version);
    assert!(updates.has_changed().unwrap());
    let update = updates.borrow_and_update().clone();
    assert!(update.version > version, "{update:?}");
    // The watch keeps the latest value: the trust-score worker may already have published
    // its own reaction on top of the crawl's update.
    if update.since == Some(version) {
        assert_eq!(update.added.len(), 1, "{update:?}");
        assert_eq!(update.added[0].capability_id, "cap-3@v1");
    } else {
        println!("the crawl's update was superseded by {update:?}");
    }
    assert_eq!(row(store, &a.url).await.capability_count, 4);
    assert_healthy(&hub).await;
}

async fn re_exports_via_peer_hub(database_url: Option<String>) {
    let direct = CatalogServer::with_tools(vec![tool("prod-d", "direct@v1", 0.2)]).await;
    let far = CatalogServer::start().await;
    let peer_hub = CatalogServer::start().await;
    peer_hub.publish(
        vec![
            tool("prod-h", "own@v1", 0.1),
            re_exported(tool("prod-x", "far@v1", 0.3), &far.url),
            re_exported(tool("prod-d", "direct@v1", 0.25), &direct.url),
            {
                // Learned by the peer hub through yet another hub: two hops.
                let mut two_hops = re_exported(tool("prod-y", "twohop@v1", 0.4), &far.url);
                two_hops["via"] = json!("http://127.0.0.1:9");
                two_hops
            },
        ],
        &[],
    );
    // Only the peer hub admitted: its re-exports arrive through it.
    let hub = start_hub(database_url.as_deref(), &[&peer_hub.url], |_| {}).await;
    crawl(&hub).await;
    let store = &hub.state.store;
    let via = |rows: &[aimarket_hub::store::CapabilityRow]| -> Vec<Option<String>> {
        rows.iter().map(|r| r.capability.via.clone()).collect()
    };
    let far_rows = store
        .get_capability(Some(&far.url), "prod-x", "far@v1")
        .await
        .unwrap();
    assert_eq!(via(&far_rows), [Some(peer_hub.url.clone())]);
    assert_eq!(far_rows[0].peer_url, peer_hub.url);
    let direct_rows = store
        .get_capability(Some(&direct.url), "prod-d", "direct@v1")
        .await
        .unwrap();
    assert_eq!(via(&direct_rows), [Some(peer_hub.url.clone())]);
    assert_eq!(direct_rows[0].capability.price_usd, 0.25);
    let two_hops = store
        .get_capability(None, "prod-y", "twohop@v1")
        .await
        .unwrap();
    assert!(
        two_hops.is_empty(),
        "more than one intermediate hub: {two_hops:?}"
    );
    assert_eq!(row(store, &peer_hub.url).await.capability_count, 3);

    // The origin is admitted too (as an operator approval would): its direct entry wins
    // over the re-export, and the peer hub keeps the rest.
    let (_, inserted) = store
        .insert_peer_if_absent(&NewPeer {
            url: direct.url.clone(),
            well_known_url: None,
            name: None,
            state: PeerState::Active,
            trusted: true,
            depth: 0,
            pinned_key: None,
        })
        .await
        .unwrap();
    assert!(inserted);
    crawl(&hub).await;
    crawl(&hub).await;
    let direct_rows = store
        .get_capability(Some(&direct.url), "prod-d", "direct@v1")
        .await
        .unwrap();
    assert_eq!(via(&direct_rows), [None]);
    assert_eq!(direct_rows[0].peer_url, direct.url);
    assert_eq!(direct_rows[0].capability.price_usd, 0.2);
    let far_rows = store
        .get_capability(Some(&far.url), "prod-x", "far@v1")
        .await
        .unwrap();
    assert_eq!(via(&far_rows), [Some(peer_hub.url.clone())]);
    assert_eq!(row(store, &direct.url).await.capability_count, 1);
    assert_eq!(row(store, &peer_hub.url).await.capability_count, 2);
    // Crawled as an active peer, it got its key pinned on first use.
    assert_eq!(
        row(store, &direct.url).await.pinned_key,
        Some(direct.key.public_key().to_b64())
    );
    assert_healthy(&hub).await;
}

async fn key_change_is_rejected(database_url: Option<String>) {
    let a = CatalogServer::with_tools(tools("prod-k", 2)).await;
    let hub = start_hub(database_url.as_deref(), &[&a.url], |_| {}).await;
    crawl(&hub).await;
    let store = &hub.state.store;
    let pinned = a.key.public_key().to_b64();
    assert_eq!(
        row(store, &a.url).await.pinned_key.as_deref(),
        Some(pinned.as_str())
    );

    // The peer now signs with another key (and says so): refused until an operator repins.
    let rotated = KeyPair::generate();
    let mut wk = a.well_known(&[]);
    wk["signer_public_key"] = json!(rotated.public_key().to_b64());
    a.json(WELL_KNOWN, &wk);
    a.json(
        MANIFEST,
        &signed_manifest(&rotated, tools("prod-k", 5), chrono::Utc::now()),
    );
    let body = crawl(&hub).await;
    assert_eq!(body["stats"]["rejected"], 1, "{body}");
    let errors = body["stats"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["url"], a.url);
    let listed = peers(&hub).await;
    let p = peer(&listed, &a.url);
    let last_error = p["last_error"].as_str().unwrap();
    assert!(last_error.contains("signer key mismatch"), "{last_error}");
    assert_eq!(p["public_key"], pinned);
    assert_eq!(p["capability_count"], 2, "the last good catalog stays");
    assert_eq!(store.count_capabilities().await.unwrap(), 2);
    assert!(
        store
            .get_capability(None, "prod-k", "cap-4@v1")
            .await
            .unwrap()
            .is_empty()
    );
    assert_healthy(&hub).await;
}

async fn discovered_peers_stay_pending(database_url: Option<String>) {
    let deep = CatalogServer::with_tools(tools("prod-deep", 1)).await;
    let near = CatalogServer::start().await;
    near.publish(tools("prod-near", 2), &[&deep.url]);
    let seed = CatalogServer::start().await;
    seed.publish(tools("prod-seed", 3), &[&near.url]);
    let hub = start_hub(database_url.as_deref(), &[&seed.url], |_| {}).await;
    for _ in 0..2 {
        crawl(&hub).await;
        let listed = peers(&hub).await;
        assert_eq!(listed["count"], 1, "{listed}");
        assert_eq!(listed["pending_count"], 2, "{listed}");
        for (server, depth) in [(&near, 1), (&deep, 2)] {
            let p = peer(&listed, &server.url);
            assert_eq!(p["state"], "pending", "{p}");
            assert_eq!(p["trusted"], false, "{p}");
            assert_eq!(p["depth"], depth, "{p}");
            assert_eq!(p["public_key"], Value::Null, "never pinned: {p}");
            assert_eq!(p["capability_count"], 0, "{p}");
            assert_eq!(p["last_error"], Value::Null, "{p}");
        }
    }
    let store = &hub.state.store;
    assert_eq!(
        store.count_capabilities().await.unwrap(),
        3,
        "only the seed is searchable"
    );
    assert!(
        store
            .get_capability(None, "prod-near", "cap-0@v1")
            .await
            .unwrap()
            .is_empty()
    );
    // The well-known publishes active peers only (spec §2.4 rule 5).
    let (_, wk) = hub.get(WELL_KNOWN).await;
    let listed: Vec<&Value> = wk["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["url"])
        .collect();
    assert_eq!(listed, [&json!(seed.url)], "{wk}");

    // The pending bound holds for discovery too.
    let bounded = start_hub(None, &[&seed.url], |s| s.max_pending_peers = 1).await;
    let body = crawl(&bounded).await;
    let listed = peers(&bounded).await;
    assert_eq!(listed["pending_count"], 1, "{listed} {body}");
    let urls: HashMap<String, Value> = listed["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["url"].as_str().unwrap().to_owned(), p.clone()))
        .collect();
    assert!(urls.contains_key(&near.url), "{listed}");
    assert_healthy(&hub).await;
}

//! Catalog cases: diffs, no-op re-stores, duplicates, re-exports, visibility, reads.

use super::{Ctx, key, sorted, tool, via};
use aimarket_protocol::capability::Capability;

use crate::store::catalog::content_hash;
use crate::store::{CapabilityKey, NewPeer, PeerState, on_pool};

/// Raw `(id, content_hash, last_seen, first_seen)` of every row, by id: what a write changes.
async fn raw_rows(ctx: &Ctx) -> Vec<(i64, String, i64, i64)> {
    const SQL: &str =
        "SELECT id, content_hash, last_seen, first_seen FROM capabilities ORDER BY id";
    on_pool!(&ctx.store, |pool| {
        sqlx::query_as(SQL).fetch_all(pool).await.unwrap()
    })
}

pub(super) async fn replace_reports_added_changed_removed(ctx: Ctx) {
    let store = &ctx.store;
    let a = "https://a.example";
    let peer = store.upsert_seed_peer(a, None).await.unwrap();
    let v0 = store.catalog_version().await.unwrap();

    let first = store
        .replace_peer_catalog(
            peer.id,
            vec![
                tool(a, "p", "a", 1),
                tool(a, "p", "b", 1),
                tool(a, "p", "c", 1),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        sorted(first.added),
        vec![key(a, "p", "a"), key(a, "p", "b"), key(a, "p", "c")]
    );
    assert!(first.changed.is_empty() && first.removed.is_empty());
    assert_eq!(first.version, v0 + 1);
    assert_eq!(store.catalog_version().await.unwrap(), v0 + 1);
    assert_eq!(
        store
            .get_peer(peer.id)
            .await
            .unwrap()
            .unwrap()
            .capability_count,
        3
    );
    let before = store.get_capability(Some(a), "p", "b").await.unwrap();

    let second = store
        .replace_peer_catalog(
            peer.id,
            vec![
                tool(a, "p", "a", 1),
                tool(a, "p", "b", 2),
                tool(a, "p", "d", 1),
            ],
        )
        .await
        .unwrap();
    assert_eq!(second.added, vec![key(a, "p", "d")]);
    assert_eq!(second.changed, vec![key(a, "p", "b")]);
    assert_eq!(second.removed, vec![key(a, "p", "c")]);
    assert_eq!(second.version, v0 + 2);
    assert_eq!(
        store
            .get_peer(peer.id)
            .await
            .unwrap()
            .unwrap()
            .capability_count,
        3
    );

    let changed = store.get_capability(Some(a), "p", "b").await.unwrap();
    assert_eq!(changed.len(), 1);
    let row = &changed[0];
    let expected = tool(a, "p", "b", 2);
    // The record comes back exactly as it was stored.
    assert_eq!(row.capability, expected);
    assert_eq!(row.content_hash, content_hash(&expected));
    assert_eq!(row.peer_id, peer.id);
    assert_eq!(row.peer_url, a);
    assert_eq!(row.peer_trust_score, 0.5);
    // The key keeps its row and its first-seen time across content changes.
    assert_eq!(
        (row.id, row.first_seen),
        (before[0].id, before[0].first_seen)
    );
    assert!(
        store
            .get_capability(Some(a), "p", "c")
            .await
            .unwrap()
            .is_empty()
    );

    let emptied = store
        .replace_peer_catalog(peer.id, Vec::<Capability>::new())
        .await
        .unwrap();
    assert_eq!(emptied.removed.len(), 3);
    assert_eq!(store.count_capabilities().await.unwrap(), 0);
    assert_eq!(
        store
            .get_peer(peer.id)
            .await
            .unwrap()
            .unwrap()
            .capability_count,
        0
    );
}

pub(super) async fn unchanged_restore_writes_nothing(ctx: Ctx) {
    let store = &ctx.store;
    let a = "https://a.example";
    let peer = store.upsert_seed_peer(a, None).await.unwrap();
    let catalog: Vec<_> = (0..300)
        .map(|i| tool(a, "p", &format!("cap{i:03}"), 1))
        .collect();
    let diff = store
        .replace_peer_catalog(peer.id, catalog.clone())
        .await
        .unwrap();
    assert_eq!(diff.added.len(), 300);
    let version = store.catalog_version().await.unwrap();
    let rows = raw_rows(&ctx).await;
    let peer_row = store.get_peer(peer.id).await.unwrap().unwrap();

    // Same tools, other order: nothing differs, so nothing is written.
    let mut shuffled = catalog.clone();
    shuffled.reverse();
    for tools in [catalog, shuffled] {
        let again = store.replace_peer_catalog(peer.id, tools).await.unwrap();
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(again.version, version);
    }
    assert_eq!(store.catalog_version().await.unwrap(), version);
    assert_eq!(raw_rows(&ctx).await, rows);
    assert_eq!(store.get_peer(peer.id).await.unwrap().unwrap(), peer_row);
}

pub(super) async fn duplicate_ids_last_listing_wins(ctx: Ctx) {
    let store = &ctx.store;
    let a = "https://a.example";
    let peer = store.upsert_seed_peer(a, None).await.unwrap();
    let diff = store
        .replace_peer_catalog(
            peer.id,
            vec![
                tool(a, "p", "dup", 1),
                tool(a, "p", "other", 1),
                tool(a, "p", "dup", 7),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        sorted(diff.added),
        vec![key(a, "p", "dup"), key(a, "p", "other")]
    );
    let rows = store.get_capability(None, "p", "dup").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].capability.name, tool(a, "p", "dup", 7).name);
    assert_eq!(store.count_capabilities().await.unwrap(), 2);
}

pub(super) async fn reexports_yield_to_direct_peers(ctx: Ctx) {
    let store = &ctx.store;
    let hub = "https://hub.example";
    let o = "https://origin.example";
    let hub_peer = store.upsert_seed_peer(hub, None).await.unwrap();
    let hub_catalog = vec![
        tool(hub, "own", "h1", 1),
        via(tool(o, "p", "shared", 1), hub),
        via(tool(o, "p", "only-via", 1), hub),
    ];
    let diff = store
        .replace_peer_catalog(hub_peer.id, hub_catalog.clone())
        .await
        .unwrap();
    assert_eq!(diff.added.len(), 3);
    let shared = store.get_capability(Some(o), "p", "shared").await.unwrap();
    assert_eq!(shared[0].capability.via.as_deref(), Some(hub));
    assert_eq!(shared[0].peer_id, hub_peer.id);

    // The origin, crawled directly and active, takes the key over.
    let origin_peer = store.upsert_seed_peer(o, None).await.unwrap();
    let diff = store
        .replace_peer_catalog(
            origin_peer.id,
            vec![tool(o, "p", "shared", 2), tool(o, "p", "direct", 1)],
        )
        .await
        .unwrap();
    assert_eq!(diff.changed, vec![key(o, "p", "shared")]);
    assert_eq!(diff.added, vec![key(o, "p", "direct")]);
    let shared = store.get_capability(None, "p", "shared").await.unwrap();
    assert_eq!(shared.len(), 1);
    assert_eq!(
        (shared[0].peer_id, shared[0].capability.via.as_deref()),
        (origin_peer.id, None)
    );
    assert_eq!(shared[0].capability.name, tool(o, "p", "shared", 2).name);
    let counts = store.count_by_peer().await.unwrap();
    let count_of = |id: i64| counts.iter().find(|c| c.peer_id == id).map(|c| c.count);
    assert_eq!(count_of(hub_peer.id), Some(2));
    assert_eq!(count_of(origin_peer.id), Some(2));
    assert_eq!(
        store
            .get_peer(hub_peer.id)
            .await
            .unwrap()
            .unwrap()
            .capability_count,
        2
    );

    // The hub re-listing its catalog cannot take the key back.
    let version = store.catalog_version().await.unwrap();
    let again = store
        .replace_peer_catalog(hub_peer.id, hub_catalog.clone())
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(store.catalog_version().await.unwrap(), version);
    let shared = store.get_capability(None, "p", "shared").await.unwrap();
    assert_eq!(shared[0].peer_id, origin_peer.id);

    // A re-export of another re-export does not displace the first holder either.
    let hub2 = store
        .upsert_seed_peer("https://hub2.example", None)
        .await
        .unwrap();
    let diff = store
        .replace_peer_catalog(
            hub2.id,
            vec![via(tool(o, "p", "only-via", 9), "https://hub2.example")],
        )
        .await
        .unwrap();
    assert!(diff.is_empty(), "{diff:?}");
    let only = store
        .get_capability(Some(o), "p", "only-via")
        .await
        .unwrap();
    assert_eq!(only[0].peer_id, hub_peer.id);

    // When the origin drops the tool, the hub's next full crawl brings its re-export back.
    let diff = store
        .replace_peer_catalog(origin_peer.id, vec![tool(o, "p", "direct", 1)])
        .await
        .unwrap();
    assert_eq!(diff.removed, vec![key(o, "p", "shared")]);
    let diff = store
        .replace_peer_catalog(hub_peer.id, hub_catalog)
        .await
        .unwrap();
    assert_eq!(diff.added, vec![key(o, "p", "shared")]);
    let counts = store.count_by_origin().await.unwrap();
    let by_origin: Vec<(&str, i64)> = counts
        .iter()
        .map(|c| (c.origin.as_str(), c.count))
        .collect();
    assert_eq!(by_origin, vec![(hub, 1), (o, 3)]);
}

pub(super) async fn pending_peer_catalog_is_invisible(ctx: Ctx) {
    let store = &ctx.store;
    let hub = "https://hub.example";
    let p = "https://pending.example";
    let hub_peer = store.upsert_seed_peer(hub, None).await.unwrap();
    store
        .replace_peer_catalog(hub_peer.id, vec![via(tool(p, "p", "x", 1), hub)])
        .await
        .unwrap();
    let (pending, _) = store
        .insert_peer_if_absent(&NewPeer {
            url: p.into(),
            well_known_url: None,
            name: None,
            state: PeerState::Pending,
            trusted: false,
            depth: 1,
            pinned_key: None,
        })
        .await
        .unwrap();
    let version = store.catalog_version().await.unwrap();
    let diff = store
        .replace_peer_catalog(pending.id, vec![tool(p, "p", "x", 2), tool(p, "p", "y", 1)])
        .await
        .unwrap();
    assert!(diff.is_empty(), "{diff:?}");
    assert_eq!(diff.version, version);
    assert_eq!(store.catalog_version().await.unwrap(), version);
    // A pending direct peer does not take over the active hub's re-export.
    let x = store.get_capability(None, "p", "x").await.unwrap();
    assert_eq!((x.len(), x[0].peer_id), (1, hub_peer.id));
    assert!(
        store
            .get_capability(None, "p", "y")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.count_capabilities().await.unwrap(), 1);
    assert_eq!(store.list_capabilities(0, 10).await.unwrap().len(), 1);
    assert_eq!(store.count_by_peer().await.unwrap().len(), 1);

    let approved = store
        .set_peer_state(pending.id, PeerState::Active)
        .await
        .unwrap();
    assert_eq!(approved.added, vec![key(p, "p", "y")]);
    assert_eq!(store.count_capabilities().await.unwrap(), 2);
}

pub(super) async fn paging_lookups_and_counts(ctx: Ctx) {
    let store = &ctx.store;
    let a = "https://a.example";
    let b = "https://b.example";
    let pa = store.upsert_seed_peer(a, None).await.unwrap();
    let pb = store.upsert_seed_peer(b, None).await.unwrap();
    let tools_a: Vec<_> = (0..15).map(|i| tool(a, "p", &format!("c{i}"), 1)).collect();
    let tools_b: Vec<_> = (5..15).map(|i| tool(b, "p", &format!("c{i}"), 1)).collect();
    store.replace_peer_catalog(pa.id, tools_a).await.unwrap();
    store.replace_peer_catalog(pb.id, tools_b).await.unwrap();

    let mut seen = Vec::new();
    let mut after = 0;
    let mut pages = Vec::new();
    for _ in 0..10 {
        let page = store.list_capabilities(after, 10).await.unwrap();
        pages.push(page.len());
        let Some(last) = page.last() else { break };
        after = last.id;
        seen.extend(page);
    }
    assert_eq!(pages, vec![10, 10, 5, 0]);
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(seen.len(), 25);

    let offers = store.get_capability(None, "p", "c7").await.unwrap();
    let origins: Vec<&str> = offers
        .iter()
        .map(|r| r.capability.origin.as_str())
        .collect();
    assert_eq!(origins, vec![a, b]);
    assert_eq!(
        store
            .get_capability(Some(b), "p", "c7")
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .get_capability(Some(b), "p", "c1")
            .await
            .unwrap()
            .is_empty()
    );

    let mut wanted = vec![key(a, "p", "c1"), key(b, "p", "c14"), key(b, "p", "nope")];
    // More keys than one lookup statement carries.
    wanted.extend((0..700).map(|i| key(a, "q", &format!("missing{i}"))));
    let found = store.get_capabilities_by_keys(&wanted).await.unwrap();
    let found: Vec<CapabilityKey> = found
        .iter()
        .map(|r| &r.capability)
        .map(|c| key(&c.origin, &c.product_id, &c.capability_id))
        .collect();
    assert_eq!(sorted(found), vec![key(a, "p", "c1"), key(b, "p", "c14")]);
    assert!(
        store
            .get_capabilities_by_keys(&[])
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(store.count_capabilities().await.unwrap(), 25);
    let by_peer: Vec<(String, i64)> = store
        .count_by_peer()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.peer_url, c.count))
        .collect();
    assert_eq!(by_peer, vec![(a.to_owned(), 15), (b.to_owned(), 10)]);
}

pub(super) async fn concurrent_writers_all_succeed(ctx: Ctx) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = ctx.store.clone();
        tasks.push(tokio::spawn(async move {
            let url = format!("https://p{i}.example");
            let peer = store.upsert_seed_peer(&url, None).await.unwrap();
            for rev in 1..=3 {
                let tools = (0..200).map(|j| tool(&url, "p", &format!("c{j}"), rev));
                store.replace_peer_catalog(peer.id, tools).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(ctx.store.count_capabilities().await.unwrap(), 1600);
    // 8 peers × 3 changing writes, each one version step.
    assert_eq!(ctx.store.catalog_version().await.unwrap(), 24);
}

pub(super) async fn unknown_peer_is_an_error(ctx: Ctx) {
    let a = "https://a.example";
    for tools in [vec![], vec![tool(a, "p", "x", 1)]] {
        let err = ctx
            .store
            .replace_peer_catalog(4242, tools)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "peer_not_found");
    }
    assert_eq!(ctx.count("SELECT COUNT(*) FROM capabilities").await, 0);
}

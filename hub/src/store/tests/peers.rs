//! Peer cases: seeds, admission state, keys, crawl outcomes, deletion.

use super::{Ctx, key, sorted, tool};
use crate::store::{
    CapabilityKey, CrawlSuccess, KeySource, NewPeer, PeerState, StoreError, Validators,
};

fn new_peer(url: &str, state: PeerState) -> NewPeer {
    NewPeer {
        url: url.to_owned(),
        well_known_url: None,
        name: None,
        state,
        trusted: false,
        depth: 2,
        pinned_key: None,
    }
}

fn keys(origin: &str, ids: &[&str]) -> Vec<CapabilityKey> {
    ids.iter().map(|id| key(origin, "p", id)).collect()
}

pub(super) async fn migrations_are_idempotent(ctx: Ctx) {
    let a = "https://a.example";
    let peer = ctx.store.upsert_seed_peer(a, None).await.unwrap();
    ctx.store
        .replace_peer_catalog(peer.id, vec![tool(a, "p", "x", 1)])
        .await
        .unwrap();
    let peer = ctx.store.get_peer(peer.id).await.unwrap();
    let version = ctx.store.catalog_version().await.unwrap();
    ctx.store.migrate().await.unwrap();
    ctx.store.migrate().await.unwrap();

    let again = ctx.reconnect().await;
    again.migrate().await.unwrap();
    assert_eq!(again.get_peer_by_url(a).await.unwrap(), peer);
    assert_eq!(again.catalog_version().await.unwrap(), version);
    assert_eq!(again.count_capabilities().await.unwrap(), 1);
    assert_eq!(ctx.count("SELECT COUNT(*) FROM catalog_state").await, 1);
    again.close().await;
}

pub(super) async fn seed_upsert_normalises_and_promotes(ctx: Ctx) {
    let store = &ctx.store;
    let seed = store
        .upsert_seed_peer("HTTPS://A.Example:443/some/path", None)
        .await
        .unwrap();
    assert_eq!(seed.url, "https://a.example");
    assert_eq!(
        seed.well_known_url,
        "https://a.example/.well-known/ai-market.json"
    );
    assert_eq!(
        (seed.state, seed.trusted, seed.depth),
        (PeerState::Active, true, 0)
    );
    assert_eq!((seed.pinned_key.as_deref(), seed.key_source), (None, None));
    assert_eq!(seed.trust_score, 0.5);
    assert_eq!(seed.bond_usd, 0.0);
    assert!(seed.categories.is_empty());

    // A discovered pending peer that the operator then seeds with a key.
    let (found, inserted) = store
        .insert_peer_if_absent(&new_peer("https://b.example", PeerState::Pending))
        .await
        .unwrap();
    assert!(inserted);
    let promoted = store
        .upsert_seed_peer("https://b.example/", Some("KEY-B"))
        .await
        .unwrap();
    assert_eq!(promoted.id, found.id);
    assert_eq!(
        (promoted.state, promoted.trusted, promoted.depth),
        (PeerState::Active, true, 0)
    );
    assert_eq!(promoted.pinned_key.as_deref(), Some("KEY-B"));
    assert_eq!(promoted.key_source, Some(KeySource::Operator));

    // Same seed again: nothing to change, so nothing is written.
    let same = store
        .upsert_seed_peer("https://b.example", Some("KEY-B"))
        .await
        .unwrap();
    assert_eq!(same, promoted);
    // A seed without a key keeps the pinned one.
    let kept = store
        .upsert_seed_peer("https://b.example", None)
        .await
        .unwrap();
    assert_eq!(kept, promoted);
    // A different operator key replaces it.
    let rekeyed = store
        .upsert_seed_peer("https://b.example", Some("KEY-B2"))
        .await
        .unwrap();
    assert_eq!(rekeyed.pinned_key.as_deref(), Some("KEY-B2"));

    assert_eq!(store.list_peers(None).await.unwrap().len(), 2);
    for bad in ["ftp://c.example", "c.example", "https://user:pw@c.example"] {
        let err = store.upsert_seed_peer(bad, None).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidPeerUrl { .. }),
            "{bad}: {err}"
        );
    }
    assert_eq!(store.list_peers(None).await.unwrap().len(), 2);
}

pub(super) async fn insert_if_absent_leaves_known_peers_alone(ctx: Ctx) {
    let store = &ctx.store;
    let first = NewPeer {
        name: Some("First".into()),
        well_known_url: Some("https://a.example/custom/ai-market.json".into()),
        pinned_key: Some(("K1".into(), KeySource::Announce)),
        ..new_peer("https://a.example", PeerState::Pending)
    };
    let (row, inserted) = store.insert_peer_if_absent(&first).await.unwrap();
    assert!(inserted);
    assert_eq!(row.name.as_deref(), Some("First"));
    assert_eq!(
        row.well_known_url,
        "https://a.example/custom/ai-market.json"
    );
    assert_eq!(row.key_source, Some(KeySource::Announce));
    assert_eq!(row.depth, 2);

    let hostile = NewPeer {
        name: Some("Renamed".into()),
        state: PeerState::Active,
        trusted: true,
        depth: 0,
        pinned_key: Some(("K2".into(), KeySource::Announce)),
        ..first.clone()
    };
    let (again, inserted) = store.insert_peer_if_absent(&hostile).await.unwrap();
    assert!(!inserted);
    assert_eq!(again, row);
    assert_eq!(
        store.list_peers(Some(PeerState::Pending)).await.unwrap(),
        vec![row]
    );
    assert!(
        store
            .list_peers(Some(PeerState::Active))
            .await
            .unwrap()
            .is_empty()
    );
}

pub(super) async fn key_pinning(ctx: Ctx) {
    let store = &ctx.store;
    let peer = store
        .upsert_seed_peer("https://a.example", None)
        .await
        .unwrap();
    let pinned = store
        .pin_key_if_unpinned(peer.id, "K1", KeySource::Tofu)
        .await
        .unwrap();
    assert_eq!(pinned, "K1");
    // Trust on first use never replaces a pinned key: the caller sees the old one.
    let pinned = store
        .pin_key_if_unpinned(peer.id, "K2", KeySource::Tofu)
        .await
        .unwrap();
    assert_eq!(pinned, "K1");
    let row = store.get_peer(peer.id).await.unwrap().unwrap();
    assert_eq!(
        (row.pinned_key.as_deref(), row.key_source),
        (Some("K1"), Some(KeySource::Tofu))
    );
    // The operator re-pins after a rotation.
    store
        .pin_key(peer.id, "K2", KeySource::Operator)
        .await
        .unwrap();
    let row = store.get_peer(peer.id).await.unwrap().unwrap();
    assert_eq!(
        (row.pinned_key.as_deref(), row.key_source),
        (Some("K2"), Some(KeySource::Operator))
    );

    let missing = peer.id + 1000;
    let err = store
        .pin_key(missing, "K", KeySource::Operator)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "peer_not_found");
    let err = store
        .pin_key_if_unpinned(missing, "K", KeySource::Tofu)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "peer_not_found");
}

pub(super) async fn state_changes_show_and_hide_the_catalog(ctx: Ctx) {
    let store = &ctx.store;
    let a = "https://a.example";
    let peer = store.upsert_seed_peer(a, None).await.unwrap();
    let (pending, _) = store
        .insert_peer_if_absent(&new_peer("https://b.example", PeerState::Pending))
        .await
        .unwrap();
    store
        .replace_peer_catalog(peer.id, vec![tool(a, "p", "x", 1), tool(a, "p", "y", 1)])
        .await
        .unwrap();
    let v0 = store.catalog_version().await.unwrap();
    assert_eq!(store.list_peers(None).await.unwrap().len(), 2);
    let active = store.list_peers(Some(PeerState::Active)).await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].url, a);

    let hidden = store
        .set_peer_state(peer.id, PeerState::Pending)
        .await
        .unwrap();
    assert_eq!(sorted(hidden.removed), keys(a, &["x", "y"]));
    assert!(hidden.added.is_empty() && hidden.changed.is_empty());
    assert_eq!(hidden.version, v0 + 1);
    assert!(store.list_capabilities(0, 100).await.unwrap().is_empty());
    assert!(
        store
            .get_capability(Some(a), "p", "x")
            .await
            .unwrap()
            .is_empty()
    );

    let again = store
        .set_peer_state(peer.id, PeerState::Pending)
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(again.version, v0 + 1);

    let shown = store
        .set_peer_state(peer.id, PeerState::Active)
        .await
        .unwrap();
    assert_eq!(sorted(shown.added), keys(a, &["x", "y"]));
    assert_eq!(shown.version, v0 + 2);
    assert_eq!(store.list_capabilities(0, 100).await.unwrap().len(), 2);

    // Approving a peer without capabilities still changes the active set.
    let approved = store
        .set_peer_state(pending.id, PeerState::Active)
        .await
        .unwrap();
    assert!(approved.is_empty());
    assert_eq!(approved.version, v0 + 3);

    let err = store
        .set_peer_state(pending.id + 1000, PeerState::Active)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "peer_not_found");
}

pub(super) async fn crawl_outcomes_and_failed_crawl_keeps_catalog(ctx: Ctx) {
    let store = &ctx.store;
    let a = "https://a.example";
    let peer = store.upsert_seed_peer(a, None).await.unwrap();
    store
        .replace_peer_catalog(peer.id, vec![tool(a, "p", "x", 1)])
        .await
        .unwrap();
    let success = CrawlSuccess {
        name: Some("Hub A".into()),
        manifest_url: Some(format!("{a}/ai-market/v2/manifest")),
        well_known: Validators {
            etag: Some("\"wk1\"".into()),
            last_modified: None,
        },
        manifest: Validators {
            etag: Some("W/\"m1\"".into()),
            last_modified: Some("Tue, 01 Jul 2025 10:00:00 GMT".into()),
        },
        categories: vec!["nlp".into(), "перевод".into()],
    };
    store.record_crawl_success(peer.id, &success).await.unwrap();
    let ok = store.get_peer(peer.id).await.unwrap().unwrap();
    assert_eq!(ok.name.as_deref(), Some("Hub A"));
    assert_eq!(ok.manifest_url, success.manifest_url);
    assert_eq!(ok.well_known, success.well_known);
    assert_eq!(ok.manifest, success.manifest);
    assert_eq!(ok.categories, success.categories);
    assert!(ok.last_success.is_some() && ok.last_crawl == ok.last_success);
    assert_eq!(ok.first_success, ok.last_success);
    assert_eq!(ok.last_error, None);
    assert_eq!(ok.capability_count, 1);

    let catalog = store.list_capabilities(0, 10).await.unwrap();
    let version = store.catalog_version().await.unwrap();
    let long = "signature does not verify: ".repeat(200);
    store.record_crawl_error(peer.id, &long).await.unwrap();
    let failed = store.get_peer(peer.id).await.unwrap().unwrap();
    let error = failed.last_error.clone().unwrap();
    assert_eq!(error.chars().count(), 2000);
    assert!(long.starts_with(&error));
    // The last good catalog, validators and success time stay.
    assert_eq!(failed.manifest, ok.manifest);
    assert_eq!(failed.last_success, ok.last_success);
    assert_eq!(failed.capability_count, 1);
    assert_eq!(store.list_capabilities(0, 10).await.unwrap(), catalog);
    assert_eq!(store.catalog_version().await.unwrap(), version);

    // A later success clears the error but keeps the first success time.
    store.record_crawl_success(peer.id, &success).await.unwrap();
    let recovered = store.get_peer(peer.id).await.unwrap().unwrap();
    assert_eq!(recovered.last_error, None);
    assert_eq!(recovered.first_success, ok.first_success);

    let missing = peer.id + 1000;
    assert_eq!(
        store
            .record_crawl_error(missing, "x")
            .await
            .unwrap_err()
            .code(),
        "peer_not_found"
    );
    assert_eq!(
        store
            .record_crawl_success(missing, &success)
            .await
            .unwrap_err()
            .code(),
        "peer_not_found"
    );
}

pub(super) async fn not_modified_is_one_batched_write(ctx: Ctx) {
    let store = &ctx.store;
    let mut ids = Vec::new();
    for i in 0..3 {
        let url = format!("https://p{i}.example");
        let peer = store.upsert_seed_peer(&url, None).await.unwrap();
        store
            .replace_peer_catalog(peer.id, vec![tool(&url, "p", "x", 1)])
            .await
            .unwrap();
        store.record_crawl_error(peer.id, "timeout").await.unwrap();
        ids.push(peer.id);
    }
    let version = store.catalog_version().await.unwrap();
    let catalog = store.list_capabilities(0, 10).await.unwrap();

    let updated = store
        .record_not_modified(&[ids[0], ids[2], ids[2] + 1000])
        .await
        .unwrap();
    assert_eq!(updated, 2);
    for (id, refreshed) in [(ids[0], true), (ids[1], false), (ids[2], true)] {
        let peer = store.get_peer(id).await.unwrap().unwrap();
        assert_eq!(peer.last_error.is_none(), refreshed, "peer {id}");
        assert_eq!(peer.last_success.is_some(), refreshed, "peer {id}");
    }
    assert_eq!(store.catalog_version().await.unwrap(), version);
    assert_eq!(store.record_not_modified(&[]).await.unwrap(), 0);
    // Rows are untouched; only their confirmed `last_seen` may move forward.
    let after = store.list_capabilities(0, 10).await.unwrap();
    assert_eq!(after.len(), catalog.len());
    for (before, after) in catalog.iter().zip(&after) {
        assert_eq!(
            (&before.content_hash, before.first_seen),
            (&after.content_hash, after.first_seen)
        );
        assert!(after.last_seen >= before.last_seen);
    }
}

pub(super) async fn delete_peer_cascades(ctx: Ctx) {
    let store = &ctx.store;
    let a = "https://a.example";
    let b = "https://b.example";
    let peer = store.upsert_seed_peer(a, None).await.unwrap();
    let other = store.upsert_seed_peer(b, None).await.unwrap();
    store
        .replace_peer_catalog(peer.id, vec![tool(a, "p", "x", 1), tool(a, "p", "y", 1)])
        .await
        .unwrap();
    store
        .replace_peer_catalog(other.id, vec![tool(b, "p", "z", 1)])
        .await
        .unwrap();
    let success = CrawlSuccess {
        manifest: Validators {
            etag: Some("\"b\"".into()),
            last_modified: None,
        },
        ..CrawlSuccess::default()
    };
    store
        .record_crawl_success(other.id, &success)
        .await
        .unwrap();
    let version = store.catalog_version().await.unwrap();

    let diff = store.delete_peer(peer.id).await.unwrap();
    assert_eq!(sorted(diff.removed), keys(a, &["x", "y"]));
    assert_eq!(diff.version, version + 1);
    assert_eq!(store.get_peer(peer.id).await.unwrap(), None);
    assert_eq!(
        ctx.count("SELECT COUNT(*) FROM capabilities").await,
        1,
        "capabilities cascade with their peer"
    );
    // Other peers refetch their manifests next crawl (they may re-export the removed tools).
    let other = store.get_peer(other.id).await.unwrap().unwrap();
    assert_eq!(other.manifest, Validators::default());
    assert_eq!(other.capability_count, 1);

    let err = store.delete_peer(peer.id).await.unwrap_err();
    assert_eq!(err.code(), "peer_not_found");
    // A new peer on the same URL gets a new id.
    let back = store.upsert_seed_peer(a, None).await.unwrap();
    assert_ne!(back.id, peer.id);
}

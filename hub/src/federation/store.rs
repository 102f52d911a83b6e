//! The admission work's own statements on the peers table and its tables (`peer_previews`,
//! `inbound_crawlers`); the shared peer reads and writes stay in `crate::store`.

use crate::store::{KeySource, Store, StoreError, now_ms, on_pool};

/// Forgets a peer's HTTP validators, so the next crawl fetches and verifies both documents
/// in full (after its key changed, a 304 must not stand in for verification).
const CLEAR_VALIDATORS: &str = "well_known_etag = NULL, well_known_last_modified = NULL, \
     manifest_etag = NULL, manifest_last_modified = NULL";

/// Number of pending peers.
pub(super) async fn count_pending(store: &Store) -> Result<i64, StoreError> {
    Ok(on_pool!(store, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM peers WHERE state = 'pending'")
            .fetch_one(pool)
            .await?
    }))
}

/// Pins `key` as the operator's and forgets the validators; `false` when no such peer.
pub(super) async fn repin(store: &Store, peer_id: i64, key: &str) -> Result<bool, StoreError> {
    let sql = format!(
        "UPDATE peers SET pinned_key = $2, key_source = $3, {CLEAR_VALIDATORS}, \
         updated_at = $4 WHERE id = $1"
    );
    let done = on_pool!(store, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(peer_id)
            .bind(key)
            .bind(KeySource::Operator.as_str())
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(done > 0)
}

/// Marks a peer operator-trusted (approval, operator announce).
pub(super) async fn set_trusted(store: &Store, peer_id: i64) -> Result<(), StoreError> {
    on_pool!(store, |pool| {
        sqlx::query(
            "UPDATE peers SET trusted = TRUE, updated_at = $2 WHERE id = $1 AND NOT trusted",
        )
        .bind(peer_id)
        .bind(now_ms())
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Sets the well-known URL and name an operator announced (same origin as the peer).
pub(super) async fn set_announced(
    store: &Store,
    peer_id: i64,
    well_known_url: &str,
    name: Option<&str>,
) -> Result<(), StoreError> {
    on_pool!(store, |pool| {
        sqlx::query(
            "UPDATE peers SET well_known_url = $2, name = COALESCE($3, name), updated_at = $4 \
             WHERE id = $1",
        )
        .bind(peer_id)
        .bind(well_known_url)
        .bind(name)
        .bind(now_ms())
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Deletes the preview of a peer (it was admitted; its catalog is now crawled for real).
pub(super) async fn delete_preview(store: &Store, peer_id: i64) -> Result<u64, StoreError> {
    Ok(on_pool!(store, |pool| {
        sqlx::query("DELETE FROM peer_previews WHERE peer_id = $1")
            .bind(peer_id)
            .execute(pool)
            .await?
            .rows_affected()
    }))
}

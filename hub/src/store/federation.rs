//! The federation tables: previews of pending peers (`peer_previews`) and the crawlers that
//! announced themselves (`inbound_crawlers`). The peer writes of admission live with the
//! other peer statements in `peers.rs`.

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;

use super::{Store, StoreError, on_pool};

/// A pending peer's preview as written: what its manifest showed when it last verified, or
/// why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPreview {
    /// The tools shown, as a JSON array.
    pub capabilities: String,
    /// How many tools the manifest listed.
    pub capabilities_count: i64,
    /// The key that signed it.
    pub public_key: Option<String>,
    /// Where the manifest was read.
    pub manifest_url: Option<String>,
    /// When it verified (unix ms).
    pub verified_at: Option<i64>,
    /// When it was checked (unix ms).
    pub checked_at: i64,
    /// Why there is no preview.
    pub error: Option<String>,
}

/// A stored preview of a pending peer.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PreviewRow {
    /// The pending peer.
    pub peer_id: i64,
    /// The tools shown, as a JSON array.
    pub capabilities: String,
    /// How many tools the manifest listed.
    pub capabilities_count: i64,
    /// The key that signed it.
    pub public_key: Option<String>,
    /// When it verified (unix ms).
    pub verified_at: Option<i64>,
    /// When it was checked (unix ms).
    pub checked_at: i64,
    /// Why there is no preview.
    pub error: Option<String>,
}

/// One recorded crawler, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct InboundCrawler {
    /// The claimed origin.
    pub url: String,
    /// First seen (unix ms; rendered by the endpoint).
    #[serde(skip)]
    pub first_seen: i64,
    /// Last written (unix ms).
    #[serde(skip)]
    pub last_seen: i64,
    /// Requests counted (writes are throttled, so recent hits may not be counted yet).
    pub hits: i64,
    /// `recorded`, `pending_peer`, `known_peer` or `refused`.
    pub status: String,
    /// Why, for `refused` and `known_peer`.
    pub detail: Option<String>,
}

impl InboundCrawler {
    /// `first_seen` as RFC 3339.
    pub fn first_seen_iso(&self) -> Option<String> {
        rfc3339_from_ms(self.first_seen)
    }

    /// `last_seen` as RFC 3339.
    pub fn last_seen_iso(&self) -> Option<String> {
        rfc3339_from_ms(self.last_seen)
    }
}

/// A stored unix-ms timestamp as RFC 3339 (seconds, `Z`).
pub fn rfc3339_from_ms(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

impl Store {
    /// Writes the preview of a peer that is still pending (nothing for any other peer).
    pub async fn write_peer_preview(
        &self,
        peer_id: i64,
        preview: &NewPreview,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO peer_previews (peer_id, capabilities, \
             capabilities_count, public_key, manifest_url, verified_at, checked_at, error) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
             WHERE EXISTS (SELECT 1 FROM peers WHERE id = $1 AND state = 'pending') \
             ON CONFLICT (peer_id) DO UPDATE SET capabilities = excluded.capabilities, \
             capabilities_count = excluded.capabilities_count, \
             public_key = excluded.public_key, manifest_url = excluded.manifest_url, \
             verified_at = excluded.verified_at, checked_at = excluded.checked_at, \
             error = excluded.error";
        on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(peer_id)
                .bind(&preview.capabilities)
                .bind(preview.capabilities_count)
                .bind(&preview.public_key)
                .bind(&preview.manifest_url)
                .bind(preview.verified_at)
                .bind(preview.checked_at)
                .bind(&preview.error)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The previews of every pending peer.
    pub async fn pending_peer_previews(&self) -> Result<Vec<PreviewRow>, StoreError> {
        const SQL: &str = "SELECT v.peer_id, v.capabilities, v.capabilities_count, \
             v.public_key, v.verified_at, v.checked_at, v.error FROM peer_previews v \
             JOIN peers p ON p.id = v.peer_id WHERE p.state = 'pending'";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).fetch_all(pool).await?
        }))
    }

    /// Up to `limit` pending peers without a preview checked since `checked_before` (unix
    /// ms), by id.
    pub async fn peers_due_for_preview(
        &self,
        checked_before: i64,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        const SQL: &str = "SELECT p.id FROM peers p \
             LEFT JOIN peer_previews v ON v.peer_id = p.id \
             WHERE p.state = 'pending' AND (v.peer_id IS NULL OR v.checked_at < $1) \
             ORDER BY p.id LIMIT $2";
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(SQL)
                .bind(checked_before)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Deletes the preview of a peer (it was admitted); how many rows went.
    pub async fn delete_peer_preview(&self, peer_id: i64) -> Result<u64, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query("DELETE FROM peer_previews WHERE peer_id = $1")
                .bind(peer_id)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Number of recorded inbound crawlers.
    pub async fn count_inbound_crawlers(&self) -> Result<i64, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM inbound_crawlers")
                .fetch_one(pool)
                .await?
        }))
    }

    /// Adds `hits` to a recorded crawler seen at `now`; `false` when it is not recorded.
    pub async fn count_inbound_hits(
        &self,
        origin: &str,
        hits: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str =
            "UPDATE inbound_crawlers SET hits = hits + $2, last_seen = $3 WHERE url = $1";
        let updated = on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(origin)
                .bind(hits)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(updated > 0)
    }

    /// Records a crawler first seen at `now` (nothing when it already is).
    pub async fn insert_inbound_crawler(
        &self,
        origin: &str,
        now: i64,
        hits: i64,
        status: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO inbound_crawlers (url, first_seen, last_seen, hits, \
             status, detail) VALUES ($1, $2, $2, $3, $4, $5) ON CONFLICT (url) DO NOTHING";
        on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(origin)
                .bind(now)
                .bind(hits)
                .bind(status)
                .bind(detail)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The recorded crawlers, most recent first (at most `limit`).
    pub async fn list_inbound_crawlers(
        &self,
        limit: i64,
    ) -> Result<Vec<InboundCrawler>, StoreError> {
        const SQL: &str = "SELECT url, first_seen, last_seen, hits, status, detail \
             FROM inbound_crawlers ORDER BY last_seen DESC, url LIMIT $1";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).bind(limit).fetch_all(pool).await?
        }))
    }
}

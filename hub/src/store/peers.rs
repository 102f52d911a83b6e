//! Peers: the hubs and providers this hub crawls, their admission state, pinned keys and
//! per-document HTTP validators.

use super::catalog::{CURRENT_VERSION, CatalogDiff, CatalogVersionTx as _};
use super::peer_types::RawPeer;
use super::{
    BeginWrite as _, CapabilityKey, CrawlSuccess, KeySource, NewPeer, PeerRow, PeerState, Store,
    StoreError, normalize_origin, now_ms, on_pool, on_pool_write,
};

/// Longest `last_error` kept; longer messages are cut at a character boundary.
const MAX_ERROR_CHARS: usize = 2000;
/// Ids per `UPDATE … WHERE id IN (…)` statement (well under both engines' parameter limits).
const ID_CHUNK: usize = 500;
/// Forgets the other active peers' validators so the next crawl refetches their manifests.
/// Needed when a peer's tools leave the catalog: a hub that re-exports them lost its rows to
/// the direct peer earlier, and would otherwise answer 304 and never list them again.
const FORGET_VALIDATORS: &str = "UPDATE peers SET well_known_etag = NULL, \
     well_known_last_modified = NULL, manifest_etag = NULL, manifest_last_modified = NULL \
     WHERE id <> $1 AND state = 'active'";

macro_rules! peer_columns {
    () => {
        "id, url, name, well_known_url, manifest_url, pinned_key, key_source, state, trusted, \
         depth, first_seen, last_crawl, last_success, first_success, well_known_etag, \
         well_known_last_modified, manifest_etag, manifest_last_modified, last_error, \
         capability_count, categories, bond_usd, trust_score, updated_at"
    };
}

fn default_well_known(origin: &str) -> String {
    format!("{origin}/.well-known/ai-market.json")
}

/// `Ok` when an `UPDATE … WHERE id = $1` touched the peer, `PeerNotFound` otherwise.
fn peer_updated(rows_affected: u64, peer_id: i64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        return Err(StoreError::peer_not_found(peer_id));
    }
    Ok(())
}

fn truncate_error(error: &str) -> &str {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => &error[..cut],
        None => error,
    }
}

impl Store {
    /// Records an operator seed: inserts it as an active, trusted, depth-0 peer, or promotes an
    /// existing peer to that (operator seeds are never demoted by a crawl). A `pinned_key`
    /// (from `URL=KEY`) is pinned with source `operator`, replacing any other key; without one
    /// the stored key is kept. Writes nothing when the row already says all that.
    pub async fn upsert_seed_peer(
        &self,
        url: &str,
        pinned_key: Option<&str>,
    ) -> Result<PeerRow, StoreError> {
        const SQL: &str = concat!(
            "INSERT INTO peers (url, well_known_url, pinned_key, key_source, state, trusted, \
             depth, first_seen, updated_at) \
             VALUES ($1, $2, $3, $4, 'active', TRUE, 0, $5, $5) \
             ON CONFLICT (url) DO UPDATE SET state = 'active', trusted = TRUE, depth = 0, \
             pinned_key = COALESCE(excluded.pinned_key, peers.pinned_key), \
             key_source = COALESCE(excluded.key_source, peers.key_source), \
             updated_at = excluded.updated_at \
             WHERE peers.state <> 'active' OR NOT peers.trusted OR peers.depth <> 0 \
             OR (excluded.pinned_key IS NOT NULL AND (peers.pinned_key IS DISTINCT FROM \
             excluded.pinned_key OR peers.key_source IS DISTINCT FROM 'operator')) \
             RETURNING ",
            peer_columns!()
        );
        let origin = normalize_origin(url)?;
        let key_source = pinned_key.map(|_| KeySource::Operator.as_str());
        let row: Option<RawPeer> = on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(&origin)
                .bind(default_well_known(&origin))
                .bind(pinned_key)
                .bind(key_source)
                .bind(now_ms())
                .fetch_optional(pool)
                .await?
        });
        match row {
            Some(row) => row.try_into(),
            None => self
                .get_peer_by_url(&origin)
                .await?
                .ok_or_else(|| StoreError::peer_not_found(&origin)),
        }
    }

    /// Inserts a peer unless its origin is already known. Returns the stored row and whether
    /// it was inserted; an existing peer is returned unchanged (an announcement about a known
    /// peer must change none of its fields, spec §2.4).
    pub async fn insert_peer_if_absent(
        &self,
        peer: &NewPeer,
    ) -> Result<(PeerRow, bool), StoreError> {
        const SQL: &str = concat!(
            "INSERT INTO peers (url, well_known_url, name, state, trusted, depth, pinned_key, \
             key_source, first_seen, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (url) DO NOTHING RETURNING ",
            peer_columns!()
        );
        let origin = normalize_origin(&peer.url)?;
        let well_known = match &peer.well_known_url {
            Some(url) => url.clone(),
            None => default_well_known(&origin),
        };
        let (key, source) = match &peer.pinned_key {
            Some((key, source)) => (Some(key.as_str()), Some(source.as_str())),
            None => (None, None),
        };
        let row: Option<RawPeer> = on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(&origin)
                .bind(&well_known)
                .bind(peer.name.as_deref())
                .bind(peer.state.as_str())
                .bind(peer.trusted)
                .bind(peer.depth)
                .bind(key)
                .bind(source)
                .bind(now_ms())
                .fetch_optional(pool)
                .await?
        });
        match row {
            Some(row) => Ok((row.try_into()?, true)),
            None => {
                let existing = self
                    .get_peer_by_url(&origin)
                    .await?
                    .ok_or_else(|| StoreError::peer_not_found(&origin))?;
                Ok((existing, false))
            }
        }
    }

    /// The peer with this id, if any.
    pub async fn get_peer(&self, peer_id: i64) -> Result<Option<PeerRow>, StoreError> {
        const SQL: &str = concat!("SELECT ", peer_columns!(), " FROM peers WHERE id = $1");
        let row: Option<RawPeer> = on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(peer_id)
                .fetch_optional(pool)
                .await?
        });
        row.map(PeerRow::try_from).transpose()
    }

    /// The peer on this URL's origin, if any. Fails only for a URL that has no origin.
    pub async fn get_peer_by_url(&self, url: &str) -> Result<Option<PeerRow>, StoreError> {
        const SQL: &str = concat!("SELECT ", peer_columns!(), " FROM peers WHERE url = $1");
        let origin = normalize_origin(url)?;
        let row: Option<RawPeer> = on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(&origin)
                .fetch_optional(pool)
                .await?
        });
        row.map(PeerRow::try_from).transpose()
    }

    /// All peers, or those in one state, ordered by URL.
    pub async fn list_peers(&self, state: Option<PeerState>) -> Result<Vec<PeerRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            peer_columns!(),
            " FROM peers WHERE $1 IS NULL OR state = $1 ORDER BY url"
        );
        let state = state.map(PeerState::as_str);
        let rows: Vec<RawPeer> = on_pool!(self, |pool| {
            sqlx::query_as(SQL).bind(state).fetch_all(pool).await?
        });
        rows.into_iter().map(PeerRow::try_from).collect()
    }

    /// Each active peer's last successful crawl (unix ms), by peer id: what the manifest's
    /// `by_hub.last_crawl` takes as a confirmation of the peer's listing.
    pub async fn active_peer_successes(
        &self,
    ) -> Result<std::collections::HashMap<i64, i64>, StoreError> {
        const SQL: &str = "SELECT id, last_success FROM peers \
             WHERE state = 'active' AND last_success IS NOT NULL";
        let rows: Vec<(i64, i64)> =
            on_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await?);
        Ok(rows.into_iter().collect())
    }

    /// Moves a peer between `pending` and `active`. Its stored capabilities become visible
    /// (`added`) or hidden (`removed`) accordingly, so the catalog version is bumped and the
    /// diff names them. Setting the current state again writes nothing.
    pub async fn set_peer_state(
        &self,
        peer_id: i64,
        state: PeerState,
    ) -> Result<CatalogDiff, StoreError> {
        const GET: &str = "SELECT state FROM peers WHERE id = $1";
        const SET: &str = "UPDATE peers SET state = $2, updated_at = $3 WHERE id = $1";
        const KEYS: &str =
            "SELECT origin, product_id, capability_id FROM capabilities WHERE peer_id = $1";
        on_pool_write!(self, |pool| {
            let current: Option<String> = sqlx::query_scalar(GET)
                .bind(peer_id)
                .fetch_optional(pool)
                .await?;
            let current: PeerState = current
                .ok_or_else(|| StoreError::peer_not_found(peer_id))?
                .parse()?;
            if current == state {
                let version = sqlx::query_scalar(CURRENT_VERSION).fetch_one(pool).await?;
                return Ok(CatalogDiff::unchanged(version));
            }
            let mut tx = pool.begin_write().await?;
            let updated = sqlx::query(SET)
                .bind(peer_id)
                .bind(state.as_str())
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::peer_not_found(peer_id));
            }
            let keys: Vec<CapabilityKey> = sqlx::query_as(KEYS)
                .bind(peer_id)
                .fetch_all(&mut *tx)
                .await?;
            let mut diff = CatalogDiff::unchanged(0);
            match state {
                PeerState::Active => diff.added = keys,
                PeerState::Pending => diff.removed = keys,
            }
            if !diff.removed.is_empty() {
                sqlx::query(FORGET_VALIDATORS)
                    .bind(peer_id)
                    .execute(&mut *tx)
                    .await?;
            }
            // The well-known `peers` array lists active peers, so any state change is a
            // catalog change even when the peer has no capabilities.
            diff.version = tx.bump_catalog_version().await?;
            tx.commit().await?;
            Ok(diff)
        })
    }

    /// Pins `key` for the peer with the given source, replacing any pinned key (operator
    /// repin after a legitimate rotation, or an operator seed's key).
    pub async fn pin_key(
        &self,
        peer_id: i64,
        key: &str,
        source: KeySource,
    ) -> Result<(), StoreError> {
        const SQL: &str =
            "UPDATE peers SET pinned_key = $2, key_source = $3, updated_at = $4 WHERE id = $1";
        let done = on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(peer_id)
                .bind(key)
                .bind(source.as_str())
                .bind(now_ms())
                .execute(pool)
                .await?
                .rows_affected()
        });
        peer_updated(done, peer_id)
    }

    /// Pins `key` as the operator's and forgets the peer's validators, so the next crawl
    /// fetches and verifies both documents in full (after its key changed, a 304 must not
    /// stand in for verification); `false` when there is no such peer.
    pub async fn repin_peer(&self, peer_id: i64, key: &str) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE peers SET pinned_key = $2, key_source = $3, \
             well_known_etag = NULL, well_known_last_modified = NULL, manifest_etag = NULL, \
             manifest_last_modified = NULL, updated_at = $4 WHERE id = $1";
        let done = on_pool!(self, |pool| {
            sqlx::query(SQL)
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
    pub async fn set_peer_trusted(&self, peer_id: i64) -> Result<(), StoreError> {
        const SQL: &str =
            "UPDATE peers SET trusted = TRUE, updated_at = $2 WHERE id = $1 AND NOT trusted";
        on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(peer_id)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Sets the well-known URL and name an operator announced for a peer (keeping the name
    /// when none is given).
    pub async fn set_peer_announced(
        &self,
        peer_id: i64,
        well_known_url: &str,
        name: Option<&str>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE peers SET well_known_url = $2, name = COALESCE($3, name), \
             updated_at = $4 WHERE id = $1";
        on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(peer_id)
                .bind(well_known_url)
                .bind(name)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Number of pending peers.
    pub async fn count_pending_peers(&self) -> Result<i64, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM peers WHERE state = 'pending'")
                .fetch_one(pool)
                .await?
        }))
    }

    /// Trust on first use: pins `key` only if the peer has no pinned key yet. Returns the key
    /// pinned afterwards, which differs from `key` when another key was already pinned (the
    /// caller then rejects the crawl as a key change).
    pub async fn pin_key_if_unpinned(
        &self,
        peer_id: i64,
        key: &str,
        source: KeySource,
    ) -> Result<String, StoreError> {
        const PIN: &str = "UPDATE peers SET pinned_key = $2, key_source = $3, updated_at = $4 \
                           WHERE id = $1 AND pinned_key IS NULL";
        const GET: &str = "SELECT pinned_key FROM peers WHERE id = $1";
        let pinned: Option<Option<String>> = on_pool!(self, |pool| {
            sqlx::query(PIN)
                .bind(peer_id)
                .bind(key)
                .bind(source.as_str())
                .bind(now_ms())
                .execute(pool)
                .await?;
            sqlx::query_scalar(GET)
                .bind(peer_id)
                .fetch_optional(pool)
                .await?
        });
        pinned
            .ok_or_else(|| StoreError::peer_not_found(peer_id))?
            .ok_or_else(|| StoreError::Corrupt(format!("peer {peer_id} lost its pinned key")))
    }

    /// Records a successful, verified crawl (HTTP 200): name, manifest URL, validators,
    /// categories, `last_crawl` = `last_success` = now, `first_success` if unset, and clears
    /// `last_error`. The catalog itself is written by [`Store::replace_peer_catalog`].
    pub async fn record_crawl_success(
        &self,
        peer_id: i64,
        crawl: &CrawlSuccess,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE peers SET name = COALESCE($2, name), \
             manifest_url = COALESCE($3, manifest_url), \
             well_known_etag = $4, well_known_last_modified = $5, \
             manifest_etag = $6, manifest_last_modified = $7, categories = $8, \
             last_crawl = $9, last_success = $9, first_success = COALESCE(first_success, $9), \
             last_error = NULL, updated_at = $9 WHERE id = $1";
        let categories = serde_json::to_string(&crawl.categories)
            .map_err(|e| StoreError::Corrupt(format!("categories: {e}")))?;
        let done = on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(peer_id)
                .bind(crawl.name.as_deref())
                .bind(crawl.manifest_url.as_deref())
                .bind(crawl.well_known.etag.as_deref())
                .bind(crawl.well_known.last_modified.as_deref())
                .bind(crawl.manifest.etag.as_deref())
                .bind(crawl.manifest.last_modified.as_deref())
                .bind(&categories)
                .bind(now_ms())
                .execute(pool)
                .await?
                .rows_affected()
        });
        peer_updated(done, peer_id)
    }

    /// Records a failed crawl: `last_crawl` = now and `last_error` (cut to 2,000 characters).
    /// The peer's catalog and validators stay as they were (last good catalog wins).
    pub async fn record_crawl_error(&self, peer_id: i64, error: &str) -> Result<(), StoreError> {
        const SQL: &str =
            "UPDATE peers SET last_crawl = $2, last_error = $3, updated_at = $2 WHERE id = $1";
        let done = on_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(peer_id)
                .bind(now_ms())
                .bind(truncate_error(error))
                .execute(pool)
                .await?
                .rows_affected()
        });
        peer_updated(done, peer_id)
    }

    /// Marks peers whose documents answered 304 Not Modified as freshly (and successfully)
    /// crawled, clearing `last_error`.
    ///
    /// Design: a 304 needs no per-peer write. The crawl job collects the ids of peers that
    /// answered 304 and calls this **once per crawl run** (one statement per 500 ids), or not
    /// at all if it does not care about `last_crawl` freshness. Re-crawling 100 unchanged
    /// peers therefore costs no catalog write, no capability row touched and no catalog
    /// version bump; only this single batched timestamp update plus the run's own
    /// bookkeeping row. Returns the number of peers updated.
    pub async fn record_not_modified(&self, peer_ids: &[i64]) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut updated = 0;
        for chunk in peer_ids.chunks(ID_CHUNK) {
            updated += on_pool!(self, |pool| {
                let mut query = sqlx::QueryBuilder::new("UPDATE peers SET last_crawl = ");
                query
                    .push_bind(now)
                    .push(", last_success = ")
                    .push_bind(now);
                query
                    .push(", first_success = COALESCE(first_success, ")
                    .push_bind(now);
                query
                    .push("), last_error = NULL, updated_at = ")
                    .push_bind(now);
                query.push(" WHERE id IN (");
                let mut ids = query.separated(", ");
                for id in chunk {
                    ids.push_bind(*id);
                }
                query.push(")");
                query.build().execute(pool).await?.rows_affected()
            });
        }
        Ok(updated)
    }

    /// Deletes a peer and (by cascade) every capability it listed. Returns the removed keys
    /// of an active peer's catalog; the catalog version is bumped.
    pub async fn delete_peer(&self, peer_id: i64) -> Result<CatalogDiff, StoreError> {
        const KEYS: &str = "SELECT c.origin, c.product_id, c.capability_id \
             FROM capabilities c JOIN peers p ON p.id = c.peer_id \
             WHERE c.peer_id = $1 AND p.state = 'active'";
        const DELETE: &str = "DELETE FROM peers WHERE id = $1";
        on_pool_write!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let removed: Vec<CapabilityKey> = sqlx::query_as(KEYS)
                .bind(peer_id)
                .fetch_all(&mut *tx)
                .await?;
            let deleted = sqlx::query(DELETE)
                .bind(peer_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(StoreError::peer_not_found(peer_id));
            }
            if !removed.is_empty() {
                sqlx::query(FORGET_VALIDATORS)
                    .bind(peer_id)
                    .execute(&mut *tx)
                    .await?;
            }
            let version = tx.bump_catalog_version().await?;
            tx.commit().await?;
            Ok(CatalogDiff {
                version,
                removed,
                ..CatalogDiff::unchanged(version)
            })
        })
    }
}

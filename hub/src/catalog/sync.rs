//! Keeping the index in step with the store, and the manifest with both.
//!
//! Two tasks per hub ([`Catalog::spawn_sync`]) follow `AppState::subscribe_catalog`:
//!
//! 1. index: apply the update's keys when the indexed version lies between its `since` and
//!    its version (also when it does not move the version: trust changes republish keys
//!    without a catalog change); nothing to do when the index is already at the update's
//!    version; otherwise (an update was missed) rebuild from the store. The rebuild reads the
//!    version *before* the rows, so a change racing it is applied again by the next update,
//!    which is idempotent, rather than lost;
//! 2. manifest: brought to every update (incrementally when the update's `since` covers it,
//!    by the same rule), and rebuilt in full every `manifest::REFRESH_INTERVAL`.
//!
//! A failed sync is retried after [`RETRY_AFTER`]. Rebuilds stream the store in pages
//! through a bounded channel into the blocking index writer, so memory stays flat at any
//! catalog size. Next to the index, `index.settings.json` records what the documents were
//! computed with (routing fee, mapping version); a mismatch forces a rebuild, because routed
//! prices are stored in the index.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aimarket_indexer::IndexedCapability;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::manifest::REFRESH_INTERVAL;
use super::rows::indexed;
use super::{Catalog, CatalogError};
use crate::crawl::CatalogUpdate;
use crate::store::{CapabilityKey, CapabilityRow};

/// Delay before a failed sync is retried.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Rows per store page during a rebuild.
const REBUILD_PAGE: u32 = 2_000;
/// Pages buffered between the store reader and the index writer.
const REBUILD_BUFFER: usize = 2;
/// File next to the index dir recording the settings its documents were computed with.
const FINGERPRINT_FILE: &str = "index.settings.json";
/// Bump when `rows::indexed` changes what it stores, so old indexes are rebuilt.
const MAPPING_VERSION: u32 = 1;
/// Version committed to mark an index that must be rebuilt: never a store version.
pub(super) const STALE_VERSION: u64 = u64::MAX;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Fingerprint {
    mapping_version: u32,
    routing_fee_bps: u32,
}

fn fingerprint_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join(FINGERPRINT_FILE)
}

/// True when the index next to `data_dir` was built with `routing_fee_bps` by this mapping.
pub(super) fn fingerprint_matches(data_dir: &Path, routing_fee_bps: u32) -> bool {
    let expected = Fingerprint {
        mapping_version: MAPPING_VERSION,
        routing_fee_bps,
    };
    std::fs::read(fingerprint_path(data_dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Fingerprint>(&bytes).ok())
        .is_some_and(|found| found == expected)
}

/// Writes the fingerprint atomically (temporary file, then rename).
fn write_fingerprint(data_dir: &Path, routing_fee_bps: u32) -> Result<(), CatalogError> {
    let path = fingerprint_path(data_dir);
    let temp = data_dir.join(format!("{FINGERPRINT_FILE}.tmp"));
    let body = serde_json::to_vec(&Fingerprint {
        mapping_version: MAPPING_VERSION,
        routing_fee_bps,
    })
    .map_err(|e| CatalogError::Task(e.to_string()))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CatalogError::Io { path, source }
    };
    std::fs::write(&temp, body).map_err(io(&temp))?;
    std::fs::rename(&temp, &path).map_err(io(&path))
}

/// One page of a rebuild, or the end of it.
enum Feed {
    Rows(Vec<CapabilityRow>),
    Done,
}

fn to_u64(version: i64) -> u64 {
    // Store versions start at 0 and only grow.
    u64::try_from(version).unwrap_or(0)
}

/// Sleeps for `wait`, or forever when `None`.
async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, CatalogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CatalogError::Task(e.to_string()))?
}

impl Catalog {
    /// Starts the two sync tasks on `updates`: one keeps the index current, the other the
    /// manifest. They are separate so a manifest build (seconds on a large catalog) never
    /// delays applying the next update: updates that pile up behind a busy task are folded by
    /// the watch channel, and a folded update means a full rebuild. Both end when the catalog
    /// is closed or the sender (the `AppState`) is dropped.
    pub fn spawn_sync(self: &Arc<Self>, updates: watch::Receiver<CatalogUpdate>) -> JoinHandle<()> {
        let manifest = Arc::clone(self);
        let manifest_updates = updates.clone();
        tokio::spawn(async move { manifest.run_manifest(manifest_updates).await });
        let index = Arc::clone(self);
        tokio::spawn(async move { index.run_index_sync(updates).await })
    }

    async fn run_index_sync(&self, mut updates: watch::Receiver<CatalogUpdate>) {
        let mut stop = self.stop.subscribe();
        loop {
            if self.is_closed() {
                return;
            }
            let update = updates.borrow_and_update().clone();
            let wait = match self.sync_index(&update).await {
                Ok(()) => {
                    self.progress.bump();
                    None
                }
                Err(e) => {
                    self.stats.sync_errors.incr();
                    tracing::warn!(error = %e, version = update.version, "search index sync failed; retrying");
                    Some(RETRY_AFTER)
                }
            };
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = sleep_or_forever(wait) => {}
            }
        }
    }

    /// Builds the manifest at startup, brings it to each catalog update (incrementally when
    /// it can, see [`Catalog::update_manifest`]) and rebuilds it in full every
    /// [`REFRESH_INTERVAL`]; a failed build is retried after [`RETRY_AFTER`] (in full).
    async fn run_manifest(&self, mut updates: watch::Receiver<CatalogUpdate>) {
        let mut stop = self.stop.subscribe();
        let mut full = true;
        loop {
            if self.is_closed() {
                return;
            }
            let update = updates.borrow_and_update().clone();
            let built = if full {
                self.refresh_manifest().await
            } else {
                self.update_manifest(&update).await
            };
            let wait = match built {
                Ok(_) => {
                    self.progress.bump();
                    REFRESH_INTERVAL
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot build the manifest; retrying");
                    RETRY_AFTER
                }
            };
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    full = false;
                }
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = tokio::time::sleep(wait) => full = true,
            }
        }
    }

    /// Brings the index to `update` (module docs). Public for tools and tests that drive the
    /// catalog without the background task.
    pub async fn sync_index(&self, update: &CatalogUpdate) -> Result<(), CatalogError> {
        let index = self.index()?;
        let target = to_u64(update.version);
        let indexed = index.indexed_version();
        if !self.needs_rebuild.load(Ordering::Acquire) {
            // The update's keys cover every change since `since`; an index at or after
            // `since` (and not past the update) is brought to `target` by applying them, as
            // re-reading a key is idempotent. This includes updates that do not move the
            // version (a trust change republishes keys without a catalog change).
            let covered = matches!(
                (update.since.map(to_u64), indexed),
                (Some(since), Some(at)) if since <= at && at <= target
            );
            if covered && !(update.is_empty() && indexed == Some(target)) {
                return self.apply_update(update, target).await;
            }
            if indexed == Some(target) {
                return Ok(());
            }
        }
        self.rebuild().await.map(|_| ())
    }

    /// Applies an update's keys: `added` and `changed` are re-read from the store (a key no
    /// longer visible there is removed), `removed` are dropped.
    async fn apply_update(&self, update: &CatalogUpdate, target: u64) -> Result<(), CatalogError> {
        let keys: Vec<CapabilityKey> = update
            .added
            .iter()
            .chain(&update.changed)
            .cloned()
            .collect();
        let rows = self.store.get_capabilities_by_keys(&keys).await?;
        let bps = self.routing_fee_bps;
        let index = self.index()?;
        let removed = update.removed.clone();
        blocking(move || {
            let found: HashSet<String> = rows
                .iter()
                .map(|r| &r.capability)
                .map(|c| IndexedCapability::make_key(&c.origin, &c.product_id, &c.capability_id))
                .collect();
            let removes: Vec<String> = removed
                .iter()
                .chain(&keys)
                .map(|k| IndexedCapability::make_key(&k.origin, &k.product_id, &k.capability_id))
                .filter(|k| !found.contains(k))
                .collect();
            let upserts: Vec<IndexedCapability> =
                rows.into_iter().map(|row| indexed(row, bps)).collect();
            index.apply(upserts, removes, target)?;
            Ok(())
        })
        .await?;
        self.stats.applies.incr();
        tracing::debug!(
            keys = update.len(),
            version = target,
            "search index updated"
        );
        Ok(())
    }

    /// Replaces the index content with the store's visible catalog. Returns the number of
    /// documents indexed.
    pub async fn rebuild(&self) -> Result<usize, CatalogError> {
        let started = std::time::Instant::now();
        let index = self.index()?;
        let version = to_u64(self.store.catalog_version().await?);
        let (tx, mut rx) = mpsc::channel::<Feed>(REBUILD_BUFFER);
        let complete = Arc::new(AtomicBool::new(false));
        let bps = self.routing_fee_bps;
        let writer = {
            let complete = Arc::clone(&complete);
            let index = Arc::clone(&index);
            tokio::task::spawn_blocking(move || {
                let pages = std::iter::from_fn(move || match rx.blocking_recv() {
                    Some(Feed::Rows(rows)) => Some(rows),
                    Some(Feed::Done) => {
                        complete.store(true, Ordering::Release);
                        None
                    }
                    None => None,
                });
                index.rebuild(pages.flatten().map(|row| indexed(row, bps)), version)
            })
        };
        let fed = self.feed(&tx).await;
        drop(tx);
        let written = writer
            .await
            .map_err(|e| CatalogError::Task(e.to_string()))?;
        let count = match (fed, written) {
            (Ok(()), Ok(count)) if complete.load(Ordering::Acquire) => count,
            (fed, written) => {
                // Whatever was committed is partial: make sure it is never taken as current.
                let stale = Arc::clone(&index);
                if let Err(e) =
                    blocking(move || Ok(stale.apply(Vec::new(), Vec::new(), STALE_VERSION)?)).await
                {
                    tracing::error!(error = %e, "cannot mark the partial index stale");
                }
                self.needs_rebuild.store(true, Ordering::Release);
                fed?;
                written?;
                return Err(CatalogError::Interrupted);
            }
        };
        if let Some(dir) = &self.data_dir {
            write_fingerprint(dir, bps)?;
        }
        self.needs_rebuild.store(false, Ordering::Release);
        self.stats.rebuilds.incr();
        tracing::info!(
            documents = count,
            version,
            millis = started.elapsed().as_millis() as u64,
            "search index rebuilt from the store"
        );
        Ok(count)
    }

    /// Sends the whole visible catalog in keyset pages, then [`Feed::Done`].
    async fn feed(&self, tx: &mpsc::Sender<Feed>) -> Result<(), CatalogError> {
        let mut after = 0;
        loop {
            if self.is_closed() {
                return Err(CatalogError::Closed);
            }
            let rows = self.store.list_capabilities(after, REBUILD_PAGE).await?;
            let last = rows.last().map(|r| r.id);
            let short = rows.len() < REBUILD_PAGE as usize;
            if !rows.is_empty() && tx.send(Feed::Rows(rows)).await.is_err() {
                // The writer stopped (it failed); its error is reported by the caller.
                return Ok(());
            }
            match last {
                Some(id) if !short => after = id,
                _ => break,
            }
        }
        // A failed writer has dropped the receiver; its error is the one reported.
        let _ = tx.send(Feed::Done).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fingerprint_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!fingerprint_matches(dir.path(), 100));
        write_fingerprint(dir.path(), 100).unwrap();
        assert!(fingerprint_matches(dir.path(), 100));
        assert!(!fingerprint_matches(dir.path(), 250));
        std::fs::write(fingerprint_path(dir.path()), b"garbage").unwrap();
        assert!(!fingerprint_matches(dir.path(), 100));
    }
}

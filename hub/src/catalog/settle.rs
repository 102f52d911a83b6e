//! Read-your-writes: waiting until search and the manifest both show a catalog version.
//!
//! A write (crawl, operator action) moves the store's catalog version at once, but the index
//! and the manifest follow it in their own tasks ([`super::sync`]), so an answer sent right
//! after the write would describe a catalog that search cannot show yet. The sync tasks bump
//! a progress signal after every index sync and manifest build; [`Catalog::settle`] waits on
//! it (bounded) until both have reached the version the writer saw. Each replica waits for
//! its own index: the signal is local, the versions are the shared store's.

use std::time::Duration;

use tokio::sync::watch;

use super::Catalog;
use super::sync::STALE_VERSION;

/// How long a write's answer waits for search and the manifest at most. A manifest build at
/// 100k capabilities takes about a second, so this leaves ample room while still answering
/// a client whose catalog is stuck (a failing sync) rather than hanging it.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Where search and the manifest stand after [`Catalog::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Settled {
    /// The catalog version both search and the manifest show (the lower of the two);
    /// `None` before the first index sync or manifest build.
    pub catalog_version: Option<i64>,
    /// True when that version reached the one waited for within the bound.
    pub caught_up: bool,
}

/// Progress notifications from the sync tasks.
#[derive(Debug)]
pub struct Progress(watch::Sender<u64>);

impl Default for Progress {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl Progress {
    /// Wakes the waiters after an index sync or a manifest build.
    pub(super) fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Catalog {
    /// The catalog version search answers from, `None` before the first sync (or while the
    /// index is marked for a rebuild).
    pub fn index_version(&self) -> Option<i64> {
        let indexed = self.index().ok()?.indexed_version()?;
        if indexed == STALE_VERSION {
            return None;
        }
        i64::try_from(indexed).ok()
    }

    /// The catalog version the served manifest was built at.
    pub fn manifest_version(&self) -> Option<i64> {
        self.manifest.get().map(|m| m.version)
    }

    /// The version both search and the manifest show.
    pub fn settled_version(&self) -> Option<i64> {
        Some(self.index_version()?.min(self.manifest_version()?))
    }

    /// Waits up to `timeout` until search and the manifest both show catalog version
    /// `target` or a later one; the answer says where they stand either way.
    pub async fn settle(&self, target: i64, timeout: Duration) -> Settled {
        let mut progress = self.progress.0.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        // Bounded by the deadline: each turn waits for a sync task's progress.
        loop {
            progress.borrow_and_update();
            let version = self.settled_version();
            if version.is_some_and(|v| v >= target) {
                return Settled {
                    catalog_version: version,
                    caught_up: true,
                };
            }
            let woke = tokio::time::timeout_at(deadline, progress.changed()).await;
            if !matches!(woke, Ok(Ok(()))) || self.is_closed() {
                return Settled {
                    catalog_version: self.settled_version(),
                    caught_up: false,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::crawl::CatalogUpdate;

    #[tokio::test]
    async fn settles_once_index_and_manifest_reach_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::connect(None, dir.path())
            .await
            .unwrap();
        let key = aimarket_protocol::signing::KeyPair::generate();
        let catalog = crate::catalog::tests::in_memory(&store, &key, "http://127.0.0.1:1");
        // Nothing synced yet: the wait gives up at its bound and says so.
        let settled = catalog.settle(0, Duration::from_millis(30)).await;
        assert_eq!(
            settled,
            Settled {
                catalog_version: None,
                caught_up: false
            }
        );
        let (tx, rx) = watch::channel(CatalogUpdate::initial(0));
        let _task = catalog.spawn_sync(rx);
        let settled = catalog.settle(0, Duration::from_secs(5)).await;
        assert_eq!(settled.catalog_version, Some(0));
        assert!(settled.caught_up);
        // A version the store never reaches is not claimed.
        let settled = catalog.settle(7, Duration::from_millis(50)).await;
        assert_eq!(settled.catalog_version, Some(0));
        assert!(!settled.caught_up);
        drop(tx);
        catalog.close();
    }
}

//! The catalog feed: how changes of the visible catalog reach everything that depends on it.
//!
//! A change (a crawl, an operator action, a trust recompute, another replica's change) is
//! published here once; the feed bumps the catalog generation (caches of published documents
//! and cached invoke offers compare it with the generation they were built at) and hands the
//! [`CatalogUpdate`] to its subscribers (the search index glue, manifest caches). It lives
//! below the HTTP layer so services can publish without the whole hub state.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use crate::crawl::CatalogUpdate;
use crate::replica::SharedState;

/// The catalog generation and the latest change of the visible catalog.
#[derive(Debug)]
pub struct CatalogFeed {
    /// Bumped whenever the catalog or the peer set changes.
    generation: AtomicU64,
    /// The latest change; see [`CatalogFeed::subscribe`].
    updates: watch::Sender<CatalogUpdate>,
    /// Other replicas hear about this replica's changes through it.
    shared: SharedState,
}

impl CatalogFeed {
    /// A feed at the store's catalog version `version` (at startup).
    pub fn new(version: i64, shared: SharedState) -> Self {
        Self {
            generation: AtomicU64::new(0),
            updates: watch::Sender::new(CatalogUpdate::initial(version)),
            shared,
        }
    }

    /// The current catalog generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records that the catalog or peer set changed, so published documents are re-rendered
    /// on their next request.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Subscribes to changes of the visible catalog.
    ///
    /// The value is the latest [`CatalogUpdate`]: the store's catalog version and, when
    /// `since` is set, the keys added, changed and removed since that version. A subscriber
    /// at version `since` applies the lists; any other subscriber (it missed an update, or
    /// `since` is `None`, as at startup) rebuilds from the store. A watch channel keeps only
    /// the latest value, so a slow subscriber never blocks a crawl; it just rebuilds.
    pub fn subscribe(&self) -> watch::Receiver<CatalogUpdate> {
        self.updates.subscribe()
    }

    /// Publishes a change of the visible catalog: tells the other replicas, bumps the
    /// generation and notifies subscribers.
    pub fn publish(&self, update: CatalogUpdate) {
        // The other replicas hear about it too (a no-op without Redis).
        self.shared.announce(&update);
        self.apply(update);
    }

    /// Hands a change to this replica's subscribers without telling other replicas: for
    /// changes another replica made (`crate::replica`).
    pub fn apply(&self, update: CatalogUpdate) {
        self.changed();
        self.updates
            .send_modify(|current| current.supersede(update));
    }

    /// The catalog version of the latest change handed to subscribers.
    pub fn published_version(&self) -> i64 {
        self.updates.borrow().version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_change_bumps_the_generation_and_reaches_subscribers() {
        let feed = CatalogFeed::new(5, SharedState::disabled());
        let mut updates = feed.subscribe();
        assert_eq!(feed.generation(), 0);
        assert_eq!(feed.published_version(), 5);
        assert!(!updates.has_changed().expect("the feed is alive"));

        feed.publish(CatalogUpdate {
            version: 6,
            since: Some(5),
            ..CatalogUpdate::default()
        });
        assert_eq!(feed.generation(), 1);
        assert_eq!(feed.published_version(), 6);
        assert!(updates.has_changed().expect("the feed is alive"));
        assert_eq!(updates.borrow_and_update().since, Some(5));

        // Another replica's change is applied the same way here.
        feed.apply(CatalogUpdate::initial(7));
        assert_eq!(feed.generation(), 2);
        assert_eq!(updates.borrow_and_update().version, 7);

        // A bump alone re-renders documents without telling subscribers.
        feed.changed();
        assert_eq!(feed.generation(), 3);
        assert!(!updates.has_changed().expect("the feed is alive"));
    }

    #[test]
    fn an_older_change_never_replaces_a_newer_one() {
        let feed = CatalogFeed::new(10, SharedState::disabled());
        feed.apply(CatalogUpdate::initial(9));
        assert_eq!(feed.published_version(), 10);
        assert_eq!(feed.generation(), 1);
    }
}

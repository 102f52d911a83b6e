//! What a crawl changed in the visible catalog, as one [`CatalogUpdate`] per run.
//!
//! The store reports a [`CatalogDiff`] per peer; a run folds them into one update so the
//! search index (and any other subscriber of `AppState::subscribe_catalog`) can apply the
//! run's added, changed and removed keys in one go. The fold is only trusted when the diffs
//! form an unbroken chain of catalog versions; if another writer (an operator action, a
//! second replica) bumped the version in between, [`CatalogUpdate::since`] is `None` and
//! subscribers rebuild from the store instead.

use std::collections::HashMap;

use crate::store::{CapabilityKey, CatalogDiff};

/// A change of the visible catalog, published after each crawl run that changed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogUpdate {
    /// The store's catalog version after the change.
    pub version: i64,
    /// The version these key lists start from: a subscriber at exactly this version applies
    /// `added` / `changed` / `removed` and is then at `version`. `None` means the lists are
    /// incomplete (or absent, at startup): rebuild from the store.
    pub since: Option<i64>,
    /// Keys new to the catalog.
    pub added: Vec<CapabilityKey>,
    /// Keys whose row was rewritten.
    pub changed: Vec<CapabilityKey>,
    /// Keys no longer in the catalog.
    pub removed: Vec<CapabilityKey>,
}

impl CatalogUpdate {
    /// The state before any change is known: `version`, rebuild needed.
    pub fn initial(version: i64) -> Self {
        Self {
            version,
            ..Self::default()
        }
    }

    /// Makes `next` the latest update. Writers publish after their commit, so an older
    /// change can be published after a newer one (a crawl and a reputation recompute
    /// racing): replacing the newer update with it would lose the newer one's keys for a
    /// subscriber that had not read it yet. So an older update is folded into the newer one
    /// instead (the later version, the earlier `since`, both key lists: re-reading a key is
    /// idempotent).
    pub fn supersede(&mut self, next: CatalogUpdate) {
        if next.version >= self.version {
            *self = next;
            return;
        }
        self.since = match (self.since, next.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            _ => None,
        };
        self.added.extend(next.added);
        self.changed.extend(next.changed);
        self.removed.extend(next.removed);
    }

    /// Number of keys touched.
    pub fn len(&self) -> usize {
        self.added.len() + self.changed.len() + self.removed.len()
    }

    /// True when no key was touched (a peer-set-only change).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Added,
    Changed,
    Removed,
}

/// Folds per-peer diffs of one run.
#[derive(Debug)]
pub(crate) struct ChangeLog {
    start: i64,
    expected: i64,
    contiguous: bool,
    /// First and last operation per key, in the order the diffs arrived.
    ops: HashMap<CapabilityKey, (Op, Op)>,
    /// Something other than capability rows changed what the catalog publishes (an active
    /// peer appeared), so subscribers must hear about the run even with no key touched.
    peers_changed: bool,
}

impl ChangeLog {
    /// Starts at the catalog version read before the run's first write.
    pub(crate) fn new(version: i64) -> Self {
        Self {
            start: version,
            expected: version,
            contiguous: true,
            ops: HashMap::new(),
            peers_changed: false,
        }
    }

    /// Records a peer-set change. `breaks_chain` is true when it made rows visible or
    /// invisible without a diff (the key lists would then be incomplete).
    pub(crate) fn peers_changed(&mut self, breaks_chain: bool) {
        self.peers_changed = true;
        if breaks_chain {
            self.contiguous = false;
        }
    }

    /// Adds one diff. Empty diffs carry the current version without having bumped it.
    pub(crate) fn record(&mut self, diff: &CatalogDiff) {
        if diff.is_empty() {
            if diff.version != self.expected {
                self.contiguous = false;
                self.expected = diff.version;
            }
            return;
        }
        if diff.version != self.expected + 1 {
            self.contiguous = false;
        }
        self.expected = diff.version;
        let lists = [
            (&diff.added, Op::Added),
            (&diff.changed, Op::Changed),
            (&diff.removed, Op::Removed),
        ];
        for (keys, op) in lists {
            for key in keys {
                self.ops
                    .entry(key.clone())
                    .and_modify(|(_, last)| *last = op)
                    .or_insert((op, op));
            }
        }
    }

    /// The run's update, or `None` when nothing visible changed. `version` is the catalog
    /// version read after the run's last write.
    pub(crate) fn finish(self, version: i64) -> Option<CatalogUpdate> {
        if self.ops.is_empty() && !self.peers_changed {
            return None;
        }
        let contiguous = self.contiguous && version == self.expected;
        let mut update = CatalogUpdate {
            version,
            since: contiguous.then_some(self.start),
            ..CatalogUpdate::default()
        };
        for (key, (first, last)) in self.ops {
            match (first, last) {
                // Appeared and went again within the run: subscribers never saw it.
                (Op::Added, Op::Removed) => {}
                (Op::Added, _) => update.added.push(key),
                (_, Op::Removed) => update.removed.push(key),
                // It existed before the run and exists after it.
                (_, _) => update.changed.push(key),
            }
        }
        update.added.sort();
        update.changed.sort();
        update.removed.sort();
        Some(update)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> CapabilityKey {
        CapabilityKey {
            origin: "https://a.example".into(),
            product_id: "p".into(),
            capability_id: id.into(),
        }
    }

    fn diff(version: i64, added: &[&str], changed: &[&str], removed: &[&str]) -> CatalogDiff {
        CatalogDiff {
            version,
            added: added.iter().map(|k| key(k)).collect(),
            changed: changed.iter().map(|k| key(k)).collect(),
            removed: removed.iter().map(|k| key(k)).collect(),
        }
    }

    #[test]
    fn nothing_changed_means_no_update() {
        let mut log = ChangeLog::new(4);
        log.record(&CatalogDiff::unchanged(4));
        assert_eq!(log.finish(4), None);
    }

    #[test]
    fn diffs_fold_into_one_update() {
        let mut log = ChangeLog::new(10);
        log.record(&diff(11, &["a", "b"], &["c"], &["d"]));
        log.record(&CatalogDiff::unchanged(11));
        log.record(&diff(12, &["e"], &["a"], &["b", "c"]));
        log.record(&diff(13, &["d"], &[], &[]));
        let update = log.finish(13).expect("changed");
        assert_eq!(update.version, 13);
        assert_eq!(update.since, Some(10));
        assert_eq!(update.added, vec![key("a"), key("e")]);
        // d was removed, then listed again: it existed before and after.
        assert_eq!(update.changed, vec![key("d")]);
        assert_eq!(update.removed, vec![key("c")]);
    }

    #[test]
    fn a_gap_in_versions_asks_for_a_rebuild() {
        let mut log = ChangeLog::new(10);
        log.record(&diff(11, &["a"], &[], &[]));
        // Someone else bumped the version to 12 between the two peers.
        log.record(&diff(13, &["b"], &[], &[]));
        assert_eq!(log.finish(13).expect("changed").since, None);

        let mut log = ChangeLog::new(10);
        log.record(&diff(11, &["a"], &[], &[]));
        // ...or after the last one.
        assert_eq!(log.finish(12).expect("changed").since, None);

        let mut log = ChangeLog::new(10);
        log.record(&CatalogDiff::unchanged(11));
        log.record(&diff(12, &["a"], &[], &[]));
        assert_eq!(log.finish(12).expect("changed").since, None);
    }

    #[test]
    fn peer_changes_publish_even_without_keys() {
        let mut log = ChangeLog::new(3);
        log.peers_changed(false);
        let update = log.finish(3).expect("published");
        assert!(update.is_empty());
        assert_eq!(update.since, Some(3));
        let mut log = ChangeLog::new(3);
        log.peers_changed(true);
        assert_eq!(log.finish(3).expect("published").since, None);
    }

    #[test]
    fn an_older_update_published_late_is_folded_into_the_newer_one() {
        let newer = log_update(12, Some(11), "b");
        let older = log_update(11, Some(10), "a");
        let mut current = CatalogUpdate::initial(10);
        current.supersede(newer.clone());
        assert_eq!(current, newer);
        current.supersede(older);
        assert_eq!(current.version, 12);
        assert_eq!(current.since, Some(10));
        assert_eq!(current.changed.len(), 2, "both key lists: {current:?}");
        // A newer one replaces.
        current.supersede(log_update(13, Some(12), "c"));
        assert_eq!(current.changed.len(), 1);
    }

    fn log_update(version: i64, since: Option<i64>, key: &str) -> CatalogUpdate {
        CatalogUpdate {
            version,
            since,
            changed: vec![CapabilityKey {
                origin: "https://p.example".into(),
                product_id: "p".into(),
                capability_id: key.into(),
            }],
            ..CatalogUpdate::default()
        }
    }
}

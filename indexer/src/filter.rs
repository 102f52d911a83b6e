//! Per-document signals kept in memory, and the numeric filters (budget, latency, trust)
//! evaluated on them while the executor visits each match.
//!
//! The filters run inside the index scan that scores and counts the matches, so `total`
//! counts only documents passing them and nothing is filtered after collection. They are not
//! query clauses on purpose: measured on 100,000 capabilities, intersecting the text query with
//! a fast-field `RangeQuery` or `DocPredicateQuery` added 25–40% to filtered text searches and
//! made a filtered browse 2.5–5× slower than an unfiltered one, because the text union then
//! seeks instead of streaming and each match reads columns through dynamic dispatch; these
//! arrays cost a few nanoseconds per match and let a browse count with a vectorised loop. Hub
//! and category filters are term queries every match must pass (a selective one drives the
//! scoring, see [`crate::collect`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tantivy::columnar::StrColumn;
use tantivy::{DocId, SegmentReader};

use crate::rank::{QualitySignals, Ranker};
use crate::schema::{KEY, P50, ROUTED, SUCCESS, TRUST};

/// Signals of every document of one segment, by doc id, copied from the fast fields when the
/// reader reloads (36 bytes per document).
pub(crate) struct SegmentSignals {
    pub quality: Vec<f32>,
    /// `Ranker::relevance_factor(quality)`.
    pub factor: Vec<f32>,
    pub routed: Vec<f64>,
    pub p50: Vec<u64>,
    pub trust: Vec<f64>,
    /// Doc ids by quality descending, then key ascending: an unfiltered browse reads its page
    /// from the front instead of scanning the segment. Sorted on first use (or by
    /// [`SegmentSignals::warm`] in the background), not while the index opens: at a million
    /// documents the sort is about a third of opening.
    browse_order: OnceLock<Vec<DocId>>,
    /// A background thread has taken the sort ([`SegmentSignals::warm`]).
    sorting: AtomicBool,
    /// The key column the browse order breaks ties with.
    keys: Option<StrColumn>,
}

impl std::fmt::Debug for SegmentSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentSignals")
            .field("docs", &self.quality.len())
            .field("browse_order_ready", &self.browse_order.get().is_some())
            .finish_non_exhaustive()
    }
}

impl SegmentSignals {
    /// Reads the columns of `reader` and computes quality with `ranker`.
    pub fn load(reader: &SegmentReader, ranker: &dyn Ranker) -> tantivy::Result<Arc<Self>> {
        let fast = reader.fast_fields();
        let trust_col = fast.f64(TRUST)?.first_or_default_col(0.0);
        let success_col = fast.f64(SUCCESS)?.first_or_default_col(0.0);
        let p50_col = fast.u64(P50)?.first_or_default_col(0);
        let routed_col = fast.f64(ROUTED)?.first_or_default_col(0.0);
        let n = reader.max_doc() as usize;
        let mut signals = SegmentSignals {
            quality: Vec::with_capacity(n),
            factor: Vec::with_capacity(n),
            routed: Vec::with_capacity(n),
            p50: Vec::with_capacity(n),
            trust: Vec::with_capacity(n),
            browse_order: OnceLock::new(),
            sorting: AtomicBool::new(false),
            keys: fast.str(KEY)?,
        };
        for doc in 0..reader.max_doc() {
            let s = QualitySignals {
                trust_score: trust_col.get_val(doc),
                success_rate: success_col.get_val(doc),
                p50_latency_ms: p50_col.get_val(doc),
                routed_price_usd: routed_col.get_val(doc),
            };
            let quality = ranker.quality(&s);
            signals.quality.push(quality);
            signals.factor.push(ranker.relevance_factor(quality));
            signals.routed.push(s.routed_price_usd);
            signals.p50.push(s.p50_latency_ms);
            signals.trust.push(s.trust_score);
        }
        Ok(Arc::new(signals))
    }

    /// Doc ids by quality descending, then key ascending (sorted on first use).
    pub fn browse_order(&self) -> &[DocId] {
        self.browse_order.get_or_init(|| {
            let key_ord = |doc: DocId| {
                self.keys
                    .as_ref()
                    .and_then(|k| k.ords().first(doc))
                    .unwrap_or(u64::MAX)
            };
            let mut order: Vec<(f32, u64, DocId)> = (0..self.quality.len() as DocId)
                .map(|doc| (self.quality[doc as usize], key_ord(doc), doc))
                .collect();
            order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            order.into_iter().map(|(_, _, doc)| doc).collect()
        })
    }

    /// The browse order when it is sorted, `None` while a background thread sorts it (a
    /// browse then scans the segment once rather than wait); sorted here, on first use, when
    /// no thread has taken it.
    pub fn browse_order_now(&self) -> Option<&[DocId]> {
        match self.browse_order.get() {
            Some(order) => Some(order),
            None if self.sorting.load(Ordering::Acquire) => None,
            None => Some(self.browse_order()),
        }
    }

    /// Marks the sort as taken by a background thread that has not finished (tests of the
    /// scanning browse).
    #[cfg(test)]
    pub fn pretend_sorting(&self) {
        self.sorting.store(true, Ordering::Release);
    }

    /// Sorts the browse order of every segment in `signals` on a background thread, so the
    /// first browse after an open or reload rarely waits for it. A segment already taken by
    /// an earlier thread is left to it, so frequent reloads start no pile of threads.
    pub fn warm<'a>(signals: impl IntoIterator<Item = &'a Arc<Self>>) {
        let pending: Vec<Arc<Self>> = signals
            .into_iter()
            .filter(|s| s.browse_order.get().is_none())
            .filter(|s| !s.sorting.swap(true, Ordering::AcqRel))
            .cloned()
            .collect();
        if pending.is_empty() {
            return;
        }
        let taken = pending.clone();
        let spawned = std::thread::Builder::new()
            .name("browse-order".into())
            .spawn(move || {
                for signals in pending {
                    signals.browse_order();
                }
            });
        // Without a thread the first browse sorts instead: slower once, still correct.
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "cannot start the browse-order thread");
            for signals in taken {
                signals.sorting.store(false, Ordering::Release);
            }
        }
    }

    /// Quality and relevance factor of `doc` (0 outside the segment, which cannot happen for
    /// collected docs).
    #[inline]
    pub fn quality(&self, doc: DocId) -> (f32, f32) {
        let i = doc as usize;
        match (self.quality.get(i), self.factor.get(i)) {
            (Some(q), Some(f)) => (*q, *f),
            _ => (0.0, 0.0),
        }
    }
}

/// Inclusive numeric bounds. NaN bounds compare false with everything, so they match nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct NumericFilter {
    pub max_routed: Option<f64>,
    pub max_p50: Option<u64>,
    pub min_trust: Option<f64>,
}

impl NumericFilter {
    /// `None` when no bound is set (nothing to check per document).
    pub fn active(self) -> Option<Self> {
        (self != Self::default()).then_some(self)
    }

    /// Bounds with absent ones replaced by neutral values (stored values are finite).
    fn limits(&self) -> (f64, u64, f64) {
        (
            self.max_routed.unwrap_or(f64::INFINITY),
            self.max_p50.unwrap_or(u64::MAX),
            self.min_trust.unwrap_or(f64::NEG_INFINITY),
        )
    }

    /// Whether `doc` of the segment with `signals` satisfies every bound.
    #[inline]
    pub fn matches(&self, signals: &SegmentSignals, doc: DocId) -> bool {
        let i = doc as usize;
        let (max_routed, max_p50, min_trust) = self.limits();
        match (
            signals.routed.get(i),
            signals.p50.get(i),
            signals.trust.get(i),
        ) {
            (Some(r), Some(p), Some(t)) => *r <= max_routed && *p <= max_p50 && *t >= min_trust,
            _ => false,
        }
    }

    /// Number of documents of the segment satisfying every bound, ignoring deletions.
    pub fn count(&self, signals: &SegmentSignals) -> usize {
        let (max_routed, max_p50, min_trust) = self.limits();
        // Branch-free over three slices: the compiler vectorises it.
        signals
            .routed
            .iter()
            .zip(&signals.p50)
            .zip(&signals.trust)
            .map(|((r, p), t)| usize::from(*r <= max_routed && *p <= max_p50 && *t >= min_trust))
            .sum()
    }
}

//! One-pass collector: counts every match and keeps the best `k` by final score.
//!
//! Quality is read from a per-segment array computed at reader reload ([`SegmentQuality`]),
//! so ranking a match costs an array lookup and one multiply. Ties on the final score are
//! broken by the capability key ascending: inside a segment by the key's term ordinal (the
//! fast-field dictionary is sorted, so ordinal order is string order), across segments by the
//! key string itself.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::StrColumn;
use tantivy::index::SegmentId;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use crate::rank::{QualitySignals, Ranker};
use crate::schema::{KEY, P50, ROUTED, SUCCESS, TRUST};

/// Quality of every document of one segment, by doc id.
pub(crate) type SegmentQuality = Arc<[f32]>;

/// Computes the quality array of a segment from its fast fields.
pub(crate) fn segment_quality(
    reader: &SegmentReader,
    ranker: &dyn Ranker,
) -> tantivy::Result<SegmentQuality> {
    let fast = reader.fast_fields();
    let trust = fast.f64(TRUST)?.first_or_default_col(0.0);
    let success = fast.f64(SUCCESS)?.first_or_default_col(0.0);
    let p50 = fast.u64(P50)?.first_or_default_col(0);
    let routed = fast.f64(ROUTED)?.first_or_default_col(0.0);
    Ok((0..reader.max_doc())
        .map(|doc| {
            ranker.quality(&QualitySignals {
                trust_score: trust.get_val(doc),
                success_rate: success.get_val(doc),
                p50_latency_ms: p50.get_val(doc),
                routed_price_usd: routed.get_val(doc),
            })
        })
        .collect())
}

/// A ranked candidate before the page is cut.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub score: f32,
    pub relevance: f32,
    pub quality: f32,
    pub key: String,
    pub address: DocAddress,
}

/// Everything one search collected.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    /// Matches of the query, all of them counted.
    pub total: usize,
    /// The best `k`, best first.
    pub top: Vec<Candidate>,
}

/// Collector over a query; `scoring == false` means browse (score = quality).
pub(crate) struct RankCollector<'a> {
    pub k: usize,
    pub scoring: bool,
    pub ranker: Arc<dyn Ranker>,
    pub quality: &'a HashMap<SegmentId, SegmentQuality>,
}

#[derive(Clone, Copy)]
struct Entry {
    score: f32,
    relevance: f32,
    quality: f32,
    key_ord: u64,
    doc: DocId,
}

/// Best first: higher score, then lower key ordinal.
fn entry_order(a: &Entry, b: &Entry) -> Ordering {
    b.score.total_cmp(&a.score).then(a.key_ord.cmp(&b.key_ord))
}

pub(crate) struct RankSegment {
    segment: SegmentOrdinal,
    k: usize,
    scoring: bool,
    ranker: Arc<dyn Ranker>,
    quality: SegmentQuality,
    keys: StrColumn,
    buffer: Vec<Entry>,
    /// The worst entry kept once the buffer has been cut to `k`.
    threshold: Option<Entry>,
    count: usize,
}

impl RankSegment {
    fn push(&mut self, doc: DocId, relevance: f32) {
        self.count += 1;
        if self.k == 0 {
            return;
        }
        let quality = self.quality.get(doc as usize).copied().unwrap_or(0.0);
        let score = if self.scoring {
            self.ranker.combine(relevance, quality)
        } else {
            quality
        };
        if let Some(t) = &self.threshold
            && score < t.score
        {
            return;
        }
        let key_ord = self.keys.ords().first(doc).unwrap_or(u64::MAX);
        let entry = Entry { score, relevance, quality, key_ord, doc };
        if let Some(t) = &self.threshold
            && entry_order(&entry, t) != Ordering::Less
        {
            return;
        }
        self.buffer.push(entry);
        if self.buffer.len() >= self.k.saturating_mul(2).max(16) {
            self.cut();
        }
    }

    /// Keeps the best `k` of the buffer and remembers the worst of them.
    fn cut(&mut self) {
        if self.buffer.len() > self.k {
            self.buffer.select_nth_unstable_by(self.k - 1, entry_order);
            self.buffer.truncate(self.k);
        }
        self.threshold = self.buffer.iter().copied().max_by(entry_order);
    }
}

impl SegmentCollector for RankSegment {
    type Fruit = tantivy::Result<Collected>;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.push(doc, score);
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        for &doc in docs {
            self.push(doc, 0.0);
        }
    }

    fn harvest(mut self) -> Self::Fruit {
        self.buffer.sort_unstable_by(entry_order);
        self.buffer.truncate(self.k);
        let mut top = Vec::with_capacity(self.buffer.len());
        for entry in &self.buffer {
            let mut key = String::new();
            self.keys.ord_to_str(entry.key_ord, &mut key)?;
            top.push(Candidate {
                score: entry.score,
                relevance: entry.relevance,
                quality: entry.quality,
                key,
                address: DocAddress::new(self.segment, entry.doc),
            });
        }
        Ok(Collected { total: self.count, top })
    }
}

/// Best first across segments: higher score, then key ascending.
pub(crate) fn candidate_order(a: &Candidate, b: &Candidate) -> Ordering {
    b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key))
}

impl Collector for RankCollector<'_> {
    type Fruit = Collected;
    type Child = RankSegment;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<RankSegment> {
        let quality = match self.quality.get(&reader.segment_id()) {
            Some(q) => q.clone(),
            // Not cached (cannot happen with the snapshot's own searcher): compute it now.
            None => segment_quality(reader, self.ranker.as_ref())?,
        };
        let keys = reader.fast_fields().str(KEY)?.ok_or_else(|| {
            tantivy::TantivyError::SchemaError(format!("fast field {KEY} missing"))
        })?;
        Ok(RankSegment {
            segment,
            k: self.k,
            scoring: self.scoring,
            ranker: self.ranker.clone(),
            quality,
            keys,
            buffer: Vec::new(),
            threshold: None,
            count: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scoring
    }

    fn merge_fruits(&self, fruits: Vec<tantivy::Result<Collected>>) -> tantivy::Result<Collected> {
        let mut merged = Collected::default();
        for fruit in fruits {
            let fruit = fruit?;
            merged.total += fruit.total;
            merged.top.extend(fruit.top);
        }
        merged.top.sort_unstable_by(candidate_order);
        merged.top.truncate(self.k);
        Ok(merged)
    }
}

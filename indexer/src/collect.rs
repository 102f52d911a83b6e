//! Query execution: term-at-a-time scoring into per-thread accumulators, then one pass over
//! the matches that filters, counts every match and keeps the best `k`.
//!
//! tantivy's own boolean/disjunction scorers merge posting lists document by document through
//! nested buffered unions, which cost about 35 ns per matching document for our query shape
//! (a best-field group per query word, with synonym and prefix alternatives). Here every leaf
//! query (BM25 term, phrase, prefix/fuzzy automaton) still comes from tantivy and is
//! evaluated by its own `Weight::for_each`, but the combination is done in flat arrays:
//! per word group the best score plus a tie-breaker share of the others (disjunction-max),
//! summed over groups, plus phrase bonuses. Same scores as a `BooleanQuery` of
//! `DisjunctionMaxQuery`s, several times faster on broad intents.
//!
//! Quality, relevance factor and filter values come from per-segment arrays built at reader
//! reload ([`SegmentSignals`]). Ties on the final score are broken by the capability key
//! ascending: inside a segment by the key's term ordinal (the fast-field dictionary is sorted,
//! so ordinal order is string order), across segments by the key string itself.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::sync::Arc;

use tantivy::columnar::StrColumn;
use tantivy::query::{EnableScoring, Query, Weight};
use tantivy::{
    BitSet, DocAddress, DocId, DocSet, Score, SegmentOrdinal, SegmentReader, TERMINATED,
};

use crate::filter::{NumericFilter, SegmentSignals};
use crate::index::Snapshot;
use crate::query::{DISMAX_TIE_BREAKER, Leaf, Scoring};
use crate::schema::KEY;

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
    /// Matches of the query and filters, all of them counted.
    pub total: usize,
    /// The best `k`, best first.
    pub top: Vec<Candidate>,
}

/// A term filter matching fewer than 1/`SEEK_RATIO` of a segment drives the scoring.
const SEEK_RATIO: usize = 16;

/// What to execute.
pub(crate) struct Request<'a> {
    /// Text scoring; `None` browses (every document, score = quality).
    pub text: Option<&'a Scoring>,
    /// Queries every result must match (hub, category).
    pub filters: &'a [Box<dyn Query>],
    /// Numeric bounds checked on the signal arrays.
    pub numeric: Option<NumericFilter>,
    /// How many of the best to keep (offset + limit).
    pub k: usize,
}

/// Per-thread scratch arrays, indexed by doc id, all zero between uses.
#[derive(Default)]
struct Scratch {
    total: Vec<f32>,
    group_max: Vec<f32>,
    group_sum: Vec<f32>,
    /// Docs with a non-zero `total`.
    touched: Vec<DocId>,
    /// Docs with a non-zero `group_max` in the current group.
    group_touched: Vec<DocId>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

struct Weights {
    groups: Vec<Vec<(Box<dyn Weight>, f32)>>,
    bonuses: Vec<(Box<dyn Weight>, f32)>,
}

/// Runs a request on a snapshot.
pub(crate) fn execute(snapshot: &Snapshot, request: &Request<'_>) -> tantivy::Result<Collected> {
    let searcher = &snapshot.searcher;
    let weights = match request.text {
        Some(text) => {
            let scoring = EnableScoring::enabled_from_searcher(searcher);
            let weigh = |l: &Leaf| l.query.weight(scoring).map(|w| (w, l.boost));
            Some(Weights {
                groups: text
                    .groups
                    .iter()
                    .map(|g| g.iter().map(weigh).collect::<tantivy::Result<Vec<_>>>())
                    .collect::<tantivy::Result<_>>()?,
                bonuses: text
                    .bonuses
                    .iter()
                    .map(weigh)
                    .collect::<tantivy::Result<_>>()?,
            })
        }
        None => None,
    };
    let unscored = EnableScoring::disabled_from_searcher(searcher);
    let filters: Vec<Box<dyn Weight>> = request
        .filters
        .iter()
        .map(|q| q.weight(unscored))
        .collect::<tantivy::Result<_>>()?;

    let mut merged = Collected::default();
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let ord = SegmentOrdinal::try_from(ord).unwrap_or(SegmentOrdinal::MAX);
        let signals = match snapshot.signals.get(&reader.segment_id()) {
            Some(s) => s.clone(),
            // Not cached (cannot happen with the snapshot's own searcher): load them now.
            None => SegmentSignals::load(reader, snapshot.ranker.as_ref())?,
        };
        let allowed = allowed_docs(&filters, reader)?;
        let alive = |doc: DocId| reader.alive_bitset().is_none_or(|a| a.is_alive(doc));
        let numeric_ok = |doc: DocId| request.numeric.is_none_or(|f| f.matches(&signals, doc));
        let accept = |doc: DocId| {
            alive(doc) && allowed.as_ref().is_none_or(|a| a.set.contains(doc)) && numeric_ok(doc)
        };
        let mut top = TopK::new(request.k, ord, &signals, keys(reader)?);
        match (&weights, &allowed) {
            (None, None) => {
                // Browse without term filters: the best are at the front of the segment's
                // browse order (sorted once per segment); the count is the live documents
                // passing the numeric bounds.
                top.count = match (request.numeric, reader.alive_bitset()) {
                    (None, _) => reader.num_docs() as usize,
                    (Some(f), None) => f.count(&signals),
                    (Some(_), Some(_)) => (0..reader.max_doc()).filter(|d| accept(*d)).count(),
                };
                match signals.browse_order_now() {
                    Some(order) => {
                        let live = order.iter().copied().filter(|d| accept(*d));
                        for doc in live.take(request.k) {
                            top.offer(doc, None);
                        }
                    }
                    // Still being sorted in the background (just after an open or a reload):
                    // one pass over the segment instead of waiting for the sort.
                    None => {
                        for doc in (0..reader.max_doc()).filter(|d| accept(*d)) {
                            top.offer(doc, None);
                        }
                    }
                }
            }
            (None, Some(allowed)) => {
                for &doc in allowed.docs.iter().filter(|d| accept(**d)) {
                    top.push(doc, None);
                }
            }
            (Some(weights), _) => SCRATCH.with(|scratch| -> tantivy::Result<()> {
                let mut scratch = scratch.borrow_mut();
                // A selective term filter (a hub, a rare category) drives the scoring: each
                // leaf seeks to the allowed documents instead of scanning its postings.
                let only = allowed
                    .as_ref()
                    .filter(|a| a.docs.len().saturating_mul(SEEK_RATIO) < reader.max_doc() as usize)
                    .map(|a| a.docs.as_slice());
                accumulate(&mut scratch, weights, reader, only)?;
                let Scratch { total, touched, .. } = &mut *scratch;
                for &doc in touched.iter() {
                    let relevance = std::mem::take(&mut total[doc as usize]);
                    if accept(doc) {
                        top.push(doc, Some(relevance));
                    }
                }
                touched.clear();
                Ok(())
            })?,
        }
        let fruit = top.harvest()?;
        merged.total += fruit.total;
        merged.top.extend(fruit.top);
    }
    merged.top.sort_unstable_by(candidate_order);
    merged.top.truncate(request.k);
    Ok(merged)
}

fn keys(reader: &SegmentReader) -> tantivy::Result<StrColumn> {
    reader
        .fast_fields()
        .str(KEY)?
        .ok_or_else(|| tantivy::TantivyError::SchemaError(format!("fast field {KEY} missing")))
}

/// Scores every matching document of `reader` (or of `only`) into `scratch.total`, listing
/// them in `scratch.touched`. Relies on every leaf score being strictly positive (BM25 with a
/// positive idf, positive boosts), so zero means "not matched yet".
fn accumulate(
    scratch: &mut Scratch,
    weights: &Weights,
    reader: &SegmentReader,
    only: Option<&[DocId]>,
) -> tantivy::Result<()> {
    let max_doc = reader.max_doc() as usize;
    for array in [
        &mut scratch.total,
        &mut scratch.group_max,
        &mut scratch.group_sum,
    ] {
        if array.len() < max_doc {
            array.resize(max_doc, 0.0);
        }
    }
    let Scratch {
        total,
        group_max,
        group_sum,
        touched,
        group_touched,
    } = scratch;
    for group in &weights.groups {
        for (weight, boost) in group {
            visit(
                weight.as_ref(),
                reader,
                only,
                &mut |doc: DocId, score: Score| {
                    let i = doc as usize;
                    let score = score * boost;
                    if group_max[i] == 0.0 {
                        group_touched.push(doc);
                    }
                    group_max[i] = group_max[i].max(score);
                    group_sum[i] += score;
                },
            )?;
        }
        for &doc in group_touched.iter() {
            let i = doc as usize;
            let best = std::mem::take(&mut group_max[i]);
            let rest = std::mem::take(&mut group_sum[i]) - best;
            if total[i] == 0.0 {
                touched.push(doc);
            }
            total[i] += best + DISMAX_TIE_BREAKER * rest.max(0.0);
        }
        group_touched.clear();
    }
    for (weight, boost) in &weights.bonuses {
        // Bonus clauses (phrases) only match documents the groups already matched.
        visit(
            weight.as_ref(),
            reader,
            only,
            &mut |doc: DocId, score: Score| {
                let i = doc as usize;
                if total[i] > 0.0 {
                    total[i] += score * boost;
                }
            },
        )?;
    }
    Ok(())
}

/// Calls `f` for every document the weight matches, or only for those of `only` (sorted).
fn visit(
    weight: &dyn Weight,
    reader: &SegmentReader,
    only: Option<&[DocId]>,
    f: &mut dyn FnMut(DocId, Score),
) -> tantivy::Result<()> {
    let Some(docs) = only else {
        return weight.for_each(reader, f);
    };
    let mut scorer = weight.scorer(reader, 1.0)?;
    for &doc in docs {
        let mut current = scorer.doc();
        if current < doc {
            current = scorer.seek(doc);
        }
        if current == TERMINATED {
            break;
        }
        if current == doc {
            f(doc, scorer.score());
        }
    }
    Ok(())
}

/// Documents passing every term filter of one segment (live or not).
struct Allowed {
    set: BitSet,
    /// The same documents, ascending.
    docs: Vec<DocId>,
}

/// Intersects the term filters on one segment; `None` when there are none.
fn allowed_docs(
    filters: &[Box<dyn Weight>],
    reader: &SegmentReader,
) -> tantivy::Result<Option<Allowed>> {
    let Some((first, rest)) = filters.split_first() else {
        return Ok(None);
    };
    let mut docs = Vec::new();
    first.for_each_no_score(reader, &mut |batch| docs.extend_from_slice(batch))?;
    for filter in rest {
        let mut set = BitSet::with_max_value(reader.max_doc());
        filter.for_each_no_score(reader, &mut |batch| {
            for &doc in batch {
                set.insert(doc);
            }
        })?;
        docs.retain(|doc| set.contains(*doc));
    }
    let mut set = BitSet::with_max_value(reader.max_doc());
    for &doc in &docs {
        set.insert(doc);
    }
    Ok(Some(Allowed { set, docs }))
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

/// Best first across segments: higher score, then key ascending.
fn candidate_order(a: &Candidate, b: &Candidate) -> Ordering {
    b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key))
}

/// Bounded top-k of one segment that also counts what it is offered.
struct TopK<'a> {
    k: usize,
    segment: SegmentOrdinal,
    signals: &'a Arc<SegmentSignals>,
    keys: StrColumn,
    buffer: Vec<Entry>,
    /// The worst entry kept once the buffer has been cut to `k`.
    threshold: Option<Entry>,
    count: usize,
}

impl<'a> TopK<'a> {
    fn new(
        k: usize,
        segment: SegmentOrdinal,
        signals: &'a Arc<SegmentSignals>,
        keys: StrColumn,
    ) -> Self {
        TopK {
            k,
            segment,
            signals,
            keys,
            buffer: Vec::new(),
            threshold: None,
            count: 0,
        }
    }

    /// Counts a match and offers it; `relevance` is `None` when browsing (score = quality).
    fn push(&mut self, doc: DocId, relevance: Option<f32>) {
        self.count += 1;
        self.offer(doc, relevance);
    }

    /// Offers a candidate without counting it.
    fn offer(&mut self, doc: DocId, relevance: Option<f32>) {
        if self.k == 0 {
            return;
        }
        let (quality, factor) = self.signals.quality(doc);
        let score = relevance.map_or(quality, |r| r * factor);
        if let Some(t) = &self.threshold
            && score < t.score
        {
            return;
        }
        let key_ord = self.keys.ords().first(doc).unwrap_or(u64::MAX);
        let relevance = relevance.unwrap_or(0.0);
        let entry = Entry {
            score,
            relevance,
            quality,
            key_ord,
            doc,
        };
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

    fn harvest(mut self) -> tantivy::Result<Collected> {
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
        Ok(Collected {
            total: self.count,
            top,
        })
    }
}

//! [`Index::search`]: query planning, collection and hit loading.

use tantivy::schema::{Field, Value};
use tantivy::{TantivyDocument, Term};

use crate::collect::{Candidate, Collected, Request, execute};
use crate::error::{IndexError, Result};
use crate::filter::NumericFilter;
use crate::index::{Index, Snapshot};
use crate::model::{IndexedCapability, MatchType, SearchHit, SearchPage, SearchQuery};
use crate::query::{Analyzed, Lexicon, Scoring, term_filters, text_plan};
use crate::schema::Fields;

impl Index {
    /// Runs a search on the last committed snapshot. Never fails because of the query text.
    ///
    /// Ranking is described in [`crate::rank`] and `src/query.rs`. With a non-empty
    /// intent, the exact query runs first; when it matches fewer than `limit` documents (at
    /// least one) and some word is long enough, the typo-tolerant query runs instead and the
    /// hits are marked [`MatchType::Fuzzy`]. `total` counts every document matching the query
    /// and filters; `has_more` is `offset + matches.len() < total`.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        let snapshot = self.snapshot();
        let mut text = self.text.clone();
        let mut surface = self.surface.clone();
        let analyzed = Analyzed::new(&query.intent, &mut text, &mut surface);
        let filters = term_filters(&self.fields, query, &mut text);
        let numeric = NumericFilter {
            max_routed: query.budget,
            max_p50: query.max_latency_ms,
            min_trust: query.min_trust,
        }
        .active();
        let k = query
            .offset
            .saturating_add(query.limit)
            .min(usize::try_from(snapshot.searcher.num_docs()).unwrap_or(usize::MAX));

        let lexicon = SnapshotLexicon {
            snapshot: &snapshot,
            fields: &self.fields,
        };
        let plan = text_plan(&self.fields, &self.synonyms, &lexicon, &analyzed);
        let run = |text: Option<&Scoring>| -> Result<Collected> {
            let request = Request {
                text,
                filters: &filters,
                numeric,
                k,
            };
            Ok(execute(&snapshot, &request)?)
        };
        let (collected, match_type) = match plan {
            None => (run(None)?, MatchType::Browse),
            Some(plan) => {
                let collected = run(Some(&plan.exact))?;
                match &plan.fuzzy {
                    Some(fuzzy) if collected.total < query.limit.max(1) => {
                        (run(Some(fuzzy))?, MatchType::Fuzzy)
                    }
                    _ => (collected, MatchType::Lexical),
                }
            }
        };

        let mut matches = Vec::with_capacity(query.limit.min(collected.top.len()));
        for candidate in collected.top.iter().skip(query.offset).take(query.limit) {
            matches.push(self.hit(&snapshot, candidate, match_type, query.compact)?);
        }
        Ok(SearchPage {
            has_more: query.offset.saturating_add(matches.len()) < collected.total,
            total: collected.total,
            hubs: snapshot.hubs,
            matches,
        })
    }

    fn hit(
        &self,
        snapshot: &Snapshot,
        candidate: &Candidate,
        match_type: MatchType,
        compact: bool,
    ) -> Result<SearchHit> {
        let doc: TantivyDocument = snapshot.searcher.doc(candidate.address)?;
        let json = doc
            .get_first(self.fields.payload)
            .and_then(|v| v.as_str())
            .ok_or_else(|| IndexError::Stored(format!("no payload for {:?}", candidate.key)))?;
        let mut capability: IndexedCapability =
            serde_json::from_str(json).map_err(|e| IndexError::Stored(e.to_string()))?;
        if compact {
            capability.input_schema = serde_json::Value::Null;
        }
        Ok(SearchHit {
            score: f64::from(candidate.score),
            relevance: f64::from(candidate.relevance),
            quality: f64::from(candidate.quality),
            match_type,
            capability,
        })
    }
}

/// [`Lexicon`] answers from the snapshot's term dictionaries and alias masks.
struct SnapshotLexicon<'a> {
    snapshot: &'a Snapshot,
    fields: &'a Fields,
}

impl SnapshotLexicon<'_> {
    fn doc_freq(&self, field: Field, text: &str) -> u64 {
        // A failed lookup (I/O on a broken segment) reads as "absent": planning degrades, the
        // search itself still reports the error.
        self.snapshot
            .searcher
            .doc_freq(&Term::from_field_text(field, text))
            .unwrap_or(0)
    }
}

impl Lexicon for SnapshotLexicon<'_> {
    fn has_surface_word(&self, word: &str) -> bool {
        [self.fields.title_surface, self.fields.body_surface]
            .into_iter()
            .any(|field| self.doc_freq(field, word) > 0)
    }

    fn stem_fraction(&self, stem: &str) -> f64 {
        let docs = self.snapshot.searcher.num_docs().max(1) as f64;
        let hits =
            self.doc_freq(self.fields.title, stem) + self.doc_freq(self.fields.description, stem);
        hits as f64 / docs
    }

    fn alias_mask(&self, stem: &str) -> Option<u8> {
        self.snapshot.aliases.get(stem).copied()
    }
}

//! [`Index::search`]: query planning, collection and hit loading.

use tantivy::TantivyDocument;
use tantivy::query::Query;
use tantivy::schema::Value;

use crate::collect::{Candidate, Collected, RankCollector};
use crate::error::{IndexError, Result};
use crate::index::{Index, Snapshot};
use crate::model::{IndexedCapability, MatchType, SearchHit, SearchPage, SearchQuery};
use crate::query::{Analyzed, filters, text_plan, with_filters};

impl Index {
    /// Runs a search on the last committed snapshot. Never fails because of the query text.
    ///
    /// Ranking is described in [`crate::rank`] and [`crate::query`]. With a non-empty
    /// intent, the exact query runs first; when it matches fewer than `limit` documents (at
    /// least one) and some word is long enough, the typo-tolerant query runs instead and the
    /// hits are marked [`MatchType::Fuzzy`]. `total` counts every document matching the query
    /// and filters; `has_more` is `offset + matches.len() < total`.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        let snapshot = self.snapshot();
        let mut text = self.text.clone();
        let mut surface = self.surface.clone();
        let analyzed = Analyzed::new(&query.intent, &mut text, &mut surface);
        let filters = filters(&self.fields, query, &mut text);
        let k = query
            .offset
            .saturating_add(query.limit)
            .min(usize::try_from(snapshot.searcher.num_docs()).unwrap_or(usize::MAX));

        let searcher = &snapshot.searcher;
        let is_indexed_word = |word: &str| {
            [self.fields.title_surface, self.fields.body_surface].into_iter().any(|field| {
                searcher
                    .doc_freq(&tantivy::Term::from_field_text(field, word))
                    .is_ok_and(|n| n > 0)
            })
        };
        let plan = text_plan(&self.fields, &self.synonyms, &analyzed, &is_indexed_word);
        let (collected, match_type) = match plan {
            None => {
                let browse = with_filters(None, &filters);
                (collect(&snapshot, browse.as_ref(), k, false)?, MatchType::Browse)
            }
            Some(plan) => {
                let exact = with_filters(Some(plan.exact), &filters);
                let collected = collect(&snapshot, exact.as_ref(), k, true)?;
                match plan.fuzzy {
                    Some(fuzzy) if collected.total < query.limit.max(1) => {
                        let fuzzy = with_filters(Some(fuzzy), &filters);
                        (collect(&snapshot, fuzzy.as_ref(), k, true)?, MatchType::Fuzzy)
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
        let bytes = doc
            .get_first(self.fields.payload)
            .and_then(|v| v.as_bytes())
            .ok_or_else(|| IndexError::Stored(format!("no payload for {:?}", candidate.key)))?;
        let mut capability: IndexedCapability =
            serde_json::from_slice(bytes).map_err(|e| IndexError::Stored(e.to_string()))?;
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

fn collect(snapshot: &Snapshot, query: &dyn Query, k: usize, scoring: bool) -> Result<Collected> {
    let collector = RankCollector {
        k,
        scoring,
        ranker: snapshot.ranker.clone(),
        quality: &snapshot.quality,
    };
    Ok(snapshot.searcher.search(query, &collector)?)
}

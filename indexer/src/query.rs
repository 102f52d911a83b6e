//! Turning a [`SearchQuery`] into tantivy queries.
//!
//! The intent never goes through tantivy's query-language parser: it is analyzed with the
//! index analyzer and the clauses are built directly, so no user text can be a syntax error.
//!
//! Text query (every clause optional, `Should`; a document must match at least one):
//! - one group per distinct query word (at most 24): the best field match
//!   (`DisjunctionMax`, tie-breaker 0.3) of BM25 term queries on capability-id words ×1.5,
//!   name ×1.5, description ×1 and other text (product id, schema properties, peer name,
//!   categories) ×0.4; inside the same group, the word's concept aliases
//!   ([`crate::synonyms`]) at 0.35 of that weight, the prefix
//!   match of the last word when it is not itself an indexed word (≥ 3 letters, unstemmed
//!   words, constant score: id/name ×1.5, description ×0.4, so `transl` finds `translate`) and, in the typo variant only ([`TextPlan::fuzzy`]), words within edit
//!   distance 1 of a query word of ≥ 5 letters (2 from 8 letters; transpositions cost 1;
//!   constant score: id/name ×1.2, description ×0.5);
//! - coordination: for 2..=6 words, documents matching every group (from 3 words: all but
//!   one) score their matching groups twice;
//! - for 2..=8 words: the whole phrase (slop 1) on id ×2, name ×2, description ×1.
//!
//! Filters are `Must` clauses with zero score, evaluated by tantivy inside the index:
//! fast-field range queries for price, latency and trust, term queries for hub and category.

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, DisjunctionMaxQuery, EmptyQuery,
    FuzzyTermQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;

use crate::analysis::{analyze, is_bigram_script};
use crate::model::SearchQuery;
use crate::schema::{Fields, normalize_category};
use crate::synonyms::Synonyms;

/// Most distinct words taken from one intent; the rest of a very long intent is ignored.
const MAX_WORDS: usize = 24;
/// Phrase clauses are built for intents of at most this many words.
const MAX_PHRASE_WORDS: usize = 8;
const DISMAX_TIE_BREAKER: f32 = 0.3;
const SYNONYM_WEIGHT: f32 = 0.35;
/// Intents of 2..=this many distinct words get the coordination clause.
const MAX_COORDINATED_WORDS: usize = 6;
/// Bytes of intent analyzed at most (the HTTP layer allows 1,000 characters).
const MAX_INTENT_BYTES: usize = 4096;

/// The analyzed intent, ready to be turned into clauses.
#[derive(Debug, Default)]
pub(crate) struct Analyzed {
    /// Stemmed words with their positions (stop words removed, positions kept).
    words: Vec<(usize, String)>,
    /// Surface form (lowercased, unstemmed) by position.
    surface: Vec<(usize, String)>,
}

impl Analyzed {
    pub fn new(intent: &str, text: &mut TextAnalyzer, surface: &mut TextAnalyzer) -> Self {
        let mut end = intent.len().min(MAX_INTENT_BYTES);
        while !intent.is_char_boundary(end) {
            end -= 1;
        }
        let intent = &intent[..end];
        let mut words = analyze(text, intent);
        words.truncate(MAX_WORDS * 4);
        Analyzed {
            words,
            surface: analyze(surface, intent),
        }
    }

    /// True when nothing searchable is left (empty intent, punctuation, only stop words).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    fn surface_at(&self, position: usize) -> Option<&str> {
        self.surface.iter().find(|(p, _)| *p == position).map(|(_, s)| s.as_str())
    }

    /// Distinct stems in query order, with their surface form.
    fn distinct(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for (position, stem) in &self.words {
            if out.len() >= MAX_WORDS {
                break;
            }
            if !out.iter().any(|(s, _)| s == stem) {
                out.push((stem, self.surface_at(*position).unwrap_or(stem)));
            }
        }
        out
    }
}

/// Text queries for one intent.
pub(crate) struct TextPlan {
    /// Exact terms, phrases, prefixes and synonyms.
    pub exact: Box<dyn Query>,
    /// `exact` plus typo-tolerant clauses, if any word is long enough for them.
    pub fuzzy: Option<Box<dyn Query>>,
}

fn term_query(field: Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, text),
        IndexRecordOption::WithFreqs,
    ))
}

fn boosted(query: Box<dyn Query>, boost: f32) -> Box<dyn Query> {
    Box::new(BoostQuery::new(query, boost))
}

fn dismax(parts: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    Box::new(DisjunctionMaxQuery::with_tie_breaker(parts, DISMAX_TIE_BREAKER))
}

/// Best-field BM25 match of one stem.
fn word_clause(fields: &Fields, stem: &str, weight: f32) -> Box<dyn Query> {
    dismax(vec![
        boosted(term_query(fields.id, stem), 1.5 * weight),
        boosted(term_query(fields.name, stem), 1.5 * weight),
        boosted(term_query(fields.description, stem), weight),
        boosted(term_query(fields.extra, stem), 0.4 * weight),
    ])
}

/// Constant-score automaton clause (prefix or fuzzy) over the unstemmed id+name and
/// description words.
fn automaton_clause(
    fields: &Fields,
    make: impl Fn(Term) -> FuzzyTermQuery,
    text: &str,
    boosts: [f32; 2],
) -> Box<dyn Query> {
    let parts = [fields.title_surface, fields.body_surface]
        .into_iter()
        .zip(boosts)
        .map(|(field, boost)| {
            let automaton = make(Term::from_field_text(field, text));
            boosted(Box::new(ConstScoreQuery::new(Box::new(automaton), 1.0)), boost)
        })
        .collect();
    dismax(parts)
}

fn is_alphabetic_word(word: &str) -> bool {
    word.chars().all(|c| c.is_alphanumeric() && !is_bigram_script(c))
        && word.chars().any(char::is_alphabetic)
}

/// Builds the text queries; `None` when the intent has no searchable word (browse).
/// `is_indexed_word` tells whether a surface word occurs as a whole word in some document.
pub(crate) fn text_plan(
    fields: &Fields,
    synonyms: &Synonyms,
    analyzed: &Analyzed,
    is_indexed_word: &dyn Fn(&str) -> bool,
) -> Option<TextPlan> {
    if analyzed.is_empty() {
        return None;
    }
    // A complete word needs no prefix expansion; skipping it saves a term-dictionary walk
    // and a posting union on every ordinary query.
    let prefix = prefix_word(analyzed).filter(|(_, surface)| !is_indexed_word(surface));
    let exact = build(fields, synonyms, analyzed, prefix, false);
    let any_fuzzy = analyzed.distinct().iter().any(|(_, surface)| fuzzy_distance(surface).is_some());
    let fuzzy = any_fuzzy.then(|| build(fields, synonyms, analyzed, prefix, true));
    Some(TextPlan { exact, fuzzy })
}

/// Edit distance allowed for a query word, `None` when it is too short or not alphabetic.
fn fuzzy_distance(surface: &str) -> Option<u8> {
    let len = surface.chars().count();
    (len >= 5 && is_alphabetic_word(surface)).then_some(if len >= 8 { 2 } else { 1 })
}

fn build(
    fields: &Fields,
    synonyms: &Synonyms,
    analyzed: &Analyzed,
    prefix: Option<(&str, &str)>,
    fuzzy: bool,
) -> Box<dyn Query> {
    let distinct = analyzed.distinct();
    let stems: Vec<String> = distinct.iter().map(|(s, _)| (*s).to_string()).collect();
    let mut groups: Vec<Box<dyn Query>> = Vec::with_capacity(distinct.len());
    for (stem, surface) in &distinct {
        let mut parts = vec![word_clause(fields, stem, 1.0)];
        for alias in synonyms.expand(stem, &stems) {
            parts.push(word_clause(fields, alias, SYNONYM_WEIGHT));
        }
        if let Some((prefix_stem, prefix_surface)) = prefix
            && prefix_stem == *stem
        {
            let make = |term| FuzzyTermQuery::new_prefix(term, 0, false);
            parts.push(automaton_clause(fields, make, prefix_surface, [1.5, 0.4]));
        }
        if let Some(distance) = fuzzy_distance(surface).filter(|_| fuzzy) {
            let make = |term| FuzzyTermQuery::new(term, distance, true);
            parts.push(automaton_clause(fields, make, surface, [1.2, 0.5]));
        }
        groups.push(if parts.len() == 1 { parts.remove(0) } else { dismax(parts) });
    }
    let mut clauses: Vec<(Occur, Box<dyn Query>)> =
        groups.iter().map(|g| (Occur::Should, g.box_clone())).collect();
    // Coordination: documents matching all words (from three words on: all but one, so one
    // word the catalog does not know cannot cancel it) score their word matches twice.
    let n = groups.len();
    if (2..=MAX_COORDINATED_WORDS).contains(&n) {
        let required = (n - 1).max(2);
        let most = BooleanQuery::union_with_minimum_required_clauses(groups, required);
        clauses.push((Occur::Should, Box::new(most)));
    }
    let words = &analyzed.words;
    if (2..=MAX_PHRASE_WORDS).contains(&words.len()) {
        let first = words[0].0;
        for (field, boost) in [(fields.id, 2.0), (fields.name, 2.0), (fields.description, 1.0)] {
            let terms = words
                .iter()
                .map(|(p, stem)| (p - first, Term::from_field_text(field, stem)))
                .collect();
            let phrase = PhraseQuery::new_with_offset_and_slop(terms, 1);
            clauses.push((Occur::Should, boosted(Box::new(phrase), boost)));
        }
    }
    Box::new(BooleanQuery::new(clauses))
}

/// The last word of the intent as `(stem, surface)` if it qualifies for prefix matching: an
/// alphabetic word of ≥ 3 letters that is not a stop word ("… for" is not a word being typed).
fn prefix_word(analyzed: &Analyzed) -> Option<(&str, &str)> {
    let (position, surface) = analyzed.surface.last()?;
    let (_, stem) = analyzed.words.iter().find(|(p, _)| p == position)?;
    (surface.chars().count() >= 3 && is_alphabetic_word(surface))
        .then_some((stem.as_str(), surface.as_str()))
}

/// Filter clauses; an impossible filter (NaN bound) yields a query matching nothing.
pub(crate) fn filters(fields: &Fields, query: &SearchQuery, analyzer: &mut TextAnalyzer) -> Vec<Box<dyn Query>> {
    let mut out: Vec<Box<dyn Query>> = Vec::new();
    if let Some(budget) = query.budget {
        out.push(upper_f64(fields.routed, budget));
    }
    if let Some(max) = query.max_latency_ms {
        let bound = Bound::Included(Term::from_field_u64(fields.p50, max));
        out.push(Box::new(RangeQuery::new(Bound::Unbounded, bound)));
    }
    if let Some(min) = query.min_trust {
        out.push(lower_f64(fields.trust, min));
    }
    if let Some(hub) = &query.hub {
        let term = Term::from_field_text(fields.hub, hub);
        out.push(Box::new(TermQuery::new(term, IndexRecordOption::Basic)));
    }
    if let Some(category) = &query.category {
        out.push(category_filter(fields, category, analyzer));
    }
    out
}

fn upper_f64(field: Field, max: f64) -> Box<dyn Query> {
    if max.is_nan() || max == f64::NEG_INFINITY {
        return Box::new(EmptyQuery);
    }
    if max == f64::INFINITY {
        return Box::new(AllQuery);
    }
    let bound = Bound::Included(Term::from_field_f64(field, max));
    Box::new(RangeQuery::new(Bound::Unbounded, bound))
}

fn lower_f64(field: Field, min: f64) -> Box<dyn Query> {
    if min.is_nan() || min == f64::INFINITY {
        return Box::new(EmptyQuery);
    }
    if min == f64::NEG_INFINITY {
        return Box::new(AllQuery);
    }
    let bound = Bound::Included(Term::from_field_f64(field, min));
    Box::new(RangeQuery::new(bound, Bound::Unbounded))
}

/// A declared category (exact, case-insensitive) or all of its words in the id or name.
fn category_filter(fields: &Fields, category: &str, analyzer: &mut TextAnalyzer) -> Box<dyn Query> {
    let declared = Term::from_field_text(fields.category, &normalize_category(category));
    let mut either: Vec<(Occur, Box<dyn Query>)> = vec![(
        Occur::Should,
        Box::new(TermQuery::new(declared, IndexRecordOption::Basic)),
    )];
    let words: Vec<(Occur, Box<dyn Query>)> = analyze(analyzer, category)
        .into_iter()
        .take(MAX_WORDS)
        .map(|(_, stem)| {
            let in_id_or_name = BooleanQuery::union(vec![
                term_query(fields.id, &stem),
                term_query(fields.name, &stem),
            ]);
            (Occur::Must, Box::new(in_id_or_name) as Box<dyn Query>)
        })
        .collect();
    if !words.is_empty() {
        either.push((Occur::Should, Box::new(BooleanQuery::new(words))));
    }
    Box::new(BooleanQuery::new(either))
}

/// Combines the text query (or all documents) with zero-scored filters.
pub(crate) fn with_filters(text: Option<Box<dyn Query>>, filters: &[Box<dyn Query>]) -> Box<dyn Query> {
    let base = text.unwrap_or_else(|| Box::new(AllQuery));
    if filters.is_empty() {
        return base;
    }
    let mut clauses = vec![(Occur::Must, base)];
    for filter in filters {
        let zero = ConstScoreQuery::new(filter.box_clone(), 0.0);
        clauses.push((Occur::Must, Box::new(zero) as Box<dyn Query>));
    }
    Box::new(BooleanQuery::new(clauses))
}

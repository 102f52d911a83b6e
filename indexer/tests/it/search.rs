//! Search behaviour: text sources, ranking rules, filters, paging, browse, robustness.

use std::sync::Arc;

use aimarket_indexer::{MatchType, QualitySignals, Ranker, SearchQuery};
use serde_json::json;

use crate::support::{cap, ids, index_of, q};

const A: &str = "https://a.example";
const B: &str = "https://b.example";

#[test]
fn every_text_source_is_searchable() {
    let mut schema_doc = cap(A, "x.one@v1", "Plain", "Nothing here");
    schema_doc.input_schema = json!({"type": "object", "properties": {
        "targetLanguage": {"type": "string", "description": "glossary identifier"}}});
    let mut peer_doc = cap(B, "x.two@v1", "Plain", "Nothing here");
    peer_doc.source_hub_name = "Zephyrine Hub".into();
    let mut category_doc = cap(A, "x.three@v1", "Plain", "Nothing here");
    category_doc.categories = vec!["Geospatial".into()];
    let mut product_doc = cap(A, "x.four@v1", "Plain", "Nothing here");
    product_doc.product_id = "quokka-labs".into();
    let index = index_of(vec![
        cap(A, "translate.multi@v2", "Plain", "Nothing here"),
        cap(A, "x.name@v1", "Hyperspectral Imaging", "Nothing here"),
        cap(A, "x.desc@v1", "Plain", "Detects counterfeit banknotes"),
        schema_doc,
        peer_doc,
        category_doc,
        product_doc,
    ]);
    for (intent, expected) in [
        ("multi", "translate.multi@v2"),
        ("hyperspectral", "x.name@v1"),
        ("counterfeit banknote", "x.desc@v1"),
        ("target language", "x.one@v1"),
        ("glossary", "x.one@v1"),
        ("zephyrine", "x.two@v1"),
        ("geospatial", "x.three@v1"),
        ("quokka", "x.four@v1"),
    ] {
        let page = index.search(&q(intent)).unwrap();
        assert_eq!(ids(&page), [expected], "intent {intent:?}");
    }
}

#[test]
fn id_and_name_outrank_description() {
    let index = index_of(vec![
        cap(A, "misc.tool@v1", "General utility", "Can also do geocoding of addresses"),
        cap(A, "geocoding.fast@v1", "Address lookup", "Fast lookups"),
        cap(A, "other.tool@v1", "Geocoding", "Fast lookups"),
    ]);
    let page = index.search(&q("geocoding")).unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(ids(&page)[2], "misc.tool@v1", "{:?}", ids(&page));
}

#[test]
fn phrase_order_decides_between_same_words() {
    let index = index_of(vec![
        cap(A, "audio.tts@v1", "Text to speech", "Turn written text into speech audio"),
        cap(A, "audio.asr@v1", "Speech to text", "Turn speech audio into written text"),
    ]);
    assert_eq!(ids(&index.search(&q("text to speech")).unwrap())[0], "audio.tts@v1");
    assert_eq!(ids(&index.search(&q("speech to text")).unwrap())[0], "audio.asr@v1");
}

#[test]
fn last_word_matches_as_prefix() {
    let index = index_of(vec![
        cap(A, "translate.text@v1", "Translator", "Translates text"),
        cap(A, "weather.now@v1", "Weather", "Current conditions"),
    ]);
    let page = index.search(&q("transl")).unwrap();
    assert_eq!(ids(&page), ["translate.text@v1"]);
    let one = SearchQuery { limit: 1, ..q("transl") };
    assert_eq!(index.search(&one).unwrap().matches[0].match_type, MatchType::Lexical);
    // Two letters is too short to expand.
    assert_eq!(index.search(&q("tr")).unwrap().total, 0);
}

#[test]
fn typos_are_tolerated_only_when_needed() {
    let index = index_of(vec![
        cap(A, "weather.now@v1", "Weather", "Current weather conditions"),
        cap(A, "translate.text@v1", "Translation", "Machine translation"),
        cap(A, "ocr.image@v1", "OCR", "Text from images"),
    ]);
    let page = index.search(&q("wether")).unwrap();
    assert_eq!(ids(&page), ["weather.now@v1"]);
    assert_eq!(page.matches[0].match_type, MatchType::Fuzzy);
    // Distance 2 for long words.
    assert_eq!(ids(&index.search(&q("transaltoin")).unwrap()), ["translate.text@v1"]);
    // Words under five letters are never fuzzed.
    assert_eq!(index.search(&q("ocx")).unwrap().total, 0);
    // Exact matches enough for the page: no typo expansion.
    let exact = SearchQuery {
        limit: 1,
        ..q("weather")
    };
    let page = index.search(&exact).unwrap();
    assert_eq!(page.matches[0].match_type, MatchType::Lexical);
}

#[test]
fn russian_and_chinese_text_match() {
    let index = index_of(vec![
        cap(A, "doc.translate@v1", "Document tool", "Перевод документов с сохранением вёрстки"),
        cap(A, "zh.translate@v1", "Chinese tool", "将文本翻译成多种语言"),
        cap(A, "weather.en@v1", "Weather", "Weather forecast for any city"),
        cap(A, "other@v1", "Other", "Unrelated"),
    ]);
    assert_eq!(ids(&index.search(&q("перевода документа")).unwrap())[0], "doc.translate@v1");
    assert_eq!(ids(&index.search(&q("翻译")).unwrap())[0], "zh.translate@v1");
    assert_eq!(ids(&index.search(&q("文本翻译")).unwrap())[0], "zh.translate@v1");
    // Cross-language concept expansion: a Russian word finds an English-only capability.
    assert_eq!(ids(&index.search(&q("погода")).unwrap()), ["weather.en@v1"]);
    assert_eq!(ids(&index.search(&q("天气")).unwrap()), ["weather.en@v1"]);
}

#[test]
fn quality_reorders_equal_text_but_not_strong_relevance() {
    let mut good = cap(A, "ocr.good@v1", "OCR service", "Extract text from images");
    good.trust_score = 0.95;
    good.success_rate = 0.99;
    good.p50_latency_ms = 100;
    let mut bad = cap(B, "ocr.bad@v1", "OCR service", "Extract text from images");
    bad.trust_score = 0.1;
    bad.success_rate = 0.2;
    bad.p50_latency_ms = 9000;
    let mut weak = cap(A, "misc.thing@v1", "Misc", "Many features, and OCR among them, also text");
    weak.trust_score = 1.0;
    weak.success_rate = 1.0;
    weak.p50_latency_ms = 0;
    let index = index_of(vec![bad, weak, good]);
    let page = index.search(&q("ocr service")).unwrap();
    assert_eq!(ids(&page), ["ocr.good@v1", "ocr.bad@v1", "misc.thing@v1"]);
    let top = &page.matches[0];
    assert!(top.score > 0.0 && top.relevance > 0.0 && (0.0..=1.0).contains(&top.quality));
}

fn filter_index() -> aimarket_indexer::Index {
    let mut caps = Vec::new();
    for i in 0..10u32 {
        let origin = if i % 2 == 0 { A } else { B };
        let mut c = cap(origin, &format!("ocr.v{i}@v1"), "OCR", "Extract text from images");
        c.price_usd = f64::from(i) / 100.0;
        c.routed_price_usd = f64::from(i) / 100.0 + 0.005;
        c.p50_latency_ms = u64::from(i) * 100;
        c.trust_score = f64::from(i) / 10.0;
        c.categories = vec![if i < 3 { "Vision".into() } else { "documents".into() }];
        caps.push(c);
    }
    caps.push(cap(A, "weather.now@v1", "Weather", "Current weather"));
    index_of(caps)
}

fn count(index: &aimarket_indexer::Index, query: SearchQuery) -> usize {
    let page = index.search(&query).unwrap();
    assert!(page.matches.len() <= page.total);
    page.total
}

#[test]
fn numeric_filters_are_inclusive_and_use_routed_price() {
    let index = filter_index();
    // Routed prices are i/100 + 0.005: a budget of 0.035 admits i = 0..=3 (listed 0.03 would
    // admit the same, 0.03 must exclude i = 3 because its routed price is 0.035).
    assert_eq!(count(&index, SearchQuery { budget: Some(0.035), ..q("ocr") }), 4);
    assert_eq!(count(&index, SearchQuery { budget: Some(0.03), ..q("ocr") }), 3);
    assert_eq!(count(&index, SearchQuery { max_latency_ms: Some(300), ..q("ocr") }), 4);
    assert_eq!(count(&index, SearchQuery { min_trust: Some(0.7), ..q("ocr") }), 3);
    assert_eq!(count(&index, SearchQuery { min_trust: Some(0.0), ..q("ocr") }), 10);
    let all = SearchQuery {
        budget: Some(0.09),
        max_latency_ms: Some(700),
        min_trust: Some(0.4),
        ..q("ocr")
    };
    let page = index.search(&all).unwrap();
    assert_eq!(page.total, 4); // i = 4..=7
    for m in &page.matches {
        let c = &m.capability;
        assert!(c.routed_price_usd <= 0.09 && c.p50_latency_ms <= 700 && c.trust_score >= 0.4);
    }
    // Hostile numbers neither panic nor match wrongly.
    assert_eq!(count(&index, SearchQuery { budget: Some(f64::NAN), ..q("ocr") }), 0);
    assert_eq!(count(&index, SearchQuery { budget: Some(f64::INFINITY), ..q("ocr") }), 10);
    assert_eq!(count(&index, SearchQuery { min_trust: Some(f64::NAN), ..q("") }), 0);
    assert_eq!(count(&index, SearchQuery { budget: Some(-1.0), ..q("") }), 0);
}

#[test]
fn hub_and_category_filters() {
    let index = filter_index();
    assert_eq!(count(&index, SearchQuery { hub: Some(A.into()), ..q("ocr") }), 5);
    assert_eq!(count(&index, SearchQuery { hub: Some(B.into()), ..q("") }), 5);
    assert_eq!(count(&index, SearchQuery { hub: Some(format!("{A}/")), ..q("ocr") }), 0);
    // Declared category, case-insensitive.
    assert_eq!(count(&index, SearchQuery { category: Some("vision".into()), ..q("ocr") }), 3);
    assert_eq!(count(&index, SearchQuery { category: Some(" VISION ".into()), ..q("") }), 3);
    // Or all the category's words in the id or name.
    assert_eq!(count(&index, SearchQuery { category: Some("weather".into()), ..q("") }), 1);
    assert_eq!(count(&index, SearchQuery { category: Some("nope".into()), ..q("") }), 0);
    let both = SearchQuery {
        hub: Some(A.into()),
        category: Some("documents".into()),
        ..q("ocr")
    };
    assert_eq!(count(&index, both), 3); // i = 4, 6, 8
}

#[test]
fn pagination_covers_every_match_once() {
    let caps = (0..25).map(|i| cap(A, &format!("ocr.n{i:02}@v1"), "OCR", "Extract text")).collect();
    let index = index_of(caps);
    let mut seen = Vec::new();
    for (offset, expect_more) in [(0, true), (10, true), (20, false)] {
        let page = index.search(&SearchQuery { limit: 10, offset, ..q("ocr") }).unwrap();
        assert_eq!(page.total, 25);
        assert_eq!(page.has_more, expect_more, "offset {offset}");
        seen.extend(page.matches.into_iter().map(|m| m.capability.key));
    }
    assert_eq!(seen.len(), 25);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 25);
    // Ties (identical text and signals) are ordered by key: pages are stable.
    assert_eq!(seen, unique);
    let past = index.search(&SearchQuery { limit: 10, offset: 40, ..q("ocr") }).unwrap();
    assert!(past.matches.is_empty() && !past.has_more && past.total == 25);
    let none = index.search(&SearchQuery { limit: 0, ..q("ocr") }).unwrap();
    assert!(none.matches.is_empty() && none.has_more && none.total == 25);
    let huge = SearchQuery { limit: usize::MAX, offset: usize::MAX, ..q("ocr") };
    assert!(index.search(&huge).unwrap().matches.is_empty());
}

#[test]
fn ties_are_ordered_by_key_across_segments() {
    let index = aimarket_indexer::Index::in_ram().unwrap();
    // Two commits make two segments; keys interleave between them.
    let first = ["c", "a", "e"].map(|s| cap(A, &format!("ocr.{s}@v1"), "OCR", "Text")).to_vec();
    let second = ["d", "b"].map(|s| cap(A, &format!("ocr.{s}@v1"), "OCR", "Text")).to_vec();
    index.apply(first, Vec::new(), 1).unwrap();
    index.apply(second, Vec::new(), 2).unwrap();
    let page = index.search(&q("ocr")).unwrap();
    assert_eq!(ids(&page), ["ocr.a@v1", "ocr.b@v1", "ocr.c@v1", "ocr.d@v1", "ocr.e@v1"]);
    let browse = index.search(&SearchQuery { limit: 2, offset: 1, ..q("") }).unwrap();
    assert_eq!(ids(&browse), ["ocr.b@v1", "ocr.c@v1"]);
}

#[test]
fn empty_intent_browses_by_quality() {
    let mut caps = Vec::new();
    for (i, trust) in [0.2, 0.9, 0.5].into_iter().enumerate() {
        let mut c = cap(A, &format!("svc.{i}@v1"), "Service", "Does things");
        c.trust_score = trust;
        caps.push(c);
    }
    let index = index_of(caps);
    for intent in ["", "   ", "?!", "the and of"] {
        let page = index.search(&q(intent)).unwrap();
        assert_eq!(ids(&page), ["svc.1@v1", "svc.2@v1", "svc.0@v1"], "intent {intent:?}");
        assert_eq!(page.total, 3);
        assert!(page.matches.iter().all(|m| m.match_type == MatchType::Browse));
        assert!(page.matches.iter().all(|m| m.relevance == 0.0 && m.score == m.quality));
    }
}

#[test]
fn compact_drops_the_schema_and_hubs_are_counted() {
    let index = index_of(vec![
        cap(A, "ocr.one@v1", "OCR", "Text"),
        cap(B, "ocr.two@v1", "OCR", "Text"),
        cap(B, "ocr.three@v1", "OCR", "Text"),
    ]);
    let full = index.search(&q("ocr")).unwrap();
    assert_eq!(full.hubs, 2);
    assert!(full.matches.iter().all(|m| m.capability.input_schema.is_object()));
    let compact = index.search(&SearchQuery { compact: true, ..q("ocr") }).unwrap();
    assert!(compact.matches.iter().all(|m| m.capability.input_schema.is_null()));
    // Removing every capability of hub A leaves one hub.
    let key = full.matches.iter().find(|m| m.capability.origin == A).unwrap().capability.key.clone();
    index.apply(Vec::new(), vec![key], 2).unwrap();
    assert_eq!(index.search(&q("ocr")).unwrap().hubs, 1);
    assert_eq!(index.num_hubs(), 1);
}

#[test]
fn hostile_intents_never_fail() {
    let index = filter_index();
    let long = "translate ".repeat(2000);
    let binary: String = (0u8..=255).map(char::from).collect();
    for intent in [
        "\"unbalanced", "(a OR b) AND NOT c", "title:foo", "ocr*", "ocr~2", "a^10", "[1 TO 5]",
        "\\", "+-&&||!(){}[]^\"~*?:/", "💥 ocr 🚀", "\u{0}\u{1f}\u{7f}", long.as_str(),
        binary.as_str(), "ΣΊΣΥΦΟΣ", "ｏｃｒ", "𠀀𠀁𠀂",
    ] {
        let page = index.search(&q(intent));
        assert!(page.is_ok(), "intent {intent:?}: {page:?}");
    }
}

struct CheapestFirst;

impl Ranker for CheapestFirst {
    fn quality(&self, s: &QualitySignals) -> f32 {
        (1.0 - s.routed_price_usd.clamp(0.0, 1.0)) as f32
    }
    fn combine(&self, _relevance: f32, quality: f32) -> f32 {
        quality
    }
}

#[test]
fn ranking_policy_is_pluggable() {
    let index = filter_index();
    let default_first = ids(&index.search(&q("ocr")).unwrap())[0].to_string();
    assert_eq!(default_first, "ocr.v9@v1"); // highest trust outweighs latency and price
    index.set_ranker(Arc::new(CheapestFirst)).unwrap();
    assert_eq!(ids(&index.search(&q("ocr")).unwrap())[0], "ocr.v0@v1");
}

//! Ranking rules: text sources, field weights, phrase, prefix, typos, languages, quality.

use std::sync::Arc;

use aimarket_indexer::{MatchType, QualitySignals, Ranker, SearchQuery};
use serde_json::json;

use crate::filters::filter_index;
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
        cap(
            A,
            "misc.tool@v1",
            "General utility",
            "Can also do geocoding of addresses",
        ),
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
        cap(
            A,
            "audio.tts@v1",
            "Text to speech",
            "Turn written text into speech audio",
        ),
        cap(
            A,
            "audio.asr@v1",
            "Speech to text",
            "Turn speech audio into written text",
        ),
    ]);
    assert_eq!(
        ids(&index.search(&q("text to speech")).unwrap())[0],
        "audio.tts@v1"
    );
    assert_eq!(
        ids(&index.search(&q("speech to text")).unwrap())[0],
        "audio.asr@v1"
    );
}

#[test]
fn last_word_matches_as_prefix() {
    let index = index_of(vec![
        cap(A, "translate.text@v1", "Translator", "Translates text"),
        cap(A, "weather.now@v1", "Weather", "Current conditions"),
    ]);
    let page = index.search(&q("transl")).unwrap();
    assert_eq!(ids(&page), ["translate.text@v1"]);
    let one = SearchQuery {
        limit: 1,
        ..q("transl")
    };
    assert_eq!(
        index.search(&one).unwrap().matches[0].match_type,
        MatchType::Lexical
    );
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
    assert_eq!(
        ids(&index.search(&q("transaltoin")).unwrap()),
        ["translate.text@v1"]
    );
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
        cap(
            A,
            "doc.translate@v1",
            "Document tool",
            "Перевод документов с сохранением вёрстки",
        ),
        cap(A, "zh.translate@v1", "Chinese tool", "将文本翻译成多种语言"),
        cap(
            A,
            "weather.en@v1",
            "Weather",
            "Weather forecast for any city",
        ),
        cap(A, "other@v1", "Other", "Unrelated"),
    ]);
    assert_eq!(
        ids(&index.search(&q("перевода документа")).unwrap())[0],
        "doc.translate@v1"
    );
    assert_eq!(
        ids(&index.search(&q("翻译")).unwrap())[0],
        "zh.translate@v1"
    );
    assert_eq!(
        ids(&index.search(&q("文本翻译")).unwrap())[0],
        "zh.translate@v1"
    );
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
    let mut weak = cap(
        A,
        "misc.thing@v1",
        "Misc",
        "Many features, and OCR among them, also text",
    );
    weak.trust_score = 1.0;
    weak.success_rate = 1.0;
    weak.p50_latency_ms = 0;
    let index = index_of(vec![bad, weak, good]);
    let page = index.search(&q("ocr service")).unwrap();
    assert_eq!(ids(&page), ["ocr.good@v1", "ocr.bad@v1", "misc.thing@v1"]);
    let top = &page.matches[0];
    assert!(top.score > 0.0 && top.relevance > 0.0 && (0.0..=1.0).contains(&top.quality));
}

#[test]
fn hostile_intents_never_fail() {
    let index = filter_index();
    let long = "translate ".repeat(2000);
    let binary: String = (0u8..=255).map(char::from).collect();
    for intent in [
        "\"unbalanced",
        "(a OR b) AND NOT c",
        "title:foo",
        "ocr*",
        "ocr~2",
        "a^10",
        "[1 TO 5]",
        "\\",
        "+-&&||!(){}[]^\"~*?:/",
        "💥 ocr 🚀",
        "\u{0}\u{1f}\u{7f}",
        long.as_str(),
        binary.as_str(),
        "ΣΊΣΥΦΟΣ",
        "ｏｃｒ",
        "𠀀𠀁𠀂",
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
    fn relevance_factor(&self, quality: f32) -> f32 {
        quality.powi(8)
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

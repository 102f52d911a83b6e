//! Filters, paging, ties, browse and page contents.

use aimarket_indexer::{Index, MatchType, SearchQuery};

use crate::support::{cap, ids, index_of, q};

const A: &str = "https://a.example";
const B: &str = "https://b.example";

/// Ten OCR capabilities with graded signals over two hubs, plus one weather capability.
pub fn filter_index() -> Index {
    let mut caps = Vec::new();
    for i in 0..10u32 {
        let origin = if i % 2 == 0 { A } else { B };
        let mut c = cap(
            origin,
            &format!("ocr.v{i}@v1"),
            "OCR",
            "Extract text from images",
        );
        c.price_usd = f64::from(i) / 100.0;
        c.routed_price_usd = f64::from(i) / 100.0 + 0.005;
        c.p50_latency_ms = u64::from(i) * 100;
        c.trust_score = f64::from(i) / 10.0;
        c.categories = vec![if i < 3 {
            "Vision".into()
        } else {
            "documents".into()
        }];
        caps.push(c);
    }
    caps.push(cap(A, "weather.now@v1", "Weather", "Current weather"));
    index_of(caps)
}

fn count(index: &Index, query: SearchQuery) -> usize {
    let page = index.search(&query).unwrap();
    assert!(page.matches.len() <= page.total);
    page.total
}

#[test]
fn numeric_filters_are_inclusive_and_use_routed_price() {
    let index = filter_index();
    // Routed prices are i/100 + 0.005: a budget of 0.035 admits i = 0..=3 (listed 0.03 would
    // admit the same, 0.03 must exclude i = 3 because its routed price is 0.035).
    assert_eq!(
        count(
            &index,
            SearchQuery {
                budget: Some(0.035),
                ..q("ocr")
            }
        ),
        4
    );
    assert_eq!(
        count(
            &index,
            SearchQuery {
                budget: Some(0.03),
                ..q("ocr")
            }
        ),
        3
    );
    assert_eq!(
        count(
            &index,
            SearchQuery {
                max_latency_ms: Some(300),
                ..q("ocr")
            }
        ),
        4
    );
    assert_eq!(
        count(
            &index,
            SearchQuery {
                min_trust: Some(0.7),
                ..q("ocr")
            }
        ),
        3
    );
    assert_eq!(
        count(
            &index,
            SearchQuery {
                min_trust: Some(0.0),
                ..q("ocr")
            }
        ),
        10
    );
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
    assert_eq!(
        count(
            &index,
            SearchQuery {
                budget: Some(f64::NAN),
                ..q("ocr")
            }
        ),
        0
    );
    assert_eq!(
        count(
            &index,
            SearchQuery {
                budget: Some(f64::INFINITY),
                ..q("ocr")
            }
        ),
        10
    );
    assert_eq!(
        count(
            &index,
            SearchQuery {
                min_trust: Some(f64::NAN),
                ..q("")
            }
        ),
        0
    );
    assert_eq!(
        count(
            &index,
            SearchQuery {
                budget: Some(-1.0),
                ..q("")
            }
        ),
        0
    );
}

#[test]
fn hub_and_category_filters() {
    let index = filter_index();
    assert_eq!(
        count(
            &index,
            SearchQuery {
                hub: Some(A.into()),
                ..q("ocr")
            }
        ),
        5
    );
    assert_eq!(
        count(
            &index,
            SearchQuery {
                hub: Some(B.into()),
                ..q("")
            }
        ),
        5
    );
    assert_eq!(
        count(
            &index,
            SearchQuery {
                hub: Some(format!("{A}/")),
                ..q("ocr")
            }
        ),
        0
    );
    // Declared category, case-insensitive.
    assert_eq!(
        count(
            &index,
            SearchQuery {
                category: Some("vision".into()),
                ..q("ocr")
            }
        ),
        3
    );
    assert_eq!(
        count(
            &index,
            SearchQuery {
                category: Some(" VISION ".into()),
                ..q("")
            }
        ),
        3
    );
    // Or all the category's words in the id or name.
    assert_eq!(
        count(
            &index,
            SearchQuery {
                category: Some("weather".into()),
                ..q("")
            }
        ),
        1
    );
    assert_eq!(
        count(
            &index,
            SearchQuery {
                category: Some("nope".into()),
                ..q("")
            }
        ),
        0
    );
    let both = SearchQuery {
        hub: Some(A.into()),
        category: Some("documents".into()),
        ..q("ocr")
    };
    assert_eq!(count(&index, both), 3); // i = 4, 6, 8
}

#[test]
fn pagination_covers_every_match_once() {
    let caps = (0..25)
        .map(|i| cap(A, &format!("ocr.n{i:02}@v1"), "OCR", "Extract text"))
        .collect();
    let index = index_of(caps);
    let mut seen = Vec::new();
    for (offset, expect_more) in [(0, true), (10, true), (20, false)] {
        let page = index
            .search(&SearchQuery {
                limit: 10,
                offset,
                ..q("ocr")
            })
            .unwrap();
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
    let past = index
        .search(&SearchQuery {
            limit: 10,
            offset: 40,
            ..q("ocr")
        })
        .unwrap();
    assert!(past.matches.is_empty() && !past.has_more && past.total == 25);
    let none = index
        .search(&SearchQuery {
            limit: 0,
            ..q("ocr")
        })
        .unwrap();
    assert!(none.matches.is_empty() && none.has_more && none.total == 25);
    let huge = SearchQuery {
        limit: usize::MAX,
        offset: usize::MAX,
        ..q("ocr")
    };
    assert!(index.search(&huge).unwrap().matches.is_empty());
}

#[test]
fn ties_are_ordered_by_key_across_segments() {
    let index = Index::in_ram().unwrap();
    // Two commits make two segments; keys interleave between them.
    let first = ["c", "a", "e"]
        .map(|s| cap(A, &format!("ocr.{s}@v1"), "OCR", "Text"))
        .to_vec();
    let second = ["d", "b"]
        .map(|s| cap(A, &format!("ocr.{s}@v1"), "OCR", "Text"))
        .to_vec();
    index.apply(first, Vec::new(), 1).unwrap();
    index.apply(second, Vec::new(), 2).unwrap();
    let page = index.search(&q("ocr")).unwrap();
    assert_eq!(
        ids(&page),
        ["ocr.a@v1", "ocr.b@v1", "ocr.c@v1", "ocr.d@v1", "ocr.e@v1"]
    );
    let browse = index
        .search(&SearchQuery {
            limit: 2,
            offset: 1,
            ..q("")
        })
        .unwrap();
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
        assert_eq!(
            ids(&page),
            ["svc.1@v1", "svc.2@v1", "svc.0@v1"],
            "intent {intent:?}"
        );
        assert_eq!(page.total, 3);
        assert!(
            page.matches
                .iter()
                .all(|m| m.match_type == MatchType::Browse)
        );
        assert!(
            page.matches
                .iter()
                .all(|m| m.relevance == 0.0 && m.score == m.quality)
        );
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
    assert!(
        full.matches
            .iter()
            .all(|m| m.capability.input_schema.is_object())
    );
    let compact = index
        .search(&SearchQuery {
            compact: true,
            ..q("ocr")
        })
        .unwrap();
    assert!(
        compact
            .matches
            .iter()
            .all(|m| m.capability.input_schema.is_null())
    );
    // Removing every capability of hub A leaves one hub.
    let key = full
        .matches
        .iter()
        .find(|m| m.capability.origin == A)
        .unwrap()
        .capability
        .key
        .clone();
    index.apply(Vec::new(), vec![key], 2).unwrap();
    assert_eq!(index.search(&q("ocr")).unwrap().hubs, 1);
    assert_eq!(index.num_hubs(), 1);
}

#[test]
fn selective_filters_score_like_unfiltered_search() {
    // 64 capabilities on hub A and 3 on hub B: the hub filter is selective enough for the
    // executor to seek its documents instead of scanning the postings. Scores, order and
    // totals must be exactly those of the unfiltered search restricted to hub B.
    let mut caps = Vec::new();
    for i in 0..64 {
        let words = ["text", "images", "receipts", "scanned pages"][i % 4];
        caps.push(cap(
            A,
            &format!("ocr.a{i}@v1"),
            "OCR reader",
            &format!("Reads {words}"),
        ));
    }
    for (i, words) in ["text from images", "receipts", "handwriting"]
        .iter()
        .enumerate()
    {
        let mut c = cap(
            B,
            &format!("ocr.b{i}@v1"),
            "OCR engine",
            &format!("Reads {words}"),
        );
        c.categories = vec!["rare".into()];
        caps.push(c);
    }
    let index = index_of(caps);
    for intent in [
        "ocr reads text images",
        "receipts",
        "handwriting ocr",
        "reader",
    ] {
        let all = index
            .search(&SearchQuery {
                limit: 100,
                ..q(intent)
            })
            .unwrap();
        let expected: Vec<(String, f64)> = all
            .matches
            .iter()
            .filter(|m| m.capability.origin == B)
            .map(|m| (m.capability.key.clone(), m.score))
            .collect();
        for filtered in [
            SearchQuery {
                hub: Some(B.into()),
                limit: 100,
                ..q(intent)
            },
            SearchQuery {
                category: Some("rare".into()),
                limit: 100,
                ..q(intent)
            },
        ] {
            let page = index.search(&filtered).unwrap();
            let got: Vec<(String, f64)> = page
                .matches
                .iter()
                .map(|m| (m.capability.key.clone(), m.score))
                .collect();
            assert_eq!(got, expected, "intent {intent:?}");
            assert_eq!(page.total, expected.len());
        }
    }
}

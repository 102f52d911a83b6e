//! Relevance regression: recall@5 and nDCG@10 over the labelled intents must not fall below
//! the committed baseline (`indexer/relevance/baseline.json`).
//!
//! To record a new baseline after an intended ranking improvement, run
//! `AIMARKET_WRITE_RELEVANCE_BASELINE=1 cargo test -p aimarket-indexer --test it relevance`
//! and commit the file. `AIMARKET_RELEVANCE_DEBUG="<intent>"` prints that intent's scored hits.

use std::collections::HashMap;
use std::path::PathBuf;

use aimarket_indexer::synthetic::{relevance_catalog, template_id};
use aimarket_indexer::{Index, SearchQuery};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Labelled {
    intent: String,
    kind: String,
    relevant: HashMap<String, u32>,
}

#[derive(Deserialize)]
struct Intents {
    intents: Vec<Labelled>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Baseline {
    intents: usize,
    recall_at_5: f64,
    ndcg_at_10: f64,
}

fn relevance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("relevance")
}

fn dcg(grades: impl Iterator<Item = u32>) -> f64 {
    grades
        .enumerate()
        .map(|(rank, g)| f64::from((1u32 << g) - 1) / ((rank + 2) as f64).log2())
        .sum()
}

struct Scores {
    recall_at_5: f64,
    ndcg_at_10: f64,
}

/// Scores one intent. Recall counts grade-2 capabilities (what the intent asks for) among the
/// top 5, out of at most 5; nDCG uses every grade.
fn score(index: &Index, catalog_grades: &[u32], labelled: &Labelled) -> (Scores, Vec<String>) {
    let query = SearchQuery {
        intent: labelled.intent.clone(),
        limit: 10,
        ..SearchQuery::default()
    };
    let page = index.search(&query).unwrap();
    if std::env::var("AIMARKET_RELEVANCE_DEBUG").is_ok_and(|d| d == labelled.intent) {
        for m in &page.matches {
            let c = &m.capability;
            println!(
                "  {:.3} rel {:.3} q {:.3} {} | {} | {}",
                m.score, m.relevance, m.quality, c.capability_id, c.name, c.description
            );
        }
    }
    let got: Vec<(String, u32)> = page
        .matches
        .iter()
        .map(|m| {
            let t = template_id(&m.capability.capability_id).to_string();
            let g = labelled.relevant.get(&t).copied().unwrap_or(0);
            (t, g)
        })
        .collect();
    let primary = catalog_grades.iter().filter(|g| **g == 2).count();
    let found = got.iter().take(5).filter(|(_, g)| *g == 2).count();
    let recall = found as f64 / primary.clamp(1, 5) as f64;
    let mut ideal: Vec<u32> = catalog_grades.iter().copied().filter(|g| *g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let ideal = dcg(ideal.into_iter().take(10));
    let ndcg = if ideal > 0.0 {
        dcg(got.iter().map(|(_, g)| *g)) / ideal
    } else {
        0.0
    };
    let top: Vec<String> = got
        .into_iter()
        .take(5)
        .map(|(t, g)| format!("{t}({g})"))
        .collect();
    (
        Scores {
            recall_at_5: recall,
            ndcg_at_10: ndcg,
        },
        top,
    )
}

#[test]
fn relevance_does_not_regress() {
    let catalog = relevance_catalog();
    let templates: Vec<String> = catalog
        .iter()
        .map(|c| template_id(&c.capability_id).to_string())
        .collect();
    let index = Index::in_ram().unwrap();
    index.rebuild(catalog, 1).unwrap();

    let text = std::fs::read_to_string(relevance_dir().join("intents.json")).unwrap();
    let intents: Intents = serde_json::from_str(&text).unwrap();
    assert!(intents.intents.len() >= 50);

    let mut recall = 0.0;
    let mut ndcg = 0.0;
    let mut by_kind: HashMap<&str, (f64, f64, usize)> = HashMap::new();
    for labelled in &intents.intents {
        let grades: Vec<u32> = templates
            .iter()
            .map(|t| labelled.relevant.get(t).copied().unwrap_or(0))
            .collect();
        assert!(
            grades.contains(&2),
            "{:?} labels nothing in the catalog",
            labelled.intent
        );
        let (s, top) = score(&index, &grades, labelled);
        if s.recall_at_5 < 1.0 {
            println!(
                "recall@5 {:.2} ndcg@10 {:.2} [{}] {:?} -> {}",
                s.recall_at_5,
                s.ndcg_at_10,
                labelled.kind,
                labelled.intent,
                top.join(", ")
            );
        }
        recall += s.recall_at_5;
        ndcg += s.ndcg_at_10;
        let entry = by_kind.entry(labelled.kind.as_str()).or_default();
        entry.0 += s.recall_at_5;
        entry.1 += s.ndcg_at_10;
        entry.2 += 1;
    }
    let n = intents.intents.len() as f64;
    let current = Baseline {
        intents: intents.intents.len(),
        recall_at_5: recall / n,
        ndcg_at_10: ndcg / n,
    };
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort_by(|a, b| a.0.cmp(b.0));
    for (kind, (r, d, count)) in kinds {
        let c = count as f64;
        println!(
            "{kind:>10}: {count:3} intents, recall@5 {:.3}, nDCG@10 {:.3}",
            r / c,
            d / c
        );
    }
    println!("overall: {current:?}");

    let path = relevance_dir().join("baseline.json");
    if std::env::var_os("AIMARKET_WRITE_RELEVANCE_BASELINE").is_some() {
        // Round down so float noise can never fail the comparison below.
        let floor = |x: f64| (x * 1e4).floor() / 1e4;
        let recorded = Baseline {
            intents: current.intents,
            recall_at_5: floor(current.recall_at_5),
            ndcg_at_10: floor(current.ndcg_at_10),
        };
        let json = serde_json::to_string_pretty(&recorded).unwrap();
        std::fs::write(&path, json + "\n").unwrap();
    }
    let baseline: Baseline =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        current.intents >= baseline.intents,
        "labelled intents were removed"
    );
    assert!(
        current.recall_at_5 >= baseline.recall_at_5,
        "recall@5 regressed: {} < baseline {}",
        current.recall_at_5,
        baseline.recall_at_5
    );
    assert!(
        current.ndcg_at_10 >= baseline.ndcg_at_10,
        "nDCG@10 regressed: {} < baseline {}",
        current.ndcg_at_10,
        baseline.ndcg_at_10
    );
}

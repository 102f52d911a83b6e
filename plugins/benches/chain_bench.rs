//! Micro-benchmark: the default plugin chain (`quality`) over 100 candidates, through the
//! registry (copy-on-success, budget timer, metrics), as a search pays it.
//!
//! Run: `cargo bench -p aimarket-plugins --bench chain_bench`

use std::sync::Arc;
use std::time::Instant;

use aimarket_plugins::builtin::quality::{Quality, QualitySettings};
use aimarket_plugins::{
    Candidate, PluginContext, RegistryBuilder, RegistryConfig, SearchQueryView,
};
use serde_json::json;

const CANDIDATES: usize = 100;
const WARMUP: usize = 2_000;
const ITERATIONS: usize = 50_000;

fn candidates() -> Vec<Candidate> {
    (0..CANDIDATES)
        .map(|i| {
            let f = i as f64;
            Candidate {
                key: format!("https://p{}.example|prod-{i}|cap{i}@v1", i % 7).into(),
                product_id: format!("prod-{i}").into(),
                capability_id: format!("cap{i}@v1").into(),
                origin: format!("https://p{}.example", i % 7).into(),
                source_hub_name: "Provider".into(),
                via: (i % 3 == 0).then(|| Arc::from("https://relay.example")),
                bm25: ((i * 37) % 100) as f32 / 10.0,
                score: 0.0,
                price_usd: 0.001 * f,
                routed_price_usd: 0.00101 * f,
                p50_latency_ms: (i as u64 * 53) % 2000,
                trust_score: ((i * 13) % 100) as f64 / 100.0,
                success_rate: 0.5 + ((i * 7) % 50) as f64 / 100.0,
                tool: Arc::new(json!({"name": format!("cap{i}"), "description": "x"})),
            }
        })
        .collect()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    let registry = RegistryBuilder::new()
        .build(&RegistryConfig::default_chain())
        .expect("the default chain loads");
    let query = SearchQueryView {
        intent: "translate text".into(),
        limit: 20,
        ..SearchQueryView::default()
    };
    let base = candidates();
    let mut samples = Vec::with_capacity(ITERATIONS);
    runtime.block_on(async {
        for i in 0..WARMUP + ITERATIONS {
            let mut list = base.clone();
            let mut ctx = PluginContext::new("bench", "https://hub.example");
            let start = Instant::now();
            registry
                .rank(&mut ctx, &query, &mut list)
                .await
                .expect("quality never refuses");
            let elapsed = start.elapsed();
            std::hint::black_box(&list);
            if i >= WARMUP {
                samples.push(elapsed.as_nanos() as f64 / 1000.0);
            }
        }
    });
    report("default chain (quality) through the registry", samples);

    // The same ranking without the registry, to show what the chain machinery costs.
    let quality = Quality::new(QualitySettings::default()).expect("default settings are valid");
    let mut direct = Vec::with_capacity(ITERATIONS);
    for i in 0..WARMUP + ITERATIONS {
        let mut list = base.clone();
        let start = Instant::now();
        quality.rank_in_place(&mut list);
        let elapsed = start.elapsed();
        std::hint::black_box(&list);
        if i >= WARMUP {
            direct.push(elapsed.as_nanos() as f64 / 1000.0);
        }
    }
    report("quality::rank_in_place alone", direct);
}

fn report(what: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{what}, {CANDIDATES} candidates, {ITERATIONS} runs: mean {mean:.2} µs, \
         p50 {:.2} µs, p99 {:.2} µs, max {:.2} µs",
        pct(0.50),
        pct(0.99),
        samples[samples.len() - 1]
    );
}
